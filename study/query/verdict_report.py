"""A comparison's verdict, from its Optuna record alone, and how it is shown.

Every finished run of a comparison stores its measures (user attr ``measures``) and the arms
it serves (``arms``), its seed and phase (`study.run.design`). The verdict judges the
verdict-phase runs: for each claim of `CompareSpec.judgements` (the primary claim, then every
``also``), ``{arm: {seed: value}}`` goes to `study.query.verdicts.compare`; a run without a
value (failed, diverged, a measure that could not be taken) is a NaN, so its seed is listed
as excluded. A confirmation (``compare.confirms``) is ranked instead (`verdicts.rank`): the
top trials of a tuning study re-trained on fresh seeds, the best against the runner-up.

`conclude` is what the engine calls at the end of a comparison (`run_study(conclude=...)`);
`StudyHandle.verdict` returns the same dict later.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import optuna

from study.comparison import CompareSpec
from study.query.verdicts import compare, rank
from study.record import TrialAttr, TrialRecord
from study.spec import StudySpec

MAIN = "main"


def _main_runs(records: Iterable[TrialRecord]) -> list[TrialRecord]:
    """The verdict-phase runs that count (re-run trials are superseded by their re-run)."""
    return [r for r in records if r.counted and r.attrs.get(TrialAttr.PHASE) == MAIN]


def arm_values(records: Iterable[TrialRecord], comp: CompareSpec, measures: dict[str, str]) -> dict[str, dict[int, float]]:
    """``{arm: {seed: value}}`` of each arm's measure (`measures`: arm -> measure) over the
    verdict's runs, every arm of the design present (an arm without runs is empty); a run
    without a value is NaN."""
    out: dict[str, dict[int, float]] = {a: {} for a in comp.arms()}
    for r in _main_runs(records):
        stored = r.attrs.get(TrialAttr.MEASURES) or {}
        seed = r.seed
        if seed is None:
            continue
        for arm in r.attrs.get(TrialAttr.ARMS) or []:
            if arm in out:
                v = stored.get(measures[arm])
                out[arm][seed] = math.nan if v is None else float(v)
    return out


def chosen_lrs(records: Iterable[TrialRecord], comp: CompareSpec) -> dict[str, float] | None:
    """Each arm's learning rate as its verdict runs used it (None without ``tune_lr``)."""
    if comp.tune_lr is None:
        return None
    out: dict[str, float] = {}
    for r in _main_runs(records):
        lr = (r.attrs.get(TrialAttr.CONFIG) or {}).get("lr")
        for arm in r.attrs.get(TrialAttr.ARMS) or []:
            if lr is not None:
                out.setdefault(arm, float(lr))
    return {a: out[a] for a in comp.arms() if a in out}


def judge(records: Sequence[TrialRecord], spec: StudySpec) -> dict[str, Any]:
    """The verdict of comparison `spec` on its stored runs (see the module). The dict has
    ``claim``, ``metric``, ``effect``, ``ci_low``, ``ci_high``, ``seeds``, ``outcome`` and
    ``text`` (`verdicts.compare`), ``also`` (the secondary claims' verdicts), ``lrs`` (each
    arm's tuned lr, or None), ``runs`` (verdict runs finished / planned) and ``study``."""
    comp = spec.compare
    if comp is None:
        raise ValueError(f"study {spec.name!r} is not a comparison (its spec has no compare section): it has no verdict")
    if comp.confirms is not None:
        return _ranking(records, spec, comp)
    verdicts = []
    for j in comp.judgements():
        values = arm_values(records, comp, j.measures)
        verdicts.append(compare(values, **j.kwargs))
    out = dict(verdicts[0])
    out["also"] = verdicts[1:]
    out["lrs"] = chosen_lrs(records, comp)
    out["runs"] = _progress(records, comp)
    out["study"] = spec.name
    return out


def _progress(records: Sequence[TrialRecord], comp: CompareSpec) -> dict[str, int]:
    """Verdict runs finished, and planned (distinct arms x seeds)."""
    distinct = len({json.dumps(a.overrides, sort_keys=True) for a in comp.arms().values()})
    return {"finished": len(_main_runs(records)), "planned": distinct * comp.seeds}


