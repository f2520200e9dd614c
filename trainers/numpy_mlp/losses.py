"""Losses on a softmax output, each returning the mean loss and its gradient w.r.t. logits.

cross_entropy: ``L = -mean_i log p_i[y_i]``; fused gradient ``dL/dz = (p - Y) / n``.
mse:           ``L = mean_i sum_k (p_ik - Y_ik)^2`` on the same softmax output ``p``;
               ``dL/dp = 2 (p - Y) / n`` and, through the softmax Jacobian,
               ``dL/dz = p * (dL/dp - sum_k p_k dL/dp_k)``. Its gradient vanishes when the
               output saturates on the wrong class, which is the lecture's point.
"""

from __future__ import annotations

import numpy as np


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable; a new array."""
    p = z - z.max(axis=1, keepdims=True)
    np.exp(p, out=p)
    p /= p.sum(axis=1, keepdims=True)
    return p


def log_softmax(z: np.ndarray) -> np.ndarray:
    s = z - z.max(axis=1, keepdims=True)
    s -= np.log(np.exp(s).sum(axis=1, keepdims=True))
    return s


def loss_value(name: str, z: np.ndarray, y: np.ndarray) -> float:
    """Summed (not mean) loss over the rows of `z`, for evaluation in chunks."""
    rows = np.arange(len(y))
    if name == "cross_entropy":
        return float(-log_softmax(z)[rows, y].sum(dtype=np.float64))
    p = softmax(z)
    p[rows, y] -= 1
    return float(np.square(p).sum(dtype=np.float64))


_ROWS: dict[int, np.ndarray] = {}


def _rows(n: int) -> np.ndarray:
    rows = _ROWS.get(n)
    if rows is None:
        rows = _ROWS[n] = np.arange(n)
    return rows


def loss_and_grad(name: str, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean loss over the batch and ``dL/dz`` (same shape and dtype as `z`). Overwrites `z`
    (the gradient is computed in its buffer)."""
    n = len(y)
    rows = _rows(n)
    p = z
    p -= z.max(axis=1, keepdims=True)
    picked = p[rows, y]
    np.exp(p, out=p)
    total = p.sum(axis=1, keepdims=True)
    p /= total
    if name == "cross_entropy":
        loss = float((np.log(total[:, 0]) - picked).sum(dtype=np.float64)) / n
        p[rows, y] -= 1
        p *= 1.0 / n
        return loss, p
    d = p.copy()
    d[rows, y] -= 1  # p - Y
    loss = float(np.square(d).sum(dtype=np.float64)) / n
    d *= 2.0 / n  # dL/dp
    s = (d * p).sum(axis=1, keepdims=True)
    d -= s
    d *= p
    return loss, d
