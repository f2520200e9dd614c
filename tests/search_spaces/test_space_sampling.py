"""Every built-in space, sampled by Optuna's RandomSampler and TPE, gives valid TrainConfigs
whose conditional parameters appear in ``trial.params`` exactly when their condition holds.

The expectation is computed from the YAML text itself (read here with yaml.safe_load), not
from the loader's parsed objects."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import optuna
import pytest
import yaml

import search_spaces
from search_spaces.budget import count_params
from trainers.config import DEFAULT_WEIGHT_DECAY, OPTIMIZERS, TrainConfig

optuna.logging.set_verbosity(optuna.logging.WARNING)

BUILTIN = sorted(search_spaces.builtin())
EXPECTED = {
    "lr_schedules", "optimizers", "depth_vs_width", "activations", "loss",
    "batch_size", "dropout", "regularization", "early_stopping", "full",
}  # fmt: skip
DEFAULTS = TrainConfig().to_dict()


def _raw(name: str) -> dict:
    path = Path(str(resources.files("search_spaces"))) / f"{name}.yaml"
    raw = yaml.safe_load(path.read_text())
    for entry in raw["parameters"].values():  # PyYAML reads 1e-3 as text; the spaces write 1.0e-3
        for key in ("float", "int", "layers", "choices"):
            assert not any(isinstance(v, str) and v[:1].isdigit() for v in entry.get(key, []))
    return raw


def _holds(when: dict, params: dict, fixed: dict) -> bool:
    for name, allowed in when.items():
        allowed = allowed if isinstance(allowed, list) else [allowed]
        value = params[name] if name in params else fixed.get(name, object())
        if value not in allowed:
            return False
    return True


def _check_trial(raw: dict, trial: optuna.trial.BaseTrial, config: TrainConfig, sizing: dict) -> set[str]:
    """Assert presence/absence of every parameter; return the names that were active."""
    fixed, params = raw.get("fixed") or {}, raw["parameters"]
    active: set[str] = set()
    set_fields: set[str] = set()
    for name, entry in params.items():  # conditions only name ordinary parameters, so trial.params decides them
        on = _holds(entry.get("when", {}), {**trial.params, **sizing}, fixed)
        field = None if entry.get("aux") else entry.get("field", name)
        if "layers" in entry:
            names = {f"{name}_l{i}" for i in range(config.depth)}
            present = {k for k in trial.params if k.startswith(name + "_l")}
            assert present == (names if on else set()), (name, trial.params)
            if on:
                lo, hi = entry["layers"]
                assert sorted(config.widths) == sorted(trial.params[k] for k in names)
                assert all(lo <= w <= hi for w in config.widths)
                if entry.get("shape") == "funnel":
                    assert list(config.widths) == sorted(config.widths, reverse=True)
        elif "budget" in entry:
            assert name not in trial.params
            if on:
                assert trial.user_attrs["n_params_budget"] == entry["budget"]
        else:
            assert (name in trial.params) == on, (name, entry.get("when"), trial.params)
            if on and field:
                assert getattr(config, field) == trial.params[name] or (
                    field == "width" and config.widths == (trial.params[name],) * config.depth
                )
        if on:
            active.add(name)
            if field:
                set_fields.add(field)
    for field, value in DEFAULTS.items():  # every field no active parameter set is fixed or default
        if field in set_fields:
            continue
        expected = fixed.get(field, value)
        if field == "weight_decay" and "weight_decay" not in fixed:
            expected = DEFAULT_WEIGHT_DECAY.get(config.optimizer, 0.0)
        got = config.to_dict()[field]
        assert got == (list(expected) if isinstance(expected, tuple) else expected), (field, got, expected)
    return active


def test_the_builtins_are_the_ten_lessons_each_named_as_its_file() -> None:
    assert set(BUILTIN) == EXPECTED
    for name in BUILTIN:
        assert search_spaces.load(name).name == name == _raw(name)["name"]
        assert len(search_spaces.builtin()[name]) > 80


@pytest.mark.parametrize("sampler", ["random", "tpe"])
@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_space_gives_valid_configs_and_exact_conditional_params(name: str, sampler: str) -> None:
    raw = _raw(name)
    space = search_spaces.load(name)
    s = optuna.samplers.RandomSampler(seed=1) if sampler == "random" else optuna.samplers.TPESampler(seed=1, n_startup_trials=10)
    study = optuna.create_study(sampler=s)
    seen_on: set[str] = set()
    n = 40
    for i in range(n):
        trial = study.ask()
        config = space.suggest(trial)
        assert isinstance(config, TrainConfig)
        pieces = config.maxout_pieces if config.activation == "maxout" else 1
        assert trial.user_attrs["n_params"] == count_params(config.widths, 64, 10, pieces)
        sizing = {}
        if name == "depth_vs_width":  # the aux parameter
            sizing = {"sizing": trial.params["sizing"]}
        seen_on |= _check_trial(raw, trial, config, sizing)
        study.tell(trial, float(i % 7))
    conditional = {k for k, v in raw["parameters"].items() if "when" in v}
    assert conditional <= seen_on, f"never active in {n} trials: {conditional - seen_on}"


def test_optimizer_parameters_follow_the_optimizer() -> None:
    space = search_spaces.load("optimizers")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        config = space.suggest(trial)
        opt = trial.params["optimizer"]
        seen.add(opt)
        assert ("momentum" in trial.params) == (opt in ("momentum", "nesterov"))
        assert ("beta1" in trial.params) == ("beta2" in trial.params) == (opt in ("adam", "adamw"))
        assert ("rho" in trial.params) == (opt == "rmsprop")
        lrs = [k for k in trial.params if k.startswith("lr_")]
        assert len(lrs) == 1 and config.lr == trial.params[lrs[0]]
        assert config.weight_decay == (trial.params["weight_decay"] if opt == "adamw" else 0.0)
        study.tell(trial, 0.0)
    assert seen == set(OPTIMIZERS)


def test_schedule_parameters_follow_the_schedule() -> None:
    space = search_spaces.load("lr_schedules")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=4))
    for _ in range(50):
        trial = study.ask()
        config = space.suggest(trial)
        sched = trial.params["schedule"]
        assert ("step_size" in trial.params) == ("gamma_step" in trial.params) == (sched == "step")
        assert ("gamma_exponential" in trial.params) == (sched == "exponential")
        assert ("min_lr" in trial.params) == (sched == "cosine")
        if sched in ("constant", "cosine"):
            assert config.gamma == 0.5  # TrainConfig's default, untouched
        study.tell(trial, 0.0)


def test_maxout_pieces_only_for_maxout() -> None:
    space = search_spaces.load("activations")
    for act in ("sigmoid", "tanh", "relu", "leaky_relu", "maxout"):
        params = {"activation": act, "depth": 3, "lr": 0.1, "leaky_slope": 0.1, "maxout_pieces": 3}
        trial = optuna.trial.FixedTrial(params)
        config = space.suggest(trial)
        assert config.activation == act
        assert config.maxout_pieces == (3 if act == "maxout" else 2)
        assert config.leaky_slope == (0.1 if act == "leaky_relu" else 0.01)
