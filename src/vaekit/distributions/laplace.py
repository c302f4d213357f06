"""Diagonal Laplace distribution: the heavy-tailed latent family of hierarchical VAE layers."""

from __future__ import annotations

from torch.distributions import Laplace

from .gaussian import DiagonalLocScale

__all__ = ["DiagonalLaplace"]


class DiagonalLaplace(DiagonalLocScale):
    r"""Product of independent Laplace distributions over the last ``event_dims`` dimensions.

    :math:`\log p(z) = -\sum_j \left(\log 2b_j + |z_j - \mu_j| / b_j\right)`. Reparameterized
    (``rsample``); the KL between two of them is torch's closed form, summed over the event
    (:func:`vaekit.distributions.kl_divergence` falls back to Monte Carlo against a
    Gaussian).

    Parameters
    ----------
    loc : Tensor of shape (*batch, *event)
    scale : Tensor of shape (*batch, *event), positive
    event_dims : int
        Trailing dimensions that form one event (3 for a (C, H, W) map).

    Examples
    --------
    >>> import torch
    >>> d = DiagonalLaplace(torch.zeros(2, 3), torch.ones(2, 3))
    >>> d.batch_shape, d.event_shape, round(float(d.log_prob(torch.zeros(3))[0]), 4)
    (torch.Size([2]), torch.Size([3]), -2.0794)
    """

    factor = Laplace
