"""The one training step of vaekit, and the device-side meter of its metrics.

:class:`TrainStep` is what every fit in vaekit runs per batch (:class:`~vaekit.training.Trainer`,
:class:`~vaekit.embedding.VAEEmbedder`, :func:`~vaekit.inference.groups.fit_group_encoder`)::

    loss, metrics = forward(batch)          # the objective
    backward(loss)
    bad = loss or a gradient is not finite  # (or the gradient norm is above skip_threshold)
    clip the gradients                      # when grad_clip is set
    optimizer step, masked by ``bad``       # fused Adam's found_inf: no update, no step count
    EMA update, masked by ``bad``
    meter.add(metrics, bad)                 # running sums on the device

Nothing in it waits for the device: the skip decision is a tensor that the fused optimizer
reads on the device, and the metrics are summed there by :class:`StepMeter` until the policy
layer reads them (one synchronisation per logged window). The gradient norm is computed
only when clipping, ``skip_threshold`` or the caller (a step that ends a logged window)
needs it; otherwise one fused non-finite check over the gradients decides.

Eager, fused Adam's kernel is called directly (``_FusedAdam``: what ``Adam.step`` does,
without its Python machinery) on the optimizer's own state tensors.

With ``compile`` the forward (and, through AOTAutograd, its backward) is one compiled graph
and the whole update another (``_update_graph``: the checks, clipping, Adam written out
with the fused kernel's arithmetic and masked by the skip flag, the EMA and the meter), which
inductor turns into a few loops over the parameters. ``mode="reduce-overhead"`` captures the
compiled parts in CUDA graphs on a GPU.

An optimizer without a fused kernel (another torch, or parameters that are not floating
point) cannot take the mask; the step then reads the decision on the host (one
synchronisation per step) and skips ``optimizer.step()`` itself.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import optimizer as _optim_module
from torch.torch_version import TorchVersion

from .._checks import InvalidArgumentError
from .ema import EMA

_log = logging.getLogger("vaekit")

__all__ = ["TrainStep", "StepMeter", "adam", "make_optimizer", "COMPILE_MODES", "OPTIMIZERS"]

#: ``Trainer(optimizer=...)`` names: Adam and AdamW (fused, the skip decision on the device), Adamax and
#: RAdam (torch has no fused kernel for them: the step reads the skip decision on the host).
OPTIMIZERS = ("adam", "adamw", "adamax", "radam")

#: ``Trainer(compile=...)`` values besides True/False (``torch.compile`` modes).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

#: the modes in which inductor captures CUDA graphs (the tensors a compiled update writes keep their address)
_CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def _total_norm(grads: list[Tensor]) -> Tensor:
    """The 2-norm of all gradients together, as a float32 0-dim tensor on their device."""
    if hasattr(torch.nn.utils, "get_total_norm"):  # torch >= 2.6: grouped by device and dtype
        return torch.nn.utils.get_total_norm(grads).float()
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))


#: torch.compiler.is_compiling exists from torch 2.3; torch._dynamo.is_compiling before
_is_compiling: Callable[[], bool] = getattr(torch.compiler, "is_compiling", None) or torch._dynamo.is_compiling


def _meter_add(sums: Tensor, run: Tensor, longest: Tensor, last: Tensor, zero: Tensor, row: Tensor, bad: Tensor,
               loss: Tensor | None) -> None:
    """:meth:`StepMeter.add` on the meter's tensors, in place (the compiled update calls it too)."""
    with torch.no_grad():
        skipped = bad > 0
        sums.add_(torch.where(skipped, zero, row))
        if loss is not None and loss.dtype != torch.float32:
            loss = loss.float()
        if _is_compiling():  # (no out= in a traced graph)
            run.copy_((run + 1.0) * bad)
            longest.copy_(torch.maximum(longest, run))
            if loss is not None:
                last.copy_(torch.where(skipped, loss, last))
            return
        torch.addcmul(bad, run, bad, out=run)  # (run + 1) * bad: the run of skipped steps, in one operation
        torch.maximum(longest, run, out=longest)
        if loss is not None:
            torch.where(skipped, loss, last, out=last)


