"""Where a space comes from and what it records: YAML read safely and bounded, relative paths
and modules found next to the spec that names them, and the fields a trial's search chose."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import optuna
import pytest

import search_spaces
from search_spaces import SpaceError
from search_spaces.yamlfile import MAX_NODES, YamlFileError, parse_yaml

SPACE = """\
name: near
description: A space in a folder next to its spec.
fixed: {epochs: 2}
parameters:
  lr: {float: [1.0e-3, 0.1], log: true}
"""

MODULE = '''
def space(trial):
    """A function space in a module next to its spec."""
    return {"lr": trial.suggest_float("lr_x", 1e-3, 0.1, log=True), "depth": 1, "epochs": 2}
'''


def test_a_yaml_bomb_space_is_refused_quickly(tmp_path: Path) -> None:
    levels = ["a0: &a0 [" + ", ".join(["1"] * 9) + "]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("name: bomb\ndescription: x\n" + "fixed:\n  " + "\n  ".join(levels) + "\n")
    t0 = time.perf_counter()
    with pytest.raises(SpaceError, match=rf"bomb\.yaml: the document expands to more than {MAX_NODES} values"):
        search_spaces.load(path)
    assert time.perf_counter() - t0 < 0.5


def test_expansion_is_counted_with_aliases_expanded() -> None:
    """A document of shared aliases is judged by the size it stands for, not its text."""

    def doc(copies: int) -> str:  # values: mapping 1, two keys 2, list a 1 + 999, list b 1 + copies * 1000
        return "a: &a [" + ", ".join(["0"] * 999) + "]\nb: [" + ", ".join(["*a"] * copies) + "]\n"

    assert len(parse_yaml(doc(98), "ok")["b"]) == 98  # 99,004 values
    with pytest.raises(YamlFileError, match="over: the document expands to more than"):
        parse_yaml(doc(100), "over")  # 101,004 values, from a 4 kB text


def test_a_relative_space_file_is_found_next_to_the_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "project" / "spaces").mkdir(parents=True)
    (tmp_path / "project" / "spaces" / "near.yaml").write_text(SPACE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(SpaceError, match="no such file"):
        search_spaces.load("spaces/near.yaml")  # from the working folder: not there
    space = search_spaces.load("spaces/near.yaml", base_dir=tmp_path / "project")
    assert space.name == "near"
    with pytest.raises(SpaceError, match=r"spaces/far\.yaml: no such file \(looked in '.*project' and the working folder\)"):
        search_spaces.load("spaces/far.yaml", base_dir=tmp_path / "project")


def test_a_module_space_is_imported_from_the_spec_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "near_space_mod.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "near_space_mod", raising=False)
    with pytest.raises(SpaceError, match="cannot import module 'near_space_mod'"):
        search_spaces.load("near_space_mod:space")
    path_before = list(sys.path)
    space = search_spaces.load("near_space_mod:space", base_dir=folder)
    assert sys.path == path_before  # the folder was on the path only while importing
    config = space.suggest(optuna.create_study().ask())
    assert config.depth == 1 and 1e-3 <= config.lr <= 0.1
    sys.modules.pop("near_space_mod", None)


def test_suggest_records_the_fields_the_search_chose() -> None:
    space = search_spaces.load("optimizers")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        config = space.suggest(trial, overrides={"epochs": 3})
        searched = trial.user_attrs["searched"]
        # lr under its field name, never the Optuna names lr_adaptive / lr_momentum / ...
        assert "lr" in searched and "optimizer" in searched and not any(s.startswith("lr_") for s in searched)
        assert "epochs" not in searched and "depth" not in searched  # fixed by the spec / the space
        want = {"optimizer", "lr"} | {
            "momentum": {"momentum"}, "nesterov": {"momentum"}, "rmsprop": {"rho"},
            "adam": {"beta1", "beta2"}, "adamw": {"beta1", "beta2", "weight_decay"},
        }.get(config.optimizer, set())  # fmt: skip
        assert set(searched) == want, (config.optimizer, searched)


def test_a_budget_space_records_the_budget() -> None:
    space = search_spaces.load("depth_vs_width")
    trial = optuna.trial.FixedTrial({"sizing": "budget", "depth": 3})
    config = space.suggest(trial, overrides={"epochs": 2})
    assert trial.user_attrs["n_params_budget"] == 20_000
    assert trial.user_attrs["searched"] == ["depth", "width"] and config.depth == 3
