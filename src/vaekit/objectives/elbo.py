"""Training objectives: the ELBO with KL weighting (constant, warm-up, entropy warm-up,
free bits) and the importance-weighted (IWAE) bound.

An objective is a small callable object: ``objective(model, batch, step)`` returns the
scalar loss to minimise and a dict of per-batch metrics (python floats are *not*
produced here: metrics stay tensors so the training loop decides when to synchronise).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from .._checks import InvalidArgumentError, check_int
from .._numeric import logmeanexp
from .._recording import Configurable

if TYPE_CHECKING:
    from ..models.base import ElboTerms, LatentVariableModel

__all__ = ["KLWeight", "Objective", "ELBO", "IWAE", "logmeanexp"]


class KLWeight:
    r"""The weight :math:`\beta_t` put on the KL (or entropy) term at training step ``t``.

    Parameters
    ----------
    value : float
        Final weight (1.0 is the true ELBO).
    warmup_steps : int
        Number of steps over which the weight rises from ``start`` to ``value``;
        0 means constant.
    start : float
        Weight at step 0 when warming up.
    shape : {"linear", "logistic"}
        Shape of the ramp.

    Examples
    --------
    >>> w = KLWeight(1.0, warmup_steps=100)
    >>> w(0), w(50), w(100), w(1000)
    (0.0, 0.5, 1.0, 1.0)
    """

    def __init__(self, value: float = 1.0, warmup_steps: int = 0, start: float = 0.0,
                 shape: Literal["linear", "logistic"] = "linear") -> None:
        if value < 0:
            raise InvalidArgumentError(f"kl weight value must be >= 0, got {value}")
        if warmup_steps < 0:
            raise InvalidArgumentError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if shape not in ("linear", "logistic"):
            raise InvalidArgumentError(f"shape must be 'linear' or 'logistic', got {shape!r}")
        self.value, self.warmup_steps, self.start, self.shape = float(value), int(warmup_steps), float(start), shape

    def __call__(self, step: int) -> float:
        if self.warmup_steps == 0 or step >= self.warmup_steps:
            return self.value
        t = max(step, 0) / self.warmup_steps
        if self.shape == "logistic":
            t = 1.0 / (1.0 + math.exp(-12.0 * (t - 0.5)))
        return self.start + (self.value - self.start) * t

    def __repr__(self) -> str:
        return f"KLWeight(value={self.value}, warmup_steps={self.warmup_steps}, start={self.start}, shape={self.shape!r})"


class Objective(Configurable):
    """Base class: ``loss, metrics = objective(model, batch, step)``."""

    def __call__(self, model: LatentVariableModel, batch: Any, step: int = 0) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError


class ELBO(Objective):
    r"""Negative ELBO with a scheduled KL weight and optional free bits.

    With ``warmup="kl"`` the per-example loss is
    :math:`-\log p(x|z) + \beta_t \sum_l \mathrm{KL}_l`;
    with ``warmup="entropy"`` (the schedule of Cremer et al. 2018) only the
    :math:`-\log q` term is annealed:
    :math:`-[\log p(x|z) + \log p(z) - \beta_t \log q(z|x)]`.

    Free bits (Kingma et al. 2016) replace each named latent's batch-mean KL by
    ``max(free_bits * dim_l, KL_l)``, so no latent is pushed below ``free_bits`` nats
    per dimension.

    Parameters
    ----------
    kl_weight : float
        Final KL weight (beta); 1.0 is the ELBO.
    warmup_steps : int
        Linear warm-up of the weight from 0 over this many steps (0 = constant).
    warmup : {"kl", "entropy"}
        Which term the weight multiplies.
    free_bits : float
        Nats per latent dimension below which the KL is not penalised (0 = off).
    warmup_shape : {"linear", "logistic"}
        Shape of the warm-up ramp (see :class:`KLWeight`).
    kl_balance : bool
        NVAE-style KL balancing (Vahdat & Kautz 2020) while the KL weight is below 1: each
        named latent's KL is multiplied by a coefficient proportional to its batch-mean
        absolute KL (+0.01) divided by its number of dimensions (relative to the smallest
        latent), the coefficients normalised to mean 1 and not differentiated. Latents
        that carry more information per dimension are pushed harder, so no group of a
        hierarchical model collapses early. No effect with a single latent or once the
        warm-up is over.

    Examples
    --------
    >>> obj = ELBO(kl_weight=1.0, warmup_steps=10)
    >>> obj.weight(5)
    0.5
    >>> ELBO(warmup_steps=10, warmup_shape="logistic").weight(2) < 0.2
    True
    """

    def __init__(self, kl_weight: float = 1.0, warmup_steps: int = 0,
                 warmup: Literal["kl", "entropy"] = "kl", free_bits: float = 0.0,
                 warmup_shape: Literal["linear", "logistic"] = "linear", kl_balance: bool = False) -> None:
        if warmup not in ("kl", "entropy"):
            raise InvalidArgumentError(f"warmup must be 'kl' or 'entropy', got {warmup!r}")
        if free_bits < 0:
            raise InvalidArgumentError(f"free_bits must be >= 0, got {free_bits}")
        if free_bits > 0 and warmup == "entropy":
            raise InvalidArgumentError("free_bits applies to KL terms, but warmup='entropy' weights log q instead; use "
                             "warmup='kl' with free_bits, or free_bits=0 with warmup='entropy'")
        if kl_balance and warmup == "entropy":
            raise InvalidArgumentError("kl_balance weights the KL terms, but warmup='entropy' weights log q instead; use warmup='kl'")
        self.weight = KLWeight(kl_weight, warmup_steps, shape=warmup_shape)
        self.warmup = warmup
        self.free_bits = float(free_bits)
        self.kl_balance = bool(kl_balance)

    def __call__(self, model: LatentVariableModel, batch: Any, step: int = 0) -> tuple[Tensor, dict[str, Tensor]]:
        terms = model.elbo_terms(batch)
        beta = self.weight(step)
        rec = terms.rec.mean()
        kl_means = {name: v.mean() for name, v in terms.kl.items()}
        if self.warmup == "entropy":
            if set(terms.log_q) != set(terms.kl):
                raise ValueError("warmup='entropy' needs log_q and log_p for every latent from the model's elbo_terms")
            log_p = sum(v.mean() for v in terms.log_p.values())
            log_q = sum(v.mean() for v in terms.log_q.values())
            loss = -(rec + log_p - beta * log_q)
        else:
            means = kl_means
            if self.free_bits > 0:
                means = {name: torch.clamp(m, min=self.free_bits * _latent_dim(model, name))
                         for name, m in kl_means.items()}
            coeffs = _balance(model, terms.kl) if self.kl_balance and beta < 1.0 and len(terms.kl) > 1 else None
            kl = _total([m * coeffs[name] for name, m in means.items()] if coeffs is not None else list(means.values()))
            loss = (kl if beta == 1.0 else beta * kl) - rec
        with torch.no_grad():  # the metrics: no autograd record
            metrics = {"loss": loss.detach(), "elbo": rec - _total(list(kl_means.values())), "rec": rec.detach()}
            for name, m in kl_means.items():
                metrics[f"kl/{name}"] = m.detach()
        return loss, metrics

    def __repr__(self) -> str:
        return (f"ELBO(weight={self.weight!r}, warmup={self.warmup!r}, free_bits={self.free_bits}, "
                f"kl_balance={self.kl_balance})")


def _total(values: list[Tensor]) -> Tensor | float:
    """The sum of a list of tensors (one tensor stays itself: no extra operation)."""
    out: Tensor | float = 0.0
    for i, v in enumerate(values):
        out = v if i == 0 else out + v
    return out


def _balance(model: LatentVariableModel, kl: dict[str, Tensor]) -> dict[str, Tensor]:
    """NVAE's balancing coefficients per named latent (mean 1, no gradient)."""
    names = list(kl)
    dims = model.latent_dims
    alpha = torch.tensor([float(dims.get(n, 1)) for n in names], device=kl[names[0]].device)
    alpha = alpha / alpha.min()
    c = torch.stack([kl[n].detach().abs().mean() for n in names]) + 0.01
    c = c / alpha
    c = c / c.mean()
    return dict(zip(names, c))


