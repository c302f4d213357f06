"""Most exciting input: projected gradient ascent on the input to drive one latent unit."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._checks import InvalidArgumentError, check_float, check_int
from ..nn import eval_mode
from ._common import block_output, is_latent
from .receptive import check_centre, check_units

__all__ = ["MEIResult", "NoInputDependence", "most_exciting_input", "unit_activation"]


class NoInputDependence(ValueError):
    """The chosen units do not depend on the input (e.g. a hierarchical VAE's trainable start state), so no
    input excites them more than another."""


@dataclass
class MEIResult:
    """Most exciting inputs of some units of one latent.

    Attributes
    ----------
    inputs : Tensor of shape (n_units, *data_shape)
        ``centre + delta`` with ``||delta|| = norm`` for each unit.
    activation : Tensor of shape (n_units,)
        Posterior mean of each unit at its input.
    units : list of int
    norm : float
    """

    inputs: Tensor
    activation: Tensor
    units: list[int]
    norm: float


def unit_activation(model: Any, x: Tensor, latent: str, units: Sequence[int], n_mc: int = 32) -> Tensor:
    """Posterior mean of unit ``units[i]`` of ``latent`` at input ``x[i]`` (differentiable); for a deterministic
    block of a hierarchical VAE, unit ``units[i]`` of its output.

    Parameters
    ----------
    x : Tensor of shape (len(units), *data_shape)

    Returns
    -------
    Tensor of shape (len(units),)
    """
    if not is_latent(model, latent):  # a deterministic block of a hierarchical VAE: its output (differentiable)
        out = block_output(model, x, latent).flatten(1)
        return out[torch.arange(len(units), device=out.device), torch.as_tensor(list(units), device=out.device)]
    q = model.encode(x)[latent]
    try:
        means = q.mean
    except NotImplementedError:  # flows: a reparameterised Monte Carlo mean keeps the gradient
        means = q.rsample((n_mc,)).mean(0)
    means = means.flatten(1)
    return means[torch.arange(len(units), device=means.device), torch.as_tensor(list(units), device=means.device)]


def _project(delta: Tensor, norm: float) -> Tensor:
    return delta * (norm / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).view(-1, *[1] * (delta.dim() - 1))


def most_exciting_input(model: Any, latent: str | None = None, units: Sequence[int] | None = None, *, norm: float = 1.0,
                        centre: float | Tensor = 0.0, steps: int = 200, lr: float = 0.1, seed: int = 0,
                        block: str | None = None) -> MEIResult:
    r"""Inputs of fixed norm that maximise the posterior mean of chosen latent units.

    Projected gradient ascent on :math:`\delta` with :math:`\|\delta\| = \text{norm}`: each
    step moves :math:`\delta` by ``lr * norm`` along the normalised gradient of the unit's
    posterior mean :math:`\mathbb E_q[z_d | c + \delta]`, then projects back onto the
    sphere; the step size decays with a cosine schedule and the best iterate is kept. For a
    linear encoder the optimum is :math:`\delta = \text{norm}\; W_d / \|W_d\|`. All units are
    optimised together, one input each.

    Parameters
    ----------
    model : LatentVariableModel
    latent : str, optional
        One of ``model.latent_names`` (or, for a hierarchical VAE, any block name).
    units : sequence of int, optional
        Flattened unit indices (default: every unit).
    norm : float
        Euclidean norm of ``delta``, ``> 0``.
    centre : float or Tensor of shape data_shape
        ``c`` (e.g. the data mean).
    steps : int
    lr : float
        Step length as a fraction of ``norm`` (``> 0``).
    seed : int
        Seed of the random starting directions.
    block : str, optional
        Instead of ``latent`` (give exactly one): a latent, or any block of a hierarchical VAE,
        whose output's units are driven (as for :func:`spike_triggered_average`).

    Returns
    -------
    MEIResult

    Raises
    ------
    NoInputDependence
        When the units do not depend on the input at all (a block such as a hierarchical
        VAE's trainable start state).

    Examples
    --------
    >>> from vaekit.models import mlp_vae
    >>> res = most_exciting_input(mlp_vae([6], 3, [4]), "z", [0, 1], norm=2.0, steps=20)
    >>> res.inputs.shape, [round(float(v), 4) for v in res.inputs.norm(dim=1)]
    (torch.Size([2, 6]), [2.0, 2.0])
    """
    if (latent is None) == (block is None):
        raise InvalidArgumentError(f"give exactly one of latent and block, got latent={latent!r}, block={block!r}")
    latent = latent if block is None else block
    units = check_units(model, latent, units, "latent" if block is None else "block")
    norm = check_float("norm", norm, 0, low_open=True)
    steps = check_int("steps", steps)
    lr = check_float("lr", lr, 0, low_open=True)
    c = check_centre(model, centre)
    g = torch.Generator().manual_seed(check_int("seed", seed, 0))
    delta = _project(torch.randn(len(units), *model.data_shape, generator=g).to(c.device), norm)
    best, best_act = delta.clone(), torch.full((len(units),), -math.inf, device=c.device)
    with eval_mode(model), torch.enable_grad():
        for i in range(steps + 1):
            delta.requires_grad_(True)
            act = unit_activation(model, c + delta, latent, units)
            better = act.detach() > best_act
            best[better], best_act[better] = delta.detach()[better], act.detach()[better]
            if i == steps:
                break
            # (frozen weights and an output that ignores the input: no graph at all; else no gradient for delta)
            grad = torch.autograd.grad(act.sum(), delta, allow_unused=True)[0] if act.requires_grad else None
            if grad is None:
                raise NoInputDependence(f"{latent!r} does not depend on the input (units {units}), so it has no most "
                                        f"exciting input")
            step = lr * norm * 0.5 * (1 + math.cos(math.pi * i / steps))
            with torch.no_grad():
                delta = _project(delta + step * _project(grad, 1.0), norm)
    return MEIResult((c + best).detach().cpu(), best_act.detach().cpu(), units, norm)