class StepMeter:
    """Running sums of the training metrics of a window of steps, kept on the device.

    :meth:`add` costs a handful of device operations and never synchronises; :meth:`record`
    (the eager step's) writes the step's row into a buffer of BUFFER_ROWS rows in one operation
    and folds the buffer into the sums, in a few device operations without a synchronisation,
    when it is full; :meth:`read` folds what is buffered and (one transfer) returns the window's
    means and counters and starts the next window. Nothing else folds: :meth:`peek` computes
    from the sums and the buffered rows without changing them and :meth:`state_dict` saves the
    buffered rows, so the fold positions depend only on the steps since the last :meth:`read`.
    Skipped steps add nothing to the means. The run of consecutive skipped steps carries
    over from window to window.

    Parameters
    ----------
    names : sequence of str
        The metric names, in the order of the values in :meth:`row`.
    device : torch.device
        Where the sums live.

    Examples
    --------
    >>> m = StepMeter(["loss"], torch.device("cpu"))
    >>> m.add(m.row([torch.tensor(2.0)]), bad=torch.tensor(0.0))
    >>> m.add(m.row([torch.tensor(float("nan"))]), bad=torch.tensor(1.0))
    >>> w = m.read()
    >>> (w["metrics"], w["steps"], w["skipped"], w["max_consecutive_skips"])
    ({'loss': 2.0}, 2, 1, 1)
    """

    def __init__(self, names: Sequence[str], device: torch.device) -> None:
        self.names = list(names)
        m = len(self.names)
        self.device = device
        # [metric sums..., grad-norm sum, steps with a grad norm, good steps]
        self.sums = torch.zeros(m + 3, dtype=torch.float32, device=device)
        self.run = torch.zeros((), dtype=torch.float32, device=device)  # the current run of skipped steps
        self.longest = torch.zeros((), dtype=torch.float32, device=device)  # the longest run in this window
        self.last = torch.zeros((), dtype=torch.float32, device=device)  # the loss of the last skipped step
        self._zero = torch.zeros((), dtype=torch.float32, device=device)
        self._one = torch.ones((), dtype=torch.float32, device=device)
        self.steps = 0  # steps added in this window (host counter)
        # steps recorded by record() and not yet folded into the sums: one row each, [values, norm, has norm,
        # bad, loss] (BUFFER_ROWS rows, allocated at the first record())
        self._buffer: Tensor | None = None
        self._rows: list[Tensor] = []  # the buffer's rows (views made once)
        self._pending = 0

    #: rows :meth:`record` keeps before it folds them into the sums (a few operators, no synchronisation)
    BUFFER_ROWS = 64

    def row(self, values: Sequence[Any], grad_norm: Tensor | None = None) -> Tensor:
        """One step's row: the metric values (0-dim tensors or numbers, in ``names`` order), the
        gradient norm (when computed) and the counters, as one float32 vector (one operation)."""
        items = [(v if v.device == self.device else v.to(self.device)) if isinstance(v, Tensor)
                 else torch.tensor(float(v), device=self.device) for v in values]
        items += [self._zero, self._zero, self._one] if grad_norm is None else [grad_norm, self._one, self._one]
        with torch.no_grad():
            out = torch.stack([t if t.dim() == 0 else t.reshape(()) for t in items])
        return out if out.dtype == torch.float32 else out.float()

    @torch.no_grad()
    def add(self, row: Tensor, bad: Tensor, loss: Tensor | None = None, count: bool = True) -> None:
        """Add one step's :meth:`row`; ``bad`` is 1.0 for a skipped step, 0.0 otherwise (0-dim, float32).
        ``count=False``: the caller calls :meth:`count` itself (outside compiled code)."""
        _meter_add(self.sums, self.run, self.longest, self.last, self._zero, row, bad, loss)
        if count:
            self.count()

    def count(self) -> None:
        """Count one more step in the window (the host side of :meth:`add`; a compiled step calls
        ``add`` inside its graph and this outside)."""
        self.steps += 1

    @torch.no_grad()
    def record(self, values: Sequence[Any], grad_norm: Tensor | None, bad: Tensor, loss: Tensor) -> None:
        """:meth:`add` of one step (counted), in one device operation: the step's row is written into a
        buffer of BUFFER_ROWS rows, folded into the sums (a few device operations, no synchronisation) when
        it is full and by :meth:`read`, nowhere else (the same sums, run and longest run as :meth:`add` of
        each row in turn, the sums up to float32 rounding)."""
        self._allocate()
        items = [(v if v.device == self.device else v.to(self.device)) if isinstance(v, Tensor)
                 else torch.tensor(float(v), device=self.device) for v in values]
        items += [self._zero, self._zero] if grad_norm is None else [grad_norm, self._one]
        items += [bad, loss if loss.device == self.device else loss.to(self.device)]
        torch.stack([t if t.dim() == 0 else t.reshape(()) for t in items], out=self._rows[self._pending])
        self._pending += 1
        self.steps += 1
        if self._pending == self.BUFFER_ROWS:
            self._fold()

    def _allocate(self) -> None:
        """The buffer of :meth:`record` (BUFFER_ROWS rows of [values, norm, has norm, bad, loss]), once."""
        if self._buffer is None:
            self._buffer = torch.zeros(self.BUFFER_ROWS, len(self.names) + 4, dtype=torch.float32, device=self.device)
            self._rows = list(self._buffer)

    @torch.no_grad()
    def _fold(self) -> None:
        """Add the buffered rows of :meth:`record` to the sums, the run of skipped steps, the longest run and
        the last skipped loss, in place (a few device operations, no synchronisation). A full buffer calls it,
        nothing else (:meth:`read` adds the rows on the host): where the rows are folded depends only on the
        steps since the last read (a checkpoint saves the buffered rows instead), so the float32 sums of a
        resumed run are the same."""
        if not self._pending:
            return
        with torch.profiler.record_function("StepMeter._fold"):
            sums, run, longest, last = self._totals()
            self.sums.copy_(sums), self.run.copy_(run), self.longest.copy_(longest), self.last.copy_(last)
            self._pending = 0

    def _totals(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The sums, run, longest run and last skipped loss with the buffered rows added (new tensors; the
        meter's own when nothing is buffered). Device operations only: the last skipped row is picked with
        ``index_select``, not a Python index (which would read the index back to the host)."""
        n = self._pending
        if not n:
            return self.sums, self.run, self.longest, self.last
        rows = self._buffer[:n]  # type: ignore[index]
        m = len(self.names)
        skipped = rows[:, m + 2] > 0
        good = ~skipped
        added = torch.where(skipped.unsqueeze(1), self._zero, rows[:, :m + 2]).sum(0)
        sums = self.sums + torch.cat([added, good.sum().float().reshape(1)])
        # the run of skipped steps after each row: its index minus that of the last good row up to it (a run
        # carried in counts as good rows before the first)
        idx = torch.arange(n, dtype=torch.float32, device=self.device)
        last_good = torch.where(good, idx, -1.0 - self.run).cummax(0).values
        runs = idx - last_good
        longest = torch.maximum(self.longest, runs.max())
        last_bad = torch.where(skipped, idx, -1.0).max()
        picked = rows[:, m + 3].index_select(0, last_bad.clamp(min=0).long().reshape(1)).reshape(())
        return sums, runs[-1], longest, torch.where(last_bad >= 0, picked, self.last)

    def read(self) -> dict[str, Any]:
        """The window's means and counters (:meth:`peek`), then start the next window: the buffered rows
        are folded on the host, from the one read of :meth:`peek` (a few device operations, not a dozen)."""
        out, run, last = self._window()
        self._pending = 0
        self.sums.zero_()
        self.run.fill_(run), self.longest.fill_(run), self.last.fill_(last)
        self.steps = 0
        return out

    def peek(self) -> dict[str, Any]:
        """The window's means and counters so far (one synchronisation); the meter is not changed.

        Returns a dict with ``metrics`` (name -> mean over the good steps; empty when every
        step was skipped), ``grad_norm`` (mean over the good steps that computed it, or
        None), ``steps``, ``skipped``, ``consecutive_skips`` (the current run),
        ``max_consecutive_skips`` (the longest run that ended or continued in the window),
        ``last_skip`` (the loss of the last skipped step, or None without one).
        """
        return self._window()[0]

    def _window(self) -> tuple[dict[str, Any], float, float]:
        """:meth:`peek`'s dict, the run of skipped steps and the last skipped loss after the buffered rows.

        One read of the device: the sums, the skip state and the buffered rows in one ``tolist``; the rows
        are then added on the host, in order, as :meth:`_totals` adds them on the device (the sums in
        float64 instead of float32)."""
        n, m = self._pending, len(self.names)
        parts = [self.sums, torch.stack([self.run, self.longest, self.last])]
        if n:
            parts.append(self._buffer[:n].reshape(-1))  # type: ignore[index]
        values = torch.cat(parts).tolist()
        sums, (run, longest, last_loss) = values[:m + 3], values[m + 3:m + 6]
        width = m + 4
        for i in range(n):  # rows: [values, norm, has norm, bad, loss]
            row = values[m + 6 + i * width:m + 6 + (i + 1) * width]
            if row[m + 2] > 0:  # a skipped step: nothing added, the run goes on
                run += 1.0
                longest, last_loss = max(longest, run), row[m + 3]
            else:
                sums[:m + 2] = [a + b for a, b in zip(sums[:m + 2], row[:m + 2])]
                sums[m + 2] += 1.0
                run = 0.0
        (norm_sum, norm_n, good), sums = sums[m:m + 3], sums[:m]
        good_i = int(round(good))
        out = {
            "metrics": {name: v / good for name, v in zip(self.names, sums)} if good_i else {},
            "grad_norm": norm_sum / norm_n if norm_n else None,
            "steps": self.steps, "skipped": self.steps - good_i,
            "consecutive_skips": int(round(run)), "max_consecutive_skips": int(round(longest)),
            "last_skip": last_loss if self.steps > good_i else None,
        }
        return out, run, last_loss

    def state_dict(self) -> dict[str, Tensor]:
        """The window so far (CPU tensors), for a checkpoint: the sums and the rows buffered since the last
        fold (``pending``, not folded: a resumed run folds them where the straight run does)."""
        rows = self._buffer[:self._pending] if self._buffer is not None else torch.zeros(0, len(self.names) + 4)
        return {"sums": self.sums.detach().cpu(), "skips": torch.stack([self.run, self.longest, self.last]).cpu(),
                "steps": torch.tensor(self.steps), "names": list(self.names),  # type: ignore[dict-item]
                "pending": rows.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore :meth:`state_dict` (an empty dict leaves the meter empty; a state without ``pending``, from
        before the buffer, has no buffered rows)."""
        self._pending = 0
        if not state:
            return
        skips = state["skips"].to(self.device, torch.float32)
        self.run.copy_(skips[0]), self.longest.copy_(skips[1]), self.last.copy_(skips[2])
        names = state.get("names")
        if state["sums"].shape != self.sums.shape or (names is not None and list(names) != self.names):
            return  # the objective's metrics changed: the partial window's sums start again (the skip run is kept)
        self.sums.copy_(state["sums"])
        self.steps = int(state["steps"])
        pending = state.get("pending")
        if pending is not None and len(pending):
            self._allocate()
            self._buffer[:len(pending)].copy_(pending)  # type: ignore[index]
            self._pending = len(pending)


class TrainStep:
    """One optimisation step (see the module docstring): forward, backward, masked update, meter.

    Parameters
    ----------
    forward : callable
        ``forward(batch, step) -> (loss, metrics)``: a scalar loss tensor and a dict of
        scalar metrics (tensors or numbers). Its metric names must not change between calls.
    params : sequence of Tensor
        The trainable parameters (their gradients are checked, clipped and stepped).
    optimizer : torch.optim.Optimizer
        Fused Adam/AdamW take the skip decision on the device (``found_inf``); any other
        optimizer is stepped after a host check.
    grad_clip : float, optional
        Clip the global gradient norm to this value.
    skip_threshold : float, optional
        Also skip a step whose gradient norm (before clipping) exceeds this.
    ema : EMA, optional
        Updated from ``ema_module`` after every good step.
    ema_module : nn.Module, optional
        The module whose parameters the EMA tracks.
    backward : callable, optional
        ``backward(loss)`` (default ``loss.backward()``; the trainer passes Fabric's).
    reduce_bad : callable, optional
        Sums a float 0-dim tensor over processes (DDP), so that every process skips alike.
    compile : bool or str
        ``torch.compile`` the step: True for the default mode, or one of :data:`COMPILE_MODES`.
    Notes
    -----
    Compiled, with fused Adam/AdamW, the plain backward and one process, every step after the
    first (eager: it creates the optimizer's state) is one compiled function
    (:func:`_train_graph`): the forward, the gradients by ``torch.autograd.grad`` (traced by
    dynamo: torch >= 2.11), the checks, the update, the EMA and the meter, without ``.grad``
    tensors. A parameter that gets no gradient at a step is not updated, as in eager. Elsewhere
    the forward with its backward and the update are two graphs: when a parameter got no
    gradient at the first step (it has no Adam state), a parameter has a post-accumulate-grad
    hook, several processes train (DDP accumulates into ``.grad``), amsgrad, or the one graph
    fails to compile (a warning says so).
    """

    def __init__(self, forward: Callable[[Any, int], tuple[Tensor, dict[str, Any]]], params: Sequence[Tensor],
                 optimizer: torch.optim.Optimizer, *, grad_clip: float | None = None,
                 skip_threshold: float | None = None, ema: EMA | None = None, ema_module: nn.Module | None = None,
                 backward: Callable[[Tensor], Any] | None = None, reduce_bad: Callable[[Tensor], Tensor] | None = None,
                 compile: bool | str = False) -> None:
        if ema is not None and ema_module is None:
            raise ValueError("an EMA needs the ema_module whose parameters it tracks")
        self.params = list(params)
        self.optimizer = optimizer
        self.grad_clip, self.skip_threshold = grad_clip, skip_threshold
        self.ema, self.ema_module = ema, ema_module
        self._backward = backward if backward is not None else Tensor.backward
        self.reduce_bad = reduce_bad
        self.masked = _takes_found_inf(optimizer)
        mode = _compile_mode(compile)
        # fused Adam/AdamW: its kernel called directly (eager), or its update written out and compiled
        self._adam = _FusedAdam(optimizer, share_steps=mode is None) if _FusedAdam.supports(optimizer) else None
        self.meter: StepMeter | None = None
        self._found: Tensor | None = None
        self._unit: Tensor | None = None
        self.compiled = mode is not None
        self._mode = mode
        self._cpu = bool(self.params) and self.params[0].device.type == "cpu"
        self._raw_forward = forward
        self._compiled_forward: Callable[[Any, int], tuple[Tensor, dict[str, Any]]] | None = None
        # the one-graph step (compiled, fused Adam/AdamW, plain backward, one process, a torch whose dynamo traces
        # autograd.grad): None until the first step (eager) has decided it, then True or False
        self._fused: bool | None = None if (mode is not None and self._adam is not None and backward is None
                                            and reduce_bad is None and _TRACES_GRAD) else False
        self._train_fns: dict[tuple[Any, ...], Callable[..., tuple[Tensor, tuple[Tensor, ...]]]] = {}
        # compiled, another optimizer (or DDP's reduced flag): the checks (with clipping and the meter) in one graph,
        # then optimizer.step()
        self._check_fn = self._check if mode is None else torch.compile(self._check, **self._compile_how())
        # compiled, fused Adam/AdamW on one process: checks, clipping, the update, the EMA and the meter in one graph
        # one compiled update per spec (the groups' sizes with a gradient, their hyper-parameters): a parameter
        # whose gradient comes and goes (a loss term on some batches only) switches between two, not recompiles
        self._update_fns: dict[tuple[Any, ...], Callable[..., tuple[Tensor, ...]]] = {}
        self._ema_params: list[Tensor] | None = None
        self._norm_weights: tuple[Tensor, Tensor] | None = None

    # the step ------------------------------------------------------------------------------
    def __call__(self, batch: Any, step: int, *, norm: bool = False) -> Tensor:
        """Train on ``batch`` (optimizer step ``step``); returns the loss (a device tensor, not read).

        ``norm=True`` computes the gradient norm for the meter even without clipping.
        """
        with_norm = norm or self.grad_clip is not None or self.skip_threshold is not None
        if self._fused is None and self.meter is not None and self._adam is not None \
                and self._adam.groups(with_grads=False) is not None:
            # a resumed run: the optimizer's state and the meter's window came from a checkpoint, so no eager
            # first step is needed to create them; taking this step compiled, as the uninterrupted run took it,
            # keeps the resumed trajectory bit-identical to it
            self._fused = self._can_fuse()
        if self._fused:
            loss = self._fused_step(batch, step, with_norm)
            if loss is not None:
                return loss
        first = self._fused is None  # eager: it creates the optimizer's state and decides the one-graph step
        loss, metrics = (self._raw_forward if first or not self.compiled else self._forward_graph())(batch, step)
        if self.meter is None:
            self.meter = StepMeter(sorted(metrics), loss.device)
        if self._found is None:  # the skip flag (found_inf), reused by every step: a static buffer for CUDA graphs
            self._found = torch.zeros((), dtype=torch.float32, device=loss.device)
            self._unit = torch.ones((), dtype=torch.float32, device=loss.device)
        self._backward(loss)
        loss = loss.detach()
        self._update(loss, [metrics[n] for n in self.meter.names], with_norm, eager=first)
        if first:
            self._fused = self._can_fuse()
        for group in self.optimizer.param_groups:  # optimizer.zero_grad(set_to_none=True), without its profiler
            for p in group["params"]:  # record and hooks machinery (tens of microseconds a step)
                p.grad = None
        return loss

    def _forward_graph(self) -> Callable[[Any, int], tuple[Tensor, dict[str, Any]]]:
        """The compiled forward (its backward compiled by AOTAutograd), made at its first use."""
        if self._compiled_forward is None:
            self._compiled_forward = torch.compile(self._raw_forward, **self._compile_how(cpp=True))
        return self._compiled_forward

    def _update(self, loss: Tensor, values: list[Any], with_norm: bool, eager: bool = False) -> None:
        with torch.no_grad():
            if (self.compiled and not eager and self._adam is not None and self.reduce_bad is None
                    and self._compiled_update(loss, values, with_norm)):
                return
            bad = (self._check if eager else self._check_fn)(loss, values, with_norm)
            if self.compiled:  # (eager, record() counted it)
                self.meter.count()  # type: ignore[union-attr]
            if self._adam is not None:
                self._adam.step(bad)  # one fused kernel, no update where bad is 1.0
            elif self.masked:
                self.optimizer.found_inf = bad  # type: ignore[attr-defined]  # fused Adam: no update where 1.0
                self.optimizer.step()
            elif not bool(bad):  # an optimizer without a fused kernel: the one host check
                self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.ema_module, mask=bad)  # type: ignore[arg-type]

    def _spec(self, groups: list[tuple[dict[str, Any], list[list[Tensor]]]]) -> tuple[Any, ...] | None:
        """The arguments of :func:`_update_graph` for the optimizer's ``groups`` (None: amsgrad, not written out)."""
        if any(g["amsgrad"] for g, _ in groups):
            return None
        assert self._adam is not None
        return (tuple((len(t[0]), *(float(b) for b in g["betas"]), float(g["eps"]), float(g["weight_decay"]),
                       self._adam.decoupled(g), bool(g["maximize"])) for g, t in groups),
                self.grad_clip, self.skip_threshold, None if self.ema is None else self.ema.decay)

    def _mark_static(self, groups: list[tuple[dict[str, Any], list[list[Tensor]]]], device: torch.device) -> None:
        """CUDA graphs (``mode="reduce-overhead"``): the tensors a compiled update writes (and the learning
        rates) keep their address."""
        if self._mode not in _CUDA_GRAPH_MODES or device.type != "cuda":
            return
        m = self.meter
        assert m is not None
        shadows = [] if self.ema is None else list(self.ema.shadow.values())
        for t in [*(t for _, ts in groups for i in (0, 2, 3, 5) for t in ts[i]), *shadows,
                  *(g["lr"] for g, _ in groups), m.sums, m.run, m.longest, m.last]:
            if isinstance(t, Tensor):
                torch._dynamo.mark_static_address(t)

    def _update_inputs(self, groups: list[tuple[dict[str, Any], list[list[Tensor]]]], device: torch.device,
                       with_norm: bool) -> tuple[list[Tensor], list[Tensor], Tensor, list[list[Tensor]]]:
        """The learning rates, the meter's tensors, the norm weight and the EMA's tensors that the compiled
        update (:func:`_update_graph`) takes after the optimizer's."""
        m = self.meter
        assert m is not None
        lrs = [_lr_tensor(g["lr"], device) for g, _ in groups]
        if self.ema is not None and self._ema_params is None:  # the module's parameters themselves (not detached
            named = dict(self.ema_module.named_parameters())  # type: ignore[union-attr]  # views): the graph
            self._ema_params = [named[n] for n in self.ema.shadow]  # sees the optimizer's updated tensors
        ema = [] if self.ema is None else [list(self.ema.shadow.values()), self._ema_params]
        if self._norm_weights is None or self._norm_weights[0].device != m.device:  # (not the meter's own 0 and 1:
            self._norm_weights = (torch.zeros((), device=m.device),  # an alias would recompile)
                                  torch.ones((), device=m.device))
        return lrs, [m.sums, m.run, m.longest, m.last, m._zero], self._norm_weights[int(with_norm)], ema

    def _compiled_update(self, loss: Tensor, values: list[Any], with_norm: bool) -> bool:
        """The whole update as one compiled graph (:func:`_update_graph`); False (nothing done) when the
        optimizer's state does not exist yet or its groups cannot be written out."""
        assert self._adam is not None and self.meter is not None
        groups = self._adam.groups()
        spec = None if groups is None else self._spec(groups)
        if spec is None:
            return False
        tensors = [[t for _, ts in groups for t in ts[i]] for i in (0, 1, 2, 3, 5)]  # params, grads, m, v, steps
        update_fn = self._update_fns.get(spec)
        if update_fn is None:
            # (default mode: without inductor's size and stride asserts on its ~5 inputs per parameter, which the
            # guards already check)
            update_fn = self._update_fns[spec] = torch.compile(_update_graph(*spec), dynamic=False,
                                                               **self._compile_how(size_asserts=False))
            self._mark_static(groups, loss.device)
        dev = self.meter.device
        values = [v if isinstance(v, Tensor) else torch.tensor(float(v), device=dev) for v in values]
        update_fn(loss, values, *tensors, *self._update_inputs(groups, loss.device, with_norm))
        self.meter.count()
        return True

    def _can_fuse(self) -> bool:
        """After the first (eager) step: whether the one-graph step can train the optimizer's parameters
        (the trainable parameters, each in one group, no amsgrad, every one with its Adam state, i.e. with a
        gradient at the first step), and nothing relies on ``.grad`` being accumulated: no parameter with a
        post-accumulate-grad hook, no process group of several processes (DDP's reducer hooks the
        accumulation)."""
        assert self._adam is not None
        ordered = [p for g in self.optimizer.param_groups for p in g["params"]]
        if {id(p) for p in ordered} != {id(p) for p in self.params} or len(ordered) != len(self.params):
            return False
        if any(getattr(p, "_post_accumulate_grad_hooks", None) for p in ordered):
            return False
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return False
        groups = self._adam.groups(with_grads=False)
        return groups is not None and self._spec(groups) is not None

    def _fused_step(self, batch: Any, step: int, with_norm: bool) -> Tensor | None:
        """The step as one compiled function (:func:`_train_graph`); None (nothing done) when the optimizer's
        groups cannot be written out now (a step hook registered): the caller then takes the step with the
        separate graphs."""
        assert self._adam is not None and self.meter is not None
        groups = self._adam.groups(with_grads=False)
        spec = None if groups is None else self._spec(groups)
        if spec is None:
            return None
        tensors = [[t for _, ts in groups for t in ts[i]] for i in (0, 2, 3, 5)]  # params, m, v, steps
        train_fn = self._train_fns.get(spec)
        new = train_fn is None
        if new:
            # (without inductor's size and stride asserts, one per input and buffer a step: the guards check the
            # inputs' sizes and strides already)
            train_fn = self._train_fns[spec] = torch.compile(_train_graph(self._raw_forward, self.meter.names, *spec),
                                                             **self._compile_how(cpp=True, size_asserts=False))
            self._mark_static(groups, self.meter.device)
        config = torch._dynamo.config  # (set and restored directly: config.patch costs ~3x more per step)
        traces = config.trace_autograd_ops
        config.trace_autograd_ops = True
        try:
            loss, _ = train_fn(batch, step, *tensors, *self._update_inputs(groups, self.meter.device, with_norm))
        except (torch._dynamo.exc.Unsupported, torch._dynamo.exc.BackendCompilerFailed) as e:
            if not new:
                raise
            # the first call of a new graph failed to compile (nothing ran): this step and the next ones take the
            # forward/backward and update graphs
            _log.warning("the one-graph compiled step could not be compiled (%s: %s); using the forward/backward "
                         "and update graphs instead", type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            self._fused = False
            del self._train_fns[spec]
            return None
        finally:
            config.trace_autograd_ops = traces
        self.meter.count()
        return loss

    def _compile_how(self, cpp: bool = False, **options: Any) -> dict[str, Any]:
        """``torch.compile``'s mode or options for one of this step's graphs (:func:`_compile_options`;
        ``cpp``: the forward and its backward, which may get a C++ wrapper)."""
        return _compile_options(self._mode, "cpu" if self._cpu else "other", cpp, **options)

    def _check(self, loss: Tensor, values: list[Any], with_norm: bool) -> Tensor:
        """The skip flag (1.0: skip), after clipping the gradients and adding the step to the meter."""
        grads = [p.grad for p in self.params if p.grad is not None]
        norm = _total_norm(grads) if (with_norm or self.compiled) and grads else None
        if norm is None:
            # bad = 1.0 when the loss or a gradient is not finite: one fused check (it multiplies them by 1)
            bad = self._found.zero_()  # type: ignore[union-attr]
            torch._amp_foreach_non_finite_check_and_unscale_([*grads, loss], bad, self._unit)
        else:
            # the norm is not finite when a gradient is not (or when finite ones overflow it); compiled, this
            # reads the gradients where the check above would write them back (a copy of each in the graph)
            out = ~(torch.isfinite(norm) & torch.isfinite(loss))
            if self.skip_threshold is not None:
                out = out | (norm > self.skip_threshold)
            bad = self._found.copy_(out)  # type: ignore[union-attr]
        if self.reduce_bad is not None:  # every process skips alike
            bad = (self.reduce_bad(bad.clone()) > 0).float()
        if self.grad_clip is not None and norm is not None:
            torch._foreach_mul_(grads, (self.grad_clip / (norm + 1e-6)).clamp(max=1.0))
        assert self.meter is not None
        if self.compiled:  # (in the graph: a host counter of buffered rows would recompile it every step; the
            # norm, computed for the check, enters the meter only where asked, as in eager and the update graph)
            self.meter.add(self.meter.row(values, norm if with_norm else None), bad, loss, count=False)
        else:
            self.meter.record(values, norm, bad, loss)
        return bad

    # checkpoint state ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        """The meter's current window (empty before the first step)."""
        return {} if self.meter is None else self.meter.state_dict()

    def load_state_dict(self, state: dict[str, Tensor], names: Sequence[str], device: torch.device) -> None:
        """Restore a window saved by :meth:`state_dict` (``names``: the objective's metric names)."""
        self.meter = StepMeter(sorted(names), device)
        self.meter.load_state_dict(state)


def _lr_tensor(lr: Any, device: torch.device) -> Tensor:
    """A group's learning rate as a tensor (the compiled update reads it without recompiling)."""
    return lr if isinstance(lr, Tensor) else torch.tensor(float(lr), dtype=torch.float32, device=device)


def _update_graph(groups: tuple[tuple[Any, ...], ...], grad_clip: float | None, skip_threshold: float | None,
                  ema_decay: float | None) -> Callable[..., tuple[Tensor, ...]]:
    """The update of a compiled :class:`TrainStep` (fused Adam/AdamW), as one function for ``torch.compile``.

    ``groups``: per parameter group ``(n_params, beta1, beta2, eps, weight_decay, decoupled, maximize)``.
    The returned ``update(loss, values, params, grads, exp_avgs, exp_avg_sqs, steps, lrs, meter,
    norm_weight, ema)`` decides the skip flag from the gradient norm and the loss, clips, applies
    Adam (torch's fused kernel's arithmetic: bias corrections in float64, ``exp_avg.lerp(grad, 1 -
    beta1)``) where the step is good, updates the optimizer's own state tensors, the EMA
    (``ema``: ``[shadows, params]`` or empty) and the meter (``meter``: ``[sums, run, longest, last,
    zero]``; ``norm_weight`` 1.0 records the norm, 0.0 not), all in place, and returns the skip
    flag and, per group, the step sizes, bias corrections and decay factor. Inductor turns it
    into a few fused loops over the parameters instead of one operator per tensor and step.
    """

    def update(loss: Tensor, values: list[Tensor], params: list[Tensor], grads: list[Tensor],
               exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor], steps: list[Tensor], lrs: list[Tensor],
               meter: list[Tensor], norm_weight: Tensor, ema: list[list[Tensor]]) -> tuple[Tensor, ...]:
        return _apply_update(groups, grad_clip, skip_threshold, ema_decay, loss, values, params, grads, exp_avgs,
                             exp_avg_sqs, steps, lrs, meter, norm_weight, ema)

    # a code object of its own: torch.compile keeps its compiled graphs per code object, so a step's graphs are
    # neither looked up by nor counted against (recompile limit) the other steps of the process
    update.__code__ = update.__code__.replace()
    return update


def _apply_update(groups: tuple[tuple[Any, ...], ...], grad_clip: float | None, skip_threshold: float | None,
                  ema_decay: float | None, loss: Tensor, values: list[Tensor], params: list[Tensor],
                  grads: list[Tensor], exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor], steps: list[Tensor],
                  lrs: list[Tensor], meter: list[Tensor], norm_weight: Tensor,
                  ema: list[list[Tensor]]) -> tuple[Tensor, ...]:
    """The body of :func:`_update_graph`'s ``update`` (see there), its settings as the first arguments."""
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
    bad_b = ~(torch.isfinite(norm) & torch.isfinite(loss))
    if skip_threshold is not None:
        bad_b = bad_b | (norm > skip_threshold)
    bad = bad_b.float()
    good = 1.0 - bad
    if grad_clip is not None:
        scale = (grad_clip / (norm + 1e-6)).clamp(max=1.0)
        grads = [g * scale.to(g.dtype) for g in grads]
    # the step counts and bias corrections of every parameter as vectors, returned, so that inductor stores
    # them once instead of recomputing them (two float64 powers) for every vector of every parameter's loop
    counts = [t + good.to(t.dtype) for t in steps]
    t64 = torch.stack(counts).double()
    outs: list[Tensor] = [bad]
    coefs: list[tuple[Tensor, Tensor]] = []
    i = 0
    for (n, beta1, beta2, eps, weight_decay, decoupled, maximize), lr in zip(groups, lrs):
        tg = t64[i:i + n]
        step_size = lr.double() / (1.0 - beta1 ** tg)  # lr / bias correction 1
        bc2_sqrt = torch.sqrt(1.0 - beta2 ** tg)
        decay = 1.0 - lr.double() * weight_decay
        outs += [step_size, bc2_sqrt, decay]
        coefs += [(step_size[j], bc2_sqrt[j]) for j in range(n)]
        i += n
    i = 0
    for (n, beta1, beta2, eps, weight_decay, decoupled, maximize), dec in zip(groups, outs[3::3]):
        for j in range(i, i + n):
            p, g, m, v = params[j], grads[j], exp_avgs[j], exp_avg_sqs[j]
            step_size, bc2_sqrt = (c.to(p.dtype) for c in coefs[j])
            g = -g if maximize else g
            p_old = p
            if weight_decay != 0.0:
                if decoupled:
                    p_old = p * dec.to(p.dtype)
                else:
                    g = g + weight_decay * p
            m_new = torch.lerp(m, g, 1.0 - beta1)
            v_new = v * beta2 + (1.0 - beta2) * g * g
            p_new = p_old - step_size * m_new / (torch.sqrt(v_new) / bc2_sqrt + eps)
            p.copy_(torch.where(bad_b, p, p_new))
            m.copy_(torch.where(bad_b, m, m_new))
            v.copy_(torch.where(bad_b, v, v_new))
            steps[j].copy_(counts[j])
        i += n
    if ema_decay is not None:
        shadows, current = ema
        w = good * (1.0 - ema_decay)
        for s, p in zip(shadows, current):
            s.copy_(s + w.to(s.dtype) * (p - s))
    sums, run, longest, last, zero = meter
    row = torch.stack([*(v.reshape(()).to(torch.float32) for v in values), norm * norm_weight, norm_weight,
                       torch.ones_like(norm_weight)])
    _meter_add(sums, run, longest, last, zero, row, bad, loss)
    return tuple(outs)


