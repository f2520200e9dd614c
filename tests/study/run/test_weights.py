"""The best trial's weights file: with ``keep_weights=True`` a run returns the weights it
kept (the best epoch's with ``restore_best``), by name; as a file (`study.run.worker`) they
round-trip without pickle and, loaded back as ``init_params``, reproduce that epoch's
validation loss, on both MLP backends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from study.run.worker import init_params, load_weights, weights_file
from trainers import TrainConfig, load_dataset, train
from trainers.backend import make_backend


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_kept_weights_reproduce_the_kept_epoch(backend: str, tmp_path: Path) -> None:
    data = load_dataset("gaussian_mixture", n_samples=300, n_features=6, n_classes=3)
    config = TrainConfig(depth=2, width=16, optimizer="adam", lr=0.05, epochs=12, patience=3, seed=4)
    result = train(config, data, backend=backend, keep_weights=True)
    assert result.weights is not None and list(result.weights) == ["W0", "b0", "W1", "b1", "W2", "b2"]
    assert result.weights["W0"].shape == (6, 16) and result.weights["b2"].shape == (3,)
    name, blob = weights_file(result.weights, backend)
    (tmp_path / name).write_bytes(blob)
    back = load_weights(tmp_path / name)
    assert all(np.array_equal(back[k], v) for k, v in result.weights.items())
    val_loss, _, _ = make_backend(config, data, backend, init_params=init_params(back)).evaluate("val")
    assert val_loss == pytest.approx(result.final["val_loss"], rel=1e-5)
    assert result.best is not None and result.final["val_loss"] == result.best.val_loss  # the best epoch's weights


def test_no_weights_unless_asked() -> None:
    data = load_dataset("gaussian_mixture", n_samples=120, n_features=4, n_classes=2)
    assert train(TrainConfig(depth=1, width=4, epochs=2), data).weights is None
