"""The body of :meth:`vaekit.training.Trainer.fit`: set-up on Fabric, the step, validation, checkpoints."""

from __future__ import annotations

import bisect
import logging
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path
from types import MethodType
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .. import __version__
from .._recording import to_config
from ..models.base import LatentVariableModel
from ..nn.modes import eval_mode
from .batches import IndexBatches, LoaderBatches, batch_len, take
from .checkpoint import CHECKPOINT_FORMAT, get_rng_state, save_checkpoint, save_weights, set_rng_state, to_plain
from .ema import EMA
from .evaluate import evaluate_objective
from .loggers import LOGGER_NAME, MetricsWriter, append_table, log_to_file, truncate_tables, progress_bar
from .policy import Monitor
from .rundir import RunDir, RunLock, atomic_write
from .schedules import LRSchedule, frozen_parameters, lr_groups
from .state import FAILED_STOP_REASONS, FitResult, LoopState
from .step import TrainStep, make_optimizer

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = ["FitLoop"]

log = logging.getLogger(LOGGER_NAME)


class FitLoop:
    """One call of :meth:`Trainer.fit` (internal; built and run by the trainer)."""

    def __init__(self, trainer: Trainer, model: nn.Module, data: Any, train: Any, val: Tensor | None,
                 objective: Any, run: RunDir | None, checkpoint: dict[str, Any] | None, config: Any) -> None:
        self.t, self.model, self.data, self.train, self.val = trainer, model, data, train, val
        self.objective, self.rundir, self.ckpt = objective, run, checkpoint
        self.config = to_plain(config) if config is not None else None
        self.state = LoopState()
        self._lock: RunLock | None = None  # the lock of a run directory created here (rank 0)
        self._saved_step = -1
        self._stop_message = ""  # why a failed run stopped (FitResult.message)

    # ------------------------------------------------------------------ set-up
    def _setup_fabric(self) -> None:
        from lightning_fabric import Fabric
        from lightning_fabric.connector import _is_using_cli
        from lightning_fabric.strategies.launchers.multiprocessing import _MultiProcessingLauncher

        t = self.t
        fabric = Fabric(accelerator=t.accelerator, devices=t.devices, strategy=t.strategy, num_nodes=t.num_nodes,
                        precision=t.precision)  # type: ignore[arg-type]
        if isinstance(fabric.strategy.launcher, _MultiProcessingLauncher):
            raise ValueError(f"strategy={t.strategy!r} spawns processes, which Trainer.fit does not support; use "
                             f"strategy='ddp' (launched by torchrun, SLURM or Fabric's own script launcher)")
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if launched > 1 and fabric.world_size == 1:
            raise ValueError(f"this process was launched as one of WORLD_SIZE={launched} (torchrun or SLURM), but the "
                             f"trainer has devices={t.devices!r}, strategy={t.strategy!r}, so every process would train "
                             f"alone; pass trainer.devices=<processes per machine> and trainer.strategy='ddp'")
        if not _is_using_cli():
            fabric.launch()
        self.fabric, self.rank, self.world = fabric, fabric.global_rank, fabric.world_size
        if t.compile and self.world > 1:
            raise ValueError("compile=True is supported with a single process only (for now)")
        n, need = batch_len(self.train), self.world * (t.batch_size if t.drop_last else 1)
        if n < need:
            raise ValueError(f"data.train has {n} examples, fewer than the {need} needed for {self.world} process(es)"
                             f"{f' with drop_last and batch_size={t.batch_size}' if t.drop_last else ''}")
        if self.val is not None and batch_len(self.val) < self.world:
            raise ValueError(f"data.val has {batch_len(self.val)} examples, fewer than the {self.world} processes")
        fabric.seed_everything(t.seed + self.rank, verbose=False)

    def _setup_model(self) -> None:
        t, fabric, model = self.t, self.fabric, self.model
        self.fmodel = fabric.setup_module(model)
        if self.world > 1:
            for name in ("elbo_terms", "log_weights"):
                if isinstance(getattr(model, name, None), MethodType):
                    self.fmodel.mark_forward_method(name)
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"{type(model).__name__} has no trainable parameters")
        groups = lr_groups(model, t.lr_multipliers)  # each with its "lr_mult" (LRSchedule.apply)
        # fused Adam: one kernel for every parameter, and the step's skip decision on the device
        self.optimizer = make_optimizer(t.optimizer, groups, lr=t.lr, betas=t.adam_betas, eps=t.adam_eps,
                                        weight_decay=t.weight_decay)
        self.fused = bool(self.optimizer.param_groups[0].get("fused"))
        fabric.setup_optimizers(self.optimizer)  # the strategy's hooks; the step calls the optimizer itself
        if isinstance(self.train, (Tensor, dict)):
            self.batches: IndexBatches | LoaderBatches = IndexBatches(
                fabric.to_device(self.train), t.batch_size, t.seed, self.rank, self.world, t.drop_last)
        else:
            self.batches = LoaderBatches(self.train, t.batch_size, t.seed, self.rank, self.world, t.drop_last,
                                         t.num_workers)
        self.val_device = fabric.to_device(self.val) if self.val is not None else None
        nb = len(self.batches)
        total = t.max_epochs * nb if t.max_steps is None else min(t.max_steps, t.max_epochs * nb)
        self.total_steps = total
        self.schedule = LRSchedule(t.lr_schedule, t.lr, total_steps=total, min_lr=t.min_lr,
                                   patience=t.plateau_patience, factor=t.plateau_factor,
                                   warmup_steps=t.warmup_steps, gamma=t.lr_gamma)
        # frozen parameters (Trainer(freeze)) are not averaged: they stay exactly as they are
        self.ema = (EMA(model, t.ema_decay, skip=frozen_parameters(model, t.freeze))
                    if t.ema_decay is not None else None)
        self.convert = fabric.strategy.precision.convert_input
        objective = self.objective
        # one process in full precision: the module itself, no autocast context, plain backward (per-step overhead)
        plain = self.world == 1 and t.precision == "32-true"
        fmodel = model if plain else self.fmodel

        def forward(x: Any, step: int) -> tuple[Tensor, dict[str, Tensor]]:
            if plain:
                return objective(fmodel, x, step)
            with fabric.autocast():
                return objective(fmodel, x, step)

        if t.compile:  # a tensor learning rate: the compiled update does not recompile when the schedule moves it
            for group in self.optimizer.param_groups:
                group["lr"] = torch.tensor(float(group["lr"]), device=fabric.device)
        self.stepper = TrainStep(
            forward, params, self.optimizer, grad_clip=t.grad_clip, skip_threshold=t.skip_threshold, ema=self.ema,
            ema_module=model, backward=None if plain else fabric.backward, compile=t.compile,
            reduce_bad=_all_reduce_sum if self.world > 1 else None)
        self._first_loss: Tensor | None = None  # the loss of a fresh run's first step (the divergence guard)

    def _probe(self) -> None:
        """Run the objective once, without gradients or RNG use, to check it and learn its metric names."""
        dev = self.fabric.device
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []), torch.no_grad():
            if self.val_device is not None:
                probe = take(self.val_device, slice(0, 8))
            else:
                probe = self.fabric.to_device(next(iter(self.batches.epoch(0))))
                augment = getattr(self.data, "augment", None)
                probe = augment(probe) if augment is not None else probe
            with eval_mode(self.model), self.fabric.autocast():
                loss, metrics = self.objective(self.model, self.convert(probe), 0)
        if not isinstance(loss, Tensor) or loss.dim() != 0:
            raise ValueError(f"the objective must return a scalar loss tensor, got {type(loss).__name__} "
                             f"of shape {tuple(getattr(loss, 'shape', ()))}")
        self.metric_names = sorted(metrics)
        if self.val is not None and self.t.monitor not in metrics:
            raise ValueError(f"monitor={self.t.monitor!r} is not a metric of {type(self.objective).__name__}; "
                             f"it returns {sorted(metrics)}")

    def _setup_run(self) -> None:
        t, model = self.t, self.model
        if self.rank == 0:
            if self.ckpt is not None:
                assert self.rundir is not None
                if self.config is not None:
                    self.rundir.write_config(self.config)
                config = self.config if self.config is not None else self.rundir.read_config()
            else:
                cls = type(model)
                config = self.config if self.config is not None else _describe(t, model, self.data, self.objective)
                if self.rundir is None:
                    self.rundir = RunDir.create(t.root_dir, t.run_name or cls.__name__, config)
                    self._lock = self.rundir.lock().acquire()
                elif self.rundir.config_file.is_file():  # laid out already (RunDir.create): the trainer locked it
                    self.rundir.write_config(config)
                else:
                    self.rundir = RunDir.init(self.rundir.path, config)
                    self._lock = self.rundir.lock().acquire()
                config = _record_data(config, self.data, self.rundir)  # in-memory arrays: stored in RUN/data/
            self.config = config
        path = self.fabric.broadcast(str(self.rundir.path) if self.rank == 0 else None, src=0)  # type: ignore[union-attr]
        self.rundir = RunDir(path) if self.rank != 0 else self.rundir

    def _restore(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        for group in self.optimizer.param_groups:  # a checkpoint from another device keeps our kernels
            if "fused" in group:  # Adam/AdamW (Adamax and RAdam have no fused kernel)
                group["fused"] = True if self.fused else None
            group["foreach"] = None
            if self.t.compile and not isinstance(group["lr"], Tensor):
                group["lr"] = torch.tensor(float(group["lr"]), device=self.fabric.device)
        self.schedule.load_state_dict(ckpt["scheduler"])
        if self.ema is not None:
            if ckpt["ema"] is None:
                log.warning("the checkpoint has no EMA state; the average restarts from the current weights")
            else:
                self.ema.load_state_dict(ckpt["ema"])
        self.state = s = LoopState.from_state_dict(ckpt["loop"])
        self.stepper.load_state_dict(_meter_state(s, self.metric_names), self.metric_names, self.fabric.device)
        self._saved_step = s.global_step
        if s.batch_in_epoch >= len(self.batches):  # batch size or data changed since the checkpoint
            if self.rank == 0:
                log.warning(f"the checkpoint stopped at batch {s.batch_in_epoch} of epoch {s.epoch}, but an epoch now "
                            f"has {len(self.batches)} batches; continuing with epoch {s.epoch + 1}")
            s.epoch, s.batch_in_epoch = s.epoch + 1, 0
        rng = ckpt["rng"]
        if len(rng) == self.world:
            set_rng_state(rng[self.rank])
        elif self.rank == 0:
            log.warning(f"the checkpoint was written by {len(rng)} process(es), this run has {self.world}: "
                        f"random streams are reseeded, so the continuation is not bit-exact")

    # ------------------------------------------------------------------ run
    def run(self) -> FitResult:
        """Set up, train until a stop condition, and return the result.

        A run directory created here (a new run) is locked on rank 0 from the moment it is
        laid out until this returns or raises (:class:`~vaekit.training.rundir.RunLock`); an
        existing one is locked by :meth:`Trainer.fit <vaekit.training.Trainer.fit>` around this call.
        """
        try:
            return self._run()
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def _run(self) -> FitResult:
        self._setup_fabric()
        self._setup_model()
        self._probe()
        self._setup_run()
        assert self.rundir is not None
        zero = self.rank == 0
        with log_to_file(self.rundir.log if zero else None, console=zero):
            if self.ckpt is not None:
                self._restore(self.ckpt)
                if zero:
                    truncate_tables(self.rundir.eval, self.state.global_step)
            self.writer = MetricsWriter(self.rundir, resume_step=self.state.global_step if self.ckpt else None) if zero else None
            self.bar = progress_bar(self.total_steps, min(self.state.global_step, self.total_steps),
                                    enabled=self.t.progress_bar and zero)
            try:
                self._announce()
                reason = self._finish(self._train())
            except Exception as e:
                self._record_failure(e)
                raise
            finally:
                self.bar.close()
                if self.writer is not None:
                    self.writer.close()
        if self.ema is not None:
            self.ema.copy_to(self.model)
        self.fabric.barrier()
        s = self.state
        return FitResult(run_dir=self.rundir, global_step=s.global_step, epoch=s.epoch,
                         best_metric=self._best(), skipped_steps=self._skipped(), stop_reason=reason,
                         message=self._stop_message if reason in FAILED_STOP_REASONS else "")

    def _record_failure(self, error: Exception) -> None:
        """Write the traceback of an error raised while training to ``log.txt`` (rank 0, not the console)
        and mark the error with that file (``error.vaekit_log_file``, read by ``vaekit fit``)."""
        if self.rank != 0 or self.rundir is None:
            return
        path = os.path.abspath(self.rundir.log)
        handlers = [h for h in log.handlers if isinstance(h, logging.FileHandler) and h.baseFilename == path]
        s = self.state
        record = log.makeRecord(log.name, logging.ERROR, __file__, 0,
                                f"Training failed at step {s.global_step} (epoch {s.epoch}): "
                                f"{type(error).__name__}: {error}", None, (type(error), error, error.__traceback__))
        for h in handlers:  # the run's file handler (log_to_file): the console shows the error once, from the caller
            h.handle(record)
        if handlers:
            try:
                error.vaekit_log_file = self.rundir.log  # type: ignore[attr-defined]
            except AttributeError:  # pragma: no cover - an exception type that takes no attributes
                pass

    def _skipped(self) -> int:
        """Skipped steps in total: the logged windows' and the current window's (a read of the meter)."""
        meter = self.stepper.meter
        return self.state.skipped_steps + (meter.peek()["skipped"] if meter is not None and meter.steps else 0)

    def _info(self, msg: str) -> None:
        if self.rank == 0:
            log.info(msg)

    def _best(self) -> float | None:
        b = self.state.best_metric
        return None if not math.isfinite(b) else (b if self.t.monitor_mode == "min" else -b)

    def _announce(self) -> None:
        n_params = sum(p.numel() for p in self.model.parameters())
        s, dev = self.state, self.fabric.device
        self._info(f"Training {type(self.model).__name__} ({n_params:,} parameters) with "
                   f"{type(self.objective).__name__} on {dev.type} x{self.world}, precision {self.t.precision}; "
                   f"{batch_len(self.train)} train / {0 if self.val is None else batch_len(self.val)} val examples, "
                   f"{len(self.batches)} batches per epoch; run directory {self.rundir.path}")
        if self.ckpt is not None:
            self._info(f"Resuming from {self.ckpt['path']} at step {s.global_step} "
                       f"(epoch {s.epoch}, batch {s.batch_in_epoch})")
        self._tick, self._samples = time.perf_counter(), 0

    def _train(self) -> str:
        t, s = self.t, self.state
        while True:
            if t.max_steps is not None and s.global_step >= t.max_steps:
                return "max_steps"
            if s.epoch >= t.max_epochs:
                return "max_epochs"
            for batch in self.batches.epoch(s.epoch, s.batch_in_epoch):
                reason = self._step(batch)
                if reason is not None:
                    return reason

    def _step(self, batch: Any) -> str | None:
        t, s = self.t, self.state
        x = batch if isinstance(self.batches, IndexBatches) else self.fabric.to_device(batch)
        augment = getattr(self.data, "augment", None)
        x = self.convert(augment(x) if augment is not None else x)
        lr = self.schedule.apply(self.optimizer, s.global_step, s.epoch)
        log_now = (s.global_step + 1) % t.log_every_steps == 0
        loss = self.stepper(x, s.global_step, norm=log_now)  # no host synchronisation
        if s.global_step == 0 and t.divergence_factor is not None:
            self._first_loss = loss.clone()  # (a CUDA graph reuses its output buffers)
        step_epoch = s.epoch
        s.global_step += 1
        s.batch_in_epoch += 1
        self._samples += batch_len(x) * self.world
        epoch_end = s.batch_in_epoch == len(self.batches)
        if epoch_end:
            s.epoch, s.batch_in_epoch = s.epoch + 1, 0
        self.bar.update(1)
        validate = ((t.val_every_steps is not None and s.global_step % t.val_every_steps == 0)
                    or (epoch_end and t.val_every_epochs is not None and s.epoch % t.val_every_epochs == 0))
        save = t.checkpoint_every_steps is not None and s.global_step % t.checkpoint_every_steps == 0
        reason = None
        if log_now:
            reason = self._log_train(step_epoch, lr)
        elif validate or save:  # a synchronisation point anyway: the bound on skipped steps is checked here too
            reason = self._check_skips(self.stepper.meter.peek())  # type: ignore[union-attr]
        if reason is not None:  # too many skips, or diverged: no validation, no checkpoint of these weights
            return reason
        if validate:
            reason = self._validate(step_epoch)
        if reason is None and t.checkpoint_every_steps is not None and s.global_step % t.checkpoint_every_steps == 0:
            reason = self._save([self.rundir.step_checkpoint(s.global_step), self.rundir.last_checkpoint],
                                [self.rundir.last_weights])
        if reason is None and t.max_steps is not None and s.global_step >= t.max_steps:
            reason = "max_steps"
        if reason is None and s.epoch >= t.max_epochs:
            reason = "max_epochs"
        return reason

    def _log_train(self, epoch: int, lr: float) -> str | None:
        """Write the mean training metrics of the window (the one read of the step's meter); returns
        ``"too_many_skips"`` or ``"diverged"`` when training must stop."""
        s = self.state
        window = self.stepper.meter.read()  # type: ignore[union-attr]
        s.skipped_steps += window["skipped"]
        values: dict[str, float] = dict(window["metrics"])
        if window["grad_norm"] is not None and window["metrics"]:
            values["grad_norm"] = window["grad_norm"]
        if self.world > 1 and values:
            names = sorted(values)
            vec = self.fabric.all_reduce(torch.tensor([values[n] for n in names], device=self.fabric.device),
                                         reduce_op="mean")
            values = dict(zip(names, vec.tolist()))
        now = time.perf_counter()
        speed = self._samples / max(now - self._tick, 1e-9)
        self._tick, self._samples = now, 0
        values.update(lr=lr, skipped_steps=float(s.skipped_steps), samples_per_s=speed)
        if self.writer is not None:
            self.writer.log(values, step=s.global_step, epoch=epoch, split="train")
        reason = self._check_skips(window, warn=True)
        if reason is not None:
            return reason
        if self._first_loss is not None:  # the first step's loss starts the divergence guard's history
            self._seed_divergence_guard(self._first_loss)
            self._first_loss = None
        if "loss" in values:
            self.bar.set_postfix(loss=f"{values['loss']:.4g}", samples_s=f"{speed:,.0f}", refresh=False)
            return self._check_divergence(values["loss"])
        return None

    def _check_skips(self, window: dict[str, Any], warn: bool = False) -> str | None:
        """``"too_many_skips"`` when a run of skipped steps in a meter window reached the bound; ``warn``:
        also warn about the window's skipped steps (once per window, when it is logged)."""
        t, s = self.t, self.state
        s.consecutive_skips = window["consecutive_skips"]
        if window["skipped"] and warn and self.rank == 0:
            log.warning(f"step {s.global_step}: {window['skipped']} of the last {window['steps']} steps skipped "
                        f"(non-finite loss or gradient"
                        f"{'' if t.skip_threshold is None else f', or gradient norm above {t.skip_threshold:g}'}; "
                        f"the last one's loss: {window['last_skip']:.4g}); {s.skipped_steps} skipped so far, "
                        f"{s.consecutive_skips} in a row")
        if window["max_consecutive_skips"] >= t.max_consecutive_skips:
            s.consecutive_skips = window["max_consecutive_skips"]
            return "too_many_skips"
        return None

    # ------------------------------------------------------------------ divergence guard
    def _seed_divergence_guard(self, loss: Tensor) -> None:
        """The loss of the first step (a fresh run) starts the guard's history, so that a run diverging
        within its first logged window is caught (one synchronisation, at this step only)."""
        first = loss.detach().float()
        if self.world > 1:
            first = self.fabric.all_reduce(first, reduce_op="mean")
        value = float(first)
        if math.isfinite(value):
            self.state.logged_losses = [value]

    def _check_divergence(self, loss: float) -> str | None:
        """Compare a logged training loss (the same on every process) with the running median."""
        t, s = self.t, self.state
        if t.divergence_factor is None:
            return None
        history = s.logged_losses
        median = bound = math.nan
        if history:
            n = len(history)
            median = history[n // 2] if n % 2 else 0.5 * (history[n // 2 - 1] + history[n // 2])
            bound = median + t.divergence_factor * max(abs(median), 1.0)
        if math.isfinite(loss) and not loss > bound:  # a loss below (or without) a bound enters the history
            bisect.insort(history, loss)
            s.diverging_windows = 0
            return None
        s.diverging_windows += 1
        if self.rank == 0:
            log.warning(f"step {s.global_step}: training loss {loss:.4g} is above the divergence bound {bound:.4g} "
                        f"(running median {median:.4g}, divergence_factor {t.divergence_factor:g}); "
                        f"{s.diverging_windows} of {t.divergence_patience} logged windows in a row")
        if s.diverging_windows < t.divergence_patience:
            return None
        self._stop_message = (
            f"Training diverged: the logged training loss was above the divergence bound for {s.diverging_windows} "
            f"windows of {t.log_every_steps} steps in a row (last {loss:.4g} at step {s.global_step}; running median "
            f"{median:.4g}, bound median + divergence_factor x max(|median|, 1) = {bound:.4g}). The current weights "
            f"were not written; {self._kept_checkpoints()}. Lower the learning rate "
            f"(lr={t.lr:g}) or set grad_clip; divergence_factor=None turns the guard off")
        return "diverged"

    # ------------------------------------------------------------------ validation and checkpoints
    def _kept_checkpoints(self) -> str:
        """What a stopped run leaves to resume from, for its stop message: the last checkpoint, or that none exists."""
        last = self.rundir.last_checkpoint
        if last.is_file():
            return f"no checkpoint was overwritten: the last good one, {last}, is kept"
        return (f"no checkpoint had been written yet ({self.rundir.checkpoints} holds none), so there is nothing "
                f"to resume from: start again")

    def _validate(self, epoch: int) -> str | None:
        t, s = self.t, self.state
        if s.last_val_step == s.global_step:
            return None
        s.last_val_step = s.global_step
        improved = False
        if self.val_device is not None:
            ebs = t.eval_batch_size or t.batch_size
            with self.ema.swapped(self.model) if self.ema is not None else nullcontext():
                values = evaluate_objective(self.objective, self.model, self.val_device, batch_size=ebs,
                                            step=s.global_step, fabric=self.fabric)
            s.validations += 1
            if self.writer is not None:
                self.writer.log(values, step=s.global_step, epoch=epoch, split="val")
            m = values[t.monitor]
            key = m if t.monitor_mode == "min" else -m
            monitor = Monitor()  # the loop state holds its best value and count (checkpointed)
            monitor.best, monitor.bad = s.best_metric, s.bad_validations
            improved = monitor.observe(key)
            s.best_metric, s.bad_validations = monitor.best, monitor.bad
            if self.schedule.observe(key):
                self._info(f"step {s.global_step}: no improvement in {t.plateau_patience} validations, "
                           f"learning rate reduced to {self.schedule.lr(s.global_step, s.epoch):.3g}")
            self._report(epoch, ebs)
            best = "new best" if improved else f"best {t.monitor}={self._best():.4f}" if self._best() is not None else ""
            self._info(f"epoch {epoch} step {s.global_step}: val "
                       + " ".join(f"{k}={v:.4f}" for k, v in values.items()) + (f" ({best})" if best else ""))
        paths, weights = [self.rundir.last_checkpoint], [self.rundir.last_weights]
        if improved:
            paths.append(self.rundir.best_checkpoint)
            weights.append(self.rundir.best_weights)
        reason = self._save(paths, weights)
        if reason is None and t.early_stopping_patience is not None and s.bad_validations >= t.early_stopping_patience:
            self._info(f"early stopping: no improvement of val {t.monitor} in {s.bad_validations} validations")
            return "early_stopping"
        return reason

    def _report(self, epoch: int, batch_size: int) -> None:
        """The model's :meth:`~vaekit.models.LatentVariableModel.validation_report` (rank 0): extra metrics
        and eval/<table>.csv rows."""
        if not isinstance(self.model, LatentVariableModel) or self.rank != 0:
            return
        s = self.state
        with self.ema.swapped(self.model) if self.ema is not None else nullcontext(), eval_mode(self.model), \
                torch.no_grad():
            report = self.model.validation_report(self.val_device, batch_size=batch_size)
        if report is None:
            return
        metrics = {k: float(v) for k, v in report.metrics.items()}
        if metrics and self.writer is not None:
            self.writer.log(metrics, step=s.global_step, epoch=epoch, split="val")
        if metrics:
            self._info(f"epoch {epoch} step {s.global_step}: val " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        for name, rows in report.tables.items():
            append_table(self.rundir.eval / f"{name}.csv", rows, epoch=epoch, step=s.global_step)

    def _weights_finite(self) -> bool:
        tensors = [p.detach() for p in self.model.parameters()]
        if self.ema is not None:
            tensors += list(self.ema.shadow.values())
        return bool(torch.stack([torch.isfinite(p).all() for p in tensors]).all())

    def _save(self, paths: list[Path], weight_paths: list[Path]) -> str | None:
        """Write checkpoints (rank 0) after checking that the weights are finite; returns a stop reason or None."""
        if not self._weights_finite():
            self._stop_message = (f"step {self.state.global_step}: the weights are no longer finite; nothing was "
                                  f"written, the last good checkpoint in {self.rundir.checkpoints} is kept. Stopping.")
            if self.rank == 0:
                log.error(self._stop_message)
            return "non_finite_weights"
        rng = [get_rng_state()]
        if self.world > 1:
            rng = [None] * self.world
            torch.distributed.all_gather_object(rng, get_rng_state())
        self.state.acc = self.stepper.state_dict()  # the meter's window so far: resume continues it
        if self._first_loss is not None:  # a checkpoint before the first logged row keeps the guard's seed
            self._seed_divergence_guard(self._first_loss)
            self._first_loss = None
        if self.rank == 0:
            state = {
                "format": CHECKPOINT_FORMAT, "format_version": 1, "vaekit_version": __version__,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.schedule.state_dict(), "ema": None if self.ema is None else self.ema.state_dict(),
                "loop": self.state.state_dict(), "rng": rng, "config": self.config or {},
                "trainer": self.t.get_params(),
            }
            for p in paths:
                save_checkpoint(p, state, manifest=True)  # SHA-256 in checkpoints/manifest.json
            weights = self.ema.model_state_dict(self.model) if self.ema is not None else self.model.state_dict()
            for w in weight_paths:
                save_weights(w, weights, manifest=True)
        self._saved_step = self.state.global_step
        return None

    def _finish(self, reason: str) -> str:
        s = self.state
        meter = self.stepper.meter
        if reason in ("max_epochs", "max_steps", "early_stopping") and meter is not None and meter.steps:
            reason = self._check_skips(meter.peek()) or reason  # skips since the last read reached the bound?
        if reason in ("max_epochs", "max_steps", "early_stopping") and self._saved_step != s.global_step:
            saved = self._save([self.rundir.last_checkpoint], [self.rundir.last_weights])
            reason = saved or reason
        if reason == "too_many_skips":
            self._stop_message = (f"Training stopped: {s.consecutive_skips} steps in a row were skipped (non-finite "
                                  f"loss or gradient, or gradient norm above skip_threshold); "
                                  f"{self._kept_checkpoints()}")
        if reason in ("too_many_skips", "diverged") and self.rank == 0:
            log.error(self._stop_message)
        best = self._best()
        self._info(f"Stopped ({reason}) at step {s.global_step}, epoch {s.epoch}; {self._skipped()} skipped steps"
                   + (f"; best val {self.t.monitor}={best:.4f}" if best is not None else "")
                   + f". Run directory: {self.rundir.path}")
        return reason


def _all_reduce_sum(value: Tensor) -> Tensor:
    """Sum ``value`` over the processes, in place (no barrier: Fabric's ``all_reduce`` waits for every process)."""
    torch.distributed.all_reduce(value)
    return value


def _meter_state(state: LoopState, names: list[str]) -> dict[str, Tensor]:
    """The step meter's window from a checkpoint's loop state (``state.acc``).

    Checkpoints of earlier vaekit versions hold per-metric running sums and ``acc_steps``
    instead; they are converted, so that such runs resume."""
    acc = state.acc
    if not acc or "sums" in acc:
        return acc
    n = float(state.acc_steps)
    sums = [float(acc[k]) if k in acc else 0.0 for k in names]
    norm = float(acc["grad_norm"]) if "grad_norm" in acc else 0.0
    return {"sums": torch.tensor([*sums, norm, n if "grad_norm" in acc else 0.0, n]),
            "skips": torch.tensor([float(state.consecutive_skips), float(state.consecutive_skips), 0.0, 0.0]),
            "steps": torch.tensor(state.acc_steps)}


def _describe(trainer: Any, model: nn.Module, data: Any, objective: Any) -> dict[str, Any]:
    """The config of a run started from Python: every section whose objects recorded their
    constructor arguments (vaekit classes do), so ``vaekit.load`` can rebuild the model.
    A section that cannot be written is left out, except the arrays of ``ArrayData`` and
    ``GroupedArrays``, which :func:`_record_data` stores in the run directory."""
    from ..data.stored import can_store

    config: dict[str, Any] = {}
    for key, obj in (("model", model), ("data", data), ("objective", objective)):
        try:
            config[key] = to_config(obj, key)
        except TypeError as e:
            if key == "data" and can_store(data):
                continue  # in-memory arrays: _record_data stores them in the run directory
            consequence = "vaekit.load() cannot rebuild this run's model" if key == "model" else "it is left out"
            log.warning(f"config.yaml: the {key} section cannot be written ({e}); {consequence}. Build it from classes "
                        f"that record their arguments (vaekit's, or yours deriving from vaekit.Configurable)")
    config["trainer"] = trainer.get_params()
    return config


#: In-memory data up to this size is copied into a new run (``RUN/data/arrays.npz``) so that
#: ``vaekit evaluate RUN`` can rebuild it; larger data is not copied (a warning says so).
STORE_DATA_MAX_BYTES = 2**30


def _save_arrays(path: Path, arrays: dict[str, Any]) -> str:
    """Write ``arrays`` as an ``.npz`` at ``path`` atomically; return its SHA-256 (hex)."""
    import hashlib
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # str and numeric arrays only: read back with allow_pickle=False
    content = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(content))
    return hashlib.sha256(content).hexdigest()


def _record_data(config: Any, data: Any, rundir: RunDir) -> Any:
    """The ``data`` section of a new run's ``config.yaml``, rewritten when it changes.

    - No section and in-memory arrays (``ArrayData``, ``GroupedArrays``): the arrays are saved
      as ``RUN/data/arrays.npz`` and the section reads them back with the same split, checking
      the file's SHA-256 first (:func:`vaekit.data.stored.stored_arrays`), so
      ``vaekit evaluate RUN`` works for runs fitted from Python; data above
      :data:`STORE_DATA_MAX_BYTES` (1 GiB) is not copied, with a warning.
    - A section for the data module's own class: the arguments the module recorded as it
      normalized them (``Table``'s absolute ``path``) replace the ones given, so the run
      reads its data from any directory.
    """
    from ..data.stored import ARRAYS_NAME, stored_arrays

    if not isinstance(config, dict):
        return config
    section = config.get("data")
    if section is None:
        path = (rundir.path / "data" / ARRAYS_NAME).absolute()
        stored = stored_arrays(data, path)
        if stored is None:
            return config
        arrays, stored_section = stored
        size = sum(int(a.nbytes) for a in arrays.values())
        if size > STORE_DATA_MAX_BYTES:  # a copy per run of a large in-memory dataset is not what anyone wants
            log.warning(f"config.yaml: the in-memory data ({size / 2**30:.1f} GiB) is larger than "
                        f"{STORE_DATA_MAX_BYTES / 2**30:.0f} GiB, so it is not copied into the run directory and the "
                        f"run has no data section (vaekit evaluate RUN needs one): save the arrays with np.savez and "
                        f"train on vaekit.data.ArrayFile / GroupedArrayFile to keep a path instead")
            return config
        stored_section["init_args"]["sha256"] = _save_arrays(path, arrays)
        log.info(f"the in-memory data was saved as {path}; config.yaml reads it back")
        config = {**config, "data": stored_section}
    else:
        try:
            recorded = to_config(data, "data")
        except TypeError:
            return config
        name = str(section.get("class_path", "")).rpartition(".")[2] if isinstance(section, dict) else None
        if not isinstance(recorded, dict) or name != type(data).__name__:
            return config
        given = dict(section.get("init_args") or {})
        changed = {k: v for k, v in recorded["init_args"].items() if k in given and given[k] != v}
        if not changed:
            return config
        config = {**config, "data": {**section, "init_args": {**given, **changed}}}
    rundir.write_config(config)
    return config
