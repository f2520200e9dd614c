"""What a training backend is: the part of a run that owns a model, its optimizer and the
data, one epoch at a time. `trainers.loop` drives any backend (epochs, schedules, early
stopping, divergence, records), so every backend means the same by every option.

Implemented by `trainers.numpy_mlp.trainer.NumpyBackend` and `trainers.torch_mlp.TorchBackend`
(the built-in MLP: per-layer lists, metric keys ``grad_norm_0``, ...) and by
`trainers.torch_module.ModuleBackend` (a user's ``nn.Module``: per-parameter-tensor lists
named by its ``param_names`` attribute, metric keys ``grad_norm.conv1.weight``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
        per-layer (or per-parameter-tensor) weight-gradient norm averaged over the batches)."""
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

    def param_arrays(self) -> dict[str, np.ndarray]:
        """Copies of the parameters as NumPy arrays, by name: ``W0, b0, W1, b1, ...`` for the
        built-in MLP (in ``MLP.params`` order; ``W_i`` of shape (inputs, outputs): ``z = x @
        W_i + b_i``), the state dict's names for a user module."""
        ...


def mlp_weight_names(n: int) -> list[str]:
    """The names of the built-in MLP's `n` parameter arrays ``[W0, b0, W1, b1, ...]``."""
    return [f"{'W' if i % 2 == 0 else 'b'}{i // 2}" for i in range(n)]


def make_backend(
    config: TrainConfig,
    data: Dataset,
    backend: str = "numpy",
    device: str = "cpu",
    init_params: Any = None,
    threads: int | None = None,
    model: Callable[..., Any] | str | None = None,
    model_params: Mapping[str, Any] | None = None,
) -> Backend:
    """The backend named `backend` for `config` on `data`; `threads` sets torch's intra-op
    threads (the numpy backend's BLAS threads are limited around it by `trainers.loop`). With
    `model` (a factory ``build(n_inputs, n_classes, **model_params) -> nn.Module`` or a
    ``file.py:build`` / ``package.module:build`` reference) the torch backend trains that
    module instead of the MLP."""
    if model is not None:
        if backend != "torch":
            raise ValueError(f"a user model is trained by the torch backend; backend must be 'torch', got {backend!r}")
        from trainers.torch_module import ModuleBackend

        return ModuleBackend(config, data, model, model_params, device=device, init_params=init_params)
    if model_params:
        raise ValueError(f"model_params {sorted(model_params)} given without a model")
    if backend == "numpy":
        if device not in ("cpu", "auto"):
            raise ValueError(f"device must be cpu or auto for the numpy backend, got {device!r}")
        from trainers.numpy_mlp.trainer import NumpyBackend

        return NumpyBackend(config, data, init_params)
    if backend == "torch":
        from trainers.torch_mlp import TorchBackend

        return TorchBackend(config, data, device=device, init_params=init_params, threads=threads)
    raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
