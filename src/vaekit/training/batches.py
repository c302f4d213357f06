"""Batching of the training split: by index on the device for in-memory tensors, or a
``DataLoader`` for datasets; either way the same seeded per-epoch permutation, sliced per rank."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Union

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["Batch", "batch_len", "take", "check_batch_dict", "epoch_permutation", "rank_indices", "IndexBatches",
           "LoaderBatches"]

#: One split or batch of in-memory data: a Tensor of examples, or a dict of Tensors that share
#: their first dimension (e.g. ``{"x": ..., "y": ..., "groups": ...}`` for grouped data).
Batch = Union[Tensor, dict[str, Tensor]]


def batch_len(b: Batch) -> int:
    """Number of examples in a Tensor or a dict of Tensors.

    >>> batch_len({"x": torch.zeros(3, 2), "y": torch.zeros(3)})
    3
    """
    if isinstance(b, Mapping):
        return len(next(iter(b.values()))) if b else 0
    return len(b)


def take(b: Batch, index: Tensor | slice) -> Batch:
    """The examples ``index`` (indices or a slice) of a Tensor or of every Tensor of a dict.

    >>> take({"x": torch.arange(4), "y": torch.arange(4) * 10}, slice(1, 3))
    {'x': tensor([1, 2]), 'y': tensor([10, 20])}
    """
    if isinstance(index, Tensor) and index.dim() == 1 and index.dtype in (torch.int64, torch.int32):
        # index_select copies whole rows: a few times faster than b[index] on a CPU (the same rows)
        if isinstance(b, Mapping):  # (an index on another device moves, as b[index] accepts it)
            return {k: v.index_select(0, index if index.device == v.device else index.to(v.device))
                    for k, v in b.items()}
        return b.index_select(0, index if index.device == b.device else index.to(b.device))
    if isinstance(b, Mapping):
        return {k: v[index] for k, v in b.items()}
    return b[index]


def check_batch_dict(b: Mapping[str, Any], name: str) -> None:
    """Check that a dict split holds Tensors with the same (non-zero) first dimension and finite floats.

    Raises
    ------
    TypeError, ValueError
        Naming the split, the key and what was found.

    >>> check_batch_dict({"x": torch.zeros(2, 3), "y": torch.zeros(3)}, "data.train")
    Traceback (most recent call last):
    ...
    ValueError: data.train['y'] has 3 examples but data.train['x'] has 2; every tensor of a split needs the same first dimension
    """
    if not b:
        raise ValueError(f"{name} is an empty dict; a split holds at least one tensor")
    first = None
    for k, v in b.items():
        if not isinstance(v, Tensor):
            raise TypeError(f"{name}[{k!r}] must be a torch.Tensor, got {type(v).__name__}")
        if v.dim() == 0:
            raise ValueError(f"{name}[{k!r}] is a 0-dim tensor; every tensor of a split has the examples first")
        if first is None:
            first = (k, len(v))
        elif len(v) != first[1]:
            raise ValueError(f"{name}[{k!r}] has {len(v)} examples but {name}[{first[0]!r}] has {first[1]}; every "
                             f"tensor of a split needs the same first dimension")
        if torch.is_floating_point(v) and not bool(torch.isfinite(v).all()):
            bad = int((~torch.isfinite(v)).sum())
            raise ValueError(f"{name}[{k!r}] contains {bad} NaN/inf value(s); clean or impute the data first")


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The shuffled order of ``n`` examples in ``epoch``: a function of ``(seed, epoch)`` only.

    So a run resumed in the middle of an epoch recomputes exactly the order it was in.

    Examples
    --------
    >>> bool((epoch_permutation(10, 0, 3) == epoch_permutation(10, 0, 3)).all())
    True
    >>> sorted(epoch_permutation(5, 1, 0).tolist())
    [0, 1, 2, 3, 4]
    """
    g = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2**63))
    return torch.randperm(n, generator=g)