#: whether this torch's dynamo can trace ``torch.autograd.grad`` into a graph (``trace_autograd_ops``, torch >= 2.11)
_TRACES_GRAD = hasattr(torch._dynamo.config, "trace_autograd_ops")


def _train_graph(forward: Callable[[Any, int], tuple[Tensor, dict[str, Any]]], metric_names: list[str],
                 groups: tuple[tuple[Any, ...], ...], grad_clip: float | None, skip_threshold: float | None,
                 ema_decay: float | None) -> Callable[..., tuple[Tensor, tuple[Tensor, ...]]]:
    """The whole step of a compiled :class:`TrainStep` as one function for ``torch.compile``.

    ``train(batch, step, params, exp_avgs, exp_avg_sqs, steps, lrs, meter, norm_weight, ema)``:
    ``forward(batch, step)``, the gradients of its loss with respect to ``params`` (every parameter
    of every optimizer group, ``groups`` as in :func:`_update_graph`) by ``torch.autograd.grad``,
    then the update of :func:`_update_graph` on the parameters that got a gradient (the others keep
    their values and Adam state, as ``Adam.step`` leaves a parameter without ``.grad``); returns
    the loss and the update's outputs. Dynamo knows at trace time which gradients are None, so a
    forward whose parameters change with ``step`` gets one graph per set, as in eager.
    """

    def train(batch: Any, step: int, params: list[Tensor], exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor],
              steps: list[Tensor], lrs: list[Tensor], meter: list[Tensor], norm_weight: Tensor,
              ema: list[list[Tensor]]) -> tuple[Tensor, tuple[Tensor, ...]]:
        loss, metrics = forward(batch, step)
        # only parameters that require a gradient are differentiated (one frozen since the last trace has none);
        # dynamo guards on requires_grad, so freezing or unfreezing one retraces
        wanted = [p.requires_grad for p in params]
        got = iter(torch.autograd.grad(loss, [p for p, w in zip(params, wanted) if w], allow_unused=True))
        grads = [next(got) if w else None for w in wanted]
        with torch.no_grad():
            loss = loss.detach()
            values = [v.detach() if isinstance(v, Tensor) else torch.tensor(float(v), device=loss.device)
                      for v in (metrics[n] for n in metric_names)]
            used = [g is not None for g in grads]
            kept, kept_lrs, i = [], [], 0
            for (n, *hyper), lr in zip(groups, lrs):  # the groups as Adam.step sees them: parameters with a gradient
                k = sum(used[i:i + n])
                if k:
                    kept.append((k, *hyper))
                    kept_lrs.append(lr)
                i += n

            def pick(ts: Sequence[Any]) -> list[Any]:
                return [t for t, u in zip(ts, used) if u]

            return loss, _apply_update(tuple(kept), grad_clip, skip_threshold, ema_decay, loss, values, pick(params),
                                       pick(grads), pick(exp_avgs), pick(exp_avg_sqs), pick(steps), kept_lrs, meter,
                                       norm_weight, ema)

    train.__code__ = train.__code__.replace()  # (its own code object, as update's)
    return train


