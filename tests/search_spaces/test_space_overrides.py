"""Overrides (a study spec's ``fixed:``) win over the space, and are checked like the space."""

from __future__ import annotations

import optuna
import pytest

import search_spaces
from search_spaces import SpaceError


def _random_study(seed: int = 0) -> optuna.Study:
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))


def test_override_beats_the_space_fixed_value() -> None:
    space = search_spaces.load("optimizers")
    study = _random_study()
    for _ in range(10):
        trial = study.ask()
        assert space.suggest(trial, overrides={"epochs": 3, "width": 16}).epochs == 3
        assert space.suggest(optuna.trial.FixedTrial(trial.params)).epochs == 20  # the space itself is unchanged
        study.tell(trial, 0.0)


def test_override_of_a_sampled_field_removes_its_parameters_and_drives_conditions() -> None:
    space = search_spaces.load("optimizers")
    study = _random_study(1)
    for _ in range(15):
        trial = study.ask()
        config = space.suggest(trial, overrides={"optimizer": "adamw"})
        assert "optimizer" not in trial.params
        assert config.optimizer == "adamw"
        assert {"lr_adaptive", "beta1", "beta2", "weight_decay"} == set(trial.params)
        study.tell(trial, 0.0)
    trial = _random_study().ask()
    config = space.suggest(trial, overrides={"lr": 0.02})
    assert config.lr == 0.02 and not any(k.startswith("lr_") for k in trial.params)


def test_override_of_depth_drives_per_layer_widths() -> None:
    space = search_spaces.load("full")
    trial = _random_study(2).ask()
    config = space.suggest(trial, overrides={"depth": 3})
    assert config.depth == 3 and "depth" not in trial.params
    assert {k for k in trial.params if k.startswith("width_l")} == {"width_l0", "width_l1", "width_l2"}


def test_override_of_an_unknown_field_is_an_error() -> None:
    space = search_spaces.load("dropout")
    with pytest.raises(
        SpaceError,
        match=r"dropout\.yaml \(built-in\): override\(s\) \['epoch'\] are not TrainConfig fields \(did you mean 'epochs'\?\); allowed: .*\bepochs\b",
    ):
        space.suggest(_random_study().ask(), overrides={"epoch": 5})


def test_override_that_conflicts_with_a_range_is_an_error_before_sampling() -> None:
    space = search_spaces.load("lr_schedules")
    trial = _random_study().ask()
    with pytest.raises(
        SpaceError, match=r"parameter 'warmup_epochs': value 3 is not allowed for warmup_epochs: .*\[0, epochs=2\)"
    ):
        space.with_fixed({"epochs": 2})
    with pytest.raises(SpaceError):
        space.suggest(trial, overrides={"epochs": 2})
    assert trial.params == {}  # nothing was sampled
    with pytest.raises(SpaceError, match=r"fixed value dropout=1.5 is not allowed: dropout must be in \[0, 1\)"):
        space.with_fixed({"dropout": 1.5})


def test_describe_lists_everything() -> None:
    for name, description in search_spaces.builtin().items():
        space = search_spaces.load(name)
        text = space.describe()
        assert text.startswith(name) and " ".join(text.split()).count(description.split(".")[0]) == 1
        for p in space.params:
            assert p.name in text
        for k in space.fixed:
            assert f"{k} = " in text


def test_suggest_checks_dataset_shape() -> None:
    with pytest.raises(SpaceError, match=r"n_inputs must be an integer >= 1, got 0"):
        search_spaces.load("loss").suggest(_random_study().ask(), n_inputs=0)
