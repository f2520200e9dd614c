"""`study submit`: the driver as a Ray Job on a real token-authenticated Ray (infra/local, Ray only),
with the session's PostgreSQL and MLflow server as the study's storage and tracking."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from study.record import TrialRecord

from .conftest import LOCAL, free_port, make_state_dir, read_env_file, run_script, script_env

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def ray_jobs() -> Any:
    """A Ray head (dashboard + Jobs API, token auth) and one 2-CPU worker started by infra/local."""
    state = make_state_dir("hpst-job-")
    ports = {k: free_port() for k in ("HPSTUDY_RAY_PORT", "HPSTUDY_RAY_DASHBOARD_PORT", "HPSTUDY_RAY_CLIENT_PORT")}
    env = script_env(state, HPSTUDY_LOCAL_COMPONENTS="ray", HPSTUDY_RAY_HEAD_CPUS=1, HPSTUDY_RAY_WORKERS="2:0",
                     HPSTUDY_RAY_OBJECT_STORE_MB=80, **ports)  # fmt: skip
    try:
        run_script("start.sh", env, timeout=240)
        yield read_env_file(state / "cluster.env")
    finally:
        subprocess.run([str(LOCAL / "stop.sh"), "--purge"], env=env, capture_output=True, timeout=120, check=False)
        shutil.rmtree(state, ignore_errors=True)


def client_env(values: dict[str, str], **extra: str) -> dict[str, str]:
    own = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_TRACKING", "HPSTUDY_"))}
    ray = {k: v for k, v in values.items() if k.startswith(("RAY_", "HPSTUDY_RAY_"))}  # not the env file's storage
    return {**own, **ray, **extra}


def study(*args: str, env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    cli = shutil.which("study", path=str(BIN))
    assert cli, f"`study` entry point not installed in {BIN}"
    return subprocess.run([cli, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_submit_runs_the_study_as_a_ray_job(ray_jobs: dict[str, str], postgres: Any, mlflow_server: Any, tmp_path: Path) -> None:
    name = f"submitted-{uuid.uuid4().hex[:8]}"
    storage = postgres.create_database(name.replace("-", "_"))
    spec = {
        "name": name,
        "dataset": {"name": "gaussian_mixture", "args": {"n_samples": 300, "n_features": 6, "n_classes": 3}},
        "space": "optimizers",
        "fixed": {"epochs": 3, "depth": 1, "width": 8},
        "trials": 2,
        "pruner": "none",
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    dash = ray_jobs["HPSTUDY_RAY_DASHBOARD"]
    # credentials from the environment only: nothing secret on the command line
    env = client_env(ray_jobs, HPSTUDY_STORAGE=storage, MLFLOW_TRACKING_URI=mlflow_server.uri)
    sub = study("submit", "spec.yaml", "--address", dash, env=env, cwd=tmp_path)
    assert sub.returncode == 0, sub.stderr
    job_id = sub.stdout.strip().splitlines()[-1]
    assert job_id.startswith("raysubmit_"), sub.stdout
    password = storage.split(":")[2].split("@")[0]
    assert password not in sub.stdout + sub.stderr

    logs = study("logs", job_id, "--address", dash, "--follow", env=env, cwd=tmp_path)
    assert logs.returncode == 0, logs.stdout[-3000:] + logs.stderr
    assert f"study {name}: 2 finished of 2" in logs.stdout, logs.stdout[-3000:]
    assert password not in logs.stdout
    status = study("status", "--job", job_id, "--address", dash, env=env, cwd=tmp_path)
    assert status.returncode == 0 and "SUCCEEDED" in status.stdout, status.stdout + status.stderr

    stored = optuna.load_study(study_name=name, storage=storage)
    assert sum(TrialRecord.of(t).counted for t in stored.get_trials()) == 2
    client = MlflowClient(mlflow_server.uri)
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 3  # the parent and two trials

    # the Jobs API without the right token: one clear message, no traceback
    bad = client_env(ray_jobs, RAY_AUTH_TOKEN="0" * 48)
    denied = study("status", "--job", job_id, "--address", dash, env=bad, cwd=tmp_path)
    assert denied.returncode == 2 and "cannot reach the Ray Jobs API" in denied.stderr and "Traceback" not in denied.stderr


MODEL = """\
from torch import nn


