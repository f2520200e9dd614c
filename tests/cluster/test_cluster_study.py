"""Studies at cluster scale: real multi-node Ray (`ray_cluster`), PostgreSQL storage (`postgres`)
and an MLflow server (`mlflow_server`), driven by `study` subprocesses as a user would.

Faults: a worker node killed mid-study, two drivers on one study, the MLflow server down for a
while; and placement: GPU trials only on the GPU node, two of them sharing its one GPU."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from study.record import TrialRecord, mlflow_status
from study.stores.optuna_storage import open_storage

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
TINY_SPACE = """\
name: tiny
description: Learning rate only, on a one-layer net; for the cluster tests.
fixed: {depth: 1, width: 8, batch_size: 64, epochs: 3}
parameters:
  lr: {float: [1.0e-3, 0.3], log: true}
"""
DATA = {"name": "gaussian_mixture", "args": {"n_samples": 1500, "n_features": 20, "n_classes": 3}}


@pytest.fixture
def study_cli() -> str:
    path = shutil.which("study", path=str(BIN))
    assert path, f"`study` entry point not installed in {BIN}: pip install -e ."
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "tiny.yaml").write_text(TINY_SPACE)
    return tmp_path


def new_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def write_spec(folder: Path, name: str, storage: str, tracking: str, **changes: Any) -> Path:
    spec: dict[str, Any] = {
        "name": name,
        "dataset": DATA,
        "space": str(folder / "tiny.yaml"),
        "trials": 4,
        "pruner": "none",
        "storage": storage,
        "tracking_uri": tracking,
    }
    spec.update(changes)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def launch(study_cli: str, spec: Path, address: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [study_cli, "launch", str(spec), "--address", address, "--quiet", *extra],
        cwd=spec.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def load(name: str, storage: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(storage))


def wait_for(what: str, cond: Any, proc: subprocess.Popen[str] | None = None, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the driver exited ({proc.returncode}) before {what}:\n{proc.communicate()[0][-3000:]}")
        try:
            got = cond()
        except KeyError:  # the study does not exist yet
            got = None
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def where(t: Any) -> dict[str, str]:
    """Where a trial ran: host, Ray node id, GPU ids, start time (recorded from its start event)."""
    return dict(t.user_attrs.get("placement") or {})


def runs_by_trial(tracking: str, name: str) -> tuple[dict[int, list[Any]], list[Any]]:
    client = MlflowClient(tracking)
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    by: dict[int, list[Any]] = {}
    for r in runs:
        if "trial_number" in r.data.tags:
            by.setdefault(int(r.data.tags["trial_number"]), []).append(r)
    return by, runs


def check_recorded(study: optuna.Study, tracking: str, target: int) -> dict[int, Any]:
    """Exactly `target` counted trials, nothing RUNNING/WAITING in Optuna or MLflow, one run per
    trial agreeing with Optuna on status, state and stop reason."""
    trials = study.get_trials()
    assert sum(TrialRecord.of(t).counted for t in trials) == target
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    by, runs = runs_by_trial(tracking, study.study_name)
    assert not [r.info.run_id for r in runs if r.info.status in ("RUNNING", "SCHEDULED")]
    assert sorted(by) == [t.number for t in trials]
    assert all(len(v) == 1 for v in by.values()), {k: len(v) for k, v in by.items() if len(v) > 1}
    for t in trials:
        run = by[t.number][0]
        assert run.info.status == mlflow_status(t.state), t.number
        assert run.data.tags["state"] == t.state.name and run.data.tags["stop_reason"] == t.user_attrs["stop_reason"]
    return {k: v[0] for k, v in by.items()}


RESOURCES_PROBE = """
import json, sys, time, ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
deadline = time.monotonic() + 30
while True:
    total, free = ray.cluster_resources(), ray.available_resources()
    if free.get("CPU", 0) == total.get("CPU") or time.monotonic() > deadline:
        break
    time.sleep(0.5)