def rank_indices(n: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> Tensor:
    """This rank's share of the epoch permutation: every ``world_size``-th index from ``rank``.

    The permutation is cut to a multiple of ``world_size`` first, so every rank gets the
    same number of examples (the few left over change from epoch to epoch).

    Examples
    --------
    >>> a, b = rank_indices(7, 0, 0, 0, 2), rank_indices(7, 0, 0, 1, 2)
    >>> len(a), len(b), len(set(a.tolist()) | set(b.tolist()))
    (3, 3, 6)
    """
    perm = epoch_permutation(n, seed, epoch)
    if world_size > 1:
        perm = perm[: (n // world_size) * world_size][rank::world_size]
    return perm


def num_batches(n: int, batch_size: int, world_size: int = 1, drop_last: bool = False) -> int:
    """Batches per epoch on each rank."""
    per_rank = n // world_size
    return per_rank // batch_size if drop_last else -(-per_rank // batch_size)


class IndexBatches:
    """Batches of an in-memory tensor (already on its device), taken by index.

    Parameters
    ----------
    x : Tensor of shape (n, *data_shape), or dict of str to Tensor
        The training split, on the training device (a dict: Tensors sharing the first
        dimension, batched together).
    batch_size : int
        Examples per batch on this rank.
    seed : int
        Seed of the per-epoch permutations.
    rank, world_size : int
        This process and the number of processes.
    drop_last : bool
        Drop the last, smaller batch of each epoch.

    Examples
    --------
    >>> b = IndexBatches(torch.arange(10.0).unsqueeze(1), batch_size=4, seed=0)
    >>> len(b), [t.shape[0] for t in b.epoch(0)], [t.shape[0] for t in b.epoch(0, start=2)]
    (3, [4, 4, 2], [2])
    """

    def __init__(self, x: Batch, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False) -> None:
        self.x, self.batch_size, self.seed = x, int(batch_size), int(seed)
        self.rank, self.world_size, self.drop_last = int(rank), int(world_size), bool(drop_last)

    def __len__(self) -> int:
        return num_batches(batch_len(self.x), self.batch_size, self.world_size, self.drop_last)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of ``epoch``, from batch number ``start`` on."""
        device = next(iter(self.x.values())).device if isinstance(self.x, Mapping) else self.x.device
        idx = rank_indices(batch_len(self.x), self.seed, epoch, self.rank, self.world_size).to(device)
        for b in range(start, len(self)):
            yield take(self.x, idx[b * self.batch_size:(b + 1) * self.batch_size])


class _EpochSampler(Sampler[int]):
    """Yields this rank's indices of the epoch permutation, from a given offset on."""

    def __init__(self, n: int, seed: int, rank: int, world_size: int) -> None:
        self.n, self.seed, self.rank, self.world_size = n, seed, rank, world_size
        self.epoch, self.start = 0, 0

    def __iter__(self) -> Iterator[int]:
        idx = rank_indices(self.n, self.seed, self.epoch, self.rank, self.world_size)
        return iter(idx[self.start:].tolist())

    def __len__(self) -> int:
        return max(self.n // self.world_size - self.start, 0)


class LoaderBatches:
    """Batches of a map-style :class:`~torch.utils.data.Dataset` through a ``DataLoader``.

    Same order as :class:`IndexBatches` for the same seed. Batches stay on the CPU; the
    caller moves them to the device.
    """

    def __init__(self, dataset: Dataset[Any], batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False, num_workers: int = 0) -> None:
        self.n = len(dataset)  # type: ignore[arg-type]
        self.batch_size, self.world_size, self.drop_last = int(batch_size), int(world_size), bool(drop_last)
        self.sampler = _EpochSampler(self.n, int(seed), int(rank), int(world_size))
        # Its own generator: creating an iterator then draws no number from the global torch RNG,
        # and worker seeds are a function of (seed, epoch, start), so resuming reproduces them.
        self.generator = torch.Generator()
        self.loader = DataLoader(dataset, batch_size=self.batch_size, sampler=self.sampler, drop_last=self.drop_last,
                                 num_workers=num_workers, pin_memory=torch.cuda.is_available(),
                                 generator=self.generator)

    def __len__(self) -> int:
        return num_batches(self.n, self.batch_size, self.world_size, self.drop_last)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Any]:
        """The batches of ``epoch``, from batch number ``start`` on."""
        self.sampler.epoch, self.sampler.start = int(epoch), int(start) * self.batch_size
        self.generator.manual_seed(((self.sampler.seed * 1_000_003 + int(epoch)) * 1_000_003 + int(start)) % 2**63)
        return iter(self.loader)
