"""The first sections of a comparison's report, above the usual plots: the verdict (or a
confirmation's ranking), the effect plot with error bars over seeds, and the curves of each
arm (mean and band over seeds).

Effect plot, left: every seed's value of each arm's measure (dots) and the arm's mean with
its 95% t-interval over seeds; right: each level's effect against the baseline with the
interval the verdict used (paired, corrected over levels), the zero line and the minimum
effect. Curves: per arm, the mean of the measure's per-epoch quantity over the seeds with the
band of their range (min to max), and the training and validation losses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from study.comparison import CompareSpec
from study.measures import AGGREGATES, key_value, parse_measure
from study.query.report import Section

EPOCH_KINDS = (*AGGREGATES, "at", "epochs_to")


def _html(df: pd.DataFrame) -> str:
    return df.to_html(index=False, float_format=lambda x: f"{x:.4g}", border=0, classes="t", na_rep="")


def verdict_table(v: dict[str, Any]) -> pd.DataFrame:
    """One row per level (or per ranked arm of a confirmation), then the secondary claims."""
    if "ranking" in v:
        rows = [
            {
                "rank": i,
                "arm": r["name"],
                "mean": r["mean"],
                "sd": r["sd"],
                "seeds": r["n"],
                "vs best": r.get("effect_vs_best"),
                "ci_low": r.get("ci_low"),
                "ci_high": r.get("ci_high"),
                "worse than best": r.get("worse_than_best", ""),
            }
            for i, r in enumerate(v["ranking"], 1)
        ]
        return pd.DataFrame(rows)
    rows = []
    for claim in [v, *v.get("also", [])]:
        for lv in claim["levels"]:
            rows.append(
                {
                    "claim": "primary" if claim is v else claim["claim"],
                    "level": lv["level"],
                    "baseline mean": lv["baseline"]["mean"],
                    "level mean": lv["treatment"]["mean"],
                    "effect": lv["effect"],
                    "ci_low": lv["ci_low"],
                    "ci_high": lv["ci_high"],
                    "confidence": lv["confidence_used"],
                    "seeds": lv["n"],
                    "outcome": lv["outcome"],
                }
            )
    return pd.DataFrame(rows)


def _mean_ci(values: list[float]) -> tuple[float, float]:
    a = np.array([x for x in values if math.isfinite(x)])
    if len(a) < 2:
        return (float(a.mean()) if len(a) else math.nan), 0.0
    return float(a.mean()), float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a)))


def effect_figure(plt: Any, v: dict[str, Any], values: Mapping[str, Mapping[int, float]], comp: CompareSpec) -> Any:
    """Left: each arm's values over seeds and mean +- 95% t-interval; right: the effects."""
    arms = list(values)
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(arms) + 2.6))
    ax = axes[0]
    for i, a in enumerate(arms):
        xs = [x for x in values[a].values() if math.isfinite(x)]
        ax.scatter(xs, [i] * len(xs), s=14, color="0.55", zorder=2)
        mean, half = _mean_ci(xs)
        ax.errorbar([mean], [i], xerr=[half], fmt="o", color="C0", capsize=4, zorder=3)
    ax.set_yticks(range(len(arms)), arms, fontsize=8)
    ax.set(xlabel=f"{v['metric']} (dots: seeds; bar: mean, 95% t-interval)")
    ax.invert_yaxis()
    ax = axes[1]
    rows = v["ranking"][1:] if "ranking" in v else v["levels"]
    names = [r.get("name", r.get("level")) for r in rows]
    for i, r in enumerate(rows):
        eff = r.get("effect_vs_best", r.get("effect"))
        lo, hi = r.get("ci_low"), r.get("ci_high")
        if eff is None:
            continue
        err = [[eff - lo], [hi - eff]] if lo is not None and hi is not None else None
        color = {"supported": "C2", "contradicted": "C3"}.get(r.get("outcome", r.get("worse_than_best")), "0.4")
        ax.errorbar([eff], [i], xerr=err, fmt="o", color=color, capsize=4)
    ax.axvline(0, color="0.3", lw=0.8)
    m = comp.min_effect
    if m > 0 and "ranking" not in v:
        for x in (-m, m) if comp.expect == "equal" else ((-m,) if comp.expect == "lower" else (m,)):
            ax.axvline(x, color="0.5", lw=0.8, ls="--")
    against = v["ranking"][0]["name"] if "ranking" in v else v["baseline"]
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set(xlabel=f"effect against {against} (as judged; green: supported, red: contradicted)")
    ax.invert_yaxis()
    fig.tight_layout()
    return fig


