"""Grouped data in the npy layout of Hierarchical Latent Variable Neural Networks (HLVNN).

HLVNN keeps each dataset as a folder of numpy files with a fixed train/test split::

    x_train.npy   gid_train.npy   [gid2_train.npy ...]   y_train.npy
    x_test.npy    gid_test.npy    [gid2_test.npy ...]    y_test.npy

``x`` holds the inputs (first dimension = examples), ``y`` the targets of shape (n,)
(labels not one-hot), and ``gid``, ``gid2``, ``gid3``, ... the group ids of each level,
``gid`` the lowest (closest to the data), as integers ``0..k-1`` shared by train and test.
The test examples are of groups seen in training (HLVNN splits by example within each
user). :class:`HLVNNFolder` reads such a folder into the grouped contract
(:mod:`vaekit.data.grouped`): the test split is the ``*_test.npy`` files and the validation
split is carved out of the ``*_train.npy`` files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from vaekit.data.grouped import GroupedData, GroupedSource, Task
from vaekit.data.grouped_source import TASKS, as_targets

__all__ = ["HLVNNFolder", "hlvnn_levels"]


def hlvnn_levels(folder: str | os.PathLike[str]) -> list[str]:
    """The group levels of an HLVNN folder: ``["gid", "gid2", ...]``, as many as ``gid*_train.npy`` run.

    Raises
    ------
    FileNotFoundError
        The folder does not exist or has no ``gid_train.npy``.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> d = Path(tempfile.mkdtemp())
    >>> for name in ("gid", "gid2", "gid4"):
    ...     np.save(d / f"{name}_train.npy", np.zeros(3, np.int32))
    >>> hlvnn_levels(d)   # gid4 without gid3 is not a level
    ['gid', 'gid2']
    """
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"path={os.fspath(folder)!r} does not exist (or is not a folder)")
    if not (path / "gid_train.npy").is_file():
        raise FileNotFoundError(f"{path} has no gid_train.npy: an HLVNN folder holds x_train.npy, gid_train.npy, "
                                f"y_train.npy, x_test.npy, gid_test.npy, y_test.npy (and gid2_*.npy ... for more levels)")
    levels = ["gid"]
    while (path / f"gid{len(levels) + 1}_train.npy").is_file():
        levels.append(f"gid{len(levels) + 1}")
    return levels


class HLVNNFolder(GroupedData):
    """A grouped dataset from an HLVNN folder of ``x``/``gid``/``y`` ``_{train,test}.npy`` files.

    The test split is the ``*_test.npy`` files, as HLVNN evaluates; the validation split is
    ``val_fraction`` of the ``*_train.npy`` examples, held out within every group
    (``split="example"``, each group keeps at least one training example) or as whole groups
    of level ``split_level`` (``split="group"``), deterministic in ``seed``. Group ids are the
    files' integers (``group_names`` are their decimal strings); groups that appear only in
    the test files have ids with 0 training examples.

    Parameters
    ----------
    path : str
        The folder (e.g. HLVNN's ``data/femnist/large``). Stored as an absolute path, so a
        run's ``config.yaml`` finds it from any working directory.
    task : {"classification", "regression", "sequence"}
        What ``y`` holds: class ids (HLVNN's datasets), numbers, or next-token targets (n, T).
    n_classes : int, optional
        Number of classes (default ``max(y) + 1`` over both splits). Ignored for regression.
    tokens : bool, optional
        ``x`` holds integer token ids (kept as int64). Default: whether ``x_train.npy`` has an
        integer dtype.
    level_names : list of str, optional
        One name per level; default the file stems ``["gid", "gid2", ...]``.
    split : {"example", "group"}
        How validation is carved out of the training files.
    split_level : int
        Level whose groups ``split="group"`` holds out for validation.
    val_fraction : float
        Fraction in [0, 1) of the training files' examples (or groups) used for validation.
    seed : int
    standardize, standardize_y : bool
        Standardize ``x`` (float features) / a regression ``y`` with the training split's
        statistics, as in :class:`~vaekit.data.grouped.GroupedArrays`.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> d = tempfile.mkdtemp()
    >>> rng = np.random.default_rng(0)
    >>> for split, n in (("train", 40), ("test", 8)):
    ...     np.save(f"{d}/x_{split}.npy", rng.normal(size=(n, 3)).astype(np.float32))
    ...     np.save(f"{d}/gid_{split}.npy", (np.arange(n) % 4).astype(np.int32))
    ...     np.save(f"{d}/y_{split}.npy", rng.integers(0, 2, n))
    >>> data = HLVNNFolder(d, val_fraction=0.2)
    >>> data.setup()
    >>> [len(s["y"]) for s in (data.train, data.val, data.test)], data.group_names, data.level_names
    ([32, 8, 8], [['0', '1', '2', '3']], ['gid'])
    """

    @classmethod
    def canonical_args(cls, args: dict[str, Any]) -> dict[str, Any]:
        """``path`` is recorded absolute (config.yaml says where the folder is, from anywhere)."""
        return {**args, "path": os.path.abspath(os.path.expanduser(os.fspath(args["path"])))}

    def __init__(
        self,
        path: str,
        *,
        task: Task = "classification",
        n_classes: int | None = None,
        tokens: bool | None = None,
        level_names: list[str] | None = None,
        split: Literal["example", "group"] = "example",
        split_level: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        standardize: bool = False,
        standardize_y: bool = False,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str (the HLVNN folder); got {path!r} of type {type(path).__name__}")
        if task not in TASKS:
            raise ValueError(f"task={task!r} is not accepted; use one of {list(TASKS)}")
        if tokens is not None and not isinstance(tokens, bool):
            raise TypeError(f"tokens must be a bool or None (None: integer x are tokens); got {tokens!r}")
        if level_names is not None and (not isinstance(level_names, (list, tuple))
                                        or not all(isinstance(s, str) for s in level_names)):
            raise TypeError(f"level_names must be a list of str; got {level_names!r}")
        self._init_split(split, val_fraction, 0.0, seed, split_level, standardize, standardize_y)
        absolute = os.path.abspath(os.path.expanduser(os.fspath(path)))
        self.path, self.task_name, self.n_classes_arg, self.tokens = absolute, task, n_classes, tokens
        self.level_names_arg = None if level_names is None else list(level_names)

    def _array(self, name: str) -> np.ndarray:
        file = Path(self.path) / f"{name}.npy"
        if not file.is_file():
            raise FileNotFoundError(f"{file} not found: an HLVNN folder holds x, y and gid (gid2, ...) for both "
                                    f"_train.npy and _test.npy")
        try:
            return np.load(file, allow_pickle=False)
        except ValueError as exc:  # object arrays need pickle, which is never loaded
            raise ValueError(f"{file} is not a plain numeric .npy array ({exc}); save it with a numeric dtype") from exc

    def _load_source(self) -> GroupedSource:
        levels = hlvnn_levels(self.path)
        names = self.level_names_arg or levels
        if len(names) != len(levels):
            raise ValueError(f"level_names={names!r} names {len(names)} level(s) but {self.path} has {len(levels)}: {levels}")
        parts = {}
        for split in ("train", "test"):
            arrays = {key: self._array(f"{key}_{split}") for key in ("x", "y", *levels)}
            n = len(arrays["x"]) if arrays["x"].ndim else 0
            bad = {f"{key}_{split}.npy": a.shape for key, a in arrays.items() if a.ndim == 0 or len(a) != n}
            if bad or n == 0:
                raise ValueError(f"{self.path}: the {split} files must share a non-zero first dimension; x_{split}.npy has "
                                 f"shape {arrays['x'].shape}, mismatched: {bad}")
            for level in levels:
                ids = arrays[level]
                if ids.ndim != 1 or ids.dtype.kind not in "iu" or (ids.size and ids.min() < 0):
                    raise ValueError(f"{level}_{split}.npy must hold integer group ids >= 0 of shape (n,); got dtype "
                                     f"{ids.dtype}, shape {ids.shape}{', min ' + str(ids.min()) if ids.size and ids.dtype.kind in 'iuf' else ''}")
            parts[split] = arrays
        x_tr, x_te = parts["train"]["x"], parts["test"]["x"]
        if x_tr.ndim < 2:
            raise ValueError(f"x_train.npy must have shape (n, *x_shape); got {x_tr.shape} (save x[:, None] for one feature)")
        if x_tr.shape[1:] != x_te.shape[1:]:
            raise ValueError(f"x_train.npy has examples of shape {x_tr.shape[1:]} but x_test.npy {x_te.shape[1:]}")
        tokens = x_tr.dtype.kind in "iu" if self.tokens is None else self.tokens
        for name, xs in (("x_train.npy", x_tr), ("x_test.npy", x_te)):
            if xs.dtype.kind not in ("iu" if tokens else "biuf"):
                raise TypeError(f"{name} must hold {'integer token ids' if tokens else 'numbers'}; got dtype {xs.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(np.concatenate([x_tr, x_te]), dtype=np.int64 if tokens else np.float32))
        y, k = as_targets(np.concatenate([parts["train"]["y"], parts["test"]["y"]]), self.task_name, self.n_classes_arg)
        groups = [np.concatenate([parts["train"][lv], parts["test"][lv]]).astype(np.int64) for lv in levels]
        mask = np.concatenate([np.zeros(len(x_tr), bool), np.ones(len(x_te), bool)])
        return GroupedSource(x, y, groups, list(names), self.task_name, k, mask)
