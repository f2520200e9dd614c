"""Each optimizer against its closed-form rule, written out independently in float64."""

from __future__ import annotations

import numpy as np
import pytest

from trainers import TrainConfig
from trainers.numpy_mlp.optimizers import make_optimizer

STEPS = 6


def _reference(cfg: TrainConfig, w0: np.ndarray, grads: list[np.ndarray], lrs: list[float], n_w: int) -> np.ndarray:
    """The update rules as the lecture / torch.optim docs write them, one line each."""
    w = w0.copy()
    b = np.zeros_like(w)
    s = np.zeros_like(w)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    mu, wd = cfg.momentum, cfg.weight_decay
    for t, (g, lr) in enumerate(zip(grads, lrs, strict=True), start=1):
        w[:n_w] = (1 - lr * wd) * w[:n_w]
        o = cfg.optimizer
        if o == "sgd":
            w = w - lr * g
        elif o == "momentum":
            b = mu * b + g
            w = w - lr * b
        elif o == "nesterov":
            b = mu * b + g
            w = w - lr * (g + mu * b)
        elif o == "adagrad":
            s = s + g * g
            w = w - lr * g / (np.sqrt(s) + cfg.eps)
        elif o == "rmsprop":
            s = cfg.rho * s + (1 - cfg.rho) * g * g
            w = w - lr * g / (np.sqrt(s) + cfg.eps)
        else:  # adam, adamw
            m = cfg.beta1 * m + (1 - cfg.beta1) * g
            v = cfg.beta2 * v + (1 - cfg.beta2) * g * g
            mhat = m / (1 - cfg.beta1**t)
            vhat = v / (1 - cfg.beta2**t)
            w = w - lr * mhat / (np.sqrt(vhat) + cfg.eps)
    return w


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"])
@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_optimizer_matches_closed_form(name: str, wd: float) -> None:
    cfg = TrainConfig(optimizer=name, lr=0.05, momentum=0.8, rho=0.7, beta1=0.85, beta2=0.95, eps=1e-6, weight_decay=wd)
    rng = np.random.default_rng(3)
    size, n_w = 12, 8
    w0 = rng.normal(size=size)
    grads = [rng.normal(size=size) for _ in range(STEPS)]
    lrs = [0.05, 0.04, 0.03, 0.05, 0.01, 0.02]  # a schedule changing between steps
    opt = make_optimizer(cfg, size, n_w, np.dtype(np.float64))
    w = w0.copy()
    for g, lr in zip(grads, lrs, strict=True):
        opt.step(w, g.copy(), lr)
    np.testing.assert_allclose(w, _reference(cfg, w0, grads, lrs, n_w), rtol=1e-12, atol=1e-14)


def test_weight_decay_is_the_lectures_rule_and_spares_biases() -> None:
    """w = 0.99 w - lr * grad for lr * wd = 0.01, on weights only."""
    cfg = TrainConfig(optimizer="sgd", lr=0.1, weight_decay=0.1)
    w = np.array([1.0, -2.0, 3.0, 4.0])
    g = np.array([0.5, 0.5, 0.5, 0.5])
    make_optimizer(cfg, 4, 3, np.dtype(np.float64)).step(w, g, 0.1)
    np.testing.assert_allclose(w, [0.99 * 1 - 0.05, 0.99 * -2 - 0.05, 0.99 * 3 - 0.05, 4 - 0.05])


def test_adamw_defaults_to_torch_weight_decay_and_adam_to_none() -> None:
    assert TrainConfig(optimizer="adamw").weight_decay == 0.01
    assert TrainConfig(optimizer="adam").weight_decay == 0.0
    assert TrainConfig(optimizer="adamw", weight_decay=0.0).weight_decay == 0.0
    assert TrainConfig(optimizer="adam").replace(optimizer="adamw").weight_decay == 0.01


def test_gradient_clipping_scales_to_max_norm() -> None:
    """One full-batch SGD step with clipping moves the weights by exactly lr * max_norm."""
    from trainers import from_arrays
    from trainers.numpy_mlp.trainer import NumpyBackend

    rng = np.random.default_rng(0)
    data = from_arrays(rng.normal(size=(64, 4)), rng.integers(0, 2, 64))
    cfg = TrainConfig(depth=1, width=8, optimizer="sgd", lr=0.1, max_grad_norm=1e-3, batch_size=64)
    for clip in (1e-3, None):
        b = NumpyBackend(cfg.replace(max_grad_norm=clip), data)
        w0 = b.net.flat.astype(np.float64)
        _, grads = b.net.loss_and_grads(data.X_train, data.y_train)
        norm = np.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads))
        assert norm > 1e-2  # clipping is active for this batch
        b.fit_epoch(np.arange(len(data.y_train)), 0.1)
        moved = np.linalg.norm(b.net.flat.astype(np.float64) - w0)
        want = 0.1 * 1e-3 * norm / (norm + 1e-6) if clip else 0.1 * norm
        assert moved == pytest.approx(want, rel=1e-3)
