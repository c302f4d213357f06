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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._base import FlowPosterior, StepTransform

__all__ = ["RadialFlow", "RadialFlowStep", "RadialTransform"]


class RadialTransform(StepTransform):
    r""":math:`z \mapsto z + \beta (z - z_r) / (\alpha + \|z - z_r\|)` for one batch of parameters, with its inverse.

    Parameters
    ----------
    ref : Tensor of shape (*batch, d)
    alpha : Tensor of shape (*batch,), > 0
    beta : Tensor of shape (*batch,), >= -alpha
    """

    def __init__(self, ref: Tensor, alpha: Tensor, beta: Tensor) -> None:
        super().__init__()
        self.ref, self.alpha, self.beta = ref, alpha, beta

    def _ladj(self, r: Tensor) -> Tensor:
        a, b = self.alpha, self.beta
        return (self.ref.shape[-1] - 1) * torch.log1p(b / (a + r)) + torch.log1p(a * b / (a + r).pow(2))

    def call_and_ladj(self, z: Tensor) -> tuple[Tensor, Tensor]:
        diff = z - self.ref
        r = diff.norm(dim=-1)
        return z + (self.beta / (self.alpha + r)).unsqueeze(-1) * diff, self._ladj(r)

    def _inverse(self, y: Tensor) -> Tensor:
        a, b, diff = self.alpha, self.beta, y - self.ref
        s = diff.norm(dim=-1)
        c, sq = a + b - s, torch.sqrt((a + b - s).pow(2) + 4 * a * s)
        # the non-negative root of r^2 + c r - a s = 0, in the form without cancellation
        r = torch.where(c > 0, 2 * a * s / (c + sq).clamp_min(torch.finfo(y.dtype).tiny), 0.5 * (sq - c))
        return self.ref + diff / (1 + b / (a + r)).unsqueeze(-1)


class RadialFlowStep(nn.Module):
    r"""One amortized radial step: a linear layer maps the context to :math:`(z_r, \tilde\alpha, \tilde\beta)`."""

    def __init__(self, context_features: int, latent_features: int) -> None:
        super().__init__()
        self.latent_features = latent_features
        self.amortize = nn.Linear(context_features, latent_features + 2)

    def forward(self, context: Tensor) -> RadialTransform:
        d = self.latent_features
        p = self.amortize(context)
        alpha = F.softplus(p[..., d])
        return RadialTransform(p[..., :d], alpha, -alpha + F.softplus(p[..., d + 1]))


class RadialFlow(FlowPosterior):
    r"""Amortized radial-flow posterior :math:`q(z_T|x)` (Rezende & Mohamed 2015).

    ``n_flows`` :class:`RadialFlowStep` modules, each mapping the context to its
    :math:`(z_{r,t}, \tilde\alpha_t, \tilde\beta_t)`, on a base :math:`q_0(z_0|x)`, a
    :class:`~vaekit.distributions.DiagonalGaussian` of the same context. See the module
    docstring for the step, its log-determinant and its inverse.

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
    _legacy_stacked = ("amortize",)

    def __init__(self, context_features: int, latent_features: int, n_flows: int = 4) -> None:
        super().__init__(context_features, latent_features, n_flows)
        self.transforms = nn.ModuleList(RadialFlowStep(self.context_features, self.latent_features)
                                        for _ in range(self.n_flows))
