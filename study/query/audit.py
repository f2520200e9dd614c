"""The pruning audit: was each pruned trial really behind the trials that went on to finish?
Pure pandas/NumPy over recorded curves (`study.query.curves`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from study.query.curves import split_long

DIRECTIONS = ("minimize", "maximize")


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
    curves = split_long(curves_long, [metric])
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
