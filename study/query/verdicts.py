"""Verdicts: does a comparison's measure, over seeds, support its claim?

Each arm holds one value of the measure per seed. The effect of a treatment is
``mean(treatment) - mean(baseline)``, paired by seed when the arms share seeds (the default
design) and unpaired (Welch) otherwise, with an interval at ``confidence`` from
`study.query.intervals` (t, BCa or percentile bootstrap). The claim's direction decides:

- ``expect="lower"`` (the treatment's measure is lower): ``supported`` when the whole
  interval is below ``-min_effect``, ``contradicted`` when it is wholly above 0;
- ``expect="higher"``: the mirror image;
- ``expect="equal"`` (equivalence within ``+-min_effect``, which must be > 0): ``supported``
  when the interval lies inside ``(-min_effect, min_effect)``, ``contradicted`` when it lies
  wholly outside;
- ``inconclusive`` otherwise, and whenever an arm has fewer than 2 usable seeds (3 for the
  bootstrap methods).

Several treatment levels against one baseline share a family-wise error rate: Holm's
step-down (levels in order of their interval-inversion p-values, level ``k`` of ``m`` read
at confidence ``1 - alpha / (m - k)``, stopping at the first undecided one) or Bonferroni
(every level at ``1 - alpha / m``). The overall outcome of ``overall="all"`` is supported
when every level is, contradicted when any level is; of ``overall="any"``, supported when
any level is, contradicted when every level is.

A NaN or infinite value (a diverged run) is left out, with its seed listed in ``excluded``;
paired arms keep only the seeds both have.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from study.query.intervals import METHODS, Estimate, bootstrap_estimate, describe, t_estimate

OUTCOMES = ("supported", "contradicted", "inconclusive")
EXPECTS = ("lower", "higher", "equal")
CORRECTIONS = ("holm", "bonferroni", "none")
OVERALLS = ("all", "any")
GOALS = ("minimize", "maximize")
MIN_SEEDS = 2
MIN_SEEDS_BOOTSTRAP = 3  # two values resample into only three distinct means

#: One arm's values: seed -> value, or a plain sequence (seeds unknown: never paired).
Values = Mapping[int, float] | Sequence[float]


# -- arms ---------------------------------------------------------------------------------------
class _Arm:
    """One arm's finite values by seed (positions stand in for seeds of a plain sequence)."""

    def __init__(self, name: str, values: Values) -> None:
        if isinstance(values, Mapping):
            items = list(values.items())
            self.keyed = True
        elif isinstance(values, Sequence) and not isinstance(values, str) or isinstance(values, np.ndarray):
            items = list(enumerate(values))
            self.keyed = False
        else:
            raise ValueError(f"values of arm {name!r} must be a mapping seed -> value or a sequence of numbers, got {values!r}")
        self.name = name
        self.values: dict[int, float] = {}
        self.excluded: list[int] = []
        for seed, v in items:
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise ValueError(f"value of arm {name!r} at seed {seed!r} must be a number, got {v!r}")
            if math.isfinite(float(v)):
                self.values[int(seed)] = float(v)
            else:
                self.excluded.append(int(seed))

    def array(self, seeds: Sequence[int] | None = None) -> np.ndarray:
        return np.array([self.values[s] for s in (sorted(self.values) if seeds is None else seeds)])

    def summary(self, seeds: Sequence[int] | None = None) -> dict[str, Any]:
        a = self.array(seeds)
        return {
            "name": self.name,
            "mean": _num(a.mean()) if len(a) else None,
            "sd": _num(a.std(ddof=1)) if len(a) > 1 else None,
            "n": len(a),
        }


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _check_options(expect: str, confidence: float, min_effect: float, method: str) -> None:
    if expect not in EXPECTS:
        raise ValueError(f"expect must be one of {', '.join(EXPECTS)}, got {expect!r}")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}")
    if (
        isinstance(min_effect, bool)
        or not isinstance(min_effect, (int, float))
        or not math.isfinite(min_effect)
        or min_effect < 0
    ):
        raise ValueError(f"min_effect must be a finite number >= 0, got {min_effect!r}")
    if expect == "equal" and min_effect <= 0:
        raise ValueError(
            "expect 'equal' needs min_effect > 0: the equivalence margin (the interval must lie inside +-min_effect)"
        )
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


