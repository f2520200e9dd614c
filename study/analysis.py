"""Pure analysis of recorded training curves: best epoch, overfitting onset, generalization gap,
early-stopping replay and a pruning audit. No Ray, Optuna or MLflow: pandas and NumPy only.

A *curve* is one trial's per-epoch records: a DataFrame with columns ``epoch``,
``train_loss``, ``val_loss`` (and ``val_acc`` when it is monitored; other columns are
ignored), one row per epoch. A *long* frame is many curves stacked with an extra ``trial``
column, the shape ``curves(trials)`` returns. Rows are sorted by epoch here; epochs must be
unique within a trial. Patience counts recorded rows, so curves are expected to have every
epoch, as ``trainers.loop`` records them.

The early-stopping rule is exactly ``trainers.loop``'s:

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from trainers.config import MONITORS

#: Stop reasons (``trainers.loop.STOP_REASONS``) of runs that ended on their own, whatever
#: their early-stopping settings: ``completed`` ran every epoch and ``diverged`` ends at the
#: same epoch under any patience, so their replays are exact. ``early_stopped`` and
#: ``stopped_by_caller`` (pruned) curves are cut short and are not.
EXACT_STOP_REASONS = frozenset({"completed", "diverged"})
KNOWN_STOP_REASONS = frozenset({"completed", "early_stopped", "diverged", "stopped_by_caller"})
DIRECTIONS = ("minimize", "maximize")


# -- the rule on plain sequences -------------------------------------------------------------


@dataclass(frozen=True)
class _Scan:
    best: int | None  # row of the best epoch, None if no epoch improved
    best_value: float
    stop: int  # row of the last epoch the run would have trained
    fired: bool  # the patience rule ended the run (not the end of the record or a divergence)


def _check_monitor(monitor: str) -> None:
    if monitor not in MONITORS:
        raise ValueError(f"monitor must be one of {', '.join(MONITORS)}, got {monitor!r}")


def _check_min_delta(min_delta: float) -> None:
    if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float)) or not math.isfinite(min_delta) or min_delta < 0:
        raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta!r}")


def _check_patience(patience: Any) -> None:
    if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 1:
        raise ValueError(f"patience must be an integer >= 1, got {patience!r}")


def _improves(value: float, best: float, lower_is_better: bool, min_delta: float) -> bool:
    if not math.isfinite(value):
        return False
    return value < best - min_delta if lower_is_better else value > best + min_delta


def _scan(values: np.ndarray, alive: np.ndarray, monitor: str, min_delta: float, patience: int | None) -> _Scan:
    """Run the early-stopping rule over `values`; a row with ``alive`` False is a divergence."""
    lower = monitor == "val_loss"
    best, best_row, since = (math.inf if lower else -math.inf), None, 0
    for i, v in enumerate(values):
        if not alive[i]:
            return _Scan(best_row, best if best_row is not None else math.nan, i, False)
        if _improves(float(v), best, lower, min_delta):
            best, best_row, since = float(v), i, 0
        else:
            since += 1
        if patience is not None and since >= patience:
            return _Scan(best_row, best if best_row is not None else math.nan, i, True)
    return _Scan(best_row, best if best_row is not None else math.nan, len(values) - 1, False)


def best_epoch(values: Sequence[float], monitor: str = "val_loss", min_delta: float = 0.0) -> int | None:
    """1-based epoch of the best value under the rule above (a non-finite value ends the run),
    or None when no value is finite."""
    _check_monitor(monitor)
    _check_min_delta(min_delta)
    v = np.asarray(values, dtype=float)
    s = _scan(v, np.isfinite(v), monitor, min_delta, None)
    return None if s.best is None else s.best + 1


def stop_epoch(values: Sequence[float], patience: int, monitor: str = "val_loss", min_delta: float = 0.0) -> int:
    """1-based epoch after which a run with this `patience` would have stopped: the first epoch
    ending `patience` consecutive epochs without improvement, else the last one recorded."""
    _check_monitor(monitor)
    _check_min_delta(min_delta)
    _check_patience(patience)
    v = np.asarray(values, dtype=float)
    if not len(v):
        raise ValueError("values must hold at least one epoch, got an empty sequence")
    return _scan(v, np.isfinite(v), monitor, min_delta, int(patience)).stop + 1


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


def _curve(curve: pd.DataFrame, columns: Iterable[str], what: str = "curve") -> pd.DataFrame:
    need = ["epoch", *columns]
    missing = [c for c in need if c not in curve.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {', '.join(missing)}; required: {', '.join(dict.fromkeys(need))}")
    if curve.empty:
        raise ValueError(f"{what} has no epochs")
    out = curve.sort_values("epoch", kind="stable").reset_index(drop=True)
    dup = out["epoch"][out["epoch"].duplicated()]
    if len(dup):
        raise ValueError(f"{what} has epoch {_py(dup.iloc[0])!r} more than once; epochs must be unique per trial")
    return out


def _py(x: Any) -> Any:
    """A NumPy scalar as the Python value, so messages read ``2``, not ``np.int64(2)``."""
    return x.item() if isinstance(x, np.generic) else x


def _split(curves_long: pd.DataFrame, columns: Iterable[str]) -> dict[Any, pd.DataFrame]:
    if "trial" not in curves_long.columns:
        raise ValueError("curves frame is missing column trial; a long curves frame has one row per trial per epoch")
    return {_py(t): _curve(g, columns, f"curve of trial {_py(t)!r}") for t, g in curves_long.groupby("trial", sort=True)}


def _alive(curve: pd.DataFrame) -> np.ndarray:
    return np.isfinite(curve["train_loss"].to_numpy(float)) & np.isfinite(curve["val_loss"].to_numpy(float))


def _monitor_columns(monitor: str) -> list[str]:
    return ["train_loss", "val_loss", *([monitor] if monitor != "val_loss" else [])]


def _hindsight(values: np.ndarray, alive: np.ndarray, monitor: str) -> tuple[int | None, float]:
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
    _check_monitor(monitor)
    _check_min_delta(min_delta)
    c = _curve(curve, _monitor_columns(monitor))
    alive = _alive(c)
    s = _scan(c[monitor].to_numpy(float), alive, monitor, min_delta, None)
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
    _check_monitor(monitor)
    rows = [
        {"trial": t, **summarize_trial(c, monitor, min_delta, min_run)}
        for t, c in _split(curves_long, _monitor_columns(monitor)).items()
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


# -- early-stopping replay -------------------------------------------------------------------


def _exactness(
    trials: Iterable[Any],
    curves_long: pd.DataFrame,
    replayable: Mapping[Any, bool] | None,
    stop_reasons: Mapping[Any, str] | None,
) -> dict[Any, Any]:
    """Trial -> True/False (replay exact or not) or pd.NA (unknown)."""
    if replayable is not None and stop_reasons is not None:
        raise ValueError("give replayable or stop_reasons, not both")
    if replayable is None and stop_reasons is None and "stop_reason" in curves_long.columns:
        per = curves_long.groupby("trial", sort=True)["stop_reason"].agg(lambda s: set(s.dropna()))
        stop_reasons = {}
        for t, reasons in per.items():
            if len(reasons) != 1:
                raise ValueError(f"stop_reason of trial {t!r} must be one value per trial, got {sorted(map(str, reasons))}")
            stop_reasons[t] = reasons.pop()
    out: dict[Any, Any] = {}
    for t in trials:
        if replayable is not None:
            if t not in replayable:
                raise ValueError(f"replayable has no entry for trial {t!r}")
            out[t] = bool(replayable[t])
        elif stop_reasons is not None:
            if t not in stop_reasons:
                raise ValueError(f"stop_reasons has no entry for trial {t!r}")
            r = stop_reasons[t]
            if r not in KNOWN_STOP_REASONS:
                raise ValueError(f"stop reason of trial {t!r} must be one of {', '.join(sorted(KNOWN_STOP_REASONS))}, got {r!r}")
            out[t] = r in EXACT_STOP_REASONS
        else:
            out[t] = pd.NA
    return out


def replay_early_stopping(
    curves_long: pd.DataFrame,
    patiences: Iterable[int],
    min_delta: float = 0.0,
    monitor: str = "val_loss",
    replayable: Mapping[Any, bool] | None = None,
    stop_reasons: Mapping[Any, str] | None = None,
) -> pd.DataFrame:
    """Replay the trainer's early stopping (module docstring) on every recorded curve, for
    every patience, with restore-best. One row per trial and patience:

    * ``stop_epoch``: the epoch after which the replayed run stops; ``fired``: the patience
      rule stopped it (else it ran to the end of the record or to a divergence);
    * ``kept_epoch`` / ``kept_value``: best epoch seen up to ``stop_epoch`` and its monitored
      value, what restore-best keeps (None / NaN if no epoch improved);
    * ``stopped_epoch``: last epoch of the record; ``epochs_saved = stopped_epoch - stop_epoch``;
    * ``hindsight_epoch`` / ``hindsight_value``: the best monitored value over the whole record
      (min of ``val_loss`` or max of ``val_acc``, first occurrence, divergence excluded);
    * ``regret = kept_value - hindsight_value`` (``val_loss``) or
      ``hindsight_value - kept_value`` (``val_acc``): always >= 0, 0 when nothing was lost;
    * ``exact``: the trial ran to its own end (``completed`` or ``diverged``) so the replay is
      what the trainer would have done; False for early-stopped or pruned records, where
      regret and epochs saved are relative to the truncated record (though when ``fired`` the
      stop and kept epochs are still exact); NA when unknown.

    Exactness comes from `replayable` (trial -> bool), else `stop_reasons` (trial -> stop
    reason), else a ``stop_reason`` column of `curves_long`, else it is unknown."""
    _check_monitor(monitor)
    _check_min_delta(min_delta)
    pats = list(patiences)
    if not pats:
        raise ValueError("patiences must hold at least one patience, got none")
    for p in pats:
        _check_patience(p)
    curves = _split(curves_long, _monitor_columns(monitor))
    exact = _exactness(curves, curves_long, replayable, stop_reasons)
    sign = 1.0 if monitor == "val_loss" else -1.0
    rows = []
    for t, c in curves.items():
        values, alive, epochs = c[monitor].to_numpy(float), _alive(c), c["epoch"].to_numpy()
        h_row, h_value = _hindsight(values, alive, monitor)
        for p in pats:
            s = _scan(values, alive, monitor, min_delta, int(p))
            rows.append(
                {
                    "trial": t,
                    "patience": int(p),
                    "monitor": monitor,
                    "stop_epoch": int(epochs[s.stop]),
                    "fired": s.fired,
                    "kept_epoch": None if s.best is None else int(epochs[s.best]),
                    "kept_value": s.best_value,
                    "stopped_epoch": int(epochs[-1]),
                    "epochs_saved": int(epochs[-1] - epochs[s.stop]),
                    "hindsight_epoch": None if h_row is None else int(epochs[h_row]),
                    "hindsight_value": h_value,
                    "regret": sign * (s.best_value - h_value),
                    "exact": exact[t],
                }
            )
    cols = ["trial", "patience", "monitor", "stop_epoch", "fired", "kept_epoch", "kept_value", "stopped_epoch", "epochs_saved"]
    out = pd.DataFrame(rows, columns=[*cols, "hindsight_epoch", "hindsight_value", "regret", "exact"])
    out["kept_epoch"] = out["kept_epoch"].astype("Int64")
    out["hindsight_epoch"] = out["hindsight_epoch"].astype("Int64")
    out["exact"] = out["exact"].astype("boolean")
    return out


def replay_summary(replay: pd.DataFrame, exact_only: bool = False) -> pd.DataFrame:
    """Sum a `replay_early_stopping` frame over the study, one row per patience:
    ``n_trials``, ``n_exact``, ``n_fired``; ``epochs_run`` (sum of ``stopped_epoch``),
    ``epochs_saved`` and ``saved_fraction = epochs_saved / epochs_run``; ``regret_sum``,
    ``regret_mean``, ``regret_max`` and ``n_regret`` (trials with regret > 0);
    ``best_trial`` / ``best_kept``: the trial whose kept value is best under this patience,
    ``hindsight_trial``: the best by hindsight value, and ``changes_winner`` whether they
    differ (would this patience have changed the study's answer). With `exact_only`, only
    rows whose ``exact`` is True count."""
    need = {
        "trial",
        "patience",
        "monitor",
        "stopped_epoch",
        "epochs_saved",
        "kept_value",
        "hindsight_value",
        "regret",
        "exact",
        "fired",
    }
    missing = sorted(need - set(replay.columns))
    if missing:
        raise ValueError(f"replay frame is missing column(s) {', '.join(missing)}; pass the output of replay_early_stopping")
    r = replay[replay["exact"].fillna(False).astype(bool)] if exact_only else replay
    rows = []
    for p, g in r.groupby("patience", sort=True):
        lower = g["monitor"].iloc[0] == "val_loss"
        kept, hind = g["kept_value"].astype(float), g["hindsight_value"].astype(float)
        has_kept, has_hind = kept.notna().any(), hind.notna().any()
        best_i = (kept.idxmin() if lower else kept.idxmax()) if has_kept else None
        hind_i = (hind.idxmin() if lower else hind.idxmax()) if has_hind else None
        run, saved = int(g["stopped_epoch"].sum()), int(g["epochs_saved"].sum())
        rows.append(
            {
                "patience": int(p),
                "n_trials": len(g),
                "n_exact": int(g["exact"].fillna(False).astype(bool).sum()),
                "n_fired": int(g["fired"].sum()),
                "epochs_run": run,
                "epochs_saved": saved,
                "saved_fraction": saved / run if run else math.nan,
                "regret_sum": float(g["regret"].sum()),
                "regret_mean": float(g["regret"].mean()),
                "regret_max": float(g["regret"].max()),
                "n_regret": int((g["regret"] > 0).sum()),
                "best_trial": None if best_i is None else g.at[best_i, "trial"],
                "best_kept": math.nan if best_i is None else float(kept[best_i]),
                "hindsight_trial": None if hind_i is None else g.at[hind_i, "trial"],
                "changes_winner": bool(
                    best_i is not None and hind_i is not None and g.at[best_i, "trial"] != g.at[hind_i, "trial"]
                ),
            }
        )
    cols = [
        "patience",
        "n_trials",
        "n_exact",
        "n_fired",
        "epochs_run",
        "epochs_saved",
        "saved_fraction",
        "regret_sum",
        "regret_mean",
    ]
    return pd.DataFrame(
        rows, columns=[*cols, "regret_max", "n_regret", "best_trial", "best_kept", "hindsight_trial", "changes_winner"]
    )


# -- pruning audit ---------------------------------------------------------------------------


def pruning_audit(
    curves_long: pd.DataFrame,
    pruned: Mapping[Any, tuple[int, float]],
    metric: str = "val_loss",
    direction: str = "minimize",
    completed: Iterable[Any] | None = None,
    final: str = "best",
) -> pd.DataFrame:
    """For every pruned trial ``t -> (step, value)`` (the step it was stopped at and the value it
    reported there), compare ``value`` with the completed trials' `metric` at the same epoch
    ``step``. Completed trials are `completed`, default every trial of `curves_long` not in
    `pruned`; those with no finite value at ``step`` are left out. "Better" means lower for
    ``minimize`` and higher for ``maximize``; a NaN/inf pruned value is worse than any peer.
    One row per pruned trial, sorted by trial:

    * ``n_compared``: completed trials with a value at ``step``; ``n_better`` / ``n_worse``:
      how many of them were strictly better / worse than the pruned trial there;
    * ``rank = 1 + n_better`` (1 = the pruned trial led); ``beat_fraction = n_worse /
      n_compared`` (NaN without peers); ``median_at_step`` and ``best_at_step`` of the peers;
    * ``winner`` / ``winner_final``: the completed trial with the best final value, where a
      trial's final value is the best `metric` over its curve (``final="best"``, restore-best)
      or its last value (``final="last"``); ``winner_at_step``: its value at ``step``;
    * ``winner_was_worse``: the eventual winner was strictly worse than the pruned trial at
      ``step``. True means this pruning decision ranked by something that did not predict the
      winner: a possible mistake. NA when the winner has no value at ``step``."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    if final not in ("best", "last"):
        raise ValueError(f"final must be one of best, last, got {final!r}")
    curves = _split(curves_long, [metric])
    done = [t for t in curves if t not in pruned] if completed is None else list(completed)
    for t in done:
        if t in pruned:
            raise ValueError(f"trial {t!r} is in both pruned and completed")
        if t not in curves:
            raise ValueError(f"completed trial {t!r} has no curve in the curves frame")
    sign = 1.0 if direction == "minimize" else -1.0  # compare sign * value: lower is better

    def score(v: float) -> float:
        return sign * v if math.isfinite(v) else math.inf

    at_step: dict[Any, dict[int, float]] = {}
    finals: dict[Any, float] = {}
    for t in done:
        c = curves[t]
        vals = c[metric].to_numpy(float)
        at_step[t] = {int(e): float(v) for e, v in zip(c["epoch"], vals, strict=True) if math.isfinite(v)}
        fin = vals[np.isfinite(vals)]
        finals[t] = math.nan if not len(fin) else (float(fin[-1]) if final == "last" else float(sign * np.min(sign * fin)))
    ranked = [t for t in done if math.isfinite(finals[t])]
    winner = min(ranked, key=lambda t: sign * finals[t]) if ranked else None
    rows = []
    for t in sorted(pruned, key=_sort_key):
        entry = pruned[t]
        if not isinstance(entry, (tuple, list)) or len(entry) != 2:
            raise ValueError(f"pruned[{t!r}] must be a (step, value) pair, got {entry!r}")
        step, value = int(entry[0]), float(entry[1])
        peers = np.array([at_step[u][step] for u in done if step in at_step[u]], dtype=float)
        mine = score(value)
        n_better = int((sign * peers < mine).sum())
        n_worse = int((sign * peers > mine).sum())
        w_at = at_step[winner].get(step) if winner is not None else None
        rows.append(
            {
                "trial": t,
                "step": step,
                "value": value,
                "n_compared": len(peers),
                "n_better": n_better,
                "n_worse": n_worse,
                "rank": 1 + n_better,
                "beat_fraction": n_worse / len(peers) if len(peers) else math.nan,
                "median_at_step": float(np.median(peers)) if len(peers) else math.nan,
                "best_at_step": float(sign * np.min(sign * peers)) if len(peers) else math.nan,
                "winner": winner,
                "winner_final": finals[winner] if winner is not None else math.nan,
                "winner_at_step": math.nan if w_at is None else w_at,
                "winner_was_worse": pd.NA if w_at is None else bool(sign * w_at > mine),
            }
        )
    cols = [
        "trial",
        "step",
        "value",
        "n_compared",
        "n_better",
        "n_worse",
        "rank",
        "beat_fraction",
        "median_at_step",
        "best_at_step",
    ]
    out = pd.DataFrame(rows, columns=[*cols, "winner", "winner_final", "winner_at_step", "winner_was_worse"])
    out["winner_was_worse"] = out["winner_was_worse"].astype("boolean")
    return out


def _sort_key(t: Any) -> tuple[int, Any]:
    return (0, t) if isinstance(t, (int, np.integer, float)) else (1, str(t))
