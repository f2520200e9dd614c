"""Threads of a single run: one BLAS/OpenMP (and torch) thread unless told otherwise by
``threads=``, ``--threads`` or ``OMP_NUM_THREADS``; limits come back when the run ends."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import trainers.__main__ as cli
from trainers import TrainConfig, from_arrays, iter_train
from trainers.loop import resolve_threads

CFG = TrainConfig(depth=1, width=8, epochs=2)


def _data():
    import numpy as np

    rng = np.random.default_rng(0)
    y = np.arange(60) % 2
    return from_arrays(rng.normal(size=(60, 3)) + y[:, None], y)


DATA = _data()


def _blas() -> int:
    """The thread count of every BLAS and OpenMP pool in the process (numpy's, scipy's,
    torch's), which must agree."""
    (n,) = {i["num_threads"] for i in threadpool_info()}
    return n


def _inside(**kwargs) -> dict[str, int]:
    """Thread counts seen between the first and second epoch of a run."""
    gen = iter_train(CFG, DATA, **kwargs)
    next(gen)
    seen = {"blas": _blas()}
    if kwargs.get("backend") == "torch":
        import torch

        seen["torch"] = torch.get_num_threads()
    gen.close()
    return seen


@pytest.fixture(autouse=True)
def _two_threads_outside(monkeypatch: pytest.MonkeyPatch):
    """Start every test from 2-thread pools and no OMP_NUM_THREADS, whatever the machine;
    the libraries a run loads (scipy's BLAS, torch's OpenMP) are loaded already, so that
    the pools outside a run can be compared with those inside."""
    import scipy.linalg.blas  # noqa: F401
    import torch  # noqa: F401

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    with threadpool_limits(limits=2):
        yield


def test_one_thread_by_default_and_the_pool_comes_back() -> None:
    assert _blas() == 2
    assert _inside() == {"blas": 1}
    assert _blas() == 2


FRESH = """
import os, json
os.environ.pop("OMP_NUM_THREADS", None)
from threadpoolctl import threadpool_info, threadpool_limits
from trainers import TrainConfig, iter_train, load_dataset
data = load_dataset("spirals", n_samples=60)
outside = threadpool_limits(limits=2)  # numpy's pool; scipy's BLAS and torch are not loaded yet
gen = iter_train(TrainConfig(depth=1, width=8, epochs=2, optimizer="momentum"), data, backend="%s")
next(gen)
print(json.dumps({i["filepath"]: i["num_threads"] for i in threadpool_info()}))
"""


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_libraries_loaded_by_the_run_are_limited_too(backend: str) -> None:
    """In a fresh process the run itself loads scipy's BLAS (the numpy backend's axpy) or
    torch's OpenMP; those pools must be limited like numpy's."""
    out = subprocess.run([sys.executable, "-c", FRESH % backend], capture_output=True, text=True, check=True).stdout
    pools = json.loads(out)
    assert len(pools) >= 2 and set(pools.values()) == {1}, pools


def test_threads_argument_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _inside(threads=3) == {"blas": 3}
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # what Ray sets for a task with num_cpus=3
    assert _inside() == {"blas": 3}
    assert _inside(threads=1) == {"blas": 1}  # an explicit count wins over the environment
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    assert _inside() == {"blas": 1}
    assert _blas() == 2


def test_bad_thread_counts() -> None:
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            resolve_threads(bad)  # type: ignore[arg-type]


@pytest.mark.torch
def test_torch_backend_uses_the_same_count(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    before = torch.get_num_threads()
    assert _inside(backend="torch") == {"blas": 1, "torch": 1}
    assert _inside(backend="torch", threads=2) == {"blas": 2, "torch": 2}
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert _inside(backend="torch", threads=2)["torch"] == 2  # explicit beats the environment here too
    assert _inside(backend="torch")["torch"] == 3
    assert torch.get_num_threads() == before


def test_cli_threads_flag(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[int] = []
    real = cli.iter_train

    def spy(*args, **kwargs):
        gen = real(*args, **kwargs)
        first = next(gen)
        seen.append(_blas())
        yield first
        return (yield from gen)

    monkeypatch.setattr(cli, "iter_train", spy)
    common = ["--dataset", "spirals", "--epochs", "2", "--depth", "1", "--width", "8"]
    assert cli.main(common) == 0
    assert cli.main([*common, "--threads", "2"]) == 0
    assert seen == [1, 2]
    assert cli.main([*common, "--threads", "0"]) == 2
    assert "error: threads must be a positive integer, got '0'" in capsys.readouterr().err


def test_help_says_how_to_change_it() -> None:
    out = subprocess.run([sys.executable, "-m", "trainers", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--threads N" in out and "OMP_NUM_THREADS" in out and "else 1" in out


RAY = """
import json, os
os.environ.pop("OMP_NUM_THREADS", None)
import ray
from threadpoolctl import threadpool_info
from trainers import TrainConfig, iter_train, load_dataset

def threads_in_a_run():
    gen = iter_train(TrainConfig(depth=1, width=8, epochs=2), load_dataset("spirals", n_samples=60))
    next(gen)
    return sorted({i["num_threads"] for i in threadpool_info()})

ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
task = ray.remote(threads_in_a_run)
print(json.dumps(ray.get([task.options(num_cpus=1).remote(), task.options(num_cpus=2).remote()])))
ray.shutdown()
"""


@pytest.mark.integration
def test_a_ray_task_gets_its_cpu_count() -> None:
    """Ray sets OMP_NUM_THREADS to a task's num_cpus; a run inside it follows (a fresh
    process with its own local Ray, whatever Ray this test session runs)."""
    p = subprocess.run([sys.executable, "-c", RAY], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout.strip().splitlines()[-1]) == [[1], [2]]
