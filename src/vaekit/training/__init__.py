"""The training engine: one loop for every model, on Lightning Fabric.

:class:`Trainer` trains any :class:`~vaekit.models.LatentVariableModel` with an objective
(:mod:`vaekit.objectives`) on a :class:`~vaekit.data.DataModule`, and writes a
:class:`RunDir` with checkpoints (:func:`load_checkpoint`), metrics, TensorBoard events
and a log.
"""

from .checkpoint import CorruptFileError, get_rng_state, load_checkpoint, load_weights, save_checkpoint, save_weights, set_rng_state
from .ema import EMA
from .evaluate import evaluate_objective
from .loggers import MetricsWriter, read_metrics
from .rundir import FileWriteError, RunDir, RunDirInUseError
from .schedules import LRSchedule, cosine_lr, exponential_lr, iwae_lr, iwae_stage, noam_lr, warmup_factor
from .state import FitResult, LoopState, TrainingStoppedWarning
from .trainer import Trainer

__all__ = ["Trainer", "FitResult", "LoopState", "RunDir", "load_checkpoint", "save_checkpoint", "load_weights",
           "save_weights", "get_rng_state", "set_rng_state", "EMA", "evaluate_objective", "LRSchedule", "cosine_lr",
           "exponential_lr", "iwae_lr", "iwae_stage", "noam_lr", "warmup_factor", "MetricsWriter", "read_metrics", "CorruptFileError", "FileWriteError",
           "RunDirInUseError", "TrainingStoppedWarning"]
