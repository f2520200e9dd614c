"""The one "is this epoch an improvement" rule, shared by early stopping (`trainers.loop`),
the plateau schedule (`trainers.schedules.Plateau`) and the early-stopping replay
(`study.query.curves`).

An epoch improves on the best so far when its monitored value is finite and better by
more than ``min_delta``:

- ``val_loss`` (lower is better):  ``value < best - min_delta``
- ``val_acc``  (higher is better): ``value > best + min_delta``
"""

from __future__ import annotations

import math

MONITORS = ("val_loss", "val_acc")


def lower_is_better(monitor: str) -> bool:
    """True for a loss-like monitor, False for an accuracy."""
    if monitor not in MONITORS:
        raise ValueError(f"monitor must be one of {', '.join(MONITORS)}, got {monitor!r}")
    return monitor == "val_loss"


def worst(monitor: str) -> float:
    """The starting "best so far": every finite value improves on it."""
    return math.inf if lower_is_better(monitor) else -math.inf


def improves(value: float, best: float, monitor: str, min_delta: float = 0.0) -> bool:
    """Whether `value` improves on `best` by more than `min_delta` (see the module)."""
    if not math.isfinite(value):
        return False
    return value < best - min_delta if lower_is_better(monitor) else value > best + min_delta
