"""The lecture's claims, checked on the trainer alone."""

from __future__ import annotations

import numpy as np
import pytest

from trainers import TrainConfig, load_dataset, train
from trainers.numpy_mlp import MLP


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _layer_grad_norms(activation: str, data) -> list[float]:
    net = MLP(TrainConfig(depth=8, width=64, activation=activation), data.n_features, data.n_classes)
    _, grads = net.loss_and_grads(data.X_train[:256], data.y_train[:256])
    return [float(np.linalg.norm(g)) for g in grads[0::2]]  # weight gradients, first to last


def test_vanishing_gradient_of_deep_sigmoid_nets_and_relu_fixes_it(digits) -> None:
    sig = _layer_grad_norms("sigmoid", digits)
    relu = _layer_grad_norms("relu", digits)
    assert sig[-1] / sig[0] >= 100  # lower layers learn orders of magnitude slower
    assert 0.1 <= relu[-1] / relu[0] <= 10  # ReLU keeps every layer's gradient comparable


def test_l1_leaves_many_more_near_zero_weights_than_l2_at_equal_strength(digits) -> None:
    common = dict(depth=1, width=32, epochs=15, optimizer="sgd", lr=0.05)
    l1 = train(TrainConfig(l1=3e-3, **common), digits).history[-1]
    l2 = train(TrainConfig(l2=3e-3, **common), digits).history[-1]
    assert l1.sparsity >= 0.15
    assert l1.sparsity >= 5 * max(l2.sparsity, 0.01)
    assert l1.val_acc > 0.9  # still a working classifier


def test_cross_entropy_learns_faster_than_squared_error_from_a_bad_start(digits) -> None:
    """With saturated wrong outputs the softmax+MSE gradient nearly vanishes."""
    common = dict(depth=1, width=32, epochs=3, optimizer="sgd", lr=0.1, seed=3)
    ce = train(TrainConfig(loss="cross_entropy", **common), digits).history[-1]
    mse = train(TrainConfig(loss="mse", **common), digits).history[-1]
    assert ce.val_acc > mse.val_acc


def _equal_budget_width(depth: int, n_in: int, budget: int) -> int:
    def n_params(w: int) -> int:
        sizes = [n_in, *([w] * depth), 2]
        return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=False))

    w = 1
    while n_params(w + 1) <= budget:
        w += 1
    return w


def test_deeper_beats_fatter_at_equal_parameter_count_on_rings() -> None:
    data = load_dataset("rings", n_samples=8000, n_features=8, bands=4)
    acc = {}
    for depth in (1, 4):
        w = _equal_budget_width(depth, 8, 600)  # 54 units at depth 1, 11 per layer at depth 4
        cfg = TrainConfig(depth=depth, width=w, epochs=40, optimizer="adam", lr=3e-3, batch_size=32)
        acc[depth] = max(h.val_acc for h in train(cfg, data).history)
    assert acc[4] > acc[1] + 0.1
