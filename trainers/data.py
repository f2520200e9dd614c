"""Datasets: built-in and generated tasks, users' own files, and the train/val/test split.

Nothing is downloaded. Built-in names:

- ``digits``: 8x8 handwritten digits shipped with scikit-learn (1797 x 64, 10 classes).
- ``gaussian_mixture``: Gaussian clusters, several per class, with ``label_noise`` (a
  fraction of labels replaced at random) so that overfitting is visible.
- ``spirals``: two interleaved spirals in 2-D (``noise`` sets the jitter).
- ``rings``: Gaussian inputs labelled by the parity of the radial band that ``||x||^2``
  falls in (bands at quantiles, so classes balance). A composition: squares of every
  coordinate, their sum, then an oscillating function of it; in the spirit of Eldan &
  Shamir's depth separation (2016), a deep net computes it layer by layer while a
  one-hidden-layer net needs far more units. Depth genuinely helps at an equal parameter
  count (8 dims, 4 bands, ~600 parameters, 40 epochs of Adam: about 0.62 validation accuracy
  at depth 1 against 0.83 at depth 4; `tests/trainers/test_lessons.py` checks it).

Files: ``.npz`` with arrays ``X`` and ``y`` (loaded with ``allow_pickle=False``), ``.csv``
and ``.parquet`` with a label column (``label_column``, default ``label``).

The split is stratified and seeded; features are standardized with statistics of the
training split only. Every problem with the data is a `DataError` naming the file or
dataset, what is wrong and what is allowed.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

BUILTIN = ("digits", "gaussian_mixture", "spirals", "rings")
FILE_SUFFIXES = (".npz", ".csv", ".parquet")


class DataError(ValueError):
    """Bad dataset: the message names the source, the problem and what is allowed."""


@dataclass(frozen=True)
class Dataset:
    """Standardized float32 features and int64 labels 0..K-1, split three ways.

    ``X_test``/``y_test`` are empty when no test split was asked for."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    def summary(self) -> str:
        return (
            f"{self.name}: {self.n_features} features, {self.n_classes} classes, "
            f"train {len(self.y_train)} / val {len(self.y_val)} / test {len(self.y_test)}"
        )