def _ranking(records: Sequence[TrialRecord], spec: StudySpec, comp: CompareSpec) -> dict[str, Any]:
    """A confirmation's result: the re-trained top trials ranked over the fresh seeds."""
    assert comp.confirms is not None
    values = arm_values(records, comp, {a: comp.measure for a in comp.arms()})
    r = rank(
        values,
        goal=comp.confirms.goal,
        metric=comp.measure,
        confidence=comp.confidence,
        method=comp.method,
        correction=comp.correction,
    )
    runner = r["ranking"][1]
    seeds = sorted({s for v in values.values() for s, x in v.items() if math.isfinite(x)})
    tuned_best = comp.baseline_name
    place = [row["name"] for row in r["ranking"]].index(tuned_best) + 1
    text = r["text"]
    if r["best"] != tuned_best:
        text += f" The tuning study's winner {tuned_best} ranks #{place} on these seeds."
    else:
        text += f" The tuning study's winner {tuned_best} stays first."
    if not r["distinguishable"]:
        text += " Inconclusive: more seeds, or a tie between them."
    return {
        "claim": f"The best of the top {len(values)} trials of {comp.confirms.study} is distinguishable from the runner-up",
        "metric": comp.measure,
        "effect": runner.get("effect_vs_best"),
        "ci_low": runner.get("ci_low"),
        "ci_high": runner.get("ci_high"),
        "seeds": seeds,
        "outcome": "supported" if r["distinguishable"] else "inconclusive",
        "text": text,
        "confirms": comp.confirms.study,
        "tuning_best": tuned_best,
        "configs": _differing(comp),
        "study": spec.name,
        **{k: r[k] for k in ("ranking", "best", "runner_up", "distinguishable", "method", "confidence", "correction", "goal")},
    }


def _differing(comp: CompareSpec) -> dict[str, dict[str, Any]]:
    """Each arm's values of the fields in which the arms differ (what tells them apart)."""
    arms = comp.arms()
    keys = sorted({k for a in arms.values() for k in a.overrides})
    varied = [k for k in keys if len({json.dumps(a.overrides.get(k), sort_keys=True) for a in arms.values()}) > 1]
    return {name: {k: a.overrides.get(k) for k in varied} for name, a in arms.items()}


def conclude(study: optuna.Study, spec: StudySpec) -> dict[str, Any] | None:
    """What a finished study concludes: a comparison's verdict (None for a search). Given to
    `study.run.launch.run_study` so the engine records it on the MLflow parent run."""
    if spec.compare is None:
        return None
    return judge([TrialRecord.of(t) for t in study.get_trials(deepcopy=False)], spec)


# -- text ------------------------------------------------------------------------------------------
def _num(x: Any, fmt: str = "+.4g") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def _short(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def render(v: dict[str, Any]) -> str:
    """The verdict as the CLI prints it: the sentence, each level (or the ranking), the
    secondary claims, and the tuned learning rates."""
    lines = [f"[{str(v['outcome']).upper()}] {v['text']}"]
    if "ranking" in v:
        head = f"  {'rank':>4}  {'arm':<14} {'mean':>10} {'sd':>9} {'n':>3}  {'vs best (CI)':>32}  {'worse?':<13} configuration"
        lines.append(head)
        for i, row in enumerate(v["ranking"], 1):
            ci = "" if i == 1 else f"{_num(row.get('effect_vs_best'))} [{_num(row.get('ci_low'))}, {_num(row.get('ci_high'))}]"
            worse = "" if i == 1 else str(row.get("worse_than_best"))
            mean = _num(row["mean"], ".4g")
            config = " ".join(f"{k}={_short(x)}" for k, x in v.get("configs", {}).get(row["name"], {}).items())
            lines.append(
                f"  {i:>4}  {row['name']:<14} {mean:>10} {_num(row['sd'], '.3g'):>9} {row['n']:>3}  {ci:>32}  {worse:<13} {config}"
            )
        return "\n".join(lines)
    for lv in v.get("levels", []):
        b, t = lv["baseline"], lv["treatment"]
        lines.append(
            f"  {lv['level']} vs {b['name']}: {_num(t['mean'], '.4g')} vs {_num(b['mean'], '.4g')}, effect {_num(lv['effect'])} "
            f"[{_num(lv['ci_low'])}, {_num(lv['ci_high'])}] at {100 * lv['confidence_used']:.4g}% -> {lv['outcome']}"
            + (f" (excluded seeds: {lv['excluded']})" if lv.get("excluded") else "")
        )
    for a in v.get("also", []):
        lines.append(f"  also [{str(a['outcome']).upper()}] {a['text']}")
    if v.get("lrs"):
        lines.append("  tuned lr per arm: " + ", ".join(f"{a}: {lr:g}" for a, lr in v["lrs"].items()))
    return "\n".join(lines)


def seeds_by_arm(records: Iterable[TrialRecord], comp: CompareSpec) -> dict[str, dict[int, int]]:
    """``{arm: {seed: trial number}}`` of the verdict's runs (the curves of each arm)."""
    out: dict[str, dict[int, int]] = defaultdict(dict)
    for r in _main_runs(records):
        for arm in r.attrs.get(TrialAttr.ARMS) or []:
            if r.seed is not None:
                out[arm][r.seed] = r.number
    return {a: out.get(a, {}) for a in comp.arms()}
