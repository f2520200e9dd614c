"""Measures: one number from one trial's per-epoch history and its end summary.

A comparison states its claim about a measure, written as a short string and parsed once:

======================== ===================================================================
``final:KEY`` or ``KEY``  KEY at the last epoch (``gap``, ``sparsity``, ``val_acc``, ...)
``best:KEY``              KEY at the best epoch (the summary's ``best_epoch``: the weights
                          early stopping keeps); ``gap_at_best`` is ``best:gap``
``min:KEY`` ``max:KEY``   smallest / largest finite value over the epochs
``auc:KEY``               mean over the epochs (area under the curve per epoch)
``KEY@N``                 KEY at epoch N (1-based), e.g. ``grad_ratio@1``
``epochs_to:KEY<=X``      first epoch with KEY <= X (also ``<``, ``>=``, ``>``); a run that
                          never gets there counts as ``epochs + 1`` (censored: the true
                          value is at least that), so a diverged run is the slowest
``es_kept:P``             validation loss that early stopping with patience P keeps
                          (replayed on the full curve, restore-best), ``es_regret:P`` that
                          minus the curve's minimum (>= 0), ``es_stop:P`` the epoch it
                          stops after, ``es_saved:P`` the fraction of epochs it saves
``test_acc`` ...          a summary value: ``test_acc``, ``test_loss``, ``best_epoch``,
                          ``stopped_epoch``, ``n_params``
``log10:MEASURE``         log10 of any of the above (ratios that span decades)
======================== ===================================================================

KEY is a record field (``EpochRecord.metrics()``: ``train_loss``, ``train_acc``,
``val_loss``, ``val_acc``, ``lr``, ``sparsity``, ``dead_units``, ``seconds``,
``batch_loss``, ``grad_norm_<i>``, ``weight_norm_<i>``) or one derived per epoch:
``gap = val_loss - train_loss``, ``acc_gap = train_acc - val_acc``,
``grad_ratio = grad_norm_<last> / grad_norm_0`` (last layer over first),
``weight_norm_total = sqrt(sum_i weight_norm_i^2)`` and ``grad_norm_total`` likewise.
A NaN (a diverged epoch) propagates, and the verdict leaves that seed out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainers.stopping import improves

RECORD_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "sparsity", "dead_units", "seconds", "batch_loss")
DERIVED_KEYS = ("gap", "acc_gap", "grad_ratio", "weight_norm_total", "grad_norm_total")
SUMMARY_KEYS = ("test_acc", "test_loss", "best_epoch", "stopped_epoch", "n_params")
AGGREGATES = ("final", "best", "min", "max", "auc")
REPLAYS = ("es_kept", "es_regret", "es_stop", "es_saved")
ALIASES = {"gap_at_best": "best:gap"}
_LAYER_KEY = re.compile(r"^(grad_norm|weight_norm)_\d+$")
_THRESHOLD = re.compile(r"^(?P<key>[A-Za-z_0-9]+)\s*(?P<op><=|>=|<|>)\s*(?P<x>[-+0-9.eE]+|inf|-inf)$")
FORMS = (
    "final:KEY (or KEY), best:KEY, min:KEY, max:KEY, auc:KEY, KEY@EPOCH, epochs_to:KEY<=X (<, >=, >), "
    "es_kept:P, es_regret:P, es_stop:P, es_saved:P, a summary value (test_acc, test_loss, best_epoch, "
    "stopped_epoch, n_params), gap_at_best, and log10:MEASURE"
)

History = Sequence[Mapping[str, float]]


@dataclass(frozen=True)
class Measure:
    """A parsed measure; call it on a history (list of metric dicts) and its summary."""

    text: str
    kind: str  # an aggregate, "at", "epochs_to", a replay, or "summary"
    key: str = ""
    epoch: int = 0
    op: str = ""
    threshold: float = 0.0
    patience: int = 0
    log10: bool = False

    def __call__(self, history: History | Sequence[Any], summary: Mapping[str, Any] | None = None) -> float:
        rows = [r if isinstance(r, Mapping) else r.metrics() for r in history]
        summary = summary or {}
        value = self._value(rows, summary)
        if self.log10:
            return math.log10(value) if value > 0 else (-math.inf if value == 0 else math.nan)
        return value

    def _value(self, rows: list[Mapping[str, float]], summary: Mapping[str, Any]) -> float:
        if self.kind == "summary":
            if summary.get(self.key) is None:
                return math.nan
            return float(summary[self.key])
        if not rows:
            raise ValueError(f"measure {self.text!r} needs at least one epoch of history, got none")
        if self.kind in REPLAYS:
            return _replay(self, [_get(r, "val_loss", self.text) for r in rows])
        values = [_get(r, self.key, self.text) for r in rows]
        if self.kind == "final":
            return values[-1]
        if self.kind == "best":
            best = summary.get("best_epoch") or _best_epoch([_get(r, "val_loss", self.text) for r in rows])
            return values[int(best) - 1] if best else math.nan
        if self.kind == "at":
            epochs = summary.get("epochs")
            if epochs is not None and self.epoch > int(epochs):
                raise ValueError(f"measure {self.text!r}: epoch {self.epoch} is beyond the run's {epochs} epochs")
            return values[self.epoch - 1] if self.epoch <= len(values) else math.nan
        if self.kind == "epochs_to":
            for i, v in enumerate(values, start=1):
                if _meets(v, self.op, self.threshold):
                    return float(i)
            return float(int(summary.get("epochs") or len(values)) + 1)
        finite = np.array([v for v in values if math.isfinite(v)])
        if self.kind == "auc":
            return float(np.mean(values))
        if not len(finite):
            return math.nan
        return float(finite.min() if self.kind == "min" else finite.max())


def _meets(v: float, op: str, x: float) -> bool:
    if not math.isfinite(v):
        return False
    return {"<=": v <= x, "<": v < x, ">=": v >= x, ">": v > x}[op]


def _get(row: Mapping[str, float], key: str, text: str) -> float:
    if key in row:
        return float(row[key])
    if key == "gap":
        return float(row["val_loss"]) - float(row["train_loss"])
    if key == "acc_gap":
        return float(row["train_acc"]) - float(row["val_acc"])
    layers = sorted((int(k.rsplit("_", 1)[1]), float(v)) for k, v in row.items() if k.startswith("grad_norm_"))
    if key == "grad_ratio" and layers:
        return layers[-1][1] / layers[0][1] if layers[0][1] else math.inf
    base = key.removesuffix("_total")
    if key.endswith("_total") and base in ("weight_norm", "grad_norm"):
        norms = [float(v) for k, v in row.items() if k.startswith(base + "_") and k[len(base) + 1 :].isdigit()]
        if norms:
            return math.sqrt(sum(v * v for v in norms))
    raise ValueError(f"measure {text!r}: the history has no {key!r}; it has {', '.join(sorted(row))}")


def key_value(row: Mapping[str, float], key: str) -> float:
    """KEY of one epoch's record: a record field or a derived one (``gap``, ``grad_ratio``, ...)."""
    return _get(row, key, key)


