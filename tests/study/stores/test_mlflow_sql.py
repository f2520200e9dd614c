"""`FastRunClient` against `MlflowClient`: the same calls on the same store give runs that
MLflow reads back identically (run info, params, tags, latest metrics, every metric point),
and the same error for a changed param."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from study.stores.mlflow_sql import FastRunClient, fast_client


def _calls(client: Any, experiment_id: str) -> str:
    """One run through `client`: created, three batches (NaN, inf, repeated points, an older
    step after a newer one, a tag replaced, a tag repeated within a batch), terminated."""
    run = client.create_run(
        experiment_id, start_time=1_700_000_000_000, run_name="trial-3", tags={"trial_number": "3", "state": "RUNNING"}
    )
    rid = run.info.run_id
    client.log_batch(
        rid,
        metrics=[
            Metric("val_loss", 0.5, 1000, 1), Metric("val_loss", 0.4, 1001, 2), Metric("val_loss", 0.4, 1001, 2),
            Metric("train_loss", math.nan, 1000, 1), Metric("grad", math.inf, 1000, 1), Metric("neg", -math.inf, 1000, 1),
        ],
        params=[Param("lr", "0.01"), Param("depth", "2")],
        tags=[RunTag("seed", "7"), RunTag("dup", "a"), RunTag("dup", "b")],
    )  # fmt: skip
    client.log_batch(
        rid,
        metrics=[Metric("val_loss", 0.9, 999, 1), Metric("train_loss", 0.3, 1002, 3), Metric("objective", 0.35, 1003, 3)],
        params=[Param("lr", "0.01")],  # the same value again: allowed
        tags=[RunTag("state", "COMPLETE"), RunTag("stop_reason", "completed")],
    )
    client.log_batch(rid, metrics=[Metric("val_loss", 0.35, 1004, 2)])  # same step, later: the latest
    client.set_terminated(rid, status="KILLED", end_time=1_700_000_005_000)
    return rid


def _seen(reader: MlflowClient, rid: str) -> dict[str, Any]:
    run = reader.get_run(rid)
    history = {k: sorted((m.step, m.timestamp, m.value) for m in reader.get_metric_history(rid, k)) for k in run.data.metrics}
    info = run.info
    return {
        "info": (info.status, info.start_time, info.end_time, info.lifecycle_stage, info.run_name, info.user_id),
        "artifacts": info.artifact_uri.replace(rid, "RUN"),
        "params": run.data.params,
        "tags": run.data.tags,
        "latest": run.data.metrics,
        "history": {k: [(s, t, "nan" if math.isnan(v) else v) for s, t, v in h] for k, h in history.items()},
    }


def test_runs_written_by_sql_read_back_as_mlflow_writes_them(tmp_path: Path, empty_mlflow_db: Path) -> None:
    shutil.copy(empty_mlflow_db, tmp_path / "mlflow.db")
    reader = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = reader.create_experiment("same")
    fast = fast_client(MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}"))
    assert isinstance(fast, FastRunClient)
    by_mlflow, by_sql = _calls(reader, exp), _calls(fast, exp)
    expected, got = _seen(reader, by_mlflow), _seen(reader, by_sql)
    assert got == expected
    assert expected["latest"]["val_loss"] == 0.35 and expected["tags"]["dup"] == "b"  # the cases the calls meant to cover
    assert math.isnan(expected["latest"]["train_loss"]) is False and expected["latest"]["grad"] > 1e308
    found = reader.search_runs([exp], filter_string="tags.trial_number = '3' and attributes.status = 'KILLED'")
    assert {r.info.run_id for r in found} == {by_mlflow, by_sql}


def test_a_changed_param_is_refused_as_by_mlflow(tmp_path: Path, empty_mlflow_db: Path) -> None:
    shutil.copy(empty_mlflow_db, tmp_path / "mlflow.db")
    fast = fast_client(MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}"))
    run = fast.create_run(fast.create_experiment("p"), run_name="r")
    fast.log_batch(run.info.run_id, params=[Param("lr", "0.1")])
    with pytest.raises(MlflowException, match="Changing param values is not allowed"):
        fast.log_batch(run.info.run_id, params=[Param("lr", "0.2")])
    assert fast.get_run(run.info.run_id).data.params == {"lr": "0.1"}  # nothing of the refused batch written


def test_a_tracking_server_keeps_the_mlflow_client() -> None:
    client = MlflowClient("http://127.0.0.1:9")  # nothing is sent until a call
    assert fast_client(client) is client
