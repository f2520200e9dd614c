"""The one improvement rule, and that early stopping, the plateau schedule and the replay
all follow it (a value exactly min_delta better is not an improvement)."""

from __future__ import annotations

import math

import pytest

from trainers import TrainConfig
from trainers.schedules import Plateau
from trainers.stopping import improves, worst


@pytest.mark.parametrize(
    ("value", "best", "monitor", "min_delta", "expected"),
    [
        (0.5, 0.6, "val_loss", 0.0, True),
        (0.6, 0.6, "val_loss", 0.0, False),
        (0.55, 0.6, "val_loss", 0.05, False),  # exactly min_delta better: not an improvement
        (0.54, 0.6, "val_loss", 0.05, True),
        (0.7, 0.6, "val_acc", 0.0, True),
        (0.6, 0.6, "val_acc", 0.0, False),
        (0.65, 0.6, "val_acc", 0.05, False),
        (math.nan, 0.6, "val_loss", 0.0, False),
        (math.inf, math.inf, "val_loss", 0.0, False),
        (-math.inf, 0.6, "val_acc", 0.0, False),
    ],
)
def test_improves(value: float, best: float, monitor: str, min_delta: float, expected: bool) -> None:
    assert improves(value, best, monitor, min_delta) is expected


def test_every_finite_value_improves_on_worst() -> None:
    assert improves(1e30, worst("val_loss"), "val_loss")
    assert improves(-1e30, worst("val_acc"), "val_acc")


def test_unknown_monitor_names_allowed_values() -> None:
    with pytest.raises(ValueError, match="monitor must be one of val_loss, val_acc, got 'train_loss'"):
        improves(1.0, 2.0, "train_loss")


@pytest.mark.parametrize("monitor", ["val_loss", "val_acc"])
def test_plateau_cuts_after_patience_epochs_without_improvement(monitor: str) -> None:
    """0.95 and 0.9 do not beat 1.0 by more than min_delta 0.1 (0.9 is exactly 0.1 better):
    two bad epochs cut the rate; 0.85 then improves on 1.0 and 0.7 on 0.85."""
    cfg = TrainConfig(schedule="reduce_on_plateau", plateau_patience=2, gamma=0.5, min_delta=0.1, monitor=monitor)
    p = Plateau(cfg)
    factors = []
    for v in [1.0, 0.95, 0.9, 0.85, 0.7]:
        p.update(v if monitor == "val_loss" else 2.0 - v)  # accuracy: the same steps upwards
        factors.append(p.factor)
    assert factors == [1.0, 1.0, 0.5, 0.5, 0.5]
