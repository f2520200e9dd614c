"""Reading a user's data file: ``.npz`` (arrays ``X`` and ``y``, never pickle), ``.csv`` or
``.parquet`` (every column but the label column is a numeric feature)."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass

import numpy as np

from trainers.data.dataset import DataError

FILE_SUFFIXES = (".npz", ".csv", ".parquet")


@dataclass(frozen=True)
class Table:
    """Raw features and labels of one file; ``columns`` are the feature names of a table."""

    X: np.ndarray
    y: np.ndarray
    columns: tuple[str, ...] | None = None


def is_file_name(name: str) -> bool:
    """Whether `name` names a file (by its suffix or a path separator), not a built-in."""
    return name.lower().endswith(FILE_SUFFIXES) or os.path.sep in name or "/" in name


def read_file(path: str, label_column: str = "label", builtins: tuple[str, ...] = ()) -> Table:
    """Read `path`; every problem is a `DataError` naming the file."""
    if not os.path.isfile(path):
        hint = f" (a built-in name is one of {', '.join(builtins)})" if builtins else ""
        raise DataError(f"dataset file {path!r} does not exist{hint}")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npz":
        return _read_npz(path)
    if suffix in (".csv", ".parquet"):
        return _read_table(path, suffix, label_column)
    raise DataError(f"dataset {path!r}: unknown file type {suffix!r}; allowed: {', '.join(FILE_SUFFIXES)}")


def _read_npz(path: str) -> Table:
    if not zipfile.is_zipfile(path):  # np.load would try it as a pickle and say "pickled data"
        raise DataError(f"{path}: not a readable .npz file (not a zip archive of .npy arrays)")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("X", "y") if k not in z.files]
            if missing:
                raise DataError(f"{path}: missing array(s) {missing}; an .npz dataset needs arrays 'X' and 'y', found {z.files}")
            return Table(z["X"], z["y"])
    except DataError:
        raise
    except ValueError as e:  # object arrays need pickle, which we refuse
        raise DataError(f"{path}: cannot load without pickle ({e}); store numeric arrays 'X' and 'y'") from None
    except Exception as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None


def _read_table(path: str, suffix: str, label_column: str) -> Table:
    import pandas as pd

    try:
        df = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except Exception as e:
        raise DataError(f"{path}: not a readable {suffix} file ({e})") from None
    if label_column not in df.columns:
        raise DataError(f"{path}: no label column {label_column!r}; columns are {list(df.columns)} (set label_column)")
    labels = df[label_column]
    missing = labels.isna().to_numpy().nonzero()[0]
    if len(missing):
        raise DataError(f"{path}: label column {label_column!r} is empty in rows {missing[:5].tolist()}; every row needs a label")
    feats = df.drop(columns=[label_column])
    bad = [c for c in feats.columns if not pd.api.types.is_numeric_dtype(feats[c]) or pd.api.types.is_bool_dtype(feats[c])]
    if bad:
        raise DataError(f"{path}: feature column(s) {bad} are not numeric; every column but {label_column!r} must be")
    y = labels.to_numpy(dtype=object) if not pd.api.types.is_numeric_dtype(labels) else labels.to_numpy()
    return Table(feats.to_numpy(dtype=np.float64), y, tuple(str(c) for c in feats.columns))
