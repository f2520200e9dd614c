"""Optimizers on one flat parameter vector, updated in place.

Each optimizer is a configuration of a general rule, written as ``torch.optim`` writes it
so the two can be stepped side by side. ``g`` is the gradient (penalties included, clipped
if asked), ``lr`` the current rate, ``t`` the step count from 1:

- sgd:       ``w -= lr * g``
- momentum:  ``b = mu * b + g;  w -= lr * b``          (``torch.optim.SGD(momentum=mu)``)
- nesterov:  ``b = mu * b + g;  w -= lr * (g + mu * b)`` (``nesterov=True``)
- adagrad:   ``s += g^2;  w -= lr * g / (sqrt(s) + eps)``
- rmsprop:   ``s = rho * s + (1 - rho) g^2;  w -= lr * g / (sqrt(s) + eps)``
- adam(w):   ``m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
             w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``

Decoupled weight decay, for every optimizer, comes first and touches weights only (the
first ``n_weights`` entries of the vector): ``w <- (1 - lr * wd) * w``. With ``adam`` this
is exactly ``torch.optim.AdamW``; with ``sgd`` it is the lecture's ``w = 0.99 w - lr * g``
for ``lr * wd = 0.01`` (torch's SGD ``weight_decay`` is the coupled L2 penalty instead,
our ``l2``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg.blas import get_blas_funcs

from trainers.config import TrainConfig


class Optimizer:
    """Base: ``step(w, g, lr)`` updates the flat vector `w` in place from gradient `g`.

    Implementations keep their state in arrays of `w`'s shape and dtype and must not keep
    a reference to `g` between steps (the caller reuses its buffer).
    """

    def __init__(self, config: TrainConfig, size: int, n_weights: int, dtype: np.dtype) -> None:
        self.config = config
        self.n_weights = n_weights
        self.wd = float(config.weight_decay or 0.0)
        self.t = 0
        self._tmp = np.empty(size, dtype)

    def step(self, w: np.ndarray, g: np.ndarray, lr: float) -> None:
        self.t += 1
        if self.wd:
            w[: self.n_weights] *= 1.0 - lr * self.wd
        self._update(w, g, lr)

    def _update(self, w: np.ndarray, g: np.ndarray, lr: float) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Plain SGD; ``mu > 0`` adds heavy-ball momentum, ``nesterov`` the look-ahead form.

    The updates are BLAS ``axpy``/``scal`` calls on the flat vectors: one pass each, no
    temporaries (about a third faster than the equivalent NumPy expressions)."""

    def __init__(self, config: TrainConfig, size: int, n_weights: int, dtype: np.dtype) -> None:
        super().__init__(config, size, n_weights, dtype)
        self.mu = 0.0 if config.optimizer == "sgd" else config.momentum
        self.nesterov = config.optimizer == "nesterov"
        self.buf = np.zeros(size, dtype) if self.mu else None
        self.axpy, self.scal = get_blas_funcs(("axpy", "scal"), (self._tmp,))

    def _update(self, w: np.ndarray, g: np.ndarray, lr: float) -> None:
        if self.buf is None:
            self.axpy(g, w, a=-lr)  # w -= lr * g
            return
        self.scal(self.mu, self.buf)  # b = mu * b + g
        self.axpy(g, self.buf)
        if self.nesterov:
            self.axpy(g, w, a=-lr)  # w -= lr * (g + mu * b)
            self.axpy(self.buf, w, a=-lr * self.mu)
        else:
            self.axpy(self.buf, w, a=-lr)  # w -= lr * b


class Adagrad(Optimizer):
    def __init__(self, config: TrainConfig, size: int, n_weights: int, dtype: np.dtype) -> None:
        super().__init__(config, size, n_weights, dtype)
        self.sum = np.zeros(size, dtype)

    def _update(self, w: np.ndarray, g: np.ndarray, lr: float) -> None:
        tmp = self._tmp
        np.multiply(g, g, out=tmp)
        self.sum += tmp
        np.sqrt(self.sum, out=tmp)
        tmp += self.config.eps
        np.divide(g, tmp, out=tmp)
        tmp *= lr
        w -= tmp


class RMSProp(Optimizer):
    def __init__(self, config: TrainConfig, size: int, n_weights: int, dtype: np.dtype) -> None:
        super().__init__(config, size, n_weights, dtype)
        self.avg = np.zeros(size, dtype)
        self.rho = config.rho

    def _update(self, w: np.ndarray, g: np.ndarray, lr: float) -> None:
        tmp = self._tmp
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - self.rho
        self.avg *= self.rho
        self.avg += tmp
        np.sqrt(self.avg, out=tmp)
        tmp += self.config.eps
        np.divide(g, tmp, out=tmp)
        tmp *= lr
        w -= tmp


class Adam(Optimizer):
    def __init__(self, config: TrainConfig, size: int, n_weights: int, dtype: np.dtype) -> None:
        super().__init__(config, size, n_weights, dtype)
        self.m = np.zeros(size, dtype)
        self.v = np.zeros(size, dtype)
        self.b1, self.b2 = config.beta1, config.beta2

    def _update(self, w: np.ndarray, g: np.ndarray, lr: float) -> None:
        b1, b2, tmp = self.b1, self.b2, self._tmp
        self.m *= b1
        np.multiply(g, 1.0 - b1, out=tmp)
        self.m += tmp
        self.v *= b2
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - b2
        self.v += tmp
        np.sqrt(self.v, out=tmp)
        tmp *= 1.0 / math.sqrt(1.0 - b2**self.t)
        tmp += self.config.eps
        np.divide(self.m, tmp, out=tmp)
        tmp *= lr / (1.0 - b1**self.t)
        w -= tmp


_BY_NAME: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": SGD,
    "nesterov": SGD,
    "adagrad": Adagrad,
    "rmsprop": RMSProp,
    "adam": Adam,
    "adamw": Adam,
}


def make_optimizer(config: TrainConfig, size: int, n_weights: int, dtype: np.dtype | type = np.float32) -> Optimizer:
    """The optimizer `config.optimizer` names, for a flat vector of `size` entries."""
    return _BY_NAME[config.optimizer](config, size, n_weights, np.dtype(dtype))
