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
from collections.abc import Callable, Generator, Iterator, Mapping
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
    names: tuple[str, ...] = ()  # a user module's parameter names, aligned with grad_norm/weight_norm; () for the MLP

    def metrics(self) -> dict[str, float]:
        """Flat numeric view for trackers: per-layer lists as ``grad_norm_0``, ... (the
        built-in MLP) or, when ``names`` are set, ``grad_norm.conv1.weight``, ..."""
        out: dict[str, float] = {}
        for k, v in asdict(self).items():
            if k in ("epoch", "names"):
                continue
            if isinstance(v, list):
                keys = [f"{k}.{n}" for n in self.names] if self.names else [f"{k}_{i}" for i in range(len(v))]
                out.update({key: float(x) for key, x in zip(keys, v, strict=True)})
            else:
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
    weights: dict[str, np.ndarray] | None = None  # the weights kept, by name (keep_weights=True)

    @property
    def best(self) -> EpochRecord | None:
        return self.history[self.best_epoch - 1] if self.best_epoch else None


def resolve_threads(threads: int | None = None) -> int:
    """The thread count a run uses: `threads` if given, else ``OMP_NUM_THREADS`` (which Ray
    sets for each task to its CPU count), else 1. One thread is the default because a
    small MLP's matrices gain nothing from more, and a run that takes every core of a
    shared machine is several times slower (BLAS threads spinning against each other)."""
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        return int(env) if env.isdigit() and int(env) >= 1 else 1
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer (or None: OMP_NUM_THREADS, else 1), got {threads!r}")
    return threads


@contextmanager
def blas_threads(n: int | None = None, *, torch: bool = False) -> Iterator[int]:
    """Limit BLAS/OpenMP threads (and torch's intra-op threads when `torch`) to
    `resolve_threads(n)` for the duration, even in a process whose pools already started;
    yields that count. The previous limits come back on exit.

    threadpoolctl limits only the libraries loaded when it starts, so the ones a run uses
    are loaded first: numpy's BLAS, scipy's (the numpy backend's ``axpy``/``scal``) and
    torch's OpenMP runtime."""
    n = resolve_threads(n)
    import scipy.linalg.blas  # noqa: F401
    from threadpoolctl import threadpool_limits

    torch_mod: Any = None
    if torch:
        try:
            import torch as torch_mod
        except ImportError:  # make_backend says how to install it
            pass
    with threadpool_limits(limits=n):
        if torch_mod is None:
            yield n
            return
        before = torch_mod.get_num_threads()
        torch_mod.set_num_threads(n)
        try:
            yield n
        finally:
            torch_mod.set_num_threads(before)


def iter_train(
    config: TrainConfig,
    data: Dataset,
    *,
    backend: str = "numpy",
    device: str = "cpu",
    should_stop: Callable[[EpochRecord], bool] | None = None,
    init_params: Any = None,
    threads: int | None = None,
    model: Callable[..., Any] | str | None = None,
    model_params: Mapping[str, Any] | None = None,
    keep_weights: bool = False,
) -> Generator[EpochRecord, None, TrainResult]:
    """Train `config` on `data`, yielding an `EpochRecord` after every epoch.

    Mini-batches are reshuffled every epoch (``config.shuffle``; else one fixed order) from a
    generator seeded by ``config.seed``;
    same config, data and seed give a bit-identical history on the same backend.
    `init_params` (a list aligned with ``MLP.params``; a state dict for a user model)
    overrides the initial weights. `model` (with ``backend="torch"``) trains a user's module
    instead of the MLP: a factory ``build(n_inputs, n_classes, **model_params)`` or a
    ``file.py:build`` / ``package.module:build`` reference (see `trainers.torch_module`).
    `threads`: BLAS/OpenMP (and torch) threads while the run is in progress; default
    ``OMP_NUM_THREADS`` if set, else 1 (see `resolve_threads`); pass ``threads=os.cpu_count()``
    to use every core. ``keep_weights=True`` returns the weights kept, by name
    (``TrainResult.weights``; `trainers.backend.Backend.param_arrays`), so the run can be reused."""
    with blas_threads(threads, torch=backend == "torch") as n_threads, np.errstate(all="ignore"):
        net = make_backend(config, data, backend, device, init_params, threads=n_threads, model=model, model_params=model_params)
        names = tuple(getattr(net, "param_names", ()))
        shuffle = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(2,)))
        plateau = Plateau(config)
        history: list[EpochRecord] = []
        best = worst(config.monitor)
        best_epoch, since_best, snap = 0, 0, None
        reason = "completed"
        n_train = len(data.y_train)
        fixed_order = None if config.shuffle else shuffle.permutation(n_train)
        for epoch in range(1, config.epochs + 1):
            t0 = time.perf_counter()
            lr = plateau.lr(epoch)
            order = shuffle.permutation(n_train) if fixed_order is None else fixed_order
            batch_loss, finite, grad_norm = net.fit_epoch(order, lr)
            finite = finite and net.finite_params()
            tr_loss, tr_acc, _ = net.evaluate("train")
            va_loss, va_acc, dead = net.evaluate("val")
            rec = EpochRecord(
                epoch, tr_loss, tr_acc, va_loss, va_acc, lr, grad_norm, net.weight_norms(),
                net.sparsity(), dead, time.perf_counter() - t0, batch_loss, names,
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
                    snap = net.snapshot()
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
        result = TrainResult(config, history, best_epoch, reason, len(history), net.n_params, net.name)
        kept = history[-1]
        if config.restore_best and snap is not None and best_epoch != len(history):
            net.restore(snap)
            kept = history[best_epoch - 1]
        result.final = {
            "train_loss": kept.train_loss,
            "train_acc": kept.train_acc,
            "val_loss": kept.val_loss,
            "val_acc": kept.val_acc,
        }
        if len(data.y_test) and (reason != "diverged" or snap is not None):
            result.test_loss, result.test_acc, _ = net.evaluate("test")
        if keep_weights:
            result.weights = net.param_arrays()
        return result


def train(config: TrainConfig, data: Dataset, **kwargs: Any) -> TrainResult:
    """Run `iter_train` to its end and return the `TrainResult`."""
    gen = iter_train(config, data, **kwargs)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