# -- generated tasks (deterministic by seed) ----------------------------------------------
def gaussian_mixture(
    n_samples: int = 2000,
    n_features: int = 20,
    n_classes: int = 4,
    clusters_per_class: int = 2,
    separation: float = 2.0,
    label_noise: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Clusters with unit covariance around random centres; `label_noise` of the labels are
    replaced by a uniformly random class."""
    if not 0 <= label_noise <= 1:
        raise DataError(f"gaussian_mixture: label_noise must be in [0, 1], got {label_noise!r}")
    rng = np.random.default_rng(seed)
    k = n_classes * clusters_per_class
    centres = rng.normal(0, separation, (k, n_features))
    cluster = rng.integers(0, k, n_samples)
    X = centres[cluster] + rng.normal(0, 1, (n_samples, n_features))
    y = cluster % n_classes
    flip = rng.random(n_samples) < label_noise
    y[flip] = rng.integers(0, n_classes, int(flip.sum()))
    return X, y


def spirals(n_samples: int = 1000, noise: float = 0.2, turns: float = 1.75, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals, half the samples each."""
    rng = np.random.default_rng(seed)
    n = n_samples // 2
    t = np.sqrt(rng.random(n)) * turns * 2 * np.pi
    arm = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / (turns * 2 * np.pi)
    X = np.concatenate([arm, -arm]) * 3 + rng.normal(0, noise, (2 * n, 2))
    y = np.concatenate([np.zeros(n, np.int64), np.ones(n, np.int64)])
    return X, y


def rings(n_samples: int = 8000, n_features: int = 8, bands: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Label = parity of the index of the radial band containing ``||x||^2``, with band
    edges at the quantiles of ``||x||^2`` so that the classes balance."""
    if bands < 2 or n_features < 1:
        raise DataError(f"rings: bands must be >= 2 and n_features >= 1, got bands={bands!r}, n_features={n_features!r}")
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 1, (n_samples, n_features))
    r2 = np.square(X).sum(axis=1)
    edges = np.quantile(r2, np.linspace(0, 1, bands + 1)[1:-1])
    return X, np.searchsorted(edges, r2) % 2


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data, d.target


_GENERATORS: dict[str, Any] = {
    "gaussian_mixture": gaussian_mixture,
    "spirals": spirals,
    "rings": rings,
}


# -- files ---------------------------------------------------------------------------------
def _read_file(path: str, label_column: str) -> tuple[np.ndarray, np.ndarray]:
    if not os.path.isfile(path):
        raise DataError(f"dataset file {path!r} does not exist (a built-in name is one of {', '.join(BUILTIN)})")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npz":
        if not zipfile.is_zipfile(path):  # np.load would try it as a pickle and say "pickled data"
            raise DataError(f"{path}: not a readable .npz file (not a zip archive of .npy arrays)")
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [k for k in ("X", "y") if k not in z.files]
                if missing:
                    raise DataError(
                        f"{path}: missing array(s) {missing}; an .npz dataset needs arrays 'X' and 'y', found {z.files}"
                    )
                return z["X"], z["y"]
        except DataError:
            raise
        except ValueError as e:  # object arrays need pickle, which we refuse
            raise DataError(f"{path}: cannot load without pickle ({e}); store numeric arrays 'X' and 'y'") from None
        except Exception as e:
            raise DataError(f"{path}: not a readable .npz file ({e})") from None
    if suffix in (".csv", ".parquet"):
        import pandas as pd

        try:
            df = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
        except Exception as e:
            raise DataError(f"{path}: not a readable {suffix} file ({e})") from None
        if label_column not in df.columns:
            raise DataError(f"{path}: no label column {label_column!r}; columns are {list(df.columns)} (set label_column)")
        feats = df.drop(columns=[label_column])
        bad = [c for c in feats.columns if not pd.api.types.is_numeric_dtype(feats[c]) or pd.api.types.is_bool_dtype(feats[c])]
        if bad:
            raise DataError(f"{path}: feature column(s) {bad} are not numeric; every column but {label_column!r} must be")
        return feats.to_numpy(dtype=np.float64), df[label_column].to_numpy()
    raise DataError(f"dataset {path!r}: unknown file type {suffix!r}; allowed: {', '.join(FILE_SUFFIXES)}")


def _check(source: str, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray, int]:
    X = np.asarray(X)
    y = np.asarray(y)
    if X.dtype.kind not in "biuf":
        raise DataError(f"{source}: features must be numeric, got dtype {X.dtype}")
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{source}: X must be a non-empty 2-D array (samples x features), got shape {X.shape}")
    if y.ndim != 1:
        raise DataError(f"{source}: y must be a 1-D array of labels, got shape {y.shape}")
    if len(X) != len(y):
        raise DataError(f"{source}: X has {len(X)} rows but y has {len(y)} labels")
    X = X.astype(np.float64)
    if not np.isfinite(X).all():
        rows = np.flatnonzero(~np.isfinite(X).all(axis=1))
        raise DataError(f"{source}: features contain NaN or inf (rows {rows[:5].tolist()}...); clean or impute them first")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or (y != np.round(y)).any():
            raise DataError(f"{source}: labels must be integers 0..K-1, found non-integer values")
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise DataError(f"{source}: labels must be integers 0..K-1, got dtype {y.dtype}")
    y = y.astype(np.int64)
    classes = np.unique(y)
    if classes[0] < 0:
        raise DataError(f"{source}: labels must be integers 0..K-1, found {int(classes[0])}")
    k = int(classes[-1]) + 1
    if len(classes) < 2:
        raise DataError(f"{source}: only one class ({int(classes[0])}) in the labels; classification needs at least 2")
    if len(classes) != k:
        missing = sorted(set(range(k)) - set(classes.tolist()))
        raise DataError(f"{source}: labels must be integers 0..K-1 with every class present; missing {missing[:10]}")
    return X, y, k


def split(
    X: np.ndarray, y: np.ndarray, val: float, test: float, seed: int, source: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified index split: every class contributes ``round(frac * n_class)`` rows (at
    least one when the fraction is positive) to val and test, the rest to train."""
    if not 0 < val < 1 or not 0 <= test < 1 or val + test >= 1:
        raise DataError(
            f"{source}: split fractions must satisfy 0 < val < 1, 0 <= test < 1, val + test < 1; got val={val}, test={test}"
        )
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_val = max(1, round(val * len(idx)))
        n_test = max(1, round(test * len(idx))) if test > 0 else 0
        if len(idx) - n_val - n_test < 1:
            raise DataError(
                f"{source}: class {int(c)} has {len(idx)} sample(s); the split (val={val}, test={test}) takes "
                f"{n_val} + {n_test} of them and leaves none for training; give more samples or smaller fractions"
            )
        parts[1].append(idx[:n_val])
        parts[2].append(idx[n_val : n_val + n_test])
        parts[0].append(idx[n_val + n_test :])
    out = [rng.permutation(np.concatenate(p)) for p in parts]
    return out[0], out[1], out[2]


def load_dataset(
    name: str,
    *,
    val: float = 0.2,
    test: float = 0.0,
    seed: int = 0,
    label_column: str = "label",
    **generator_args: Any,
) -> Dataset:
    """Load a built-in task or a file, check it, split it and standardize it."""
    if name in _GENERATORS:
        try:
            X, y = _GENERATORS[name](seed=seed, **generator_args)
        except DataError:
            raise
        except (TypeError, ValueError) as e:
            raise DataError(f"{name}: bad generator argument(s) {generator_args} ({e})") from None
    elif name == "digits":
        if generator_args:
            raise DataError(f"digits takes no generator arguments, got {sorted(generator_args)}")
        X, y = _digits()
    elif name.lower().endswith(FILE_SUFFIXES) or os.path.sep in name:
        X, y = _read_file(name, label_column)
    else:
        raise DataError(f"dataset {name!r} is neither a built-in ({', '.join(BUILTIN)}) nor a file ({', '.join(FILE_SUFFIXES)})")
    return from_arrays(X, y, name=name, val=val, test=test, seed=seed)


def from_arrays(X: Any, y: Any, *, name: str = "arrays", val: float = 0.2, test: float = 0.0, seed: int = 0) -> Dataset:
    """Check, split and standardize in-memory arrays."""
    X, y, k = _check(name, X, y)
    tr, va, te = split(X, y, val, test, seed, name)
    mean = X[tr].mean(axis=0)
    std = X[tr].std(axis=0)
    std[std == 0] = 1.0

    def prep(idx: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray((X[idx] - mean) / std, dtype=np.float32)

    return Dataset(name, prep(tr), y[tr], prep(va), y[va], prep(te), y[te], k)
