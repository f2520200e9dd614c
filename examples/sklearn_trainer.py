"""A user trainer function for hpstudy: scikit-learn's SGDClassifier, one epoch per
``partial_fit`` pass over the shuffled training rows, metrics yielded after every epoch so
that the study's pruner can stop a poor trial early.

Spec: ``trainer: sklearn_trainer.py:trial`` (see sklearn.yaml next to this file). ``params``
holds every sampled and fixed value of the trial (here ``alpha``, ``eta0``, ``penalty``,
``epochs``, ``seed``); ``data`` is a `trainers.Dataset` (standardized float32 features).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import log_loss


def trial(params: dict[str, Any], data: Any) -> Iterator[dict[str, float]]:
    """Logistic regression by SGD; yields train/val loss and accuracy per epoch."""
    seed = int(params.get("seed", 0))
    clf = SGDClassifier(
        loss="log_loss",
        penalty=params.get("penalty", "l2"),
        alpha=float(params.get("alpha", 1e-4)),
        learning_rate="constant",
        eta0=float(params.get("eta0", 0.01)),
        random_state=seed,
    )
    classes = np.arange(data.n_classes)
    rng = np.random.default_rng(seed)
    for _ in range(int(params.get("epochs", 20))):
        order = rng.permutation(len(data.y_train))
        clf.partial_fit(data.X_train[order], data.y_train[order], classes=classes)
        out = {}
        for split in ("train", "val"):
            X, y = getattr(data, f"X_{split}"), getattr(data, f"y_{split}")
            p = clf.predict_proba(X)
            out[f"{split}_loss"] = log_loss(y, p, labels=classes)
            out[f"{split}_acc"] = float((p.argmax(axis=1) == y).mean())
        yield out
