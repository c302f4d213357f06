"""The :class:`Trainer`: one training loop for every vaekit model, on Lightning Fabric."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .._checks import InvalidArgumentError, check_choice, check_int
from ..objectives import ELBO, Objective
from .._recording import Configurable, recorded_args
from ..models.base import LatentVariableModel
from .batches import batch_len, check_batch_dict, take
from ..distributions.flows import upgrade_state_dict
from .checkpoint import CorruptFileError, load_checkpoint, shape_mismatches, to_plain
from .rundir import RunDir, check_run_name
from .schedules import SCHEDULES, frozen_parameters
from .state import FitResult, TrainingStoppedWarning
from .step import COMPILE_MODES, OPTIMIZERS, cpp_wrapper_wanted

__all__ = ["Trainer"]

_PRECISIONS = ("32-true", "64-true", "bf16-mixed", "bf16-true")


class Trainer(Configurable):
    """Trains any :class:`~vaekit.models.LatentVariableModel` with an objective on a data module.

    The constructor only checks and stores its (plain, typed) arguments, so a YAML section
    ``trainer: {max_epochs: 100, lr: 3e-4}`` builds it through jsonargparse. Everything
    happens in :meth:`fit`.

    Parameters
    ----------
    max_epochs : int
        Stop after this many epochs (>= 1). The IWAE schedule spans 3280 epochs.
    max_steps : int, optional
        Also stop after this many optimizer steps (skipped steps count).
    batch_size : int
        Training examples per step *on each process* (the global batch is
        ``batch_size * world_size``).
    eval_batch_size : int, optional
        Examples per validation batch (default: ``batch_size``).
    drop_last : bool
        Drop the last, smaller training batch of each epoch.
    num_workers : int
        ``DataLoader`` workers, used only when the training split is a ``Dataset`` rather
        than an in-memory tensor (tensors are batched by index on the device).
    optimizer : {"adam", "adamw", "adamax", "radam"}
        Adam or AdamW (fused kernels on CPU and CUDA), Adamax or RAdam (torch's
        :class:`~torch.optim.Adamax` and :class:`~torch.optim.RAdam`, with ``adam_betas``,
        ``adam_eps`` and ``weight_decay`` as an L2 penalty; torch has no fused kernel for them,
        so each step reads its skip decision on the host once).
    lr : float
        Base learning rate.
    lr_multipliers : dict of str to float, optional
        Learning-rate factors for parts of the model, keyed by parameter-name prefix (a
        submodule's name as in ``model.named_parameters()``, e.g. ``{"latent": 10.0}`` for a
        :class:`~vaekit.models.group.GroupPredictor`'s group posteriors): those parameters learn
        at ``factor`` times the scheduled rate (the longest matching prefix wins). A prefix that
        matches no trainable parameter is ignored with a warning naming it.
    freeze : list of str, optional
        Parameter-name prefixes (a parameter's or a submodule's name, matched at a dot as for
        ``lr_multipliers``) of parts of the model not to train: for the run their parameters
        get ``requires_grad=False`` (restored when :meth:`fit` returns), are left out of the
        optimizer (no optimizer state, no weight decay) and of the EMA, and stay bit-identical.
        A prefix that matches no parameter, or a freeze of every trainable parameter, is an
        error raised by :meth:`fit` before anything is written.
    weight_decay : float
        L2 penalty (Adam, Adamax, RAdam) or decoupled weight decay (AdamW).
    adam_eps : float
        The optimizer's epsilon (1e-4 in Burda et al. / Cremer et al.).
    adam_betas : tuple of float
        The optimizer's (beta1, beta2).
    lr_schedule : {"constant", "cosine", "plateau", "iwae", "exponential", "noam"}
        See :mod:`vaekit.training.schedules`.
    warmup_steps : int
        Linear learning-rate warm-up over the first this many optimizer steps (0: none):
        step ``s`` (0-based) uses ``min(1, (s + 1) / warmup_steps)`` times the scheduled
        rate. For ``"noam"`` it is the schedule's own warm-up (required, >= 1), not applied twice.
    lr_gamma : float, optional
        The ``"exponential"`` schedule's factor per optimizer step, in (0, 1]: step ``s``
        uses ``max(lr * lr_gamma**s, min_lr)``. Required by ``"exponential"``, refused by
        the other schedules.
    plateau_patience : int
        Validations without improvement before the ``"plateau"`` schedule reduces the rate.
    plateau_factor : float
        Factor applied by the ``"plateau"`` schedule, in (0, 1).
    min_lr : float
        Floor of the ``"cosine"``, ``"plateau"`` and ``"exponential"`` schedules.
    grad_clip : float, optional
        Clip the global gradient norm to this value.
    skip_threshold : float, optional
        Skip (no update) any step whose gradient norm, before clipping, exceeds this.
        Steps with a non-finite loss or gradient norm are always skipped.
    max_consecutive_skips : int
        Stop training when this many steps in a row were skipped.
    divergence_factor : float, optional
        The divergence guard: a logged training ``loss`` (mean over ``log_every_steps``
        steps) is *above the bound* when ``loss - median > divergence_factor * max(|median|, 1)``,
        with ``median`` the running median of the first step's loss and of the earlier
        windows not above the bound. ``None`` turns the guard off. A falling loss never
        triggers it; the check runs only when a row is logged (no extra synchronisation).
    divergence_patience : int
        Stop with ``stop_reason="diverged"`` after this many logged windows in a row above
        the bound.
    ema_decay : float, optional
        Keep an exponential moving average of the weights with this decay; validation,
        ``*.safetensors`` and the model returned by :meth:`fit` then use the average.
    val_every_epochs : int, optional
        Validate after every this many epochs (``None``: not by epoch). Every validation
        point writes ``last.ckpt``, also when the data has no validation split.
    val_every_steps : int, optional
        Validate after every this many steps (``None``: not by step).
    monitor : str
        Validation metric (a key of the objective's metrics) that decides the best
        checkpoint, early stopping and the ``"plateau"`` schedule. Validation calls the
        objective at the current step, so during a KL warm-up ``"loss"`` carries the
        current weight; monitor ``"elbo"`` (with ``monitor_mode="max"``) to compare
        checkpoints across the warm-up.
    monitor_mode : {"min", "max"}
        Whether lower (``"min"``, e.g. ``"loss"``) or higher (``"max"``, e.g. ``"elbo"``)
        is better.
    early_stopping_patience : int, optional
        Stop after this many validations in a row without improvement.
    checkpoint_every_steps : int, optional
        Also write ``checkpoints/step-N.ckpt`` (and refresh ``last.ckpt``) every this many steps.
    log_every_steps : int
        Write the mean training metrics of the last this many steps.
    accelerator, strategy : str
        Lightning Fabric's ``accelerator`` ("auto", "cpu", "cuda", ...) and ``strategy``
        ("auto", "ddp", ...).
    devices : int, str or list of int
        Fabric's ``devices`` ("auto", a count, or device indices).
    num_nodes : int
        Number of machines (multi-node DDP, launched by ``torchrun`` or SLURM).
    precision : {"32-true", "64-true", "bf16-mixed", "bf16-true"}
        Fabric precision.
    seed : int
        Seeds torch, numpy and ``random`` (process ``r`` uses ``seed + r``) and the
        per-epoch data permutations.
    compile : bool or str
        Compile the whole training step with ``torch.compile`` (single process only, for
        now): the objective's forward with its backward, and the update (checks, clipping,
        optimizer, EMA, metric sums). True uses the default mode; a mode name
        (``"reduce-overhead"``: CUDA graphs on a GPU, ``"max-autotune"``, ...) is passed on.
        The trajectory is the eager one up to floating-point rounding (random draws inside
        compiled code come from inductor's generator unless
        ``torch._inductor.config.fallback_random`` is set). On a CPU, in the default mode,
        the forward and backward get inductor's C++ wrapper (``VAEKIT_CPP_WRAPPER=0`` in the
        environment turns it off; any value but 0 or 1 is refused here).
    progress_bar : bool
        Show a tqdm bar with the loss and throughput.
    root_dir : str (or a path-like, recorded as its str)
        Where new run directories go: ``<root_dir>/<run_name>/<YYYYmmdd-HHMMSS>/`` when
        :meth:`fit` gets no ``run_dir`` (a ``-1``, ``-2``... suffix if that exists).
    run_name : str, optional
        Name of the run folder (default: the model's class name): one folder name of
        letters, digits and ``_ . + -``, not ``.`` or ``..``.

    Notes
    -----
    Each step (:class:`~vaekit.training.step.TrainStep`): the training batch
    (``data.augment`` applied) goes through ``objective(model, batch, step)``; the loss is
    back-propagated (gradients averaged across processes by DDP); a step whose loss or
    gradients are not finite, or whose gradient norm exceeds ``skip_threshold``, makes no
    update and is counted; the gradients are clipped (``grad_clip``) and the optimizer and
    EMA step. The step never waits for the device: the skip decision is taken there (fused
    Adam's ``found_inf``) and the metrics are summed there, so the host reads them only
    when a row is logged. The bound ``max_consecutive_skips`` is therefore checked at the
    next logged row, validation or checkpoint after it was reached (skipped steps do not
    change the weights meanwhile). ``metrics.csv`` gets, every ``log_every_steps``, the mean
    of each objective metric over the steps not skipped, ``grad_norm`` (the mean over the
    steps that computed it: every step with ``grad_clip`` or ``skip_threshold``, else the
    step that ends the row), ``lr``, ``skipped_steps`` and ``samples_per_s`` (split
    ``"train"``), and after each validation the mean of each metric over the validation
    split (split ``"val"``). Step numbers count
    the optimizer steps done (the first row of a run is at step ``log_every_steps``).

    Examples
    --------
    >>> Trainer(max_epochs=3, lr=3e-4).lr
    0.0003
    >>> Trainer(batch_size=0)
    Traceback (most recent call last):
    ...
    vaekit._checks.InvalidArgumentError: batch_size must be an int >= 1, got 0
    """

    def __init__(self, *, max_epochs: int = 10, max_steps: int | None = None, batch_size: int = 100,
                 eval_batch_size: int | None = None, drop_last: bool = False, num_workers: int = 0,
                 optimizer: Literal["adam", "adamw", "adamax", "radam"] = "adam", lr: float = 1e-3,
                 lr_multipliers: dict[str, float] | None = None, freeze: list[str] | None = None,
                 weight_decay: float = 0.0, adam_eps: float = 1e-8, adam_betas: tuple[float, float] = (0.9, 0.999),
                 lr_schedule: Literal["constant", "cosine", "plateau", "iwae", "exponential", "noam"] = "constant",
                 warmup_steps: int = 0, lr_gamma: float | None = None,
                 plateau_patience: int = 10, plateau_factor: float = 0.5, min_lr: float = 0.0,
                 grad_clip: float | None = None, skip_threshold: float | None = None,
                 max_consecutive_skips: int = 20, divergence_factor: float | None = 1e4,
                 divergence_patience: int = 3, ema_decay: float | None = None,
                 val_every_epochs: int | None = 1, val_every_steps: int | None = None, monitor: str = "loss",
                 monitor_mode: Literal["min", "max"] = "min", early_stopping_patience: int | None = None,
                 checkpoint_every_steps: int | None = None, log_every_steps: int = 50,
                 accelerator: str = "auto", devices: int | str | list[int] = "auto", strategy: str = "auto",
                 num_nodes: int = 1, precision: Literal["32-true", "64-true", "bf16-mixed", "bf16-true"] = "32-true",
                 seed: int = 0, compile: bool | Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = False,
                 progress_bar: bool = True, root_dir: str = "runs",
                 run_name: str | None = None) -> None:
        _int("max_epochs", max_epochs, 1)
        _int("batch_size", batch_size, 1)
        _int("num_workers", num_workers, 0)
        _int("max_consecutive_skips", max_consecutive_skips, 1)
        _int("divergence_patience", divergence_patience, 1)
        _int("plateau_patience", plateau_patience, 1)
        _int("log_every_steps", log_every_steps, 1)
        _int("num_nodes", num_nodes, 1)
        _int("seed", seed, 0)
        _int("warmup_steps", warmup_steps, 0)
        for name, value in (("max_steps", max_steps), ("eval_batch_size", eval_batch_size),
                            ("val_every_epochs", val_every_epochs), ("val_every_steps", val_every_steps),
                            ("early_stopping_patience", early_stopping_patience),
                            ("checkpoint_every_steps", checkpoint_every_steps)):
            if value is not None:
                _int(name, value, 1)
        _choice("optimizer", optimizer, OPTIMIZERS)
        _choice("lr_schedule", lr_schedule, SCHEDULES)
        if lr_schedule == "noam" and warmup_steps < 1:
            raise InvalidArgumentError(f"warmup_steps must be an int >= 1 with lr_schedule='noam' (its peak is at "
                                       f"step warmup_steps), got {warmup_steps!r}")
        if lr_schedule == "exponential":
            if lr_gamma is None:
                raise InvalidArgumentError("lr_gamma must be a float in (0, 1] with lr_schedule='exponential' (the "
                                           "factor per optimizer step, e.g. 0.9999), got None")
            _float("lr_gamma", lr_gamma, 0.0, strict=True)
            if lr_gamma > 1.0:
                raise InvalidArgumentError(f"lr_gamma must be a float in (0, 1] (the factor per optimizer step), "
                                           f"got {lr_gamma!r}")
        elif lr_gamma is not None:
            raise InvalidArgumentError(f"lr_gamma is read only by lr_schedule='exponential', got lr_gamma={lr_gamma!r} "
                                       f"with lr_schedule={lr_schedule!r}; accepted: None")
        if freeze is not None and (not isinstance(freeze, (list, tuple))
                                   or not all(isinstance(k, str) and k.strip(".") for k in freeze)):
            raise InvalidArgumentError(f"freeze must be a list of parameter-name prefixes, e.g. ['encoder'], "
                                       f"got {freeze!r}")
        _choice("precision", precision, _PRECISIONS)
        _choice("monitor_mode", monitor_mode, ("min", "max"))
        _float("lr", lr, 0.0, strict=True)
        if lr_multipliers is not None:
            if not isinstance(lr_multipliers, dict) or not all(isinstance(k, str) and k for k in lr_multipliers):
                raise InvalidArgumentError(f"lr_multipliers must be a dict of parameter-name prefixes to factors, e.g. "
                                 f"{{'latent': 10.0}}, got {lr_multipliers!r}")
            for key, factor in lr_multipliers.items():
                _float(f"lr_multipliers[{key!r}]", factor, 0.0, strict=True)
        _float("weight_decay", weight_decay, 0.0)
        _float("adam_eps", adam_eps, 0.0, strict=True)
        _float("min_lr", min_lr, 0.0)
        if lr_schedule in ("cosine", "plateau", "exponential") and min_lr > lr:
            raise InvalidArgumentError(f"min_lr={min_lr!r} is above lr={lr!r}: the floor of the {lr_schedule!r} "
                                       f"schedule must be <= lr (it would raise the rate above lr from the start)")
        if not (isinstance(plateau_factor, (int, float)) and 0.0 < plateau_factor < 1.0):
            raise InvalidArgumentError(f"plateau_factor must be a float in (0, 1), got {plateau_factor!r}")
        if (not isinstance(adam_betas, (tuple, list)) or len(adam_betas) != 2
                or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in adam_betas)):
            raise InvalidArgumentError(f"adam_betas must be two floats in [0, 1), got {adam_betas!r}")
        for name, value in (("grad_clip", grad_clip), ("skip_threshold", skip_threshold),
                            ("divergence_factor", divergence_factor)):
            if value is not None:
                _float(name, value, 0.0, strict=True)
        if ema_decay is not None and not (isinstance(ema_decay, (int, float)) and 0.0 <= ema_decay < 1.0):
            raise InvalidArgumentError(f"ema_decay must be None or a float in [0, 1), got {ema_decay!r}")
        if not isinstance(monitor, str) or not monitor:
            raise InvalidArgumentError(f"monitor must be the name of a metric of the objective, e.g. 'loss', got {monitor!r}")
        if not isinstance(devices, (int, str, list)) or isinstance(devices, bool):
            raise InvalidArgumentError(f"devices must be an int, a str ('auto', '0,1') or a list of ints, got {devices!r}")
        if isinstance(devices, int) and (devices == 0 or devices < -1):
            raise InvalidArgumentError(f"devices must be a number of devices >= 1 (or -1: all of them), got {devices!r}")
        root_dir = os.fspath(root_dir) if isinstance(root_dir, os.PathLike) else root_dir
        for name, value in (("accelerator", accelerator), ("strategy", strategy), ("root_dir", root_dir)):
            if not isinstance(value, str) or not value:
                raise InvalidArgumentError(f"{name} must be a non-empty str, got {value!r}")
        for name, value in (("drop_last", drop_last), ("progress_bar", progress_bar)):
            if not isinstance(value, bool):  # (bool("false") is True: a YAML/CLI string must not pass as one)
                raise InvalidArgumentError(f"{name} must be True or False, got {value!r}")
        self.max_epochs, self.max_steps, self.batch_size = max_epochs, max_steps, batch_size
        self.eval_batch_size, self.drop_last, self.num_workers = eval_batch_size, drop_last, num_workers
        self.optimizer, self.lr, self.weight_decay, self.adam_eps = optimizer, float(lr), float(weight_decay), float(adam_eps)
        self.lr_multipliers = None if lr_multipliers is None else {k: float(v) for k, v in lr_multipliers.items()}
        self.freeze = None if not freeze else list(freeze)
        self.warmup_steps, self.lr_gamma = warmup_steps, None if lr_gamma is None else float(lr_gamma)
        self.adam_betas = (float(adam_betas[0]), float(adam_betas[1]))
        self.lr_schedule, self.plateau_patience, self.plateau_factor = lr_schedule, plateau_patience, float(plateau_factor)
        self.min_lr, self.grad_clip, self.skip_threshold = float(min_lr), grad_clip, skip_threshold
        self.max_consecutive_skips, self.ema_decay = max_consecutive_skips, ema_decay
        self.divergence_factor = None if divergence_factor is None else float(divergence_factor)
        self.divergence_patience = divergence_patience
        self.val_every_epochs, self.val_every_steps = val_every_epochs, val_every_steps
        self.monitor, self.monitor_mode, self.early_stopping_patience = monitor, monitor_mode, early_stopping_patience
        self.checkpoint_every_steps, self.log_every_steps = checkpoint_every_steps, log_every_steps
        self.accelerator, self.devices, self.strategy, self.num_nodes = accelerator, devices, strategy, num_nodes
        if not isinstance(compile, bool) and compile not in COMPILE_MODES:
            raise InvalidArgumentError(f"compile must be True, False or one of {list(COMPILE_MODES)}, got {compile!r}")
        if compile:
            cpp_wrapper_wanted()  # a bad VAEKIT_CPP_WRAPPER fails here, before any run directory exists
        self.precision, self.seed, self.compile = precision, seed, compile
        if run_name is not None:
            check_run_name(run_name, "run_name")  # one folder inside root_dir: not '.', '..' or 'a/b'
        self.progress_bar, self.root_dir, self.run_name = progress_bar, root_dir, run_name

    @classmethod
    def canonical_args(cls, args: dict[str, Any]) -> dict[str, Any]:
        """A path-like ``root_dir`` is recorded as its ``str`` (``config.yaml`` holds plain values)."""
        root = args.get("root_dir")
        return {**args, "root_dir": os.fspath(root)} if isinstance(root, os.PathLike) else args

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments as the constructor received them (recorded by
        :class:`~vaekit.Configurable`, as for every vaekit object), as plain values: what
        ``config.yaml`` stores in its ``trainer`` section."""
        return to_plain(recorded_args(self) or {})

    def __repr__(self) -> str:
        defaults = type(self)().get_params()
        changed = {k: v for k, v in self.get_params().items() if v != defaults[k]}
        return f"Trainer({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    # ------------------------------------------------------------------ fit
    def fit(self, model: nn.Module, data: Any, objective: Objective | None = None, *,
            run_dir: RunDir | str | Path | None = None, resume: str | Path | None = None,
            config: dict[str, Any] | None = None) -> FitResult:
        """Train ``model`` on ``data`` and write a run directory.

        Parameters
        ----------
        model : LatentVariableModel
            The model; it ends holding the trained weights (the EMA weights when
            ``ema_decay`` is set), on the training device, unwrapped.
        data : DataModule
            Anything with ``setup()``, ``train`` (Tensor of shape (n, *data_shape), a dict of
            Tensors sharing the first dimension, or a ``Dataset``), ``val`` (the same kind, or
            None) and ``augment(batch) -> batch``. It must fit the model:
            :meth:`LatentVariableModel.check_data_module <vaekit.models.LatentVariableModel.check_data_module>`
            is called first (a model sized from other data is refused; build one with ``from_data``).
        objective : Objective, optional
            ``loss, metrics = objective(model, batch, step)``; default :class:`~vaekit.objectives.ELBO`.
        run_dir : RunDir, str or Path, optional
            Where to write; an existing empty directory or a new one. Default: a new
            ``<root_dir>/<model class>/<YYYYmmdd-HHMMSS>/``.
        resume : str or Path, optional
            A run directory (continue from its ``checkpoints/last.ckpt``) or a ``.ckpt``
            file inside one. Training continues exactly where it stopped, in the same directory.
            When ``last.ckpt`` of a run directory is corrupt (its SHA-256 differs from
            ``checkpoints/manifest.json``), unreadable or missing, the newest intact
            checkpoint (``step-N.ckpt`` or ``best.ckpt``) is used instead, with a warning
            (also in ``log.txt``).
        config : dict, optional
            The resolved config, written to ``config.yaml`` and stored in every checkpoint.

        Returns
        -------
        FitResult
            Also when the run failed: ``stop_reason`` is then ``"too_many_skips"``,
            ``"non_finite_weights"`` or ``"diverged"`` (``result.failed`` is True and
            ``result.message`` says why); the checkpoints of the last good state are kept.

        Raises
        ------
        ValueError, TypeError
            For bad input (empty or non-finite data, data that does not fit the model, a
            ``resume`` path that is not a run, ...), before anything is written.
        RunDirInUseError
            When another process trains ``resume`` or ``run_dir`` (it holds the run's
            ``lock``). Rank 0 holds that lock (:class:`~vaekit.training.rundir.RunLock`)
            from the moment the run directory is created or opened until ``fit`` returns or
            raises, so a second ``fit`` of the same run is refused meanwhile.
        Exception
            An error raised while training (by the model, the objective, a full disk...)
            propagates as it is, after its traceback was written to the run's ``log.txt``.

        Warns
        -----
        TrainingStoppedWarning
            A :class:`RuntimeWarning` when the run failed (see Returns), with the message.

        Notes
        -----
        Checkpoints (``checkpoints/last.ckpt``, ``best.ckpt``, ``step-N.ckpt``) hold the
        model, optimizer, schedule and EMA states, the loop position (epoch, batch within
        the epoch, step), the RNG states of every process, the best metric, the skip
        counters, the config and the vaekit version, as plain containers that
        ``torch.load(path, weights_only=True)`` reads (use :func:`load_checkpoint`). They
        are written atomically by rank 0, and never with non-finite weights.
        ``last.safetensors`` / ``best.safetensors`` hold the inference weights.
        """
        from .loop import FitLoop

        objective = objective if objective is not None else ELBO()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module implementing the LatentVariableModel protocol, "
                            f"got {type(model).__name__}")
        if not callable(objective):
            raise TypeError(f"objective must be callable as objective(model, batch, step), got {type(objective).__name__}")
        if resume is not None and run_dir is not None:
            raise ValueError("pass either run_dir (a new run) or resume (an existing run), not both")
        if config is not None and not isinstance(config, dict) and not hasattr(config, "as_dict"):
            raise TypeError(f"config must be a dict, got {type(config).__name__}")
        frozen = set(frozen_parameters(model, self.freeze))  # checked before the data are set up
        train, val = self._check_data(data)
        if isinstance(model, LatentVariableModel):
            model.check_data_module(data)  # a model sized from data (from_data) must fit these data
        validate = getattr(model, "validate_data", None)
        if callable(validate):  # every example as the model will see it (augmented), without using the RNG
            augment = getattr(data, "augment", None)
            with torch.random.fork_rng(devices=[]):
                for chunk in _chunks(train, 10_000):
                    validate(augment(chunk) if callable(augment) else chunk, "data.train")
            for chunk in _chunks(val, 10_000) if val is not None else ():
                validate(chunk, "data.val")
        needs_val = [n for n, on in (("early_stopping_patience", self.early_stopping_patience is not None),
                                     ("lr_schedule='plateau'", self.lr_schedule == "plateau")) if on]
        if needs_val and (val is None or (self.val_every_epochs is None and self.val_every_steps is None)):
            raise ValueError(f"{' and '.join(needs_val)} {'need' if len(needs_val) > 1 else 'needs'} validation: data.val is "
                             f"{'None' if val is None else 'set'}, val_every_epochs={self.val_every_epochs}, "
                             f"val_every_steps={self.val_every_steps}")
        run, checkpoint, explicit = None, None, None
        if resume is not None:
            run, explicit = _resolve_resume(resume)
        elif run_dir is not None:
            run = _fresh_run_dir(run_dir)
        zero = _launch_rank() == 0
        with _claim(run if zero else None) as notes:  # the lock of an existing run dir (a new one: FitLoop.run)
            if resume is not None:
                assert run is not None
                checkpoint = _resume_checkpoint(run, explicit, notes)
                _check_same_model(model, checkpoint["model"], Path(checkpoint["path"]))
                _check_same_optimization(self.get_params(), checkpoint.get("trainer") or {}, Path(checkpoint["path"]))
            if zero and run is not None and notes:
                _log_notes(run, notes)
            with _frozen(model, frozen):
                result = FitLoop(self, model, data, train, val, objective, run, checkpoint, config).run()
        if result.failed:
            warnings.warn(f"the run failed (stop_reason={result.stop_reason!r}): {result.message}", TrainingStoppedWarning,
                          stacklevel=2)
        return result

    def _check_data(self, data: Any) -> tuple[Any, Any]:
        for attr in ("train", "val"):
            if not hasattr(data, attr) and not hasattr(type(data), attr):
                raise TypeError(f"data must be a vaekit.data.DataModule (with setup(), train, val, augment), "
                                f"got {type(data).__name__} without {attr!r}")
        if callable(getattr(data, "setup", None)):
            data.setup()
        train, val = data.train, data.val
        if isinstance(train, dict):
            check_batch_dict(train, "data.train")
        if train is None or batch_len(train) == 0:
            raise ValueError(f"the training split is empty (data.train={'None' if train is None else batch_len(train)} "
                             f"examples); a DataModule needs at least one training example")
        if isinstance(train, Tensor):
            if not torch.is_floating_point(train):
                raise TypeError(f"data.train must be a floating-point tensor, got dtype {train.dtype}")
            if not bool(torch.isfinite(train).all()):
                bad = int((~torch.isfinite(train)).sum())
                raise ValueError(f"data.train contains {bad} NaN/inf value(s); clean or impute the data first")
        if isinstance(val, dict):
            if val and batch_len(val) == 0:
                val = None
            else:
                check_batch_dict(val, "data.val")
        elif val is not None:
            if not isinstance(val, Tensor):
                raise TypeError(f"data.val must be a Tensor, a dict of Tensors or None, got {type(val).__name__}")
            if len(val) == 0:
                val = None
            elif not bool(torch.isfinite(val).all()):
                bad = int((~torch.isfinite(val)).sum())
                raise ValueError(f"data.val contains {bad} NaN/inf value(s); clean or impute the data first")
        return train, val


def _chunks(data: Any, n: int) -> Any:
    """The examples of a Tensor (or dict of Tensors) in batches of ``n`` (a Dataset: its first ``n`` examples only)."""
    if isinstance(data, Tensor):
        yield from data.split(n)
        return
    if isinstance(data, dict):
        for i in range(0, batch_len(data), n):
            yield take(data, slice(i, i + n))
        return
    from torch.utils.data import default_collate

    yield default_collate([data[i] for i in range(min(n, len(data)))])


def _check_same_model(model: nn.Module, state: dict[str, Any], path: Path) -> None:
    """A resumed model must have the checkpoint's parameters and shapes (checked before anything is written)."""
    diff = shape_mismatches(model, state)
    if diff and not shape_mismatches(model, upgrade_state_dict(model, state)):
        raise ValueError(f"the checkpoint {str(path)!r} was written by a vaekit whose flow posteriors stacked the "
                         f"parameters of all their steps in one layer (first old keys: {', '.join(d.split(':')[0] for d in diff[:2])}); its "
                         f"weights load (vaekit.load, and vaekit evaluate/sample/analyze on the run), but its optimizer "
                         f"state follows the old parameters and cannot be resumed: start a new run")
    if diff:
        raise ValueError(f"the model does not match the checkpoint {str(path)!r} it should resume from (first "
                         f"differences: {', '.join(diff)}); resume with the run's own config")


#: Trainer arguments that shape the optimizer's state or the schedule's curve: a resume must keep them
#: (torch matches optimizer state to parameters by position only), with their values before they existed.
RESUME_FIXED = {"optimizer": "adam", "freeze": None, "lr_multipliers": None, "warmup_steps": 0, "lr_gamma": None}


def _check_same_optimization(given: dict[str, Any], saved: dict[str, Any], path: Path) -> None:
    """Refuse a resume whose optimizer, frozen parameters, lr multipliers, warm-up or decay differ from the checkpoint's.

    Checked before anything of the run is written or loaded into the model.
    """
    def norm(key: str, value: Any) -> Any:
        return None if key == "freeze" and not value else value

    for key, default in RESUME_FIXED.items():
        mine, theirs = norm(key, given.get(key, default)), norm(key, saved.get(key, default))
        if mine != theirs:
            raise InvalidArgumentError(
                f"{key}={mine!r} differs from the checkpoint's {key}={theirs!r} ({str(path)!r}): the optimizer state "
                f"and the schedule of a run cannot change on resume; resume with {key}={theirs!r}, or start a new run")


def _fresh_run_dir(run_dir: RunDir | str | Path) -> RunDir:
    """Check that ``run_dir`` can hold a new run: absent, empty, or a laid-out run with no checkpoint yet."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    path = run.path
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return run
    try:
        run = RunDir.open(path)
    except ValueError:
        raise ValueError(f"run_dir={str(path)!r} exists and is neither empty nor a new run directory; "
                         f"pass a new path") from None
    if any(run.checkpoints.iterdir()) or len(run.metrics.read_text().splitlines()) > 1:
        raise ValueError(f"run_dir={str(path)!r} already holds a run (checkpoints or metrics); pass a new path, "
                         f"or resume={str(path)!r} to continue it")
    return run


def _resolve_resume(resume: str | Path) -> tuple[RunDir, Path | None]:
    """The run to resume, and the checkpoint file named by ``resume`` (None: ``resume`` is the run
    directory, whose newest intact checkpoint :func:`_resume_checkpoint` picks)."""
    path = Path(resume)
    if not path.exists():
        raise FileNotFoundError(f"resume={str(path)!r} does not exist; pass a run directory or a .ckpt file inside one")
    if path.is_file():
        run = RunDir.open(path.parent.parent)
        if path.parent.resolve() != run.checkpoints.resolve():
            raise ValueError(f"resume={str(path)!r}: a checkpoint to resume must lie in a run's checkpoints/ folder")
        return run, path
    run = RunDir.open(path)
    if not run.last_checkpoint.is_file() and not _fallback_checkpoints(run):
        raise FileNotFoundError(f"resume={str(path)!r}: the run directory has no checkpoints/last.ckpt to resume from")
    return run, None


def _fallback_checkpoints(run: RunDir) -> list[Path]:
    """``step-N.ckpt`` (newest first) and ``best.ckpt``: what a resume may use when ``last.ckpt`` cannot be."""
    steps = []
    for p in run.checkpoints.glob("step-*.ckpt"):
        n = p.stem[len("step-"):]
        if n.isdigit() and p.is_file():
            steps.append((int(n), p))
    out = [p for _, p in sorted(steps, reverse=True)]
    return out + ([run.best_checkpoint] if run.best_checkpoint.is_file() else [])


def _resume_checkpoint(run: RunDir, explicit: Path | None, notes: list[str]) -> dict[str, Any]:
    """Load the checkpoint to resume from (its path under ``"path"``).

    ``explicit`` (a file the caller named) is loaded as it is. Otherwise ``last.ckpt``; when it
    is corrupt, unreadable or missing, the newest intact checkpoint among ``step-N.ckpt`` and
    ``best.ckpt``, with a note (for the log) naming both; when none is intact, a
    :class:`CorruptFileError` listing what was tried.
    """
    if explicit is not None:
        checkpoint = load_checkpoint(explicit)
        checkpoint["path"] = str(explicit)
        return checkpoint
    last = run.last_checkpoint
    tried: list[str] = []
    try:
        checkpoint = load_checkpoint(last)
        checkpoint["path"] = str(last)
        return checkpoint
    except FileNotFoundError:
        tried.append(f"{last.name}: missing")
    except (ValueError, OSError) as e:
        tried.append(f"{last.name}: {e}")
    found: tuple[int, Path, dict[str, Any]] | None = None
    for path in _fallback_checkpoints(run):
        if path == run.best_checkpoint or found is None:  # the newest step-N that loads, and best.ckpt
            try:
                state = load_checkpoint(path)
            except (ValueError, OSError) as e:
                tried.append(f"{path.name}: {e}")
                continue
            step = int(state["loop"].get("global_step", -1)) if isinstance(state.get("loop"), dict) else -1
            if found is None or step > found[0]:
                found = (step, path, state)
    if found is None:
        raise CorruptFileError(last, f"resume={str(run.path)!r}: no intact checkpoint to resume from in "
                                     f"{run.checkpoints}; tried:\n  " + "\n  ".join(tried))
    step, path, checkpoint = found
    notes.append(f"{last} cannot be used ({tried[0].split(': ', 1)[1]}); resuming from {path} (step {step}) instead, "
                 f"the newest intact checkpoint" + (f" (also unusable: {'; '.join(tried[1:])})" if len(tried) > 1 else "")
                 + f". Steps after {step} are trained again.")
    checkpoint["path"] = str(path)
    return checkpoint


@contextmanager
def _frozen(model: nn.Module, names: set[str]) -> Iterator[None]:
    """``requires_grad=False`` for the parameters named (``Trainer(freeze)``) while the fit runs; restored after."""
    params = [p for n, p in model.named_parameters() if n in names]
    before = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, before):
            p.requires_grad_(flag)


@contextmanager
def _claim(run: RunDir | None) -> Iterator[list[str]]:
    """Hold the lock of an existing run directory for the duration of a fit (released on
    exceptions too), and remove the temporary files that crashed processes left in it.

    Yields the notes to log (a stale lock taken over, temporary files removed). A run
    directory that does not exist yet (``run=None``, or a ``run_dir`` that is absent or
    empty) is locked by :meth:`FitLoop.run <vaekit.training.loop.FitLoop.run>` as soon as
    it is laid out, and held as long; ranks other than 0 pass ``run=None``.
    """
    if run is None or not run.config_file.is_file():
        yield []
        return
    with run.lock() as lock:
        notes = [lock.note] if lock.note else []
        removed = run.remove_stale_temp_files()
        if removed:
            names = ", ".join(str(p.relative_to(run.path)) for p in removed)
            notes.append(f"removed {len(removed)} temporary file(s) that crashed processes left in {run.path}: {names}")
        yield notes


def _log_notes(run: RunDir, notes: list[str]) -> None:
    """Warnings about the state a run directory was found in, on the console and in its log.txt."""
    from .loggers import log_to_file

    with log_to_file(run.log if run.log.parent.is_dir() else None) as logger:
        for note in notes:
            logger.warning(note)


def _launch_rank() -> int:
    """This process's rank as its launcher set it (torchrun, SLURM, MPI, Fabric's subprocesses),
    known before Fabric starts; 0 for a process launched alone. Only rank 0 locks a run directory."""
    rank = os.environ.get("RANK", "").strip()  # torchrun: the global rank
    if rank.isdigit():
        return int(rank)
    for var in ("SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "LOCAL_RANK", "NODE_RANK"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) != 0:
            return int(value)
    return 0


def _int(name: str, value: Any, low: int) -> None:
    check_int(name, value, low)


def _float(name: str, value: Any, low: float, strict: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= low if strict else value < low):
        raise InvalidArgumentError(f"{name} must be a finite number {'>' if strict else '>='} {low}, got {value!r}")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    check_choice(name, value, choices)

