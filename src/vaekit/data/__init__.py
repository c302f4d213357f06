"""Datasets for vaekit: in-memory arrays, array files, image benchmarks and grouped data.

Every dataset is a :class:`DataModule`: construct it from plain typed arguments (as a
YAML config does: ``data: {class_path: vaekit.data.MNIST, init_args: {binarize: dynamic}}``),
call :meth:`~DataModule.setup`, then read ``train`` / ``val`` / ``test`` (float32 tensors
of shape (n, *data_shape)) and their ``*_labels``.

File-backed datasets look in ``root``, else ``$VAEKIT_DATA`` then the user cache, and
download the official files (pinned SHA-256) when allowed; see :mod:`vaekit.data.download`.
:class:`Digits` needs no files and no network.

Grouped datasets (:class:`GroupedData` and its subclasses, for group-latent models) hold
dict splits ``{"x", "y", "groups"}`` instead of tensors; see :mod:`vaekit.data.grouped`.

Your own table file (CSV/TSV, Parquet, NPZ) is :class:`Table`: columns by name, grouped
when ``groups`` names group columns, a plain numeric table otherwise.

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
from vaekit.data.grouped import GroupedArrays, GroupedData, GroupedSource
from vaekit.data.grouped_ids import UnknownGroupError
from vaekit.data.grouped_sets import GroupedTable, HighSchoolBeyond, HLVNNFolder, OlivettiFaces, ShakespeareRoles
from vaekit.data.grouped_writers import MNISTWriters
from vaekit.data.images import CIFAR10, MNIST, BinarizedMNIST, Digits, FashionMNIST
from vaekit.data.leaf import LEAFFemnist, LEAFShakespeare
from vaekit.data.stored import GroupedArrayFile
from vaekit.data.table import Table

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
    "GroupedArrayFile",
    "GroupedArrays",
    "GroupedData",
    "GroupedSource",
    "GroupedTable",
    "HLVNNFolder",
    "HighSchoolBeyond",
    "LEAFFemnist",
    "LEAFShakespeare",
    "MNISTWriters",
    "OlivettiFaces",
    "ShakespeareRoles",
    "Splits",
    "Table",
    "UnknownGroupError",
    "cache_dir",
    "find_dataset",
    "locate",
    "search_dirs",
]