# -- one treatment against the baseline ------------------------------------------------------------
class _Pair:
    """A treatment arm against the baseline: the seeds used, the estimate, the p-value that
    orders it in Holm's procedure."""

    def __init__(self, base: _Arm, treat: _Arm, paired: bool | None, method: str, n_boot: int, seed: int) -> None:
        self.base, self.treat = base, treat
        common = sorted(set(base.values) & set(treat.values))
        if paired is None:
            paired = base.keyed and treat.keyed and len(common) >= MIN_SEEDS
        if paired and (base.keyed != treat.keyed):
            raise ValueError("paired arms need the same kind of values: both mappings seed -> value or both sequences")
        self.paired = bool(paired)
        self.excluded = {base.name: sorted(base.excluded), treat.name: sorted(treat.excluded)}
        if self.paired:
            self.seeds = common
            for arm in (base, treat):  # a seed without its partner leaves the paired design
                self.excluded[arm.name] = sorted(set(self.excluded[arm.name]) | (set(arm.values) - set(common)))
            b, t = base.array(common), treat.array(common)
            self.seeds_b = self.seeds_t = common
        else:
            self.seeds_b, self.seeds_t = sorted(base.values), sorted(treat.values)
            self.seeds = sorted(set(self.seeds_b) | set(self.seeds_t))
            b, t = base.array(), treat.array()
        self.n = (len(b), len(t))
        self.method = method
        self.needed = MIN_SEEDS if method == "t" else MIN_SEEDS_BOOTSTRAP
        self.est: Estimate | None = None
        if min(self.n) >= self.needed:
            if method == "t":
                self.est = t_estimate(b, t, self.paired)
            else:
                self.est = bootstrap_estimate(b, t, self.paired, method, n_boot, seed)
        self.effect = float(t.mean() - b.mean()) if len(b) and len(t) else math.nan

    def p_values(self, expect: str, m: float) -> tuple[float, float]:
        """(p of "supported", p of "contradicted"): the smallest alpha whose interval decides."""
        e = self.est
        if e is None:
            return 1.0, 1.0
        if expect == "lower":
            return e.p_below(-m), e.p_above(0.0)
        if expect == "higher":
            return e.p_above(m), e.p_below(0.0)
        return max(e.p_above(-m), e.p_below(m)), min(e.p_above(m), e.p_below(-m))

    def p_zero(self) -> float:
        """Two-sided p-value of "no difference" (the interval's inversion at 0)."""
        if self.est is None:
            return 1.0
        return min(self.est.p_above(0.0), self.est.p_below(0.0))


def _outcome(lo: float, hi: float, expect: str, m: float) -> str:
    if expect == "lower":
        return "supported" if hi < -m else "contradicted" if lo > 0 else "inconclusive"
    if expect == "higher":
        return "supported" if lo > m else "contradicted" if hi < 0 else "inconclusive"
    return "supported" if -m < lo and hi < m else "contradicted" if lo > m or hi < -m else "inconclusive"


def _why(outcome: str, lo: float, hi: float, expect: str, m: float) -> str:
    if outcome != "inconclusive":
        return ""
    if expect == "equal":
        return f"the interval straddles the margin +-{m:.3g}"
    if lo <= 0 <= hi:
        return "the interval includes 0"
    return f"the interval excludes 0 but not the minimum effect {m:.3g}"


def _level_result(pair: _Pair, alpha: float, expect: str, m: float, skipped: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "level": pair.treat.name,
        "effect": _num(pair.effect),
        "ci_low": None,
        "ci_high": None,
        "confidence_used": 1 - alpha,
        "outcome": "inconclusive",
        "reason": "",
        "p_value": _num(pair.p_zero()) if pair.est is not None else None,
        "paired": pair.paired,
        "n": min(pair.n),
        "seeds": pair.seeds,
        "baseline": pair.base.summary(pair.seeds_b),
        "treatment": pair.treat.summary(pair.seeds_t),
        "excluded": {k: v for k, v in pair.excluded.items() if v},
    }
    bmean = out["baseline"]["mean"]
    out["relative_effect"] = _num(pair.effect / abs(bmean)) if bmean else None
    if pair.est is None:
        out["reason"] = f"too few seeds: {pair.n[0]} baseline and {pair.n[1]} treatment values (at least {pair.needed} each)"
        return out
    lo, hi = pair.est.interval(alpha)
    out["ci_low"], out["ci_high"] = float(lo), float(hi)
    out["outcome"] = _outcome(lo, hi, expect, m)
    out["reason"] = _why(out["outcome"], lo, hi, expect, m)
    if skipped and out["outcome"] != "inconclusive":
        out["outcome"] = "inconclusive"
        out["reason"] = "not tested: Holm's procedure stopped at a level with stronger evidence that was undecided"
    return out