def _best_epoch(val_loss: list[float]) -> int:
    """The loop's best epoch on ``val_loss`` (first strict improvement wins), 0 if none."""
    best, at = math.inf, 0
    for i, v in enumerate(val_loss, start=1):
        if improves(v, best, "val_loss"):
            best, at = v, i
    return at


def _replay(m: Measure, val_loss: list[float]) -> float:
    """Early stopping with patience ``m.patience`` replayed on a full ``val_loss`` curve: the
    loop's rule (`trainers.stopping.improves`, min_delta 0; a non-finite value ends the run)."""
    best, kept_at, since, stop = math.inf, 0, 0, len(val_loss)
    for i, v in enumerate(val_loss, start=1):
        if not math.isfinite(v):
            stop = i
            break
        if improves(v, best, "val_loss"):
            best, kept_at, since = v, i, 0
        else:
            since += 1
        if since >= m.patience:
            stop = i
            break
    if m.kind == "es_stop":
        return float(stop)
    if m.kind == "es_saved":
        return (len(val_loss) - stop) / len(val_loss)
    if not kept_at:
        return math.nan
    if m.kind == "es_kept":
        return best
    finite = [v for v in val_loss if math.isfinite(v)]
    return best - min(finite)


def _check_key(key: str, text: str) -> None:
    if key in RECORD_KEYS or key in DERIVED_KEYS or _LAYER_KEY.match(key):
        return
    raise ValueError(
        f"measure {text!r}: unknown key {key!r}; a key is one of {', '.join(RECORD_KEYS + DERIVED_KEYS)}, "
        "grad_norm_<layer> or weight_norm_<layer>"
    )


