"""What a training backend is: the part of a run that owns a model, its optimizer and the
data, one epoch at a time. `trainers.loop` drives any backend (epochs, schedules, early
stopping, divergence, records), so every backend means the same by every option.

Implemented by `trainers.numpy_mlp.trainer.NumpyBackend` and `trainers.torch_mlp.TorchBackend`.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from trainers.config import TrainConfig
from trainers.data import Dataset

BACKENDS = ("numpy", "torch")


class Backend(Protocol):
    """One model being trained. ``name`` is the backend's name; ``n_params`` its size."""

    name: str
    n_params: int

    def fit_epoch(self, order: np.ndarray, lr: float) -> tuple[float, bool, list[float]]:
        """One pass over the training rows in `order`, in mini-batches of ``batch_size``, at
        learning rate `lr`. Returns (mean batch loss, whether every loss was finite,
        per-layer weight-gradient norm averaged over the batches)."""
        ...

    def evaluate(self, split: str) -> tuple[float, float, float]:
        """(loss, accuracy, fraction of dead ReLU units) on ``train``, ``val`` or ``test``,
        in evaluation mode (no dropout)."""
        ...

    def weight_norms(self) -> list[float]:
        """Per-layer weight norm."""
        ...

    def sparsity(self) -> float:
        """Fraction of weights with ``|w| < 1e-3``."""
        ...

    def snapshot(self) -> Any:
        """A copy of the parameters (early stopping's ``restore_best``)."""
        ...

    def restore(self, snap: Any) -> None:
        """Put back a `snapshot`."""
        ...

    def finite_params(self) -> bool:
        """Whether every parameter is finite (divergence check)."""
        ...

    def weights(self) -> list[np.ndarray]:
        """Copies of the parameters as NumPy arrays, ``[W0, b0, W1, b1, ...]`` as in
        ``MLP.params`` (``W_i`` of shape (inputs, outputs): ``z = x @ W_i + b_i``)."""
        ...


def make_backend(
    config: TrainConfig, data: Dataset, backend: str = "numpy", device: str = "cpu", init_params: Any = None
) -> Backend:
    """The backend named `backend` for `config` on `data`."""
    if backend == "numpy":
        if device not in ("cpu", "auto"):
            raise ValueError(f"device must be cpu or auto for the numpy backend, got {device!r}")
        from trainers.numpy_mlp.trainer import NumpyBackend

        return NumpyBackend(config, data, init_params)
    if backend == "torch":
        from trainers.torch_mlp import TorchBackend

        return TorchBackend(config, data, device=device, init_params=init_params)
    raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
