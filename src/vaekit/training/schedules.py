"""Learning-rate schedules, as plain checkpointable state (no lambdas).

Four kinds, all computed from the *base* learning rate:

- ``"constant"``: ``lr``.
- ``"cosine"``: from ``lr`` at step 0 to ``min_lr`` at step ``total_steps`` (half a cosine).
- ``"plateau"``: ``lr`` multiplied by ``factor`` whenever the monitored validation metric
  has not improved for ``patience`` validations in a row (floored at ``min_lr``).
- ``"iwae"``: the schedule of Burda et al. (2016): ``lr * 10**(-i/7)`` during the ``3**i``
  epochs of stage ``i = 0..7`` (3280 epochs in all; stage 7 continues after that).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

from torch import Tensor, nn
from torch.optim import Optimizer

__all__ = ["LRSchedule", "SCHEDULES", "cosine_lr", "iwae_lr", "iwae_stage", "lr_groups"]

#: Names accepted by :class:`LRSchedule`.
SCHEDULES = ("constant", "cosine", "plateau", "iwae")

#: Number of stages of the IWAE schedule.
IWAE_STAGES = 8


def iwae_stage(epoch: int) -> int:
    """Stage ``i`` of the IWAE schedule that contains ``epoch`` (0-based), capped at 7.

    Stage ``i`` spans epochs ``(3**i - 1) / 2`` to ``(3**(i+1) - 1) / 2 - 1``.

    Examples
    --------
    >>> [iwae_stage(e) for e in (0, 1, 3, 4, 12, 13, 39, 40, 3279, 5000)]
    [0, 1, 1, 2, 2, 3, 3, 4, 7, 7]
    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    i = 0
    while i < IWAE_STAGES - 1 and epoch >= (3 ** (i + 1) - 1) // 2:
        i += 1
    return i


def iwae_lr(base_lr: float, epoch: int) -> float:
    """Learning rate of the IWAE schedule: ``base_lr * 10**(-i/7)`` in stage ``i``.

    Examples
    --------
    >>> iwae_lr(1e-3, 0), round(iwae_lr(1e-3, 1093), 10)
    (0.001, 0.0001)
    """
    return base_lr * 10.0 ** (-iwae_stage(epoch) / 7.0)


