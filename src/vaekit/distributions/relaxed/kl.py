r"""KL terms between relaxed categorical posteriors and priors.

For the IGR family the map :math:`g` from the Gaussian :math:`\lambda` to the simplex is a
bijection, and KL divergence is invariant under a bijection applied to both arguments: when
posterior and prior share :math:`g` (same family, temperature and :math:`\delta`),
:math:`\mathrm{KL}(q(\psi)\,\|\,p(\psi)) = \mathrm{KL}(q(\lambda)\,\|\,p(\lambda))`, the closed-form
Gaussian KL for IGR-I and IGR-SB (untruncated). With planar steps in the posterior the
Gaussian-space KL is estimated by Monte Carlo, log-determinants included. For a truncated
IGR-SB the truncation is one more deterministic map of the same sample, so the Gaussian KL is
an upper bound on the KL of the truncated variables (data-processing inequality), the term the
paper uses. The Gumbel-Softmax has no closed form: its KL is the single-sample
:math:`\log q(z) - \log p(z)`, evaluated in log space.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor
from torch.distributions import Distribution, register_kl

from ..base import rsample_and_log_prob
from .gumbel import GumbelSoftmax
from .igr import IGR, GaussianRelaxation
from .stick import IGRStickBreaking

__all__ = ["relaxed_kl", "RELAXED_KL_METHODS"]

RELAXED_KL_METHODS = ("auto", "gaussian", "mc")
"""The accepted ``method`` values of :func:`relaxed_kl`."""


def _same_map(q: GaussianRelaxation, p: GaussianRelaxation) -> bool:
    """Whether q and p push their Gaussians through the same map onto the simplex (prior without flows)."""
    if type(q) is not type(p) or p.has_flows or q.loc.shape[-1] != p.loc.shape[-1]:
        return False
    tq, tp = torch.as_tensor(q.temperature), torch.as_tensor(p.temperature)
    if tq.shape != tp.shape or not bool((tq == tp.to(tq)).all()):
        return False
    if isinstance(q, IGR):
        return q.delta == p.delta  # type: ignore[attr-defined]
    return True


def _gaussian_kl(q: GaussianRelaxation, p: GaussianRelaxation) -> Tensor:
    if not isinstance(q, GaussianRelaxation) or not isinstance(p, GaussianRelaxation):
        raise ValueError(f"method='gaussian' needs an IGR posterior and an IGR prior, got {type(q).__name__} and "
                         f"{type(p).__name__}; use method='mc'")
    if p.has_flows:
        raise ValueError("method='gaussian' needs a prior without flows (its Gaussian is the prior density of lambda)")
    if q.loc.shape[-1] != p.loc.shape[-1]:
        raise ValueError(f"posterior and prior Gaussians differ in dimension: {q.loc.shape[-1]} vs {p.loc.shape[-1]}")
    if not q.has_flows:
        return torch.distributions.kl_divergence(q.base, p.base)
    lam, log_q_lam = q.rsample_gaussian()
    return log_q_lam - p.base.log_prob(lam)


def relaxed_kl(q: Distribution, p: Distribution, method: Literal["auto", "gaussian", "mc"] = "auto",
               z: Tensor | None = None, log_q: Tensor | None = None) -> Tensor:
    r"""``KL(q || p)`` between relaxed categorical distributions, per batch element.

    Parameters
    ----------
    q, p : Distribution
        Posterior (batch shape (*batch)) and prior (broadcasting against it): :class:`IGR`,
        :class:`IGRStickBreaking`, :class:`GumbelSoftmax` or
        :class:`~vaekit.distributions.relaxed.ExpConcrete`.
    method : {"auto", "gaussian", "mc"}
        ``"gaussian"``: KL between the Gaussians before the map to the simplex (closed form;
        one Monte Carlo sample with log-determinants when q has planar steps); equal to the KL
        on the simplex when q and p share temperature and delta. ``"mc"``: the single-sample
        :math:`\log q(z) - \log p(z)` of the relaxed densities. ``"auto"``: gaussian for IGR
        posteriors, mc otherwise.
    z : Tensor of shape (*sample, *batch, K), optional
        A sample of q to evaluate the Monte Carlo estimate at (``"mc"`` only). Without it a
        fresh sample is drawn in the numerically stable parametrisation (lambda for IGR, log
        space for Gumbel-Softmax); pass none for a hard (straight-through) Gumbel-Softmax sample.
    log_q : Tensor of shape (*sample, *batch), optional
        ``log q(z)`` when already known (``"mc"`` with ``z``).

    Returns
    -------
    Tensor of shape (*batch,) (or (*sample, *batch) for a given ``z`` with sample dimensions)

    Examples
    --------
    >>> q = IGR(torch.ones(4, 2), torch.ones(4, 2), 0.5)
    >>> p = IGR(torch.zeros(2), torch.ones(2), 0.5)
    >>> relaxed_kl(q, p)
    tensor([1., 1., 1., 1.])
    """
    if method not in RELAXED_KL_METHODS:
        raise ValueError(f"method must be one of {RELAXED_KL_METHODS}, got {method!r}")
    if method == "auto":
        method = "gaussian" if isinstance(q, GaussianRelaxation) else "mc"
    if method == "gaussian":
        return _gaussian_kl(q, p)  # type: ignore[arg-type]
    if z is not None:
        return (q.log_prob(z) if log_q is None else log_q) - p.log_prob(z)
    if isinstance(q, GaussianRelaxation):
        lam, log_q_lam = q.rsample_gaussian()
        if isinstance(p, GaussianRelaxation) and _same_map(q, p):
            return log_q_lam - p.base.log_prob(lam)  # the Jacobians of the shared map cancel
        log_psi = q._log_simplex(lam)
        return log_q_lam - q._log_det(lam, log_psi) - p.log_prob(q._output(log_psi))
    if isinstance(q, GumbelSoftmax) and isinstance(p, GumbelSoftmax):
        q, p = q.exp_concrete, p.exp_concrete  # log q - log p is the same in log space, and stays finite
    y, log_q_y = rsample_and_log_prob(q)
    return log_q_y - p.log_prob(y)


@register_kl(IGR, IGR)
def _kl_igr_igr(q: IGR, p: IGR) -> Tensor:
    """Closed form when neither has flows and both share temperature and delta (else no closed form)."""
    if q.has_flows or not _same_map(q, p):
        raise NotImplementedError("closed-form KL between IGR distributions needs no flows and equal temperature "
                                  "and delta")
    return torch.distributions.kl_divergence(q.base, p.base)


@register_kl(IGRStickBreaking, IGRStickBreaking)
def _kl_sb_sb(q: IGRStickBreaking, p: IGRStickBreaking) -> Tensor:
    """Closed form for untruncated IGR-SB pairs sharing temperature and size."""
    if q.truncate or p.truncate or not _same_map(q, p):
        raise NotImplementedError("closed-form KL between IGR-SB distributions needs truncate=False, equal "
                                  "temperature and equal max_categories")
    return torch.distributions.kl_divergence(q.base, p.base)