class _FusedAdam:
    """``optimizer.step()`` of torch's fused Adam/AdamW with the skip flag, without its Python machinery.

    What ``Adam.step`` does per parameter group for a fused optimizer (count the step, one
    ``torch._fused_adam_``/``_fused_adamw_`` call with ``found_inf``, uncount a skipped step), called
    directly on the optimizer's own state tensors, so that checkpoints and resume see a normal torch
    Adam state. :meth:`groups` returns None (the caller then uses ``optimizer.step()``) before the
    state exists (the first step creates it), while step hooks are registered, or when a group
    mixes devices or dtypes.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, share_steps: bool = False) -> None:
        self.optimizer = optimizer
        # share_steps: the step counters as views of one tensor, counted in one operation instead of a foreach
        # pair over one 0-dim tensor per parameter (eager only: a compiled graph would see aliased inputs)
        self.share_steps = share_steps
        self._counts: Tensor | None = None
        self._views: list[Tensor] = []

    @staticmethod
    def supports(optimizer: torch.optim.Optimizer) -> bool:
        """Whether ``optimizer`` is a fused torch Adam/AdamW whose step this class can call."""
        return (type(optimizer) in (torch.optim.Adam, torch.optim.AdamW) and hasattr(torch, "_fused_adamw_")
                and "step" not in vars(optimizer)  # (a step patched on the instance: call it)
                and all(g.get("fused") and not g.get("differentiable") and not g.get("capturable")
                        for g in optimizer.param_groups))

    def groups(self, with_grads: bool = True) -> list[tuple[dict[str, Any], list[list[Tensor]]]] | None:
        """Per parameter group with gradients: the group and its ``[params, grads, exp_avgs, exp_avg_sqs,
        max_exp_avg_sqs, steps]`` (as ``Adam.step`` collects them), or None (see the class docstring).
        ``with_grads=False``: every parameter of every group, and no gradients (``grads`` empty)."""
        opt = self.optimizer
        if opt._optimizer_step_pre_hooks or opt._optimizer_step_post_hooks or _global_step_hooks():
            return None
        out = []
        state = opt.state
        for group in opt.param_groups:
            params = [p for p in group["params"] if p.grad is not None or not with_grads]
            if not params:
                continue
            states = [state.get(p) for p in params]
            if not all(states):
                return None  # the first step: Adam.step creates the state
            first = params[0]
            if any(p.dtype != first.dtype or p.device != first.device or (with_grads and p.grad.is_sparse)
                   for p in params):
                return None
            amsgrad = group["amsgrad"]
            out.append((group, [params, [p.grad for p in params] if with_grads else [],  # type: ignore[misc]
                                [st["exp_avg"] for st in states],  # type: ignore
                                [st["exp_avg_sq"] for st in states],  # type: ignore[index]
                                [st["max_exp_avg_sq"] for st in states] if amsgrad else [],  # type: ignore[index]
                                [st["step"] for st in states]]))  # type: ignore[index]
        return out

    def decoupled(self, group: dict[str, Any]) -> bool:
        """Whether ``group`` decays its weights AdamW's way (torch < 2.7 has no ``decoupled_weight_decay`` key:
        there AdamW is its own class)."""
        return bool(group.get("decoupled_weight_decay", isinstance(self.optimizer, torch.optim.AdamW)))

    def step(self, found_inf: Tensor) -> None:
        """One optimizer step, none where ``found_inf`` is 1.0 (0-dim float32 on the parameters' device)."""
        groups = self.groups()
        if groups is None:
            self.optimizer.found_inf = found_inf  # type: ignore[attr-defined]
            self.optimizer.step()
            return
        counts = self._counters(groups) if self.share_steps else None
        if counts is not None:
            if self._views[0] is not groups[0][1][5][0]:  # (just made: the groups' lists hold the old counters)
                groups = self.groups()
                assert groups is not None
            counts.sub_(found_inf).add_(1)  # counted where good; the kernel reads the new count, or skips
        for group, (params, grads, exp_avgs, exp_avg_sqs, max_sqs, steps) in groups:
            beta1, beta2 = group["betas"]
            kernel = torch._fused_adamw_ if self.decoupled(group) else torch._fused_adam_
            if counts is None:
                torch._foreach_add_(steps, 1)
            kernel(params, grads, exp_avgs, exp_avg_sqs, max_sqs, steps, amsgrad=group["amsgrad"], lr=group["lr"],
                   beta1=float(beta1), beta2=float(beta2), weight_decay=group["weight_decay"], eps=group["eps"],
                   maximize=group["maximize"], grad_scale=None, found_inf=found_inf)
            if counts is None:
                torch._foreach_sub_(steps, [found_inf] * len(steps))

    def _counters(self, groups: list[tuple[dict[str, Any], list[list[Tensor]]]]) -> Tensor | None:
        """The step counters of every parameter as one tensor whose elements the optimizer's state holds
        (``state[p]["step"]`` are its views: a checkpoint saves them as usual), made (from the current counts)
        when the state holds other tensors (the first time, or after ``load_state_dict``); None when some
        parameter has no gradient at this step (only those with one are counted) or the counters differ in
        shape, dtype or device."""
        steps = [t for _, ts in groups for t in ts[5]]
        if len(steps) == len(self._views) and all(a is b for a, b in zip(steps, self._views)):
            return self._counts
        if (len(steps) != sum(len(g["params"]) for g in self.optimizer.param_groups)
                or any(t.dim() != 0 or t.dtype != steps[0].dtype or t.device != steps[0].device for t in steps)):
            return None
        self._counts = torch.stack(steps)
        self._views = list(self._counts.unbind())
        state = self.optimizer.state
        for p, view in zip((p for _, ts in groups for p in ts[0]), self._views):
            state[p]["step"] = view
        return self._counts


def _global_step_hooks() -> bool:
    """Whether step hooks for every optimizer are registered (``register_optimizer_step_pre_hook``)."""
    return bool(getattr(_optim_module, "_global_optimizer_pre_hooks", None)
                or getattr(_optim_module, "_global_optimizer_post_hooks", None))


def adam(params: Any, *, adamw: bool = False, **kwargs: Any) -> torch.optim.Optimizer:
    """Adam (or AdamW) with torch's fused kernel where this torch and device have it (CPU since torch
    2.4, CUDA), so that :class:`TrainStep` decides skipped steps on the device; the plain one elsewhere.

    ``params``: parameters or parameter groups; ``kwargs``: the optimizer's (``lr``, ``eps``, ...).

    >>> opt = adam([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    >>> type(opt).__name__, bool(opt.param_groups[0]["fused"])
    ('Adam', True)
    """
    cls = torch.optim.AdamW if adamw else torch.optim.Adam
    params = list(params)
    tensors = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
    if all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in tensors):
        try:
            return cls(params, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):  # an older torch without the fused kernel here
            pass
    return cls(params, **kwargs)


