"""Confidence intervals for a difference of means over seeds, and their inversion.

The effect is ``mean(treatment) - mean(baseline)``. Paired by seed (``d_s = t_s - b_s``) it
is ``mean(d)``; unpaired it is the difference of the two arms' means. Three methods:

- ``t``: Student's t on the paired differences, ``mean(d) +- t_{1-a/2, n-1} sd(d) / sqrt(n)``;
  unpaired, Welch's interval ``se = sqrt(s1^2/n1 + s2^2/n2)`` with the Welch-Satterthwaite df.
- ``percentile``: the ``a/2`` and ``1 - a/2`` quantiles of ``n_boot`` bootstrap replicates
  (seeds resampled with replacement: the paired differences, or each arm on its own).
- ``bootstrap``: BCa (bias-corrected and accelerated, Efron 1987) on the same replicates,
  the acceleration from the jackknife as ``scipy.stats.bootstrap`` computes it.

`Estimate.p_above(x)` is the smallest ``a`` at which the ``1 - a`` interval lies wholly above
``x`` (`p_below`: below): inverting the interval gives the p-values that Holm's procedure
orders by, so an outcome read off an interval and a test always agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.special import ndtr, ndtri

METHODS = ("t", "bootstrap", "percentile")
METHOD_TEXT = {"t": "t-interval", "bootstrap": "BCa bootstrap", "percentile": "percentile bootstrap"}


@dataclass(frozen=True)
class Estimate:
    """An effect and a family of intervals ``interval(alpha)`` at confidence ``1 - alpha``.
    ``t_scale`` is ``(se, df)`` of a t-interval with se > 0 (its inversion is in closed form)."""

    effect: float
    paired: bool
    method: str
    interval: Callable[[float], tuple[float, float]]
    t_scale: tuple[float, float] | None = None

    def p_above(self, x: float) -> float:
        """Smallest alpha whose interval lies wholly above `x` (1 when none does)."""
        if self.t_scale is not None:
            se, df = self.t_scale
            return min(1.0, 2 * float(stats.t.sf((self.effect - x) / se, df)))
        return _invert(lambda a: self.interval(a)[0] > x)

    def p_below(self, x: float) -> float:
        """Smallest alpha whose interval lies wholly below `x` (1 when none does)."""
        if self.t_scale is not None:
            se, df = self.t_scale
            return min(1.0, 2 * float(stats.t.sf((x - self.effect) / se, df)))
        return _invert(lambda a: self.interval(a)[1] < x)

    @property
    def description(self) -> str:
        return describe(self.method, self.paired)


def describe(method: str, paired: bool) -> str:
    """E.g. ``paired t-interval``, ``Welch t-interval``, ``paired BCa bootstrap``."""
    return ("paired " if paired else "Welch " if method == "t" else "unpaired ") + METHOD_TEXT[method]


def _invert(holds: Callable[[float], bool], lo: float = 1e-9, iters: int = 40) -> float:
    """The smallest alpha in [lo, 1] at which `holds` (monotone: narrower intervals as alpha
    grows) is true, by bisection; 1.0 when it is false even at alpha = 1."""
    if not holds(1.0):
        return 1.0
    if holds(lo):
        return lo
    a, b = lo, 1.0  # holds(a) is False, holds(b) is True
    for _ in range(iters):
        m = 0.5 * (a + b)
        if holds(m):
            b = m
        else:
            a = m
    return b


# -- t ---------------------------------------------------------------------------------------
def t_estimate(baseline: np.ndarray, treatment: np.ndarray, paired: bool) -> Estimate:
    """Paired t on ``treatment - baseline`` (equal lengths, aligned by seed) or Welch's t."""
    if paired:
        d = treatment - baseline
        effect, se, df = float(d.mean()), float(d.std(ddof=1)) / math.sqrt(len(d)), len(d) - 1.0
    else:
        v1, v2 = baseline.var(ddof=1) / len(baseline), treatment.var(ddof=1) / len(treatment)
        effect, se = float(treatment.mean() - baseline.mean()), math.sqrt(v1 + v2)
        df = (v1 + v2) ** 2 / (v1**2 / (len(baseline) - 1) + v2**2 / (len(treatment) - 1)) if se > 0 else 1.0

    def interval(alpha: float) -> tuple[float, float]:
        half = float(stats.t.ppf(1 - alpha / 2, df)) * se
        return effect - half, effect + half

    return Estimate(effect, paired, "t", interval, (se, df) if se > 0 else None)


