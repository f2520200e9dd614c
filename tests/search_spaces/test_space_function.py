"""The Python escape hatch: ``module:function`` taking a trial and returning config fields."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

import search_spaces
from search_spaces import SpaceError

MODULE = '''
def wide_or_deep(trial):
    """Wide-shallow against narrow-deep, written by hand.

    The second paragraph is not part of the description."""
    shape = trial.suggest_categorical("shape", ["wide", "deep"])
    if shape == "wide":
        return {"depth": 1, "width": trial.suggest_int("wide_width", 128, 512), "epochs": 7}
    return {"depth": trial.suggest_int("deep_depth", 3, 6), "width": 32, "epochs": 7}


def typo(trial):
    return {"learning_rate": 0.1}


def invalid(trial):
    return {"dropout": 1.5}


def not_a_dict(trial):
    return [("lr", 0.1)]
'''


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = "user_spaces_for_test"
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_function_space_samples_valid_configs(module: str) -> None:
    space = search_spaces.load(f"{module}:wide_or_deep")
    assert space.name == f"{module}:wide_or_deep"
    assert space.description == "Wide-shallow against narrow-deep, written by hand."
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5))
    shapes = set()
    for _ in range(20):
        trial = study.ask()
        config = space.suggest(trial, n_inputs=2, n_classes=3)
        shape = trial.params["shape"]
        shapes.add(shape)
        if shape == "wide":
            assert set(trial.params) == {"shape", "wide_width"}
            assert (config.depth, config.width) == (1, trial.params["wide_width"])
        else:
            assert set(trial.params) == {"shape", "deep_depth"}
            assert (config.depth, config.width) == (trial.params["deep_depth"], 32)
        assert config.epochs == 7
        assert trial.user_attrs["n_params"] == search_spaces.count_params(config.widths, 2, 3)
        study.tell(trial, 1.0)
    assert shapes == {"wide", "deep"}


def test_function_space_overrides_win(module: str) -> None:
    space = search_spaces.load(f"{module}:wide_or_deep")
    config = space.suggest(optuna.trial.FixedTrial({"shape": "wide", "wide_width": 200}), overrides={"epochs": 2, "lr": 0.05})
    assert (config.epochs, config.lr, config.width) == (2, 0.05, 200)
    with pytest.raises(
        SpaceError,
        match=r"wide_or_deep: override\(s\) \['epoch'\] are not TrainConfig fields \(did you mean 'epochs'\?\); allowed: .*\bepochs\b",
    ):
        space.suggest(optuna.trial.FixedTrial({"shape": "wide", "wide_width": 200}), overrides={"epoch": 2})
    with pytest.raises(SpaceError, match=r"wide_or_deep: fixed value dropout=2 is not allowed: dropout must be in \[0, 1\)"):
        space.with_fixed({"dropout": 2})
    assert "wide_or_deep" in space.describe() and "Wide-shallow" in space.describe()


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        ("typo", r"typo: returned unknown field\(s\) \['learning_rate'\]; allowed: .*\blr\b"),
        ("invalid", r"invalid: trial 0: \{'dropout': 1.5\} is no valid TrainConfig: dropout must be in \[0, 1\), got 1.5"),
        ("not_a_dict", r"not_a_dict: must return a dict of TrainConfig fields, returned list"),
    ],
)
def test_function_space_bad_output(module: str, fn: str, message: str) -> None:
    space = search_spaces.load(f"{module}:{fn}")
    with pytest.raises(SpaceError, match=f"{module}:" + message):
        space.suggest(optuna.trial.FixedTrial({}))


def test_function_space_missing_module_or_function(module: str) -> None:
    with pytest.raises(SpaceError, match=rf"{module}:nothing: module '{module}' has no function 'nothing'"):
        search_spaces.load(f"{module}:nothing")
    with pytest.raises(SpaceError, match=r"no_such_module_xyz:f: cannot import module 'no_such_module_xyz'"):
        search_spaces.load("no_such_module_xyz:f")
