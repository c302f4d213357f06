"""Loop position and counters that a checkpoint stores, and the result of a fit."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from torch import Tensor

from .rundir import RunDir

__all__ = ["LoopState", "FitResult", "STOP_REASONS", "FAILED_STOP_REASONS", "TrainingStoppedWarning"]

#: Values of :attr:`FitResult.stop_reason`.
STOP_REASONS = ("max_epochs", "max_steps", "early_stopping", "too_many_skips", "non_finite_weights", "diverged")

#: Stop reasons that mean the run failed: training could not go on from a good state
#: (:attr:`FitResult.failed`; ``vaekit fit`` exits with status 3).
FAILED_STOP_REASONS = ("too_many_skips", "non_finite_weights", "diverged")


class TrainingStoppedWarning(RuntimeWarning):
    """Warned by :meth:`vaekit.training.Trainer.fit` when a run stops for one of :data:`FAILED_STOP_REASONS`."""


@dataclass
class LoopState:
    """Where the training loop is, and its counters.

    Attributes
    ----------
    global_step : int
        Optimizer steps taken so far (skipped steps included).
    epoch : int
        Current epoch (0-based).
    batch_in_epoch : int
        Batches of the current epoch already consumed.
    best_metric : float
        Best monitored validation value so far (``inf`` before the first validation,
        stored as a value to minimise: negated for ``monitor_mode="max"``).
    bad_validations : int
        Validations in a row without improvement (for early stopping).
    validations : int
        Validations run so far.
    last_val_step : int
        Step of the last validation (-1 when none).
    skipped_steps : int
        Steps skipped because of a non-finite loss or gradient, or a gradient norm above
        the threshold.
    consecutive_skips : int
        Length of the current run of skipped steps.
    acc : dict of str to Tensor
        The training step's metric window since the last log row
        (:meth:`vaekit.training.step.StepMeter.state_dict`), written at each checkpoint.
    acc_steps : int
        Unused (kept to read checkpoints of earlier versions, whose ``acc`` held per-metric sums).
    logged_losses : list of float
        The divergence guard's history, sorted: the loss of the first step and the logged
        training ``loss`` of every window that was not above the divergence bound.
    diverging_windows : int
        Logged windows in a row whose training loss was above the divergence bound.
    """

    global_step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_metric: float = math.inf
    bad_validations: int = 0
    validations: int = 0
    last_val_step: int = -1
    skipped_steps: int = 0
    consecutive_skips: int = 0
    acc: dict[str, Tensor] = field(default_factory=dict)
    acc_steps: int = 0
    logged_losses: list[float] = field(default_factory=list)
    diverging_windows: int = 0

    def state_dict(self) -> dict[str, Any]:
        """Plain dict (numbers and CPU tensors)."""
        state = asdict(self)
        state["acc"] = {k: v.detach().cpu() if isinstance(v, Tensor) else v for k, v in self.acc.items()}
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> LoopState:
        """Inverse of :meth:`state_dict` (unknown keys are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in state.items() if k in names})


@dataclass
class FitResult:
    """What :meth:`vaekit.training.Trainer.fit` returns.

    Attributes
    ----------
    run_dir : RunDir
        The run directory (checkpoints, metrics, logs).
    global_step : int
        Optimizer steps taken in total (resumed runs included, skipped steps included).
    epoch : int
        Epochs completed.
    best_metric : float or None
        Best value of the monitored validation metric (``None`` without validation).
    skipped_steps : int
        Steps skipped in total.
    stop_reason : str
        One of ``"max_epochs"``, ``"max_steps"``, ``"early_stopping"`` (the run ended as
        planned) or ``"too_many_skips"``, ``"non_finite_weights"``, ``"diverged"`` (it failed:
        see :attr:`failed` and :attr:`message`).
    message : str
        Why a failed run stopped, as written to ``log.txt`` (empty when it did not fail).
    """

    run_dir: RunDir
    global_step: int
    epoch: int
    best_metric: float | None
    skipped_steps: int
    stop_reason: str
    message: str = ""

    @property
    def failed(self) -> bool:
        """Whether the run stopped for one of :data:`FAILED_STOP_REASONS` (not as planned)."""
        return self.stop_reason in FAILED_STOP_REASONS
