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


def test_trial_runs_read_from_the_tables_match_mlflows_search(tmp_path: Path, empty_mlflow_db: Path) -> None:
    """Children of one parent only, deleted runs left out, NaN metrics, a trial with two runs
    (both returned; the reader keeps the newest), a subset of trial numbers."""
    from study.stores.mlflow_sql import sql_reader
    from study.stores.runs import RunReader

    shutil.copy(empty_mlflow_db, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("s")
    parent, other = client.create_run(exp, run_name="study"), client.create_run(exp, run_name="other")
    for n, under in ((0, parent), (1, parent), (1, parent), (2, parent), (3, other), (4, parent)):
        run = client.create_run(
            exp,
            start_time=1000 + n,
            run_name=f"trial-{n}",
            tags={"mlflow.parentRunId": under.info.run_id, "trial_number": str(n)},
        )
        client.log_batch(
            run.info.run_id, metrics=[Metric("val_loss", math.nan if n == 2 else 0.1 * n, 5, 1), Metric("objective", 0.5, 5, 1)]
        )
        if n == 4:
            client.delete_run(run.info.run_id)
    client.set_terminated(parent.info.run_id)
    reader = sql_reader(uri)
    assert reader is not None
    via_sql = RunReader(uri)
    via_mlflow = RunReader(uri)
    via_mlflow._sql = None
    for numbers in (None, [1, 2, 7]):
        got, expected = (
            via_sql.trial_runs("s", parent.info.run_id, numbers),
            via_mlflow.trial_runs("s", parent.info.run_id, numbers),
        )
        nan = {n: {k: "nan" if math.isnan(v) else v for k, v in r.metrics.items()} for n, r in got.items()}
        assert {n: (r.run_id, r.status, r.start_time) for n, r in got.items()} == {
            n: (r.run_id, r.status, r.start_time) for n, r in expected.items()
        }
        assert nan == {n: {k: "nan" if math.isnan(v) else v for k, v in r.metrics.items()} for n, r in expected.items()}
    assert sorted(via_sql.trial_runs("s", parent.info.run_id)) == [0, 1, 2]
    assert len(reader.trial_runs(parent.info.run_id, [1])) == 2  # both runs of trial 1; the newest is kept above
