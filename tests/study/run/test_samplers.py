"""Trial seeds, the spec's samplers and pruners, and objective values of a finished run."""

from __future__ import annotations

import optuna
import pytest

from study.run.decisions import objective_values
from study.run.events import Ended
from study.run.samplers import make_pruner, make_sampler, pause_epochs, trial_seed
from study.spec import parse_spec


def test_trial_seed_depends_on_study_seed_and_number() -> None:
    seeds = {trial_seed(s, n) for s in range(3) for n in range(50)}
    assert len(seeds) == 150
    assert trial_seed(7, 3) == trial_seed(7, 3)


def test_objective_values_best_and_last() -> None:
    history = {
        1: {"val_loss": 0.9, "val_acc": 0.5, "train_loss": 0.8},
        2: {"val_loss": 0.4, "val_acc": 0.8, "train_loss": 0.3},
        3: {"val_loss": 0.6, "val_acc": 0.85, "train_loss": 0.1},
    }
    summary = Ended(0, "completed", best_epoch=2, stopped_epoch=3, n_params=123)
    best = parse_spec({"name": "x"})
    assert objective_values(best, history, summary) == ([0.4], "")
    last = parse_spec({"name": "x", "objective": {"metric": "val_acc", "scope": "last"}})
    assert objective_values(last, history, summary) == ([0.85], "")
    multi = parse_spec({"name": "x", "objectives": ["val_loss", "n_params"]})
    assert objective_values(multi, history, summary) == ([0.4, 123.0], "")
    deep = parse_spec({"name": "x", "objective": "grad_norm_5"})
    values, why = objective_values(deep, history, summary)
    assert values is None and "grad_norm_5" in why
    nan = {**history, 2: {"val_loss": float("nan")}}
    values, why = objective_values(best, nan, summary)
    assert values is None and "nan" in why


@pytest.mark.parametrize(
    ("sampler", "cls"),
    [
        ("tpe", "TPESampler"),
        ("random", "RandomSampler"),
        ("gp", "GPSampler"),
        ("cmaes", "CmaEsSampler"),
        ("nsga2", "NSGAIISampler"),
    ],
)
def test_samplers(sampler: str, cls: str) -> None:
    assert type(make_sampler(parse_spec({"name": "x", "sampler": sampler}))).__name__ == cls


def test_grid_sampler_and_resume_seed() -> None:
    spec = parse_spec({"name": "x", "sampler": {"name": "grid", "grid": {"lr": [0.1, 0.01]}}})
    assert isinstance(make_sampler(spec), optuna.samplers.GridSampler)
    r = parse_spec({"name": "x", "sampler": "random"})
    draws = [
        make_sampler(r, n).sample_independent(None, None, "x", optuna.distributions.FloatDistribution(0, 1)) for n in (0, 0, 5)
    ]  # type: ignore[arg-type]
    assert draws[0] == draws[1] != draws[2]  # a resumed study does not replay the first run's draws


@pytest.mark.parametrize(
    ("pruner", "cls"),
    [
        ("none", "NopPruner"),
        ("median", "PercentilePruner"),
        ({"name": "percentile", "percentile": 25}, "PercentilePruner"),
        ("successive_halving", "SuccessiveHalvingPruner"),
        ("hyperband", "HyperbandPruner"),
        ({"name": "patient", "wrapped": "median"}, "PatientPruner"),
    ],
)
def test_pruners(pruner: object, cls: str) -> None:
    assert type(make_pruner(parse_spec({"name": "x", "pruner": pruner}))).__name__ == cls
    multi = parse_spec({"name": "x", "pruner": pruner, "objectives": ["val_loss", "n_params"]})
    assert type(make_pruner(multi)).__name__ == "NopPruner"


