"""Fixtures for the study engine tests: a tiny search space and spec, a study folder with real
MLflow (SQLite) and Optuna journal storage, and one real local Ray cluster for the session.

The Ray cluster is a `ray start --head --block` process on free ports: the tests join it
with `ray.init(address=...)`, subprocess drivers with `--address`, and stopping that one
process stops the cluster (never `ray stop`, which would stop other users' clusters)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ..ports import free_port

BIN = Path(sys.executable).parent

# The test cluster's own Ray auth token, for this process and the subprocess drivers it
# starts; never the shared ~/.ray/auth_token, which other clusters on the machine may
# rewrite. Ray reads these when it is imported, so they are set before any test imports it.
if os.environ.setdefault("RAY_AUTH_MODE", "token") == "token" and "RAY_AUTH_TOKEN_PATH" not in os.environ:
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))

TINY_SPACE = """\
name: tiny
description: Learning rate only, on a one-layer net; for the study engine's tests.
fixed: {depth: 1, width: 8, batch_size: 64, epochs: 3}
parameters:
  lr: {float: [1.0e-3, 0.3], log: true}
"""


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly migrated, empty MLflow SQLite database (creating one takes about a second)."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_mlflow_db: Path) -> Path:
    """A working folder, made current, holding the tiny space and a copy of an empty MLflow
    database (the tests' tracking URI)."""
    (tmp_path / "tiny.yaml").write_text(TINY_SPACE)
    shutil.copy(empty_mlflow_db, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tiny_spec(workdir: Path) -> Callable[..., dict[str, object]]:
    """Makes the spec of a small, fast study in `workdir`: 3 epochs of a one-layer net."""
    return lambda **changes: make_tiny_spec(workdir, **changes)


def make_tiny_spec(workdir: Path, **changes: object) -> dict[str, object]:
    spec: dict[str, object] = {
        "name": "tiny-study",
        "dataset": {"name": "gaussian_mixture", "args": {"n_samples": 300, "n_features": 6, "n_classes": 3}},
        "space": str(workdir / "tiny.yaml"),
        "trials": 4,
        "concurrency": 2,
        "pruner": "none",
        "tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}",
        "storage": f"journal:{workdir / 'optuna.journal'}",
    }
    spec.update(changes)
    return spec


@pytest.fixture(scope="session")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real 2-CPU Ray head for the whole session; the test process is connected to it."""
    import ray

    ray_bin = BIN / "ray"
    assert ray_bin.exists(), f"ray CLI not found at {ray_bin}: install the project with pip install -e ."
    port = free_port()
    log = tmp_path_factory.mktemp("ray") / "head.log"
    cmd = [
        str(ray_bin), "start", "--head", "--block", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
        "--disable-usage-stats", f"--dashboard-agent-listen-port={free_port()}",
    ]  # fmt: skip
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    with open(log, "w") as out:
        head = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if head.poll() is not None:
            raise RuntimeError(f"ray head exited with {head.returncode}:\n{log.read_text()[-3000:]}")
        try:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
            break
        except Exception:
            if time.monotonic() > deadline:
                os.killpg(head.pid, signal.SIGKILL)
                raise
            time.sleep(1)
    try:
        yield address
    finally:
        ray.shutdown()
        head.terminate()  # `ray start --block` stops the processes it started
        try:
            head.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)


@pytest.fixture
def study_cli() -> str:
    path = shutil.which("study", path=str(BIN))
    assert path, f"`study` entry point not installed in {BIN}: pip install -e ."
    return path
