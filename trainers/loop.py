"""The training loop, shared by every backend: epochs, schedules, early stopping, records.

`iter_train` yields one `EpochRecord` per epoch and returns a `TrainResult` (the value of
its ``StopIteration``); `train` runs it to the end. A caller stops a run between epochs
with ``should_stop(record) -> True`` (how pruning reaches it) or simply by closing the
generator.

Stop reasons: ``completed`` (all epochs), ``early_stopped`` (``patience`` epochs without
an improvement of ``monitor`` by more than ``min_delta``), ``diverged`` (a NaN or inf
loss or weight; the run ends at that epoch, no exception escapes), ``stopped_by_caller``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from trainers.backend import make_backend
from trainers.config import TrainConfig
from trainers.data import Dataset
from trainers.schedules import Plateau
from trainers.stopping import improves, worst

STOP_REASONS = ("completed", "early_stopped", "diverged", "stopped_by_caller")


@dataclass
class EpochRecord:
    """What one epoch did. Train metrics are measured in evaluation mode (no dropout) on the
    whole training split, so ``val_loss - train_loss`` is a real generalization gap."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    grad_norm: list[float]  # per layer: weight-gradient norm, mean over the epoch's batches
    weight_norm: list[float]  # per layer, after the epoch
    sparsity: float  # fraction of weights with |w| < 1e-3
    dead_units: float  # fraction of ReLU-family hidden units inactive on every val sample
    seconds: float
    batch_loss: float = math.nan  # mean training loss over the epoch's mini-batches (dropout on)

    def metrics(self) -> dict[str, float]:
        """Flat numeric view (per-layer lists as ``grad_norm_0``, ...) for trackers."""
        out: dict[str, float] = {}
        for k, v in asdict(self).items():
            if isinstance(v, list):
                out.update({f"{k}_{i}": float(x) for i, x in enumerate(v)})
            elif k != "epoch":
                out[k] = float(v)
        return out


@dataclass
class TrainResult:
    """The whole run: every epoch's record and how it ended."""

    config: TrainConfig
    history: list[EpochRecord]
    best_epoch: int
    stop_reason: str
    stopped_epoch: int
    n_params: int
    backend: str
    final: dict[str, float] = field(default_factory=dict)  # metrics of the weights kept
    test_loss: float | None = None
    test_acc: float | None = None
    weights: list[np.ndarray] | None = None  # the weights kept, [W0, b0, W1, b1, ...] (keep_weights=True)

    @property
    def best(self) -> EpochRecord | None:
        return self.history[self.best_epoch - 1] if self.best_epoch else None


@contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Limit BLAS/OpenMP threads to `n` (default: ``OMP_NUM_THREADS``, which Ray sets per
    task) for the duration, even in a process whose BLAS pool already started."""
    if n is None:
        env = os.environ.get("OMP_NUM_THREADS")
        n = int(env) if env and env.isdigit() else None
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=max(n, 1)):
        yield


def iter_train(
    config: TrainConfig,
    data: Dataset,
    *,
    backend: str = "numpy",
    device: str = "cpu",
    should_stop: Callable[[EpochRecord], bool] | None = None,
    init_params: Any = None,
    threads: int | None = None,
    keep_weights: bool = False,
) -> Generator[EpochRecord, None, TrainResult]:
    """Train `config` on `data`, yielding an `EpochRecord` after every epoch.

    Mini-batches are reshuffled every epoch from a generator seeded by ``config.seed``;
    same config, data and seed give a bit-identical history on the same backend.
    `init_params` (a list aligned with ``MLP.params``) overrides the initial weights;
    ``keep_weights=True`` returns the weights kept (``TrainResult.weights``, the same list) so
    that a run can be reused: ``iter_train(config, data, init_params=result.weights)``."""
    with blas_threads(threads), np.errstate(all="ignore"):
        model = make_backend(config, data, backend, device, init_params)
        shuffle = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(2,)))
        plateau = Plateau(config)
        history: list[EpochRecord] = []
        best = worst(config.monitor)
        best_epoch, since_best, snap = 0, 0, None
        reason = "completed"
        n_train = len(data.y_train)
        for epoch in range(1, config.epochs + 1):
            t0 = time.perf_counter()
            lr = plateau.lr(epoch)
            order = shuffle.permutation(n_train)
            batch_loss, finite, grad_norm = model.fit_epoch(order, lr)
            finite = finite and model.finite_params()
            tr_loss, tr_acc, _ = model.evaluate("train")
            va_loss, va_acc, dead = model.evaluate("val")
            rec = EpochRecord(
                epoch, tr_loss, tr_acc, va_loss, va_acc, lr, grad_norm, model.weight_norms(),
                model.sparsity(), dead, time.perf_counter() - t0, batch_loss,
            )  # fmt: skip
            history.append(rec)
            if not finite or not (math.isfinite(tr_loss) and math.isfinite(va_loss)):
                reason = "diverged"
                yield rec
                break
            monitored = va_loss if config.monitor == "val_loss" else va_acc
            if improves(monitored, best, config.monitor, config.min_delta):
                best, best_epoch, since_best = monitored, epoch, 0
                if config.restore_best:
                    snap = model.snapshot()
            else:
                since_best += 1
            plateau.update(monitored)
            yield rec
            if should_stop is not None and should_stop(rec):
                reason = "stopped_by_caller"
                break
            if config.patience is not None and since_best >= config.patience:
                reason = "early_stopped"
                break
        result = TrainResult(config, history, best_epoch, reason, len(history), model.n_params, model.name)
        kept = history[-1]
        if config.restore_best and snap is not None and best_epoch != len(history):
            model.restore(snap)
            kept = history[best_epoch - 1]
        result.final = {
            "train_loss": kept.train_loss,
            "train_acc": kept.train_acc,
            "val_loss": kept.val_loss,
            "val_acc": kept.val_acc,
        }
        if len(data.y_test) and (reason != "diverged" or snap is not None):
            result.test_loss, result.test_acc, _ = model.evaluate("test")
        if keep_weights:
            result.weights = model.weights()
        return result


def train(config: TrainConfig, data: Dataset, **kwargs: Any) -> TrainResult:
    """Run `iter_train` to its end and return the `TrainResult`."""
    gen = iter_train(config, data, **kwargs)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
