"""The NumPy MLP: layers, losses and optimizers, one idea per module (schedules: `trainers.schedules`)."""

from trainers.numpy_mlp.mlp import MLP
from trainers.numpy_mlp.optimizers import Optimizer, make_optimizer

__all__ = ["MLP", "Optimizer", "make_optimizer"]
