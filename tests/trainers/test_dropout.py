"""Dropout: masks per mini-batch, nothing dropped at evaluation, and inverted dropout's
expected outputs equal the lecture's form (plain dropout, weights times (1-p) at test)."""

from __future__ import annotations

import numpy as np

from trainers import TrainConfig
from trainers.numpy_mlp import MLP


def _net(p: float, ip: float = 0.0) -> tuple[MLP, np.ndarray]:
    cfg = TrainConfig(depth=2, width=16, activation="relu", dropout=p, input_dropout=ip, seed=4)
    net = MLP(cfg, 6, 3, dtype=np.float64)
    X = np.random.default_rng(0).normal(size=(5, 6))
    return net, X


def test_masks_resampled_every_forward_and_off_at_eval() -> None:
    net, X = _net(0.5, 0.2)
    a = net.forward(X, train=True)
    b = net.forward(X, train=True)
    assert not np.allclose(a, b)  # a new mask for each mini-batch
    e1, e2 = net.forward(X), net.forward(X)
    np.testing.assert_array_equal(e1, e2)  # evaluation is deterministic
    clean = MLP(net.config.replace(dropout=0.0, input_dropout=0.0), 6, 3, dtype=np.float64)
    np.testing.assert_array_equal(e1, clean.forward(X))  # and drops nothing


def test_mask_fraction_is_p() -> None:
    net, X = _net(0.3)
    net.forward(np.repeat(X, 400, axis=0), train=True, keep=True)
    mask = net._cache[1][1]  # the dropout mask on the first hidden layer's output
    assert abs(1 - mask.mean() - 0.3) < 0.02


def test_inverted_dropout_expectation_equals_lecture_weight_scaling() -> None:
    """The lecture trains with plain dropout (no rescaling) and multiplies the weights by
    (1-p) at test time. Inverted dropout scales by 1/(1-p) during training instead. With the
    same trained weights W_lecture = W_inverted / (1-p)... equivalently: the expected
    pre-activation of the layer after dropout under inverted dropout equals the lecture's
    test-time output with weights (1-p) W_plain, where W_plain = W_inv / (1-p)."""
    p = 0.4
    net, X = _net(p)
    h = np.maximum(X @ net.W[0] + net.b[0], 0)  # first hidden layer output (no dropout before it)
    W_inv, b1 = net.W[1], net.b[1]
    # Monte Carlo expectation of the next pre-activation under inverted dropout
    rng = np.random.default_rng(1)
    draws = 20000
    acc = np.zeros((len(X), W_inv.shape[1]))
    for _ in range(draws // 500):
        keep = rng.random((500, *h.shape)) >= p
        acc += ((h * keep / (1 - p)) @ W_inv + b1).sum(axis=0)
    mc_inverted = acc / draws
    # the lecture's form: the same net trained with plain dropout has W_plain = W_inv/(1-p);
    # at test time it uses (1-p) * W_plain
    W_plain = W_inv / (1 - p)
    lecture_test = h @ ((1 - p) * W_plain) + b1
    ours_eval = h @ W_inv + b1
    np.testing.assert_allclose(ours_eval, lecture_test, rtol=1e-12)
    np.testing.assert_allclose(mc_inverted, lecture_test, atol=0.03 * np.abs(lecture_test).max())
    # and the lecture's plain-dropout training pass has the same expectation at test scaling
    acc = np.zeros_like(acc)
    for _ in range(draws // 500):
        keep = rng.random((500, *h.shape)) >= p
        acc += ((h * keep) @ W_plain + b1).sum(axis=0)
    np.testing.assert_allclose(acc / draws, lecture_test, atol=0.03 * np.abs(lecture_test).max())


def test_dropout_gradient_uses_the_same_mask_as_forward() -> None:
    """With the mask fixed, the training gradient matches finite differences of the
    training loss (so backward applies exactly the forward's mask and scaling)."""
    net, X = _net(0.5, 0.3)
    y = np.array([0, 1, 2, 0, 1])
    state = net.rng.bit_generator.state
    loss, grads = net.loss_and_grads(X, y, train=True)
    h = 1e-6
    W = net.W[1]
    for idx in [(0, 0), (3, 2), (7, 5)]:
        old = W[idx]
        W[idx] = old + h
        net.rng.bit_generator.state = state
        lp, _ = net.loss_and_grads(X, y, train=True)
        W[idx] = old - h
        net.rng.bit_generator.state = state
        lm, _ = net.loss_and_grads(X, y, train=True)
        W[idx] = old
        assert abs((lp - lm) / (2 * h) - grads[2][idx]) < 1e-6
    assert np.isfinite(loss)
