"""The study spec: the issue's six-line spec works as written, short forms, every error
names its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from study.spec import SpecError, load_spec, parse_spec

SIX_LINES = """\
name: quick-optimizers
dataset: digits
space: optimizers
fixed: {epochs: 5}
trials: 8
concurrency: 2
"""


def test_six_line_spec_as_written(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(SIX_LINES)
    s = load_spec(path)
    assert (s.name, s.dataset.name, s.space, s.fixed, s.trials, s.concurrency) == (
        "quick-optimizers",
        "digits",
        "optimizers",
        {"epochs": 5},
        8,
        2,
    )
    # the defaults the issue asks for
    assert s.sampler.name == "tpe" and s.sampler.multivariate and s.sampler.constant_liar
    assert s.objective.metric == "val_loss" and s.objective.scope == "best" and s.directions == ["minimize"]
    assert s.backend == "numpy" and s.resources.cpus == 1 and s.resources.gpus == 0
    assert s.storage is None and s.tracking_uri == "sqlite:///mlflow.db"
    assert s.pruning and not s.is_multi_objective


def test_short_forms_expand() -> None:
    s = parse_spec({"name": "x", "dataset": "spirals", "pruner": "hyperband", "sampler": "random", "objective": "val_acc"})
    assert s.dataset.name == "spirals" and s.pruner.name == "hyperband" and s.sampler.name == "random"
    assert s.objective.metric == "val_acc" and s.directions == ["maximize"]
    p = parse_spec({"name": "x", "pruner": {"name": "patient", "patience": 3, "wrapped": "median"}}).pruner
    assert p.name == "patient" and p.patience == 3 and p.wrapped.name == "median"


def test_multi_objective_turns_pruning_off() -> None:
    s = parse_spec({"name": "x", "objectives": ["val_loss", {"metric": "n_params"}], "sampler": "nsga2"})
    assert s.is_multi_objective and not s.pruning
    assert s.directions == ["minimize", "minimize"]


def test_overrides_are_validated_again() -> None:
    s = parse_spec({"name": "x"}).with_overrides(trials=3, concurrency=None)
    assert s.trials == 3 and s.concurrency is None
    with pytest.raises(SpecError, match="field trials"):
        s.with_overrides(trials=0)


BAD = [
    ({"trials": 3}, "field name: Field required"),
    ({"name": "a b"}, "field name: must be"),
    ({"name": "x", "trials": 0}, "field trials"),
    ({"name": "x", "trails": 3}, "field trails: unknown field"),
    ({"name": "x", "concurrency": -1}, "field concurrency"),
    ({"name": "x", "pruner": "sometimes"}, "field pruner"),
    ({"name": "x", "pruner": {"name": "median", "percentile": 30}}, "percentile 50"),
    ({"name": "x", "pruner": {"name": "hyperband", "min_resource": 0}}, "field pruner.min_resource"),
    ({"name": "x", "sampler": "annealing"}, "field sampler.name"),
    ({"name": "x", "sampler": "grid"}, "grid needs"),
    ({"name": "x", "objective": "val_f1"}, "field objective.metric: unknown metric 'val_f1'"),
    ({"name": "x", "objective": {"metric": "val_loss", "scope": "median"}}, "field objective.scope"),
    ({"name": "x", "objectives": ["val_loss", "n_params"], "sampler": "cmaes"}, "cmaes sampler handles one objective"),
    ({"name": "x", "resources": {"cpus": 0}}, "field resources.cpus"),
    ({"name": "x", "retries": -1}, "field retries"),
    ({"name": "x", "timeout": 0}, "field timeout"),
    ({"name": "x", "device": "cuda"}, "needs backend: torch"),
    ({"name": "x", "dataset": {"name": "digits", "val": 1.5}}, "field dataset.val"),
]


@pytest.mark.parametrize(("data", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_spec_names_the_field(data: dict, message: str) -> None:
    with pytest.raises(SpecError, match="^spec.yaml: ") as info:
        parse_spec(data, source="spec.yaml")
    assert message in str(info.value)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="must be a mapping"):
        load_spec(tmp_path / "list.yaml")
    (tmp_path / "obj.yaml").write_text("name: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(SpecError, match="not valid YAML"):  # safe_load refuses arbitrary objects
        load_spec(tmp_path / "obj.yaml")
