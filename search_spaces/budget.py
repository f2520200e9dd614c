"""Parameter counting and the width that spends a parameter budget at a given depth.

For an MLP with layer sizes ``s = [n_in, w_1, ..., w_d, n_out]`` and ``k`` maxout pieces
(``k = 1`` for every other activation), hidden layer ``i`` has a ``s_{i-1} x k*w_i`` weight
matrix and ``k*w_i`` biases; the output layer has ``w_d x n_out`` weights and ``n_out``
biases. So with a uniform width ``w``:

    n(w) = k*w*(n_in + 1) + (d - 1)*k*w*(w + 1) + n_out*(w + 1)        (d >= 1)
    n    = n_out*(n_in + 1)                                             (d = 0)

This is exactly ``trainers.numpy_mlp.MLP(...).n_params``. ``n(w)`` grows with ``w``, so the
budget width is found by bisection and rounded to whichever neighbour is closer.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Widest layer TrainConfig accepts.
MAX_WIDTH = 65536


def count_params(widths: Sequence[int], n_inputs: int, n_classes: int, pieces: int = 1) -> int:
    """Weights plus biases of an MLP with hidden `widths` (`pieces` > 1 for maxout)."""
    sizes = [n_inputs, *widths, n_classes]
    last = len(sizes) - 2
    total = 0
    for i in range(len(sizes) - 1):
        cols = sizes[i + 1] * (pieces if i < last else 1)
        total += (sizes[i] + 1) * cols
    return total


def width_for_budget(budget: int, depth: int, n_inputs: int, n_classes: int, pieces: int = 1) -> int:
    """The uniform width whose parameter count is closest to `budget` (ties go narrower)."""

    def n(w: int) -> int:
        return count_params([w] * depth, n_inputs, n_classes, pieces)

    lo, hi = 1, MAX_WIDTH
    while lo < hi:  # smallest w with n(w) >= budget (or MAX_WIDTH)
        mid = (lo + hi) // 2
        if n(mid) >= budget:
            hi = mid
        else:
            lo = mid + 1
    if lo > 1 and abs(n(lo - 1) - budget) <= abs(n(lo) - budget):
        return lo - 1
    return lo
