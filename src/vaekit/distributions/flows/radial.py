r"""Radial flow (Rezende & Mohamed 2015), amortized.

Each step contracts or expands around a reference point :math:`z_r`:

.. math:: f(z) = z + \beta\,h(\alpha, r)\,(z - z_r),\quad r = \|z - z_r\|,\quad h = \frac{1}{\alpha + r},

.. math:: \log\left|\det\frac{\partial f}{\partial z}\right|
          = (d - 1)\log(1 + \beta h) + \log\left(1 + \beta h + \beta h'(r)\,r\right)
          = (d - 1)\log(1 + \beta h) + \log\left(1 + \frac{\alpha\beta}{(\alpha + r)^2}\right).

Invertibility needs :math:`\alpha > 0`, :math:`\beta \ge -\alpha`; both are enforced with
:math:`\alpha = \mathrm{softplus}(\tilde\alpha)`, :math:`\beta = -\alpha + \mathrm{softplus}(\tilde\beta)`.
:math:`(z_r, \tilde\alpha, \tilde\beta)` come from the context for every datapoint.

The inverse has a closed form (which the paper does not use): with :math:`y = f(z)` and
:math:`s = \|y - z_r\|`, the radius solves :math:`r^2 + (\alpha + \beta - s)\,r - \alpha s = 0`,
whose one non-negative root gives :math:`z - z_r = (y - z_r) / (1 + \beta/(\alpha + r))`.
So ``log_prob`` works for any point.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._base import FlowPosterior

__all__ = ["RadialFlow"]


class RadialFlow(FlowPosterior):
    r"""Amortized radial-flow posterior :math:`q(z_T|x)` (Rezende & Mohamed 2015).

    A linear layer maps the context to :math:`(z_{r,t}, \tilde\alpha_t, \tilde\beta_t)_{t=1}^T`;
    the base :math:`q_0(z_0|x)` is a :class:`~vaekit.distributions.DiagonalGaussian` of the
    same context. See the module docstring for the step, its log-determinant and its inverse.

    Parameters
    ----------
    context_features : int
        Width ``C`` of the encoder features.
    latent_features : int
        Dimension ``d`` of ``z``.
    n_flows : int
        Number of radial steps ``T`` (>= 1).

    Examples
    --------
    >>> q = RadialFlow(context_features=8, latent_features=2, n_flows=3)(torch.randn(5, 8))
    >>> z, log_q = q.rsample_and_log_prob((4,))
    >>> z.shape, torch.allclose(q.log_prob(z), log_q, atol=1e-4)
    (torch.Size([4, 5, 2]), True)
    """

    invertible = True

    def __init__(self, context_features: int, latent_features: int, n_flows: int = 4) -> None:
        super().__init__(context_features, latent_features, n_flows)
        self.amortize = nn.Linear(self.context_features, self.n_flows * (self.latent_features + 2))

    def _flow_parameters(self, context: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        d = self.latent_features
        p = self.amortize(context).unflatten(-1, (self.n_flows, d + 2))
        alpha = F.softplus(p[..., d])
        beta = -alpha + F.softplus(p[..., d + 1])
        return p[..., :d], alpha, beta  # (*batch, T, d), (*batch, T), (*batch, T)

    def _step_logdet(self, alpha: Tensor, beta: Tensor, r: Tensor) -> Tensor:
        bh = beta / (alpha + r)
        return (self.latent_features - 1) * torch.log1p(bh) + torch.log1p(alpha * beta / (alpha + r).pow(2))

    def _flow(self, params: Any, z: Tensor) -> tuple[Tensor, Tensor]:
        ref, alpha, beta = params
        logdet = z.new_zeros(z.shape[:-1])
        for t in range(self.n_flows):
            a, b, diff = alpha[..., t], beta[..., t], z - ref[..., t, :]
            r = diff.norm(dim=-1)
            z = z + (b / (a + r)).unsqueeze(-1) * diff
            logdet = logdet + self._step_logdet(a, b, r)
        return z, logdet

    def _inverse(self, params: Any, y: Tensor) -> tuple[Tensor, Tensor]:
        ref, alpha, beta = params
        logdet = y.new_zeros(y.shape[:-1])
        for t in reversed(range(self.n_flows)):
            a, b, diff = alpha[..., t], beta[..., t], y - ref[..., t, :]
            s = diff.norm(dim=-1)
            c, sq = a + b - s, torch.sqrt((a + b - s).pow(2) + 4 * a * s)
            # the non-negative root of r^2 + c r - a s = 0, in the form without cancellation
            r = torch.where(c > 0, 2 * a * s / (c + sq).clamp_min(torch.finfo(y.dtype).tiny), 0.5 * (sq - c))
            y = ref[..., t, :] + diff / (1 + b / (a + r)).unsqueeze(-1)
            logdet = logdet + self._step_logdet(a, b, r)
        return y, logdet
