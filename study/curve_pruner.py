"""Learning-curve extrapolation: prune a trial whose curve, extended to the last epoch,
cannot beat the k-th best finished trial.

After Domhan, Springenberg & Hutter (2015), "Speeding up automatic hyperparameter
optimization of deep neural networks by extrapolation of learning curves", with their
MCMC over eleven curve families replaced by least squares over three, each linear in
two coefficients once its shape parameter is fixed on a grid (so one fit is a few small
matrix products, well under a millisecond):

- ``pow3``:    y(x) = c - a * x^(-alpha)      (alpha on a grid in [0.05, 3])
- ``exp3``:    y(x) = c - a * exp(-b * x)     (b on a grid in [0.01, 3])
- ``loglin``:  y(x) = c + a * log(x)

The curve fitted is the running best of the reported values (for ``maximize``; of their
negatives for ``minimize``), which is monotone and is what a trial can still deliver. The
forecast at the last epoch ``T`` is optimistic: the largest forecast of the families whose
fit explains the curve (rmse within ``fit_tol`` of the best family), never below the curve's
best so far, plus ``z`` times the curve's epoch-to-epoch noise (the robust spread of its
first differences divided by sqrt 2), since the maximum of noisy epochs creeps above the
trend. A trial is pruned when that forecast is below the k-th best value finished trials
reached (their best reported value) minus ``margin``.

Never prunes before ``min_steps`` epochs, before ``n_startup_trials`` trials completed,
when the curve is too short or a fit is not finite; so a noisy or short curve runs on.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

_POW_GRID = np.geomspace(0.05, 3.0, 64)
_EXP_GRID = np.geomspace(0.01, 3.0, 64)


def _fit_family(x: np.ndarray, y: np.ndarray, basis: np.ndarray, at: np.ndarray) -> tuple[float, float]:
    """Least squares of y = c - a * basis[g] over every grid shape g (``a >= 0``); returns the
    best shape's (rmse, forecast) with ``at[g]`` the basis at the horizon."""
    n = len(x)
    # y = c + d * phi with d = -a; closed form per grid row.
    phi = basis
    pm = phi.mean(axis=1, keepdims=True)
    ym = y.mean()
    dphi = phi - pm
    sxx = (dphi**2).sum(axis=1)
    sxy = (dphi * (y - ym)).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(sxx > 1e-12, sxy / sxx, 0.0)
    d = np.minimum(d, 0.0)  # a >= 0: a rising curve (a falling one is fitted as flat)
    c = ym - d * pm[:, 0]
    resid = y[None, :] - (c[:, None] + d[:, None] * phi)
    sse = (resid**2).sum(axis=1)
    g = int(np.argmin(sse))
    return math.sqrt(sse[g] / n), float(c[g] + d[g] * at[g])


def forecasts(steps: np.ndarray, values: np.ndarray, horizon: float) -> dict[str, tuple[float, float]]:
    """Each family's (rmse, forecast at `horizon`) for an increasing curve ``values`` at
    ``steps`` (both 1-D, steps > 0). Families whose fit is not finite are left out."""
    x = np.asarray(steps, dtype=float)
    y = np.asarray(values, dtype=float)
    out: dict[str, tuple[float, float]] = {}
    pow_basis = x[None, :] ** (-_POW_GRID[:, None])
    out["pow3"] = _fit_family(x, y, pow_basis, horizon ** (-_POW_GRID))
    exp_basis = np.exp(-_EXP_GRID[:, None] * x[None, :])
    out["exp3"] = _fit_family(x, y, exp_basis, np.exp(-_EXP_GRID * horizon))
    # c + a log x == c - a * (-log x): the same fit with basis -log x.
    out["loglin"] = _fit_family(x, y, -np.log(x)[None, :], np.array([-math.log(horizon)]))
    return {k: v for k, v in out.items() if math.isfinite(v[0]) and math.isfinite(v[1])}


