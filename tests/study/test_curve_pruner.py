"""The learning-curve pruner on scripted curves, in a real (in-memory) Optuna study: it
extrapolates known curve families, prunes a hopeless curve, keeps one that will overtake
the incumbent (which the median pruner would have pruned), never prunes early, and treats
minimize like maximize."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from study.curve_pruner import CurvePruner, forecasts, optimistic_forecast

EPOCHS = 30
X = np.arange(1, EPOCHS + 1, dtype=float)


def pow3(c: float, a: float, alpha: float) -> np.ndarray:
    return c - a * X ** (-alpha)


def exp3(c: float, a: float, b: float) -> np.ndarray:
    return c - a * np.exp(-b * X)


def study_with(curves: list[np.ndarray], pruner: optuna.pruners.BasePruner, direction: str = "maximize") -> optuna.Study:
    """A study whose completed trials reported `curves` (value: the best of each curve)."""
    study = optuna.create_study(direction=direction, pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=0))
    for curve in curves:
        best = float(curve.max() if direction == "maximize" else curve.min())
        study.add_trial(
            create_trial(
                value=best,
                params={"x": 0.5},
                distributions={"x": FloatDistribution(0, 1)},
                intermediate_values={i + 1: float(v) for i, v in enumerate(curve)},
            )
        )
    return study


def first_pruned_step(study: optuna.Study, curve: np.ndarray) -> int | None:
    """Report `curve` epoch by epoch in a new trial; the epoch it is pruned at, or None."""
    trial = study.ask()
    for i, v in enumerate(curve):
        trial.report(float(v), i + 1)
        if trial.should_prune():
            study.tell(trial, state=TrialState.PRUNED)
            return i + 1
    study.tell(trial, float(curve.max()))
    return None


INCUMBENTS = [exp3(0.80 - 0.01 * k, 0.4, 0.8) for k in range(4)]  # fast risers plateauing at 0.77-0.80


@pytest.mark.parametrize(
    ("curve", "family"),
    [(pow3(0.9, 0.5, 0.7), "pow3"), (exp3(0.85, 0.6, 0.3), "exp3"), (0.2 + 0.1 * np.log(X), "loglin")],
)
def test_each_family_extrapolates_its_own_noise_free_curve(curve: np.ndarray, family: str) -> None:
    fits = forecasts(X[:10], curve[:10], EPOCHS)
    rmse, forecast = fits[family]
    assert rmse < 2e-3
    assert forecast == pytest.approx(curve[-1], abs=0.01)
    assert min(fits.values())[0] == pytest.approx(rmse, abs=1e-9)  # the right family fits best


def test_optimistic_forecast_is_at_least_the_best_so_far_and_grows_with_noise() -> None:
    rng = np.random.default_rng(0)
    flat = np.full(8, 0.6)
    assert optimistic_forecast(X[:8], flat, EPOCHS) == pytest.approx(0.6)
    noisy = flat + rng.normal(0, 0.02, 8)
    low = optimistic_forecast(X[:8], noisy, EPOCHS, z=0.0)
    high = optimistic_forecast(X[:8], noisy, EPOCHS, z=2.0)
    assert low is not None and high is not None
    assert low >= noisy.max() - 1e-12
    assert high > low + 0.01  # 2 sd of 0.02 noise, estimated from 7 differences


def test_prunes_a_hopeless_curve_soon_after_min_steps() -> None:
    study = study_with(INCUMBENTS, CurvePruner(min_steps=4))
    hopeless = exp3(0.45, 0.3, 1.0)  # flat at 0.45 by epoch 4, the incumbent is 0.80
    assert first_pruned_step(study, hopeless) == 4


def test_keeps_a_slow_curve_that_will_overtake_and_the_median_pruner_would_not() -> None:
    slow = pow3(0.95, 0.6, 0.5)  # 0.71 at epoch 6, still below every incumbent; 0.84 at epoch 30
    assert slow[5] < min(c[5] for c in INCUMBENTS) and slow[-1] > max(c.max() for c in INCUMBENTS)
    study = study_with(INCUMBENTS, CurvePruner(min_steps=4))
    assert first_pruned_step(study, slow) is None
    assert study.best_value == pytest.approx(slow.max())
    median = study_with(INCUMBENTS, optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=2))
    assert first_pruned_step(median, slow) is not None  # today's default prunes it in its first epochs


def test_never_prunes_before_min_steps_or_before_enough_completed_trials() -> None:
    hopeless = np.full(EPOCHS, 0.1)
    study = study_with(INCUMBENTS, CurvePruner(min_steps=6))
    assert first_pruned_step(study, hopeless) == 6
    few = study_with(INCUMBENTS[:3], CurvePruner(min_steps=3, n_startup_trials=4))
    assert first_pruned_step(few, hopeless) is None  # 3 completed trials, and it completes itself
    assert first_pruned_step(few, hopeless) == 3  # now 4 completed: pruned at its min_steps


def test_top_k_compares_with_the_kth_best_trial() -> None:
    curves = [exp3(v, 0.4, 0.8) for v in (0.95, 0.70, 0.69, 0.68)]
    middling = exp3(0.75, 0.3, 0.8)  # below the best (0.95), above the second best (0.70)
    assert first_pruned_step(study_with(curves, CurvePruner(top_k=1)), middling) == 4
    assert first_pruned_step(study_with(curves, CurvePruner(top_k=2)), middling) is None


def test_minimize_decides_like_maximize_on_the_mirrored_curves() -> None:
    losses = [1.0 - c for c in INCUMBENTS]
    for curve, expected in ((exp3(0.45, 0.3, 1.0), 4), (pow3(0.95, 0.6, 0.5), None)):
        study = study_with(losses, CurvePruner(min_steps=4), direction="minimize")
        assert first_pruned_step(study, 1.0 - curve) == expected


def test_a_curve_that_has_already_beaten_the_incumbent_is_never_pruned() -> None:
    study = study_with(INCUMBENTS, CurvePruner(min_steps=3, z=0.0))
    assert first_pruned_step(study, exp3(0.9, 0.05, 1.0)) is None


def test_noisy_hopeless_curve_is_pruned_and_a_noisy_curve_at_the_incumbent_is_kept() -> None:
    rng = np.random.default_rng(1)
    study = study_with(INCUMBENTS, CurvePruner())
    assert first_pruned_step(study, exp3(0.5, 0.3, 1.0) + rng.normal(0, 0.02, EPOCHS)) is not None
    level = max(c.max() for c in INCUMBENTS)
    at_bar = level - 0.01 + rng.normal(0, 0.02, EPOCHS)  # a plateau near the incumbent: its noise may win
    assert first_pruned_step(study_with(INCUMBENTS, CurvePruner()), at_bar) is None


def test_falls_back_to_not_pruning_without_a_usable_curve() -> None:
    study = study_with(INCUMBENTS, CurvePruner(min_steps=3))
    trial = study.ask()
    for e, v in enumerate((0.1, math.nan, math.nan), 1):
        trial.report(v, e)  # three epochs, two of them NaN: nothing to fit
    assert not trial.should_prune()
    no_horizon = study_with([], CurvePruner(min_steps=3, n_startup_trials=1))
    t = no_horizon.ask()
    for e in range(1, 6):
        t.report(0.0, e)
    assert not t.should_prune()  # no completed trial: nothing to beat


def test_a_trial_at_the_horizon_is_not_pruned() -> None:
    study = study_with(INCUMBENTS, CurvePruner(max_resource=5, min_steps=3))
    trial = study.ask()
    for e in range(1, 6):
        trial.report(0.1, e)
    assert not trial.should_prune()  # at its last epoch: pruning saves nothing


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"min_steps": 2}, "min_steps"),
        ({"top_k": 0}, "top_k"),
        ({"z": -1.0}, "z"),
        ({"max_resource": 0}, "max_resource"),
        ({"fit_tol": 0.5}, "fit_tol"),
        ({"margin": math.nan}, "margin"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        CurvePruner(**kwargs)  # type: ignore[arg-type]
