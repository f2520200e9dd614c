"""The NumPy MLP: layers, losses, optimizers and schedules, one idea per module."""

from trainers.numpy_mlp.mlp import MLP
from trainers.numpy_mlp.optimizers import Optimizer, make_optimizer
from trainers.numpy_mlp.schedules import Plateau, lr_at

__all__ = ["MLP", "Optimizer", "Plateau", "lr_at", "make_optimizer"]
