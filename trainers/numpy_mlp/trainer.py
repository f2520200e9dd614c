"""The NumPy backend of the training loop: an `MLP`, its optimizer and the data, one epoch
at a time. The loop in `trainers.loop` drives it; the torch backend has the same methods."""

from __future__ import annotations

import math

import numpy as np

from trainers.backend import mlp_weight_names
from trainers.config import TrainConfig
from trainers.data import Dataset
from trainers.numpy_mlp.mlp import MLP
from trainers.numpy_mlp.optimizers import make_optimizer


class NumpyBackend:
    """Trains `MLP` on `data` with the optimizer and clipping `config` names."""

    name = "numpy"

    def __init__(self, config: TrainConfig, data: Dataset, init_params: list[np.ndarray] | None = None) -> None:
        self.config = config
        self.data = data
        self.net = MLP(config, data.n_features, data.n_classes)
        if init_params is not None:
            for p, v in zip(self.net.params, init_params, strict=True):
                p[...] = v
        self.opt = make_optimizer(config, self.net.n_params, self.net.n_weights, self.net.dtype)
        self.n_params = self.net.n_params
        self.n_layers = self.net.n_layers

    def fit_epoch(self, order: np.ndarray, lr: float) -> tuple[float, bool, list[float]]:
        """One pass over the training rows in `order`, in mini-batches.

        Returns (mean batch loss, whether every loss was finite, per-layer weight-gradient
        norm averaged over the batches). Stops at the first non-finite loss."""
        net, opt, bs = self.net, self.opt, self.config.batch_size
        X = self.data.X_train[order]
        y = self.data.y_train[order]
        clip = self.config.max_grad_norm
        g = net.grad_flat
        total, count = 0.0, 0
        norms = [0.0] * net.n_layers
        finite = True
        for s in range(0, len(y), bs):
            loss = net.step_grads(X[s : s + bs], y[s : s + bs])
            if not math.isfinite(loss):
                finite = False
                break
            norms = [a + b for a, b in zip(norms, net.grad_norms(), strict=True)]
            if clip is not None:
                total_norm = math.sqrt(float(np.dot(g, g)))
                if total_norm > clip:
                    g *= clip / (total_norm + 1e-6)
            opt.step(net.flat, g, lr)
            total += loss
            count += 1
        if count == 0:  # the first batch already diverged
            return math.nan, finite, [math.nan] * net.n_layers
        return total / count, finite, [v / count for v in norms]

    def evaluate(self, split: str) -> tuple[float, float, float]:
        X = getattr(self.data, f"X_{split}")
        y = getattr(self.data, f"y_{split}")
        return self.net.evaluate(X, y)

    def weight_norms(self) -> list[float]:
        return self.net.weight_norms()

    def sparsity(self) -> float:
        return self.net.sparsity()

    def snapshot(self) -> np.ndarray:
        return self.net.flat.copy()

    def restore(self, snap: np.ndarray) -> None:
        self.net.flat[...] = snap

    def finite_params(self) -> bool:
        return bool(np.isfinite(self.net.flat).all())

    def param_arrays(self) -> dict[str, np.ndarray]:
        return dict(zip(mlp_weight_names(len(self.net.params)), (p.copy() for p in self.net.params), strict=True))
