r"""Maps from Euclidean space onto the probability simplex, their log-determinants, and checks.

softmax++ (Potapczynski et al. 2020) maps :math:`\lambda \in \mathbb R^{K-1}` to the
:math:`K`-simplex,

.. math:: \psi_k = \frac{\exp(\lambda_k/\tau)}{\sum_{j=1}^{K-1}\exp(\lambda_j/\tau) + \delta},
          \quad k < K, \qquad \psi_K = 1 - \sum_{k<K}\psi_k,

which is an ordinary softmax over :math:`(\lambda/\tau, \log\delta)`, so it is computed with
``log_softmax`` (no overflow at small :math:`\tau`). It is a bijection onto the open simplex
with inverse :math:`\lambda_k = \tau(\log\psi_k - \log\psi_K + \log\delta)`; its Jacobian
:math:`\partial\psi_{1:K-1}/\partial\lambda = \tau^{-1}(\mathrm{diag}\,\psi - \psi\psi^\top)`
has determinant :math:`\tau^{-(K-1)}\prod_{k=1}^{K}\psi_k` (matrix determinant lemma).

The logistic stick-breaking map used by IGR-SB takes proportions
:math:`\kappa_k = \sigma(\lambda_k/\tau)` and sets
:math:`\psi_k = \kappa_k\prod_{j<k}(1-\kappa_j)` for :math:`k < M`, the last category taking
the remaining stick :math:`\prod_{j<M}(1-\kappa_j)`. Its Jacobian is triangular, with
:math:`\log|\det| = \sum_{k<M}\left[\log\kappa_k + \log(1-\kappa_k) + \log R_k - \log\tau\right]`,
:math:`R_k = \prod_{j<k}(1-\kappa_j)` the stick left before step :math:`k`.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import torch
import torch.nn.functional as F
from torch import Size, Tensor

from ..._checks import check_float

__all__ = ["softmax_pp", "log_softmax_pp", "softmax_pp_log_det", "inverse_softmax_pp", "log_stick_breaking",
           "stick_breaking_log_det", "inverse_stick_breaking", "vertex_proximity", "check_temperature",
           "check_probabilities", "event_temperature", "expand_temperature"]


def check_temperature(temperature: Any, name: str = "temperature") -> float | Tensor:
    """``temperature`` if it is a positive finite number or a tensor of positive finite numbers."""
    if isinstance(temperature, Tensor):
        if not torch.is_floating_point(temperature) or not bool(((temperature > 0) & temperature.isfinite()).all()):
            raise ValueError(f"{name} must be > 0 (a positive float or a floating tensor of positive values), got "
                             f"{temperature}")
        return temperature
    if isinstance(temperature, bool) or not isinstance(temperature, Real):
        raise TypeError(f"{name} must be a positive float or tensor, got {temperature!r} of type "
                        f"{type(temperature).__name__}")
    return check_float(name, temperature, 0, low_open=True)


def check_probabilities(probs: Any, name: str = "target_probs", atol: float = 1e-4) -> Tensor:
    """``probs`` as a float64 vector of >= 2 non-negative entries summing to 1 (within ``atol``)."""
    try:
        p = torch.as_tensor(probs, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be a vector of probabilities, got {probs!r}") from None
    if p.dim() != 1 or p.numel() < 2:
        raise ValueError(f"{name} must be a vector of at least 2 probabilities (K >= 2), got shape {tuple(p.shape)}")
    if not bool(p.isfinite().all()) or bool((p < 0).any()):
        raise ValueError(f"{name} must be finite and non-negative, got {p.tolist()}")
    if abs(float(p.sum()) - 1.0) > atol:
        raise ValueError(f"{name} must sum to 1 (tolerance {atol:g}), got sum {float(p.sum()):.6g}")
    return p


def event_temperature(temperature: float | Tensor) -> float | Tensor:
    """A temperature of batch shape (*batch) as (*batch, 1), to broadcast over the event dimension."""
    return temperature.unsqueeze(-1) if isinstance(temperature, Tensor) and temperature.dim() > 0 else temperature


def expand_temperature(temperature: float | Tensor, batch_shape: Size | tuple[int, ...]) -> float | Tensor:
    """A batched temperature expanded to ``batch_shape`` (floats and 0-dim tensors are returned as they are)."""
    if isinstance(temperature, Tensor) and temperature.dim() > 0:
        return temperature.expand(Size(batch_shape))
    return temperature


def _tau(temperature: float | Tensor, like: Tensor) -> float | Tensor:
    return temperature.to(like) if isinstance(temperature, Tensor) else temperature


def _log_tau(temperature: float | Tensor, like: Tensor) -> Tensor:
    return torch.as_tensor(temperature, dtype=like.dtype, device=like.device).log()


def log_softmax_pp(lam: Tensor, temperature: float | Tensor, delta: float = 1.0) -> Tensor:
    """``log softmax_pp(lam)``: log-simplex point of shape (..., K) from ``lam`` of shape (..., K-1)."""
    if not isinstance(temperature, Tensor):
        check_temperature(temperature)
    check_float("delta", delta, 0, low_open=True)
    a = lam / _tau(temperature, lam)
    log_delta = a.new_full((*a.shape[:-1], 1), math.log(delta))
    return torch.cat([a, log_delta], dim=-1).log_softmax(-1)


def softmax_pp(lam: Tensor, temperature: float | Tensor, delta: float = 1.0) -> Tensor:
    r"""softmax++ of Potapczynski et al.: ``K-1`` real coordinates to a point of the ``K``-simplex.

    Parameters
    ----------
    lam : Tensor of shape (..., K-1)
    temperature : float or Tensor broadcastable to (..., 1)
        :math:`\tau > 0`.
    delta : float
        :math:`\delta > 0`, the weight of the last category (1 by default).

    Returns
    -------
    Tensor of shape (..., K)
        :math:`\psi` with :math:`\psi_k \propto \exp(\lambda_k/\tau)` for :math:`k<K`,
        :math:`\psi_K \propto \delta`; non-negative, summing to one.

    Examples
    --------
    >>> softmax_pp(torch.zeros(2), 1.0)
    tensor([0.3333, 0.3333, 0.3333])
    >>> softmax_pp(torch.tensor([100.0, 0.0]), 0.01).sum()
    tensor(1.)
    """
    return log_softmax_pp(lam, temperature, delta).exp()


def softmax_pp_log_det(log_psi: Tensor, temperature: float | Tensor) -> Tensor:
    r""":math:`\log|\det \partial\psi_{1:K-1}/\partial\lambda| = \sum_{k=1}^K\log\psi_k - (K-1)\log\tau`.

    ``log_psi`` (..., K) -> Tensor of shape (...,).
    """
    log_tau = _log_tau(temperature, log_psi)
    return (log_psi[..., :-1] - log_tau).sum(-1) + log_psi[..., -1]


def inverse_softmax_pp(log_psi: Tensor, temperature: float | Tensor, delta: float = 1.0) -> Tensor:
    r""":math:`\lambda_k = \tau(\log\psi_k - \log\psi_K + \log\delta)`: ``log_psi`` (..., K) -> (..., K-1)."""
    return _tau(temperature, log_psi) * (log_psi[..., :-1] - log_psi[..., -1:] + math.log(delta))


def log_stick_breaking(lam: Tensor, temperature: float | Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""Logistic stick-breaking in log space: ``lam`` (..., M-1) -> ``log psi`` (..., M).

    Returns
    -------
    log_psi : Tensor of shape (..., M)
    log_kappa, log_rest : Tensor of shape (..., M-1)
        :math:`\log\kappa_k` and :math:`\log R_k` (stick left before step ``k``), for the log-det.

    Examples
    --------
    >>> log_psi, _, _ = log_stick_breaking(torch.zeros(2), 1.0)
    >>> log_psi.exp()
    tensor([0.5000, 0.2500, 0.2500])
    """
    a = lam / _tau(temperature, lam)
    log_kappa, log_one_minus = F.logsigmoid(a), F.logsigmoid(-a)
    cum = log_one_minus.cumsum(-1)
    log_rest = torch.cat([torch.zeros_like(cum[..., :1]), cum[..., :-1]], dim=-1)
    return torch.cat([log_kappa + log_rest, cum[..., -1:]], dim=-1), log_kappa, log_rest


