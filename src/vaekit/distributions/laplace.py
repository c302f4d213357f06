"""Diagonal Laplace distribution: the heavy-tailed latent family of hierarchical VAE layers."""

from __future__ import annotations

from torch import Size, Tensor
from torch.distributions import Independent, Laplace

from .._checks import check_int

__all__ = ["DiagonalLaplace"]


class DiagonalLaplace(Independent):
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

    def __init__(self, loc: Tensor, scale: Tensor, validate_args: bool | None = False, event_dims: int = 1) -> None:
        event_dims = check_int("event_dims", event_dims)
        if event_dims > loc.dim():
            raise ValueError(f"event_dims={event_dims} but loc has only {loc.dim()} dimensions (shape {tuple(loc.shape)})")
        super().__init__(Laplace(loc, scale, validate_args=validate_args), event_dims, validate_args=validate_args)

    @property
    def loc(self) -> Tensor:
        return self.base_dist.loc

    @property
    def scale(self) -> Tensor:
        return self.base_dist.scale

    def expand(self, batch_shape, _instance=None):  # keep the subclass under expand()
        shape = Size(batch_shape) + self.event_shape
        return DiagonalLaplace(self.loc.expand(shape), self.scale.expand(shape), event_dims=self.reinterpreted_batch_ndims)
