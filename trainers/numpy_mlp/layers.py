"""Activations, their derivatives, and weight initialization.

Derivatives are written in terms of the activation's output ``h`` where possible, so the
backward pass needs no copy of the pre-activation:
sigmoid ``h (1 - h)``, tanh ``1 - h^2``, relu ``[h > 0]``, leaky relu ``1 or slope``.
Maxout takes the max over ``pieces`` linear units; its gradient flows to the arg-max piece.
"""

from __future__ import annotations

import numpy as np


def activate(name: str, z: np.ndarray, slope: float) -> np.ndarray:
    """Apply activation `name` to `z` in place and return it (maxout is handled by the MLP)."""
    if name == "relu":
        np.maximum(z, 0, out=z)
    elif name == "leaky_relu":
        np.maximum(z, z * slope, out=z)  # valid for slope in [0, 1)
    elif name == "sigmoid":
        with np.errstate(over="ignore"):
            np.negative(z, out=z)
            np.exp(z, out=z)
            z += 1
            np.reciprocal(z, out=z)
    elif name == "tanh":
        np.tanh(z, out=z)
    else:  # pragma: no cover - guarded by TrainConfig
        raise ValueError(f"unknown activation {name!r}")
    return z


def backprop_activation(name: str, h: np.ndarray, dh: np.ndarray, slope: float) -> np.ndarray:
    """Multiply `dh` in place by the activation's derivative, given its output `h`."""
    if name == "relu":
        dh *= h > 0
    elif name == "leaky_relu":
        dh *= np.where(h > 0, np.asarray(1, h.dtype), np.asarray(slope, h.dtype))
    elif name == "sigmoid":
        dh *= h
        dh *= 1 - h
    elif name == "tanh":
        dh *= 1 - h * h
    else:  # pragma: no cover
        raise ValueError(f"unknown activation {name!r}")
    return dh


def init_weights(kind: str, fan_in: int, fan_out: int, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """He: N(0, 2/fan_in); Glorot: U(+-sqrt(6/(fan_in+fan_out))); LeCun: N(0, 1/fan_in);
    small: N(0, 0.01^2), the classic initialization that starves deep nets of signal."""
    if kind == "he":
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    if kind == "glorot":
        a = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-a, a, shape)
    if kind == "lecun":
        return rng.normal(0.0, np.sqrt(1.0 / fan_in), shape)
    if kind == "small":
        return rng.normal(0.0, 0.01, shape)
    raise ValueError(f"init must be one of auto, he, glorot, lecun, small, got {kind!r}")
