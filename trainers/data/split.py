"""The stratified, seeded split, and standardization with training statistics."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from trainers.data.dataset import DataError


def split(
    X: np.ndarray, y: np.ndarray, val: float, test: float, seed: int, source: str, classes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified index split: every class contributes ``round(frac * n_class)`` rows (at
    least one when the fraction is positive) to val and test, the rest to train. A zero
    fraction (that split comes from a file, or there is none) takes nothing. `classes` (the
    label of each class index) only names a class in an error."""
    if not 0 <= val < 1 or not 0 <= test < 1 or val + test >= 1:
        raise DataError(
            f"{source}: split fractions must satisfy 0 < val < 1, 0 <= test < 1, val + test < 1; got val={val}, test={test}"
        )
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_val = max(1, round(val * len(idx))) if val > 0 else 0
        n_test = max(1, round(test * len(idx))) if test > 0 else 0
        if len(idx) - n_val - n_test < 1:
            raise DataError(
                f"{source}: class {int(c) if classes is None else classes[c].item()!r} has {len(idx)} sample(s); the split (val={val}, test={test}) takes "
                f"{n_val} + {n_test} of them and leaves none for training; give more samples or smaller fractions"
            )
        parts[1].append(idx[:n_val])
        parts[2].append(idx[n_val : n_val + n_test])
        parts[0].append(idx[n_val + n_test :])
    out = [rng.permutation(np.concatenate(p)) for p in parts]
    return out[0], out[1], out[2]


def standardizer(X_train: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``x -> (x - mean) / std`` with the training split's statistics (a constant feature
    keeps std 1), as contiguous float32."""
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    std[std == 0] = 1.0

    def apply(X: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray((X - mean) / std, dtype=np.float32)

    return apply
