"""The spec's `dataset:` field: built-ins, single files, fixed train/val/test files, and
`DatasetSpec.load(base_dir)`, which resolves relative paths against the spec's folder.

(It lives beside the data tests because it is the data's front door from a study spec.)"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from study.spec import SpecError, load_spec, parse_spec


def _write(folder: Path, name: str, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    np.savez(folder / name, X=rng.normal(size=(n, 3)) + y[:, None], y=y)


def test_train_and_test_files_relative_to_the_spec_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    _write(folder / "data", "a.npz", 50, 0)
    _write(folder / "data", "b.npz", 20, 1)
    _write(folder / "data", "c.npz", 10, 2)
    spec_path = folder / "spec.yaml"
    spec_path.write_text(yaml.safe_dump({"name": "s", "dataset": {"train": "data/a.npz", "test": "data/b.npz"}}))
    monkeypatch.chdir(tmp_path)  # the working folder is elsewhere: paths must follow the spec file
    spec = load_spec(spec_path)
    assert (spec.dataset.name, spec.dataset.test, spec.dataset.val) == ("data/a.npz", "data/b.npz", 0.2)
    d = spec.dataset.load(os.path.dirname(spec_path))
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (40, 10, 20)
    with np.load(folder / "data" / "b.npz") as b:
        np.testing.assert_array_equal(d.y_test, b["y"])
    with pytest.raises(SpecError, match=r"^field dataset: dataset file '.*data/a\.npz' does not exist"):
        spec.dataset.load()  # relative to the working folder, where there is no data/
    monkeypatch.chdir(folder)
    assert len(spec.dataset.load().y_test) == 20  # base_dir None: the working folder
    val_file = parse_spec({"name": "s", "dataset": {"train": "data/a.npz", "val": "data/c.npz", "test": "data/b.npz"}})
    d = val_file.dataset.load(str(folder))
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (50, 10, 20)
    absolute = parse_spec({"name": "s", "dataset": {"name": str(folder / "data" / "a.npz"), "test": 0.2}})
    assert len(absolute.dataset.load("/nonexistent").y_test) == 10  # an absolute path stays as it is


def test_builtins_are_names_not_paths(tmp_path: Path) -> None:
    d = parse_spec({"name": "s", "dataset": "mnist1d"}).dataset.load(str(tmp_path))
    assert (len(d.y_train) + len(d.y_val), len(d.y_test)) == (4000, 1000)
    d = parse_spec({"name": "s", "dataset": {"name": "gaussian_mixture", "args": {"n_samples": 100}}}).dataset.load(str(tmp_path))
    assert len(d.y_train) + len(d.y_val) == 100
    with pytest.raises(SpecError, match="field dataset: dataset 'mnist' is neither a built-in"):
        parse_spec({"name": "s", "dataset": "mnist"}).dataset.load(str(tmp_path))


def test_the_spec_round_trips_through_overrides() -> None:
    spec = parse_spec({"name": "s", "dataset": {"train": "a.csv", "val": "v.csv", "test": 0.1, "label_column": "kind"}})
    again = spec.with_overrides(trials=5)
    assert again.dataset == spec.dataset and again.dataset.val == "v.csv" and again.dataset.test == 0.1


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ({"name": "a.npz", "train": "a.npz"}, "field dataset: give the training data as `name` or as `train`, not both"),
        ({"train": "a.npz", "val": 0}, "field dataset.val: must be a fraction with 0 < val < 1 or a file"),
        ({"train": "a.npz", "val": 1.0}, "field dataset.val: must be a fraction with 0 < val < 1"),
        ({"train": "a.npz", "val": True}, "field dataset.val: must be a fraction"),
        ({"train": "a.npz", "val": "0.2"}, "field dataset.val: must be a fraction or a file (.npz, .csv, .parquet) (got '0.2')"),
        ({"train": "a.npz", "test": -0.1}, "field dataset.test: must be a fraction with 0 <= test < 1"),
        ({"train": "a.npz", "test": "b.txt"}, "field dataset.test: must be a fraction or a file"),
        ({"train": "a.npz", "tset": "b.npz"}, "field dataset.tset: unknown field"),
    ],
)
def test_bad_dataset_fields_name_the_field(dataset: dict, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec({"name": "s", "dataset": dataset}, source="spec.yaml")
    assert message in str(info.value)


def test_data_problems_are_spec_errors_naming_the_file(tmp_path: Path) -> None:
    _write(tmp_path, "a.npz", 50, 0)
    np.savez(tmp_path / "wide.npz", X=np.zeros((10, 5)), y=np.arange(10) % 2)
    spec = parse_spec({"name": "s", "dataset": {"train": "a.npz", "test": "wide.npz"}})
    with pytest.raises(SpecError, match=r"^field dataset: .*wide\.npz: has 5 features but the training data .* has 3"):
        spec.dataset.load(str(tmp_path))
    spec = parse_spec({"name": "s", "dataset": {"name": "mnist1d", "test": 0.2}})
    with pytest.raises(SpecError, match="field dataset: mnist1d: has its official test split"):
        spec.dataset.load()
