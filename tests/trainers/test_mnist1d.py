"""The built-in `mnist1d`: the package's make_dataset() with its defaults, its official
4000/1000 split, validation carved from the 4000 only, generated once per process."""

from __future__ import annotations

import random

import numpy as np
import pytest
from mnist1d.data import make_dataset

from trainers import DataError, TrainConfig, load_dataset, train
from trainers.data import mnist1d


@pytest.fixture(scope="module")
def reference() -> dict:
    """What the package itself makes with its default arguments (the paper's dataset)."""
    return make_dataset()


def _unstandardize(d, ref: dict) -> tuple[np.ndarray, float]:
    """Recover the per-feature affine map ``X = (x - mean) / std`` from the test split (the
    official test rows in order), apply its inverse to train and val; returns the raw rows of
    train+val and the largest error of the map on the test rows."""
    x_test = ref["x_test"]
    std = x_test.std(axis=0) / d.X_test.std(axis=0)
    mean = x_test.mean(axis=0) - std * d.X_test.mean(axis=0)
    err = float(np.abs(d.X_test * std + mean - x_test).max())
    return np.concatenate([d.X_train, d.X_val]) * std + mean, err


def test_split_is_the_official_one_and_val_is_carved_from_the_4000(reference: dict) -> None:
    d = load_dataset("mnist1d", val=0.2, seed=0)
    assert (d.n_features, d.n_classes, d.classes) == (40, 10, tuple(range(10)))
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (3200, 800, 1000)
    np.testing.assert_array_equal(d.y_test, reference["y_test"])  # exactly the official test set, in order
    train_val = np.concatenate([d.y_train, d.y_val])
    np.testing.assert_array_equal(np.bincount(train_val, minlength=10), np.bincount(reference["y"], minlength=10))
    # stratified: every class gives round(0.2 * its count) rows to val
    np.testing.assert_array_equal(np.bincount(d.y_val, minlength=10), np.round(0.2 * np.bincount(reference["y"])).astype(int))
    # the features: test rows are the official ones, train+val rows are exactly the official 4000
    raw, err = _unstandardize(d, reference)
    assert err < 1e-4
    x = reference["x"]
    dist = (raw**2).sum(axis=1)[:, None] + (x**2).sum(axis=1)[None, :] - 2 * raw @ x.T  # squared distances
    nearest = dist.argmin(axis=1)
    assert dist[np.arange(len(raw)), nearest].max() < 1e-6
    assert len(np.unique(nearest)) == 4000  # a permutation of the 4000: no test row leaked in
    np.testing.assert_array_equal(train_val, reference["y"][nearest])  # labels travel with their rows


def test_standardized_with_training_statistics_only() -> None:
    d = load_dataset("mnist1d", seed=1)
    np.testing.assert_allclose(d.X_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(d.X_train.std(axis=0), 1, atol=1e-4)
    assert np.abs(d.X_test.mean(axis=0)).max() > 1e-3


def test_deterministic_and_the_seed_only_moves_the_validation_split() -> None:
    a, b, c = load_dataset("mnist1d", seed=3), load_dataset("mnist1d", seed=3), load_dataset("mnist1d", seed=4)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_val, b.y_val)
    assert not np.array_equal(a.X_val, c.X_val)
    np.testing.assert_array_equal(np.sort(a.y_test), np.sort(c.y_test))
    smaller = load_dataset("mnist1d", val=0.1)
    n_val = int(np.round(0.1 * np.bincount(a.y_train) + 0.1 * np.bincount(a.y_val)).sum())  # per class, rounded
    assert (len(smaller.y_train), len(smaller.y_val), len(smaller.y_test)) == (4000 - n_val, n_val, 1000)


def test_generated_once_per_process_and_global_random_state_untouched() -> None:
    mnist1d.official.cache_clear()
    np.random.seed(123)
    random.seed(123)
    expected = (np.random.rand(), random.random())
    np.random.seed(123)
    random.seed(123)
    load_dataset("mnist1d")  # make_dataset() calls np.random.seed(42) and random.seed(42)
    assert (np.random.rand(), random.random()) == expected
    load_dataset("mnist1d", seed=5)
    info = mnist1d.official.cache_info()
    assert (info.misses, info.hits) == (1, 1)
    X_train = mnist1d.official()[0]
    with pytest.raises(ValueError, match="read-only"):
        X_train[0, 0] = 1.0


def test_takes_no_other_test_split_and_no_generator_arguments(tmp_path) -> None:
    with pytest.raises(DataError, match="mnist1d: has its official test split \\(1000 examples\\)"):
        load_dataset("mnist1d", test=0.2)
    np.savez(tmp_path / "t.npz", X=np.zeros((10, 40)), y=np.arange(10))
    with pytest.raises(DataError, match="official test split"):
        load_dataset("mnist1d", test=str(tmp_path / "t.npz"))
    with pytest.raises(DataError, match="mnist1d takes no generator arguments, got \\['num_samples'\\]"):
        load_dataset("mnist1d", num_samples=100)


def test_logistic_regression_lands_near_the_papers_32_percent() -> None:
    """The paper: logistic regression 32% test accuracy. Labels detached from their signals
    would give 10%, so this checks that X and y belong together."""
    d = load_dataset("mnist1d")
    r = train(TrainConfig(depth=0, optimizer="adam", lr=1e-2, epochs=20, batch_size=64), d)
    assert r.test_acc is not None and 0.27 < r.test_acc < 0.37