def parse_measure(text: str) -> Measure:
    """Parse a measure string (module docstring); a ValueError naming the allowed forms."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"measure must be a non-empty string, one of the forms {FORMS}; got {text!r}")
    s = ALIASES.get(text.strip(), text.strip())
    log10 = s.startswith("log10:")
    if log10:
        s = s.removeprefix("log10:")
    m = _parse(ALIASES.get(s, s), text)
    return Measure(text.strip(), m.kind, m.key, m.epoch, m.op, m.threshold, m.patience, log10)


def _parse(s: str, text: str) -> Measure:
    if s in SUMMARY_KEYS:
        return Measure(text, "summary", s)
    head, sep, rest = s.partition(":")
    if sep and head in AGGREGATES:
        _check_key(rest, text)
        return Measure(text, head, rest)
    if sep and head in REPLAYS:
        if not rest.isdigit() or int(rest) < 1:
            raise ValueError(f"measure {text!r}: {head} needs a patience, an integer >= 1 (e.g. {head}:5), got {rest!r}")
        return Measure(text, head, "val_loss", patience=int(rest))
    if sep and head == "epochs_to":
        t = _THRESHOLD.match(rest.strip())
        if not t:
            raise ValueError(f"measure {text!r}: epochs_to needs KEY<=X, KEY<X, KEY>=X or KEY>X (e.g. epochs_to:train_loss<=0.1)")
        _check_key(t["key"], text)
        try:
            x = float(t["x"])
        except ValueError:
            raise ValueError(f"measure {text!r}: threshold {t['x']!r} is not a number") from None
        return Measure(text, "epochs_to", t["key"], op=t["op"], threshold=x)
    if sep:
        raise ValueError(f"measure {text!r}: unknown form {head!r}; allowed forms: {FORMS}")
    key, at, epoch = s.partition("@")
    if at:
        if not epoch.isdigit() or int(epoch) < 1:
            raise ValueError(f"measure {text!r}: the epoch after @ must be an integer >= 1, got {epoch!r}")
        _check_key(key, text)
        return Measure(text, "at", key, epoch=int(epoch))
    try:
        _check_key(s, text)
    except ValueError:
        raise ValueError(f"measure {text!r} is not one of the forms {FORMS}") from None
    return Measure(text, "final", s)


def evaluate(measure: str | Measure, history: History | Sequence[Any], summary: Mapping[str, Any] | None = None) -> float:
    """The value of `measure` on one trial."""
    m = parse_measure(measure) if isinstance(measure, str) else measure
    return m(history, summary)


def summary_of(result: Any) -> dict[str, Any]:
    """The summary a measure reads, from a `trainers.TrainResult`."""
    return {
        "best_epoch": result.best_epoch,
        "stopped_epoch": result.stopped_epoch,
        "n_params": result.n_params,
        "test_loss": result.test_loss,
        "test_acc": result.test_acc,
        "epochs": result.config.epochs,
        "stop_reason": result.stop_reason,
    }


def measure_result(measure: str | Measure, result: Any) -> float:
    """`measure` on a `trainers.TrainResult` (its history and summary)."""
    return evaluate(measure, result.history, summary_of(result))
