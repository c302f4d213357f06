"""Learning-rate schedules, as plain checkpointable state (no lambdas).

Six kinds, all computed from the *base* learning rate ``lr`` and the 0-based optimizer step
``step`` (the rate of step ``step`` is the one that step uses):

- ``"constant"``: ``lr``.
- ``"cosine"``: from ``lr`` at step 0 to ``min_lr`` at step ``total_steps`` (half a cosine).
- ``"plateau"``: ``lr`` multiplied by ``factor`` whenever the monitored validation metric
  has not improved for ``patience`` validations in a row (floored at ``min_lr``).
- ``"iwae"``: the schedule of Burda et al. (2016): ``lr * 10**(-i/7)`` during the ``3**i``
  epochs of stage ``i = 0..7`` (3280 epochs in all; stage 7 continues after that).
- ``"exponential"``: ``lr * gamma**step``, decayed at every optimizer step (floored at ``min_lr``).
- ``"noam"``: the schedule of Vaswani et al. (2017) in its normalized form, which peaks at
  ``lr``: ``lr * min(s / W, sqrt(W / s))`` with ``s = step + 1`` and ``W = warmup_steps``
  (a linear rise to ``lr`` at step ``W - 1``, then a decay as ``1 / sqrt(s)``). It equals
  Vaswani's ``d**-0.5 * min(s**-0.5, s * W**-1.5)`` times ``lr * sqrt(d * W)``.

A linear warm-up (``warmup_steps = W >= 1``) multiplies any of the first five by
``min(1, (step + 1) / W)``: the first step uses ``lr / W`` of the scheduled rate, step ``W - 1``
and later the full rate. ``"noam"`` has this warm-up built in (its rising part), so it is not
applied twice. The warm-up depends only on the step, so an exact resume continues it.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

from torch import Tensor, nn
from torch.optim import Optimizer

from .._checks import InvalidArgumentError

__all__ = ["LRSchedule", "SCHEDULES", "cosine_lr", "exponential_lr", "frozen_parameters", "iwae_lr", "iwae_stage",
           "lr_groups", "noam_lr", "warmup_factor"]

#: Names accepted by :class:`LRSchedule`.
SCHEDULES = ("constant", "cosine", "plateau", "iwae", "exponential", "noam")

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


def exponential_lr(base_lr: float, step: int, gamma: float, min_lr: float = 0.0) -> float:
    """Exponential decay per optimizer step: ``max(base_lr * gamma**step, min_lr)``.

    Examples
    --------
    >>> exponential_lr(1.0, 0, 0.5), exponential_lr(1.0, 3, 0.5), exponential_lr(1.0, 10, 0.5, min_lr=0.01)
    (1.0, 0.125, 0.01)
    """
    return max(base_lr * gamma ** max(step, 0), min_lr)


def noam_lr(base_lr: float, step: int, warmup_steps: int) -> float:
    """The normalized noam schedule: ``base_lr * min(s / W, sqrt(W / s))``, ``s = step + 1``,
    ``W = warmup_steps``; it peaks at ``base_lr`` at step ``W - 1`` (0-based).

    Examples
    --------
    >>> noam_lr(1.0, 0, 4), noam_lr(1.0, 3, 4), noam_lr(1.0, 15, 4)
    (0.25, 1.0, 0.5)
    """
    if warmup_steps < 1:
        raise ValueError(f"the noam schedule needs warmup_steps >= 1, got {warmup_steps}")
    s = max(step, 0) + 1
    return base_lr * min(s / warmup_steps, math.sqrt(warmup_steps / s))


def warmup_factor(step: int, warmup_steps: int) -> float:
    """The linear warm-up factor ``min(1, (step + 1) / warmup_steps)`` (1 without a warm-up).

    Examples
    --------
    >>> [warmup_factor(s, 4) for s in (0, 1, 3, 9)], warmup_factor(0, 0)
    ([0.25, 0.5, 1.0, 1.0], 1.0)
    """
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (max(step, 0) + 1) / warmup_steps)


class LRSchedule:
    """The learning rate as a function of (step, epoch, validation history).

    Parameters
    ----------
    kind : {"constant", "cosine", "plateau", "iwae", "exponential", "noam"}
        Schedule (see the module docstring).
    base_lr : float
        Learning rate at the start.
    total_steps : int, optional
        Length of the cosine schedule (required for ``"cosine"``).
    min_lr : float
        Floor of the cosine, plateau and exponential schedules.
    patience : int
        ``"plateau"``: validations in a row without improvement that trigger a reduction.
    factor : float
        ``"plateau"``: multiplier applied at each reduction, in (0, 1).
    threshold : float
        ``"plateau"``: a value improves on the best when it is lower by more than
        ``threshold * max(1, |best|)``.
    warmup_steps : int
        Linear warm-up over this many steps (0: none), composed with the schedule; for
        ``"noam"``, its ``W`` (required, >= 1).
    gamma : float, optional
        ``"exponential"``: the factor per step, in (0, 1] (required).

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

    def __init__(self, kind: Literal["constant", "cosine", "plateau", "iwae", "exponential", "noam"], base_lr: float, *,
                 total_steps: int | None = None, min_lr: float = 0.0, patience: int = 10, factor: float = 0.5,
                 threshold: float = 1e-4, warmup_steps: int = 0, gamma: float | None = None) -> None:
        if kind not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {list(SCHEDULES)}, got {kind!r}")
        if kind == "cosine" and (total_steps is None or total_steps < 1):
            raise ValueError(f"the cosine schedule needs total_steps >= 1, got {total_steps}")
        if not 0.0 < factor < 1.0:
            raise ValueError(f"plateau_factor must be in (0, 1), got {factor}")
        if patience < 1:
            raise ValueError(f"plateau_patience must be >= 1, got {patience}")
        if warmup_steps < 0 or (kind == "noam" and warmup_steps < 1):
            raise ValueError(f"warmup_steps must be >= {1 if kind == 'noam' else 0}"
                             f"{' for the noam schedule' if kind == 'noam' else ''}, got {warmup_steps}")
        if kind == "exponential" and (gamma is None or not 0.0 < gamma <= 1.0):
            raise ValueError(f"the exponential schedule needs lr_gamma in (0, 1], got {gamma}")
        self.warmup_steps, self.gamma = int(warmup_steps), None if gamma is None else float(gamma)
        self.kind, self.base_lr, self.total_steps, self.min_lr = kind, float(base_lr), total_steps, float(min_lr)
        self.patience, self.factor, self.threshold = int(patience), float(factor), float(threshold)
        self.best = math.inf
        self.bad = 0
        self.scale = 1.0
        self._written: dict[int, tuple[Tensor, float]] = {}  # id(lr tensor) -> (the tensor, the rate apply() wrote)

    @property
    def per_step(self) -> bool:
        """Whether the rate moves within an epoch (cosine, exponential, noam, or any warm-up)."""
        return self.kind in ("cosine", "exponential", "noam") or self.warmup_steps > 0

    def lr(self, step: int, epoch: int) -> float:
        """Learning rate for optimizer step ``step`` (0-based) taken during ``epoch`` (0-based),
        the warm-up included."""
        if self.kind == "noam":  # its rising part is the warm-up
            return noam_lr(self.base_lr, step, self.warmup_steps)
        return self._scheduled(step, epoch) * warmup_factor(step, self.warmup_steps)

    def _scheduled(self, step: int, epoch: int) -> float:
        if self.kind == "cosine":
            assert self.total_steps is not None
            return cosine_lr(self.base_lr, step, self.total_steps, self.min_lr)
        if self.kind == "iwae":
            return iwae_lr(self.base_lr, epoch)
        if self.kind == "plateau":
            return max(self.base_lr * self.scale, self.min_lr)
        if self.kind == "exponential":
            assert self.gamma is not None
            return exponential_lr(self.base_lr, step, self.gamma, self.min_lr)
        return self.base_lr

    def apply(self, optimizer: Optimizer, step: int, epoch: int) -> float:
        """Set the learning rate of every parameter group (times its ``lr_mult``, if any); returns the base rate."""
        lr = self.lr(step, epoch)
        written = self._written
        for group in optimizer.param_groups:
            value = lr * group.get("lr_mult", 1.0)
            current = group["lr"]
            if isinstance(current, Tensor):  # a compiled step reads the rate from a tensor (no recompilation)
                seen = written.get(id(current))
                if seen is None or seen[0] is not current or seen[1] != value:  # (a rate that did not move: no
                    current.fill_(value)  # operator; the tensor itself is compared, not only its id)
                    written[id(current)] = (current, value)
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
                "warmup_steps": self.warmup_steps, "gamma": self.gamma,
                "best": self.best, "bad": self.bad, "scale": self.scale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the plateau history (best value, bad count, current reduction)."""
        if state.get("kind") != self.kind:
            raise ValueError(f"checkpoint holds an lr_schedule {state.get('kind')!r}, but this trainer uses {self.kind!r}")
        self.best, self.bad, self.scale = float(state["best"]), int(state["bad"]), float(state["scale"])

    def __repr__(self) -> str:
        extra = (f", warmup_steps={self.warmup_steps}" if self.warmup_steps else "") + (
            f", gamma={self.gamma}" if self.gamma is not None else "")
        return (f"LRSchedule({self.kind!r}, base_lr={self.base_lr}, total_steps={self.total_steps}, "
                f"min_lr={self.min_lr}{extra})")


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


def _matches(name: str, prefix: str) -> bool:
    """Whether parameter ``name`` lies under ``prefix``: the name itself or a submodule's name (``"enc"``
    matches ``enc.weight``, not ``encoder.weight``; a trailing dot is allowed)."""
    prefix = prefix[:-1] if prefix.endswith(".") else prefix
    return name == prefix or name.startswith(prefix + ".")


def frozen_parameters(model: nn.Module, prefixes: list[str] | tuple[str, ...] | None) -> list[str]:
    """The names of the parameters that ``Trainer(freeze=prefixes)`` freezes, checked.

    A prefix is a parameter's name or a submodule's (as in ``model.named_parameters()``,
    matched at a dot as for ``lr_multipliers``). A prefix that matches no parameter, or a
    freeze that leaves no trainable parameter, raises :class:`~vaekit.InvalidArgumentError`
    naming it (and a few of the parameter names).

    >>> frozen_parameters(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1)), ["0"])
    ['0.weight', '0.bias']
    >>> frozen_parameters(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1)), ["enc"])
    Traceback (most recent call last):
    ...
    vaekit._checks.InvalidArgumentError: freeze: the prefix 'enc' matches no parameter of Sequential; accepted: a parameter or submodule name, e.g. '0.weight', '0.bias', '1.weight', '1.bias' (4 parameters)
    """
    if not prefixes:
        return []
    named = [n for n, _ in model.named_parameters()]
    unused = [k for k in prefixes if not any(_matches(n, k) for n in named)]
    if unused:
        shown = ", ".join(repr(n) for n in named[:6]) + (", ..." if len(named) > 6 else "")
        raise InvalidArgumentError(
            f"freeze: the prefix{'es' if len(unused) > 1 else ''} {', '.join(repr(k) for k in unused)} "
            f"match{'' if len(unused) > 1 else 'es'} no parameter of {type(model).__name__}; accepted: a parameter or "
            f"submodule name, e.g. {shown} ({len(named)} parameters)")
    frozen = [n for n in named if any(_matches(n, k) for k in prefixes)]
    skip = set(frozen)
    if not any(p.requires_grad and n not in skip for n, p in model.named_parameters()):
        raise InvalidArgumentError(f"freeze={list(prefixes)!r} leaves {type(model).__name__} no trainable parameter "
                                   f"({len(frozen)} frozen of {len(named)}); accepted: prefixes of a part of the model")
    return frozen
