"""study.load on a real small study (Optuna journal + MLflow SQLite, in-process executor):
best_trials, trials, curves, importance, report with its artifacts in MLflow."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

import study
from study.run.executor import InProcessExecutor
from study.run.launch import run_study
from study.run.prepare import Prepared, prepare
from study.spec import parse_spec

from ...ports import free_port

SPACE = """\
name: query-test
description: Depth, dropout and optimizer on a small net, for the query tests.
fixed: {width: 16, batch_size: 32, epochs: 4}
parameters:
  depth: {int: [1, 3]}
  dropout: {float: [0.0, 0.5]}
  optimizer: {choices: [sgd, adam]}
  lr: {float: [1.0e-3, 0.1], log: true}
"""


def _in_process(prep: Prepared):
    return InProcessExecutor(prep.data, slots=2), lambda: None


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("query")
    (d / "space.yaml").write_text(SPACE)
    raw = {
        "name": "q",
        "dataset": "digits",
        "space": str(d / "space.yaml"),
        "trials": 8,
        "concurrency": 2,
        "pruner": "none",
        "sampler": {"name": "random", "seed": 1},
        "storage": f"journal:{d / 'optuna.journal'}",
        "tracking_uri": f"sqlite:///{d / 'mlflow.db'}",
    }
    prep = prepare(parse_spec(raw, source="test"))
    result = run_study(prep, executor=_in_process, say=lambda m: None, flush_seconds=0.0)
    assert result.finished
    return {"storage": raw["storage"], "dir": str(d)}


@pytest.fixture
def handle(finished):
    return study.load("q", storage=finished["storage"])


def test_trials_have_state_reason_config_and_run(handle) -> None:
    df = handle.trials()
    assert len(df) == 8 and set(df["state"]) == {"COMPLETE"}
    assert set(df["stop_reason"]) <= {"completed", "early_stopped"}
    assert df["value"].is_monotonic_increasing  # best first (val_loss is minimized)
    for col in (
        "depth",
        "dropout",
        "optimizer",
        "lr",
        "width",
        "best_epoch",
        "stopped_epoch",
        "gap_at_best",
        "n_params",
        "run_id",
    ):
        assert df[col].notna().all(), col
    assert set(df["width"]) == {16} and df["depth"].isin([1, 2, 3]).all()
    assert {"depth", "dropout", "optimizer", "lr"} <= set(df.attrs["hyperparameters"])
    assert "width" not in df.attrs["hyperparameters"]  # fixed, not searched
    # n_params is the trained network's: 64 inputs, depth x 16, 10 classes
    for _, r in df.iterrows():
        sizes = [64] + [16] * int(r["depth"]) + [10]
        assert r["n_params"] == sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=False))


def test_best_trials_filters_and_ranks(handle) -> None:
    all_ = handle.trials()
    best = handle.best_trials(k=3)
    assert best["number"].tolist() == all_["number"].head(3).tolist()
    adam = handle.best_trials(k=10, where="optimizer == 'adam' and gap_at_best < 10")
    assert len(adam) == int((all_["optimizer"] == "adam").sum()) and (adam["optimizer"] == "adam").all()
    with pytest.raises(ValueError, match="where 'nope >"):
        handle.best_trials(where="nope > 1")


def test_curves_have_one_row_per_epoch_and_match_the_objective(handle) -> None:
    trials = handle.trials()
    curves = handle.curves(trials.head(3))
    assert set(curves["trial"]) == set(trials["number"].head(3))
    for _, t in trials.head(3).iterrows():
        c = curves[curves["trial"] == t["number"]]
        assert c["epoch"].tolist() == list(range(1, int(t["stopped_epoch"]) + 1))
        at_best = c[c["epoch"] == t["best_epoch"]].iloc[0]
        assert at_best["val_loss"] == pytest.approx(t["value"])  # scope best: the objective
        assert at_best["val_loss"] - at_best["train_loss"] == pytest.approx(t["gap_at_best"])
    assert {"grad_norm_0", "weight_norm_0", "lr", "val_acc", "train_acc"} <= set(curves.columns)


def test_scope_last_ranks_by_the_last_epoch(handle) -> None:
    trials = handle.trials()
    curves = handle.curves()
    last = curves.sort_values("epoch").groupby("trial").tail(1).set_index("trial")["val_loss"]
    got = handle.best_trials(k=8, scope="last")
    assert got["value"].tolist() == pytest.approx(sorted(last[trials["number"]].tolist()))


def test_importance_for_objective_and_curve_targets(handle) -> None:
    imp = handle.importance()
    assert set(imp) == {"depth", "dropout", "optimizer", "lr"}
    assert math.isclose(sum(imp.values()), 1.0, rel_tol=1e-6)
    gap = handle.importance(target="gap_at_best")
    assert set(gap) == set(imp)
    with pytest.raises(ValueError, match="target must be"):
        handle.importance(target="nope")


def test_report_is_written_and_logged_to_the_parent_run(handle, finished) -> None:
    out = Path(finished["dir"]) / "r.html"
    rep = handle.report(str(out))
    assert out.is_file() and len(rep.figures) >= 4
    for p in rep.figures:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    arts = {a.path for a in MlflowClient(handle.tracking_uri).list_artifacts(handle.parent_run_id, "report")}
    assert "report/r.html" in arts
    figs = {a.path for a in MlflowClient(handle.tracking_uri).list_artifacts(handle.parent_run_id, "report/figures")}
    assert {f"report/figures/{p.name}" for p in rep.figures} == figs


def test_unknown_study_is_a_clear_error(finished) -> None:
    from study.spec import SpecError

    with pytest.raises(SpecError, match="no study 'nope'"):
        study.load("nope", storage=finished["storage"])


def test_trials_frame_is_a_dataframe(handle) -> None:
    assert isinstance(handle.trials(states=["FAIL"]), pd.DataFrame)
    assert handle.trials(states=["FAIL"]).empty


# -- the CLI, as a user runs it ------------------------------------------------------------
STUDY = str(Path(__import__("sys").executable).parent / "study")


def _study(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([STUDY, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_cli_best_table_and_json(finished, handle) -> None:
    import json

    p = _study("best", "q", "--storage", finished["storage"], "-k", "3")
    assert p.returncode == 0, p.stderr
    assert "q: best 3 by val_loss" in p.stdout and "optimizer" in p.stdout
    p = _study("best", "q", "--storage", finished["storage"], "-k", "2", "--json", "--where", "optimizer == 'sgd'")
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    want = handle.best_trials(k=2, where="optimizer == 'sgd'")
    assert [r["number"] for r in rows] == want["number"].tolist()
    assert all(r["optimizer"] == "sgd" and r["run_id"] for r in rows)


def test_cli_bad_input_exits_2_with_one_message(finished) -> None:
    for args, text in [
        (("best", "q", "--storage", finished["storage"], "--where", "nope > 1"), "where 'nope > 1'"),
        (("best", "missing", "--storage", finished["storage"]), "no study 'missing'"),
        (("best", "q", "--storage", finished["storage"], "-k", "0"), "-k must be >= 1"),
        (("report", "q", "--storage", finished["dir"] + "/none.journal"), "none.journal"),
    ]:
        p = _study(*args)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert text in p.stderr and "Traceback" not in p.stderr and p.stderr.count("\n") == 1


def test_cli_report(finished, tmp_path) -> None:
    p = _study("report", "q", "--storage", finished["storage"], "--output", str(tmp_path / "rep.html"))
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "rep.html").stat().st_size > 50_000 and "logged to MLflow run" in p.stdout


def test_cli_ui_serves_the_study_over_the_real_rest_api(finished, handle) -> None:
    """`study ui` starts a real MLflow server on localhost: the experiment, the nested trial
    runs and their per-epoch metric histories are all readable over its REST API."""
    import json
    import signal
    import time
    import urllib.request

    port = free_port()
    proc = subprocess.Popen(
        [STUDY, "ui", "q", "--storage", finished["storage"], "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        assert base in proc.stdout.readline()
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.5)

        def get(path: str) -> dict:
            with urllib.request.urlopen(base + path, timeout=10) as r:
                return json.loads(r.read())

        def post(path: str, body: dict) -> dict:
            req = urllib.request.Request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())

        exp = get("/api/2.0/mlflow/experiments/get-by-name?experiment_name=q")["experiment"]
        runs = post("/api/2.0/mlflow/runs/search", {"experiment_ids": [exp["experiment_id"]], "max_results": 100})["runs"]
        children = [r for r in runs if any(t["key"] == "mlflow.parentRunId" for t in r["data"].get("tags", []))]
        assert len(children) == 8 and len(runs) == 9  # eight trials nested under the study's run
        trials = handle.trials().set_index("run_id")
        for r in children[:3]:
            rid = r["info"]["run_id"]
            hist = get(f"/api/2.0/mlflow/metrics/get-history?run_id={rid}&metric_key=val_loss")["metrics"]
            assert sorted(m["step"] for m in hist) == list(range(1, int(trials.loc[rid, "stopped_epoch"]) + 1))
            assert r["info"]["status"] == "FINISHED"
    finally:
        import os

        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_overfitting_and_replay_on_the_study(handle) -> None:
    trials = handle.trials().set_index("number")
    over = handle.overfitting().set_index("trial")
    assert set(over.index) == set(trials.index)
    for n, row in over.iterrows():
        assert row["stopped_epoch"] == trials.loc[n, "stopped_epoch"]
        assert row["best_epoch"] == trials.loc[n, "best_epoch"]  # same rule as the trainer
        assert row["gap_at_best"] == pytest.approx(trials.loc[n, "gap_at_best"], rel=1e-6)
    replay = handle.replay_early_stopping(patiences=[1, 2])
    assert set(replay["patience"]) == {1, 2} and len(replay) == 2 * len(trials)
    exact = replay.drop_duplicates("trial").set_index("trial")["exact"]
    assert all(bool(exact[n]) == (trials.loc[n, "stop_reason"] == "completed") for n in trials.index)
    assert (replay["regret"] >= 0).all()


def test_pruning_audit_compares_pruned_trials_at_their_rung(tmp_path) -> None:
    raw = {
        "name": "audit",
        "dataset": "digits",
        "space": "optimizers",
        "fixed": {"epochs": 6, "depth": 1, "width": 16},
        "trials": 8,
        "concurrency": 2,
        "pruner": {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 1},
        "sampler": {"name": "random", "seed": 3},
        "storage": f"journal:{tmp_path / 'optuna.journal'}",
        "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    prep = prepare(parse_spec(raw, source="test"))
    assert run_study(prep, executor=_in_process, say=lambda m: None, flush_seconds=0.0).finished
    h = study.load("audit", storage=raw["storage"])
    trials = h.trials()
    pruned = trials[trials["state"] == "PRUNED"]
    assert len(pruned) >= 1  # the median pruner stopped some of the eight
    audit = h.pruning_audit()
    assert audit["trial"].tolist() == sorted(pruned["number"].tolist())
    for _, a in audit.iterrows():
        p = pruned[pruned["number"] == a["trial"]].iloc[0]
        assert a["step"] == p["pruned_step"] and a["value"] == pytest.approx(p["pruned_value"])
        assert a["n_compared"] >= 1


def test_multi_objective_study_loads_ranks_and_reports(tmp_path) -> None:
    (tmp_path / "space.yaml").write_text(SPACE)
    raw = {
        "name": "multi",
        "dataset": "digits",
        "space": str(tmp_path / "space.yaml"),
        "objectives": [{"metric": "val_acc"}, {"metric": "n_params"}],
        "trials": 6,
        "concurrency": 2,
        "sampler": {"name": "random", "seed": 2},
        "storage": f"journal:{tmp_path / 'optuna.journal'}",
        "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    prep = prepare(parse_spec(raw, source="test"))
    assert run_study(prep, executor=_in_process, say=lambda m: None, flush_seconds=0.0).finished
    h = study.load("multi", storage=raw["storage"])  # the stored spec reads back
    assert h.directions == ["maximize", "minimize"]
    best = h.best_trials(k=6)
    assert best["value_0"].tolist() == sorted(best["value_0"].tolist(), reverse=True)  # val_acc, maximized
    front = h.pareto_front()
    assert 1 <= len(front) <= 6 and set(front["number"]) <= set(best["number"])
    with pytest.raises(ValueError, match="needs a single-objective study"):
        h.best_trials(scope="last")
    rep = h.report(str(tmp_path / "multi.html"))
    assert rep.html_path.is_file() and rep.figures


def test_a_tracking_store_that_is_not_there_is_an_error_not_a_new_store(finished, tmp_path) -> None:
    from study.spec import SpecError

    missing = tmp_path / "nodir" / "m.db"
    with pytest.raises(SpecError, match="does not exist"):
        study.load("q", storage=finished["storage"], tracking_uri=f"sqlite:///{missing}")
    with pytest.raises(SpecError, match="no such MLflow database"):
        study.load("q", storage=finished["storage"], tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    with pytest.raises(SpecError, match="unknown kind of URI"):
        study.load("q", storage=finished["storage"], tracking_uri="foo://x")
    assert not (tmp_path / "nodir").exists() and not (tmp_path / "m.db").exists()


def test_load_takes_the_storage_from_the_environment(finished, monkeypatch) -> None:
    monkeypatch.setenv("HPSTUDY_STORAGE", finished["storage"])
    assert len(study.load("q").trials(with_runs=False)) == 8