def cosine_lr(base_lr: float, step: int, total_steps: int, min_lr: float = 0.0) -> float:
    """Half-cosine decay from ``base_lr`` (step 0) to ``min_lr`` (step ``total_steps`` and after).

    Examples
    --------
    >>> cosine_lr(1.0, 0, 100), cosine_lr(1.0, 50, 100), cosine_lr(1.0, 100, 100, min_lr=0.1)
    (1.0, 0.5, 0.1)
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    t = min(max(step, 0), total_steps) / total_steps
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


class LRSchedule:
    """The learning rate as a function of (step, epoch, validation history).

    Parameters
    ----------
    kind : {"constant", "cosine", "plateau", "iwae"}
        Schedule (see the module docstring).
    base_lr : float
        Learning rate at the start.
    total_steps : int, optional
        Length of the cosine schedule (required for ``"cosine"``).
    min_lr : float
        Floor of the cosine and plateau schedules.
    patience : int
        ``"plateau"``: validations in a row without improvement that trigger a reduction.
    factor : float
        ``"plateau"``: multiplier applied at each reduction, in (0, 1).
    threshold : float
        ``"plateau"``: a value improves on the best when it is lower by more than
        ``threshold * max(1, |best|)``.

    Examples
    --------
    >>> s = LRSchedule("plateau", 1.0, patience=2, factor=0.5)
    >>> lrs = []
    >>> for value in (3.0, 2.0, 2.5, 2.4, 2.2, 2.1):
    ...     reduced = s.observe(value)
    ...     lrs.append(s.lr(step=0, epoch=0))
    >>> lrs
    [1.0, 1.0, 1.0, 0.5, 0.5, 0.25]
    """

    def __init__(self, kind: Literal["constant", "cosine", "plateau", "iwae"], base_lr: float, *,
                 total_steps: int | None = None, min_lr: float = 0.0, patience: int = 10, factor: float = 0.5,
                 threshold: float = 1e-4) -> None:
        if kind not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {list(SCHEDULES)}, got {kind!r}")
        if kind == "cosine" and (total_steps is None or total_steps < 1):
            raise ValueError(f"the cosine schedule needs total_steps >= 1, got {total_steps}")
        if not 0.0 < factor < 1.0:
            raise ValueError(f"plateau_factor must be in (0, 1), got {factor}")
        if patience < 1:
            raise ValueError(f"plateau_patience must be >= 1, got {patience}")
        self.kind, self.base_lr, self.total_steps, self.min_lr = kind, float(base_lr), total_steps, float(min_lr)
        self.patience, self.factor, self.threshold = int(patience), float(factor), float(threshold)
        self.best = math.inf
        self.bad = 0
        self.scale = 1.0

    def lr(self, step: int, epoch: int) -> float:
        """Learning rate for optimizer step ``step`` (0-based) taken during ``epoch`` (0-based)."""
        if self.kind == "cosine":
            assert self.total_steps is not None
            return cosine_lr(self.base_lr, step, self.total_steps, self.min_lr)
        if self.kind == "iwae":
            return iwae_lr(self.base_lr, epoch)
        if self.kind == "plateau":
            return max(self.base_lr * self.scale, self.min_lr)
        return self.base_lr

    def apply(self, optimizer: Optimizer, step: int, epoch: int) -> float:
        """Set the learning rate of every parameter group (times its ``lr_mult``, if any); returns the base rate."""
        lr = self.lr(step, epoch)
        for group in optimizer.param_groups:
            value = lr * group.get("lr_mult", 1.0)
            if isinstance(group["lr"], Tensor):  # a compiled step reads the rate from a tensor (no recompilation)
                group["lr"].fill_(value)
            else:
                group["lr"] = value
        return lr

    def observe(self, value: float) -> bool:
        """Record a validation value (lower is better); returns whether the rate was reduced.

        Only the ``"plateau"`` schedule reacts; the others ignore it.
        """
        if self.kind != "plateau":
            return False
        if value < self.best - self.threshold * max(1.0, abs(self.best) if math.isfinite(self.best) else 1.0):
            self.best, self.bad = float(value), 0
            return False
        self.bad += 1
        if self.bad >= self.patience:
            self.scale *= self.factor
            self.bad = 0
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        """Plain state (numbers and strings) for a checkpoint."""
        return {"kind": self.kind, "base_lr": self.base_lr, "total_steps": self.total_steps, "min_lr": self.min_lr,
                "best": self.best, "bad": self.bad, "scale": self.scale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the plateau history (best value, bad count, current reduction)."""
        if state.get("kind") != self.kind:
            raise ValueError(f"checkpoint holds an lr_schedule {state.get('kind')!r}, but this trainer uses {self.kind!r}")
        self.best, self.bad, self.scale = float(state["best"]), int(state["bad"]), float(state["scale"])

    def __repr__(self) -> str:
        return f"LRSchedule({self.kind!r}, base_lr={self.base_lr}, total_steps={self.total_steps}, min_lr={self.min_lr})"


def lr_groups(model: nn.Module, multipliers: dict[str, float] | None) -> list[dict[str, Any]]:
    """The model's trainable parameters as optimizer groups ``{"params", "lr_mult"}`` (see ``Trainer(lr_multipliers)``).

    A prefix that matches no trainable parameter is ignored with a ``UserWarning`` naming it
    (so one config, e.g. ``{latent: 10.0}``, can sweep group models with and without a
    latent table).

    >>> groups = lr_groups(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1)), {"1": 10.0})
    >>> [(g["lr_mult"], len(g["params"])) for g in groups]
    [(1.0, 2), (10.0, 2)]
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    multipliers = multipliers or {}
    unused = [k for k in multipliers if not any(n == k or n.startswith(k + ".") for n, _ in named)]
    if unused:
        top = sorted({n.split(".")[0] for n, _ in named})
        warnings.warn(f"lr_multipliers prefix(es) {unused} match no trainable parameter of {type(model).__name__} and are "
                      f"ignored; its top-level parameter names start with {top}", UserWarning, stacklevel=2)
    by_mult: dict[float, list[Any]] = {}
    for name, param in named:
        keys = [k for k in multipliers if name == k or name.startswith(k + ".")]
        by_mult.setdefault(multipliers[max(keys, key=len)] if keys else 1.0, []).append(param)
    return [{"params": params, "lr_mult": mult} for mult, params in by_mult.items()]