def stick_breaking_log_det(lam: Tensor, temperature: float | Tensor) -> Tensor:
    """log|det| of the stick-breaking map ``lam`` (..., M-1) -> ``psi[..., :M-1]``; shape (...,)."""
    _, log_kappa, log_rest = log_stick_breaking(lam, temperature)
    log_one_minus = F.logsigmoid(-lam / _tau(temperature, lam))
    return (log_kappa + log_one_minus + log_rest - _log_tau(temperature, lam)).sum(-1)


def inverse_stick_breaking(psi: Tensor, temperature: float | Tensor) -> Tensor:
    r""":math:`\lambda_k = \tau\,\mathrm{logit}(\psi_k / (1 - \sum_{j<k}\psi_j))`: (..., M) -> (..., M-1)."""
    used = psi[..., :-1].cumsum(-1)
    rest = torch.cat([torch.ones_like(used[..., :1]), 1 - used[..., :-1]], dim=-1)
    tiny = torch.finfo(psi.dtype).tiny
    kappa = (psi[..., :-1] / rest.clamp_min(tiny))
    return _tau(temperature, psi) * (kappa.clamp_min(tiny).log() - (1 - kappa).clamp_min(tiny).log())


def vertex_proximity(z: Tensor, distance: float = 0.2) -> Tensor:
    r"""Fraction of simplex points within Euclidean ``distance`` of their nearest vertex.

    The nearest vertex of :math:`z` is the one-hot vector at :math:`\arg\max_k z_k`.

    Parameters
    ----------
    z : Tensor of shape (n, ..., K)
        Samples on the simplex, the sample dimension first.
    distance : float
        Radius ``d`` around the vertices.

    Returns
    -------
    Tensor of shape (...)
        Fraction of the ``n`` samples within ``d`` of a vertex.

    Examples
    --------
    >>> vertex_proximity(torch.tensor([[1.0, 0.0], [0.5, 0.5]]))
    tensor(0.5000)
    """
    check_float("distance", distance, 0, low_open=True)
    vertex = F.one_hot(z.argmax(-1), z.shape[-1]).to(z.dtype)
    return ((z - vertex).norm(dim=-1) <= distance).to(z.dtype).mean(0)
