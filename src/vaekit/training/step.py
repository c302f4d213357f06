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

With ``compile`` the forward (and, through AOTAutograd, its backward) and the checks
(with clipping and the meter) are each compiled with ``torch.compile``; fused Adam's kernel
and the EMA update run between them as they are (torch breaks the graph around every
``optimizer.step()`` and does not trace its fused kernel). ``mode="reduce-overhead"``
captures the compiled parts in CUDA graphs on a GPU.

An optimizer without a fused kernel (another torch, or parameters that are not floating
point) cannot take the mask; the step then reads the decision on the host (one
synchronisation per step) and skips ``optimizer.step()`` itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .ema import EMA

__all__ = ["TrainStep", "StepMeter", "adam", "make_optimizer", "COMPILE_MODES", "OPTIMIZERS"]

#: ``Trainer(optimizer=...)`` names: Adam and AdamW (fused, the skip decision on the device), Adamax and
#: RAdam (torch has no fused kernel for them: the step reads the skip decision on the host).
OPTIMIZERS = ("adam", "adamw", "adamax", "radam")

#: ``Trainer(compile=...)`` values besides True/False (``torch.compile`` modes).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _total_norm(grads: list[Tensor]) -> Tensor:
    """The 2-norm of all gradients together, as a float32 0-dim tensor on their device."""
    if hasattr(torch.nn.utils, "get_total_norm"):  # torch >= 2.6: grouped by device and dtype
        return torch.nn.utils.get_total_norm(grads).float()
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))


class StepMeter:
    """Running sums of the training metrics of a window of steps, kept on the device.

    :meth:`add` costs a handful of device operations and never synchronises; :meth:`read`
    (one transfer) returns the window's means and counters and starts the next window.
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
        skipped = bad > 0
        self.sums.add_(torch.where(skipped, self._zero, row))
        self.run.add_(1.0).mul_(bad)
        torch.maximum(self.longest, self.run, out=self.longest)
        if loss is not None:
            torch.where(skipped, loss.to(torch.float32), self.last, out=self.last)
        if count:
            self.count()

    def count(self) -> None:
        """Count one more step in the window (the host side of :meth:`add`; a compiled step calls
        ``add`` inside its graph and this outside)."""
        self.steps += 1

    def read(self) -> dict[str, Any]:
        """:meth:`peek`, then start the next window."""
        out = self.peek()
        self.sums.zero_()
        self.longest.copy_(self.run)
        self.steps = 0
        return out

    def peek(self) -> dict[str, Any]:
        """The window's means and counters so far (one synchronisation).

        Returns a dict with ``metrics`` (name -> mean over the good steps; empty when every
        step was skipped), ``grad_norm`` (mean over the good steps that computed it, or
        None), ``steps``, ``skipped``, ``consecutive_skips`` (the current run),
        ``max_consecutive_skips`` (the longest run that ended or continued in the window),
        ``last_skip`` (the loss of the last skipped step, or None without one).
        """
        values = torch.cat([self.sums, torch.stack([self.run, self.longest, self.last])]).tolist()
        m = len(self.names)
        sums, (norm_sum, norm_n, good), (run, longest, last_loss) = values[:m], values[m:m + 3], values[m + 3:]
        good_i = int(round(good))
        return {
            "metrics": {n: s / good for n, s in zip(self.names, sums)} if good_i else {},
            "grad_norm": norm_sum / norm_n if norm_n else None,
            "steps": self.steps, "skipped": self.steps - good_i,
            "consecutive_skips": int(round(run)), "max_consecutive_skips": int(round(longest)),
            "last_skip": last_loss if self.steps > good_i else None,
        }

    def state_dict(self) -> dict[str, Tensor]:
        """The window so far (CPU tensors), for a checkpoint."""
        return {"sums": self.sums.detach().cpu(), "skips": torch.stack([self.run, self.longest, self.last]).cpu(),
                "steps": torch.tensor(self.steps), "names": list(self.names)}  # type: ignore[dict-item]

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore :meth:`state_dict` (an empty dict leaves the meter empty)."""
        if not state:
            return
        skips = state["skips"].to(self.device, torch.float32)
        self.run.copy_(skips[0]), self.longest.copy_(skips[1]), self.last.copy_(skips[2])
        names = state.get("names")
        if state["sums"].shape != self.sums.shape or (names is not None and list(names) != self.names):
            return  # the objective's metrics changed: the partial window's sums start again (the skip run is kept)
        self.sums.copy_(state["sums"])
        self.steps = int(state["steps"])


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
        ``torch.compile`` the forward and the update: True for the default mode, or one of
        :data:`COMPILE_MODES`.
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
        self.meter: StepMeter | None = None
        self._found: Tensor | None = None
        self._unit: Tensor | None = None
        mode = _compile_mode(compile)
        self.compiled = mode is not None
        self._forward = forward if mode is None else torch.compile(forward, mode=mode)
        # compiled: the checks (with clipping and the meter) in one graph; the fused optimizer is one kernel already
        self._check_fn = self._check if mode is None else torch.compile(self._check, mode=mode)

    # the step ------------------------------------------------------------------------------
    def __call__(self, batch: Any, step: int, *, norm: bool = False) -> Tensor:
        """Train on ``batch`` (optimizer step ``step``); returns the loss (a device tensor, not read).

        ``norm=True`` computes the gradient norm for the meter even without clipping.
        """
        loss, metrics = self._forward(batch, step)
        if self.meter is None:
            self.meter = StepMeter(sorted(metrics), loss.device)
        if self._found is None:  # the skip flag (found_inf), reused by every step: a static buffer for CUDA graphs
            self._found = torch.zeros((), dtype=torch.float32, device=loss.device)
            self._unit = torch.ones((), dtype=torch.float32, device=loss.device)
        self._backward(loss)
        loss = loss.detach()
        self._update(loss, [metrics[n] for n in self.meter.names],
                     norm or self.grad_clip is not None or self.skip_threshold is not None)
        self.optimizer.zero_grad(set_to_none=True)
        return loss

    def _update(self, loss: Tensor, values: list[Any], with_norm: bool) -> None:
        with torch.no_grad():
            bad = self._check_fn(loss, values, with_norm)
            self.meter.count()  # type: ignore[union-attr]
            if self.masked:
                self.optimizer.found_inf = bad  # type: ignore[attr-defined]  # fused Adam: no update where 1.0
                self.optimizer.step()  # one fused kernel (torch.compile runs it as it is)
            elif not bool(bad):  # an optimizer without a fused kernel: the one host check
                self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.ema_module, mask=bad)  # type: ignore[arg-type]

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
        self.meter.add(self.meter.row(values, norm), bad, loss, count=False)
        return bad

    # checkpoint state ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        """The meter's current window (empty before the first step)."""
        return {} if self.meter is None else self.meter.state_dict()

    def load_state_dict(self, state: dict[str, Tensor], names: Sequence[str], device: torch.device) -> None:
        """Restore a window saved by :meth:`state_dict` (``names``: the objective's metric names)."""
        self.meter = StepMeter(sorted(names), device)
        self.meter.load_state_dict(state)


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


def _compile_mode(compile: bool | str) -> str | None:
    if compile is False or compile is None:
        return None
    if compile is True:
        return "default"
    if isinstance(compile, str) and compile in COMPILE_MODES:
        return compile
    raise ValueError(f"compile must be True, False or one of {list(COMPILE_MODES)}, got {compile!r}")

