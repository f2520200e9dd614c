"""The training loop: early stopping and restore_best on constructed curves, divergence,
stopping by the caller, determinism, and the records' contents."""

from __future__ import annotations

import math

import numpy as np
import pytest

import trainers.loop as loop
from trainers import TrainConfig, from_arrays, iter_train, load_dataset, train


class ScriptedBackend:
    """Plays back a constructed validation curve; weights are just the epoch number."""

    name = "scripted"
    n_params = 1
    n_layers = 1

    def __init__(self, val_losses: list[float], val_accs: list[float] | None = None) -> None:
        self.val_losses = val_losses
        self.val_accs = val_accs or [0.5] * len(val_losses)
        self.epoch = 0
        self.weights = np.zeros(1)

    def fit_epoch(self, order: np.ndarray, lr: float) -> tuple[float, bool, list[float]]:
        self.epoch += 1
        self.weights[0] = self.epoch
        return 1.0, math.isfinite(self.val_losses[self.epoch - 1]), [0.0]

    def evaluate(self, split: str) -> tuple[float, float, float]:
        if split == "test":  # the test score reveals which epoch's weights are loaded
            return float(self.weights[0]), float(self.weights[0]) / 100, 0.0
        i = self.epoch - 1
        return self.val_losses[i] * (0.5 if split == "train" else 1.0), self.val_accs[i], 0.0

    def weight_norms(self) -> list[float]:
        return [float(self.weights[0])]

    def sparsity(self) -> float:
        return 0.0

    def snapshot(self) -> np.ndarray:
        return self.weights.copy()

    def restore(self, snap: np.ndarray) -> None:
        self.weights[...] = snap

    def finite_params(self) -> bool:
        return True


@pytest.fixture()
def tiny():
    rng = np.random.default_rng(0)
    return from_arrays(rng.normal(size=(40, 3)), rng.integers(0, 2, 40), test=0.2)


def scripted(monkeypatch, curve, accs=None):
    monkeypatch.setattr(loop, "make_backend", lambda *a, **k: ScriptedBackend(curve, accs))


def test_early_stopping_with_patience_and_restore_best(monkeypatch, tiny) -> None:
    # best at epoch 3 (0.5); epochs 4, 5 do not improve; patience 2 stops after epoch 5
    scripted(monkeypatch, [1.0, 0.7, 0.5, 0.55, 0.6, 0.3, 0.2])
    r = train(TrainConfig(epochs=7, patience=2), tiny)
    assert (r.stop_reason, r.stopped_epoch, r.best_epoch) == ("early_stopped", 5, 3)
    assert [h.epoch for h in r.history] == [1, 2, 3, 4, 5]
    assert r.test_loss == 3.0  # the test metrics come from epoch 3's weights
    assert r.final["val_loss"] == 0.5


def test_min_delta_counts_small_improvements_as_none(monkeypatch, tiny) -> None:
    # improvements of 0.05 are below min_delta=0.1: best stays epoch 1 -> stops after epoch 3
    scripted(monkeypatch, [1.0, 0.95, 0.9, 0.5])
    r = train(TrainConfig(epochs=4, patience=2, min_delta=0.1), tiny)
    assert (r.stop_reason, r.stopped_epoch, r.best_epoch) == ("early_stopped", 3, 1)


def test_monitor_val_acc_maximizes(monkeypatch, tiny) -> None:
    scripted(monkeypatch, [1.0, 1.0, 1.0, 1.0], accs=[0.5, 0.8, 0.7, 0.6])
    r = train(TrainConfig(epochs=4, patience=2, monitor="val_acc"), tiny)
    assert (r.stop_reason, r.best_epoch, r.stopped_epoch) == ("early_stopped", 2, 4)


def test_without_restore_best_the_last_weights_are_kept(monkeypatch, tiny) -> None:
    scripted(monkeypatch, [1.0, 0.5, 0.6, 0.7])
    r = train(TrainConfig(epochs=4, restore_best=False), tiny)
    assert (r.stop_reason, r.best_epoch, r.test_loss) == ("completed", 2, 4.0)


def test_stop_by_caller_between_epochs(monkeypatch, tiny) -> None:
    scripted(monkeypatch, [1.0, 0.9, 0.8, 0.7, 0.6])
    r = train(TrainConfig(epochs=5), tiny, should_stop=lambda rec: rec.epoch == 2)
    assert (r.stop_reason, r.stopped_epoch) == ("stopped_by_caller", 2)


def test_divergence_is_a_stop_reason_not_an_exception(tiny) -> None:
    cfg = TrainConfig(depth=2, width=32, optimizer="sgd", lr=1e6, epochs=10, batch_size=8)
    r = train(cfg, tiny)
    assert r.stop_reason == "diverged"
    assert r.stopped_epoch < 10
    assert not math.isfinite(r.history[-1].train_loss) or not math.isfinite(r.history[-1].val_loss)


def test_same_seed_gives_bit_identical_history() -> None:
    data = load_dataset("gaussian_mixture", n_samples=400, seed=1)
    cfg = TrainConfig(depth=2, width=16, dropout=0.3, input_dropout=0.1, epochs=3, optimizer="momentum", lr=0.05, seed=7)
    a = [r.metrics() for r in iter_train(cfg, data)]
    b = [r.metrics() for r in iter_train(cfg, data)]
    for x, y in zip(a, b, strict=True):
        x.pop("seconds"), y.pop("seconds")
        assert x == y
    c = [r.metrics() for r in iter_train(cfg.replace(seed=8), data)]
    assert c[0]["train_loss"] != a[0]["train_loss"]


def test_minibatches_are_reshuffled_every_epoch(monkeypatch, tiny) -> None:
    orders = []

    class Spy(ScriptedBackend):
        def fit_epoch(self, order, lr):
            orders.append(order.copy())
            return super().fit_epoch(order, lr)

    monkeypatch.setattr(loop, "make_backend", lambda *a, **k: Spy([1.0, 0.9, 0.8]))
    train(TrainConfig(epochs=3), tiny)
    assert sorted(orders[0].tolist()) == list(range(len(tiny.y_train)))
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])


def test_records_carry_every_field_and_learn_something() -> None:
    data = load_dataset("digits", test=0.2)
    r = train(TrainConfig(depth=2, width=32, epochs=4, optimizer="adam", lr=0.003), data)
    first, last = r.history[0], r.history[-1]
    assert last.val_acc > 0.85 and last.train_loss < first.train_loss
    assert len(last.grad_norm) == 3 and len(last.weight_norm) == 3 and all(g > 0 for g in last.grad_norm)
    assert 0 <= last.sparsity <= 1 and 0 <= last.dead_units <= 1 and last.seconds > 0
    m = last.metrics()
    assert {"grad_norm_0", "grad_norm_2", "weight_norm_1", "val_loss", "lr"} <= m.keys()
    assert r.n_params == 64 * 32 + 32 + 32 * 32 + 32 + 32 * 10 + 10
    assert r.test_acc is not None and r.test_acc > 0.85


def test_warmup_and_schedule_lrs_appear_in_records(tiny) -> None:
    r = train(TrainConfig(epochs=4, lr=0.2, warmup_epochs=2, schedule="step", step_size=1, gamma=0.5, depth=1, width=4), tiny)
    assert [h.lr for h in r.history] == pytest.approx([0.1, 0.2, 0.2, 0.1])
