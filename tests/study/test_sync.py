"""`study sync`: MLflow filled in from Optuna after runs went missing or were left unfinished;
idempotent. In-process trials, real Optuna journal and real MLflow (SQLite)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from mlflow.tracking import MlflowClient

from study import engine
from study.executors import InProcessExecutor
from study.outcomes import MLFLOW_STATUS
from study.spec import parse_spec
from study.sync import sync


def _run(spec: dict[str, Any]) -> engine.RunResult:
    def make(prep: engine.Prepared) -> tuple[InProcessExecutor, Callable[[], None]]:
        ex = InProcessExecutor(prep.data, slots=2)
        return ex, ex.close

    prep = engine.prepare(parse_spec(spec))
    return engine.run(prep, executor=make, say=lambda m: None, inline_tracking=True)


def _children(client: MlflowClient, name: str) -> dict[int, list[Any]]:
    exp = client.get_experiment_by_name(name)
    out: dict[int, list[Any]] = {}
    for r in client.search_runs([exp.experiment_id], max_results=1000):
        if "trial_number" in r.data.tags:
            out.setdefault(int(r.data.tags["trial_number"]), []).append(r)
    return out


def test_sync_recreates_lost_runs_and_finishes_left_ones_once(workdir: Path, tiny_spec: Any) -> None:
    spec = tiny_spec(trials=4)
    result = _run(spec)
    storage = spec["storage"]
    uri = spec["tracking_uri"]
    client = MlflowClient(uri)
    before = _children(client, "tiny-study")
    assert sorted(before) == [0, 1, 2, 3]
    # what an outage leaves: a run never created (trial 1), one left RUNNING with missing epochs (trial 2)
    client.delete_run(before[1][0].info.run_id)  # searches no longer see it
    client.update_run(before[2][0].info.run_id, status="RUNNING")
    client.set_tag(before[2][0].info.run_id, "state", "RUNNING")

    first = sync("tiny-study", storage, uri)
    assert first.created == [1] and first.fixed == [2] and first.points == 3 and first.changed
    after = _children(client, "tiny-study")
    assert sorted(after) == [0, 1, 2, 3] and all(len(v) == 1 for v in after.values())
    study = optuna.load_study(study_name="tiny-study", storage=engine.storage_mod.open_storage(storage))
    for t in study.get_trials():
        run = after[t.number][0]
        assert run.info.status == MLFLOW_STATUS[t.state] and run.data.tags["state"] == t.state.name
        assert run.data.tags["stop_reason"] == t.user_attrs["stop_reason"]
        steps = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val_loss")}
        assert {s: steps[s] for s in t.intermediate_values} == t.intermediate_values
    made = after[1][0]
    t1 = study.trials[1]
    assert made.data.tags["mlflow.parentRunId"] == result.study.user_attrs[engine.PARENT_ATTR]
    assert made.data.metrics["objective"] == t1.value and made.data.tags["hpstudy.synced"] == "true"
    assert made.data.params["lr"] == str(t1.params["lr"]) and made.data.params["width"] == "8"  # the whole config
    assert made.data.params["seed"] == str(t1.user_attrs["seed"])

    second = sync("tiny-study", storage, uri)
    assert not second.changed
    assert {k: [r.info.run_id for r in v] for k, v in _children(client, "tiny-study").items()} == {
        k: [r.info.run_id for r in v] for k, v in after.items()
    }
