"""Learned priors for low-dimensional embeddings."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from .._checks import check_float, check_int
from ..distributions import ConditionalDistribution

__all__ = ["MixturePrior"]


class MixturePrior(ConditionalDistribution):
    r"""Learned mixture of diagonal Gaussians :math:`p(z) = \sum_k \pi_k \mathcal N(z; \mu_k, \mathrm{diag}\,\sigma_k^2)`.

    A standard normal prior pulls every example towards one blob; in two dimensions that
    squeezes classes together. A learned mixture lets the ELBO place groups of examples in
    separate modes, which is what a visual embedding needs. The KL against it has no
    closed form, so models score it by Monte Carlo (``log q(z) - log p(z)`` at the
    posterior sample).

    Parameters
    ----------
    latent_features : int
        Dimension ``d`` of ``z``.
    n_modes : int
        Number of mixture components ``K``.
    spread : float
        The means start as draws from :math:`\mathcal N(0, \mathrm{spread}^2 I)` (seeded by
        torch's global generator, as every parameter initialisation).
    scale : float
        Initial standard deviation of every component.
    min_scale : float
        Floor added to the softplus scales.

    Examples
    --------
    >>> p = MixturePrior(2, n_modes=3)
    >>> p().log_prob(torch.zeros(4, 2)).shape
    torch.Size([4])
    >>> p().sample((5,)).shape
    torch.Size([5, 2])
    """

    def __init__(self, latent_features: int, n_modes: int = 10, spread: float = 1.0, scale: float = 0.5,
                 min_scale: float = 1e-3) -> None:
        super().__init__()
        self.latent_features = check_int("latent_features", latent_features)
        self.n_modes = check_int("n_modes", n_modes)
        check_float("spread", spread, 0)
        check_float("min_scale", min_scale, 0)
        check_float("scale", scale, min_scale, low_open=True)
        self.min_scale = float(min_scale)
        self.loc = nn.Parameter(float(spread) * torch.randn(self.n_modes, self.latent_features))
        raw = float(scale) - self.min_scale
        self.raw_scale = nn.Parameter(torch.full((self.n_modes, self.latent_features), raw + math.log(-math.expm1(-raw))))
        self.logits = nn.Parameter(torch.zeros(self.n_modes))

    def forward(self, context: Tensor | None = None) -> MixtureSameFamily:
        scale = F.softplus(self.raw_scale) + self.min_scale
        comp = Independent(Normal(self.loc, scale, validate_args=False), 1, validate_args=False)
        return MixtureSameFamily(Categorical(logits=self.logits, validate_args=False), comp, validate_args=False)
