"""`load_dataset`: a built-in or a file for training, fractions or files for val and test,
checked against each other, split and standardized into a `Dataset`."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from trainers.data import generated, mnist1d
from trainers.data.dataset import DataError, Dataset
from trainers.data.files import FILE_SUFFIXES, Table, is_file_name, read_file
from trainers.data.labels import check_features, encode_labels
from trainers.data.split import split, standardizer

BUILTIN = ("digits", "gaussian_mixture", "spirals", "rings", "mnist1d")
#: Built-ins that come with their own (official) test split; they take no test fraction or file.
OFFICIAL_TEST = ("mnist1d",)
_GENERATORS: dict[str, Any] = {
    "gaussian_mixture": generated.gaussian_mixture,
    "spirals": generated.spirals,
    "rings": generated.rings,
}

#: A split given as a fraction of the training data or as a file of its own.
SplitArg = float | str | os.PathLike[str]


def load_dataset(
    name: str | os.PathLike[str],
    *,
    val: SplitArg = 0.2,
    test: SplitArg = 0.0,
    seed: int = 0,
    label_column: str = "label",
    **generator_args: Any,
) -> Dataset:
    """Load a built-in task or a file, check it, split it and standardize it.

    `val` and `test` are each either a fraction carved from `name` (stratified, seeded by
    `seed`; ``test=0`` carves none) or a file holding that split, e.g.
    ``load_dataset("train.npz", test="test.npz", val=0.2)``. Files must have the training
    data's features (count, and column names for tables); labels of any kind (integers,
    strings) map to classes ``0..K-1`` in the sorted order of the training data's labels
    (``Dataset.classes`` keeps the originals), and a val or test label that the training data
    lacks is an error. `mnist1d` always has its official 1000-example test split, so it takes
    no other test. Features are standardized with training-split statistics only."""
    name = os.fspath(name)
    table, own_test = _read_source(name, seed, label_column, generator_args)
    val_file, test_file = _file(val), _file(test)
    val_frac = 0.0 if val_file else _fraction(name, "val", val, positive=True)
    test_frac = 0.0 if test_file else _fraction(name, "test", test, positive=False)
    if own_test is not None and (test_file or test_frac):
        raise DataError(f"{name}: has its official test split ({len(own_test.y)} examples); give no test fraction or file for it")
    extra: dict[str, tuple[str, Table]] = {}
    if val_file:
        extra["val"] = (val_file, read_file(val_file, label_column))
    if test_file:
        extra["test"] = (test_file, read_file(test_file, label_column))
    elif own_test is not None:
        extra["test"] = (f"{name} (official test split)", own_test)
    return _assemble(name, table, val_frac, test_frac, seed, extra)


def from_arrays(X: Any, y: Any, *, name: str = "arrays", val: float = 0.2, test: float = 0.0, seed: int = 0) -> Dataset:
    """Check, split and standardize in-memory arrays (labels mapped as in `load_dataset`)."""
    val_frac = _fraction(name, "val", val, positive=True)
    test_frac = _fraction(name, "test", test, positive=False)
    return _assemble(name, Table(np.asarray(X), np.asarray(y)), val_frac, test_frac, seed, {})


def has_official_test(name: str | os.PathLike[str]) -> bool:
    """Whether `name` is a built-in with its own test split (which it always uses)."""
    return os.fspath(name) in OFFICIAL_TEST


def _read_source(name: str, seed: int, label_column: str, args: dict[str, Any]) -> tuple[Table, Table | None]:
    """The training data of `name`, and its official test split if it has one."""
    if name in _GENERATORS:
        try:
            X, y = _GENERATORS[name](seed=seed, **args)
        except DataError:
            raise
        except (TypeError, ValueError) as e:
            raise DataError(f"{name}: bad generator argument(s) {args} ({e})") from None
        return Table(X, y), None
    if name in ("digits", "mnist1d"):
        if args:
            raise DataError(f"{name} takes no generator arguments, got {sorted(args)}")
        if name == "digits":
            return Table(*generated.digits()), None
        X_tr, y_tr, X_te, y_te = mnist1d.official()
        return Table(X_tr, y_tr), Table(X_te, y_te)
    if is_file_name(name):
        if args:
            raise DataError(f"{name}: a file takes no generator arguments, got {sorted(args)}")
        return read_file(name, label_column, BUILTIN), None
    raise DataError(f"dataset {name!r} is neither a built-in ({', '.join(BUILTIN)}) nor a file ({', '.join(FILE_SUFFIXES)})")


def _assemble(name: str, table: Table, val: float, test: float, seed: int, extra: dict[str, tuple[str, Table]]) -> Dataset:
    y, classes = encode_labels(name, table.y)
    X = check_features(name, table.X, len(y))
    tr, va, te = split(X, y, val, test, seed, name, classes)
    parts = {"val": (X[va], y[va]), "test": (X[te], y[te])}
    for role, (source, other) in extra.items():
        y_other, _ = encode_labels(source, other.y, classes, reference=name)
        X_other = check_features(source, other.X, len(y_other))
        _same_features(source, other, X_other, name, table, X)
        parts[role] = (X_other, y_other)
    prep = standardizer(X[tr])
    (X_val, y_val), (X_test, y_test) = parts["val"], parts["test"]
    return Dataset(name, prep(X[tr]), y[tr], prep(X_val), y_val, prep(X_test), y_test, len(classes), tuple(classes.tolist()))


def _same_features(source: str, other: Table, X_other: np.ndarray, name: str, table: Table, X: np.ndarray) -> None:
    if X_other.shape[1] != X.shape[1]:
        raise DataError(
            f"{source}: has {X_other.shape[1]} features but the training data ({name}) has {X.shape[1]}; "
            "every split must have the same feature columns"
        )
    if other.columns is not None and table.columns is not None and other.columns != table.columns:
        diff = [(a, b) for a, b in zip(other.columns, table.columns, strict=True) if a != b]
        raise DataError(
            f"{source}: feature columns differ from the training data's ({name}): {diff[:5]} (this file, training); "
            "every split must have the same columns in the same order"
        )


def _file(arg: SplitArg) -> str | None:
    """The path if `arg` names a file (a str or path), None for a fraction."""
    return os.fspath(arg) if isinstance(arg, (str, os.PathLike)) else None


def _fraction(name: str, role: str, value: Any, *, positive: bool) -> float:
    low = "0 <" if positive else "0 <="
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < 1 if positive else 0 <= value < 1):
        raise DataError(
            f"{name}: {role} must be a fraction with {low} {role} < 1 or a file ({', '.join(FILE_SUFFIXES)}), got {value!r}"
        )
    return float(value)
