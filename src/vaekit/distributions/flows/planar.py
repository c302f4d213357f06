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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._base import FlowPosterior, StepTransform

__all__ = ["PlanarFlow", "PlanarFlowStep", "PlanarTransform"]

_SHIFT = math.log(math.e - 1.0)  # softplus(_SHIFT) = 1, so m(0) = 0


class PlanarTransform(StepTransform):
    r""":math:`z \mapsto z + \hat u\tanh(w^\top z + b)` for one batch of parameters (see the module docstring).

    Parameters
    ----------
    u_hat, w : Tensor of shape (*batch, d)
    b : Tensor of shape (*batch,)
    slope : Tensor of shape (*batch,)
        :math:`1 + w^\top\hat u = 1 + m(w^\top u) > 0`.
    """

    def __init__(self, u_hat: Tensor, w: Tensor, b: Tensor, slope: Tensor) -> None:
        super().__init__()
        self.u_hat, self.w, self.b, self.slope = u_hat, w, b, slope

    def call_and_ladj(self, z: Tensor) -> tuple[Tensor, Tensor]:
        h = torch.tanh((z * self.w).sum(-1) + self.b)
        # 1 + tanh'(a) w.u_hat = tanh(a)^2 + (1 - tanh(a)^2) (m(w.u) + 1): two non-negative terms, no cancellation
        h2 = h.pow(2)
        return z + self.u_hat * h.unsqueeze(-1), torch.log(h2 + (1 - h2) * self.slope)


class PlanarFlowStep(nn.Module):
    """One amortized planar step: a linear layer maps the context to :math:`(u, w, b)`; returns a :class:`PlanarTransform`."""

    def __init__(self, context_features: int, latent_features: int) -> None:
        super().__init__()
        self.latent_features = latent_features
        self.amortize = nn.Linear(context_features, 2 * latent_features + 1)

    def forward(self, context: Tensor) -> PlanarTransform:
        d = self.latent_features
        p = self.amortize(context)
        u, w, b = p[..., :d], p[..., d:2 * d], p[..., 2 * d]
        wu = (w * u).sum(-1, keepdim=True)
        w_sq = w.pow(2).sum(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
        slope = F.softplus(wu + _SHIFT)  # m(w.u) + 1 = w.u_hat + 1 > 0
        return PlanarTransform(u + (slope - 1.0 - wu) * w / w_sq, w, b, slope.squeeze(-1))


class PlanarFlow(FlowPosterior):
    r"""Amortized planar-flow posterior :math:`q(z_T|x)` (Rezende & Mohamed 2015).

    ``n_flows`` :class:`PlanarFlowStep` modules, each mapping the context to its
    :math:`(u_t, w_t, b_t)`, on a base :math:`q_0(z_0|x)`, a
    :class:`~vaekit.distributions.DiagonalGaussian` of the same context. See the module
    docstring for the step, its log-determinant and the invertibility constraint on :math:`u`.

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

    _legacy_stacked = ("amortize",)

    def __init__(self, context_features: int, latent_features: int, n_flows: int = 4) -> None:
        super().__init__(context_features, latent_features, n_flows)
        self.transforms = nn.ModuleList(PlanarFlowStep(self.context_features, self.latent_features)
                                        for _ in range(self.n_flows))
