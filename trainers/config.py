"""`TrainConfig`: one training configuration, frozen and validated on construction.

Every field is a real, searchable option. Errors are `ValueError`s that name the field,
the value and what is allowed, e.g. ``dropout must be in [0, 1), got 1.2``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "maxout")
INITS = ("auto", "he", "glorot", "lecun", "small")
LOSSES = ("cross_entropy", "mse")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "step", "exponential", "cosine", "reduce_on_plateau")
MONITORS = ("val_loss", "val_acc")
DROPOUT_EVALS = ("scale", "mc")
#: Fields that describe the built-in MLP's architecture; a user's own module ignores them.
MLP_FIELDS = ("depth", "width", "activation", "maxout_pieces", "leaky_slope", "init", "input_dropout")

#: Default decoupled weight decay per optimizer when `weight_decay` is left as None:
#: AdamW's is torch's default (0.01); every other optimizer has none.
DEFAULT_WEIGHT_DECAY = {"adamw": 0.01}


def _fail(name: str, value: Any, allowed: str) -> None:
    raise ValueError(f"{name} must be {allowed}, got {value!r}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


@dataclass(frozen=True)
class TrainConfig:
    """One MLP training run.

    Architecture: ``depth`` hidden layers (0 = softmax regression) of ``width`` units each,
    or a per-layer tuple. ``init="auto"`` is He for the ReLU family and maxout, Glorot for
    sigmoid and tanh.

    Loss: ``cross_entropy`` on a softmax output (fused gradient ``(softmax(z) - y) / n``) or
    ``mse``: squared error on the same softmax output, ``mean_i sum_k (p_ik - y_ik)^2``.

    Batches: ``shuffle=True`` draws a new order of the training rows every epoch;
    ``shuffle=False`` draws one random order and keeps it for every epoch.

    Regularization: ``l1`` and ``l2`` are penalties in the loss (``l1 * sum|w|`` and
    ``l2 / 2 * sum w^2``) and so in its gradient; ``weight_decay`` is decoupled from the
    gradient: ``w <- (1 - lr * wd) * w - lr * update``. All three apply to weights, never
    biases. ``weight_decay=None`` resolves to 0.01 for ``adamw`` (torch's default) and 0
    otherwise, so ``adam`` and ``adamw`` mean what they mean in ``torch.optim``.

    Dropout at evaluation: ``dropout_eval="scale"`` drops nothing (inverted dropout, the
    lecture's weights times ``1 - p``); ``"mc"`` averages the softmax outputs of
    ``mc_samples`` thinned networks, ``p(x) = 1/K sum_k softmax(f(x; mask_k))`` (NumPy
    backend only).
    """

    # architecture
    depth: int = 2
    width: int | tuple[int, ...] = 64
    activation: str = "relu"
    maxout_pieces: int = 2
    leaky_slope: float = 0.01
    init: str = "auto"
    # loss and batches
    loss: str = "cross_entropy"
    batch_size: int = 32
    epochs: int = 20
    shuffle: bool = True  # reshuffle the training rows every epoch; False: one fixed random order
    # optimizer
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    rho: float = 0.9
    eps: float = 1e-8
    max_grad_norm: float | None = None
    # learning-rate schedule
    schedule: str = "constant"
    gamma: float = 0.5
    step_size: int = 10
    min_lr: float = 0.0
    warmup_epochs: int = 0
    plateau_patience: int = 3
    # regularization
    l1: float = 0.0
    l2: float = 0.0
    weight_decay: float | None = None
    dropout: float = 0.0
    input_dropout: float = 0.0
    dropout_eval: str = "scale"  # evaluation: "scale" (weight scaling) or "mc" (average of mc_samples thinned nets)
    mc_samples: int = 100
    # early stopping
    patience: int | None = None
    min_delta: float = 0.0
    monitor: str = "val_loss"
    restore_best: bool = True
    # reproducibility
    seed: int = 0
    # free-form labels a caller may attach (not used by training)
    tags: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        self._check_architecture()
        self._check_training()
        self._check_regularization()
        if self.weight_decay is None:
            object.__setattr__(self, "weight_decay", DEFAULT_WEIGHT_DECAY.get(self.optimizer, 0.0))

    # -- validation, one group of fields each -------------------------------------------
    def _check_architecture(self) -> None:
        if not _is_int(self.depth) or not 0 <= self.depth <= 64:
            _fail("depth", self.depth, "an integer in [0, 64]")
        w = self.width
        if isinstance(w, list):
            w = tuple(w)
            object.__setattr__(self, "width", w)
        if isinstance(w, tuple):
            if len(w) != self.depth:
                _fail("width", w, f"an int or a tuple of {self.depth} ints (one per hidden layer)")
            if not all(_is_int(x) and 1 <= x <= 65536 for x in w):
                _fail("width", w, "a tuple of integers in [1, 65536]")
        elif not _is_int(w) or not 1 <= w <= 65536:
            _fail("width", w, "an integer in [1, 65536] or a tuple of them")
        _choice("activation", self.activation, ACTIVATIONS)
        _choice("init", self.init, INITS)
        if not _is_int(self.maxout_pieces) or not 2 <= self.maxout_pieces <= 16:
            _fail("maxout_pieces", self.maxout_pieces, "an integer in [2, 16]")
        _in_range("leaky_slope", self.leaky_slope, 0.0, 1.0, "[0, 1)", hi_open=True)

    def _check_training(self) -> None:
        _choice("loss", self.loss, LOSSES)
        if not _is_int(self.batch_size) or self.batch_size < 1:
            _fail("batch_size", self.batch_size, "an integer >= 1")
        if not _is_int(self.epochs) or not 1 <= self.epochs <= 100_000:
            _fail("epochs", self.epochs, "an integer in [1, 100000]")
        if not isinstance(self.shuffle, bool):
            _fail("shuffle", self.shuffle, "true or false")
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        if not _is_num(self.lr) or self.lr <= 0:
            _fail("lr", self.lr, "a finite number > 0")
        for name in ("momentum", "beta1", "beta2", "rho"):
            _in_range(name, getattr(self, name), 0.0, 1.0, "[0, 1)", hi_open=True)
        if not _is_num(self.eps) or self.eps <= 0:
            _fail("eps", self.eps, "a finite number > 0")
        if self.max_grad_norm is not None and (not _is_num(self.max_grad_norm) or self.max_grad_norm <= 0):
            _fail("max_grad_norm", self.max_grad_norm, "None or a finite number > 0")
        _choice("schedule", self.schedule, SCHEDULES)
        _in_range("gamma", self.gamma, 0.0, 1.0, "in (0, 1]", lo_open=True)
        if not _is_int(self.step_size) or self.step_size < 1:
            _fail("step_size", self.step_size, "an integer >= 1")
        if not _is_num(self.min_lr) or not 0 <= self.min_lr < self.lr:
            _fail("min_lr", self.min_lr, f"a number in [0, lr={self.lr})")
        if not _is_int(self.warmup_epochs) or not 0 <= self.warmup_epochs < self.epochs:
            _fail("warmup_epochs", self.warmup_epochs, f"an integer in [0, epochs={self.epochs})")
        if not _is_int(self.plateau_patience) or self.plateau_patience < 1:
            _fail("plateau_patience", self.plateau_patience, "an integer >= 1")
        if self.patience is not None and (not _is_int(self.patience) or self.patience < 1):
            _fail("patience", self.patience, "None (early stopping off) or an integer >= 1")
        if not _is_num(self.min_delta) or self.min_delta < 0:
            _fail("min_delta", self.min_delta, "a finite number >= 0")
        _choice("monitor", self.monitor, MONITORS)
        if not isinstance(self.restore_best, bool):
            _fail("restore_best", self.restore_best, "true or false")
        if not _is_int(self.seed) or not 0 <= self.seed < 2**63:
            _fail("seed", self.seed, "an integer in [0, 2**63)")

    def _check_regularization(self) -> None:
        for name in ("l1", "l2"):
            v = getattr(self, name)
            if not _is_num(v) or v < 0:
                _fail(name, v, "a finite number >= 0")
        wd = self.weight_decay
        if wd is not None and (not _is_num(wd) or not 0 <= wd * self.lr < 1):
            _fail("weight_decay", wd, f"None or a number >= 0 with lr * weight_decay < 1 (lr={self.lr})")
        _in_range("dropout", self.dropout, 0.0, 1.0, "in [0, 1)", hi_open=True)
        _in_range("input_dropout", self.input_dropout, 0.0, 1.0, "in [0, 1)", hi_open=True)
        _choice("dropout_eval", self.dropout_eval, DROPOUT_EVALS)
        if not _is_int(self.mc_samples) or not 1 <= self.mc_samples <= 10_000:
            _fail("mc_samples", self.mc_samples, "an integer in [1, 10000]")

    # -- derived ---------------------------------------------------------------------------
    @property
    def widths(self) -> tuple[int, ...]:
        """Width of every hidden layer."""
        return self.width if isinstance(self.width, tuple) else (self.width,) * self.depth

    @property
    def resolved_init(self) -> str:
        if self.init != "auto":
            return self.init
        return "glorot" if self.activation in ("sigmoid", "tanh") else "he"

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with `changes` applied (validated again)."""
        if "optimizer" in changes and "weight_decay" not in changes:
            changes["weight_decay"] = None if self._default_wd() else self.weight_decay
        return dataclasses.replace(self, **changes)

    def _default_wd(self) -> bool:
        return self.weight_decay == DEFAULT_WEIGHT_DECAY.get(self.optimizer, 0.0)

    def applies(self, name: str) -> bool:
        """Whether field `name` has any effect on a run of this configuration (`APPLIES`):
        ``momentum`` only for momentum and nesterov, ``rho`` only for rmsprop, ... ."""
        if name not in _FIELD_NAMES:
            raise ValueError(f"unknown TrainConfig field {name!r}; allowed: {', '.join(_FIELD_NAMES)}")
        rule = APPLIES.get(name)
        return rule is None or rule(self)

    def used(self) -> dict[str, Any]:
        """`to_dict` less the fields that have no effect on this run (see `applies`)."""
        return {k: v for k, v in self.to_dict().items() if self.applies(k)}

    def to_dict(self) -> dict[str, Any]:
        """Plain values (tuples as lists), suitable for JSON, YAML or MLflow params."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "tags"}
        if isinstance(d["width"], tuple):
            d["width"] = list(d["width"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from plain values; unknown keys are an error naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; allowed: {sorted(names - {'tags'})}")
        return cls(**d)


#: When a field has an effect on training, for the fields that do not always have one; every
#: other field always applies. The one definition of "a setting this run used" (queries show
#: only those, so an Adam trial does not appear to have used momentum 0.9).
APPLIES: dict[str, Callable[[TrainConfig], bool]] = {
    "width": lambda c: c.depth > 0,
    "activation": lambda c: c.depth > 0 or c.init == "auto",  # auto init follows the activation
    "maxout_pieces": lambda c: c.depth > 0 and c.activation == "maxout",
    "leaky_slope": lambda c: c.depth > 0 and c.activation == "leaky_relu",
    # hidden units only; at depth 0 a dropout > 0 still switches Monte-Carlo evaluation on
    # (K identical outputs averaged: equal up to rounding, but not bit-identical)
    "dropout": lambda c: c.depth > 0 or c.dropout_eval == "mc",
    "dropout_eval": lambda c: c.dropout > 0 or c.input_dropout > 0,
    "mc_samples": lambda c: c.dropout_eval == "mc" and (c.dropout > 0 or c.input_dropout > 0),
    "momentum": lambda c: c.optimizer in ("momentum", "nesterov"),
    "beta1": lambda c: c.optimizer in ("adam", "adamw"),
    "beta2": lambda c: c.optimizer in ("adam", "adamw"),
    "rho": lambda c: c.optimizer == "rmsprop",
    "eps": lambda c: c.optimizer in ("adagrad", "rmsprop", "adam", "adamw"),
    "gamma": lambda c: c.schedule in ("step", "exponential", "reduce_on_plateau"),
    "step_size": lambda c: c.schedule == "step",
    "plateau_patience": lambda c: c.schedule == "reduce_on_plateau",
    # every schedule, warm-up included, is floored at min_lr; a constant rate never reaches it
    "min_lr": lambda c: c.schedule != "constant" or c.warmup_epochs > 0,
}


def field_names() -> tuple[str, ...]:
    """Names of the TrainConfig fields a search space may set."""
    return tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "tags")


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        _fail(name, value, "one of " + ", ".join(allowed))


def _in_range(name: str, v: Any, lo: float, hi: float, text: str, lo_open: bool = False, hi_open: bool = False) -> None:
    ok = _is_num(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        _fail(name, v, text if text.startswith("in") else f"in {text}")


_FIELD_NAMES = field_names()
