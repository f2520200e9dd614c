"""The spec fields of the user's own code: ``model:`` and ``trainer:``, the spec's folder as the
base of relative paths, inline spaces, and the objective metrics each kind of study reports."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from study.spec import SpecError, load_spec, parse_spec


def test_model_means_the_torch_backend_and_an_empty_space() -> None:
    spec = parse_spec({"name": "m", "model": "nets/cnn.py:build"})
    assert spec.backend == "torch" and spec.target == "model" and spec.code == ("model", "nets/cnn.py:build")
    assert spec.space == {"parameters": {}}
    assert parse_spec({"name": "t", "trainer": "pkg.mod:trial"}).target == "trainer"
    assert parse_spec({"name": "x"}).target == "mlp" and parse_spec({"name": "x"}).space == "full"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model": "a.py:build", "trainer": "b.py:trial"}, "either `model`"),
        ({"model": "a.py:build", "backend": "numpy"}, "backend must be torch"),
        ({"trainer": "a.py:trial", "backend": "torch"}, "trains by itself"),
        ({"trainer": "a.py:trial", "device": "cuda"}, "trains by itself"),
        ({"model": "a.py"}, "field model: must be FILE.py:function or package.module:function"),
        ({"trainer": "a.py:not-a-name"}, "field trainer: must be FILE.py:function"),
        ({"model": "a.py:build", "objective": "val_f1"}, r"field objective.metric: unknown metric 'val_f1'"),
        ({"objective": "grad_norm.conv.weight"}, r"unknown metric 'grad_norm.conv.weight'.*a `trainer:` function may report any"),
        ({"trainer": "t.py:trial", "objective": "val f1"}, "is not a metric name"),
    ],
)
def test_bad_code_fields_name_the_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec({"name": "x", **fields})


def test_a_comparison_of_user_code_is_refused() -> None:
    compare = {"claim": "c", "factor": {"lr": [0.01, 0.1]}, "baseline": 0.01, "measure": "gap", "expect": "lower", "seeds": 2}
    with pytest.raises(SpecError, match=r"a study of your own trainer \(t.py:trial\) cannot be compared yet"):
        parse_spec({"name": "x", "trainer": "t.py:trial", "compare": compare, "pruner": "none"})


def test_objective_metrics_of_each_kind_of_study() -> None:
    assert parse_spec({"name": "x", "trainer": "t.py:trial", "objective": "val_f1"}).objective.metric == "val_f1"
    assert parse_spec({"name": "x", "trainer": "t.py:trial", "objective": "val_accuracy"}).directions == ["maximize"]
    assert parse_spec({"name": "x", "model": "m.py:build", "objective": "grad_norm.conv1.weight"}).directions == ["minimize"]
    assert parse_spec({"name": "x", "objective": "grad_norm_0"}).objective.metric == "grad_norm_0"


def test_load_spec_remembers_the_spec_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.yaml").write_text(yaml.safe_dump({"name": "a", "model": "m.py:build"}))
    monkeypatch.chdir(tmp_path)
    a = load_spec("sub/a.yaml")
    assert a.base_dir == str(tmp_path / "sub") and a.path("m.py") == str(tmp_path / "sub" / "m.py")
    assert a.path("/abs/m.py") == "/abs/m.py"
    assert parse_spec({"name": "c"}).base_dir is None  # a mapping has no folder: paths are the working folder's


def test_the_base_folder_survives_the_command_lines_overrides(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"name": "a", "trainer": "t.py:trial", "space": {"parameters": {}}}))
    spec = load_spec(tmp_path / "s.yaml").with_overrides(trials=3)
    assert spec.base_dir == str(tmp_path) and spec.trainer == "t.py:trial" and spec.trials == 3
