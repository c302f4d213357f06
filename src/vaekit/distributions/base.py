"""Conditional distributions: modules that map context to a ``torch.distributions`` object.

This is zuko's ``LazyDistribution`` idea: a posterior family is an :class:`torch.nn.Module`
whose ``forward(context)`` returns a :class:`torch.distributions.Distribution` that can
``rsample()`` and ``log_prob()``. Families that can draw and score in one pass (flows,
the diagonal Gaussian) also offer ``rsample_and_log_prob``; :func:`rsample_and_log_prob`
uses it when present.
"""

from __future__ import annotations

import torch
from torch import Size, Tensor, nn
from torch.distributions import Distribution

from .._recording import Configurable

__all__ = ["ConditionalDistribution", "rsample_and_log_prob"]


class ConditionalDistribution(Configurable, nn.Module):
    """Base class of posterior and prior families.

    ``forward(context)`` returns a distribution whose batch shape is the leading shape of
    ``context`` (priors without context return a distribution with empty batch shape that
    broadcasts against any sample shape). Subclasses set ``latent_features``.
    """

    latent_features: int

    def forward(self, context: Tensor | None = None) -> Distribution:  # pragma: no cover - abstract
        raise NotImplementedError


def rsample_and_log_prob(dist: Distribution, sample_shape: Size | tuple[int, ...] = ()) -> tuple[Tensor, Tensor]:
    """Reparameterized sample and its log-density, in one pass when the family allows.

    Parameters
    ----------
    dist : Distribution
        Any reparameterizable distribution.
    sample_shape : tuple of int
        Leading sample shape, e.g. ``(k,)``.

    Returns
    -------
    z : Tensor of shape (*sample_shape, *dist.batch_shape, *dist.event_shape)
    log_prob : Tensor of shape (*sample_shape, *dist.batch_shape)

    Examples
    --------
    >>> from torch.distributions import Normal
    >>> z, lp = rsample_and_log_prob(Normal(torch.zeros(3), 1.0), (5,))
    >>> z.shape, lp.shape
    (torch.Size([5, 3]), torch.Size([5, 3]))
    """
    fn = getattr(dist, "rsample_and_log_prob", None)
    if fn is not None:
        return fn(Size(sample_shape))
    z = dist.rsample(Size(sample_shape))
    return z, dist.log_prob(z)
