"""Grouped datasets read from files: multilevel tables, Shakespeare by role, Olivetti faces, HLVNN folders.

Files are read from ``root``, else ``$VAEKIT_DATA`` then the user cache (see
:mod:`vaekit.data.download`); nothing is downloaded. Expected paths inside that folder:

- ``grouped_tabular/hsb_mathachieve.npz`` (:class:`HighSchoolBeyond`),
- ``grouped_tabular/{sleepstudy,orthodont,grunfeld}.npz`` (:class:`GroupedTable`),
- ``shakespeare/shakespeare_lines.npz`` (:class:`ShakespeareRoles`),
- ``olivetti_faces/olivetti_faces.npz`` (:class:`OlivettiFaces`).

A folder in the npy layout of Hierarchical Latent Variable Neural Networks is
:class:`HLVNNFolder` (below). The synthetic MNIST writers are
:class:`vaekit.data.grouped_writers.MNISTWriters`.

HLVNN folders
-------------
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
from typing import Literal

import numpy as np
import torch

from vaekit.data._checks import check_int
from vaekit.data._paths import PathGroupedData, absolute_path
from vaekit.data.download import DatasetNotFoundError, search_dirs
from vaekit.data.formats import load_npz
from vaekit.data.grouped import TASKS, GroupedData, GroupedSource, Task, as_targets
from vaekit.data.leaf import ALL_LETTERS, encode_text

__all__ = ["GroupedTable", "HLVNNFolder", "HighSchoolBeyond", "OlivettiFaces", "ShakespeareRoles", "find_file",
           "hlvnn_levels"]


def find_file(relative: str, root: str | None = None) -> Path:
    """Path of a dataset file: ``root / relative``, else the first hit in ``$VAEKIT_DATA``, the user cache.

    Raises
    ------
    FileNotFoundError
        ``root`` does not exist, or (:class:`~vaekit.data.download.DatasetNotFoundError`)
        the file is in none of the folders searched; the message lists them.

    Examples
    --------
    >>> find_file("mnist/mnist.npz", root="/nonexistent")
    Traceback (most recent call last):
    ...
    FileNotFoundError: root='/nonexistent' does not exist (or is not a folder)
    """
    if root is not None and not Path(root).expanduser().is_dir():
        raise FileNotFoundError(f"root={os.fspath(root)!r} does not exist (or is not a folder)")
    dirs = search_dirs(root)
    for folder, _ in dirs:
        if (folder / relative).is_file():
            return folder / relative
    looked = "\n".join(f"    {folder} ({origin})" for folder, origin in dirs)
    raise DatasetNotFoundError(
        f"{relative} not found. Looked in:\n{looked}\nFix: export VAEKIT_DATA=/path/to/data (the folder holding "
        f"{relative}) or pass root=... . This dataset is not downloadable."
    )


class _FileGrouped(GroupedData):
    """Shared ``root`` handling of the file-backed grouped datasets."""

    def _init_root(self, root: str | None) -> None:
        if root is not None and not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a str path or None; got {root!r} of type {type(root).__name__}")
        self.root = None if root is None else os.fspath(root)


def _columns(what: str, available: list[str], target: str, features: tuple[str, ...] | None) -> tuple[int, list[int]]:
    """Column indices of ``target`` and ``features`` (default: every other column), checked."""
    if target not in available:
        raise ValueError(f"target={target!r} is not a column of {what}; choose from {available}")
    chosen = [c for c in available if c != target] if features is None else list(features)
    unknown = [c for c in chosen if c not in available]
    if unknown or not chosen or target in chosen or len(set(chosen)) != len(chosen):
        raise ValueError(
            f"features={features!r} must be distinct columns of {what} other than the target {target!r}, "
            f"at least one; available: {available}"
        )
    return available.index(target), [available.index(c) for c in chosen]


_TABLES = {  # name: (file, level name, default target, default features)
    "sleepstudy": ("sleepstudy.npz", "subject", "reaction_ms", ("days",)),
    "orthodont": ("orthodont.npz", "child", "distance_mm", ("age", "female")),
    "grunfeld": ("grunfeld.npz", "firm", "invest", ("value", "capital")),
}


class GroupedTable(_FileGrouped):
    """A classic multilevel table (regression), one group level.

    ============  ========  ==========================  ====================
    name          level     default target              default features
    ============  ========  ==========================  ====================
    sleepstudy    subject   reaction_ms (18 subjects)   days
    orthodont     child     distance_mm (27 children)   age, female
    grunfeld      firm      invest (11 firms)           value, capital
    ============  ========  ==========================  ====================

    Parameters
    ----------
    name : {"sleepstudy", "orthodont", "grunfeld"}
    root : str, optional
        Folder holding ``grouped_tabular/<name>.npz`` (default ``$VAEKIT_DATA``).
    target : str, optional
        Column predicted (``y``, float32 (n,)); default as in the table.
    features : tuple of str, optional
        Columns of ``x`` (float32 (n, d)); default as in the table.
    split, val_fraction, test_fraction, seed, standardize, standardize_y
        See :class:`~vaekit.data.grouped.GroupedArrays`.
    """

    def __init__(
        self,
        name: Literal["sleepstudy", "orthodont", "grunfeld"],
        root: str | None = None,
        *,
        target: str | None = None,
        features: tuple[str, ...] | None = None,
        split: Literal["example", "group"] = "example",
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 0,
        standardize: bool = False,
        standardize_y: bool = False,
    ) -> None:
        if name not in _TABLES:
            raise ValueError(f"name={name!r} is not accepted; use one of {sorted(_TABLES)}")
        self._init_root(root)
        self._init_split(split, val_fraction, test_fraction, seed, 0, standardize, standardize_y)
        default_target, default_features = _TABLES[name][2:]
        self.name, self.target = name, default_target if target is None else target
        self.features = default_features if features is None and target is None else features
        self.features = None if self.features is None else tuple(self.features)

    def _load_source(self) -> GroupedSource:
        file, level, _, _ = _TABLES[self.name]
        path = find_file(f"grouped_tabular/{file}", self.root)
        arrays = load_npz(path, ["x", "group", "feature_names", "group_names"])
        t, cols = _columns(str(path), [str(c) for c in arrays["feature_names"]], self.target, self.features)
        x, y = arrays["x"][:, cols], arrays["x"][:, t]
        groups = arrays["group_names"][arrays["group"]]
        return GroupedSource(torch.from_numpy(np.ascontiguousarray(x, np.float32)),
                             torch.from_numpy(np.ascontiguousarray(y, np.float32)), [groups], [level], "regression")


_SCHOOL = ("sector_catholic", "size", "meanses")


class HighSchoolBeyond(_FileGrouped):
    """High School and Beyond: 7,185 students in 160 schools (regression, schools as the group level).

    ``y`` is a student column (default math achievement), ``x`` the student ``features``
    plus, optionally, school-level covariates repeated for each student.

    Parameters
    ----------
    root : str, optional
        Folder holding ``grouped_tabular/hsb_mathachieve.npz`` (default ``$VAEKIT_DATA``).
    target : str
        One of ``minority``, ``female``, ``ses``, ``mathach``.
    features : tuple of str
        Student columns of ``x``.
    school_features : tuple of str
        School columns appended to ``x``: any of ``sector_catholic``, ``size``, ``meanses``.
    split, val_fraction, test_fraction, seed, standardize, standardize_y
        See :class:`~vaekit.data.grouped.GroupedArrays` (``split="group"`` holds out schools).

    Examples
    --------
    >>> data = HighSchoolBeyond(test_fraction=0.2)  # doctest: +SKIP
    >>> data.setup(); len(data.group_names[0]), data.train["x"].shape[1]  # doctest: +SKIP
    (160, 3)
    """

    def __init__(
        self,
        root: str | None = None,
        *,
        target: str = "mathach",
        features: tuple[str, ...] = ("minority", "female", "ses"),
        school_features: tuple[str, ...] = (),
        split: Literal["example", "group"] = "example",
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 0,
        standardize: bool = False,
        standardize_y: bool = False,
    ) -> None:
        self._init_root(root)
        bad = [s for s in school_features if s not in _SCHOOL] if isinstance(school_features, (tuple, list)) else None
        if bad is None or bad:
            raise ValueError(f"school_features={school_features!r} must be a tuple of {list(_SCHOOL)}")
        self._init_split(split, val_fraction, test_fraction, seed, 0, standardize, standardize_y)
        self.target, self.features, self.school_features = target, tuple(features), tuple(school_features)

    def _load_source(self) -> GroupedSource:
        path = find_file("grouped_tabular/hsb_mathachieve.npz", self.root)
        arrays = load_npz(path)
        t, cols = _columns(str(path), [str(c) for c in arrays["feature_names"]], self.target, self.features)
        group = arrays["group"]
        parts = [arrays["x"][:, cols]] + [arrays[f"school_{s}"][group][:, None] for s in self.school_features]
        x = np.concatenate([p.astype(np.float32) for p in parts], axis=1)
        y = arrays["x"][:, t].astype(np.float32)
        return GroupedSource(torch.from_numpy(x), torch.from_numpy(y), [arrays["group_names"][group]], ["school"],
                             "regression")


class ShakespeareRoles(_FileGrouped):
    """Shakespeare's plays by speaking role: LEAF-style next-character prediction, two levels.

    For each (play, role) its lines are joined in order (lines of one speech with a space,
    speeches with a newline), encoded in LEAF's 80-character vocabulary
    (:data:`vaekit.data.leaf.ALL_LETTERS`; unknown characters -> index 79) and cut into
    windows of ``seq_len + 1`` characters starting every ``stride`` characters. Each window
    gives ``x`` = its first ``seq_len`` token ids (int64 (n, seq_len)) and ``y`` = the next
    character (``target="next"``, classification, int64 (n,)) or the window shifted by one
    (``target="sequence"``, int64 (n, seq_len)). ``n_classes`` = 80.

    Group levels: ``"role"`` (raw id ``"play/ROLE"``) and ``"play"``.

    Parameters
    ----------
    root : str, optional
        Folder holding ``shakespeare/shakespeare_lines.npz`` (default ``$VAEKIT_DATA``).
    seq_len : int
    target : {"next", "sequence"}
    stride : int, optional
        Characters between window starts; default ``seq_len`` (every character predicted
        once with ``target="sequence"``).
    min_lines : int
        Roles with fewer lines are dropped.
    max_groups : int, optional
        Keep only the roles with the most lines (ties: the lower raw index).
    max_windows_per_group : int, optional
        Keep at most this many windows per role, evenly spaced over its text.
    split, split_level, val_fraction, test_fraction, seed
        See :class:`~vaekit.data.grouped.GroupedArrays` (``split_level=1`` holds out plays).
    """

    def __init__(
        self,
        root: str | None = None,
        *,
        seq_len: int = 80,
        target: Literal["next", "sequence"] = "next",
        stride: int | None = None,
        min_lines: int = 10,
        max_groups: int | None = None,
        max_windows_per_group: int | None = None,
        split: Literal["example", "group"] = "example",
        split_level: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int = 0,
    ) -> None:
        self._init_root(root)
        if target not in ("next", "sequence"):
            raise ValueError(f"target={target!r} is not accepted; use 'next' or 'sequence'")
        self.seq_len = check_int("seq_len", seq_len, minimum=1)
        self.stride = self.seq_len if stride is None else check_int("stride", stride, minimum=1)
        self.min_lines = check_int("min_lines", min_lines, minimum=1)
        self.max_groups = None if max_groups is None else check_int("max_groups", max_groups, minimum=1)
        cap = max_windows_per_group
        self.max_windows_per_group = None if cap is None else check_int("max_windows_per_group", cap, minimum=1)
        if split_level not in (0, 1):
            raise ValueError(f"split_level={split_level!r} is not accepted; use 0 (roles) or 1 (plays)")
        self._init_split(split, val_fraction, test_fraction, seed, split_level)
        self.target = target

    def _windows(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        width = self.seq_len + 1
        if len(tokens) < width:
            return np.zeros((0, self.seq_len), np.int64), np.zeros((0,) if self.target == "next" else (0, self.seq_len), np.int64)
        starts = np.arange(0, len(tokens) - width + 1, self.stride)
        if self.max_windows_per_group is not None and len(starts) > self.max_windows_per_group:
            starts = starts[np.unique(np.linspace(0, len(starts) - 1, self.max_windows_per_group).round().astype(int))]
        windows = np.lib.stride_tricks.sliding_window_view(tokens, width)[starts]
        return windows[:, :-1], (windows[:, -1] if self.target == "next" else windows[:, 1:])

    def _load_source(self) -> GroupedSource:
        path = find_file("shakespeare/shakespeare_lines.npz", self.root)
        a = load_npz(path, ["text", "group", "play", "speech", "group_names", "play_names"])
        group, speech = a["group"], a["speech"]
        counts = np.bincount(group, minlength=len(a["group_names"]))
        keep = np.flatnonzero(counts >= self.min_lines)
        if self.max_groups is not None:
            keep = np.sort(keep[np.argsort(-counts[keep], kind="stable")[: self.max_groups]])
        order = np.argsort(group, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)])
        xs, ys, roles, plays = [], [], [], []
        for g in keep:
            rows = order[starts[g] : starts[g + 1]]
            pieces = [str(a["text"][rows[0]])]
            for prev, row in zip(rows[:-1], rows[1:]):
                pieces.append((" " if speech[row] == speech[prev] else "\n") + str(a["text"][row]))
            x, y = self._windows(encode_text("".join(pieces)))
            if len(x):
                xs.append(x)
                ys.append(y)
                roles.append(np.full(len(x), str(a["group_names"][g]), dtype=object))
                plays.append(np.full(len(x), str(a["play_names"][a["play"][rows[0]]]), dtype=object))
        if not xs:
            raise ValueError(
                f"no role of {path} has min_lines={self.min_lines} lines and seq_len + 1 = {self.seq_len + 1} characters"
            )
        x_t, y_t = torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))
        task = "classification" if self.target == "next" else "sequence"
        groups = [np.concatenate(roles).astype(str), np.concatenate(plays).astype(str)]
        return GroupedSource(x_t, y_t, groups, ["role", "play"], task, len(ALL_LETTERS))


class OlivettiFaces(_FileGrouped):
    """The Olivetti (ORL) faces: 40 people x 10 images of 57x47 grey levels in [0, 1], person as the group.

    Grouped task (``target``):

    - ``"lower_half"`` (default, regression): ``x`` = the top ``split_row`` rows of a face,
      shape (1, split_row, 47); ``y`` = the remaining rows, flattened, float32
      (n, (57 - split_row) * 47). A person's latent can carry what the top half does not
      show about how that person's lower face looks (face completion). Split by example
      (each person keeps training images) or by person (completion of unseen faces).
    - ``"person"`` (classification, 40 classes): ``x`` = the whole face (1, 57, 47),
      ``y`` = the person id. The label equals the group, so this is a sanity check of the
      group machinery (a group latent can simply memorize it), not a benchmark.

    Parameters
    ----------
    root : str, optional
        Folder holding ``olivetti_faces/olivetti_faces.npz`` (default ``$VAEKIT_DATA``).
    target : {"lower_half", "person"}
    split_row : int
        First row of the predicted lower part, in [1, 56].
    split, val_fraction, test_fraction, seed, standardize, standardize_y
        See :class:`~vaekit.data.grouped.GroupedArrays`.
    """

    def __init__(
        self,
        root: str | None = None,
        *,
        target: Literal["lower_half", "person"] = "lower_half",
        split_row: int = 28,
        split: Literal["example", "group"] = "example",
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 0,
        standardize: bool = False,
        standardize_y: bool = False,
    ) -> None:
        self._init_root(root)
        if target not in ("lower_half", "person"):
            raise ValueError(f"target={target!r} is not accepted; use 'lower_half' or 'person'")
        self.split_row = check_int("split_row", split_row, minimum=1)
        if self.split_row > 56:
            raise ValueError(f"split_row={split_row} must be in [1, 56] (the faces have 57 rows)")
        self._init_split(split, val_fraction, test_fraction, seed, 0, standardize, standardize_y)
        self.target = target

    def _load_source(self) -> GroupedSource:
        path = find_file("olivetti_faces/olivetti_faces.npz", self.root)
        a = load_npz(path, ["x", "group"])
        if a["x"].ndim != 3 or a["x"].shape[1:] != (57, 47):
            raise ValueError(f"{path}: faces must have shape (n, 57, 47); got {a['x'].shape}")
        faces = torch.from_numpy(a["x"].astype(np.float32) / 255.0).unsqueeze(1)
        group = a["group"].astype(np.int64)
        if self.target == "person":
            return GroupedSource(faces, torch.from_numpy(group), [group], ["person"], "classification", int(group.max()) + 1)
        x, y = faces[:, :, : self.split_row], faces[:, 0, self.split_row :].reshape(len(faces), -1)
        return GroupedSource(x.contiguous(), y.contiguous(), [group], ["person"], "regression")


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


class HLVNNFolder(PathGroupedData):
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
        absolute = absolute_path(path, "a str (the HLVNN folder)")
        if task not in TASKS:
            raise ValueError(f"task={task!r} is not accepted; use one of {list(TASKS)}")
        if tokens is not None and not isinstance(tokens, bool):
            raise TypeError(f"tokens must be a bool or None (None: integer x are tokens); got {tokens!r}")
        if level_names is not None and (not isinstance(level_names, (list, tuple))
                                        or not all(isinstance(s, str) for s in level_names)):
            raise TypeError(f"level_names must be a list of str; got {level_names!r}")
        self._init_split(split, val_fraction, 0.0, seed, split_level, standardize, standardize_y)
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
