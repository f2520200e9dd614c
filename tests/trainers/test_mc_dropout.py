"""Monte-Carlo dropout evaluation (`dropout_eval="mc"`): the average prediction of thinned
networks, checked against an exact enumeration of every mask, and the training it leaves alone."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from trainers import TrainConfig, load_dataset, train
from trainers.numpy_mlp import MLP
from trainers.numpy_mlp.losses import softmax


def _small_net(p: float, samples: int = 100) -> tuple[MLP, np.ndarray]:
    cfg = TrainConfig(depth=1, width=4, dropout=p, dropout_eval="mc", mc_samples=samples, seed=2, init="small")
    net = MLP(cfg, 3, 3, dtype=np.float64)
    rng = np.random.default_rng(0)
    for W in net.W:
        W[...] = rng.normal(0, 1.5, W.shape)
    return net, rng.normal(size=(6, 3))


def test_mc_average_matches_the_exact_average_over_every_mask() -> None:
    p = 0.5
    net, X = _small_net(p)
    h = np.maximum(X @ net.W[0] + net.b[0], 0)
    exact = np.zeros((len(X), 3))
    for keep in itertools.product([0, 1], repeat=4):  # all 16 thinned networks of the 4 hidden units
        k = np.array(keep)
        prob = np.prod(np.where(k == 1, 1 - p, p))
        exact += prob * softmax((h * k / (1 - p)) @ net.W[1] + net.b[1])
    mc = net.mc_probabilities(X, samples=40_000)
    np.testing.assert_allclose(mc, exact, atol=0.01)
    scaled = softmax(net.forward(X))
    assert np.abs(scaled - exact).max() > 0.02  # weight scaling is an approximation, not the average


def test_mean_logit_of_thinned_nets_is_the_scaled_logit() -> None:
    """Dropout right before a linear layer: E[logit] over masks is exactly the weight-scaled logit."""
    net, X = _small_net(0.3)
    rng = np.random.default_rng(7)
    mean = np.mean([net.forward(X, train=True, rng=rng) for _ in range(40_000)], axis=0)
    np.testing.assert_allclose(mean, net.forward(X), atol=0.03)


def test_evaluate_reports_the_mc_average() -> None:
    net, X = _small_net(0.5, samples=50)
    y = np.array([0, 1, 2, 0, 1, 2])
    state = net.mc_rng.bit_generator.state
    loss, acc, _ = net.evaluate(X, y)
    net.mc_rng.bit_generator.state = state
    probs = net.mc_probabilities(X)
    assert loss == pytest.approx(-np.log(probs[np.arange(6), y]).mean(), rel=1e-9)
    assert acc == pytest.approx(float((probs.argmax(axis=1) == y).mean()))


def test_mc_evaluation_leaves_training_alone_and_changes_only_evaluation() -> None:
    data = load_dataset("digits")
    cfg = TrainConfig(depth=1, width=32, epochs=2, dropout=0.5, seed=3)
    scale = train(cfg, data).history
    mc = train(cfg.replace(dropout_eval="mc", mc_samples=20), data).history
    assert [r.batch_loss for r in scale] == [r.batch_loss for r in mc]  # the same masks, the same steps
    assert [r.weight_norm for r in scale] == [r.weight_norm for r in mc]
    assert scale[-1].val_loss != mc[-1].val_loss
    no_dropout = cfg.replace(dropout=0.0)
    a, b = train(no_dropout, data).history[-1], train(no_dropout.replace(dropout_eval="mc"), data).history[-1]
    assert (a.val_loss, a.val_acc) == (b.val_loss, b.val_acc)  # nothing to sample without dropout


def test_bad_values_and_the_torch_backend() -> None:
    with pytest.raises(ValueError, match="dropout_eval must be one of scale, mc, got 'avg'"):
        TrainConfig(dropout_eval="avg")
    with pytest.raises(ValueError, match=r"mc_samples must be an integer in \[1, 10000\], got 0"):
        TrainConfig(mc_samples=0)
    pytest.importorskip("torch")
    from trainers.torch_mlp import TorchBackend

    with pytest.raises(ValueError, match="numpy backend only"):
        TorchBackend(TrainConfig(dropout=0.5, dropout_eval="mc"), load_dataset("spirals"))
