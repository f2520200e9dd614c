"""Pure analysis of recorded training curves: best epoch, overfitting onset, generalization
gap. No Ray, Optuna or MLflow: pandas and NumPy only. The early-stopping replay
(`study.query.replay`) and the pruning audit (`study.query.audit`) build on it.

A *curve* is one trial's per-epoch records: a DataFrame with columns ``epoch``,
``train_loss``, ``val_loss`` (and ``val_acc`` when it is monitored; other columns are
ignored), one row per epoch. A *long* frame is many curves stacked with an extra ``trial``
column, the shape ``curves(trials)`` returns. Rows are sorted by epoch here; epochs must be
unique within a trial. Patience counts recorded rows, so curves are expected to have every
epoch, as ``trainers.loop`` records them.

The early-stopping rule is exactly ``trainers.loop``'s (`trainers.stopping.improves`):

* a value ``v`` improves on the best so far ``b`` iff it is finite and
  ``v < b - min_delta`` (``val_loss``) or ``v > b + min_delta`` (``val_acc``); the first
  epoch starts from ``b = +inf`` (resp. ``-inf``), so it improves whenever it is finite;
  ties and changes within ``min_delta`` are not improvements, so the first best wins;
* an epoch whose ``train_loss`` or ``val_loss`` is NaN or inf is a divergence: the run ends
  there and that epoch is never the best;
* otherwise the run stops after the epoch at which ``patience`` consecutive epochs have gone
  by without an improvement, and (``restore_best``) keeps the weights of the best epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from trainers.config import MONITORS
from trainers.stopping import improves, worst

# -- the rule on plain sequences -------------------------------------------------------------


@dataclass(frozen=True)
class Scan:
    best: int | None  # row of the best epoch, None if no epoch improved
    best_value: float
    stop: int  # row of the last epoch the run would have trained
    fired: bool  # the patience rule ended the run (not the end of the record or a divergence)


def check_monitor(monitor: str) -> None:
    if monitor not in MONITORS:
        raise ValueError(f"monitor must be one of {', '.join(MONITORS)}, got {monitor!r}")


def check_min_delta(min_delta: float) -> None:
    if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float)) or not math.isfinite(min_delta) or min_delta < 0:
        raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta!r}")


def check_patience(patience: Any) -> None:
    if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 1:
        raise ValueError(f"patience must be an integer >= 1, got {patience!r}")


def scan(values: np.ndarray, alive: np.ndarray, monitor: str, min_delta: float, patience: int | None) -> Scan:
    """Run the early-stopping rule over `values`; a row with ``alive`` False is a divergence."""
    best, best_row, since = worst(monitor), None, 0
    for i, v in enumerate(values):
        if not alive[i]:
            return Scan(best_row, best if best_row is not None else math.nan, i, False)
        if improves(float(v), best, monitor, min_delta):
            best, best_row, since = float(v), i, 0
        else:
            since += 1
        if patience is not None and since >= patience:
            return Scan(best_row, best if best_row is not None else math.nan, i, True)
    return Scan(best_row, best if best_row is not None else math.nan, len(values) - 1, False)


def best_epoch(values: Sequence[float], monitor: str = "val_loss", min_delta: float = 0.0) -> int | None:
    """1-based epoch of the best value under the rule above (a non-finite value ends the run),
    or None when no value is finite."""
    check_monitor(monitor)
    check_min_delta(min_delta)
    v = np.asarray(values, dtype=float)
    s = scan(v, np.isfinite(v), monitor, min_delta, None)
    return None if s.best is None else s.best + 1


def stop_epoch(values: Sequence[float], patience: int, monitor: str = "val_loss", min_delta: float = 0.0) -> int:
    """1-based epoch after which a run with this `patience` would have stopped: the first epoch
    ending `patience` consecutive epochs without improvement, else the last one recorded."""
    check_monitor(monitor)
    check_min_delta(min_delta)
    check_patience(patience)
    v = np.asarray(values, dtype=float)
    if not len(v):
        raise ValueError("values must hold at least one epoch, got an empty sequence")
    return scan(v, np.isfinite(v), monitor, min_delta, int(patience)).stop + 1


def overfitting_onset(train_loss: Sequence[float], val_loss: Sequence[float], min_run: int = 3) -> int | None:
    """1-based epoch ``e`` at which overfitting starts, or None.

    ``e`` is the first epoch with at least `min_run` epochs after it such that for *every*
    later epoch ``t`` (to the end of the curve)::

        val_loss[t] > val_loss[e]   and   train_loss[t] < train_loss[e]

    i.e. after ``e`` validation loss never comes back down to its level at ``e`` while
    training loss never goes back up to its level at ``e``. Noise after ``e`` is tolerated
    (the losses need not be monotone), but a late return of validation loss to its level at
    ``e`` means no onset there. When training loss keeps falling this ``e`` is the last epoch
    with the lowest validation loss. Only the finite prefix counts: the curve is cut at the
    first epoch where either loss is NaN or inf (a divergence is not overfitting)."""
    if isinstance(min_run, bool) or not isinstance(min_run, (int, np.integer)) or min_run < 1:
        raise ValueError(f"min_run must be an integer >= 1, got {min_run!r}")
    tr, va = np.asarray(train_loss, dtype=float), np.asarray(val_loss, dtype=float)
    if tr.shape != va.shape or tr.ndim != 1:
        raise ValueError(f"train_loss and val_loss must be 1-D and of equal length, got {tr.shape} and {va.shape}")
    bad = ~(np.isfinite(tr) & np.isfinite(va))
    n = int(np.argmax(bad)) if bad.any() else len(tr)
    if n <= min_run:
        return None
    tr, va = tr[:n], va[:n]
    # later_min_val[e] = min(val_loss[e+1:]), later_max_train[e] = max(train_loss[e+1:]), for e < n - 1
    later_min_val = np.minimum.accumulate(va[::-1])[::-1][1:]
    later_max_train = np.maximum.accumulate(tr[::-1])[::-1][1:]
    ok = (later_min_val > va[:-1]) & (later_max_train < tr[:-1])
    ok[n - min_run :] = False  # fewer than min_run epochs after e
    return int(np.argmax(ok)) + 1 if ok.any() else None


# -- curves as DataFrames --------------------------------------------------------------------


def curve_frame(curve: pd.DataFrame, columns: Iterable[str], what: str = "curve") -> pd.DataFrame:
    need = ["epoch", *columns]
    missing = [c for c in need if c not in curve.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {', '.join(missing)}; required: {', '.join(dict.fromkeys(need))}")
    if curve.empty:
        raise ValueError(f"{what} has no epochs")
    out = curve.sort_values("epoch", kind="stable").reset_index(drop=True)
    dup = out["epoch"][out["epoch"].duplicated()]
    if len(dup):
        raise ValueError(f"{what} has epoch {plain(dup.iloc[0])!r} more than once; epochs must be unique per trial")
    return out


def plain(x: Any) -> Any:
    """A NumPy scalar as the Python value, so messages read ``2``, not ``np.int64(2)``."""
    return x.item() if isinstance(x, np.generic) else x


def split_long(curves_long: pd.DataFrame, columns: Iterable[str]) -> dict[Any, pd.DataFrame]:
    if "trial" not in curves_long.columns:
        raise ValueError("curves frame is missing column trial; a long curves frame has one row per trial per epoch")
    return {plain(t): curve_frame(g, columns, f"curve of trial {plain(t)!r}") for t, g in curves_long.groupby("trial", sort=True)}


def alive_rows(curve: pd.DataFrame) -> np.ndarray:
    return np.isfinite(curve["train_loss"].to_numpy(float)) & np.isfinite(curve["val_loss"].to_numpy(float))


def monitor_columns(monitor: str) -> list[str]:
    return ["train_loss", "val_loss", *([monitor] if monitor != "val_loss" else [])]


def hindsight(values: np.ndarray, alive: np.ndarray, monitor: str) -> tuple[int | None, float]:
    """Row and value of the best monitored value over the epochs before any divergence."""
    n = int(np.argmin(alive)) if not alive.all() else len(alive)
    v = values[:n].astype(float)
    if not np.isfinite(v).any():
        return None, math.nan
    v = np.where(np.isfinite(v), v, np.nan)
    row = int(np.nanargmin(v) if monitor == "val_loss" else np.nanargmax(v))
    return row, float(v[row])


def summarize_trial(curve: pd.DataFrame, monitor: str = "val_loss", min_delta: float = 0.0, min_run: int = 3) -> dict[str, Any]:
    """One trial's curve in numbers.

    * ``best_epoch`` / ``best_value``: the epoch the trainer's rule (module docstring) calls
      best for `monitor` and `min_delta`, and its monitored value (None / NaN if none);
    * ``stopped_epoch``: the last epoch recorded; ``n_epochs``: rows recorded;
    * ``diverged``: the curve ends in a NaN/inf loss;
    * ``onset_epoch``: `overfitting_onset` with `min_run`, as an epoch number (None if none);
    * ``gap_at_best`` / ``gap_at_last``: generalization gap ``val_loss - train_loss`` at the
      best epoch (NaN if none) and at the last recorded epoch (NaN/inf after a divergence)."""
    check_monitor(monitor)
    check_min_delta(min_delta)
    c = curve_frame(curve, monitor_columns(monitor))
    alive = alive_rows(c)
    s = scan(c[monitor].to_numpy(float), alive, monitor, min_delta, None)
    epochs = c["epoch"].to_numpy()
    onset = overfitting_onset(c["train_loss"].to_numpy(float), c["val_loss"].to_numpy(float), min_run)
    gap = (c["val_loss"] - c["train_loss"]).to_numpy(float)
    return {
        "best_epoch": None if s.best is None else int(epochs[s.best]),
        "best_value": s.best_value,
        "stopped_epoch": int(epochs[-1]),
        "n_epochs": len(c),
        "diverged": not bool(alive.all()),
        "onset_epoch": None if onset is None else int(epochs[onset - 1]),
        "gap_at_best": math.nan if s.best is None else float(gap[s.best]),
        "gap_at_last": float(gap[-1]),
    }


def summarize(curves_long: pd.DataFrame, monitor: str = "val_loss", min_delta: float = 0.0, min_run: int = 3) -> pd.DataFrame:
    """`summarize_trial` for every trial of a long curves frame: one row per trial, sorted by
    trial, epoch columns as nullable integers."""
    check_monitor(monitor)
    rows = [
        {"trial": t, **summarize_trial(c, monitor, min_delta, min_run)}
        for t, c in split_long(curves_long, monitor_columns(monitor)).items()
    ]
    cols = [
        "trial",
        "best_epoch",
        "best_value",
        "stopped_epoch",
        "n_epochs",
        "diverged",
        "onset_epoch",
        "gap_at_best",
        "gap_at_last",
    ]
    out = pd.DataFrame(rows, columns=cols)
    for c in ("best_epoch", "onset_epoch", "stopped_epoch", "n_epochs"):
        out[c] = out[c].astype("Int64")
    return out
