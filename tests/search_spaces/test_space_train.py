"""Configurations from every built-in space train on a real dataset, and the parameter
count a space records is the trained network's."""

from __future__ import annotations

import optuna
import pytest

import search_spaces
from trainers import load_dataset, train

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def data():
    return load_dataset("gaussian_mixture", n_samples=300, n_features=8, n_classes=3, seed=0)


@pytest.mark.parametrize("name", sorted(search_spaces.builtin()))
def test_builtin_configs_train_and_record_their_parameter_count(name: str, data) -> None:
    space = search_spaces.load(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(2):
        trial = study.ask()
        config = space.suggest(trial, overrides={"epochs": 4}, n_inputs=8, n_classes=3)
        result = train(config, data)
        assert result.stop_reason in ("completed", "early_stopped", "diverged")
        assert len(result.history) >= 1
        assert trial.user_attrs["n_params"] == result.n_params
        study.tell(trial, 0.0)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_multivariate_grouped_tpe_handles_the_conditional_spaces() -> None:
    for name in ("optimizers", "full", "depth_vs_width"):
        space = search_spaces.load(name)
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, multivariate=True, group=True, n_startup_trials=5))
        for i in range(15):
            trial = study.ask()
            space.suggest(trial)
            study.tell(trial, float(i % 3))
