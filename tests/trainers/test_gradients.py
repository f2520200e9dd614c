"""Finite-difference checks of MLP.loss_and_grads for every activation x loss x penalty."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from trainers import TrainConfig
from trainers.numpy_mlp import MLP


def _fd_check(cfg: TrainConfig, n_in: int = 5, n_cls: int = 4, n: int = 7, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_in))
    y = rng.integers(0, n_cls, n)
    net = MLP(cfg, n_in, n_cls, dtype=np.float64)
    # move weights off the L1 kink and make biases non-zero so their gradients are exercised
    for p in net.params:
        p += rng.normal(0, 0.3, p.shape)
    loss, grads = net.loss_and_grads(X, y)
    h = 1e-6
    for p, g in zip(net.params, grads, strict=True):
        num = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + h
            lp, _ = net.loss_and_grads(X, y)
            p[idx] = old - h
            lm, _ = net.loss_and_grads(X, y)
            p[idx] = old
            num[idx] = (lp - lm) / (2 * h)
        np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-7)
    assert np.isfinite(loss)


@pytest.mark.parametrize(
    "activation,loss,penalty",
    list(
        itertools.product(
            ["sigmoid", "tanh", "relu", "leaky_relu", "maxout"], ["cross_entropy", "mse"], ["none", "l1", "l2", "both"]
        )
    ),
)
def test_gradients_match_finite_differences(activation: str, loss: str, penalty: str) -> None:
    l1 = 0.01 if penalty in ("l1", "both") else 0.0
    l2 = 0.05 if penalty in ("l2", "both") else 0.0
    cfg = TrainConfig(depth=2, width=(4, 3), activation=activation, loss=loss, l1=l1, l2=l2, maxout_pieces=3, leaky_slope=0.1)
    _fd_check(cfg)


def test_softmax_regression_depth_zero_gradient() -> None:
    _fd_check(TrainConfig(depth=0, width=1, l2=0.1))


def test_cross_entropy_fused_gradient_is_softmax_minus_onehot_over_n() -> None:
    cfg = TrainConfig(depth=0, width=1)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(6, 3))
    y = np.array([0, 1, 2, 0, 1, 2])
    net = MLP(cfg, 3, 3, dtype=np.float64)
    _, grads = net.loss_and_grads(X, y)
    z = X @ net.W[0] + net.b[0]
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - np.eye(3)[y]) / len(y)
    np.testing.assert_allclose(grads[0], X.T @ dz, rtol=1e-12)
    np.testing.assert_allclose(grads[1], dz.sum(0), rtol=1e-12)


def test_penalties_apply_to_weights_not_biases() -> None:
    base = TrainConfig(depth=1, width=4)
    pen = base.replace(l1=0.3, l2=0.7)
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(5, 3)), np.array([0, 1, 0, 1, 1])
    a, b = MLP(base, 3, 2, dtype=np.float64), MLP(pen, 3, 2, dtype=np.float64)
    la, ga = a.loss_and_grads(X, y)
    lb, gb = b.loss_and_grads(X, y)
    w = np.concatenate([p.ravel() for p in a.W])
    assert lb - la == pytest.approx(0.3 * np.abs(w).sum() + 0.35 * (w**2).sum(), rel=1e-10)
    for i in range(a.n_layers):
        np.testing.assert_allclose(gb[2 * i] - ga[2 * i], 0.3 * np.sign(a.W[i]) + 0.7 * a.W[i], rtol=1e-10)
        np.testing.assert_array_equal(gb[2 * i + 1], ga[2 * i + 1])  # biases untouched
