"""A grouped dataset as loaded (:class:`GroupedSource`) and the checks it must pass."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from vaekit.data._checks import check_int

__all__ = ["TASKS", "GroupedSource", "as_targets", "check_source"]

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
