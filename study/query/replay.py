"""The early-stopping replay: every recorded curve replayed under other patiences, without
retraining, by the trainer's own rule (`study.query.curves`, `trainers.stopping`).

A replay is exact for a run that ended on its own whatever its early-stopping settings:
``completed`` ran every epoch and ``diverged`` ends at the same epoch under any patience.
``early_stopped`` and ``stopped_by_caller`` (pruned) curves are cut short and are not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from study.query.curves import (
    alive_rows,
    check_min_delta,
    check_monitor,
    check_patience,
    hindsight,
    monitor_columns,
    scan,
    split_long,
)
from trainers import STOP_REASONS

#: Trainer stop reasons of runs whose replay is exact (see the module docstring).
EXACT_STOP_REASONS = frozenset({"completed", "diverged"})
KNOWN_STOP_REASONS = frozenset(STOP_REASONS)


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
    check_monitor(monitor)
    check_min_delta(min_delta)
    pats = list(patiences)
    if not pats:
        raise ValueError("patiences must hold at least one patience, got none")
    for p in pats:
        check_patience(p)
    curves = split_long(curves_long, monitor_columns(monitor))
    exact = _exactness(curves, curves_long, replayable, stop_reasons)
    sign = 1.0 if monitor == "val_loss" else -1.0
    rows = []
    for t, c in curves.items():
        values, alive, epochs = c[monitor].to_numpy(float), alive_rows(c), c["epoch"].to_numpy()
        h_row, h_value = hindsight(values, alive, monitor)
        for p in pats:
            s = scan(values, alive, monitor, min_delta, int(p))
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
