"""Datasets: built-in and generated tasks, users' files, the splits, and every data error.

Nothing is downloaded. Built-in names: ``digits`` (scikit-learn's 8x8 digits),
``gaussian_mixture``, ``spirals``, ``rings`` (generated, see `trainers.data.generated`) and
``mnist1d`` (MNIST-1D generated offline with its official 4000/1000 train/test split, see
`trainers.data.mnist1d`).

Files: ``.npz`` with arrays ``X`` and ``y`` (loaded with ``allow_pickle=False``), ``.csv``
and ``.parquet`` with a label column (``label_column``, default ``label``). Validation and
test splits are fractions of the data (stratified, seeded) or files of their own
(``load_dataset("train.csv", test="test.csv")``). Labels of any kind (integers, strings)
become classes ``0..K-1`` in sorted order; ``Dataset.classes`` keeps the original labels.
Features are standardized with statistics of the training split only. Every problem with
the data is a `DataError` naming the file or dataset, what is wrong and what is allowed.
"""

from trainers.data.dataset import DataError, Dataset
from trainers.data.files import FILE_SUFFIXES, is_file_name
from trainers.data.generated import gaussian_mixture, rings, spirals
from trainers.data.load import BUILTIN, OFFICIAL_TEST, from_arrays, has_official_test, load_dataset
from trainers.data.split import split

__all__ = [
    "BUILTIN",
    "FILE_SUFFIXES",
    "OFFICIAL_TEST",
    "DataError",
    "Dataset",
    "from_arrays",
    "gaussian_mixture",
    "has_official_test",
    "is_file_name",
    "load_dataset",
    "rings",
    "spirals",
    "split",
]
