"""The built-in lessons: one comparison spec (``<name>.yaml``) per claim of the lecture, in
the lecture's order. `study.comparison.lessons()` reads their claims."""

from __future__ import annotations

from pathlib import Path

LESSON_DIR = Path(__file__).resolve().parent
LESSON_NAMES = (
    "deeper",
    "cross_entropy",
    "minibatch",
    "shuffle",
    "vanishing_gradients",
    "adaptive_lr",
    "step_decay",
    "early_stopping",
    "l1_sparsity",
    "weight_decay",
    "dropout",
    "dropout_scaling",
)