def _latent_dim(model: LatentVariableModel, name: str) -> int:
    dims = model.latent_dims
    if name not in dims:
        raise ValueError(f"free_bits needs model.latent_dims[{name!r}] (the number of dimensions of latent {name!r})")
    return int(dims[name])


class IWAE(Objective):
    r"""Negative importance-weighted bound with ``k`` samples (Burda et al. 2016).

    :math:`\mathcal{L}_k = \mathbb{E}\left[\log \frac{1}{k}\sum_{i=1}^k w_i\right]`,
    :math:`w_i = p(x, z_i) / q(z_i | x)`.  ``k=1`` is the ELBO.

    Parameters
    ----------
    k : int
        Number of importance samples per example (>= 1).
    """

    def __init__(self, k: int = 5) -> None:
        self.k = check_int("k", k)

    def __call__(self, model: LatentVariableModel, batch: Any, step: int = 0) -> tuple[Tensor, dict[str, Tensor]]:
        lw = model.log_weights(batch, self.k)  # (k, batch)
        bound = logmeanexp(lw, 0).mean()
        loss = -bound
        return loss, {"loss": loss.detach(), f"iwae{self.k}": bound.detach(), "elbo": lw.mean().detach()}

    def __repr__(self) -> str:
        return f"IWAE(k={self.k})"
