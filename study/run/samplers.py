"""The spec's Optuna sampler and pruner.

TPE is multivariate with the constant liar by default, so trials in flight are treated as bad
results and parallel workers do not all pick the same spot. A resumed study's sampler seed
mixes in how many trials exist, so it does not replay the random draws of its first run.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any, Literal

import numpy as np
import optuna

from study.spec import SpecError, StudySpec
from study.stores import optuna_storage


def trial_seed(study_seed: int, number: int) -> int:
    """A trial's training seed, a pure function of the study seed and the trial number."""
    return int(np.random.SeedSequence([study_seed, number]).generate_state(1)[0])


def make_sampler(spec: StudySpec, n_existing: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler, for a study that already has `n_existing` trials."""
    with warnings.catch_warnings():  # TPE's `group`, PatientPruner: "experimental" notices
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _sampler(spec, n_existing)


def _sampler(spec: StudySpec, n_existing: int) -> optuna.samplers.BaseSampler:
    s = spec.sampler
    base = s.seed if s.seed is not None else spec.seed
    seed = base if n_existing == 0 else trial_seed(base, 1_000_000 + n_existing)
    startup: dict[str, Any] = {} if s.n_startup_trials is None else {"n_startup_trials": s.n_startup_trials}
    if s.name == "tpe":
        optuna_storage.vectorized_tpe_math()
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=s.multivariate, group=s.multivariate, constant_liar=s.constant_liar, **startup
        )
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s.name == "gp":
        _needs("gp", "torch", "the torch extra: pip install 'hpstudy[torch]'")
        _needs("gp", "scipy", "scipy")
        return optuna.samplers.GPSampler(seed=seed, **startup)
    if s.name == "cmaes":
        _needs("cmaes", "cmaes", "the cmaes package")
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False, **startup)
    if s.name == "nsga2":
        pop: dict[str, Any] = {} if s.population_size is None else {"population_size": s.population_size}
        return optuna.samplers.NSGAIISampler(seed=seed, **pop)
    assert s.grid is not None
    return optuna.samplers.GridSampler(s.grid, seed=seed)


def _needs(sampler: str, module: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise SpecError(f"field sampler: the {sampler} sampler needs {what}, which is not installed")


def make_pruner(spec: StudySpec, space: Any = None) -> optuna.pruners.BasePruner:
    """The spec's pruner; NopPruner for multi-objective studies (Optuna cannot prune them).
    `space`: the loaded search space, from which the halving pruners' resources are derived
    (`trial_epochs`); without it they fall back to Optuna's ``auto``."""
    if not spec.pruning:
        return optuna.pruners.NopPruner()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _pruner(spec.pruner, trial_epochs(spec, space))


def trial_epochs(spec: StudySpec, space: Any = None) -> int | None:
    """The epochs every trial runs: the spec's ``fixed``, else the space's fixed value, else
    TrainConfig's default when a declarative space of the built-in MLP or a user's model
    leaves epochs alone; None when the space samples them, is a Python function, or is a
    trainer function's (its epochs are its own): then the halving pruners use Optuna's
    ``auto``."""
    if "epochs" in spec.fixed:  # a bad value is reported by prepare()'s dry run
        e = spec.fixed["epochs"]
        return e if isinstance(e, int) and not isinstance(e, bool) and e >= 1 else None
    from search_spaces.declarative import DeclarativeSpace
    from trainers import TrainConfig

    if not isinstance(space, DeclarativeSpace) or any(p.field == "epochs" for p in space.params):
        return None
    epochs = space.fixed.get("epochs")
    if epochs is None and spec.target != "trainer":
        epochs = TrainConfig.epochs
    return int(epochs) if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 1 else None


def halving_min_resource(epochs: int, reduction_factor: int) -> int:
    """``max(1, epochs // reduction_factor**3)``: at most four rungs below ``epochs``."""
    return max(1, epochs // reduction_factor**3)


def halving_min_resource_of(p: Any, epochs: int | None) -> int | Literal["auto"]:
    """The ``min_resource`` a halving pruner spec `p` is built with: the spec's, else derived
    from the trials' `epochs` (`halving_min_resource`), else Optuna's ``auto`` (successive
    halving) or 1 (Hyperband)."""
    if p.min_resource != "auto":
        return int(p.min_resource)
    if epochs:
        return halving_min_resource(epochs, p.reduction_factor)
    return "auto" if p.name == "successive_halving" else 1


#: The highest rung `pause_epochs` lists when the trials' epochs are not known.
_RUNG_CAP = 1_000_000


def pause_epochs(spec: StudySpec, space: Any = None) -> frozenset[int]:
    """The epochs after which a trial waits for the pruner's verdict before it trains on:
    the rungs of the halving pruners, where the verdict is mostly "stop", so a pruned trial
    trains no epoch past its rung. Successive halving decides at ``min_resource *
    reduction_factor**(min_early_stopping_rate + k)``; Hyperband's bracket ``b`` at
    ``min_resource * reduction_factor**(b + k)``, so the union over its brackets is every
    ``min_resource * reduction_factor**k`` (a trial of a higher bracket pauses at the lower
    rungs too, where the driver only says go on: one round trip to the driver each). Empty
    for the other pruners (the median pruner decides at every epoch and mostly lets a trial
    go on, so a trial trains on while the driver decides, and stops before its next epoch when
    told) and for successive halving with Optuna's ``auto`` rungs (epochs not known before a
    trial runs). With the trials' epochs unknown (a trainer function's own), rungs up to
    `_RUNG_CAP` are listed; a trial that ends before them never reaches them."""
    p = spec.pruner
    if not spec.pruning or p.name not in ("successive_halving", "hyperband"):
        return frozenset()
    epochs = trial_epochs(spec, space)
    low = halving_min_resource_of(p, epochs)
    if low == "auto":
        return frozenset()
    step = low * p.reduction_factor ** (p.min_early_stopping_rate if p.name == "successive_halving" else 0)
    rungs = set()
    while step < (epochs or _RUNG_CAP):
        rungs.add(step)
        step *= p.reduction_factor
    return frozenset(rungs)


def _pruner(p: Any, epochs: int | None = None) -> optuna.pruners.BasePruner:
    if p is None or p.name == "none":
        return optuna.pruners.NopPruner()
    if p.name in ("median", "percentile"):
        return optuna.pruners.PercentilePruner(
            p.percentile, n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps, interval_steps=p.interval_steps
        )
    if p.name in ("successive_halving", "hyperband"):
        low = halving_min_resource_of(p, epochs)
        if p.name == "successive_halving":
            return optuna.pruners.SuccessiveHalvingPruner(low, p.reduction_factor, p.min_early_stopping_rate)
        high = p.max_resource if p.max_resource != "auto" else (epochs or "auto")
        assert low != "auto"  # Hyperband's is never Optuna's auto
        return optuna.pruners.HyperbandPruner(low, high, p.reduction_factor)
    return optuna.pruners.PatientPruner(_pruner(p.wrapped, epochs) if p.wrapped else None, p.patience, p.min_delta)
