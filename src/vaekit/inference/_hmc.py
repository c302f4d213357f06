r"""Vectorized Hamiltonian Monte Carlo on annealed targets, the transition kernel of AIS.

The annealed target at inverse temperature :math:`\beta` is

.. math::

    \log \pi_\beta(z) = \log p(z) + \beta \log p(x \mid z)
                      = (1 - \beta) \log p(z) + \beta \log p(x, z),

so one evaluation of ``model.log_prior`` and ``model.log_joint`` (and of their gradients
with respect to ``z``) serves every :math:`\beta`: a state caches both, and a change of
temperature costs no extra evaluation. Many chains of many examples run as one batch: the
latents of all chains are one tensor of shape ``(chains, batch, dim)`` (the named latents
flattened and concatenated by :class:`LatentPacker`), the gradient of the sum of the
per-chain log targets is the per-chain gradient, and the Metropolis test is per chain.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from numbers import Real
from typing import Any

import torch
from torch import Tensor

from .._checks import InvalidArgumentError, check_int
from ..models.base import LatentVariableModel

__all__ = ["HMCSettings", "LatentPacker", "HMCState", "anneal", "evaluate", "hmc_transition"]

#: Multiplicative step-size change per transition (Wu et al. 2017; Cremer et al. 2018).
_ADAPT_FACTOR = 1.02


@dataclass(frozen=True)
class HMCSettings:
    """The HMC transition kernel of AIS, reverse AIS and BDMC, and its step-size adaptation.

    Every field is checked when the settings are made, so a bad value is refused before
    any work, with an error naming the field, the value and what is accepted.

    Parameters
    ----------
    leapfrog_steps : int
        Leapfrog steps (gradient evaluations of ``log p(x, z)``) per transition (>= 1).
    step_size : float
        Initial leapfrog step size, inside ``step_size_bounds``.
    target_accept : float
        Acceptance probability the adaptation aims at, in (0, 1).
    step_size_bounds : (float, float)
        ``(low, high)`` with ``0 < low <= high``: the adapted step size is clamped to it.
    adapt : bool
        Adapt the step size of each example after every transition: multiply it by 1.02
        when the mean acceptance probability of its chains exceeded ``target_accept``, else
        divide it by 1.02 (Wu et al. 2017). False keeps ``step_size`` fixed.

    Examples
    --------
    >>> HMCSettings(leapfrog_steps=5, adapt=False)
    HMCSettings(leapfrog_steps=5, step_size=0.05, target_accept=0.65, step_size_bounds=(0.0001, 0.5), adapt=False)
    >>> HMCSettings(step_size=0.9)
    Traceback (most recent call last):
    ...
    vaekit._checks.InvalidArgumentError: step_size must be a number inside step_size_bounds=(0.0001, 0.5), got 0.9
    """

    leapfrog_steps: int = 10
    step_size: float = 0.05
    target_accept: float = 0.65
    step_size_bounds: tuple[float, float] = (1e-4, 0.5)
    adapt: bool = True

    def __post_init__(self) -> None:
        check_int("leapfrog_steps", self.leapfrog_steps)
        if not _is_number(self.target_accept) or not 0 < self.target_accept < 1:
            raise InvalidArgumentError(f"target_accept must be a number in (0, 1), got {self.target_accept!r}")
        given = self.step_size_bounds
        bounds = tuple(given) if isinstance(given, (tuple, list)) else ()
        if len(bounds) != 2 or not all(_is_number(b) for b in bounds) or not 0 < bounds[0] <= bounds[1] < math.inf:
            raise InvalidArgumentError(f"step_size_bounds must be (low, high) with 0 < low <= high, got {given!r}")
        bounds = (float(bounds[0]), float(bounds[1]))
        if not _is_number(self.step_size) or not bounds[0] <= self.step_size <= bounds[1]:
            raise InvalidArgumentError(f"step_size must be a number inside step_size_bounds={bounds}, "
                                       f"got {self.step_size!r}")
        if not isinstance(self.adapt, bool):
            raise InvalidArgumentError(f"adapt must be True or False, got {self.adapt!r}")
        object.__setattr__(self, "leapfrog_steps", int(self.leapfrog_steps))
        object.__setattr__(self, "step_size", float(self.step_size))
        object.__setattr__(self, "target_accept", float(self.target_accept))
        object.__setattr__(self, "step_size_bounds", bounds)


def _is_number(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)


class LatentPacker:
    """Flattens a dict of named latents into one vector per (chain, example) and back.

    Parameters
    ----------
    example : dict of str to Tensor
        Latents with ``lead_ndim`` leading dimensions, e.g. the output of
        ``model.sample_prior(n)`` (``lead_ndim=1``). Only the trailing (event) shapes and
        dtypes are kept.
    lead_ndim : int
        Number of leading (sample, batch) dimensions of ``example``.

    Raises
    ------
    TypeError
        If a latent is not a floating-point tensor (HMC needs continuous latents).

    Examples
    --------
    >>> import torch
    >>> packer = LatentPacker({"top": torch.zeros(5, 2), "img": torch.zeros(5, 3, 4)}, 1)
    >>> packer.dim
    14
    >>> flat = packer.pack({"top": torch.ones(7, 5, 2), "img": torch.ones(7, 5, 3, 4)}, 2)
    >>> flat.shape
    torch.Size([7, 5, 14])
    >>> {k: tuple(v.shape) for k, v in packer.unpack(flat).items()}
    {'top': (7, 5, 2), 'img': (7, 5, 3, 4)}
    """

    def __init__(self, example: dict[str, Tensor], lead_ndim: int) -> None:
        if not isinstance(example, dict) or not example:
            raise TypeError(f"latents must be a non-empty dict of str to Tensor, got {type(example).__name__}")
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, torch.dtype] = {}
        for name, value in example.items():
            if not isinstance(value, Tensor) or not torch.is_floating_point(value):
                got = value.dtype if isinstance(value, Tensor) else type(value).__name__
                raise TypeError(f"HMC needs continuous latents, but latent {name!r} is {got}; "
                                "AIS works only on models whose latents are all floating-point")
            self.shapes[name] = tuple(value.shape[lead_ndim:])
            self.dtypes[name] = value.dtype
        self.sizes = [math.prod(s) for s in self.shapes.values()]
        self.dim = sum(self.sizes)
        self.dtype = functools.reduce(torch.promote_types, self.dtypes.values())  # any number of latents

    def pack(self, z: dict[str, Tensor], lead_ndim: int) -> Tensor:
        """Tensor of shape (*lead, dim): every latent flattened, concatenated in order."""
        lead = next(iter(z.values())).shape[:lead_ndim]
        return torch.cat([z[name].reshape(*lead, size).to(self.dtype) for name, size in zip(self.shapes, self.sizes)], -1)

    def unpack(self, flat: Tensor) -> dict[str, Tensor]:
        """The dict of named latents of shape (*lead, *event) from ``flat`` of shape (*lead, dim)."""
        lead = flat.shape[:-1]
        parts = flat.split(self.sizes, -1)
        return {name: part.reshape(*lead, *shape).to(self.dtypes[name])
                for (name, shape), part in zip(self.shapes.items(), parts)}


@dataclass
class HMCState:
    """One point per chain with its cached log densities and their gradients.

    Attributes
    ----------
    z : Tensor of shape (chains, batch, dim)
    log_prior, log_joint : Tensor of shape (chains, batch)
        ``log p(z)`` and ``log p(x, z)``.
    grad_prior, grad_joint : Tensor of shape (chains, batch, dim)
        Their gradients with respect to ``z``.
    """

    z: Tensor
    log_prior: Tensor
    log_joint: Tensor
    grad_prior: Tensor
    grad_joint: Tensor

    @property
    def log_likelihood(self) -> Tensor:
        """``log p(x | z) = log p(x, z) - log p(z)``, shape (chains, batch)."""
        return self.log_joint - self.log_prior

    def log_target(self, beta: float) -> Tensor:
        """``(1 - beta) log p(z) + beta log p(x, z)``, shape (chains, batch)."""
        return (1 - beta) * self.log_prior + beta * self.log_joint

    def grad(self, beta: float) -> Tensor:
        """Gradient of :meth:`log_target`, shape (chains, batch, dim)."""
        return (1 - beta) * self.grad_prior + beta * self.grad_joint

    def where(self, keep_new: Tensor, new: HMCState) -> HMCState:
        """Per chain, ``new`` where ``keep_new`` (shape (chains, batch)) is true, else ``self``."""
        m = keep_new.unsqueeze(-1)
        return HMCState(torch.where(m, new.z, self.z), torch.where(keep_new, new.log_prior, self.log_prior),
                        torch.where(keep_new, new.log_joint, self.log_joint),
                        torch.where(m, new.grad_prior, self.grad_prior), torch.where(m, new.grad_joint, self.grad_joint))


def evaluate(model: LatentVariableModel, x: Tensor, packer: LatentPacker, z: Tensor) -> HMCState:
    """Evaluate ``log p(z)``, ``log p(x, z)`` and their gradients w.r.t. ``z`` only.

    Parameters
    ----------
    model : LatentVariableModel
        Needs ``log_prior(z)`` and ``log_joint(x, z)``, both of shape (chains, batch).
    x : Tensor of shape (batch, *data_shape)
    packer : LatentPacker
    z : Tensor of shape (chains, batch, dim)

    Returns
    -------
    HMCState
        Detached tensors. Gradients come from :func:`torch.autograd.grad`, so the model's
        parameters never receive a ``.grad``.

    Raises
    ------
    RuntimeError
        If the model returns log densities of the wrong shape.
    """
    with torch.enable_grad():
        zr = z.detach().requires_grad_(True)
        latents = packer.unpack(zr)
        log_prior = model.log_prior(latents)
        log_joint = model.log_joint(x, latents)
        want = tuple(z.shape[:2])
        for what, value in (("log_prior(z)", log_prior), ("log_joint(x, z)", log_joint)):
            if not isinstance(value, Tensor) or tuple(value.shape) != want:
                got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise RuntimeError(f"{type(model).__name__}.{what} for latents of leading shape (chains, batch) = "
                                   f"{want} must return a tensor of shape {want}, got {got}")
        (grad_joint,) = torch.autograd.grad(log_joint.sum(), zr, retain_graph=True, allow_unused=True)
        (grad_prior,) = torch.autograd.grad(log_prior.sum(), zr, allow_unused=True)
    zeros = torch.zeros_like(z)
    return HMCState(z.detach(), log_prior.detach(), log_joint.detach(),
                    zeros if grad_prior is None else grad_prior, zeros if grad_joint is None else grad_joint)


def hmc_transition(model: LatentVariableModel, x: Tensor, packer: LatentPacker, state: HMCState, beta: float,
                   step_size: Tensor, leapfrog_steps: int) -> tuple[HMCState, Tensor, Tensor]:
    r"""One HMC transition per chain that leaves :math:`\pi_\beta` invariant.

    Momentum :math:`p \sim \mathcal N(0, I)`, ``leapfrog_steps`` leapfrog steps of size
    ``step_size``, then a Metropolis test on :math:`H = -\log \pi_\beta(z) + |p|^2 / 2`.
    Proposals whose energy is NaN or infinite are rejected.

    Parameters
    ----------
    model, x, packer
        As in :func:`evaluate`.
    state : HMCState
        Current points (chains, batch, dim), cached densities and gradients.
    beta : float
        Inverse temperature in [0, 1].
    step_size : Tensor of shape (batch,) or (chains, batch)
        Leapfrog step size per example (or per chain).
    leapfrog_steps : int
        Number of leapfrog steps (gradient evaluations) per transition.

    Returns
    -------
    state : HMCState
        The new points (the old one where a proposal was rejected).
    accept_prob : Tensor of shape (chains, batch)
        Metropolis acceptance probability :math:`\min(1, e^{H_0 - H_1})`.
    accepted : Tensor of shape (chains, batch), bool
    """
    eps = step_size.unsqueeze(-1).to(state.z.dtype)
    p0 = torch.randn_like(state.z)
    p = p0 + 0.5 * eps * state.grad(beta)
    z = state.z
    for step in range(leapfrog_steps):
        z = z + eps * p
        proposal = evaluate(model, x, packer, z)
        p = p + (eps if step < leapfrog_steps - 1 else 0.5 * eps) * proposal.grad(beta)
    h0 = -state.log_target(beta) + 0.5 * (p0**2).sum(-1)
    h1 = -proposal.log_target(beta) + 0.5 * (p**2).sum(-1)
    log_ratio = (h0 - h1).to(torch.float64)
    log_ratio = torch.where(torch.isfinite(log_ratio), log_ratio, torch.full_like(log_ratio, -math.inf))
    accept_prob = log_ratio.clamp(max=0.0).exp()
    accepted = torch.rand_like(accept_prob) < accept_prob
    return state.where(accepted, proposal), accept_prob, accepted


def anneal(model: LatentVariableModel, x: Tensor, packer: LatentPacker, z: Tensor, betas: Tensor,
            hmc: HMCSettings, bar: Any) -> tuple[Tensor, ...]:
    """Anneal one batch of chains along ``betas``, adapting the step size per example (``hmc.adapt``).

    ``hmc`` is the kernel; ``bar`` is a progress bar updated once per annealing step.
    ``z`` (chains, batch, dim) are the starting points. Returns float64 CPU tensors:

    ``lw`` (chains, batch) is ``sum_t (betas[t] - betas[t-1]) log p(x | z_{t-1})``,
    ``acc`` (batch,) the mean accepted fraction, ``eps`` (batch,) the final step sizes and
    ``trace_acc``, ``trace_eps`` (transitions,) their means over the batch per transition.
    """
    chains, b = z.shape[:2]
    low, high = hmc.step_size_bounds
    eps = torch.full((b,), hmc.step_size, dtype=torch.float64, device=z.device)
    lw = torch.zeros(chains, b, dtype=torch.float64, device=z.device)
    accepted_sum = torch.zeros(b, dtype=torch.float64, device=z.device)
    trace_acc, trace_eps = [], []
    state = evaluate(model, x, packer, z)
    steps = betas.numel() - 1
    for t in range(1, steps + 1):
        lw += (float(betas[t]) - float(betas[t - 1])) * state.log_likelihood.to(torch.float64)
        if t < steps:
            trace_eps.append(eps.mean())
            state, prob, accepted = hmc_transition(model, x, packer, state, float(betas[t]), eps,
                                                   hmc.leapfrog_steps)
            rate = accepted.to(torch.float64).mean(0)
            accepted_sum += rate
            trace_acc.append(rate.mean())
            if hmc.adapt:
                up = prob.mean(0) > hmc.target_accept
                eps = torch.where(up, eps * _ADAPT_FACTOR, eps / _ADAPT_FACTOR).clamp(low, high)
        bar.update(1)
    transitions = max(steps - 1, 1)
    stack = (lambda v: torch.stack(v).cpu()) if trace_acc else (lambda v: torch.zeros(0, dtype=torch.float64))
    acc = accepted_sum.cpu() / transitions if steps > 1 else torch.full((b,), math.nan, dtype=torch.float64)
    return lw.cpu(), acc, eps.cpu(), stack(trace_acc), stack(trace_eps)
