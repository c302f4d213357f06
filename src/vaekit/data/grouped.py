"""Grouped datasets: examples ``(x, y)`` that come in groups, at one or more group levels.

A grouped data module (:class:`GroupedData`) holds, after :meth:`~GroupedData.setup`, its
splits as *batch dicts* of tensors sharing the first dimension:

- ``"x"``: Tensor of shape (n, *data_shape): float32 features/images, or int64 token ids
  (n, T) for text;
- ``"y"``: int64 (n,) class ids (``task="classification"``), float32 (n,) or (n, d)
  (``"regression"``), or int64 (n, T) next-token targets (``"sequence"``);
- ``"groups"``: int64 (n, L): contiguous group ids per level, lowest level first.

Group ids are contiguous over *all* groups of the dataset (groups that only occur in
``val``/``test`` have ids too); ``group_names[level][id]`` is the raw id (see
:mod:`vaekit.data.grouped_ids` for the mapping: sorted raw ids). ``train_group_counts``
says how many training examples each group has (0 = unseen in training).

Splits: ``split="example"`` holds out examples within every group (each group keeps at
least one training example); ``split="group"`` holds out whole groups of level
``split_level`` (unseen groups). Both are deterministic in ``seed``.

A dataset is loaded as a :class:`GroupedSource` (raw ids, targets as tensors), checked by
:func:`check_source`, then mapped and split by :class:`GroupedData`'s ``setup``; the id
mapping and the splits are in :mod:`vaekit.data.grouped_ids`, the datasets read from files
in :mod:`vaekit.data.grouped_sets`, the synthetic writers in :mod:`vaekit.data.grouped_writers`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from vaekit.data._checks import _to_numpy, check_fraction, check_int
from vaekit.data.base import DataModule, Splits
from vaekit.data.grouped_ids import (
    as_group_levels,
    check_consistent_levels,
    encode_level,
    map_level,
    split_indices,
    to_long,
)

__all__ = ["TASKS", "GroupedArrays", "GroupedData", "GroupedSource", "as_targets", "check_source"]

Task = Literal["classification", "regression", "sequence"]

#: The tasks of grouped data: what ``y`` holds.
TASKS = ("classification", "regression", "sequence")


@dataclass
class GroupedSource:
    """A grouped dataset as loaded, before ids are mapped and the data is split.

    Attributes
    ----------
    x : Tensor of shape (n, *x_shape)
        float32 features, or int64 token ids.
    y : Tensor
        Targets as described in the module docstring for ``task``.
    groups : list of ndarray of shape (n,)
        Raw ids per level, lowest level first.
    level_names : list of str
    task : {"classification", "regression", "sequence"}
    n_classes : int or None
        Classes (or vocabulary size); ``None`` for regression.
    test_mask : ndarray of shape (n,), bool, optional
        Examples that form a predefined test split (e.g. LEAF's ``test/`` files).
    """

    x: Tensor
    y: Tensor
    groups: list[np.ndarray]
    level_names: list[str]
    task: str
    n_classes: int | None = None
    test_mask: np.ndarray | None = None


def check_source(source: GroupedSource, what: str = "data") -> None:
    """Check a loaded source: shapes, dtypes, finite values, label ranges, levels (raises, assigns nothing)."""
    x, y, task = source.x, source.y, source.task
    if task not in TASKS:
        raise ValueError(f"task={task!r} is not accepted; use one of {list(TASKS)}")
    n = len(x)
    if n == 0 or x.numel() == 0:
        raise ValueError(f"{what}: x is empty (shape {tuple(x.shape)}); a grouped dataset needs at least one example")
    if x.dtype not in (torch.float32, torch.int64):
        raise TypeError(f"{what}: x must be float32 features or int64 tokens; got {x.dtype}")
    if x.dtype == torch.float32 and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{what}: x contains {int((~torch.isfinite(x)).sum())} non-finite values (NaN or inf)")
    if x.dtype == torch.int64 and int(x.min()) < 0:
        raise ValueError(f"{what}: x token ids must be >= 0; found {int(x.min())}")
    if len(y) != n:
        raise ValueError(f"{what}: x has {n} examples but y has {len(y)}; give one target per example")
    if task == "regression":
        if y.dtype != torch.float32 or y.ndim not in (1, 2):
            raise TypeError(f"{what}: regression y must be float32 of shape (n,) or (n, d); got {y.dtype} {tuple(y.shape)}")
        if not bool(torch.isfinite(y).all()):
            raise ValueError(f"{what}: y contains {int((~torch.isfinite(y)).sum())} non-finite values (NaN or inf)")
    else:
        want = 1 if task == "classification" else 2
        if y.dtype != torch.int64 or y.ndim != want:
            shape = "(n,)" if want == 1 else "(n, T)"
            raise TypeError(f"{what}: {task} y must be int64 of shape {shape}; got {y.dtype} {tuple(y.shape)}")
        k = source.n_classes
        if k is None or int(y.min()) < 0 or int(y.max()) >= k:
            raise ValueError(f"{what}: {task} y must lie in [0, n_classes={k}); it spans [{int(y.min())}, {int(y.max())}]")
    if len(source.groups) != len(source.level_names):
        raise ValueError(
            f"{what}: {len(source.groups)} group level(s) given but level_names has {len(source.level_names)} "
            f"({source.level_names}); a group level is missing or a name is extra"
        )
    for level, raw in enumerate(source.groups):
        if len(raw) != n:
            raise ValueError(f"{what}: group level {level} ({source.level_names[level]!r}) has {len(raw)} ids for {n} examples")


def as_targets(y: np.ndarray, task: str, n_classes: int | None) -> tuple[Tensor, int | None]:
    """Targets as a tensor of the task's dtype, with the number of classes (checked)."""
    if task == "regression":
        if y.dtype.kind not in "biuf":
            raise TypeError(f"regression y must hold numbers; got dtype {y.dtype}")
        with np.errstate(over="ignore", invalid="ignore"):
            return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)), None
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
        raise ValueError(f"{task} y must hold integer class ids; got non-integer or NaN values")
    if y.dtype.kind not in "iuf":
        raise TypeError(f"{task} y must hold integer class ids; got dtype {y.dtype}")
    if y.size and y.min() < 0:
        raise ValueError(f"{task} y must hold class ids >= 0; found {y.min()}")
    k = int(y.max()) + 1 if n_classes is None and y.size else n_classes
    if k is not None:
        k = check_int("n_classes", k, minimum=1)
    return torch.from_numpy(np.ascontiguousarray(y).astype(np.int64)), k


