"""The study report: one self-contained HTML file (figures embedded as PNG) built from the
trials table and the per-epoch curves, both plain DataFrames (see `study.query.handle`).

Sections: best trials; training vs validation curves of the top trials; generalization gap
against dropout, L1, L2 and weight decay; depth vs width; optimizer and schedule; per-layer
gradient norms by activation and depth; the early-stopping replay; hyperparameter
importance. A section without data in this study says so instead of drawing an empty plot.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from study.query import replay as replay_mod

REPLAY_PATIENCES = (1, 2, 3, 5, 10)
REGULARIZERS = ("dropout", "l1", "l2", "weight_decay")


@dataclass
class Section:
    title: str
    text: str = ""
    figure: str | None = None  # file stem of the PNG, if any
    table: str | None = None  # HTML
    empty: str | None = None  # why there is nothing to show


@dataclass
class Report:
    html_path: Path
    figures: list[Path] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _varied(trials: pd.DataFrame, col: str) -> bool:
    return col in trials and trials[col].dropna().astype(str).nunique() > 1


def _table(df: pd.DataFrame, digits: int = 4) -> str:
    return df.to_html(index=False, float_format=lambda v: f"{v:.{digits}g}", border=0, classes="t", na_rep="")


def _best_table(trials: pd.DataFrame, objective: str, k: int) -> Section:
    done = trials[trials["state"] == "COMPLETE"]
    if done.empty:
        return Section("Best trials", empty="No trial completed yet.")
    cols = ["number", "value", "stop_reason", "best_epoch", "stopped_epoch", "gap_at_best", "n_params"]
    hp = [c for c in trials.attrs.get("searched", trials.attrs.get("hyperparameters", [])) if c in trials]
    tests = [c for c in trials.attrs.get("test_metrics", []) if c in done]
    show = done.head(k)[[c for c in cols + hp + tests if c in done]]
    text = f"Top {len(show)} of {len(done)} completed trials by {objective}."
    if hp:
        text += (
            f" Searched settings: {', '.join(hp)} (a blank cell: the setting has no effect on that trial, "
            "such as momentum for Adam); every other setting was fixed."
        )
    if tests:
        text += f" {', '.join(tests)}: the held-out test split, shown only; never used to rank, select or prune trials."
    return Section("Best trials", text, table=_table(show))


def _curves(plt: Any, trials: pd.DataFrame, curves: pd.DataFrame, k: int) -> tuple[Section, Any]:
    top = trials[trials["state"] == "COMPLETE"].head(k)["number"].tolist()
    if not top or curves.empty:
        return Section("Training vs validation curves", empty="No completed trial has recorded curves."), None
    if not {"val_loss", "val_acc", "train_loss", "train_acc"} & set(curves.columns):
        return Section(
            "Training vs validation curves",
            empty="No loss or accuracy curve recorded (a trainer function reports its own metrics).",
        ), None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, t in enumerate(top):
        c = curves[curves["trial"] == t].sort_values("epoch")
        color = f"C{i % 10}"
        for ax, kind in ((axes[0], "loss"), (axes[1], "acc")):  # a trainer function may report some of them only
            if f"train_{kind}" in c:
                ax.plot(c["epoch"], c[f"train_{kind}"], "--", color=color)
            if f"val_{kind}" in c:
                ax.plot(c["epoch"], c[f"val_{kind}"], "-", color=color, label=f"trial {t}")
    axes[0].set(xlabel="epoch", ylabel="loss (dashed: train, solid: validation)", yscale="log")
    axes[1].set(xlabel="epoch", ylabel="accuracy (dashed: train, solid: validation)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    text = "Dashed lines are training metrics measured in evaluation mode (no dropout), solid lines validation."
    return Section("Training vs validation curves", text, figure="curves"), fig


def _gap(plt: Any, trials: pd.DataFrame) -> tuple[Section, Any]:
    done = trials[trials["gap_at_best"].notna()] if "gap_at_best" in trials else trials.iloc[:0]
    regs = [r for r in REGULARIZERS if _varied(done, r)]
    if done.empty or not regs:
        return Section(
            "Generalization gap vs regularization",
            empty="No regularization strength (dropout, L1, L2, weight decay) varied in this study.",
        ), None
    fig, axes = plt.subplots(1, len(regs), figsize=(3.6 * len(regs), 3.4), squeeze=False)
    for ax, r in zip(axes[0], regs, strict=True):
        x = done[r].astype(float)
        ax.scatter(x, done["gap_at_best"], s=18)
        if (x > 0).sum() > 1 and r != "dropout":
            ax.set_xscale("symlog", linthresh=max(float(x[x > 0].min()), 1e-8))
        ax.set(xlabel=r, ylabel="val_loss - train_loss at best epoch")
    fig.tight_layout()
    return Section("Generalization gap vs regularization", f"Varied here: {', '.join(regs)}.", figure="gap"), fig


def _depth_width(plt: Any, trials: pd.DataFrame, objective: str) -> tuple[Section, Any]:
    done = trials[trials["state"] == "COMPLETE"]
    if done.empty or not (_varied(done, "depth") or _varied(done, "width")):
        return Section("Depth vs width", empty="Neither depth nor width varied in this study."), None
    # width has no effect at depth 0 (softmax regression): 0 there
    width = done["width"].map(
        lambda w: float(np.mean(w)) if isinstance(w, (list, tuple)) else 0.0 if w is None or pd.isna(w) else float(w)
    )
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    pivot = done.assign(mean_width=width.round().astype(int)).pivot_table(
        index="depth", columns="mean_width", values="value", aggfunc="mean"
    )
    im = axes[0].imshow(pivot.values, aspect="auto", origin="lower", cmap="viridis")
    axes[0].set_xticks(range(len(pivot.columns)), [str(c) for c in pivot.columns], rotation=90, fontsize=7)
    axes[0].set_yticks(range(len(pivot.index)), [str(i) for i in pivot.index])
    axes[0].set(xlabel="width (mean per layer)", ylabel="depth", title=f"mean {objective}")
    fig.colorbar(im, ax=axes[0])
    sc = axes[1].scatter(done["n_params"], done["value"], c=done["depth"], cmap="plasma", s=20)
    axes[1].set(xlabel="parameters", ylabel=objective, xscale="log", title="by parameter count (colour: depth)")
    fig.colorbar(sc, ax=axes[1])
    fig.tight_layout()
    text = "Left: mean objective per (depth, width) cell. Right: every completed trial by its parameter count."
    budgets = done["n_params_budget"].dropna() if "n_params_budget" in done else pd.Series(dtype=float)
    if not budgets.empty:
        levels = ", ".join(f"{int(b):,}" for b in sorted(budgets.unique()))
        text += (
            f" {len(budgets)} of these {len(done)} trials derive their width from an equal parameter budget ({levels} parameters), "
            "so at the same budget deep-thin and shallow-wide networks are compared at equal cost."
        )
    return Section("Depth vs width", text, figure="depth_width"), fig


def _categorical(plt: Any, trials: pd.DataFrame, objective: str) -> tuple[Section, Any]:
    done = trials[trials["state"] == "COMPLETE"]
    cats = [c for c in ("optimizer", "schedule") if _varied(done, c)]
    if done.empty or not cats:
        return Section("Optimizer and schedule", empty="Neither the optimizer nor the schedule varied in this study."), None
    fig, axes = plt.subplots(1, len(cats), figsize=(5.5 * len(cats), 3.8), squeeze=False)
    for ax, c in zip(axes[0], cats, strict=True):
        groups = sorted(done[c].astype(str).unique())
        ax.boxplot([done.loc[done[c].astype(str) == g, "value"] for g in groups], tick_labels=groups)
        ax.set(xlabel=c, ylabel=objective)
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return Section("Optimizer and schedule", figure="optimizer_schedule"), fig


def _grad_norms(plt: Any, trials: pd.DataFrame, curves: pd.DataFrame) -> tuple[Section, Any]:
    cols = [c for c in curves.columns if c.startswith("grad_norm_")]
    if curves.empty or not cols or "activation" not in trials:
        return Section(
            "Per-layer gradient norms",
            empty="No per-layer gradient norms of the built-in MLP were recorded (a user model's per-tensor norms, "
            "grad_norm.<parameter>, are in its curves).",
        ), None
    first = curves[curves["epoch"] == curves.groupby("trial")["epoch"].transform("min")]
    first = first.merge(trials[["number", "activation", "depth"]], left_on="trial", right_on="number")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, (act, g) in enumerate(first.groupby("activation")):
        ratios = []
        for _, row in g.iterrows():
            norms = [row[f"grad_norm_{j}"] for j in range(int(row["depth"]) + 1) if pd.notna(row.get(f"grad_norm_{j}"))]
            if len(norms) >= 2 and norms[0] > 0:
                ratios.append((row["depth"], norms[-1] / norms[0]))
                axes[0].plot(range(len(norms)), norms, color=f"C{i}", alpha=0.5)
        if ratios:
            d, r = zip(*ratios, strict=True)
            axes[1].scatter(d, r, color=f"C{i}", label=str(act), s=20)
        axes[0].plot([], [], color=f"C{i}", label=str(act))
    axes[0].set(xlabel="layer (0 = first)", ylabel="weight-gradient norm, first epoch", yscale="log")
    axes[1].set(xlabel="depth", ylabel="last / first layer gradient norm", yscale="log")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    text = "A ratio far above 1 means the lower layers barely learn: the vanishing gradient of deep sigmoid nets."
    return Section("Per-layer gradient norms by activation and depth", text, figure="grad_norms"), fig


def _replay(trials: pd.DataFrame, curves: pd.DataFrame, monitor: str) -> Section:
    if curves.empty:
        return Section("Early-stopping replay", empty="No curves recorded.")
    missing = sorted({monitor, "train_loss", "val_loss"} - set(curves.columns))
    if missing:
        return Section("Early-stopping replay", empty=f"No {', '.join(missing)} curve recorded to replay.")
    reasons = dict(zip(trials["number"], trials["stop_reason"], strict=True))
    c = curves[curves["trial"].isin(list(reasons))]
    if c.empty:
        return Section("Early-stopping replay", empty="No trial recorded a curve to replay.")
    exact = {t: reasons[t] in replay_mod.EXACT_STOP_REASONS for t in c["trial"].unique()}
    replay = replay_mod.replay_early_stopping(c, REPLAY_PATIENCES, monitor=monitor, replayable=exact)
    summary = replay_mod.replay_summary(replay)
    n_exact = sum(exact.values())
    text = (
        f"Each trial's recorded {monitor} curve replayed under patience {', '.join(map(str, REPLAY_PATIENCES))}, without retraining. "
        f"{n_exact} of {len(exact)} trials ran to their end without the trainer's own early stopping, so their replay is exact; "
        "the others were cut short and are replayed on what was recorded."
    )
    return Section("Early-stopping replay", text, table=_table(summary))


def _importance(plt: Any, importance: dict[str, float] | None) -> tuple[Section, Any]:
    if not importance:
        return Section(
            "Hyperparameter importance", empty="Too few completed trials (or parameters) to estimate importance."
        ), None
    items = sorted(importance.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(items) + 1.2))
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set(xlabel="importance (fANOVA, share of objective variance)")
    fig.tight_layout()
    return Section("Hyperparameter importance", figure="importance"), fig


def build_report(
    name: str,
    trials: pd.DataFrame,
    curves: pd.DataFrame,
    out_html: str | Path,
    *,
    objective: str = "val_loss",
    monitor: str = "val_loss",
    importance: dict[str, float] | None = None,
    top: int = 5,
    lead: Sequence[tuple[Section, Any]] = (),
) -> Report:
    """Write the report for study `name` to `out_html` and its figures as PNG beside it
    (``<stem>_figures/``). `trials` is sorted best first and has the columns of
    `study.query.handle.StudyHandle.trials`; `curves` the long per-epoch frame. `lead`:
    sections (and their figures) placed first, a comparison's verdict
    (`study.query.verdict_section`)."""
    plt = _plt()
    out = Path(out_html)
    fig_dir = out.with_name(out.stem + "_figures")
    fig_dir.mkdir(parents=True, exist_ok=True)
    report = Report(out)
    built: list[tuple[Section, Any]] = [
        *lead,
        (_best_table(trials, objective, top), None),
        _curves(plt, trials, curves, top),
        _gap(plt, trials),
        _depth_width(plt, trials, objective),
        _categorical(plt, trials, objective),
        _grad_norms(plt, trials, curves),
        (_replay(trials, curves, monitor), None),
        _importance(plt, importance),
    ]
    body = []
    for section, fig in built:
        report.sections.append(section)
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.text:
            body.append(f"<p>{html.escape(section.text)}</p>")
        if section.empty:
            body.append(f'<p class="empty">{html.escape(section.empty)}</p>')
        if section.table:
            body.append(f'<div class="scroll">{section.table}</div>')
        if fig is not None and section.figure:
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=110)
            plt.close(fig)
            png = buf.getvalue()
            path = fig_dir / f"{section.figure}.png"
            path.write_bytes(png)
            report.figures.append(path)
            body.append(f'<img alt="{html.escape(section.title)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">')
    counts = trials["state"].value_counts().to_dict() if not trials.empty else {}
    head = ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items())) or "no trials"
    out.write_text(
        _PAGE.format(
            title=html.escape(f"hpstudy report: {name}"), name=html.escape(name), head=html.escape(head), body="\n".join(body)
        ),
        encoding="utf-8",
    )
    return report


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }}
h1 {{ margin-bottom: 0.2em; }} h2 {{ border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }}
table.t {{ border-collapse: collapse; font-size: 0.85em; }} table.t td, table.t th {{ padding: 3px 8px; border-bottom: 1px solid #eee; text-align: right; }}
img {{ max-width: 100%; }} .empty {{ color: #888; font-style: italic; }} .scroll {{ overflow-x: auto; }}
</style></head>
<body><h1>Study {name}</h1><p>{head}</p>
{body}
</body></html>
"""
