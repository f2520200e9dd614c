"""Checking features and mapping label values to class indices.

Labels may be any integers, strings or booleans (integral floats, as CSV readers produce
for integer columns with a gap, count as integers). The distinct values, sorted, become
classes ``0..K-1``; the sorted values themselves are kept so that every class index has
its original label. Data checked against another split (a test file against the training
file) must use the training data's labels: an unseen label is an error, never a new class.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trainers.data.dataset import DataError

_KINDS = {"b": "booleans", "i": "integers", "u": "integers", "U": "strings"}


def check_features(source: str, X: Any, n_labels: int) -> np.ndarray:
    """`X` as a finite float64 matrix with one row per label."""
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise DataError(f"{source}: features must be numeric, got dtype {X.dtype}")
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{source}: X must be a non-empty 2-D array (samples x features), got shape {X.shape}")
    if len(X) != n_labels:
        raise DataError(f"{source}: X has {len(X)} rows but y has {n_labels} labels")
    X = X.astype(np.float64)
    if not np.isfinite(X).all():
        rows = np.flatnonzero(~np.isfinite(X).all(axis=1))
        raise DataError(f"{source}: features contain NaN or inf (rows {rows[:5].tolist()}...); clean or impute them first")
    return X


def label_values(source: str, y: Any) -> np.ndarray:
    """The labels as a 1-D array of int64, str or bool; anything else is a `DataError`."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{source}: y must be a 1-D array of labels, got shape {y.shape}")
    kind = y.dtype.kind
    if kind == "O":
        y = _from_objects(source, y)
        kind = y.dtype.kind
    if kind == "f":
        bad = np.flatnonzero(~np.isfinite(y))
        if len(bad):
            raise DataError(f"{source}: labels are missing (NaN) in rows {bad[:5].tolist()}; every row needs a label")
        if (y != np.round(y)).any():
            example = y[y != np.round(y)][0].item()
            raise DataError(
                f"{source}: labels must be class values (integers or strings), found the fraction {example!r}; "
                "a continuous target is not a classification label"
            )
        return y.astype(np.int64)
    if kind in "iu":
        return y.astype(np.int64)
    if kind in "bU":
        return y
    if kind == "S":
        return y.astype(str)
    raise DataError(f"{source}: labels must be integers, strings or booleans, got dtype {y.dtype}")


def _from_objects(source: str, y: np.ndarray) -> np.ndarray:
    types = {type(v) for v in y}
    if all(issubclass(t, str) for t in types):
        return y.astype(str)
    if all(issubclass(t, (int, np.integer)) and not issubclass(t, (bool, np.bool_)) for t in types):
        return y.astype(np.int64)
    for i, v in enumerate(y):
        if not isinstance(v, (str, int, np.integer)) or isinstance(v, (bool, np.bool_)):
            raise DataError(f"{source}: label {v!r} in row {i} is not an integer or a string; every row needs a class label")
    raise DataError(f"{source}: labels mix integers and strings; use one kind of label for every row")


def encode_labels(source: str, y: Any, classes: np.ndarray | None = None, reference: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Class indices ``0..K-1`` of the labels `y`, and the sorted label values (``classes``).

    Given `classes` (from the training data `reference`), every label must be one of them."""
    values = label_values(source, y)
    if classes is None:
        classes = np.unique(values)
        if len(classes) < 2:
            raise DataError(f"{source}: only one class ({classes[0].item()!r}) in the labels; classification needs at least 2")
        return np.searchsorted(classes, values).astype(np.int64), classes
    if _KINDS[values.dtype.kind] != _KINDS[classes.dtype.kind]:
        raise DataError(
            f"{source}: labels are {_KINDS[values.dtype.kind]} but the training labels ({reference}) are "
            f"{_KINDS[classes.dtype.kind]}; every split must use the same labels"
        )
    unseen = np.setdiff1d(values, classes)
    if len(unseen):
        raise DataError(
            f"{source}: label(s) {unseen[:10].tolist()} do not occur in the training data ({reference}), whose "
            f"labels are {_shown(classes)}; a class must be trained on to be validated or tested"
        )
    return np.searchsorted(classes, values).astype(np.int64), classes


def _shown(classes: np.ndarray) -> str:
    items = classes[:20].tolist()
    return f"{items}{' ...' if len(classes) > 20 else ''}"
