r"""The work budget, the memory cap per model call and the progress reports shared by the estimators.

**Work.** Every estimator counts its work in (sample, example) *pairs*: evaluations of the
model (a forward pass, or a forward and backward pass) on one latent sample of one example.
:func:`~vaekit.inference.iwae_log_likelihood` does ``len(x) * k`` of them, AIS
``len(x) * n_chains * (1 + (n_steps - 1) * leapfrog_steps)`` (its gradient evaluations),
local optimisation ``len(x) * (max_steps * k + (max_steps // check_every) * check_k + 2 * eval_k)``
(at most: a batch that converges stops early). Each estimator computes this before doing
anything and refuses more than :data:`WORK_BUDGET` pairs (hours of CPU time; the largest
protocol of Cremer et al. (2018), AIS with 100 chains and 10,000 steps on 1,000 points, is
just under it) with a :class:`WorkBudgetError` naming the arguments, unless called with
``force=True``.

**Memory.** Estimators that are given an explicit chunk or batch size check that one call of
the model fits: its (sample, example) pairs times an estimate of the bytes one pair needs
(:func:`pair_bytes`) must stay under half of the device's memory (:func:`memory_limit`).
Explicit sizes beyond that are refused with an error naming the argument, its value and
the largest accepted value; automatic sizes are capped to it.

**Progress.** ``progress=True`` shows a tqdm bar with the rate and the time left on a
terminal (or in a notebook); when stderr is not a terminal it writes a few plain lines
instead (a start line, one every 10 % at most every few seconds, one when done). A
callable is called as ``progress(done, total)`` in pairs, from 0 to ``total``, once per
estimate.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import torch

from .._checks import InvalidArgumentError

__all__ = ["WORK_BUDGET", "Work", "WorkBudgetError", "check_force", "check_progress", "memory_limit", "pair_bytes",
           "max_pairs", "progress_reporter"]

#: Most (sample, example) pairs one estimator call runs without ``force=True``.
WORK_BUDGET = 10**10

#: A progress setting: off, on, or a callback ``progress(done, total)``.
Progress = Union[bool, Callable[[int, int], Any]]


class WorkBudgetError(ValueError):
    """An estimate asks for more work than :data:`WORK_BUDGET` and ``force`` was not given.

    Attributes
    ----------
    work : Work
        What was asked: the estimator, the formula, the arguments and the pairs.
    budget : int
        The budget it exceeds.
    """

    def __init__(self, work: Work, budget: int) -> None:
        self.work, self.budget = work, budget
        super().__init__(self.describe())

    def describe(self, names: Mapping[str, str] | None = None, force: str = "force=True",
                 adjustable: Sequence[str] | None = None) -> str:
        """The message, with the arguments spelled as ``names`` maps them (e.g. to CLI flags).

        Parameters
        ----------
        names : mapping of str to str, optional
            Display name of each argument (default: its Python name).
        force : str
            How to spell the override.
        adjustable : sequence of str, optional
            The arguments the message suggests lowering (default: those of the work that
            lower it).

        Returns
        -------
        str
        """
        w = self.work
        label = {a: (names or {}).get(a, w.labels.get(a, a)) for a in w.arguments}
        spelled = w.formula.format(**label)
        values = w.formula.format(**{a: f"{v:,}" for a, v in w.arguments.items()})
        lower = [label[a] for a in (w.lower or w.arguments if adjustable is None else adjustable)]
        lower_text = " or ".join([", ".join(lower[:-1]), lower[-1]] if len(lower) > 1 else lower)
        return (f"{w.estimator} would evaluate {w.pairs:.3g} (sample, example) pairs, {spelled} = {values}, more than "
                f"the work budget of {self.budget:.0e} pairs (hours of computing; "
                f"vaekit.inference.budget.WORK_BUDGET). Lower {lower_text}, or pass {force} to run it anyway")


@dataclass(frozen=True)
class Work:
    """The work one estimator call asks for, in (sample, example) pairs.

    Parameters
    ----------
    estimator : str
        Name of the estimator (its function name).
    formula : str
        How the pairs follow from the arguments, for the message: a format string with one
        ``{name}`` field per argument, e.g. ``"{n} x {k}"``.
    arguments : dict of str to int
        The value of every argument in the formula.
    pairs : int
        The pairs that formula gives.
    labels : dict of str to str
        Display names of arguments that are not keyword arguments (``{"n": "len(x)"}``).
    lower : tuple of str
        The arguments whose lowering lowers the work (default: all).

    Examples
    --------
    >>> w = Work("iwae_log_likelihood", "{n} x {k}", {"n": 10, "k": 5000}, 50000, {"n": "len(x)"})
    >>> w.check(force=False)
    50000
    """

    estimator: str
    formula: str
    arguments: dict[str, int]
    pairs: int
    labels: dict[str, str] = field(default_factory=dict)
    lower: tuple[str, ...] = ()

    def check(self, force: bool) -> int:
        """The pairs, or :class:`WorkBudgetError` when they exceed the budget and ``force`` is False."""
        if self.pairs > WORK_BUDGET and not force:
            raise WorkBudgetError(self, WORK_BUDGET)
        return self.pairs


def check_force(force: Any) -> bool:
    """``force`` must be a bool.

    >>> check_force(True)
    True
    """
    if not isinstance(force, bool):
        raise InvalidArgumentError(f"force must be True or False, got {force!r} of type {type(force).__name__}")
    return force


def check_progress(progress: Any) -> Progress:
    """``progress`` must be a bool or a callable ``progress(done, total)``.

    >>> check_progress(False)
    False
    """
    if isinstance(progress, bool) or callable(progress):
        return progress
    raise InvalidArgumentError(f"progress must be True, False or a callable progress(done, total), got {progress!r} "
                    f"of type {type(progress).__name__}")


# ----------------------------------------------------------------------------- memory
def memory_limit(device: torch.device) -> int:
    """Bytes one call of the model may take: half of the device's memory.

    CUDA: the GPU's total memory; the CPU (and other devices): the machine's physical
    memory (16 GiB when it cannot be read).
    """
    total = 16 * 2**30
    if device.type == "cuda" and torch.cuda.is_available():
        total = torch.cuda.get_device_properties(device.index or 0).total_memory
    else:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):
            pass
    return int(total) // 2


def pair_bytes(model: torch.nn.Module, data_shape: tuple[int, ...]) -> int:
    """A rough upper estimate of the memory one (sample, example) pair takes in one model call.

    Four live activations of the size of the example plus the widest layer (the output
    size of a weight matrix; for a convolution its channels times the example's spatial
    size), in the model's floating-point precision.

    >>> from vaekit.models import mlp_vae
    >>> pair_bytes(mlp_vae([784], 50, hidden=[200, 200]), (784,))
    25088
    """
    size = math.prod(data_shape)
    spatial = math.prod(data_shape[1:]) if len(data_shape) > 1 else 1
    widest, itemsize = 0, 4
    for p in model.parameters():
        if p.is_floating_point():
            itemsize = max(itemsize, p.element_size())
        if p.dim() >= 2:
            widest = max(widest, int(p.shape[0]) * (spatial if p.dim() > 2 else 1))
    return 4 * (size + widest) * itemsize


def max_pairs(model: torch.nn.Module, data_shape: tuple[int, ...], device: torch.device, per_pair: int | None = None,
              per_example: int = 0, samples: int = 1) -> int:
    """Most pairs per call that fit :func:`memory_limit` (at least 1).

    With ``per_example`` bytes that every example costs on top of its ``samples`` pairs,
    the result counts examples instead: the most examples of ``samples`` pairs each.
    """
    per_pair = pair_bytes(model, data_shape) if per_pair is None else per_pair
    return max(1, memory_limit(device) // max(1, samples * per_pair + per_example))


def too_large(given: Mapping[str, int], maximum: int, what: str, device: torch.device,
              optional: bool = True) -> ValueError:
    """The error for explicit sizes whose call would not fit in memory.

    ``given`` holds the arguments at fault (one or two), ``maximum`` the largest accepted
    value of the first one (with the others as given), ``what`` what it counts;
    ``optional`` says whether the first may be left None.
    """
    names = list(given)
    shown = ", ".join(f"{n}={v:,}" for n, v in given.items())
    others = f" with {', '.join(f'{n}={given[n]:,}' for n in names[1:])}" if len(names) > 1 else ""
    return ValueError(f"{shown}: one call would hold more {what} than fit in half of the {device.type} memory "
                      f"({memory_limit(device) / 2**30:.1f} GiB); the largest accepted {names[0]} is {maximum:,}{others}"
                      + (" (or leave it None to choose it automatically)" if optional else ""))


# ----------------------------------------------------------------------------- progress
class _Null:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class _Callback:
    def __init__(self, fn: Callable[[int, int], Any], total: int) -> None:
        self.fn, self.total, self.done = fn, total, 0
        fn(0, total)

    def update(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + int(n))
        self.fn(self.done, self.total)

    def close(self) -> None:
        pass


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class _Lines:
    """Plain progress lines for a stderr that is not a terminal (no carriage returns)."""

    MIN_SECONDS = 5.0  # between two lines at 10 % marks
    MAX_SECONDS = 600.0  # a line at least this often

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc, self.done = total, desc, 0
        self.start = self.last = time.perf_counter()
        self.mark, self.finished = 0, False
        self._write(f"{desc}: {total:,} pairs")

    def _write(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def update(self, n: int = 1) -> None:
        if self.finished:
            return
        self.done = min(self.total, self.done + int(n))
        now = time.perf_counter()
        mark, finished = 10 * self.done // max(1, self.total), self.done >= self.total
        if not (finished or (mark > self.mark and now - self.last >= self.MIN_SECONDS)
                or now - self.last >= self.MAX_SECONDS):
            return
        self.mark, self.last, self.finished = mark, now, finished
        elapsed = now - self.start
        left = elapsed * (self.total - self.done) / self.done if self.done else math.nan
        eta = "done" if finished else f"ETA {_duration(left)}" if math.isfinite(left) else "ETA ?"
        self._write(f"{self.desc}: {100 * self.done / max(1, self.total):3.0f}% ({self.done:,}/{self.total:,} pairs), "
                    f"{_duration(elapsed)} elapsed, {eta}")

    def close(self) -> None:
        pass


class _Reporter:
    """A context manager around one of the progress sinks."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink

    def __enter__(self) -> _Reporter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.sink.close()

    def update(self, n: int = 1) -> None:
        self.sink.update(n)


