"""The `Dataset` every trainer consumes, and `DataError`, the one error for bad data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


class DataError(ValueError):
    """Bad dataset: the message names the source, the problem and what is allowed."""


@dataclass(frozen=True)
class Dataset:
    """Standardized float32 features and int64 class indices 0..K-1, split three ways.

    ``X_test``/``y_test`` are empty when there is no test split. ``classes[i]`` is the
    original label of class index ``i`` (labels are mapped to indices in sorted order, so
    labels ``["cat", "dog"]`` become 0 and 1); it defaults to ``(0, 1, ..., K-1)``."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    classes: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if not self.classes:
            object.__setattr__(self, "classes", tuple(range(self.n_classes)))
        elif len(self.classes) != self.n_classes:
            raise DataError(f"{self.name}: {len(self.classes)} class labels given for n_classes={self.n_classes}")

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    def summary(self) -> str:
        """One line: sizes of the splits, and the label of each class when they are not 0..K-1."""
        line = (
            f"{self.name}: {self.n_features} features, {self.n_classes} classes, "
            f"train {len(self.y_train)} / val {len(self.y_val)} / test {len(self.y_test)}"
        )
        if self.classes != tuple(range(self.n_classes)):
            shown = ", ".join(f"{c!r}={i}" for i, c in enumerate(self.classes[:10]))
            line += f"; labels {shown}{', ...' if self.n_classes > 10 else ''}"
        return line
