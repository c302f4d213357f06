"""Image datasets: MNIST, Fashion-MNIST, binarized MNIST, CIFAR-10 and scikit-learn's 8x8 digits.

Images are float32 in [0, 1] of shape (channels, height, width), or flattened to one
dimension with ``flatten=True``. Files are found as described in :mod:`vaekit.data.download`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from vaekit.data._checks import as_label_tensor, check_binarize, check_fraction, check_int
from vaekit.data.arrays import split_by_fraction
from vaekit.data.base import DataModule, Splits
from vaekit.data.download import DatasetFiles, locate
from vaekit.data.formats import load_npz, read_amat, read_cifar10_binary, read_idx

__all__ = ["CIFAR10", "MNIST", "BinarizedMNIST", "Digits", "FashionMNIST"]

Binarize = Literal["none", "dynamic", "threshold"]


def _images(source: Path | str, x: np.ndarray, shape: tuple[int, ...], scale: float = 255.0) -> Tensor:
    """Check a uint8 image array of shape (n, *shape) and return float32 (n, C, H, W) in [0, 1]."""
    if x.dtype != np.uint8 or x.ndim != 1 + len(shape) or tuple(x.shape[1:]) != shape or len(x) == 0:
        raise ValueError(f"{source} holds images of shape {x.shape} and dtype {x.dtype}; expected (n, *{shape}) uint8")
    t = torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32).div_(scale)
    return t.unsqueeze(1) if t.ndim == 3 else t


def _labels(source: Path | str, y: np.ndarray, n: int) -> Tensor:
    return as_label_tensor(f"labels in {source}", y, n)


def _last_as_val(
    train: Tensor, train_y: Tensor, test: Tensor, test_y: Tensor, val_size: int, source: Path | str
) -> Splits:
    """Splits with the last ``val_size`` training examples as validation (none when 0)."""
    if val_size >= len(train):
        raise ValueError(
            f"val_size={val_size} leaves no training examples: {source} has {len(train)}; use val_size < {len(train)}"
        )
    n = len(train) - val_size
    val, val_y = (train[n:], train_y[n:]) if val_size else (None, None)
    return Splits(train[:n], train_y[:n], val, val_y, test, test_y)


class _FileImages(DataModule):
    """Shared set-up of the file-backed image datasets (root, download, flatten)."""

    _dataset: str = ""
    #: The files that :meth:`setup` read (``None`` before).
    files: DatasetFiles | None = None

    def _init_files(self, root: str | None, flatten: bool, download: bool) -> None:
        if root is not None and not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a str path or None; got {root!r} of type {type(root).__name__}")
        for name, value in (("flatten", flatten), ("download", download)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool; got {value!r} of type {type(value).__name__}")
        self.root = None if root is None else os.fspath(root)
        self.flatten, self.download = flatten, download

    def _locate(self) -> DatasetFiles:
        return locate(self._dataset, self.root, download=self.download)


class MNIST(_FileImages):
    """MNIST handwritten digits, 28x28 grey levels scaled to [0, 1].

    Splits: ``train`` = the first ``60000 - val_size`` images of the official training
    set, ``val`` = its last ``val_size`` images, ``test`` = the official 10,000 test images.
    Labels are the digit classes.

    Parameters
    ----------
    root : str, optional
        Folder holding ``mnist/mnist.npz`` or the official ``mnist/*-ubyte[.gz]`` idx files;
        by default ``$VAEKIT_DATA`` then the user cache (see :mod:`vaekit.data.download`).
    binarize : {"none", "dynamic", "threshold"}
        "dynamic": training batches are resampled by :meth:`augment`, ``val``/``test`` are
        binarized once with seed :attr:`eval_binarize_seed` (0); "threshold": ``x > 0.5``.
    flatten : bool
        Examples of shape (784,) instead of (1, 28, 28).
    val_size : int
        Training images held out for validation (0 gives ``val=None``).
    download : bool
        Download the official files (pinned SHA-256) when none are found.

    Examples
    --------
    >>> data = MNIST(binarize="dynamic", flatten=True)  # doctest: +SKIP
    >>> data.setup(); data.train.shape, data.val.shape, data.test.shape  # doctest: +SKIP
    (torch.Size([50000, 784]), torch.Size([10000, 784]), torch.Size([10000, 784]))
    """

    _dataset = "mnist"

    def __init__(
        self,
        root: str | None = None,
        *,
        binarize: Binarize = "none",
        flatten: bool = False,
        val_size: int = 10000,
        download: bool = True,
    ) -> None:
        self.binarize = check_binarize(binarize)
        self.val_size = check_int("val_size", val_size, 0)
        self._init_files(root, flatten, download)

    def _load(self) -> Splits:
        files = self._locate()
        if files.kind == "npz":
            arrays = load_npz(files.paths[0], ["x_train", "y_train", "x_test", "y_test"])
            sources = [files.paths[0]] * 4
            x_train, y_train, x_test, y_test = (arrays[k] for k in ("x_train", "y_train", "x_test", "y_test"))
        else:
            sources = list(files.paths)
            x_train, y_train, x_test, y_test = (read_idx(p) for p in files.paths)
        train = _images(sources[0], x_train, (28, 28))
        train_y = _labels(sources[1], y_train, len(train))
        test = _images(sources[2], x_test, (28, 28))
        test_y = _labels(sources[3], y_test, len(test))
        splits = _last_as_val(train, train_y, test, test_y, self.val_size, sources[0])
        self.files = files
        return splits


class FashionMNIST(MNIST):
    """Zalando's Fashion-MNIST: 28x28 clothing images, same format and splits as :class:`MNIST`.

    Files: ``fashion_mnist/fashion_mnist.npz`` or the official ``fashion_mnist/*-ubyte[.gz]``.
    Parameters are those of :class:`MNIST`.
    """

    _dataset = "fashion_mnist"


class BinarizedMNIST(_FileImages):
    """Binarized MNIST with a fixed binarization and the standard 50k/10k/10k splits.

    Reads Larochelle & Murray's ``binarized_mnist/binarized_mnist_{train,valid,test}.amat``
    (the benchmark of the IWAE and VAE literature; no labels) or, if those are absent,
    ``binarized_mnist/binarized_mnist_seed0.npz`` (a seeded binarization with labels, see
    the data folder's README). Values are exactly 0 or 1; nothing is resampled.

    Parameters
    ----------
    root : str, optional
        Folder holding ``binarized_mnist/`` (default ``$VAEKIT_DATA``, then the user cache).
    flatten : bool
        Examples of shape (784,) instead of (1, 28, 28).
    download : bool
        Download the ``.amat`` files (pinned SHA-256) when none are found.
    """

    _dataset = "binarized_mnist"

    def __init__(self, root: str | None = None, *, flatten: bool = False, download: bool = True) -> None:
        self._init_files(root, flatten, download)

    def _load(self) -> Splits:
        files = self._locate()
        parts: list[tuple[Tensor, Tensor | None]] = []
        if files.kind == "npz":
            keys = [k for s in ("train", "valid", "test") for k in (f"x_{s}", f"y_{s}")]
            arrays = load_npz(files.paths[0], keys)
            for split in ("train", "valid", "test"):
                x = _images(files.paths[0], arrays[f"x_{split}"], (28, 28), scale=1.0)
                parts.append((x, _labels(files.paths[0], arrays[f"y_{split}"], len(x))))
        else:
            for path in files.paths:
                x = _images(path, read_amat(path, width=784), (784,), scale=1.0)
                parts.append((x.reshape(-1, 1, 28, 28), None))
        sources = files.paths if len(files.paths) == 3 else files.paths * 3
        for (x, _), source in zip(parts, sources):
            if bool(((x != 0) & (x != 1)).any()):
                raise ValueError(f"{source} is not binarized: found values other than 0 and 1")
        self.files = files
        (train, train_y), (val, val_y), (test, test_y) = parts
        return Splits(train, train_y, val, val_y, test, test_y)


class CIFAR10(_FileImages):
    """CIFAR-10: 32x32 colour images of 10 classes, shape (3, 32, 32), scaled to [0, 1].

    Read from the official *binary* version (``cifar10/cifar-10-binary.tar.gz``, or its
    extracted ``cifar10/cifar-10-batches-bin/`` folder); the python-pickle version is never
    read. Splits: ``train`` = the first ``50000 - val_size`` training images (batches 1..5
    in order), ``val`` = the last ``val_size``, ``test`` = ``test_batch.bin``.

    Parameters
    ----------
    root : str, optional
        Folder holding ``cifar10/`` (default ``$VAEKIT_DATA``, then the user cache).
    flatten : bool
        Examples of shape (3072,) instead of (3, 32, 32).
    val_size : int
        Training images held out for validation (0 gives ``val=None``).
    download : bool
        Download ``cifar-10-binary.tar.gz`` (pinned SHA-256, 170 MB) when it is not found.
    """

    _dataset = "cifar10"

    def __init__(
        self, root: str | None = None, *, flatten: bool = False, val_size: int = 5000, download: bool = True
    ) -> None:
        self.val_size = check_int("val_size", val_size, 0)
        self._init_files(root, flatten, download)

    def _load(self) -> Splits:
        files = self._locate()
        source = files.paths[0]
        (x_train, y_train), (x_test, y_test) = read_cifar10_binary(source)
        train, test = _images(source, x_train, (3, 32, 32)), _images(source, x_test, (3, 32, 32))
        train_y, test_y = torch.from_numpy(y_train), torch.from_numpy(y_test)
        splits = _last_as_val(train, train_y, test, test_y, self.val_size, source)
        self.files = files
        return splits


class Digits(DataModule):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images): works offline.

    Grey levels 0..16 are scaled to [0, 1]; shape (1, 8, 8), or (64,) with ``flatten=True``.
    ``val`` (and ``test`` if ``test_fraction > 0``) are random, seeded subsets.

    Parameters
    ----------
    binarize : {"none", "dynamic", "threshold"}
        As for :class:`MNIST`.
    flatten : bool
    val_fraction : float
        Fraction held out for validation, in [0, 1).
    test_fraction : float
        Fraction held out for testing, in [0, 1) (0 gives ``test=None``).
    seed : int
        Seed of the split.

    Examples
    --------
    >>> data = Digits(flatten=True, val_fraction=0.1, test_fraction=0.1)
    >>> data.setup()
    >>> data.train.shape, data.val.shape, data.test.shape
    (torch.Size([1437, 64]), torch.Size([180, 64]), torch.Size([180, 64]))
    >>> float(data.train.max())
    1.0
    """

    def __init__(
        self,
        *,
        binarize: Binarize = "none",
        flatten: bool = False,
        val_fraction: float = 0.1,
        test_fraction: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.binarize = check_binarize(binarize)
        if not isinstance(flatten, bool):
            raise TypeError(f"flatten must be a bool; got {flatten!r}")
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        self.test_fraction = check_fraction("test_fraction", test_fraction)
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"val_fraction + test_fraction = {self.val_fraction + self.test_fraction:g} leaves no training data"
            )
        self.flatten, self.seed = flatten, check_int("seed", seed, 0)

    def _load(self) -> Splits:
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        images = torch.from_numpy(x.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
        labels = torch.from_numpy(y.astype(np.int64))
        fractions = (self.val_fraction, self.test_fraction)
        (train, train_y), (val, val_y), (test, test_y) = split_by_fraction(images, labels, fractions, self.seed)
        val, val_y = (val, val_y) if len(val) else (None, None)
        test, test_y = (test, test_y) if len(test) else (None, None)
        return Splits(train, train_y, val, val_y, test, test_y)
