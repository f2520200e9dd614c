"""Spaces for the user's own code: names that are not TrainConfig fields are the user's
(a model factory's hyperparameters, or anything a trainer function takes), sampled next to
the training options; TrainConfig fields are still checked for a model and never for a
trainer function."""

from __future__ import annotations

import optuna
import pytest

import search_spaces
from search_spaces import SpaceError
from search_spaces.function import FunctionSpace

SPACE = {
    "parameters": {
        "channels": {"int": [16, 64], "log": True},
        "kernel_size": {"choices": [3, 5, 7]},
        "lr": {"float": [1.0e-3, 1.0e-2], "log": True},
        "dropout": {"float": [0.0, 0.3]},
        "wide": {"choices": [True, False], "aux": True},
        "blocks_wide": {"int": [4, 6], "field": "n_blocks", "when": {"wide": True}},
        "blocks_narrow": {"int": [1, 3], "field": "n_blocks", "when": {"wide": False}},
    },
    "fixed": {"optimizer": "adamw", "epochs": 7, "bias": True},
}


def trial(seed: int = 0) -> optuna.Trial:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()


def test_a_model_space_splits_training_options_from_the_models_own_names() -> None:
    space = search_spaces.parse(SPACE, "inline", "model", inline=True)
    for seed in range(6):
        t = trial(seed)
        drawn = space.draw(t, n_inputs=40, n_classes=10)
        assert drawn.config is not None
        assert drawn.config.optimizer == "adamw" and drawn.config.epochs == 7
        assert drawn.config.lr == t.params["lr"] and drawn.config.dropout == t.params["dropout"]
        n_blocks = t.params["blocks_wide"] if t.params["wide"] else t.params["blocks_narrow"]
        assert drawn.params == {
            "channels": t.params["channels"], "kernel_size": t.params["kernel_size"], "n_blocks": n_blocks, "bias": True,
        }  # fmt: skip
        assert "n_params" not in t.user_attrs  # the MLP's count means nothing for the user's model


def test_a_model_space_still_checks_training_options() -> None:
    bad = {"parameters": {"channels": {"int": [8, 16]}, "dropout": {"float": [0.0, 1.5]}}}
    with pytest.raises(SpaceError, match=r"parameter 'dropout'.*1\.5"):
        search_spaces.parse(bad, "inline", "model", inline=True)


def test_a_trainer_space_passes_every_value_unchecked() -> None:
    raw = {"parameters": {"alpha": {"float": [1.0e-6, 1.0], "log": True}, "dropout": {"float": [0.0, 1.5]}},
           "fixed": {"epochs": 3, "lr": -1}}  # fmt: skip
    space = search_spaces.parse(raw, "inline", "trainer", inline=True)
    t = trial()
    drawn = space.draw(t, overrides={"penalty": "l1"})
    assert drawn.config is None
    assert drawn.params == {"epochs": 3, "lr": -1, "penalty": "l1", "alpha": t.params["alpha"], "dropout": t.params["dropout"]}


def test_the_mlp_refuses_names_of_its_own_and_says_how_to_have_them() -> None:
    with pytest.raises(SpaceError, match=r"parameter 'channels': name is not a TrainConfig field"):
        search_spaces.parse({"parameters": {"channels": {"int": [8, 16]}}}, "inline", inline=True)
    space = search_spaces.load("optimizers")
    with pytest.raises(SpaceError, match=r"\['n_estimators'\] are not TrainConfig fields.*`model:` or `trainer:`"):
        space.with_fixed({"n_estimators": 100})


def test_suggest_refuses_a_space_with_the_users_names() -> None:
    space = search_spaces.parse(SPACE, "inline", "model", inline=True)
    with pytest.raises(SpaceError, match="use draw"):
        space.suggest(trial())


def test_a_fixed_override_of_a_users_name_replaces_its_parameter() -> None:
    space = search_spaces.parse(SPACE, "inline", "model", inline=True)
    t = trial()
    drawn = space.draw(t, overrides={"channels": 32, "lr": 0.005})
    assert drawn.params["channels"] == 32 and drawn.config is not None and drawn.config.lr == 0.005
    assert "channels" not in t.params and "lr" not in t.params


def test_a_python_space_may_return_the_users_names_for_a_model() -> None:
    def fn(t: optuna.Trial) -> dict[str, object]:
        return {"n_estimators": t.suggest_int("n_estimators", 10, 20), "lr": 0.01}

    drawn = FunctionSpace(fn, "mod:fn", target="model").draw(trial())
    assert drawn.config is not None and drawn.config.lr == 0.01 and set(drawn.params) == {"n_estimators"}
    with pytest.raises(SpaceError, match=r"unknown field\(s\) \['n_estimators'\]"):
        FunctionSpace(fn, "mod:fn").draw(trial())


def test_an_inline_space_needs_no_name_but_a_mapping() -> None:
    assert search_spaces.parse({"parameters": {}}, "inline", inline=True).name == "inline"
    with pytest.raises(SpaceError, match="name must be a word"):
        search_spaces.parse({"parameters": {}}, "file.yaml")
    with pytest.raises(SpaceError, match="unknown key"):
        search_spaces.parse({"params": {}}, "inline", "model", inline=True)