def curve_key(comp: CompareSpec) -> tuple[str | None, bool]:
    """The per-epoch quantity behind the primary measure (None for a summary value) and
    whether it is read in log10; a replayed early stopping reads ``val_loss``."""
    m = parse_measure(comp.measure)
    if m.kind in EPOCH_KINDS:
        return m.key, m.log10
    return ("val_loss", False) if m.kind.startswith("es_") else (None, False)


def _series(curves: pd.DataFrame, key: str) -> pd.Series:
    if key in curves:
        return curves[key]
    return pd.Series(
        [_value({k: v for k, v in row.items() if pd.notna(v)}, key) for row in curves.to_dict("records")], index=curves.index
    )


def _value(row: dict[str, Any], key: str) -> float:
    try:
        return key_value(row, key)
    except (ValueError, KeyError):
        return math.nan


def curves_figure(plt: Any, curves: pd.DataFrame, trials: Mapping[str, Mapping[int, int]], comp: CompareSpec) -> Any | None:
    """Per arm, the mean and the range over seeds of the measure's quantity and of the losses."""
    if curves.empty:
        return None
    key, log = curve_key(comp)
    keys = [k for k in (key, "loss") if k is not None]
    fig, axes = plt.subplots(1, len(keys), figsize=(5.6 * len(keys), 4), squeeze=False)
    for i, (arm, seeds) in enumerate(trials.items()):
        mine = curves[curves["trial"].isin(list(seeds.values()))]
        if mine.empty:
            continue
        color = f"C{i % 10}"
        for ax, k in zip(axes[0], keys, strict=True):
            for col, style in (["train_loss", "--"], ["val_loss", "-"]) if k == "loss" else ([k, "-"],):
                s = mine.assign(_y=_series(mine, col)).groupby("epoch")["_y"]
                mean = s.mean()
                ax.plot(mean.index, mean.values, style, color=color, label=arm if style == "-" else None)
                ax.fill_between(mean.index, s.min().values, s.max().values, color=color, alpha=0.15, lw=0)
    for ax, k in zip(axes[0], keys, strict=True):
        label = "loss (dashed train, solid val)" if k == "loss" else k
        ax.set(xlabel="epoch", ylabel=f"{label}: mean, range over seeds")
        if k == "loss" or log:
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def sections(
    v: dict[str, Any], values: Mapping[str, Mapping[int, float]], trials: Mapping[str, Mapping[int, int]],
    curves: pd.DataFrame, comp: CompareSpec,
) -> list[tuple[Section, Any]]:  # fmt: skip
    """The verdict, the effect plot and the curves of each arm, as report sections
    (`values`: arm -> seed -> the arm's measure; `trials`: arm -> seed -> trial number)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    title = "Confirmation: the top trials on fresh seeds" if "ranking" in v else "Verdict"
    head = Section(title, f"[{str(v['outcome']).upper()}] {v['text']}", figure="effect", table=_html(verdict_table(v)))
    fig = effect_figure(plt, v, values, comp)
    out: list[tuple[Section, Any]] = [(head, fig)]
    cfig = curves_figure(plt, curves, trials, comp)
    if cfig is None:
        out.append((Section("Curves of each arm", empty="No curves recorded in MLflow."), None))
    else:
        key, _ = curve_key(comp)
        what = f"{key} and the losses" if key else "the losses"
        text = (
            f"Each arm's {what} per epoch: the mean over its seeds (line) and their range (band); after an early stop, "
            "over the seeds that reached that epoch."
        )
        out.append((Section("Curves of each arm", text, figure="arm_curves"), cfig))
    return out