def progress_reporter(progress: Progress, total: int, desc: str) -> _Reporter:
    """A progress report over ``total`` pairs: ``with progress_reporter(...) as bar: bar.update(n)``.

    Parameters
    ----------
    progress : bool or callable
        False: nothing. True: a tqdm bar with the time left when stderr is a terminal (or in
        a notebook), else a few plain lines on stderr. A callable: called as
        ``progress(done, total)``, first with ``done = 0``.
    total : int
        The pairs of the whole estimate.
    desc : str
        What is estimated (the first words of the bar or line).

    Returns
    -------
    a context manager with ``update(n)``.

    Examples
    --------
    >>> seen = []
    >>> with progress_reporter(lambda done, total: seen.append((done, total)), 10, "IWAE") as bar:
    ...     bar.update(4); bar.update(6)
    >>> seen
    [(0, 10), (4, 10), (10, 10)]
    """
    if progress is False or progress is None:
        return _Reporter(_Null())
    if callable(progress) and not isinstance(progress, bool):
        return _Reporter(_Callback(progress, total))
    if sys.stderr is not None and (getattr(sys.stderr, "isatty", lambda: False)() or "ipykernel" in sys.modules):
        from tqdm.auto import tqdm

        return _Reporter(tqdm(total=total, desc=desc, unit=" pairs", unit_scale=True, dynamic_ncols=True,
                              file=sys.stderr, mininterval=0.5))
    return _Reporter(_Lines(total, desc))
