"""Trainers: one configuration, one dataset, one record per epoch. No Ray, Optuna or MLflow.

>>> from trainers import TrainConfig, load_dataset, train
>>> result = train(TrainConfig(depth=2, width=64, epochs=5), load_dataset("digits"))
"""

from trainers.config import TrainConfig, field_names
from trainers.data import BUILTIN as BUILTIN_DATASETS
from trainers.data import DataError, Dataset, from_arrays, load_dataset
from trainers.loop import STOP_REASONS, EpochRecord, TrainResult, iter_train, train

__all__ = [
    "BUILTIN_DATASETS",
    "STOP_REASONS",
    "DataError",
    "Dataset",
    "EpochRecord",
    "TrainConfig",
    "TrainResult",
    "field_names",
    "from_arrays",
    "iter_train",
    "load_dataset",
    "train",
]
