"""Datasets for vaekit: in-memory arrays, array files and image benchmarks.

Every dataset is a :class:`DataModule`: construct it from plain typed arguments (as a
YAML config does: ``data: {class_path: vaekit.data.MNIST, init_args: {binarize: dynamic}}``),
call :meth:`~DataModule.setup`, then read ``train`` / ``val`` / ``test`` (float32 tensors
of shape (n, *data_shape)) and their ``*_labels``.

File-backed datasets look in ``root``, else ``$VAEKIT_DATA`` then the user cache, and
download the official files (pinned SHA-256) when allowed; see :mod:`vaekit.data.download`.
:class:`Digits` needs no files and no network.

Examples
--------
>>> from vaekit.data import Digits
>>> data = Digits(binarize="threshold")
>>> data.setup()
>>> data.data_shape
(1, 8, 8)
"""

from vaekit.data.arrays import ArrayData, ArrayFile
from vaekit.data.base import DataModule, Splits
from vaekit.data.download import DatasetFiles, DatasetNotFoundError, cache_dir, find_dataset, locate, search_dirs
from vaekit.data.images import CIFAR10, MNIST, BinarizedMNIST, Digits, FashionMNIST

__all__ = [
    "CIFAR10",
    "MNIST",
    "ArrayData",
    "ArrayFile",
    "BinarizedMNIST",
    "DataModule",
    "DatasetFiles",
    "DatasetNotFoundError",
    "Digits",
    "FashionMNIST",
    "Splits",
    "cache_dir",
    "find_dataset",
    "locate",
    "search_dirs",
]
