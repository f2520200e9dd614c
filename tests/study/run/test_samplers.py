"""Trial seeds, the spec's samplers and pruners, and objective values of a finished run."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from study.run.decisions import objective_values
from study.run.events import Ended
from study.run.samplers import RungView, make_pruner, make_sampler, trial_seed
from study.spec import parse_spec
from study.stores import optuna_storage


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
        ("tpe", "ViewTPESampler"),
        ("random", "RandomSampler"),
        ("gp", "GPSampler"),
        ("cmaes", "CmaEsSampler"),
        ("nsga2", "NSGAIISampler"),
    ],
)
def test_samplers(sampler: str, cls: str) -> None:
    assert type(make_sampler(parse_spec({"name": "x", "sampler": sampler}))).__name__ == cls


def test_tpe_ranks_at_a_rung_only_with_a_pruner_and_unless_told_otherwise() -> None:
    def sampler(**spec: object) -> optuna.samplers.BaseSampler:
        return make_sampler(parse_spec({"name": "x", **spec}))

    assert isinstance(sampler(), optuna_storage.ViewTPESampler)
    assert isinstance(sampler(pruner="median"), optuna_storage.ViewTPESampler)
    for plain in (
        sampler(pruner="none"),
        sampler(sampler={"name": "tpe", "rank_by": "completed_first"}),
        sampler(objectives=["val_loss", "n_params"]),  # no pruning for a multi-objective study
    ):
        assert type(plain) is optuna.samplers.TPESampler
    with pytest.raises(ValueError, match="rank_by is only for the tpe sampler"):
        parse_spec({"name": "x", "sampler": {"name": "random", "rank_by": "rung"}})
    with pytest.raises(ValueError, match="rank_by"):
        parse_spec({"name": "x", "sampler": {"name": "tpe", "rank_by": "value"}})


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


def test_tpe_math_is_optunas_function_vectorized() -> None:
    """After a TPE sampler is made, TPE's log Phi is SciPy's: equal to Optuna's scalar version
    (its definition, `_log_ndtr_single` over every element) to 1e-7 relative across both tails
    and its branch points; seeded TPE studies still repeat exactly."""
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


def _halving_history(poor: str = "e", good: str = "a") -> optuna.Study:
    """A maximizing study as successive halving leaves it early on: trial 0 (`poor`) ran all
    30 epochs unopposed and completed with a poor value (0.30); of 9 trials pruned since, the
    2 with `good` reached epoch 3 at 0.50, 1 other reached it at 0.30 and 6 others stopped at
    epoch 1 at 0.20."""
    dist = {"c": optuna.distributions.CategoricalDistribution(CHOICES)}
    others = [c for c in CHOICES if c not in (poor, good)]
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    curve = {e: 0.2 + 0.1 * e / 30 for e in range(1, 31)}
    study.add_trial(optuna.trial.create_trial(params={"c": poor}, distributions=dist, value=0.30, intermediate_values=curve))
    for i in range(9):
        c = good if i < 2 else others[i % len(others)]
        iv = {1: 0.3, 2: 0.4, 3: 0.5} if i < 2 else ({1: 0.2, 2: 0.25, 3: 0.3} if i < 3 else {1: 0.2})
        study.add_trial(
            optuna.trial.create_trial(params={"c": c}, distributions=dist, state=TrialState.PRUNED, intermediate_values=iv)
        )
    return study


CHOICES = ("a", "b", "c", "d", "e")


def _draws(study: optuna.Study, sampler: optuna.samplers.BaseSampler, n: int = 40) -> list[str]:
    study.sampler = sampler
    picks = []
    for _ in range(n):
        t = study.ask()
        picks.append(t.suggest_categorical("c", CHOICES))
        study.tell(t, state=TrialState.FAIL)  # TPE models finished trials only: each draw sees the same 10
    return picks


@pytest.mark.parametrize(("poor", "good"), [("e", "a"), ("a", "d")])
def test_tpe_ranks_trials_at_a_rung_so_an_unopposed_completion_does_not_steer_it(poor: str, good: str) -> None:
    """Optuna's TPE puts every completed trial before every pruned one, so the poor trial that
    completed unopposed is its whole good set (1 of 10 trials) and it picks that trial's
    choice; the rung view ranks the trials at epoch 3 (the highest epoch that 3 x 1 of them
    reached) and picks the choice of the trial that was best there."""
    rung = make_sampler(parse_spec({"name": "x", "sampler": {"name": "tpe", "n_startup_trials": 0}}))
    assert isinstance(rung, optuna_storage.ViewTPESampler)
    optunas = _draws(_halving_history(poor, good), optuna.samplers.TPESampler(seed=0, n_startup_trials=0))
    ours = _draws(_halving_history(poor, good), rung)
    assert optunas.count(poor) > 0.6 * len(optunas), optunas
    assert ours.count(good) > 0.6 * len(ours) and ours.count(poor) < 0.2 * len(ours), ours


def _frozen(number: int, state: TrialState, iv: dict[int, float], value: float | None = None) -> optuna.trial.FrozenTrial:
    dist = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    t = optuna.trial.create_trial(params={"x": 0.5}, distributions=dist, state=state, value=value, intermediate_values=iv)
    t.number = number
    return t


def test_the_rung_view_ranks_by_the_value_at_the_highest_rung_enough_trials_reached() -> None:
    maximize = optuna.study.StudyDirection.MAXIMIZE
    view = RungView(need=3, scope_best=True)
    trials = [_frozen(0, TrialState.COMPLETE, {1: 0.7, 2: 0.6, 3: 0.3, 4: 0.35}, value=0.7)]
    trials += [_frozen(1, TrialState.COMPLETE, {1: 0.4}, value=0.4)]  # stopped early by itself after epoch 1
    trials += [_frozen(2 + i, TrialState.PRUNED, {1: 0.1 * i, 2: 0.1 * i + 0.05}) for i in range(5)]
    trials += [_frozen(7 + i, TrialState.PRUNED, {1: 0.5}) for i in range(3)]
    running = _frozen(10, TrialState.RUNNING, {1: 0.9})
    unreported = _frozen(11, TrialState.PRUNED, {})
    seen = {t.number: t for t in view(trials + [running, unreported], maximize)}
    # 11 finished: a good set of 2, so the rung is the highest epoch 6 trials reached (epoch 2)
    assert seen[0].state == TrialState.COMPLETE and seen[0].value == 0.7  # its best up to epoch 2
    assert seen[1].state == TrialState.COMPLETE and seen[1].value == 0.4  # completed before the rung: counts
    assert [seen[2 + i].value for i in range(5)] == pytest.approx([0.05, 0.15, 0.25, 0.35, 0.45])
    assert all(seen[7 + i].state == TrialState.PRUNED and seen[7 + i].value is None for i in range(3))
    assert seen[10] is running and seen[11] is unreported
    assert [t.number for t in view(trials, maximize)] == list(range(10))
    # scope last: the value at the rung, not the best up to it; minimizing, the lowest up to it
    assert RungView(3, scope_best=False)(trials, maximize)[0].value == 0.6
    assert RungView(3, scope_best=True)(trials, optuna.study.StudyDirection.MINIMIZE)[0].value == 0.6
    # once enough trials completed, the ranking is Optuna's: the trials as they are
    done = [_frozen(i, TrialState.COMPLETE, {1: 0.1, 2: 0.2}, value=0.2) for i in range(3)] + trials[2:9]
    assert RungView(3)(done, maximize) == done
