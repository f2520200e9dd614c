"""`study sync`: MLflow filled in from Optuna after runs went missing or were left unfinished;
idempotent. In-process trials, real Optuna journal and real MLflow (SQLite)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from mlflow.tracking import MlflowClient

from study.record import StudyAttr, mlflow_status
from study.run import launch as launching
from study.run.executor import InProcessExecutor
from study.run.prepare import Prepared, prepare
from study.run.reconcile import sync
from study.spec import parse_spec
from study.stores.optuna_storage import open_storage


def _run(spec: dict[str, Any]) -> launching.RunResult:
    def make(prep: Prepared) -> tuple[InProcessExecutor, Callable[[], None]]:
        ex = InProcessExecutor(prep.data, slots=2)
        return ex, ex.close

    prep = prepare(parse_spec(spec))
    return launching.run_study(prep, executor=make, say=lambda m: None, inline_tracking=True)


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
    study = optuna.load_study(study_name="tiny-study", storage=open_storage(storage))
    for t in study.get_trials():
        run = after[t.number][0]
        assert run.info.status == mlflow_status(t.state) and run.data.tags["state"] == t.state.name
        assert run.data.tags["stop_reason"] == t.user_attrs["stop_reason"]
        steps = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val_loss")}
        assert {s: steps[s] for s in t.intermediate_values} == t.intermediate_values
    made = after[1][0]
    t1 = study.trials[1]
    assert made.data.tags["mlflow.parentRunId"] == result.study.user_attrs[StudyAttr.PARENT_RUN]
    assert made.data.metrics["objective"] == t1.value and made.data.tags["hpstudy.synced"] == "true"
    assert made.data.params["lr"] == str(t1.params["lr"]) and made.data.params["width"] == "8"  # the whole config
    assert made.data.params["seed"] == str(t1.user_attrs["seed"])

    second = sync("tiny-study", storage, uri)
    assert not second.changed
    assert {k: [r.info.run_id for r in v] for k, v in _children(client, "tiny-study").items()} == {
        k: [r.info.run_id for r in v] for k, v in after.items()
    }


SPACE = """\
name: tiny
description: Learning rate only, on a one-layer net.
fixed: {depth: 1, width: 8, batch_size: 64, epochs: 3}
parameters:
  lr: {float: [1.0e-3, 0.3], log: true}
"""


def _spec_in(folder: Path) -> dict[str, Any]:
    return {
        "name": "twin",
        "dataset": {"name": "gaussian_mixture", "args": {"n_samples": 300, "n_features": 6, "n_classes": 3}},
        "space": "tiny.yaml",
        "trials": 4,
        "concurrency": 2,
        "pruner": "none",
        "tracking_uri": f"sqlite:///{folder / 'mlflow.db'}",
        "storage": f"journal:{folder / 'optuna.journal'}",
    }


def _content(folder: Path) -> dict[int, Any]:
    """Every trial run of the study as MLflow shows it: status, tags, params, metrics and the
    whole objective curve (run ids aside, which differ between any two stores)."""
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    out = {}
    for runs in _children(client, "twin").values():
        (run,) = runs
        curve = [(m.step, m.value, m.timestamp) for m in client.get_metric_history(run.info.run_id, "val_loss")]
        tags = {k: v for k, v in run.data.tags.items() if k != "mlflow.parentRunId"}
        out[int(tags["trial_number"])] = (run.info.status, run.info.end_time, tags, run.data.params, run.data.metrics, curve)
    return out


def test_resume_and_sync_repair_an_outage_alike(tmp_path: Path, empty_mlflow_db: Path, monkeypatch: Any) -> None:
    """One reconciliation: after what an MLflow outage leaves (a run never created, one left
    RUNNING, one that lost writes), `study resume` and `study sync` of the same stores give
    the same MLflow content, and it agrees with Optuna."""
    import shutil

    base = tmp_path / "base"
    base.mkdir()
    (base / "tiny.yaml").write_text(SPACE)
    shutil.copy(empty_mlflow_db, base / "mlflow.db")
    monkeypatch.chdir(base)
    _run(_spec_in(base))
    # what an outage leaves: a driver that lost writes never marks MLflow complete (a clean end does)
    optuna.load_study(study_name="twin", storage=open_storage(_spec_in(base)["storage"])).set_user_attr(StudyAttr.TRACKED, -1)
    client = MlflowClient(f"sqlite:///{base / 'mlflow.db'}")
    before = _children(client, "twin")
    client.delete_run(before[1][0].info.run_id)
    client.update_run(before[2][0].info.run_id, status="RUNNING")
    client.set_tag(before[2][0].info.run_id, "state", "RUNNING")
    client.set_tag(before[3][0].info.run_id, "hpstudy.incomplete", "true")
    for name in ("by_sync", "by_resume"):
        shutil.copytree(base, tmp_path / name)

    synced = tmp_path / "by_sync"
    r = sync("twin", _spec_in(synced)["storage"], _spec_in(synced)["tracking_uri"])
    assert r.created == [1] and r.fixed == [2, 3] and r.points == 3

    resumed = tmp_path / "by_resume"
    monkeypatch.chdir(resumed)
    prep = prepare(parse_spec(_spec_in(resumed)))
    said: list[str] = []
    make = lambda p: (InProcessExecutor(p.data, slots=2), lambda: None)  # noqa: E731
    assert launching.run_study(prep, resume=True, executor=make, say=said.append, inline_tracking=True).finished
    assert said == ["reconciled: 0 trial(s) left running re-enqueued; 3 MLflow run(s) corrected"]

    a, b = _content(synced), _content(resumed)
    assert sorted(a) == [0, 1, 2, 3] and a == b
    study = optuna.load_study(study_name="twin", storage=open_storage(_spec_in(synced)["storage"]))
    for t in study.get_trials():
        status, end, tags, params, metrics, curve = a[t.number]
        assert status == mlflow_status(t.state) and tags["state"] == t.state.name and tags["stop_reason"] == "completed"
        assert metrics["objective"] == t.value and {s: v for s, v, _ in curve} == t.intermediate_values
        assert params["lr"] == str(t.params["lr"]) and tags.get("hpstudy.incomplete") != "true"
        if t.number in (1, 2, 3):  # the repaired runs end when the trial did
            assert end == int(t.datetime_complete.timestamp() * 1000)