# -- bootstrap --------------------------------------------------------------------------------
def bootstrap_estimate(
    baseline: np.ndarray, treatment: np.ndarray, paired: bool, method: str, n_boot: int = 10_000, seed: int = 0
) -> Estimate:
    """Percentile or BCa interval from `n_boot` resamples of the seeds (fixed `seed`: the same
    data give the same verdict)."""
    rng = np.random.default_rng(seed)
    if paired:
        d = treatment - baseline
        effect = float(d.mean())
        reps = d[rng.integers(0, len(d), (n_boot, len(d)))].mean(axis=1)
        jack = [_jackknife_means(d)]
    else:
        effect = float(treatment.mean() - baseline.mean())
        reps = treatment[rng.integers(0, len(treatment), (n_boot, len(treatment)))].mean(axis=1) - baseline[
            rng.integers(0, len(baseline), (n_boot, len(baseline)))
        ].mean(axis=1)
        jack = [-_jackknife_means(baseline), _jackknife_means(treatment)]  # the effect moves with each arm's mean
    reps.sort()
    if method == "percentile":

        def interval(alpha: float) -> tuple[float, float]:
            return _quantile(reps, alpha / 2), _quantile(reps, 1 - alpha / 2)

        return Estimate(effect, paired, method, interval)
    below = (np.count_nonzero(reps < effect) + 0.5 * np.count_nonzero(reps == effect)) / n_boot
    z0 = float(ndtri(below))
    accel = _acceleration(jack)

    def bca(alpha: float) -> tuple[float, float]:
        return _quantile(reps, _bca_level(alpha / 2, z0, accel)), _quantile(reps, _bca_level(1 - alpha / 2, z0, accel))

    return Estimate(effect, paired, method, bca)


def _jackknife_means(x: np.ndarray) -> np.ndarray:
    return (x.sum() - x) / (len(x) - 1)


def _acceleration(jackknives: list[np.ndarray]) -> float:
    """BCa's ``a`` from each sample's leave-one-out statistics (scipy.stats.bootstrap's form:
    ``U = (n - 1)(mean - theta_i)``, ``a = sum(U^3/n^3) / (6 (sum(U^2/n^2))^1.5)``)."""
    num = den = 0.0
    for th in jackknives:
        n = len(th)
        u = (n - 1) * (th.mean() - th)
        num += float((u**3).sum()) / n**3
        den += float((u**2).sum()) / n**2
    return num / (6 * den**1.5) if den > 0 else 0.0


def _bca_level(level: float, z0: float, accel: float) -> float:
    """The quantile level BCa reads for a nominal `level` (0 or 1 where the correction breaks down)."""
    if not math.isfinite(z0):
        return 1.0 if z0 > 0 else 0.0  # every replicate on one side of the estimate
    z = z0 + float(ndtri(level))
    den = 1 - accel * z
    if den <= 0:
        return 0.0 if level < 0.5 else 1.0
    return float(ndtr(z0 + z / den))


def _quantile(sorted_reps: np.ndarray, level: float) -> float:
    """``np.quantile``'s default (linear) rule on an already sorted array, without its overhead."""
    pos = min(max(level, 0.0), 1.0) * (len(sorted_reps) - 1)
    i = min(int(pos), len(sorted_reps) - 2)
    return float(sorted_reps[i] + (pos - i) * (sorted_reps[i + 1] - sorted_reps[i]))
