"""Exponential moving average (EMA) of a model's parameters."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["EMA"]


class EMA:
    r"""Exponential moving average of the floating-point parameters of a module.

    After each optimizer step, :meth:`update` sets
    :math:`\bar\theta \leftarrow d\,\bar\theta + (1 - d)\,\theta`. Buffers (e.g. batch-norm
    statistics) are not averaged: the module's own buffers are used with the averaged
    parameters.

    Parameters
    ----------
    module : nn.Module
        The model; the average starts at its current parameters.
    decay : float
        The decay ``d`` in [0, 1).
    skip : iterable of str
        Names of parameters not to average (``Trainer(freeze=...)``'s): they keep their own
        values, untouched by :meth:`update` and :meth:`copy_to`.

    Examples
    --------
    >>> lin = torch.nn.Linear(1, 1, bias=False)
    >>> _ = lin.weight.data.fill_(0.0)
    >>> ema = EMA(lin, decay=0.5)
    >>> _ = lin.weight.data.fill_(1.0)
    >>> ema.update(lin); ema.update(lin)
    >>> ema.shadow["weight"]
    tensor([[0.7500]])
    >>> with ema.swapped(lin):
    ...     float(lin.weight.detach())
    0.75
    >>> float(lin.weight.detach())
    1.0
    """

    def __init__(self, module: nn.Module, decay: float, skip: Iterable[str] = ()) -> None:
        if not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        skip = set(skip)
        self.shadow: dict[str, Tensor] = {
            name: p.detach().clone() for name, p in module.named_parameters()
            if torch.is_floating_point(p) and name not in skip
        }

    def _params(self, module: nn.Module) -> list[Tensor]:
        params = dict(module.named_parameters())
        missing = [n for n in self.shadow if n not in params]
        if missing:
            raise ValueError(f"module has no parameters {missing[:5]} that this EMA tracks")
        return [params[n].detach() for n in self.shadow]

    @torch.no_grad()
    def update(self, module: nn.Module, mask: Tensor | None = None) -> None:
        """Move the average towards the module's current parameters.

        ``mask`` (a 0-dim tensor, e.g. the training step's skip decision): no update where
        it is nonzero, decided on the device (no synchronisation).
        """
        shadow = list(self.shadow.values())
        if not shadow:
            return
        if mask is None:
            torch._foreach_lerp_(shadow, self._params(module), 1.0 - self.decay)
            return
        # shadow += w * (param - shadow) with w a device tensor: foreach lerp would read a 0-dim weight on the host
        weight = torch.where(mask != 0, 0.0, 1.0 - self.decay).to(shadow[0].dtype)
        step = torch._foreach_sub(self._params(module), shadow)
        torch._foreach_mul_(step, weight)
        torch._foreach_add_(shadow, step)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Overwrite the module's parameters with the average."""
        for p, s in zip(self._params(module), self.shadow.values()):
            p.copy_(s)

    @contextmanager
    def swapped(self, module: nn.Module) -> Iterator[nn.Module]:
        """Context in which ``module`` holds the averaged parameters (restored on exit)."""
        params = self._params(module)
        backup = [p.clone() for p in params]
        self.copy_to(module)
        try:
            yield module
        finally:
            with torch.no_grad():
                for p, b in zip(params, backup):
                    p.copy_(b)

    def model_state_dict(self, module: nn.Module) -> dict[str, Tensor]:
        """The module's ``state_dict`` with the averaged parameters in place of its own."""
        state = dict(module.state_dict())
        state.update(self.shadow)
        return state

    def state_dict(self) -> dict[str, Any]:
        """Plain state for a checkpoint: the decay and the averaged tensors."""
        return {"decay": self.decay, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the averaged tensors (copied into the existing ones, keeping their device)."""
        shadow = state["shadow"]
        if set(shadow) != set(self.shadow):
            raise ValueError(f"EMA state does not match this model: expected parameters {sorted(self.shadow)[:5]}..., "
                             f"got {sorted(shadow)[:5]}...")
        with torch.no_grad():
            for name, t in self.shadow.items():
                t.copy_(shadow[name])

    def __repr__(self) -> str:
        return f"EMA(decay={self.decay}, tensors={len(self.shadow)})"