print(json.dumps({"total": total.get("CPU"), "free": free.get("CPU", 0), "nodes": sum(n["Alive"] for n in ray.nodes())}))
"""


def cpus(address: str) -> dict[str, float]:
    p = subprocess.run([sys.executable, "-c", RESOURCES_PROBE, address], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- node killed
def test_worker_node_killed_mid_study(ray_cluster: Any, postgres: Any, mlflow_server: Any, folder: Path, study_cli: str) -> None:
    name = new_name("nodekill")
    storage = postgres.create_database(name.replace("-", "_"))
    # about 3 s a trial: long enough to be running when the node goes
    spec = write_spec(folder, name, storage, mlflow_server.uri, trials=6, concurrency=5, retries=2,
                      fixed={"epochs": 1200, "width": 64})  # fmt: skip
    victim = ray_cluster.cpu_worker
    killed_id = victim.node_id
    proc = launch(study_cli, spec, ray_cluster.address)

    def on_victim() -> list[int]:
        trials = load(name, storage).get_trials()
        return [
            t.number
            for t in trials
            if t.state == TrialState.RUNNING and where(t).get("node_id") == killed_id and len(t.intermediate_values) >= 2
        ]

    hit = wait_for("a trial running on the CPU worker", on_victim, proc)
    ray_cluster.replace_node(victim)  # SIGKILL the node, then a fresh one in its place
    finish(proc)

    study = load(name, storage)
    check_recorded(study, mlflow_server.uri, 6)
    trials = study.get_trials()
    died = [t for t in trials if t.user_attrs.get("stop_reason") == "worker_died"]
    assert {t.number for t in died} >= set(hit), [
        (t.number, t.user_attrs.get("stop_reason"), t.user_attrs.get("error")) for t in trials
    ]
    for t in died:  # (a retry placed on the node before Ray saw it die dies before it starts: no node_id)
        assert t.state == TrialState.FAIL and where(t).get("node_id", killed_id) == killed_id and t.user_attrs["retried"]
        (retry,) = [r for r in trials if r.user_attrs.get("retry_of") == t.number]
        assert retry.params == t.params
        if retry.state.is_finished() and retry.user_attrs["stop_reason"] != "worker_died":
            assert where(retry)["node_id"] != killed_id  # ran elsewhere
    assert len({where(t).get("node_id") for t in trials}) >= 2  # the study spread over nodes
    seen = cpus(ray_cluster.address)
    assert seen == {"total": 5.0, "free": 5.0, "nodes": 3}, seen  # nothing holds a CPU of a dead task


# ------------------------------------------------------------------------------ GPU trials
def test_gpu_trials_run_only_on_the_gpu_node_two_sharing_it(
    ray_cluster: Any, postgres: Any, mlflow_server: Any, folder: Path, study_cli: str
) -> None:
    name = new_name("gpu")
    storage = postgres.create_database(name.replace("-", "_"))
    spec = write_spec(folder, name, storage, mlflow_server.uri, trials=4, resources={"cpus": 1, "gpus": 0.5},
                      fixed={"epochs": 300, "width": 64})  # fmt: skip
    finish(launch(study_cli, spec, ray_cluster.address))
    study = load(name, storage)
    runs = check_recorded(study, mlflow_server.uri, 4)
    trials = study.get_trials()
    gpu_node = ray_cluster.gpu_worker.node_id
    assert {where(t)["node_id"] for t in trials} == {gpu_node}
    assert {runs[t.number].data.tags["node_id"] for t in trials} == {gpu_node}
    assert {where(t)["gpu_ids"] for t in trials} == {"0"}  # the node's one logical GPU, for every trial
    # two trials on that GPU at once: each started before the other finished
    spans = sorted((float(where(t)["started_at"]), t.datetime_complete.timestamp()) for t in trials)
    assert any(b_start < a_end for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False)), spans


# ----------------------------------------------------------------------------- two drivers
def test_two_drivers_share_a_study_in_postgres(
    ray_cluster: Any, postgres: Any, mlflow_server: Any, folder: Path, study_cli: str
) -> None:
    name = new_name("twodrivers")
    storage = postgres.create_database(name.replace("-", "_"))
    spec = write_spec(folder, name, storage, mlflow_server.uri, trials=8, concurrency=2, fixed={"epochs": 150, "width": 32})
    first = launch(study_cli, spec, ray_cluster.address)
    wait_for("the first driver's first trial", lambda: load(name, storage).get_trials(), first)
    second = launch(study_cli, spec, ray_cluster.address)  # same study, same storage, a second process
    out = finish(second) + finish(first)
    assert "is being run by process" not in out

    study = load(name, storage)
    check_recorded(study, mlflow_server.uri, 8)
    trials = study.get_trials()
    assert len(trials) == 8  # exactly what was asked: no trial beyond the target, none re-run
    assert sorted(t.number for t in trials) == list(range(8))
    drivers = {t.user_attrs["driver"] for t in trials}
    assert drivers == {f"{socket.gethostname()}:{first.pid}", f"{socket.gethostname()}:{second.pid}"}


def test_a_second_driver_on_a_local_storage_file_is_refused(ray_cluster: Any, folder: Path, study_cli: str) -> None:
    name = new_name("onefile")
    storage = f"journal:{folder / 'optuna.journal'}"
    tracking = f"sqlite:///{folder / 'mlflow.db'}"
    spec = write_spec(folder, name, storage, tracking, trials=3, concurrency=1, fixed={"epochs": 400, "width": 64})
    first = launch(study_cli, spec, ray_cluster.address)
    wait_for("the first driver's first trial", lambda: load(name, storage).get_trials(), first)
    second = subprocess.run(
        [study_cli, "launch", str(spec), "--address", ray_cluster.address, "--quiet"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 2 and f"is being run by process {first.pid}" in second.stderr, second.stderr
    assert second.stderr.count("this machine's disk") == 1  # the local-file warning, once
    finish(first)


# --------------------------------------------------------------------------- MLflow outage
def sync_cli(study_cli: str, name: str, storage: str) -> str:
    p = subprocess.run([study_cli, "sync", name], env={**os.environ, "HPSTUDY_STORAGE": storage},
                       capture_output=True, text=True, timeout=180)  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def test_mlflow_outage_then_sync(ray_cluster: Any, postgres: Any, mlflow_server: Any, folder: Path, study_cli: str) -> None:
    name = new_name("outage")
    storage = postgres.create_database(name.replace("-", "_"))
    epochs = 1000  # a few seconds a trial: the server goes down while the study still has trials to run
    spec = write_spec(folder, name, storage, mlflow_server.uri, trials=6, concurrency=2, fixed={"epochs": epochs, "width": 64})
    proc = launch(study_cli, spec, ray_cluster.address)
    try:
        wait_for("a finished trial", lambda: any(t.state.is_finished() for t in load(name, storage).get_trials()), proc)
        mlflow_server.stop()
        assert not mlflow_server.is_up()
        out = finish(proc)  # the study goes on without MLflow
    finally:
        if not mlflow_server.is_up():
            mlflow_server.start()
    assert "study sync " + name in out, out[-3000:]
    study = load(name, storage)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6  # nothing reported to Optuna was lost
    assert all(sorted(t.intermediate_values) == list(range(1, epochs + 1)) for t in trials)
    by, _ = runs_by_trial(mlflow_server.uri, name)
    assert len(by) < 6 or any(r[0].info.status == "RUNNING" for r in by.values())  # MLflow missed part of it

    first = sync_cli(study_cli, name, storage)
    assert "run(s) created" in first and "parent run closed" in first, first
    runs = check_recorded(study, mlflow_server.uri, 6)
    client = MlflowClient(mlflow_server.uri)
    for t in trials:
        steps = {m.step for m in client.get_metric_history(runs[t.number].info.run_id, "val_loss")}
        assert steps >= set(t.intermediate_values), t.number
        assert runs[t.number].data.metrics["objective"] == pytest.approx(t.value)
        assert runs[t.number].data.params["lr"] == str(t.params["lr"])
    parent = [
        r for r in client.search_runs([client.get_experiment_by_name(name).experiment_id]) if "trial_number" not in r.data.tags
    ]
    assert [r.info.status for r in parent] == ["FINISHED"]

    again = sync_cli(study_cli, name, storage)  # idempotent
    assert "0 run(s) created, 0 completed, 0 epoch point(s)" in again and "parent run closed" not in again, again
    assert {k: v.info.run_id for k, v in check_recorded(study, mlflow_server.uri, 6).items()} == {
        k: v.info.run_id for k, v in runs.items()
    }