def optimistic_forecast(
    steps: np.ndarray, values: np.ndarray, horizon: float, *, z: float = 1.0, fit_tol: float = 2.0
) -> float | None:
    """The optimistic forecast of the best value a maximized curve reaches by `horizon` (see
    the module docstring), or None when the curve has under 3 finite points or no fit."""
    x = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(v) & (x > 0)
    x, v = x[ok], v[ok]
    if len(v) < 3:
        return None
    best = np.maximum.accumulate(v)
    fits = forecasts(x, best, horizon)
    if not fits:
        return None
    tol = fit_tol * min(r for r, _ in fits.values()) + 1e-9
    trend = max(f for r, f in fits.values() if r <= tol)
    diffs = np.diff(v)
    noise = 1.4826 * float(np.median(np.abs(diffs - np.median(diffs)))) / math.sqrt(2.0)
    return max(trend, float(best[-1])) + z * noise


class CurvePruner(optuna.pruners.BasePruner):
    """Prunes when the optimistic forecast of a trial's final value cannot beat the
    ``top_k``-th best completed trial (see the module docstring).

    ``max_resource``: the last step a trial runs to; ``"auto"`` takes the largest last step
    of the completed trials (no pruning before one completed)."""

    def __init__(
        self,
        *,
        max_resource: int | Literal["auto"] = "auto",
        min_steps: int = 4,
        n_startup_trials: int = 4,
        top_k: int = 1,
        z: float = 1.0,
        fit_tol: float = 2.0,
        margin: float = 0.0,
    ) -> None:
        if max_resource != "auto" and (not isinstance(max_resource, int) or max_resource < 1):
            raise ValueError(f"max_resource must be an integer >= 1 or 'auto', got {max_resource!r}")
        # min_steps >= 3: each family has two coefficients, and a third point tests the fit.
        for name, v, lo in (("min_steps", min_steps, 3), ("n_startup_trials", n_startup_trials, 1), ("top_k", top_k, 1)):
            if not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        for name, f in (("z", z), ("fit_tol", fit_tol), ("margin", margin)):
            if not math.isfinite(f) or f < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {f!r}")
        if fit_tol < 1:
            raise ValueError(f"fit_tol must be >= 1 (a ratio to the best family's rmse), got {fit_tol!r}")
        self.max_resource = max_resource
        self.min_steps = min_steps
        self.n_startup_trials = n_startup_trials
        self.top_k = top_k
        self.z = z
        self.fit_tol = fit_tol
        self.margin = margin

    def prune(self, study: optuna.study.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or len(trial.intermediate_values) < self.min_steps:
            return False
        sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(done) < max(self.n_startup_trials, self.top_k):
            return False
        horizon = self._horizon(done)
        if horizon is None or step >= horizon:
            return False
        finals = sorted((r for r in (_reached(t, sign) for t in done) if math.isfinite(r)), reverse=True)
        if len(finals) < self.top_k:
            return False
        bar = finals[self.top_k - 1]
        steps = np.fromiter(trial.intermediate_values.keys(), dtype=float)
        values = sign * np.fromiter(trial.intermediate_values.values(), dtype=float)
        order = np.argsort(steps)
        forecast = optimistic_forecast(steps[order], values[order], horizon, z=self.z, fit_tol=self.fit_tol)
        if forecast is None:
            return False
        return forecast + self.margin < bar

    def _horizon(self, done: list[FrozenTrial]) -> float | None:
        if self.max_resource != "auto":
            return float(self.max_resource)
        last = [t.last_step for t in done if t.last_step is not None]
        return float(max(last)) if last else None


def _reached(t: FrozenTrial, sign: float) -> float:
    """``sign`` times the best value a finished trial reported (its objective value when it
    reported none): sign 1 for maximize, -1 for minimize, so larger is always better."""
    vals = [sign * v for v in t.intermediate_values.values() if math.isfinite(v)]
    if vals:
        return max(vals)
    return sign * t.value if t.value is not None else math.nan
