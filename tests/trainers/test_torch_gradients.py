"""The NumPy MLP's hand-written backprop against torch autograd, on the same weights (float64).

Random configurations of depth, widths, activation (maxout and leaky ReLU included), loss,
L1/L2 and batch size; plus the statistics the loop records (loss, accuracy, dead units,
weight norms, sparsity) computed by both backends on the same float32 weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainers import TrainConfig
from trainers.config import ACTIVATIONS, LOSSES
from trainers.data import Dataset
from trainers.numpy_mlp import MLP
from trainers.numpy_mlp.trainer import NumpyBackend
from trainers.torch_mlp import TorchBackend


def _dataset(X: np.ndarray, y: np.ndarray, n_classes: int) -> Dataset:
    e = np.zeros((0, X.shape[1]), X.dtype)
    return Dataset("t", X, y, X, y, e, np.zeros(0, np.int64), n_classes)


def _random_config(rng: np.random.Generator) -> TrainConfig:
    depth = int(rng.integers(0, 5))
    return TrainConfig(
        depth=depth,
        width=tuple(int(w) for w in rng.integers(1, 9, depth)) if depth else 3,
        activation=str(rng.choice(ACTIVATIONS)),
        maxout_pieces=int(rng.integers(2, 5)),
        leaky_slope=float(rng.uniform(0, 0.5)),
        loss=str(rng.choice(LOSSES)),
        l1=float(rng.choice([0.0, rng.uniform(0, 0.05)])),
        l2=float(rng.choice([0.0, rng.uniform(0, 0.2)])),
        init=str(rng.choice(["he", "glorot", "lecun"])),
        seed=int(rng.integers(0, 1000)),
    )


@pytest.mark.torch
@pytest.mark.parametrize("case", range(60))
def test_numpy_gradients_match_torch_autograd(case: int) -> None:
    rng = np.random.default_rng(1000 + case)
    cfg = _random_config(rng)
    n_in, n_cls, n = int(rng.integers(1, 7)), int(rng.integers(2, 6)), int(rng.integers(1, 20))
    X = rng.normal(size=(n, n_in))
    y = rng.integers(0, n_cls, n)
    net = MLP(cfg, n_in, n_cls, dtype=np.float64)
    for p in net.params:  # non-zero biases, weights off the L1 kink at 0
        p += rng.normal(0, 0.3, p.shape)
    ref = TorchBackend(cfg, _dataset(X.astype(np.float32), y, n_cls), init_params=net.params, dtype=torch.float64)
    loss, grads = net.loss_and_grads(X, y)
    t_loss, t_grads = ref.loss_and_grads(X, y)
    np.testing.assert_allclose(loss, t_loss, rtol=1e-12, err_msg=str(cfg))
    for i, (g, tg) in enumerate(zip(grads, t_grads, strict=True)):
        assert g.shape == tg.shape == net.params[i].shape
        np.testing.assert_allclose(g, tg, rtol=1e-9, atol=1e-12, err_msg=f"param {i} of {cfg}")


@pytest.mark.torch
def test_every_activation_and_loss_is_covered_by_the_random_cases() -> None:
    seen = {(c.activation, c.loss) for c in (_random_config(np.random.default_rng(1000 + i)) for i in range(60))}
    assert seen == {(a, lo) for a in ACTIVATIONS for lo in LOSSES}


@pytest.mark.torch
def test_maxout_column_layout_unit_j_is_max_of_columns_j_pieces() -> None:
    """Hidden unit j of a maxout layer is the max of columns j*p .. j*p+p-1, in both backends."""
    rng = np.random.default_rng(0)
    cfg = TrainConfig(depth=1, width=4, activation="maxout", maxout_pieces=3)
    X = rng.normal(size=(6, 5))
    net = MLP(cfg, 5, 2, dtype=np.float64)
    W0, b0, W1, b1 = net.params
    z = X @ W0 + b0
    h = np.array([[max(z[r, j * 3 + k] for k in range(3)) for j in range(4)] for r in range(6)])
    expected = h @ W1 + b1
    np.testing.assert_allclose(net.forward(X), expected, rtol=1e-12)
    be = TorchBackend(cfg, _dataset(X.astype(np.float32), np.zeros(6, np.int64), 2), init_params=net.params, dtype=torch.float64)
    np.testing.assert_allclose(be.forward(torch.as_tensor(X)).detach().numpy(), expected, rtol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "maxout", "tanh"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_evaluation_statistics_agree_on_the_same_weights(activation: str, loss: str) -> None:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, 10)).astype(np.float32)
    y = rng.integers(0, 4, 300)
    cfg = TrainConfig(depth=2, width=16, activation=activation, loss=loss)
    init = [p.copy() for p in MLP(cfg, 10, 4).params]
    init[1][:5] = -100.0  # five dead units in the first hidden layer (ReLU family)
    init[0][np.abs(init[0]) < 0.05] = 0.0  # some exact zeros for the sparsity statistic
    data = _dataset(X, y, 4)
    nb, tb = NumpyBackend(cfg, data, init), TorchBackend(cfg, data, init_params=init)
    n_loss, n_acc, n_dead = nb.evaluate("val")
    t_loss, t_acc, t_dead = tb.evaluate("val")
    np.testing.assert_allclose(t_loss, n_loss, rtol=1e-5)
    assert t_acc == n_acc
    assert t_dead == n_dead
    if activation in ("relu", "leaky_relu"):
        assert n_dead >= 5 / 32
    np.testing.assert_allclose(tb.weight_norms(), nb.weight_norms(), rtol=1e-5)
    assert tb.sparsity() == nb.sparsity() > 0
