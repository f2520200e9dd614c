"""`shuffle`: a new order of the training rows every epoch, or one fixed random order."""

from __future__ import annotations

import numpy as np
import pytest

from trainers import TrainConfig, load_dataset, train
from trainers.numpy_mlp.trainer import NumpyBackend


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _orders(monkeypatch: pytest.MonkeyPatch, config: TrainConfig, data) -> list[np.ndarray]:
    """The row order the loop hands the real backend each epoch."""
    seen: list[np.ndarray] = []
    real = NumpyBackend.fit_epoch

    def spy(self: NumpyBackend, order: np.ndarray, lr: float):
        seen.append(order.copy())
        return real(self, order, lr)

    monkeypatch.setattr(NumpyBackend, "fit_epoch", spy)
    train(config, data)
    return seen


def test_reshuffled_every_epoch_or_one_fixed_random_order(monkeypatch: pytest.MonkeyPatch, digits) -> None:
    cfg = TrainConfig(depth=1, width=16, epochs=3, seed=5)
    every = _orders(monkeypatch, cfg, digits)
    fixed = _orders(monkeypatch, cfg.replace(shuffle=False), digits)
    n = len(digits.y_train)
    assert all(sorted(o.tolist()) == list(range(n)) for o in every + fixed)  # permutations of the rows
    assert not np.array_equal(every[0], every[1]) and not np.array_equal(every[1], every[2])
    assert all(np.array_equal(fixed[0], o) for o in fixed)  # the same order every epoch
    assert not np.array_equal(fixed[0], np.arange(n))  # a random order, not the stored one
    np.testing.assert_array_equal(fixed[0], every[0])  # the first draw of the same generator


def test_histories_agree_for_one_epoch_then_differ(digits) -> None:
    cfg = TrainConfig(depth=1, width=16, epochs=2, seed=1)
    a = train(cfg, digits).history
    b = train(cfg.replace(shuffle=False), digits).history
    assert a[0].metrics() | {"seconds": 0} == b[0].metrics() | {"seconds": 0}
    assert a[1].train_loss != b[1].train_loss


def test_shuffle_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match="shuffle must be true or false, got 'no'"):
        TrainConfig(shuffle="no")  # type: ignore[arg-type]
