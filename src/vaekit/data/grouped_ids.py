"""Group ids of grouped datasets: raw ids -> contiguous ids, level consistency, and splits.

Raw group ids may be strings or non-negative integers. Within a level they are mapped to
contiguous ids ``0..G-1`` by **sorting**: integers numerically, anything else as strings
(a level mixing strings and integers is sorted as strings). The sorted raw ids, written
as strings, are the level's ``group_names``, so ``group_names[level][id]`` gives back the
raw id and the mapping is rebuilt the same way from the same data.

Examples
--------
>>> import numpy as np
>>> ids, names = map_level(np.array(["b", "a", "b"]))
>>> ids.tolist(), names
([1, 0, 1], ['a', 'b'])
>>> map_level(np.array([10, 2, 10]))[1]
['2', '10']
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "UnknownGroupError",
    "as_group_levels",
    "check_consistent_levels",
    "encode_level",
    "map_level",
    "raw_keys",
    "split_indices",
]


class UnknownGroupError(ValueError):
    """A raw group id that the dataset does not know (attributes ``level``, ``level_name``, ``raw_id``)."""

    def __init__(self, message: str, level: int, level_name: str, raw_id: str) -> None:
        super().__init__(message)
        self.level, self.level_name, self.raw_id = level, level_name, raw_id


def _is_array_like(value: Any) -> bool:
    return isinstance(value, (np.ndarray, Tensor, list, tuple))


def as_group_levels(name: str, groups: Any) -> tuple[list[np.ndarray], list[str] | None]:
    """Split the accepted forms of group ids into one 1-D raw-id array per level.

    Parameters
    ----------
    name : str
        Argument name used in error messages.
    groups : array-like of shape (n,) or (n, L), sequence of L arrays of shape (n,), or mapping
        One level (a 1-D array or list of raw ids), several levels as the columns of a 2-D
        array, a list of per-level arrays (lowest level first), or ``{level_name: ids}``.

    Returns
    -------
    levels : list of ndarray of shape (n,)
    names : list of str or None
        Level names when ``groups`` was a mapping.

    Examples
    --------
    >>> levels, names = as_group_levels("groups", [np.array(["a", "b"]), np.array([0, 0])])
    >>> len(levels), names
    (2, None)
    """
    names: list[str] | None = None
    if isinstance(groups, Mapping):
        names = [str(k) for k in groups]
        parts = list(groups.values())
    elif isinstance(groups, Tensor) or isinstance(groups, np.ndarray):
        array = groups.detach().cpu().numpy() if isinstance(groups, Tensor) else groups
        if array.ndim == 1:
            parts = [array]
        elif array.ndim == 2:
            parts = [array[:, j] for j in range(array.shape[1])]
        else:
            raise ValueError(f"{name} must have shape (n,) or (n, n_levels); got shape {tuple(array.shape)}")
    elif isinstance(groups, (list, tuple)):
        if groups and all(_is_array_like(g) for g in groups):
            parts = list(groups)
        else:
            parts = [groups]
    else:
        raise TypeError(
            f"{name} must be an array of raw group ids (n,), an (n, n_levels) array, a list of per-level "
            f"arrays or a dict {{level_name: ids}}; got {type(groups).__name__}"
        )
    if not parts:
        raise ValueError(f"{name} holds no group level; give at least one array of group ids")
    levels = []
    for level, part in enumerate(parts):
        array = part.detach().cpu().numpy() if isinstance(part, Tensor) else np.asarray(part)
        if array.ndim != 1:
            raise ValueError(f"{name} level {level} must be 1-D (one raw id per example); got shape {array.shape}")
        levels.append(array)
    return levels, names


def raw_keys(name: str, level: int, raw: np.ndarray) -> tuple[np.ndarray, bool]:
    """Raw ids of one level as (int64 values, True) or (str values, False), checked."""
    kind = raw.dtype.kind
    where = f"{name} level {level}"
    if kind in "iu":
        values = raw.astype(np.int64)
        if len(values) and int(values.min()) < 0:
            raise ValueError(f"{where} holds a negative group id {int(values.min())}; ids must be strings or integers >= 0")
        return values, True
    if kind in "US":
        return raw.astype(str), False
    if kind == "O":
        for v in raw:
            if isinstance(v, bool) or not isinstance(v, (str, numbers.Integral)):
                raise TypeError(f"{where} holds {v!r} of type {type(v).__name__}; group ids must be strings or integers")
            if isinstance(v, numbers.Integral) and v < 0:
                raise ValueError(f"{where} holds a negative group id {v}; ids must be strings or integers >= 0")
        if all(isinstance(v, numbers.Integral) for v in raw):
            return raw.astype(np.int64), True
        return np.array([str(v) for v in raw], dtype=str), False
    raise TypeError(
        f"{where} has dtype {raw.dtype}; group ids must be strings or integers "
        "(cast integral floats with .astype(int))"
    )


def map_level(raw: np.ndarray, name: str = "groups", level: int = 0) -> tuple[np.ndarray, list[str]]:
    """Map one level's raw ids to contiguous int64 ids (sorted raw ids; see the module docstring).

    Parameters
    ----------
    raw : ndarray of shape (n,)
        Strings or non-negative integers.
    name, level : str, int
        Used in error messages.

    Returns
    -------
    ids : ndarray of shape (n,), int64
    group_names : list of str
        ``group_names[id]`` is the raw id, as a string.
    """
    values, _ = raw_keys(name, level, raw)
    unique, inverse = np.unique(values, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64), [str(v) for v in unique.tolist()]


def encode_level(raw: np.ndarray, group_names: Sequence[str], level: int, level_name: str) -> np.ndarray:
    """Contiguous ids of raw ids of one level; an unknown raw id raises :class:`UnknownGroupError`.

    Examples
    --------
    >>> encode_level(np.array([7, 3]), ["3", "7"], 0, "writer").tolist()
    [1, 0]
    >>> encode_level(np.array(["x"]), ["3", "7"], 0, "writer")
    Traceback (most recent call last):
    ...
    vaekit.data.grouped_ids.UnknownGroupError: unknown group id 'x' at level 0 ('writer'): ...
    """
    values, _ = raw_keys("groups", level, raw)
    lookup = {n: i for i, n in enumerate(group_names)}
    keys = [str(v) for v in values.tolist()]
    for key in keys:
        if key not in lookup:
            shown = ", ".join(repr(n) for n in list(group_names)[:5])
            raise UnknownGroupError(
                f"unknown group id {key!r} at level {level} ({level_name!r}): the dataset has "
                f"{len(group_names)} groups there ({shown}{', ...' if len(group_names) > 5 else ''}); "
                "a new group needs new-group inference",
                level, level_name, key,
            )
    return np.array([lookup[k] for k in keys], dtype=np.int64)


def check_consistent_levels(
    ids: Sequence[np.ndarray], group_names: Sequence[Sequence[str]], level_names: Sequence[str]
) -> list[list[int]]:
    """Check that every group belongs to one group of the next level; return those parents.

    Parameters
    ----------
    ids : sequence of L ndarrays of shape (n,)
        Contiguous ids per level, lowest level first.
    group_names, level_names
        Used in error messages.

    Returns
    -------
    list of L - 1 lists of int
        ``parents[l][g]`` is the level ``l + 1`` id of level-``l`` group ``g``.

    Examples
    --------
    >>> check_consistent_levels([np.array([0, 1, 1]), np.array([0, 0, 0])], [["a", "b"], ["p"]], ["role", "play"])
    [[0, 0]]
    """
    parents = []
    for level in range(len(ids) - 1):
        low, high = ids[level], ids[level + 1]
        pairs = np.unique(np.stack([low, high], axis=1), axis=0)
        counts = np.bincount(pairs[:, 0], minlength=len(group_names[level]))
        bad = np.flatnonzero(counts > 1)
        if len(bad):
            g = int(bad[0])
            owners = [group_names[level + 1][int(h)] for h in pairs[pairs[:, 0] == g, 1]]
            raise ValueError(
                f"group {group_names[level][g]!r} of level {level} ({level_names[level]!r}) belongs to "
                f"{len(owners)} groups of level {level + 1} ({level_names[level + 1]!r}): {owners[:5]}; each group "
                "must belong to exactly one group of the level above (give it a raw id unique across them)"
            )
        parent = np.zeros(len(group_names[level]), dtype=np.int64)
        parent[pairs[:, 0]] = pairs[:, 1]
        parents.append(parent.tolist())
    return parents


def _round(x: np.ndarray | float) -> np.ndarray:
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)


def split_indices(
    group_ids: np.ndarray, split: str, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train / validation / test indices of a grouped dataset, deterministic in ``seed``.

    - ``split="example"``: within each group, ``round(fraction * n_g)`` examples go to test
      and to validation, but every group keeps at least one training example (a group of
      one example stays in training).
    - ``split="group"``: ``round(fraction * G)`` whole groups (at least one when the fraction
      is positive) go to test and to validation; the rest are the training groups.

    Parameters
    ----------
    group_ids : ndarray of shape (n,), int64
        Contiguous ids of the level the split follows.
    split : {"example", "group"}
    val_fraction, test_fraction : float
    seed : int

    Returns
    -------
    train, val, test : ndarray of int64
        Sorted example indices (val or test may be empty).

    Examples
    --------
    >>> g = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2])
    >>> tr, va, te = split_indices(g, "example", 0.0, 0.25, seed=0)
    >>> sorted(set(g[tr].tolist())), len(te)
    ([0, 1, 2], 2)
    """
    n = len(group_ids)
    rng = np.random.default_rng(seed)
    counts = np.bincount(group_ids)
    part = np.zeros(n, dtype=np.int64)  # 0 train, 1 val, 2 test
    if split == "example":
        order = rng.permutation(n)
        order = order[np.argsort(group_ids[order], kind="stable")]  # grouped, random within group
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - starts[group_ids[order]]
        hold = np.minimum(counts - 1, _round((val_fraction + test_fraction) * counts))
        n_test = np.minimum(hold, _round(test_fraction * counts))
        part[rank < hold[group_ids]] = 1
        part[rank < n_test[group_ids]] = 2
    elif split == "group":
        present = np.flatnonzero(counts > 0)
        sizes = [max(1, int(_round(f * len(present)))) if f > 0 else 0 for f in (test_fraction, val_fraction)]
        if sum(sizes) >= len(present):
            raise ValueError(
                f"split='group' cannot hold out {sizes[0]} test and {sizes[1]} validation groups of "
                f"{len(present)}: no training group would be left; lower test_fraction/val_fraction"
            )
        perm = present[rng.permutation(len(present))]
        which = np.zeros(len(counts), dtype=np.int64)
        which[perm[: sizes[0]]] = 2
        which[perm[sizes[0] : sizes[0] + sizes[1]]] = 1
        part = which[group_ids]
    else:
        raise ValueError(f"split={split!r} is not accepted; use 'example' or 'group'")
    return tuple(np.flatnonzero(part == k).astype(np.int64) for k in (0, 1, 2))  # type: ignore[return-value]


def to_long(ids: Sequence[np.ndarray]) -> Tensor:
    """Stack per-level id arrays into an int64 tensor of shape (n, L)."""
    return torch.from_numpy(np.stack([np.asarray(i, dtype=np.int64) for i in ids], axis=1))
