"""Learning-rate schedules: pure functions of the epoch (``reduce_on_plateau`` aside).

Epochs are numbered from 1. With ``warmup_epochs = W`` the rate rises linearly,
``lr * e / W`` for ``e <= W``, and the schedule proper then runs on ``t = e - W - 1``
(so its first epoch gets the full ``lr``):

- constant:    ``lr``
- step:        ``lr * gamma ** (t // step_size)``
- exponential: ``lr * gamma ** t``
- cosine:      ``min_lr + (lr - min_lr) * (1 + cos(pi * t / T)) / 2`` with ``T = epochs - W``
               (as ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=T)``)
- reduce_on_plateau: ``lr`` here; `Plateau` multiplies it by ``gamma`` after
  ``plateau_patience`` epochs without improvement of the monitored metric.

Every schedule is floored at ``min_lr``.
"""

from __future__ import annotations

import math

from trainers.config import TrainConfig
from trainers.stopping import improves, worst


def lr_at(config: TrainConfig, epoch: int) -> float:
    """The learning rate used for every step of epoch `epoch` (1-based)."""
    c = config
    if epoch <= c.warmup_epochs:
        return max(c.lr * epoch / c.warmup_epochs, c.min_lr)
    t = epoch - c.warmup_epochs - 1
    if c.schedule == "step":
        lr = c.lr * c.gamma ** (t // c.step_size)
    elif c.schedule == "exponential":
        lr = c.lr * c.gamma**t
    elif c.schedule == "cosine":
        span = c.epochs - c.warmup_epochs
        lr = c.min_lr + (c.lr - c.min_lr) * (1 + math.cos(math.pi * min(t, span) / span)) / 2
    else:  # constant, reduce_on_plateau (its factor is applied by Plateau)
        lr = c.lr
    return max(lr, c.min_lr)


class Plateau:
    """Reduce-on-plateau state: the factor applied on top of `lr_at`.

    ``update(value)`` takes the monitored metric after an epoch; when it has not improved
    by more than ``min_delta`` for ``plateau_patience`` epochs in a row the factor is
    multiplied by ``gamma`` and the count restarts. In torch's terms this is
    ``ReduceLROnPlateau(patience=plateau_patience - 1, threshold_mode="abs",
    threshold=min_delta, factor=gamma)``: torch cuts after *more than* `patience` bad epochs,
    we after `plateau_patience` of them, the same count as early stopping's `patience`.
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.factor = 1.0
        self.best = worst(config.monitor)
        self.bad = 0

    def update(self, value: float) -> None:
        if self.config.schedule != "reduce_on_plateau":
            return
        if improves(value, self.best, self.config.monitor, self.config.min_delta):
            self.best, self.bad = value, 0
            return
        self.bad += 1
        if self.bad >= self.config.plateau_patience:
            self.factor *= self.config.gamma
            self.bad = 0

    def lr(self, epoch: int) -> float:
        return max(lr_at(self.config, epoch) * self.factor, self.config.min_lr)
