"""Fixed validation and test sets from files, and labels of any kind mapped to classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trainers import DataError, from_arrays, load_dataset


def _blobs(n: int, seed: int, n_features: int = 4, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    return rng.normal(size=(n, n_features)) + y[:, None] + shift, y


def _raw(d, X_test_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The per-feature map ``(x - mean) / std`` recovered from the test split (raw and
    standardized known), applied backwards to the training and validation rows."""
    std = X_test_raw.std(axis=0) / d.X_test.std(axis=0)
    mean = X_test_raw.mean(axis=0) - std * d.X_test.mean(axis=0)
    np.testing.assert_allclose(d.X_test * std + mean, X_test_raw, atol=1e-5)  # one affine map for the test rows
    return d.X_train * std + mean, d.X_val * std + mean


def _is_subset(rows: np.ndarray, of: np.ndarray) -> bool:
    d2 = (rows**2).sum(1)[:, None] + (of**2).sum(1)[None, :] - 2 * rows @ of.T
    return bool(d2.min(axis=1).max() < 1e-8) and len(np.unique(d2.argmin(axis=1))) == len(rows)


def test_test_file_is_the_test_set_and_val_is_carved_from_train(tmp_path: Path) -> None:
    X, y = _blobs(90, 0)
    Xt, yt = _blobs(30, 1, shift=5.0)  # shifted: standardizing with its own statistics would show
    np.savez(tmp_path / "a.npz", X=X, y=y)
    np.savez(tmp_path / "b.npz", X=Xt, y=yt)
    d = load_dataset(tmp_path / "a.npz", test=str(tmp_path / "b.npz"), val=0.2, seed=0)
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (72, 18, 30)
    np.testing.assert_array_equal(d.y_test, yt)  # the file's rows, in order
    np.testing.assert_array_equal(np.bincount(d.y_val), [6, 6, 6])  # stratified from a.npz
    train, val = _raw(d, Xt)
    assert _is_subset(np.concatenate([train, val]), X)  # train and val are a.npz's 90 rows
    # the map is the training rows' statistics, not the test file's (which is shifted by 5)
    np.testing.assert_allclose(d.X_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(d.X_train.std(axis=0), 1, atol=1e-4)
    assert d.X_test.mean(axis=0).min() > 2


def test_val_and_test_files_leave_the_whole_train_file_for_training(tmp_path: Path) -> None:
    for name, seed in (("a", 0), ("v", 1), ("t", 2)):
        X, y = _blobs(30 if name != "a" else 60, seed)
        np.savez(tmp_path / f"{name}.npz", X=X, y=y)
    d = load_dataset(str(tmp_path / "a.npz"), val=str(tmp_path / "v.npz"), test=str(tmp_path / "t.npz"))
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (60, 30, 30)
    with np.load(tmp_path / "v.npz") as v:
        np.testing.assert_array_equal(d.y_val, v["y"])
    with np.load(tmp_path / "t.npz") as t:
        train, val = _raw(d, t["X"])
    with np.load(tmp_path / "a.npz") as a:
        assert _is_subset(train, a["X"]) and len(train) == len(a["X"])
    with np.load(tmp_path / "v.npz") as v:
        np.testing.assert_allclose(val, v["X"], atol=1e-5)
    # a val file beside a test fraction carved from the training file
    d = load_dataset(str(tmp_path / "a.npz"), val=str(tmp_path / "v.npz"), test=0.25)
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (45, 30, 15)


def _tables(tmp_path: Path, suffix: str, train: pd.DataFrame, test: pd.DataFrame) -> tuple[str, str]:
    paths = str(tmp_path / f"train{suffix}"), str(tmp_path / f"test{suffix}")
    for df, path in zip((train, test), paths, strict=True):
        df.to_csv(path, index=False) if suffix == ".csv" else df.to_parquet(path)
    return paths


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_string_labels_map_to_sorted_classes_shared_with_the_test_file(tmp_path: Path, suffix: str) -> None:
    names = np.array(["setosa", "versicolor", "virginica"])
    X, y = _blobs(60, 0)
    Xt, yt = _blobs(12, 1)
    train = pd.DataFrame(X, columns=list("abcd")).assign(species=names[y])
    test = pd.DataFrame(Xt, columns=list("abcd")).assign(species=names[yt][::-1])  # classes in another order
    a, b = _tables(tmp_path, suffix, train, test)
    d = load_dataset(a, test=b, label_column="species")
    assert d.classes == ("setosa", "versicolor", "virginica") and d.n_classes == 3
    np.testing.assert_array_equal(d.y_test, yt[::-1])  # same name, same index as in training
    assert "labels 'setosa'=0, 'versicolor'=1, 'virginica'=2" in d.summary()
    test.loc[3, "species"] = "unknown"
    a, b = _tables(tmp_path, suffix, train, test)
    with pytest.raises(DataError, match=r"test\.\w+: label\(s\) \['unknown'\] do not occur in the training data"):
        load_dataset(a, test=b, label_column="species")


def test_arbitrary_integer_labels_map_in_sorted_order(tmp_path: Path) -> None:
    X, y = _blobs(60, 0)
    codes = np.array([-1, 7, 3])[y]  # classes -1 < 3 < 7
    d = from_arrays(X, codes, seed=0)
    assert d.classes == (-1, 3, 7)
    np.testing.assert_array_equal(np.bincount(d.y_train), [16, 16, 16])
    pd.DataFrame(X, columns=list("abcd")).assign(label=codes + 100).to_csv(tmp_path / "d.csv", index=False)
    assert load_dataset(str(tmp_path / "d.csv")).classes == (99, 103, 107)
    assert from_arrays(X, y == 0).classes == (False, True)
    as_floats = from_arrays(X, y.astype(float)).classes  # integral floats (a CSV column with a gap) are integers
    assert as_floats == (0, 1, 2) and all(type(c) is int for c in as_floats)
    assert load_dataset("digits").classes == tuple(range(10))


def test_the_same_label_names_the_same_class_in_every_split() -> None:
    """Mapped before the split: class i means the same original label in train, val and test."""
    rng = np.random.default_rng(0)
    cluster = np.arange(90) % 3
    X = np.column_stack([cluster, rng.normal(size=90)])  # feature 0 is the cluster index itself
    labels = np.array(["c", "a", "b"])[cluster]
    d = from_arrays(X, labels, val=0.2, test=0.2, seed=1)
    assert d.classes == ("a", "b", "c")
    levels = np.unique(np.concatenate([d.X_train[:, 0], d.X_val[:, 0], d.X_test[:, 0]]))  # 3 values, in cluster order
    for Xs, ys in ((d.X_train, d.y_train), (d.X_val, d.y_val), (d.X_test, d.y_test)):
        from_features = np.array(["c", "a", "b"])[np.searchsorted(levels, Xs[:, 0])]
        np.testing.assert_array_equal(np.array(d.classes)[ys], from_features)


def test_files_must_agree(tmp_path: Path) -> None:
    X, y = _blobs(60, 0)
    np.savez(tmp_path / "a.npz", X=X, y=y)
    np.savez(tmp_path / "wide.npz", X=np.hstack([X, X])[:12], y=y[:12])
    with pytest.raises(DataError, match=r"wide\.npz: has 8 features but the training data \(.*a\.npz\) has 4"):
        load_dataset(str(tmp_path / "a.npz"), test=str(tmp_path / "wide.npz"))
    np.savez(tmp_path / "new.npz", X=X[:12], y=y[:12] + 5)
    with pytest.raises(DataError, match=r"new\.npz: label\(s\) \[5, 6, 7\] do not occur in the training data"):
        load_dataset(str(tmp_path / "a.npz"), val=str(tmp_path / "new.npz"))
    np.savez(tmp_path / "names.npz", X=X[:12], y=np.array(["0", "1", "2"])[y[:12]])
    with pytest.raises(DataError, match=r"names\.npz: labels are strings but the training labels .* are integers"):
        load_dataset(str(tmp_path / "a.npz"), test=str(tmp_path / "names.npz"))
    np.savez(tmp_path / "nan.npz", X=np.where(X[:12] > 1, np.nan, X[:12]), y=y[:12])
    with pytest.raises(DataError, match=r"nan\.npz: features contain NaN"):
        load_dataset(str(tmp_path / "a.npz"), test=str(tmp_path / "nan.npz"))
    with pytest.raises(DataError, match=r"missing\.npz' does not exist"):
        load_dataset(str(tmp_path / "a.npz"), test=str(tmp_path / "missing.npz"))
    train = pd.DataFrame(X, columns=list("abcd")).assign(label=y)
    train.to_csv(tmp_path / "a.csv", index=False)
    train[["b", "a", "c", "d", "label"]].to_csv(tmp_path / "swapped.csv", index=False)
    with pytest.raises(DataError, match=r"swapped\.csv: feature columns differ .*\('b', 'a'\), \('a', 'b'\)"):
        load_dataset(str(tmp_path / "a.csv"), test=str(tmp_path / "swapped.csv"))
    pd.DataFrame(X[:12], columns=list("abcd")).to_csv(tmp_path / "nolabel.csv", index=False)
    with pytest.raises(DataError, match=r"nolabel\.csv: no label column 'label'"):
        load_dataset(str(tmp_path / "a.csv"), test=str(tmp_path / "nolabel.csv"))


def test_bad_labels_and_fractions_name_the_problem(tmp_path: Path) -> None:
    X, y = _blobs(30, 0)
    pd.DataFrame({"a": X[:, 0], "label": np.where(y == 1, None, y.astype(str))}).to_csv(tmp_path / "gap.csv", index=False)
    with pytest.raises(DataError, match=r"gap\.csv: label column 'label' is empty in rows \[1, 4, 7"):
        load_dataset(str(tmp_path / "gap.csv"))
    with pytest.raises(DataError, match="labels mix integers and strings"):
        from_arrays(X, np.array([1, "a", 2] * 10, dtype=object))
    with pytest.raises(DataError, match="label None in row 0 is not an integer or a string"):
        from_arrays(X, np.array([None, 1, 2] * 10, dtype=object))
    with pytest.raises(DataError, match=r"only one class \('x'\)"):
        from_arrays(X, np.array(["x"] * 30))
    with pytest.raises(DataError, match=r"class 'rare' has 1 sample\(s\)"):
        from_arrays(X, np.array(["rare"] + ["common"] * 29), val=0.2)
    with pytest.raises(
        DataError, match=r"digits: val must be a fraction with 0 < val < 1 or a file \(\.npz, \.csv, \.parquet\), got 0"
    ):
        load_dataset("digits", val=0)
    with pytest.raises(DataError, match="test must be a fraction with 0 <= test < 1 or a file"):
        load_dataset("digits", test=1.5)


def test_cli_takes_split_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import trainers.__main__ as cli

    X, y = _blobs(60, 0)
    Xt, yt = _blobs(15, 1)
    np.savez(tmp_path / "a.npz", X=X, y=np.array(["p", "q", "r"])[y])
    np.savez(tmp_path / "b.npz", X=Xt, y=np.array(["p", "q", "r"])[yt])
    common = ["--dataset", str(tmp_path / "a.npz"), "--epochs", "1", "--depth", "0"]
    assert cli.main([*common, "--test", str(tmp_path / "b.npz")]) == 0
    out = capsys.readouterr().out
    assert "train 48 / val 12 / test 15; labels 'p'=0, 'q'=1, 'r'=2" in out and "test (weights of epoch 1)" in out
    assert cli.main([*common, "--val", str(tmp_path / "b.npz"), "--test", "0.25"]) == 0
    assert "train 45 / val 15 / test 15" in capsys.readouterr().out
    assert cli.main(["--dataset", "mnist1d", "--test", "0.2"]) == 2
    assert "error: mnist1d: has its official test split (1000 examples)" in capsys.readouterr().err
