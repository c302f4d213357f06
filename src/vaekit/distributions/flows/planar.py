r"""Planar flow (Rezende & Mohamed 2015), amortized.

Each step is

.. math:: f(z) = z + \hat u\,\tanh(w^\top z + b), \qquad
          \log\left|\det \frac{\partial f}{\partial z}\right|
          = \log\left|1 + \hat u^\top w\,\tanh'(w^\top z + b)\right|,

with :math:`u, w \in \mathbb R^d`, :math:`b \in \mathbb R` predicted from the context for
every datapoint. The map is invertible when :math:`w^\top \hat u \ge -1`; the constraint is
enforced by the reparametrisation of the paper's appendix A.1,

.. math:: \hat u = u + \left[m(w^\top u) - w^\top u\right]\frac{w}{\|w\|^2},
          \qquad m(a) = -1 + \mathrm{softplus}(a + \log(e - 1)),

so :math:`w^\top\hat u = m(w^\top u) > -1`. The shift :math:`\log(e-1)` inside the softplus
(the paper has none) makes :math:`m(0) = 0`, hence :math:`\hat u = u` whenever
:math:`w^\top u = 0` and a step with :math:`u = 0` is exactly the identity: zero-initialised
:math:`u` gives back the base Gaussian. :math:`m` keeps the paper's range :math:`(-1,\infty)`
and monotonicity. The log-determinant is evaluated as
:math:`\tanh^2(a) + (1 - \tanh^2(a))\,(1 + m(w^\top u))`, a sum of two non-negative
terms, so it stays accurate even where :math:`m` rounds to :math:`-1`.

The inverse has no closed form, so the returned distribution only scores its own samples
(``log_prob`` raises ``NotImplementedError``; use
:func:`~vaekit.distributions.rsample_and_log_prob`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._base import FlowPosterior

__all__ = ["PlanarFlow"]

_SHIFT = math.log(math.e - 1.0)  # softplus(_SHIFT) = 1, so m(0) = 0


class PlanarFlow(FlowPosterior):
    r"""Amortized planar-flow posterior :math:`q(z_T|x)` (Rezende & Mohamed 2015).

    A linear layer maps the context to :math:`(u_t, w_t, b_t)_{t=1}^T`; the base
    :math:`q_0(z_0|x)` is a :class:`~vaekit.distributions.DiagonalGaussian` of the same
    context. See the module docstring for the step, its log-determinant and the invertibility
    constraint on :math:`u`.

    Parameters
    ----------
    context_features : int
        Width ``C`` of the encoder features.
    latent_features : int
        Dimension ``d`` of ``z``.
    n_flows : int
        Number of planar steps ``T`` (>= 1).

    Examples
    --------
    >>> q = PlanarFlow(context_features=8, latent_features=2, n_flows=3)
    >>> z, log_q = q(torch.randn(5, 8)).rsample_and_log_prob((4,))
    >>> z.shape, log_q.shape
    (torch.Size([4, 5, 2]), torch.Size([4, 5]))
    """

    def __init__(self, context_features: int, latent_features: int, n_flows: int = 4) -> None:
        super().__init__(context_features, latent_features, n_flows)
        self.amortize = nn.Linear(self.context_features, self.n_flows * (2 * self.latent_features + 1))

    def _flow_parameters(self, context: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        d = self.latent_features
        p = self.amortize(context).unflatten(-1, (self.n_flows, 2 * d + 1))
        u, w, b = p[..., :d], p[..., d:2 * d], p[..., 2 * d]
        wu = (w * u).sum(-1, keepdim=True)
        w_sq = w.pow(2).sum(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
        softplus = F.softplus(wu + _SHIFT)  # m(w.u) + 1 = w.u_hat + 1 > 0
        u_hat = u + (softplus - 1.0 - wu) * w / w_sq
        return u_hat, w, b, softplus.squeeze(-1)  # (*batch, T, d), (*batch, T, d), (*batch, T), (*batch, T)

    def _flow(self, params: Any, z: Tensor) -> tuple[Tensor, Tensor]:
        u_hat, w, b, softplus = params
        logdet = z.new_zeros(z.shape[:-1])
        for t in range(self.n_flows):
            h = torch.tanh((z * w[..., t, :]).sum(-1) + b[..., t])
            z = z + u_hat[..., t, :] * h.unsqueeze(-1)
            # 1 + tanh'(a) w.u_hat = tanh(a)^2 + (1 - tanh(a)^2) (m(w.u) + 1): two non-negative terms, no cancellation
            h2 = h.pow(2)
            logdet = logdet + torch.log(h2 + (1 - h2) * softplus[..., t])
        return z, logdet
