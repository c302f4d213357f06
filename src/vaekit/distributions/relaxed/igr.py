r"""Invertible Gaussian Reparameterization (Potapczynski, Loaiza-Ganem & Cunningham 2020): IGR-I and IGR-Planar.

A sample is :math:`\psi = g(\lambda)` with :math:`\lambda = f(\mu + \sigma\odot\epsilon)`,
:math:`\epsilon\sim\mathcal N(0, I_{K-1})`, :math:`f` the identity (IGR-I) or a composition of
planar steps (IGR-Planar), and :math:`g` softmax++ with temperature :math:`\tau` and
:math:`\delta` (see :mod:`vaekit.distributions.relaxed._simplex`). Since :math:`g` is a bijection
from :math:`\mathbb R^{K-1}` onto the open simplex (coordinates :math:`\psi_{1:K-1}`), the
density of :math:`\psi` is

.. math:: \log q(\psi) = \log q_\lambda(\lambda) - \sum_{k=1}^{K}\log\psi_k + (K-1)\log\tau,
          \qquad \log q_\lambda(\lambda) = \log\mathcal N(\lambda_0;\mu,\sigma^2)
          - \sum_t \log\left|\det\frac{\partial f_t}{\partial\lambda_{t-1}}\right|.

Everything is computed from :math:`\lambda` in log space, so :meth:`rsample_and_log_prob` stays
finite at small :math:`\tau` where :math:`\psi` underflows; :meth:`IGR.log_prob` of an arbitrary
point has to invert :math:`g` from :math:`\psi` and is exact only while no coordinate of
:math:`\psi` underflows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Size, Tensor, nn
from torch.distributions import Distribution, constraints

from ..._checks import check_float, check_int
from ..gaussian import DiagonalNormal
from ._simplex import (check_temperature, event_temperature, expand_temperature, inverse_softmax_pp,
                       log_softmax_pp, softmax_pp_log_det)

__all__ = ["GaussianRelaxation", "IGR", "PlanarStep"]

_LOG_2PI = math.log(2 * math.pi)
_SHIFT = math.log(math.e - 1.0)  # softplus(_SHIFT) = 1, so m(0) = 0 (see vaekit.distributions.flows.planar)


def check_loc_scale(loc: Any, scale: Any) -> tuple[Tensor, Tensor]:
    """``loc`` and ``scale`` broadcast to one shape (..., d), d >= 1, or a ``ValueError`` naming both shapes."""
    for name, t in (("loc", loc), ("scale", scale)):
        if not isinstance(t, Tensor) or not torch.is_floating_point(t):
            raise TypeError(f"{name} must be a floating-point tensor of shape (..., K-1), got {type(t).__name__}")
    if loc.dim() < 1 or loc.shape[-1] < 1:
        raise ValueError(f"loc must have shape (..., K-1) with K >= 2 categories, got shape {tuple(loc.shape)}")
    try:
        shape = torch.broadcast_shapes(loc.shape, scale.shape)
    except RuntimeError:
        shape = None
    if shape is None or shape[-1] != loc.shape[-1]:
        raise ValueError(f"loc and scale must have matching shapes (..., K-1), got loc {tuple(loc.shape)} and "
                         f"scale {tuple(scale.shape)}")
    return loc.expand(shape), scale.expand(shape)


class PlanarStep(nn.Module):
    r"""One global planar step :math:`f(z) = z + \hat u\tanh(w^\top z + b)` acting on the last dimension.

    :math:`\hat u` is constrained so that :math:`w^\top\hat u > -1` (invertible), as in
    :class:`vaekit.distributions.PlanarFlow`; unlike that family the parameters are learned
    directly, shared by every datapoint (the IGR-Planar of the paper).

    Parameters
    ----------
    features : int
        Dimension ``d`` of ``z``.

    Examples
    --------
    >>> step = PlanarStep(3)
    >>> z, logdet = step(torch.randn(5, 3))
    >>> z.shape, logdet.shape
    (torch.Size([5, 3]), torch.Size([5]))
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.features = check_int("features", features, 1)
        self.u = nn.Parameter(0.01 * torch.randn(self.features))
        self.w = nn.Parameter(torch.randn(self.features) / math.sqrt(self.features))
        self.b = nn.Parameter(torch.zeros(()))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z`` (..., d) -> (``f(z)`` (..., d), :math:`\\log|\\det \\partial f/\\partial z|` (...))."""
        u, w = self.u, self.w
        wu = (w * u).sum()
        softplus = F.softplus(wu + _SHIFT)  # w.u_hat + 1 > 0
        u_hat = u + (softplus - 1.0 - wu) * w / w.pow(2).sum().clamp_min(torch.finfo(w.dtype).tiny)
        h = torch.tanh(z @ w + self.b)
        h2 = h.pow(2)
        # 1 + tanh'(a) w.u_hat = tanh(a)^2 + (1 - tanh(a)^2)(w.u_hat + 1): two non-negative terms
        return z + h.unsqueeze(-1) * u_hat, torch.log(h2 + (1 - h2) * softplus)


class GaussianRelaxation(Distribution):
    r"""Base of the IGR family: a diagonal Gaussian in :math:`\mathbb R^{d}` pushed onto the simplex.

    Subclasses implement ``_log_simplex(lam)`` (the log of the invertible map onto the
    simplex), ``_log_det(lam, log_psi)`` (its log-Jacobian-determinant) and may override
    ``_output`` (what a sample looks like, e.g. truncated) and ``rsample_gaussian``.

    Attributes
    ----------
    base : DiagonalNormal
        :math:`\mathcal N(\mu, \mathrm{diag}\,\sigma^2)`, an ``Independent`` ``Normal`` over the last dimension.
    temperature : float or Tensor of shape (*batch)
    """

    arg_constraints: dict[str, Any] = {}
    support = constraints.simplex
    has_rsample = True

    def __init__(self, loc: Tensor, scale: Tensor, temperature: float | Tensor, n_categories: int) -> None:
        loc, scale = check_loc_scale(loc, scale)
        self.temperature = check_temperature(temperature)
        self.base = DiagonalNormal(loc, scale)
        super().__init__(loc.shape[:-1], Size([n_categories]), validate_args=False)

    @property
    def loc(self) -> Tensor:
        """:math:`\\mu` of shape (*batch, d)."""
        return self.base.loc

    @property
    def scale(self) -> Tensor:
        """:math:`\\sigma` of shape (*batch, d)."""
        return self.base.scale

    @property
    def has_flows(self) -> bool:
        """Whether :math:`\\lambda` is a nonlinear transform of the Gaussian (no closed-form inverse)."""
        return False

    def _tau(self) -> float | Tensor:
        return event_temperature(self.temperature)

    def rsample_gaussian(self, sample_shape: Size | tuple[int, ...] = Size(),
                         generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        r"""Pre-simplex point :math:`\lambda` and its log-density :math:`\log q_\lambda(\lambda)`.

        Returns
        -------
        lam : Tensor of shape (*sample_shape, *batch, d)
        log_q_lam : Tensor of shape (*sample_shape, *batch)
        """
        loc, scale = self.loc, self.scale
        eps = torch.randn(Size(sample_shape) + loc.shape, dtype=loc.dtype, device=loc.device, generator=generator)
        log_q = -0.5 * (eps.pow(2) + _LOG_2PI).sum(-1) - scale.log().sum(-1)
        return loc + scale * eps, log_q

    def _log_simplex(self, lam: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _log_det(self, lam: Tensor, log_psi: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _output(self, log_psi: Tensor, record: bool = True) -> Tensor:
        return log_psi.exp()

    def to_simplex(self, lam: Tensor) -> Tensor:
        """The map onto the simplex: ``lam`` (..., d) -> ``psi`` (..., K)."""
        return self._output(self._log_simplex(lam))

    def rsample(self, sample_shape: Size | tuple[int, ...] = Size()) -> Tensor:
        """Simplex points of shape (*sample_shape, *batch, K)."""
        return self.to_simplex(self.rsample_gaussian(sample_shape)[0])

    def rsample_and_log_prob(self, sample_shape: Size | tuple[int, ...] = Size()) -> tuple[Tensor, Tensor]:
        """Sample (*sample_shape, *batch, K) and its log-density (*sample_shape, *batch), computed from lambda."""
        lam, log_q_lam = self.rsample_gaussian(sample_shape)
        log_psi = self._log_simplex(lam)
        return self._output(log_psi), log_q_lam - self._log_det(lam, log_psi)

    @torch.no_grad()
    def implied_probs(self, num_samples: int = 1000, generator: torch.Generator | None = None) -> Tensor:
        """Monte Carlo distribution of the argmax of a sample, shape (*batch, K).

        For IGR-I/Planar with ``delta=1`` it does not depend on the temperature (the argmax of
        softmax++ is the argmax of :math:`(\\lambda, 0)`).
        """
        num_samples = check_int("num_samples", num_samples, 1)
        lam, _ = self.rsample_gaussian((num_samples,), generator=generator)
        z = self._output(self._log_simplex(lam), record=False)
        return F.one_hot(z.argmax(-1), self.event_shape[0]).to(lam.dtype).mean(0)


class IGR(GaussianRelaxation):
    r"""IGR-I / IGR-Planar: softmax++ of a (flowed) diagonal Gaussian.

    Parameters
    ----------
    loc, scale : Tensor of shape (*batch, K-1)
        :math:`\mu` and :math:`\sigma > 0` of the Gaussian (``K >= 2`` categories).
    temperature : float or Tensor of shape (*batch)
        :math:`\tau > 0`.
    delta : float
        :math:`\delta > 0` of softmax++.
    flows : nn.ModuleList, optional
        Steps ``z -> (z', log|det dz'/dz|)`` acting on the last dimension (e.g. :class:`PlanarStep`),
        applied to the Gaussian before softmax++ (IGR-Planar). ``None``: IGR-I.

    Examples
    --------
    >>> q = IGR(torch.zeros(5, 2), torch.ones(5, 2), temperature=0.5)
    >>> z, log_q = q.rsample_and_log_prob((3,))
    >>> z.shape, log_q.shape, torch.allclose(log_q, q.log_prob(z), atol=1e-4)
    (torch.Size([3, 5, 3]), torch.Size([3, 5]), True)
    """

    def __init__(self, loc: Tensor, scale: Tensor, temperature: float | Tensor, delta: float = 1.0,
                 flows: nn.ModuleList | Sequence[nn.Module] | None = None) -> None:
        self.delta = check_float("delta", delta, 0, low_open=True)
        if flows is not None and (not isinstance(flows, (nn.ModuleList, Sequence))
                                  or not all(isinstance(f, nn.Module) for f in flows)):
            raise TypeError(f"flows must be an nn.ModuleList of steps z -> (z, logdet) or None, got {flows!r}")
        self.flows = flows if flows is not None and len(flows) > 0 else None
        super().__init__(loc, scale, temperature, _last_dim(loc) + 1)

    @property
    def has_flows(self) -> bool:
        return self.flows is not None

    def rsample_gaussian(self, sample_shape: Size | tuple[int, ...] = Size(),
                         generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        lam, log_q = super().rsample_gaussian(sample_shape, generator)
        for step in self.flows or ():
            lam, logdet = step(lam)
            log_q = log_q - logdet
        return lam, log_q

    def _log_simplex(self, lam: Tensor) -> Tensor:
        return log_softmax_pp(lam, self._tau(), self.delta)

    def _log_det(self, lam: Tensor, log_psi: Tensor) -> Tensor:
        return softmax_pp_log_det(log_psi, self._tau())

    def log_prob(self, value: Tensor) -> Tensor:
        """Log-density of simplex points ``value`` (..., K) (w.r.t. Lebesgue measure on the first K-1 coordinates)."""
        if self.has_flows:
            raise NotImplementedError(
                "IGR-Planar only scores its own samples: the planar steps have no closed-form inverse, so log q(z) "
                "of an arbitrary z is unavailable; use q.rsample_and_log_prob(sample_shape)")
        log_value = value.clamp_min(torch.finfo(value.dtype).tiny).log()
        lam = inverse_softmax_pp(log_value, self._tau(), self.delta)
        return self.base.log_prob(lam) - softmax_pp_log_det(log_value, self._tau())

    def expand(self, batch_shape: Size | tuple[int, ...], _instance: Any = None) -> IGR:
        shape = Size(batch_shape) + self.loc.shape[-1:]
        return IGR(self.loc.expand(shape), self.scale.expand(shape), expand_temperature(self.temperature, batch_shape),
                   self.delta, self.flows)


def _last_dim(loc: Any) -> int:
    return int(loc.shape[-1]) if isinstance(loc, Tensor) and loc.dim() >= 1 else 1

