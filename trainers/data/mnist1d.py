"""MNIST-1D (Greydanus 2020, "Scaling down deep learning", arXiv:2011.14439), generated offline.

The `mnist1d` package's ``make_dataset()`` with its default arguments (5000 signals of
length 40, 10 classes, seed 42) gives the official split: the first 4000 examples train,
the last 1000 test. The paper's test accuracies: logistic regression 32%, MLP 68%, CNN 94%,
GRU 91%. Its downloading ``get_dataset`` (a pickle from GitHub) is never used.

Generating takes about a second (plus about as long to import the package, which imports
matplotlib); the arrays are cached for the life of the process, read-only, and
``make_dataset``'s reseeding of NumPy's and Python's global random generators is undone.
"""

from __future__ import annotations

import functools
import random

import numpy as np

from trainers.data.dataset import DataError

N_TRAIN, N_TEST = 4000, 1000


@functools.cache
def official() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(X_train, y_train, X_test, y_test)`` of the official 4000/1000 split (read-only arrays)."""
    try:
        from mnist1d.data import make_dataset
    except ImportError as e:
        raise DataError(f"mnist1d: the `mnist1d` package is needed to generate it ({e}); pip install mnist1d") from None
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset()  # default arguments: the paper's dataset
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    arrays = (np.asarray(d["x"]), np.asarray(d["y"], np.int64), np.asarray(d["x_test"]), np.asarray(d["y_test"], np.int64))
    if (len(arrays[1]), len(arrays[3])) != (N_TRAIN, N_TEST):
        raise DataError(
            f"mnist1d: expected the official {N_TRAIN}/{N_TEST} split, the package made {len(arrays[1])}/{len(arrays[3])}"
        )
    for a in arrays:
        a.setflags(write=False)
    return arrays
