"""The policy around the training step, for fits that keep everything in memory.

:class:`~vaekit.training.Trainer` drives :class:`~vaekit.training.step.TrainStep` with a run
directory (checkpoints, ``metrics.csv``, DDP: :mod:`vaekit.training.loop`). Estimators that
train without one (:class:`~vaekit.embedding.VAEEmbedder`) use :func:`fit_epochs`: the same
step, the same :class:`~vaekit.training.schedules.LRSchedule` and the same
:class:`Monitor` of the validation loss that the trainer uses for its best checkpoint and
early stopping, with the best weights kept in memory instead of in ``best.ckpt``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from .schedules import LRSchedule
from .step import TrainStep

__all__ = ["Monitor", "EpochFit", "fit_epochs"]


class Monitor:
    """The best value of a monitored loss (lower is better) and the checks since it improved.

    A value improves on the best when it is finite and lower by more than
    ``threshold * max(1, |best|)`` (any finite value improves on no best).

    Examples
    --------
    >>> m = Monitor(threshold=0.1)
    >>> [m.observe(v) for v in (10.0, 9.5, 8.0, float("nan"))], m.best, m.bad
    ([True, False, True, False], 8.0, 1)
    """

    def __init__(self, threshold: float = 0.0) -> None:
        if not (isinstance(threshold, (int, float)) and threshold >= 0):
            raise ValueError(f"threshold must be a float >= 0, got {threshold!r}")
        self.threshold = float(threshold)
        self.best = math.inf
        self.bad = 0

    def improves(self, value: float) -> bool:
        """Whether ``value`` would improve on the best."""
        if not math.isfinite(value):
            return False
        if not math.isfinite(self.best):
            return True
        return value < self.best - self.threshold * max(1.0, abs(self.best))

    def observe(self, value: float) -> bool:
        """Record a value; returns whether it improved (the bad count restarts) or not (it grows)."""
        if self.improves(value):
            self.best, self.bad = float(value), 0
            return True
        self.bad += 1
        return False


@dataclass
class EpochFit:
    """What :func:`fit_epochs` carries between epochs and between calls (a warm start continues it)."""

    schedule: LRSchedule
    monitor: Monitor
    best_state: dict[str, Tensor] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = ""
    #: Optimizer steps taken through this object (the ``step`` of a per-step schedule).
    steps: int = 0


def fit_epochs(step: TrainStep, module: nn.Module, batches: Callable[[int], Iterable[Any]], fit: EpochFit, *,
               n_epochs: int, validate: Callable[[], float] | None = None, patience: int | None = None,
               min_lr: float | None = None, max_consecutive_skips: int | None = None,
               on_epoch: Callable[[dict[str, Any]], None] | None = None) -> EpochFit:
    """Train ``module`` with ``step`` for up to ``n_epochs`` epochs, updating ``fit`` after each.

    Per epoch: the learning rate of ``fit.schedule`` is applied (it changes only through
    :meth:`LRSchedule.observe <vaekit.training.schedules.LRSchedule.observe>` for a
    ``"plateau"`` schedule, at epoch granularity for ``"constant"`` and ``"iwae"``, and
    before every step, counted by ``fit.steps``, for a schedule whose rate moves within
    an epoch: :attr:`LRSchedule.per_step <vaekit.training.schedules.LRSchedule.per_step>`); every batch of
    ``batches(epoch)`` goes through ``step`` (no host synchronisation); then the step's
    meter is read once, ``validate()`` gives the monitored loss (the mean training loss
    when there is no ``validate``), ``fit.monitor`` and the schedule observe it, and an
    improvement copies the weights into ``fit.best_state``. A history record
    ``{"epoch", "train_loss", "val_loss", "lr", "skipped_steps", "grad_norm"}`` is
    appended and passed to ``on_epoch``.

    Stops (``fit.stopped``) after ``n_epochs``, after ``patience`` epochs without
    improvement, once the rate falls below ``min_lr``, or with ``"too_many_skips"`` when
    ``max_consecutive_skips`` steps in a row were skipped (non-finite loss or gradient; None:
    never, e.g. when ``on_epoch`` decides from the record's ``skipped_steps``).
    A ``KeyboardInterrupt`` propagates between steps; ``fit`` then holds the epochs done.
    """
    optimizer = step.optimizer
    for _ in range(n_epochs):
        epoch = len(fit.history)
        per_step = fit.schedule.per_step
        lr = fit.schedule.apply(optimizer, step=fit.steps, epoch=epoch)
        module.train()
        n_steps = 0
        for batch in batches(epoch):
            if per_step and n_steps:
                fit.schedule.apply(optimizer, step=fit.steps, epoch=epoch)
            step(batch, n_steps)
            n_steps += 1
            fit.steps += 1
        window = step.meter.read() if step.meter is not None and n_steps else None
        train_loss = window["metrics"].get("loss", math.nan) if window else math.nan
        val_loss = validate() if validate is not None else math.nan
        monitored = val_loss if validate is not None else train_loss
        record = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "lr": lr,
                  "skipped_steps": window["skipped"] if window else 0,
                  "grad_norm": window["grad_norm"] if window and window["grad_norm"] is not None else math.nan}
        fit.history.append(record)
        if fit.monitor.observe(monitored):
            fit.best_state = copy.deepcopy(module.state_dict())
        fit.schedule.observe(monitored)
        if on_epoch is not None:
            on_epoch(record)
        if max_consecutive_skips is not None and window and window["max_consecutive_skips"] >= max_consecutive_skips:
            fit.stopped = "too_many_skips"
            return fit
        if patience is not None and fit.monitor.bad >= patience:
            fit.stopped = f"no improvement of the monitored loss for {patience} epochs"
            return fit
        if min_lr is not None and fit.schedule.lr(fit.steps, len(fit.history)) < min_lr:
            fit.stopped = f"learning rate fell below {min_lr:g}"
            return fit
    fit.stopped = "max_epochs reached"
    return fit
