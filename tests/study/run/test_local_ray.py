"""A driver that starts its own local Ray (no ``--address``) takes it along when it is
SIGKILLed: no process of that Ray is alive 10 s later (Ray's agents alone used to linger 30 to
80 s), so a ``study resume`` right after does not compete with leftovers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

pytestmark = pytest.mark.integration

SLOW = {"epochs": 400, "width": 64}
SLOW_DATA = {"name": "gaussian_mixture", "args": {"n_samples": 1500, "n_features": 20, "n_classes": 3}}


def _start_time(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError):
        return None


def _tree(pid: int) -> dict[int, tuple[int, str]]:
    """Every descendant of `pid`: pid -> (start time, command line)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(stat.parent.name))
    out: dict[int, tuple[int, str]] = {}
    todo = list(parents.get(pid, []))
    while todo:
        p = todo.pop()
        todo.extend(parents.get(p, []))
        started = _start_time(p)
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if started is not None:
            out[p] = (started, cmd)
    return out


def _alive(procs: dict[int, tuple[int, str]]) -> dict[int, str]:
    return {p: cmd for p, (started, cmd) in procs.items() if _start_time(p) == started}


def test_a_killed_drivers_local_ray_dies_with_it(workdir: Path, tiny_spec: Any, study_cli: str) -> None:
    spec = tiny_spec(dataset=SLOW_DATA, trials=6, concurrency=2, fixed=SLOW)
    (workdir / "spec.yaml").write_text(yaml.safe_dump(spec))
    driver = subprocess.Popen(
        [study_cli, "launch", "spec.yaml", "--quiet"], cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    storage = JournalStorage(JournalFileBackend(str(workdir / "optuna.journal")))
    deadline = time.monotonic() + 180
    while True:  # until a trial runs past its fifth epoch: Ray, its agents and workers are all up
        assert driver.poll() is None, driver.communicate()[1]
        assert time.monotonic() < deadline, "no trial ever ran"
        try:
            trials = optuna.load_study(study_name="tiny-study", storage=storage).get_trials()
        except (KeyError, FileNotFoundError):
            trials = []
        if any(t.state == TrialState.RUNNING and len(t.intermediate_values) > 5 for t in trials):
            break
        time.sleep(0.5)
    procs = {p: v for p, v in _tree(driver.pid).items() if "study.stores.writer" not in v[1] and "study.run.reaper" not in v[1]}
    names = " ".join(cmd for _, cmd in procs.values())
    assert "raylet" in names and "gcs_server" in names and "ray::" in names, names  # the whole local Ray
    driver.send_signal(signal.SIGKILL)
    driver.wait(30)
    time.sleep(10)
    assert _alive(procs) == {}


_THREADS_PROBE = """
import json, os, sys
for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.pop(k, None)
import ray
from study.run.ray_executor import start_ray, stop_ray
assert start_ray(None, threads=3)
@ray.remote(num_cpus=1)
def env():
    return {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
out = {"worker": ray.get(env.remote()), "driver": [os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")],
       "job": ray.get_runtime_context().runtime_env}
stop_ray()
print(json.dumps(out))
"""


def test_a_local_rays_workers_get_the_thread_counts_from_its_environment(workdir: Path) -> None:
    """A local Ray started by `start_ray` passes the BLAS thread counts to its workers in its
    processes' environment, not in a runtime environment (which Ray's agent prepares for every
    worker process it starts, 0.3 s each); the driver's own environment stays as it was."""
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", _THREADS_PROBE], cwd=workdir, capture_output=True, text=True, timeout=180,
        env={**os.environ, "PYTHONPATH": str(root)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["worker"] == {"OMP_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}
    assert out["driver"] == [None, None]
    assert "env_vars" not in out["job"]