def make_optimizer(name: str, params: Any, *, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                   eps: float = 1e-8, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The optimizer ``Trainer(optimizer=name)`` trains with, one of :data:`OPTIMIZERS`.

    ``"adam"``/``"adamw"``: :func:`adam` (fused where available). ``"adamax"``:
    :class:`torch.optim.Adamax`; ``"radam"``: :class:`torch.optim.RAdam` (``weight_decay`` an L2
    penalty, as for Adam). Neither has a fused kernel, so :class:`TrainStep` skips a bad step
    for them after one host read.

    >>> p = torch.nn.Parameter(torch.zeros(2))
    >>> [type(make_optimizer(n, [p], lr=0.1)).__name__ for n in OPTIMIZERS]
    ['Adam', 'AdamW', 'Adamax', 'RAdam']
    """
    kwargs = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    if name in ("adam", "adamw"):
        return adam(params, adamw=name == "adamw", **kwargs)
    if name == "adamax":
        return torch.optim.Adamax(params, **kwargs)
    if name == "radam":
        return torch.optim.RAdam(params, **kwargs)
    raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {name!r}")


def _takes_found_inf(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step()`` honours ``optimizer.found_inf`` (torch's fused Adam/AdamW/SGD)."""
    fused = all(g.get("fused") for g in optimizer.param_groups)
    return fused and getattr(optimizer, "_step_supports_amp_scaling", False)


#: set to 0 to compile a step's forward and backward without inductor's C++ wrapper on a CPU (see _compile_options)
CPP_WRAPPER_ENV = "VAEKIT_CPP_WRAPPER"


def cpp_wrapper_wanted() -> bool:
    """Whether ``VAEKIT_CPP_WRAPPER`` leaves the C++ wrapper on: unset, empty or "1" (the default), or "0".

    Raises
    ------
    InvalidArgumentError
        For any other value, naming the variable and the value.
    """
    value = os.environ.get(CPP_WRAPPER_ENV, "").strip()
    if value not in ("", "0", "1"):
        raise InvalidArgumentError(f"environment variable {CPP_WRAPPER_ENV} must be 0 (no C++ wrapper for compiled "
                                   f"steps on a CPU) or 1 (the default), got {value!r}")
    return value != "0"


def _compile_options(mode: str | None, device_type: str, cpp: bool, **options: Any) -> dict[str, Any]:
    """``torch.compile``'s mode or options for a graph of a compiled :class:`TrainStep`.

    A mode and options cannot be given together: modes other than ``"default"`` keep inductor's
    defaults. ``cpp`` (the forward and its backward) adds inductor's ``cpp_wrapper`` (their matrix
    products and buffer allocations called from C++, not one Python call each) in the default
    mode, on a CPU, with torch >= 2.13 (the version it was tested with), unless
    ``VAEKIT_CPP_WRAPPER=0`` is set: on the 2-core CPU it trains the Cremer MNIST VAE 2-5% faster
    than without (benchmarks/results/train_throughput_cpu_2threads.md), for a longer cold compile
    (it builds the C++ wrapper).

    >>> _compile_options("default", "cpu", False, size_asserts=False)
    {'options': {'size_asserts': False}}
    >>> _compile_options("reduce-overhead", "cuda", True)
    {'mode': 'reduce-overhead'}
    """
    if mode != "default":
        return {"mode": mode}
    if (cpp and device_type == "cpu" and cpp_wrapper_wanted()
            and TorchVersion(torch.__version__) >= (2, 13)):
        options = {"cpp_wrapper": True, **options}
    return {"options": options} if options else {}


def _compile_mode(compile: bool | str) -> str | None:
    if compile is False or compile is None:
        return None
    if compile is True:
        return "default"
    if isinstance(compile, str) and compile in COMPILE_MODES:
        return compile
    raise InvalidArgumentError(f"compile must be True, False or one of {list(COMPILE_MODES)}, got {compile!r}")

