"""Datasets from arrays: in memory (:class:`ArrayData`) or in a ``.npy``/``.npz`` file (:class:`ArrayFile`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from vaekit.data._checks import (as_data_tensor, as_label_tensor, check_binarize, check_file_sha256, check_fraction,
                                check_int, check_sha256_arg)
from vaekit.data.base import DataModule, Splits
from vaekit.data.formats import load_npy, load_npz, npz_keys

__all__ = ["ArrayData", "ArrayFile", "split_by_fraction"]

ArrayLike = np.ndarray | Tensor


def split_by_fraction(
    x: Tensor,
    labels: Tensor | None,
    fractions: tuple[float, ...],
    seed: int,
) -> list[tuple[Tensor, Tensor | None]]:
    """Split examples at random into a training part and one part per fraction.

    Each held-out part gets ``round(fraction * n)`` examples (at least 1 when the fraction is
    positive), chosen by a permutation drawn with ``seed``; every part keeps the original
    order of its examples.

    Parameters
    ----------
    x : Tensor of shape (n, *data_shape)
    labels : Tensor of shape (n,) or None
    fractions : tuple of float
        e.g. ``(val_fraction,)`` or ``(val_fraction, test_fraction)``.
    seed : int

    Returns
    -------
    list of (Tensor, Tensor or None)
        ``[train, part_1, ...]``; a part with fraction 0 is ``(empty tensor, ...)`` and
        callers map it to ``None``.

    Examples
    --------
    >>> parts = split_by_fraction(torch.arange(10.0)[:, None], None, (0.2,), seed=0)
    >>> [len(p[0]) for p in parts]
    [8, 2]
    """
    n = len(x)
    sizes = [max(1, round(f * n)) if f > 0 else 0 for f in fractions]
    if sum(sizes) >= n:
        raise ValueError(
            f"cannot hold out {sizes} of {n} examples for fractions {list(fractions)}: "
            "no training examples would be left; lower the fractions or add data"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    bounds = np.cumsum([0, *sizes])
    held = [perm[bounds[i] : bounds[i + 1]].sort().values for i in range(len(sizes))]
    train_idx = perm[bounds[-1] :].sort().values
    return [(x[idx], None if labels is None else labels[idx]) for idx in (train_idx, *held)]


def _splits(
    x: Tensor,
    labels: Tensor | None,
    val_fraction: float,
    test: tuple[Tensor, Tensor | None] | None,
    seed: int,
) -> Splits:
    (train, train_y), (val, val_y) = split_by_fraction(x, labels, (val_fraction,), seed)
    test_x, test_y = test if test is not None else (None, None)
    return Splits(train, train_y, *((val, val_y) if len(val) else (None, None)), test_x, test_y)


class ArrayData(DataModule):
    """Examples held in memory as numpy arrays or torch tensors.

    ``val`` is a random ``val_fraction`` of ``x`` (seeded); ``test`` is ``test_x`` if given.
    Values are converted to float32 as they are (no rescaling).

    Parameters
    ----------
    x : ndarray or Tensor of shape (n, *data_shape)
        Numeric examples, finite, at least one.
    labels : ndarray or Tensor of shape (n,), optional
        Integer labels of ``x``.
    val_fraction : float
        Fraction of ``x`` held out for validation, in [0, 1); 0 gives ``val=None``.
    test_x : ndarray or Tensor of shape (n_test, *data_shape), optional
    test_labels : ndarray or Tensor of shape (n_test,), optional
    seed : int
        Seed of the train/validation split.
    binarize : {"none", "dynamic", "threshold"}
        See :class:`~vaekit.data.DataModule`; values must be in [0, 1] unless "none".
    standardize : bool
        Centre and scale every feature by the training split's mean and standard deviation
        (kept in ``feature_mean`` / ``feature_std``; :meth:`unstandardize` maps back).

    Examples
    --------
    >>> import numpy as np
    >>> data = ArrayData(np.random.rand(100, 5), np.arange(100) % 3, val_fraction=0.1)
    >>> data.setup()
    >>> data.train.shape, data.val.shape, data.test, data.train_labels.dtype
    (torch.Size([90, 5]), torch.Size([10, 5]), None, torch.int64)
    """

    def __init__(
        self,
        x: ArrayLike,
        labels: ArrayLike | None = None,
        *,
        val_fraction: float = 0.1,
        test_x: ArrayLike | None = None,
        test_labels: ArrayLike | None = None,
        seed: int = 0,
        binarize: Literal["none", "dynamic", "threshold"] = "none",
        standardize: bool = False,
    ) -> None:
        binarize = check_binarize(binarize)
        val_fraction = check_fraction("val_fraction", val_fraction)
        seed = check_int("seed", seed, 0)
        unit = binarize != "none"
        x_t = as_data_tensor("x", x, unit_interval=unit)
        y_t = None if labels is None else as_label_tensor("labels", labels, len(x_t))
        test: tuple[Tensor, Tensor | None] | None = None
        if test_x is not None:
            tx = as_data_tensor("test_x", test_x, unit_interval=unit)
            if tx.shape[1:] != x_t.shape[1:]:
                raise ValueError(
                    f"test_x examples have shape {tuple(tx.shape[1:])}, but x examples have {tuple(x_t.shape[1:])}"
                )
            test = (tx, None if test_labels is None else as_label_tensor("test_labels", test_labels, len(tx)))
        elif test_labels is not None:
            raise ValueError("test_labels was given without test_x")
        split = _splits(x_t, y_t, val_fraction, test, seed)  # raises if nothing is left to train on
        if standardize and binarize != "none":
            raise ValueError(f"standardize=True cannot be combined with binarize={binarize!r}")
        self.binarize, self.val_fraction, self.seed, self.standardize = binarize, val_fraction, seed, bool(standardize)
        self._split = split

    def _load(self) -> Splits:
        return self._split


class ArrayFile(DataModule):
    """Examples read from a ``.npy`` or ``.npz`` file (``allow_pickle=False``): tabular data from YAML.

    Parameters
    ----------
    path : str
        A ``.npy`` file (one array: the examples) or a ``.npz`` archive.
    key : str, optional
        Array of examples in a ``.npz``: default ``"x"`` if present, else its only array.
    labels_key : str, optional
        Array of integer labels in a ``.npz`` (none by default).
    val_fraction : float
        Fraction held out for validation, in [0, 1).
    seed : int
        Seed of the train/validation split.
    test_key, test_labels_key : str, optional
        Arrays of test examples and labels in a ``.npz``.
    binarize : {"none", "dynamic", "threshold"}
    standardize : bool
        As in :class:`ArrayData`.
    sha256 : str, optional
        The file's SHA-256 (64 hex digits): checked before the file is read (a run fitted on
        in-memory arrays stores them in ``RUN/data/`` with their hash recorded here).

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "table.npz"
    >>> np.savez(path, x=np.random.rand(50, 4), y=np.arange(50) % 2)
    >>> data = ArrayFile(str(path), labels_key="y", val_fraction=0.2)
    >>> data.setup()
    >>> data.train.shape, data.val_labels.shape
    (torch.Size([40, 4]), torch.Size([10]))
    """

    def __init__(
        self,
        path: str,
        *,
        key: str | None = None,
        labels_key: str | None = None,
        val_fraction: float = 0.1,
        seed: int = 0,
        test_key: str | None = None,
        test_labels_key: str | None = None,
        binarize: Literal["none", "dynamic", "threshold"] = "none",
        standardize: bool = False,
        sha256: str | None = None,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str; got {path!r} of type {type(path).__name__}")
        self.sha256 = check_sha256_arg(sha256)
        suffix = Path(path).suffix
        if suffix not in (".npy", ".npz"):
            raise ValueError(f"path={os.fspath(path)!r} must end in .npy or .npz; got suffix {suffix!r}")
        keys = {"key": key, "labels_key": labels_key, "test_key": test_key, "test_labels_key": test_labels_key}
        if suffix == ".npy" and any(v is not None for v in keys.values()):
            given = [k for k, v in keys.items() if v is not None]
            raise ValueError(f"{given} need a .npz archive; path={os.fspath(path)!r} is a single .npy array")
        if test_labels_key is not None and test_key is None:
            raise ValueError("test_labels_key was given without test_key")
        self.path = os.fspath(path)
        self.key, self.labels_key, self.test_key, self.test_labels_key = key, labels_key, test_key, test_labels_key
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        self.seed = check_int("seed", seed, 0)
        self.binarize = check_binarize(binarize)
        if standardize and self.binarize != "none":
            raise ValueError(f"standardize=True cannot be combined with binarize={self.binarize!r}")
        self.standardize = bool(standardize)

    def _read(self) -> dict[str, np.ndarray | None]:
        path = Path(self.path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"path={self.path!r} does not exist")
        check_file_sha256(path, self.sha256)
        if path.suffix == ".npy":
            return {"x": load_npy(path), "labels": None, "test_x": None, "test_labels": None}
        archive_keys = npz_keys(path)
        key = self.key
        if key is None:
            if "x" in archive_keys or len(archive_keys) == 1:
                key = "x" if "x" in archive_keys else archive_keys[0]
            else:
                raise ValueError(f"{self.path} holds {archive_keys}; choose the examples with key=...")
        wanted = {"x": key, "labels": self.labels_key, "test_x": self.test_key, "test_labels": self.test_labels_key}
        arrays = load_npz(path, [k for k in wanted.values() if k is not None])
        return {role: (None if k is None else arrays[k]) for role, k in wanted.items()}

    def _load(self) -> Splits:
        arrays = self._read()
        unit = self.binarize != "none"
        where = f"{self.path}"
        x = as_data_tensor(f"x (from {where})", arrays["x"], unit_interval=unit)
        y = arrays["labels"]
        y_t = None if y is None else as_label_tensor(f"labels (key {self.labels_key!r} of {where})", y, len(x))
        test = None
        if arrays["test_x"] is not None:
            tx = as_data_tensor(f"test_x (key {self.test_key!r} of {where})", arrays["test_x"], unit_interval=unit)
            ty = arrays["test_labels"]
            name = f"test labels (key {self.test_labels_key!r} of {where})"
            test = (tx, None if ty is None else as_label_tensor(name, ty, len(tx)))
        return _splits(x, y_t, self.val_fraction, test, self.seed)