@dataclass
class _Built:
    """Everything :meth:`GroupedData.setup` assigns, computed before any assignment."""

    splits: dict[str, dict[str, Tensor] | None]
    group_names: list[list[str]]
    group_parents: list[list[int]]
    train_group_counts: list[list[int]]
    stats: dict[str, Tensor | None] = field(default_factory=dict)


class GroupedData(DataModule):
    """Base class of grouped datasets (the contract of the group-latent models).

    Subclasses store their checked arguments (calling :meth:`_init_split`) and implement
    :meth:`_load_source`; :meth:`setup` maps ids, checks levels, splits and standardizes.

    Attributes (after :meth:`setup`)
    --------------------------------
    train, val, test : dict of str to Tensor, or None
        Batch dicts with keys ``"x"``, ``"y"``, ``"groups"`` (see the module docstring).
    data_shape : tuple of int
        Shape of one ``x``.
    y_shape : tuple of int
        Shape of one ``y`` (``()`` for labels or scalar targets).
    task : {"classification", "regression", "sequence"}
    n_classes : int or None
    level_names : list of str
    group_names : list of list of str
        Per level, ``group_names[level][id]`` is the raw id as a string.
    group_parents : list of list of int
        Per level but the last, the id at the level above of each group.
    train_group_counts : list of list of int
        Per level, training examples of each group id.
    feature_mean, feature_std : Tensor of shape data_shape or None
        Training statistics of ``x`` when ``standardize=True``.
    target_mean, target_std : Tensor of shape y_shape or None
        Training statistics of ``y`` when ``standardize_y=True`` (regression).
    """

    split: str = "example"
    split_level: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    standardize_y: bool = False
    task: str | None = None
    n_classes: int | None = None
    level_names: list[str] | None = None
    group_names: list[list[str]] | None = None
    group_parents: list[list[int]] | None = None
    train_group_counts: list[list[int]] | None = None
    target_mean: Tensor | None = None
    target_std: Tensor | None = None
    y_shape: tuple[int, ...] | None = None

    def _init_split(
        self,
        split: str,
        val_fraction: float,
        test_fraction: float,
        seed: int,
        split_level: int = 0,
        standardize: bool = False,
        standardize_y: bool = False,
        splits: tuple[str, ...] = ("example", "group"),
    ) -> None:
        """Check and store the split and standardization arguments (subclasses call this in ``__init__``)."""
        if not isinstance(split, str) or split not in splits:
            raise ValueError(f"split={split!r} is not accepted; use one of {list(splits)}")
        val_fraction = check_fraction("val_fraction", val_fraction)
        test_fraction = check_fraction("test_fraction", test_fraction)
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(f"val_fraction + test_fraction = {val_fraction + test_fraction:g} leaves no training data")
        seed, split_level = check_int("seed", seed, 0), check_int("split_level", split_level, 0)
        for name, value in (("standardize", standardize), ("standardize_y", standardize_y)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool; got {value!r} of type {type(value).__name__}")
        self.split, self.val_fraction, self.test_fraction, self.seed = split, val_fraction, test_fraction, seed
        self.split_level, self.standardize, self.standardize_y = split_level, standardize, standardize_y

    def _load_source(self) -> GroupedSource:
        """Read the data (subclasses implement this); called once, by :meth:`setup`."""
        raise NotImplementedError(f"{type(self).__name__} must implement _load_source()")

    def _load(self) -> Splits:  # the tensor-splits path of DataModule is not used by grouped data
        raise TypeError(f"{type(self).__name__} holds dict batches; use setup() and read train/val/test")

    def setup(self) -> None:
        """Load, map ids, check levels, split and standardize (a second call does nothing).

        Raises
        ------
        ValueError, TypeError
            Malformed data (mismatched lengths, NaN, negative ids, inconsistent levels ...);
            nothing is assigned in that case.
        FileNotFoundError
            A file-backed dataset is not found.
        """
        if self.is_setup:
            return
        source = self._load_source()
        self._assign_built(source, self._build(source))

    def _build(self, source: GroupedSource) -> _Built:
        check_source(source, type(self).__name__)
        levels = len(source.groups)
        if self.split == "group" and self.split_level >= levels:
            raise ValueError(f"split_level={self.split_level} but the data has {levels} group level(s) {source.level_names}")
        mapped = [map_level(raw, "groups", level) for level, raw in enumerate(source.groups)]
        ids = [m[0] for m in mapped]
        names = [m[1] for m in mapped]
        parents = check_consistent_levels(ids, names, source.level_names)
        mode = "example" if self.split not in ("example", "group") else self.split
        follow = ids[self.split_level if mode == "group" else 0]
        if source.test_mask is None:
            train, val, test = split_indices(follow, mode, self.val_fraction, self.test_fraction, self.seed)
        else:  # a predefined test split: validation is held out of the rest
            rest = np.flatnonzero(~source.test_mask)
            if len(rest) == 0:
                raise ValueError(f"{type(self).__name__}: every example is in the predefined test split")
            tr, va, _ = split_indices(follow[rest], mode, self.val_fraction, 0.0, self.seed)
            train, val, test = rest[tr], rest[va], np.flatnonzero(source.test_mask)
        x, y, groups = source.x, source.y, to_long(ids)
        stats: dict[str, Tensor | None] = {"feature_mean": None, "feature_std": None, "target_mean": None, "target_std": None}
        if self.standardize:
            if x.dtype != torch.float32:
                raise ValueError(f"standardize=True needs float features; {type(self).__name__} has int64 tokens")
            stats["feature_mean"], stats["feature_std"] = _moments(x[torch.from_numpy(train)])
            x = (x - stats["feature_mean"]) / stats["feature_std"]
        if self.standardize_y:
            if source.task != "regression":
                raise ValueError(f"standardize_y=True needs task='regression'; {type(self).__name__} has task={source.task!r}")
            stats["target_mean"], stats["target_std"] = _moments(y[torch.from_numpy(train)])
            y = (y - stats["target_mean"]) / stats["target_std"]
        splits: dict[str, dict[str, Tensor] | None] = {}
        for name, idx in (("train", train), ("val", val), ("test", test)):
            index = torch.from_numpy(idx)
            splits[name] = {"x": x[index], "y": y[index], "groups": groups[index]} if len(idx) else None
        counts = [np.bincount(i[train], minlength=len(nm)).tolist() for i, nm in zip(ids, names)]
        return _Built(splits, names, parents, counts, stats)

    def _assign_built(self, source: GroupedSource, built: _Built) -> None:
        self.train, self.val, self.test = built.splits["train"], built.splits["val"], built.splits["test"]
        self.train_labels = self.val_labels = self.test_labels = None
        self.task, self.n_classes = source.task, (None if source.task == "regression" else source.n_classes)
        self.level_names = list(source.level_names)
        self.group_names, self.group_parents = built.group_names, built.group_parents
        self.train_group_counts = built.train_group_counts
        for key, value in built.stats.items():
            setattr(self, key, value)
        self.y_shape = tuple(int(s) for s in source.y.shape[1:])
        self._data_shape = tuple(int(s) for s in source.x.shape[1:])

    def augment(self, batch: Any) -> Any:  # type: ignore[override]
        """Return the training batch unchanged (grouped data has no augmentation)."""
        return batch

    def unstandardize_y(self, y: Tensor) -> Tensor:
        """Map standardized targets (e.g. predictions) back to the original scale.

        Parameters
        ----------
        y : Tensor of shape (batch, *y_shape)
        """
        if self.target_mean is None or self.target_std is None:
            return y
        return y * self.target_std.to(y) + self.target_mean.to(y)

    def encode_groups(self, groups: Any) -> Tensor:
        """Contiguous ids of raw group ids (for prediction on raw ids).

        Parameters
        ----------
        groups : array-like of shape (n,) or (n, L), list of L arrays, or dict
            Raw ids in any form the constructor of :class:`GroupedArrays` accepts, one array
            per level of the dataset (lowest first).

        Returns
        -------
        Tensor of shape (n, L), int64

        Raises
        ------
        vaekit.data.grouped_ids.UnknownGroupError
            (a ``ValueError``) naming the unknown raw id and its level.
        ValueError
            When the number of levels or their lengths do not match.
        """
        if self.group_names is None or self.level_names is None:
            raise RuntimeError(f"{type(self).__name__}.encode_groups needs setup() first")
        levels, names = as_group_levels("groups", groups)
        if names is not None and names != self.level_names:
            raise ValueError(f"groups names levels {names}; this dataset's levels are {self.level_names}")
        if len(levels) != len(self.level_names):
            missing = self.level_names[len(levels):] or self.level_names
            raise ValueError(
                f"groups has {len(levels)} level(s) but the dataset has {len(self.level_names)} "
                f"{self.level_names}; missing or extra: {missing}"
            )
        if len({len(level) for level in levels}) != 1:
            raise ValueError(f"groups levels have different lengths {[len(v) for v in levels]}; one id per example each")
        ids = [encode_level(raw, self.group_names[i], i, self.level_names[i]) for i, raw in enumerate(levels)]
        return to_long(ids)

    def __repr__(self) -> str:
        if not self.is_setup:
            return f"{type(self).__name__}(not set up)"
        sizes = {k: (None if getattr(self, k) is None else len(getattr(self, k)["y"])) for k in ("train", "val", "test")}
        groups = [len(g) for g in self.group_names or []]
        return f"{type(self).__name__}(task={self.task!r}, data_shape={self._data_shape}, levels={self.level_names}, groups={groups}, sizes={sizes})"


def _moments(values: Tensor) -> tuple[Tensor, Tensor]:
    """Per-feature mean and standard deviation (constant features get std 1: they are only centred)."""
    mean = values.mean(0)
    std = values.std(0, unbiased=False) if len(values) > 1 else torch.ones_like(mean)
    return mean, torch.where(std > 1e-8, std, torch.ones_like(std))


ArrayLike = np.ndarray | Tensor


class GroupedArrays(GroupedData):
    """A grouped dataset from in-memory arrays.

    Parameters
    ----------
    x : ndarray or Tensor of shape (n, *x_shape)
        Numeric features (stored as float32), or integer token ids with ``tokens=True``.
    groups : ndarray or Tensor of shape (n,) or (n, L), list of L arrays of shape (n,), or dict
        Raw group ids (strings or integers >= 0) per level, lowest level first; a dict
        ``{level_name: ids}`` also names the levels.
    y : ndarray or Tensor
        Class ids of shape (n,) (classification), numbers of shape (n,) or (n, d)
        (regression), or token ids of shape (n, T) (sequence).
    task : {"classification", "regression", "sequence"}
    n_classes : int, optional
        Number of classes (or vocabulary size); default ``max(y) + 1``. Ignored for regression.
    level_names : list of str, optional
        One name per level; default ``["level0", "level1", ...]`` (or the dict's keys).
    tokens : bool
        ``x`` holds integer token ids (kept as int64) instead of features.
    split : {"example", "group"}
        Hold out examples within each group, or whole groups of level ``split_level``.
    split_level : int
        Level whose groups ``split="group"`` holds out.
    val_fraction, test_fraction : float
        Fractions in [0, 1) (of each group's examples, or of the groups).
    seed : int
        Seed of the split.
    standardize : bool
        Standardize ``x`` with the training split's mean and std (``feature_mean``,
        ``feature_std``; :meth:`unstandardize` undoes it).
    standardize_y : bool
        Standardize a regression ``y`` likewise (``target_mean``, ``target_std``,
        :meth:`unstandardize_y`).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(12, dtype=float).reshape(6, 2)
    >>> data = GroupedArrays(x, ["b", "b", "b", "a", "a", "a"], np.array([0, 1, 0, 1, 0, 1]),
    ...                      val_fraction=0.0, test_fraction=0.34, seed=0)
    >>> data.setup()
    >>> data.group_names, data.train_group_counts, data.train["groups"].shape
    ([['a', 'b']], [[2, 2]], torch.Size([4, 1]))
    >>> data.encode_groups(["a", "b"]).tolist()
    [[0], [1]]
    """

    def __init__(
        self,
        x: ArrayLike,
        groups: Any,
        y: ArrayLike,
        *,
        task: Task = "classification",
        n_classes: int | None = None,
        level_names: list[str] | None = None,
        tokens: bool = False,
        split: Literal["example", "group"] = "example",
        split_level: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int = 0,
        standardize: bool = False,
        standardize_y: bool = False,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"task={task!r} is not accepted; use one of {list(TASKS)}")
        if not isinstance(tokens, bool):
            raise TypeError(f"tokens must be a bool; got {tokens!r}")
        x_np, y_np = _to_numpy("x", x), _to_numpy("y", y)
        if x_np.ndim < 1 or y_np.ndim < 1:
            raise ValueError(f"x and y need a first (example) dimension; got shapes {x_np.shape} and {y_np.shape}")
        if x_np.dtype.kind not in ("iu" if tokens else "biuf"):
            raise TypeError(f"x must hold {'integer token ids' if tokens else 'numbers'}; got dtype {x_np.dtype}")
        if x_np.ndim == 1:
            raise ValueError(f"x must have shape (n, *x_shape); got shape {x_np.shape} (use x[:, None] for one feature)")
        levels, dict_names = as_group_levels("groups", groups)
        names = level_names if level_names is not None else dict_names or [f"level{i}" for i in range(len(levels))]
        if not isinstance(names, (list, tuple)) or not all(isinstance(s, str) for s in names):
            raise TypeError(f"level_names must be a list of str; got {level_names!r}")
        x_t = torch.from_numpy(np.ascontiguousarray(x_np, dtype=np.int64 if tokens else np.float32))
        y_t, k = as_targets(y_np, task, n_classes)
        source = GroupedSource(x_t, y_t, levels, list(names), task, k)
        self._init_split(split, val_fraction, test_fraction, seed, split_level, standardize, standardize_y)
        self._built = self._build(source)  # every check runs here, before anything else is kept
        self._source = source
        self.tokens = tokens

    def _load_source(self) -> GroupedSource:
        return self._source

    @property
    def source(self) -> GroupedSource:
        """The data as given (raw group ids, checked targets), before ids are mapped and it is split."""
        return self._source

    def setup(self) -> None:
        """Assign the splits computed (and checked) by the constructor."""
        if not self.is_setup:
            self._assign_built(self._source, self._built)
