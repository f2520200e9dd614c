"""A small 1-D CNN for MNIST-1D (40 features, 10 classes): a model factory for hpstudy.

``build(n_inputs, n_classes, channels, kernel_size, n_blocks)``: `n_blocks` blocks of
``Conv1d(kernel_size, padding="same") -> ReLU -> MaxPool1d(2)`` with `channels` channels each
(40 -> 20 -> 10 -> 5 -> 3 positions), then flatten, dropout and a linear layer to the logits.
The MNIST-1D paper's CNN reaches 94% test accuracy, its MLP 68%. hpstudy sets the
``nn.Dropout``'s ``p`` from the ``dropout`` training option, and ``l1``/``l2``/
``weight_decay`` act on the conv and linear kernels (parameters with ndim >= 2).

Spec: ``model: mnist1d_cnn.py:build`` (see mnist1d_cnn.yaml next to this file).
"""

from __future__ import annotations

from torch import nn


def build(n_inputs: int, n_classes: int, channels: int = 32, kernel_size: int = 5, n_blocks: int = 3) -> nn.Module:
    """The CNN for a float batch ``[B, n_inputs]``, returning logits ``[B, n_classes]``."""
    layers: list[nn.Module] = [nn.Unflatten(1, (1, n_inputs))]
    c_in, length = 1, n_inputs
    for _ in range(n_blocks):
        layers += [
            nn.Conv1d(c_in, channels, kernel_size, padding="same"),
            nn.ReLU(),
            nn.MaxPool1d(2, ceil_mode=True),
        ]
        c_in, length = channels, (length + 1) // 2
    layers += [nn.Flatten(), nn.Dropout(0.0), nn.Linear(channels * length, n_classes)]
    return nn.Sequential(*layers)
