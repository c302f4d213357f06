"""Discretized mixture of logistics for 8-bit images (PixelCNN++, used by VDVAE and NVAE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Size, Tensor
from torch.distributions import Distribution, Independent, constraints

from .._checks import check_int
from .likelihoods import DiscretizedLogistic, DiscretizedLogisticDistribution

__all__ = ["DiscretizedLogisticMixture", "DiscretizedLogisticMixtureDistribution"]


class DiscretizedLogisticMixtureDistribution(Distribution):
    r"""Elementwise mixture of ``M`` discretized logistics over ``n_bins`` levels in [0, 1].

    :math:`p(x) = \sum_m \pi_m\, \mathrm{DLogistic}(x;\mu_m, s_m)`, each component
    binned as in :class:`~vaekit.distributions.DiscretizedLogisticDistribution`, so the
    masses over the ``n_bins`` levels sum to one.

    Parameters
    ----------
    logits, loc, log_scale : Tensor of shape (*batch, M)
        Mixture logits and per-component location (in [-1, 1] data units) and log-scale.
    n_bins : int
        Number of intensity levels.
    """

    arg_constraints = {"logits": constraints.real, "loc": constraints.real, "log_scale": constraints.real}
    support = constraints.unit_interval

    def __init__(self, logits: Tensor, loc: Tensor, log_scale: Tensor, n_bins: int = 256,
                 validate_args: bool | None = False) -> None:
        self.logits, self.loc, self.log_scale = torch.broadcast_tensors(logits, loc, log_scale)
        self.n_bins = int(n_bins)
        self._components = DiscretizedLogisticDistribution(self.loc, self.log_scale, self.n_bins)
        super().__init__(self.logits.shape[:-1], validate_args=validate_args)

    @property
    def mean(self) -> Tensor:
        """Mixture-weighted quantised component locations (the exact mean has no closed form)."""
        return (F.softmax(self.logits, -1) * self._components.mean).sum(-1)

    def log_prob(self, value: Tensor) -> Tensor:
        comp = self._components.log_prob(value.unsqueeze(-1))
        return torch.logsumexp(F.log_softmax(self.logits, -1) + comp, -1)

    def sample(self, sample_shape: Size = Size()) -> Tensor:
        with torch.no_grad():
            shape = Size(sample_shape) + self.logits.shape
            g = -torch.log(-torch.log(torch.rand(shape, dtype=self.logits.dtype, device=self.logits.device).clamp(1e-10, 1 - 1e-10)))
            pick = F.one_hot((self.logits + g).argmax(-1), self.logits.shape[-1]).to(self.loc.dtype)
            loc, log_scale = (pick * self.loc).sum(-1), (pick * self.log_scale).sum(-1)
            return DiscretizedLogisticDistribution(loc, log_scale, self.n_bins).sample()


class DiscretizedLogisticMixture(DiscretizedLogistic):
    """8-bit discretized mixture-of-logistics likelihood for images in [0, 1].

    The decoder predicts, per pixel and channel, ``n_mixtures`` logits, locations and
    log-scales (``params_per_dim = 3 * n_mixtures``; channel-stacked like every vaekit
    likelihood). The channels of a pixel are independent given z (no PixelCNN++
    channel-coupling coefficients). Accepts the same data as
    :class:`~vaekit.distributions.DiscretizedLogistic` (values on the ``n_bins`` grid).

    Parameters
    ----------
    n_mixtures : int
        Components per subpixel (10 in VDVAE).
    n_bins : int
        Number of intensity levels.
    min_log_scale : float
        Lower clamp of the predicted log-scales.

    Examples
    --------
    >>> lik = DiscretizedLogisticMixture(n_mixtures=3)
    >>> lik.params_per_dim
    9
    >>> px = lik(torch.zeros(2, 9 * 4), event_ndim=1)
    >>> px.batch_shape, px.event_shape
    (torch.Size([2]), torch.Size([4]))
    """

    def __init__(self, n_mixtures: int = 10, n_bins: int = 256, min_log_scale: float = -7.0) -> None:
        super().__init__(n_bins=n_bins, min_log_scale=min_log_scale)
        self.n_mixtures = check_int("n_mixtures", n_mixtures, 1)
        self.params_per_dim = 3 * self.n_mixtures

    def forward(self, params: Tensor, event_ndim: int) -> Distribution:
        parts = self._split(params, event_ndim)
        m = self.n_mixtures
        logits, loc, log_scale = (torch.stack(parts[i * m:(i + 1) * m], -1) for i in range(3))
        dist = DiscretizedLogisticMixtureDistribution(logits, loc, log_scale.clamp_min(self.min_log_scale), self.n_bins)
        return Independent(dist, event_ndim)
