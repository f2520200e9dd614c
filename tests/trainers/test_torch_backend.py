"""The torch backend's own behaviour: optional import, devices, dropout, seeding, threads."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from trainers import TrainConfig, load_dataset, train
from trainers.torch_mlp import TorchBackend, resolve_device

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = load_dataset("spirals", n_samples=400)


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )


def test_trainers_import_and_numpy_backend_work_without_torch() -> None:
    proc = _python(
        """
        import sys
        sys.modules["torch"] = None  # as if torch were not installed: `import torch` raises ImportError
        import trainers
        from trainers import TrainConfig, load_dataset, train
        data = load_dataset("spirals", n_samples=200)
        print("numpy", train(TrainConfig(depth=1, width=8, epochs=2), data).stop_reason)
        try:
            train(TrainConfig(epochs=1), data, backend="torch")
        except ImportError as e:
            print("error:", e)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "numpy completed" in proc.stdout
    assert "error: the torch backend needs PyTorch" in proc.stdout
    assert "pip install torch" in proc.stdout and "hpstudy[torch]" in proc.stdout


def test_import_trainers_does_not_import_torch() -> None:
    proc = _python(
        """
        import sys
        from trainers import TrainConfig, load_dataset, train
        train(TrainConfig(depth=1, width=8, epochs=1), load_dataset("spirals", n_samples=200))
        print("torch imported:", "torch" in sys.modules)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "torch imported: False" in proc.stdout


@pytest.mark.torch
def test_devices() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    auto = resolve_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match=r"device must be one of cpu, cuda, auto .*got 'gpu'"):
        train(TrainConfig(epochs=1), DATA, backend="torch", device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is visible"):
            TorchBackend(TrainConfig(epochs=1), DATA, device="cuda")
    tb = TorchBackend(TrainConfig(epochs=1), DATA, device="auto")
    tensors = [*tb.params, *tb._X.values(), *tb._y.values()]
    assert all(t.device == tb.device for t in tensors)  # data moved once, at construction
    assert all(p.dtype == torch.float32 for p in tb.params)


@pytest.mark.torch
def test_initial_weights_are_the_numpy_mlps_for_the_same_seed() -> None:
    from trainers.numpy_mlp import MLP

    cfg = TrainConfig(depth=2, width=(7, 5), seed=11, activation="maxout")
    ref = MLP(cfg, DATA.n_features, DATA.n_classes).params
    got = TorchBackend(cfg, DATA).numpy_params()
    assert [g.shape for g in got] == [r.shape for r in ref]
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_array_equal(g, r)
    with pytest.raises(ValueError, match=r"init_params\[0\] must have shape \(2, 14\)"):
        TorchBackend(cfg, DATA, init_params=[np.zeros((3, 14)), *ref[1:]])


@pytest.mark.torch
def test_dropout_is_inverted_and_resampled_every_call() -> None:
    tb = TorchBackend(TrainConfig(dropout=0.3), DATA)
    a = torch.ones(2000, 50)
    m1, m2 = tb._dropout(a, 0.3), tb._dropout(a, 0.3)
    for m in (m1, m2):
        values = np.unique(m.numpy())
        np.testing.assert_allclose(values, [0.0, 1 / 0.7], rtol=1e-6)  # dropped, or kept and scaled by 1 / (1 - p)
        assert abs(float((m == 0).float().mean()) - 0.3) < 0.01
    assert not torch.equal(m1, m2)
    X = tb._X["val"]
    assert torch.equal(tb.forward(X), tb.forward(X))  # evaluation: no dropout
    assert not torch.equal(tb.forward(X, train=True), tb.forward(X, train=True))


@pytest.mark.torch
def test_seeding_same_seed_same_history_with_dropout() -> None:
    cfg = TrainConfig(depth=2, width=16, epochs=3, dropout=0.3, input_dropout=0.1, seed=4)
    a, b = train(cfg, DATA, backend="torch"), train(cfg, DATA, backend="torch")
    c = train(cfg.replace(seed=5), DATA, backend="torch")
    assert [h.metrics() | {"seconds": 0} for h in a.history] == [h.metrics() | {"seconds": 0} for h in b.history]
    assert a.history[-1].train_loss != c.history[-1].train_loss


@pytest.mark.torch
def test_threads_argument_sets_torch_intra_op_threads() -> None:
    before = torch.get_num_threads()
    try:
        TorchBackend(TrainConfig(epochs=1), DATA, threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.torch
def test_records_have_the_numpy_backends_shape() -> None:
    cfg = TrainConfig(depth=3, width=8, epochs=2, activation="relu")
    n, t = train(cfg, DATA, backend="numpy"), train(cfg, DATA, backend="torch")
    assert t.n_params == n.n_params and t.backend == "torch"
    assert n.history[-1].metrics().keys() == t.history[-1].metrics().keys()
    assert all(isinstance(v, float) for v in t.history[-1].metrics().values())


@pytest.mark.torch
def test_gpu_check_exits_cleanly_without_a_visible_gpu() -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    script = os.path.join(ROOT, "benchmarks", "gpu_check.py")
    proc = subprocess.run([sys.executable, script], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "no CUDA GPU visible; nothing to check"


@pytest.mark.torch
def test_a_thread_left_with_grad_mode_off_still_trains_the_same() -> None:
    """Grad mode is per thread and a Ray worker runs trial after trial on one thread: a trial
    cancelled (pruned) inside evaluation could leave it off, and every later trial on that
    worker failed with 'element 0 of tensors does not require grad'."""
    cfg = TrainConfig(depth=2, width=16, epochs=3, seed=4)
    reference = train(cfg, DATA, backend="torch")
    torch.set_grad_enabled(False)
    try:
        left_off = train(cfg, DATA, backend="torch")
    finally:
        torch.set_grad_enabled(True)
    strip = [h.metrics() | {"seconds": 0} for h in reference.history]
    assert [h.metrics() | {"seconds": 0} for h in left_off.history] == strip