def build(n_inputs, n_classes, hidden=4):
    return nn.Sequential(nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))
"""


def test_submit_ships_the_users_model_with_the_spec_folder(
    ray_jobs: dict[str, str], postgres: Any, mlflow_server: Any, tmp_path: Path
) -> None:
    """The spec and the user's model file live in a folder of their own, submitted from another
    folder: the job carries the spec's folder, the driver finds the file next to the spec and
    every trial trains the user's module in a worker's copy of the folder."""
    name = f"submitted-model-{uuid.uuid4().hex[:8]}"
    storage = postgres.create_database(name.replace("-", "_"))
    user = tmp_path / "user"
    (user / "nets").mkdir(parents=True)
    (user / "nets" / "tiny.py").write_text(MODEL)
    spec = {
        "name": name,
        "dataset": {"name": "gaussian_mixture", "args": {"n_samples": 300, "n_features": 6, "n_classes": 3}},
        "model": "nets/tiny.py:build",
        "space": {"parameters": {"hidden": {"int": [4, 8]}}},
        "fixed": {"epochs": 2},
        "trials": 2,
        "pruner": "none",
    }
    (user / "spec.yaml").write_text(yaml.safe_dump(spec))
    env = client_env(ray_jobs, HPSTUDY_STORAGE=storage, MLFLOW_TRACKING_URI=mlflow_server.uri)
    sub = study("submit", "user/spec.yaml", "--address", ray_jobs["HPSTUDY_RAY_DASHBOARD"], env=env, cwd=tmp_path)
    assert sub.returncode == 0, sub.stderr
    job_id = sub.stdout.strip().splitlines()[-1]
    logs = study("logs", job_id, "--address", ray_jobs["HPSTUDY_RAY_DASHBOARD"], "--follow", env=env, cwd=tmp_path)
    assert logs.returncode == 0, logs.stdout[-3000:] + logs.stderr
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    assert [t.user_attrs["stop_reason"] for t in trials] == ["completed", "completed"]
    for t in trials:
        h = t.params["hidden"]
        assert t.user_attrs["n_params"] == 6 * h + h + h * 3 + 3  # the user's module
        copy = Path(t.user_attrs["placement"]["code_path"])
        assert copy.parts[-2:] == ("nets", "tiny.py") and "runtime_resources" in copy.parts
    code = optuna.load_study(study_name=name, storage=storage).user_attrs["hpstudy.code"]
    assert code["ref"] == "nets/tiny.py:build" and code["path"].endswith("/nets/tiny.py")


def test_submit_refuses_code_outside_the_spec_folder(
    ray_jobs: dict[str, str], mlflow_server: Any, postgres: Any, tmp_path: Path
) -> None:
    (tmp_path / "tiny.py").write_text(MODEL)
    (tmp_path / "user").mkdir()
    storage = postgres.create_database(f"outside_{uuid.uuid4().hex[:8]}")
    (tmp_path / "user" / "spec.yaml").write_text(yaml.safe_dump({"name": "outside", "model": "../tiny.py:build"}))
    env = client_env(ray_jobs, HPSTUDY_STORAGE=storage, MLFLOW_TRACKING_URI=mlflow_server.uri)
    p = study("submit", "user/spec.yaml", "--address", ray_jobs["HPSTUDY_RAY_DASHBOARD"], env=env, cwd=tmp_path)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "is outside the spec's folder" in p.stderr and "Traceback" not in p.stderr


def test_submit_refuses_a_local_storage_file(ray_jobs: dict[str, str], mlflow_server: Any, tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({"name": "local-file", "space": "optimizers", "trials": 1}))
    env = client_env(ray_jobs, MLFLOW_TRACKING_URI=mlflow_server.uri)
    p = study("submit", "spec.yaml", "--address", ray_jobs["HPSTUDY_RAY_DASHBOARD"], env=env, cwd=tmp_path)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "a submitted study needs a database server" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / ".hpstudy").exists()
