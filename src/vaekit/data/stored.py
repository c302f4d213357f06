"""In-memory data kept with a run: arrays saved in the run directory and a data module that reads them back.

A run trained from Python on :class:`~vaekit.data.ArrayData` or
:class:`~vaekit.data.grouped.GroupedArrays` has no config that rebuilds its data (the
arrays are not YAML). The trainer then saves what :func:`stored_arrays` returns as
``RUN/data/arrays.npz`` and writes a ``data`` section (with the file's SHA-256, checked
before every read) that reads them back with the same split:
:class:`~vaekit.data.ArrayFile` for ``ArrayData``, :class:`GroupedArrayFile` for
``GroupedArrays``. ``vaekit evaluate RUN`` then works like for a run started from a config.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from vaekit._recording import recorded_args, to_config
from vaekit.data._checks import _to_numpy, check_file_sha256, check_int, check_sha256_arg
from vaekit.data.arrays import ArrayData
from vaekit.data.formats import load_npz, npz_keys
from vaekit.data.grouped import TASKS, GroupedArrays, GroupedData, GroupedSource, as_targets
from vaekit.data.grouped_ids import raw_keys

__all__ = ["ARRAYS_NAME", "GroupedArrayFile", "can_store", "stored_arrays"]

#: File name of the stored arrays inside ``RUN/data/``.
ARRAYS_NAME = "arrays.npz"


class GroupedArrayFile(GroupedData):
    """A grouped dataset read from a ``.npz`` archive: ``x``, ``y`` and one array of raw ids per level.

    This is the file form of :class:`~vaekit.data.grouped.GroupedArrays` (the trainer writes
    one into the run directory of a run fitted on in-memory grouped arrays); any archive
    with this layout works. Arrays (read with ``allow_pickle=False``):

    - ``x``: (n, *x_shape) numbers (float32 features) or, with ``tokens=True``, token ids;
    - ``y``: the targets, as for ``GroupedArrays`` with ``task``;
    - ``groups_0``, ``groups_1``, ...: raw ids (integers >= 0 or strings) per level, lowest first.

    With ``sha256`` the file's hash is checked before it is read.

    Parameters
    ----------
    path : str
        The ``.npz`` archive.
    level_names : list of str
        One name per level (and as many ``groups_<i>`` arrays).
    task, n_classes, tokens, split, split_level, val_fraction, test_fraction, seed, standardize, standardize_y
        As in :class:`~vaekit.data.grouped.GroupedArrays`; the same arguments give the same
        splits from the same arrays.
    sha256 : str, optional
        The file's SHA-256 (64 hex digits), checked before it is read.

    Examples
    --------
    >>> import numpy as np, pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "grouped.npz"
    >>> np.savez(path, x=np.arange(12.0).reshape(6, 2), y=np.arange(6.0), groups_0=np.array(list("aabbcc")))
    >>> data = GroupedArrayFile(str(path), level_names=["writer"], task="regression", val_fraction=0.0,
    ...                         test_fraction=0.0)
    >>> data.setup()
    >>> data.group_names, data.train["x"].shape
    ([['a', 'b', 'c']], torch.Size([6, 2]))
    """

    def __init__(
        self,
        path: str,
        *,
        level_names: list[str],
        task: Literal["classification", "regression", "sequence"] = "classification",
        n_classes: int | None = None,
        tokens: bool = False,
        split: Literal["example", "group"] = "example",
        split_level: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int = 0,
        standardize: bool = False,
        standardize_y: bool = False,
        sha256: str | None = None,
    ) -> None:
        self.sha256 = check_sha256_arg(sha256)
        if not isinstance(path, (str, os.PathLike)) or Path(path).suffix != ".npz":
            raise ValueError(f"path must be a .npz archive; got {path!r}")
        if not isinstance(level_names, (list, tuple)) or not level_names or not all(isinstance(s, str) for s in level_names):
            raise TypeError(f"level_names must be a non-empty list of str (one per group level); got {level_names!r}")
        if task not in TASKS:
            raise ValueError(f"task={task!r} is not accepted; use one of {list(TASKS)}")
        if not isinstance(tokens, bool):
            raise TypeError(f"tokens must be a bool; got {tokens!r}")
        self.n_classes_arg = None if n_classes is None else check_int("n_classes", n_classes, minimum=1)
        self._init_split(split, val_fraction, test_fraction, seed, split_level, standardize, standardize_y)
        self.path, self.level_names_arg, self.task_name, self.tokens = os.fspath(path), list(level_names), task, tokens

    def _load_source(self) -> GroupedSource:
        path = Path(self.path)
        if not path.is_file():
            raise FileNotFoundError(f"path={self.path!r} does not exist")
        check_file_sha256(path, self.sha256)
        keys = ["x", "y", *(f"groups_{i}" for i in range(len(self.level_names_arg)))]
        extra = sorted(k for k in npz_keys(path) if k.startswith("groups_") and k not in keys)
        if extra:
            raise ValueError(f"{path} holds {extra} beyond the {len(self.level_names_arg)} level(s) of "
                             f"level_names={self.level_names_arg}; give one name per groups_<i> array")
        arrays = load_npz(path, keys)
        x, y = arrays["x"], arrays["y"]
        if x.ndim < 2 or x.dtype.kind not in ("iu" if self.tokens else "biuf"):
            raise TypeError(f"{path}: x must be an (n, *x_shape) array of {'token ids' if self.tokens else 'numbers'}; "
                            f"got {x.dtype} {x.shape}")
        x_t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64 if self.tokens else np.float32))
        y_t, k = as_targets(y, self.task_name, self.n_classes_arg)
        levels = [arrays[f"groups_{i}"] for i in range(len(self.level_names_arg))]
        return GroupedSource(x_t, y_t, levels, list(self.level_names_arg), self.task_name, k)


def can_store(data: Any) -> bool:
    """Whether :func:`stored_arrays` can save ``data`` (in-memory ``ArrayData`` or ``GroupedArrays``)."""
    if isinstance(data, GroupedArrays):
        return True  # it holds its source (GroupedArrays.source)
    args = recorded_args(data)
    return isinstance(data, ArrayData) and args is not None and "x" in args


def stored_arrays(data: Any, path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The arrays of an in-memory data module and a config section that reads them back from ``path``.

    Nothing is written: the caller saves ``arrays`` with ``np.savez`` at ``path`` and adds
    the file's SHA-256 to the section (``init_args["sha256"]``), as the trainer does for a
    run fitted on in-memory arrays (``RUN/data/arrays.npz``).

    Parameters
    ----------
    data : DataModule
        :class:`~vaekit.data.ArrayData` or :class:`~vaekit.data.grouped.GroupedArrays` (or a
        subclass that keeps their data); anything else returns ``None``.
    path : path
        Where the arrays will be (recorded absolute).

    Returns
    -------
    (dict of str to ndarray, dict) or None
        The arrays (str and numeric only, so ``allow_pickle=False`` reads them) and a
        ``class_path``/``init_args`` section with the arguments that give the same splits;
        ``None`` when ``data`` is not in memory.

    Examples
    --------
    >>> import numpy as np
    >>> from vaekit.data import ArrayData
    >>> arrays, section = stored_arrays(ArrayData(np.ones((10, 2)), val_fraction=0.2), "/tmp/arrays.npz")
    >>> sorted(arrays), section["class_path"], section["init_args"]["val_fraction"]
    (['x'], 'vaekit.data.ArrayFile', 0.2)
    """
    path = Path(path).absolute()
    if not can_store(data):
        return None
    args = recorded_args(data)
    if isinstance(data, GroupedArrays):
        source = data.source
        arrays = {"x": source.x.numpy(), "y": source.y.numpy()}
        for i, raw in enumerate(source.groups):
            arrays[f"groups_{i}"] = raw_keys("groups", i, np.asarray(raw))[0]  # int64 or str: maps the same
        init_args = {"path": str(path), "level_names": list(source.level_names), "task": source.task,
                     "n_classes": source.n_classes, "tokens": bool(source.x.dtype == torch.int64),
                     **{k: getattr(data, k) for k in ("split", "split_level", "val_fraction", "test_fraction", "seed",
                                                       "standardize", "standardize_y")}}
        return arrays, {"class_path": "vaekit.data.GroupedArrayFile", "init_args": to_config(init_args, "data")}
    if isinstance(data, ArrayData) and args is not None:
        arrays = {"x": _to_numpy("x", args["x"])}
        for key in ("labels", "test_x", "test_labels"):
            if args.get(key) is not None:
                arrays[key] = _to_numpy(key, args[key])
        init_args = {"path": str(path), "key": "x", "labels_key": "labels" if "labels" in arrays else None,
                     "val_fraction": data.val_fraction, "seed": data.seed,
                     "test_key": "test_x" if "test_x" in arrays else None,
                     "test_labels_key": "test_labels" if "test_labels" in arrays else None,
                     "binarize": data.binarize, "standardize": data.standardize}
        return arrays, {"class_path": "vaekit.data.ArrayFile", "init_args": to_config(init_args, "data")}
    return None