def _rung_steps(pruner: optuna.pruners.BasePruner, epochs: int, trials: int) -> set[int]:
    """The steps at which Optuna's pruner records a rung (a ``completed_rung_*`` system attr)
    for `trials` trials, each reporting every epoch (improving ones, so most go on)."""
    study = optuna.create_study(pruner=pruner)
    steps: set[int] = set()
    for n in range(trials):
        trial = study.ask()
        for epoch in range(1, epochs + 1):
            trial.report(1.0 / epoch - 0.01 * n, epoch)
            before = len(study._storage.get_trial_system_attrs(trial._trial_id))
            pruned = trial.should_prune()
            if len(study._storage.get_trial_system_attrs(trial._trial_id)) > before:
                steps.add(epoch)
            if pruned:
                break
        study.tell(
            trial,
            state=optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.COMPLETE,
            values=None if pruned else 0.0,
        )
    return steps


@pytest.mark.parametrize(
    ("pruner", "fixed", "rungs"),
    [
        (None, {"epochs": 30}, {1, 3, 9, 27}),  # the default: min_resource 30 // 27
        (None, {"epochs": 200}, {7, 21, 63, 189}),
        ({"name": "successive_halving", "min_resource": 2, "reduction_factor": 2}, {"epochs": 20}, {2, 4, 8, 16}),
        ({"name": "successive_halving", "min_early_stopping_rate": 1}, {"epochs": 30}, {3, 9, 27}),
        ("hyperband", {"epochs": 30}, {1, 3, 9, 27}),  # every bracket's rungs
        ("median", {"epochs": 30}, set()),
        ("none", {"epochs": 30}, set()),
        ({"name": "patient", "wrapped": "successive_halving"}, {"epochs": 30}, set()),
    ],
)
def test_pause_epochs_are_the_rungs_optunas_pruner_decides_at(pruner: object, fixed: dict, rungs: set[int]) -> None:
    """A trial waits for the verdict exactly where Optuna's halving pruner records a rung."""
    spec = parse_spec({"name": "x", "space": "quickstart", "fixed": fixed, **({} if pruner is None else {"pruner": pruner})})
    assert pause_epochs(spec) == rungs
    if rungs:  # the reference: where the pruner itself decides, over trials of every Hyperband bracket
        assert _rung_steps(make_pruner(spec), fixed["epochs"], trials=12) == rungs
    multi = parse_spec({"name": "x", "fixed": fixed, "objectives": ["val_loss", "n_params"]})
    assert pause_epochs(multi) == set()  # nothing prunes a multi-objective study


def test_tpe_math_is_optunas_function_vectorized() -> None:
    """After a TPE sampler is made, TPE's log Phi is SciPy's: equal to Optuna's scalar version
    (its definition, `_log_ndtr_single` over every element) to 1e-7 relative across both tails
    and its branch points; seeded TPE studies still repeat exactly."""
    import numpy as np
    import optuna.samplers._tpe._truncnorm

    from study.stores.optuna_storage import vectorized_tpe_math

    _truncnorm = optuna.samplers._tpe._truncnorm

    make_sampler(parse_spec({"name": "x", "space": "full"}))
    assert vectorized_tpe_math() and getattr(_truncnorm._log_ndtr, "hpstudy", False)
    x = np.concatenate([np.linspace(-60.0, 40.0, 4001), [-1e3, -20.0, -19.999, 0.0, 6.0, 6.0001, 1e3]])
    optunas = np.frompyfunc(_truncnorm._log_ndtr_single, 1, 1)(x).astype(float)
    ours = _truncnorm._log_ndtr(x)
    assert ours.shape == x.shape and ours.dtype == float
    np.testing.assert_allclose(ours, optunas, rtol=1e-7, atol=1e-300)

    def study(seed: int) -> list[dict]:
        s = optuna.create_study(sampler=make_sampler(parse_spec({"name": "x", "space": "full", "seed": seed})))
        s.optimize(lambda t: (t.suggest_float("a", -3, 3) - 1) ** 2 + t.suggest_float("b", 1e-4, 1, log=True), n_trials=25)
        return [t.params for t in s.trials]

    first = study(3)
    assert first == study(3) and all(-3 <= p["a"] <= 3 and 1e-4 <= p["b"] <= 1 for p in first)
