r"""The capacity-controlled objective of JointVAE (Dupont 2018, after Burgess et al. 2018).

.. math::

    \mathcal{L}_t = -\mathbb{E}_q[\log p(x|z,c)]
      + \gamma\,\bigl|\mathrm{KL}(q(z|x)\,\|\,p(z)) - C_z(t)\bigr|
      + \gamma\,\bigl|\mathrm{KL}(q(c|x)\,\|\,p(c)) - C_c(t)\bigr|

where the KLs are batch means and each capacity :math:`C(t)` rises linearly from ``low``
to ``high`` over ``iterations`` training steps and then stays at ``high``. As in Dupont's
code the discrete capacity is also capped at the largest KL a discrete latent can carry,
:math:`\sum_n \log K_n` (``model.max_discrete_kl``), so the model is never asked for more
information than ``N`` categorical variables can hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .._checks import InvalidArgumentError, check_float, check_int
from ..models.discrete import RelaxedLatentModel
from .elbo import Objective

if TYPE_CHECKING:
    from ..models.base import LatentVariableModel

__all__ = ["CapacityObjective", "linear_capacity"]


def _check_capacity(name: str, value: Sequence[float]) -> tuple[float, float, int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 3:
        raise InvalidArgumentError(f"{name} must be a (low, high, iterations) triple, e.g. (0.0, 5.0, 25000), got {value!r}")
    low = check_float(f"{name}[0] (low)", value[0], 0)
    high = check_float(f"{name}[1] (high)", value[1], 0)
    iters = check_int(f"{name}[2] (iterations)", value[2], 0)
    if high < low:
        raise InvalidArgumentError(f"{name} must rise: high ({high}) must be >= low ({low}), got {tuple(value)!r}")
    return low, high, iters


def linear_capacity(step: int, low: float, high: float, iterations: int) -> float:
    """Capacity at ``step``: ``low + (high - low) * step / iterations``, clipped to ``high``.

    ``iterations = 0`` means the capacity is ``high`` from the first step.

    Examples
    --------
    >>> linear_capacity(0, 0.0, 5.0, 100), linear_capacity(50, 0.0, 5.0, 100), linear_capacity(500, 0.0, 5.0, 100)
    (0.0, 2.5, 5.0)
    """
    if iterations == 0:
        return float(high)
    return float(min(low + (high - low) * max(step, 0) / iterations, high))


class CapacityObjective(Objective):
    r"""JointVAE loss with linearly increasing KL capacities (Dupont 2018).

    Parameters
    ----------
    gamma : float
        Weight of each capacity penalty :math:`\gamma |\mathrm{KL} - C|` (> 0).
    continuous_capacity : (float, float, int)
        ``(low, high, iterations)`` of the capacity of the continuous latent, in nats.
    discrete_capacity : (float, float, int)
        Same for the discrete latent; capped at ``model.max_discrete_kl`` when the model
        has it.
    continuous_latent : str or None
        Name of the continuous latent in ``elbo_terms(...).kl`` (None: no continuous term).
    discrete_latent : str or None
        Name of the discrete latent (None: no discrete term, e.g. a plain VAE).

    Examples
    --------
    >>> obj = CapacityObjective(gamma=30.0, continuous_capacity=(0.0, 5.0, 100))
    >>> obj.capacities(50)
    {'capacity/z': 2.5, 'capacity/c': 0.01}
    """

    def __init__(self, gamma: float = 30.0, continuous_capacity: tuple[float, float, int] = (0.0, 5.0, 25000),
                 discrete_capacity: tuple[float, float, int] = (0.0, 5.0, 25000),
                 continuous_latent: str | None = "z", discrete_latent: str | None = "c") -> None:
        self.gamma = check_float("gamma", gamma, 0, low_open=True)
        self.continuous_capacity = _check_capacity("continuous_capacity", continuous_capacity)
        self.discrete_capacity = _check_capacity("discrete_capacity", discrete_capacity)
        for name, value in (("continuous_latent", continuous_latent), ("discrete_latent", discrete_latent)):
            if value is not None and (not isinstance(value, str) or not value):
                raise TypeError(f"{name} must be a latent name (non-empty str) or None, got {value!r}")
        if continuous_latent is None and discrete_latent is None:
            raise ValueError("continuous_latent and discrete_latent are both None: name at least one latent to control")
        if continuous_latent is not None and continuous_latent == discrete_latent:
            raise ValueError(f"continuous_latent and discrete_latent must differ, both are {continuous_latent!r}")
        self.continuous_latent, self.discrete_latent = continuous_latent, discrete_latent

    def capacities(self, step: int, max_discrete_kl: float | None = None) -> dict[str, float]:
        """The capacity of each controlled latent at ``step`` (keys ``capacity/<name>``)."""
        out = {}
        if self.continuous_latent is not None:
            out[f"capacity/{self.continuous_latent}"] = linear_capacity(step, *self.continuous_capacity)
        if self.discrete_latent is not None:
            c = linear_capacity(step, *self.discrete_capacity)
            out[f"capacity/{self.discrete_latent}"] = c if max_discrete_kl is None else min(c, float(max_discrete_kl))
        return out

    def __call__(self, model: LatentVariableModel, batch: Any, step: int = 0) -> tuple[Tensor, dict[str, Tensor]]:
        terms = model.elbo_terms(batch)
        names = [n for n in (self.continuous_latent, self.discrete_latent) if n is not None]
        missing = [n for n in names if n not in terms.kl]
        if missing:
            raise ValueError(f"CapacityObjective controls latents {names} but the model's elbo_terms has KL terms for "
                             f"{sorted(terms.kl)}; set continuous_latent/discrete_latent to names it has (or None)")
        caps = self.capacities(step, model.max_discrete_kl if isinstance(model, RelaxedLatentModel) else None)
        rec = terms.rec.mean()
        loss = -rec
        metrics = {"elbo": terms.elbo.mean().detach(), "rec": rec.detach()}
        for name in names:
            kl = terms.kl[name].mean()
            cap = caps[f"capacity/{name}"]
            loss = loss + self.gamma * (kl - cap).abs()
            metrics[f"kl/{name}"] = kl.detach()
            metrics[f"capacity/{name}"] = torch.tensor(cap, dtype=kl.dtype, device=kl.device)
        for name in terms.kl:
            if name not in names:  # uncontrolled latents keep their plain KL
                kl = terms.kl[name].mean()
                loss = loss + kl
                metrics[f"kl/{name}"] = kl.detach()
        metrics["loss"] = loss.detach()
        return loss, metrics

    def __repr__(self) -> str:
        return (f"CapacityObjective(gamma={self.gamma}, continuous_capacity={self.continuous_capacity}, "
                f"discrete_capacity={self.discrete_capacity})")
