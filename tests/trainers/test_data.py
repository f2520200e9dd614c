"""Datasets: built-ins, generated tasks, users' files, the split, and every data error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainers import DataError, from_arrays, load_dataset


def test_digits_ships_with_sklearn_and_splits_stratified() -> None:
    d = load_dataset("digits", val=0.2, test=0.1, seed=3)
    assert d.n_features == 64 and d.n_classes == 10
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == 1797
    for part in (d.y_train, d.y_val, d.y_test):
        frac = np.bincount(part, minlength=10) / len(part)
        assert np.abs(frac - 0.1).max() < 0.03  # every class in proportion
    assert d.X_train.dtype == np.float32 and d.y_train.dtype == np.int64
    np.testing.assert_allclose(d.X_train.mean(axis=0), 0, atol=1e-5)  # standardized on train
    assert abs(float(d.X_val.mean())) > 1e-4  # ... with training statistics only


@pytest.mark.parametrize("name", ["gaussian_mixture", "spirals", "rings"])
def test_generated_tasks_are_deterministic_by_seed(name: str) -> None:
    a, b, c = load_dataset(name, seed=1), load_dataset(name, seed=1), load_dataset(name, seed=2)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_val, b.y_val)
    assert not np.array_equal(a.X_train[:20], c.X_train[:20])


def test_label_noise_flips_labels() -> None:
    from trainers.data import gaussian_mixture

    _, clean = gaussian_mixture(n_samples=4000, seed=0)
    _, noisy = gaussian_mixture(n_samples=4000, label_noise=0.4, seed=0)
    changed = float((clean != noisy).mean())
    assert 0.25 < changed < 0.35  # 40% resampled, a quarter of those land on their own class


def test_rings_label_is_the_parity_of_the_radial_band() -> None:
    from trainers.data import rings

    X, y = rings(n_samples=4000, n_features=3, bands=4, seed=0)
    r2 = (X**2).sum(axis=1)
    order = np.argsort(r2)
    # sorted by radius, labels run in 4 equal blocks 0,1,0,1
    blocks = np.array_split(y[order], 4)
    assert [int(round(b.mean())) for b in blocks] == [0, 1, 0, 1]
    assert abs(y.mean() - 0.5) < 0.01


def test_same_split_for_the_same_seed() -> None:
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(100, 3)), rng.integers(0, 3, 100)
    a, b = from_arrays(X, y, seed=5), from_arrays(X, y, seed=5)
    np.testing.assert_array_equal(a.X_train, b.X_train)


def test_npz_csv_parquet_files(tmp_path) -> None:
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 4)), rng.integers(0, 3, 60)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    df = pd.DataFrame(X, columns=list("abcd")).assign(target=y)
    df.to_csv(tmp_path / "d.csv", index=False)
    df.to_parquet(tmp_path / "d.parquet")
    sets = [
        load_dataset(str(tmp_path / "d.npz")),
        load_dataset(str(tmp_path / "d.csv"), label_column="target"),
        load_dataset(str(tmp_path / "d.parquet"), label_column="target"),
    ]
    for d in sets:
        assert d.n_features == 4 and d.n_classes == 3
    np.testing.assert_allclose(sets[0].X_train, sets[1].X_train, rtol=1e-6)


def _err(tmp_path, **arrays) -> str:
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError) as e:
        load_dataset(str(tmp_path / "bad.npz"))
    return str(e.value)


def test_data_errors_name_the_problem(tmp_path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    y = np.arange(30) % 3
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(str(tmp_path / "missing.npz"))
    with pytest.raises(DataError, match="neither a built-in"):
        load_dataset("mnist")
    assert "missing array(s) ['y']" in _err(tmp_path, X=X, features=y)
    assert "NaN or inf" in _err(tmp_path, X=np.where(X > 1.5, np.nan, X), y=y)
    assert "NaN or inf" in _err(tmp_path, X=np.where(X > 1.5, np.inf, X), y=y)
    assert "found the fraction 0.5" in _err(tmp_path, X=X, y=y + 0.5)
    assert "labels are missing (NaN) in rows [1, 4" in _err(tmp_path, X=X, y=np.where(y == 1, np.nan, y))
    assert "only one class" in _err(tmp_path, X=X, y=np.zeros(30, int))
    assert "X has 30 rows but y has 29" in _err(tmp_path, X=X, y=y[:29])
    assert "features must be numeric" in _err(tmp_path, X=np.array([["a", "b"]] * 30), y=y)
    assert "leaves none for training" in _err(tmp_path, X=X[:4], y=np.array([0, 0, 0, 1]))
    with pytest.raises(DataError, match="cannot load without pickle"):
        np.savez(tmp_path / "obj.npz", X=np.array([{"a": 1}] * 30, dtype=object), y=y)
        load_dataset(str(tmp_path / "obj.npz"))


def test_csv_errors(tmp_path) -> None:
    pd.DataFrame({"a": [1.0, 2.0, 3.0], "label": [0, 1, 0]}).to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(DataError, match="no label column 'y'"):
        load_dataset(str(tmp_path / "x.csv"), label_column="y")
    pd.DataFrame({"a": ["x", "y"] * 10, "label": [0, 1] * 10}).to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(DataError, match=r"feature column\(s\) \['a'\] are not numeric"):
        load_dataset(str(tmp_path / "s.csv"))
    (tmp_path / "f.txt").write_text("hello")
    with pytest.raises(DataError, match="unknown file type"):
        load_dataset(str(tmp_path / "f.txt"))


def test_split_fraction_errors() -> None:
    with pytest.raises(DataError, match="split fractions"):
        load_dataset("digits", val=0.6, test=0.5)
    with pytest.raises(DataError, match="takes 4 \\+ 1 of them and leaves none"):
        from_arrays(np.zeros((10, 2)) + np.arange(10)[:, None], np.arange(10) % 2, val=0.7, test=0.2)


def test_bad_generator_arguments_are_data_errors() -> None:
    with pytest.raises(DataError, match="gaussian_mixture: bad generator argument"):
        load_dataset("gaussian_mixture", n_classes=0)
    with pytest.raises(DataError, match="bad generator argument"):
        load_dataset("spirals", n_samples=-5)
    with pytest.raises(DataError, match="bad generator argument"):
        load_dataset("rings", colour="red")