# -- public ----------------------------------------------------------------------------------------
def verdict(
    baseline: Values,
    treatment: Values,
    *,
    claim: str = "",
    metric: str = "",
    expect: str = "lower",
    confidence: float = 0.95,
    min_effect: float = 0.0,
    method: str = "t",
    paired: bool | None = None,
    n_boot: int = 10_000,
    seed: int = 0,
    baseline_name: str = "baseline",
    treatment_name: str = "treatment",
) -> dict[str, Any]:
    """The verdict of one treatment against the baseline (see the module docstring)."""
    return compare(
        {baseline_name: baseline, treatment_name: treatment},
        baseline_name,
        claim=claim,
        metric=metric,
        expect=expect,
        confidence=confidence,
        min_effect=min_effect,
        method=method,
        paired=paired,
        n_boot=n_boot,
        seed=seed,
    )


def compare(
    arms: Mapping[str, Values],
    baseline: str,
    *,
    claim: str = "",
    metric: str = "",
    expect: str = "lower",
    confidence: float = 0.95,
    min_effect: float = 0.0,
    method: str = "t",
    correction: str = "holm",
    overall: str = "all",
    treatment: str | None = None,
    paired: bool | None = None,
    n_boot: int = 10_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Every other arm against `baseline`, with a multiple-comparison `correction`.

    Returns a dict with ``claim``, ``metric``, ``effect``, ``ci_low``, ``ci_high``, ``seeds``
    and ``outcome`` (the headline: the effect of `treatment`, default the last arm, and the
    overall outcome), ``levels`` (one dict per treatment arm), ``method``, ``confidence``,
    ``correction`` and a one-sentence ``text``."""
    _check_options(expect, confidence, min_effect, method)
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {correction!r}")
    if overall not in OVERALLS:
        raise ValueError(f"overall must be one of {', '.join(OVERALLS)}, got {overall!r}")
    if baseline not in arms:
        raise ValueError(f"baseline {baseline!r} is not an arm; arms: {', '.join(map(str, arms))}")
    names = [a for a in arms if a != baseline]
    if not names:
        raise ValueError(f"a comparison needs at least one arm besides the baseline {baseline!r}")
    headline = names[-1] if treatment is None else treatment
    if headline not in names:
        raise ValueError(f"treatment {headline!r} must be one of the non-baseline arms: {', '.join(map(str, names))}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 100:
        raise ValueError(f"n_boot must be an integer >= 100, got {n_boot!r}")
    base = _Arm(baseline, arms[baseline])
    pairs = [_Pair(base, _Arm(a, arms[a]), paired, method, n_boot, seed) for a in names]
    alpha, m = 1 - confidence, float(min_effect)
    levels = _corrected(pairs, alpha, expect, m, correction if len(pairs) > 1 else "none")
    outcomes = [lv["outcome"] for lv in levels.values()]
    if overall == "all":
        result = (
            "supported"
            if all(o == "supported" for o in outcomes)
            else "contradicted"
            if "contradicted" in outcomes
            else "inconclusive"
        )
    else:
        result = (
            "supported"
            if "supported" in outcomes
            else "contradicted"
            if all(o == "contradicted" for o in outcomes)
            else "inconclusive"
        )
    head = levels[headline]
    head_pair = next(p for p in pairs if p.treat.name == headline)
    out: dict[str, Any] = {
        "claim": claim,
        "metric": metric,
        "effect": head["effect"],
        "ci_low": head["ci_low"],
        "ci_high": head["ci_high"],
        "seeds": sorted(set().union(*(p.seeds for p in pairs))),
        "outcome": result,
        "expect": expect,
        "min_effect": m,
        "baseline": baseline,
        "treatment": headline,
        "method": describe(method, head_pair.paired),
        "confidence": confidence,
        "correction": correction if len(pairs) > 1 else "none",
        "overall": overall,
        "n": head["n"],
        "p_value": head["p_value"],
        "relative_effect": head["relative_effect"],
        "levels": [levels[a] for a in names],
    }
    out["text"] = _text(out, head)
    return out


def _corrected(pairs: list[_Pair], alpha: float, expect: str, m: float, correction: str) -> dict[str, dict[str, Any]]:
    k = len(pairs)
    if correction != "holm":
        a = alpha / k if correction == "bonferroni" else alpha
        return {p.treat.name: _level_result(p, a, expect, m) for p in pairs}
    order = sorted(pairs, key=lambda p: min(p.p_values(expect, m)))
    out, stopped = {}, False
    for step, p in enumerate(order):
        r = _level_result(p, alpha / (k - step), expect, m, skipped=stopped)
        stopped = stopped or r["outcome"] == "inconclusive"
        out[p.treat.name] = r
    return out


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.3g}"


def _seeds_text(seeds: list[int]) -> str:
    if seeds and seeds == list(range(seeds[0], seeds[0] + len(seeds))) and len(seeds) > 2:
        return f"{len(seeds)} seeds ({seeds[0]}-{seeds[-1]})"
    return f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))})"


def _text(v: dict[str, Any], head: dict[str, Any]) -> str:
    """One sentence: the claim, the effect with its interval and method, the seeds, the outcome."""
    claim = v["claim"] or f"{v['treatment']} is {v['expect']} than {v['baseline']} in {v['metric'] or 'the measure'}"
    metric = f" in {v['metric']}" if v["metric"] else ""
    effect = f"{v['treatment']} minus {v['baseline']}{metric} is {_fmt(head['effect'])}"
    if head["ci_low"] is not None:
        conf = f"{100 * head['confidence_used']:.4g}%"
        effect += f" ({conf} CI {_fmt(head['ci_low'])} to {_fmt(head['ci_high'])}, {v['method']}"
        if v["correction"] != "none":
            effect += f", {v['correction']}-corrected over {len(v['levels'])} levels"
        effect += ")"
    else:
        effect += f" ({v['method']})"
    why = f" ({head['reason']})" if v["outcome"] == "inconclusive" and head["reason"] else ""
    if v["outcome"] == "inconclusive" and head["outcome"] != "inconclusive":
        why = " (other levels differ)"
    return f"{claim}: {effect} over {_seeds_text(v['seeds'])}, so the claim is {v['outcome']}{why}."


# -- which is best ---------------------------------------------------------------------------------
def rank(
    arms: Mapping[str, Values],
    *,
    goal: str = "minimize",
    metric: str = "",
    confidence: float = 0.95,
    method: str = "t",
    correction: str = "holm",
    n_boot: int = 10_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Arms ordered by mean (`goal`), and whether the best is distinguishable from each other
    arm: the others against the best as baseline, expecting them worse, `correction` over
    them. The order is chosen on the same data, so "distinguishable" is slightly optimistic
    for near-ties; confirm on fresh seeds when it matters."""
    if goal not in GOALS:
        raise ValueError(f"goal must be one of {', '.join(GOALS)}, got {goal!r}")
    if len(arms) < 2:
        raise ValueError(f"ranking needs at least 2 arms, got {len(arms)}")
    parsed = {name: _Arm(name, v) for name, v in arms.items()}
    rows = [a.summary() for a in parsed.values()]
    sign = 1 if goal == "minimize" else -1
    rows.sort(key=lambda r: math.inf if r["mean"] is None else sign * r["mean"])
    best = rows[0]["name"]
    order = [r["name"] for r in rows]
    vs = compare(
        {best: arms[best], **{a: arms[a] for a in order[1:]}},
        best,
        metric=metric,
        expect="higher" if goal == "minimize" else "lower",
        confidence=confidence,
        method=method,
        correction=correction,
        treatment=order[1],
        n_boot=n_boot,
        seed=seed,
    )
    by_level = {lv["level"]: lv for lv in vs["levels"]}
    for r in rows[1:]:
        lv = by_level[r["name"]]
        r.update(effect_vs_best=lv["effect"], ci_low=lv["ci_low"], ci_high=lv["ci_high"], worse_than_best=lv["outcome"])
    runner = by_level[order[1]]
    distinct = runner["outcome"] == "supported"
    b = rows[0]
    sd = "" if b["sd"] is None else f" +- {b['sd']:.3g}"
    text = (
        f"Best{' by ' + metric if metric else ''}: {best} ({b['mean']:.4g}{sd} over {b['n']} seeds); "
        f"{'distinguishable' if distinct else 'not distinguishable'} from the runner-up {order[1]}: "
        f"difference {_fmt(runner['effect'])} ({100 * runner['confidence_used']:.4g}% CI {_fmt(runner['ci_low'])} "
        f"to {_fmt(runner['ci_high'])}, {vs['method']}"
        + (f", {vs['correction']}-corrected over {len(order) - 1} comparisons" if vs["correction"] != "none" else "")
        + ")."
    )
    return {
        "metric": metric,
        "goal": goal,
        "ranking": rows,
        "best": best,
        "runner_up": order[1],
        "distinguishable": distinct,
        "method": vs["method"],
        "confidence": confidence,
        "correction": vs["correction"],
        "text": text,
    }
