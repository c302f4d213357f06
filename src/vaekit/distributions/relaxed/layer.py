r"""Relaxed categorical variables laid out as one latent layer's tensor (a hierarchical VAE's categorical layer).

A layer of ``V`` relaxed categorical variables of ``K`` categories each holds them as a tensor
of shape (N, V * K) (a latent vector) or (N, V * K, H, W) (a spatial latent: ``V`` variables
at every position, their categories along the channel axis): the ``K`` entries of variable
``v`` are features (channels) ``v * K ... v * K + K - 1``. :class:`RelaxedLayer` wraps a
:class:`~vaekit.distributions.relaxed.GumbelSoftmax` or an
:class:`~vaekit.distributions.relaxed.IGR` of batch shape (N, V, *spatial) and event shape
(K,) as a distribution of batch shape (N,) and event shape (V * K, *spatial), scoring a
latent as the sum over its variables.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Size, Tensor
from torch.distributions import Distribution, register_kl

from ..base import rsample_and_log_prob
from .gumbel import GumbelSoftmax
from .igr import IGR

__all__ = ["RelaxedLayer"]


class RelaxedLayer(Distribution):
    r"""``V`` relaxed categorical variables (Gumbel-Softmax or IGR-I) as one latent tensor.

    Parameters
    ----------
    base : GumbelSoftmax or IGR
        Batch shape (*batch, V, *spatial), event shape (K,).
    spatial_dims : int
        How many trailing batch dimensions of ``base`` are positions (2 for an (H, W) map, 0 for
        a latent vector).

    Attributes
    ----------
    base : GumbelSoftmax or IGR
    n_variables, n_categories : int
        ``V`` and ``K``.

    Notes
    -----
    ``log_prob`` scores a latent on the simplex (the densities of the relaxed variables); where
    a coordinate of the latent underflows to an exact zero (small temperatures, large logits)
    it is finite but no longer exact. A draw the layer makes itself is scored without that
    loss: :meth:`rsample_with_coords` keeps its stable coordinates (``log z`` for
    Gumbel-Softmax, :math:`\lambda` before softmax++ for IGR) and :meth:`log_prob_coords`
    scores them, as the discrete models do; between two layers that
    :meth:`shares_coordinates` the difference is :math:`\log q(z) - \log p(z)`. KL between
    two layers that share their IGR map (same temperature and :math:`\delta`, no flows) is
    registered in closed form (the Gaussian KL before softmax++, as the discrete models'
    ``kl="gaussian"``); any other pair has no closed form and the model estimates it by one
    sample at the draw's stable coordinates.
    :meth:`point_estimate` is the sample at zero noise (the relaxation has no closed-form
    mean) and :meth:`tempered_sample` scales the noise, as a Gaussian layer's temperature
    scales its standard deviation.

    Examples
    --------
    >>> layer = RelaxedLayer(GumbelSoftmax(torch.zeros(5, 3, 4), 0.5))   # 3 variables of 4 categories
    >>> z = layer.rsample()
    >>> layer.batch_shape, layer.event_shape, z.shape, layer.log_prob(z).shape
    (torch.Size([5]), torch.Size([12]), torch.Size([5, 12]), torch.Size([5]))
    >>> torch.allclose(z.unflatten(-1, (3, 4)).sum(-1), torch.ones(5, 3))
    True
    """

    arg_constraints: dict[str, Any] = {}
    has_rsample = True

    def __init__(self, base: GumbelSoftmax | IGR, spatial_dims: int = 0) -> None:
        if not isinstance(base, (GumbelSoftmax, IGR)):
            raise TypeError(f"base must be a GumbelSoftmax or an IGR distribution, got {type(base).__name__}")
        s = int(spatial_dims)
        if s < 0 or len(base.batch_shape) < s + 1:
            raise ValueError(f"spatial_dims={spatial_dims!r} needs a base of batch shape (..., V, {s} positions), got "
                             f"batch shape {tuple(base.batch_shape)}")
        self.base, self.spatial_dims = base, s
        lead, rest = base.batch_shape[: len(base.batch_shape) - 1 - s], base.batch_shape[len(base.batch_shape) - 1 - s:]
        self.n_variables, self.n_categories = int(rest[0]), int(base.event_shape[0])
        super().__init__(lead, Size([self.n_variables * self.n_categories, *rest[1:]]), validate_args=False)

    # ------------------------------------------------------------------ layout
    def to_layer(self, t: Tensor) -> Tensor:
        """(..., V, *spatial, K) -> the layer's layout (..., V * K, *spatial)."""
        s = self.spatial_dims
        return t.movedim(-1, -1 - s).flatten(-2 - s, -1 - s)

    def from_layer(self, z: Tensor) -> Tensor:
        """The layer's layout (..., V * K, *spatial) -> (..., V, *spatial, K)."""
        s = self.spatial_dims
        return z.unflatten(-1 - s, (self.n_variables, self.n_categories)).movedim(-1 - s, -1)

    def _sum_variables(self, t: Tensor) -> Tensor:
        return t.sum(tuple(range(-1 - self.spatial_dims, 0)))

    # ------------------------------------------------------------------ distribution
    @property
    def relaxation(self) -> str:
        """``"gs"`` or ``"igr_i"``."""
        return "gs" if isinstance(self.base, GumbelSoftmax) else "igr_i"

    @property
    def temperature(self) -> float | Tensor:
        """The relaxation's temperature :math:`\\tau`."""
        return self.base.temperature

    def rsample(self, sample_shape: Size | tuple[int, ...] = Size()) -> Tensor:
        """Relaxed draws of shape (*sample_shape, *batch, V * K, *spatial)."""
        return self.to_layer(self.base.rsample(Size(sample_shape)))

    def rsample_and_log_prob(self, sample_shape: Size | tuple[int, ...] = Size()) -> tuple[Tensor, Tensor]:
        """A draw and its log-density computed in the relaxation's stable parametrisation."""
        z, log_q = rsample_and_log_prob(self.base, Size(sample_shape))
        return self.to_layer(z), self._sum_variables(log_q)

    def log_prob(self, value: Tensor) -> Tensor:
        """Log-density of a latent (..., V * K, *spatial) on the simplex: the sum over its variables, shape (...).

        Finite for any point of the closed simplex (coordinates that are exactly 0 are clamped to
        the smallest normal float), but exact only while no coordinate underflows: score this
        layer's own draws with :meth:`rsample_with_coords` and :meth:`log_prob_coords` instead.
        """
        return self._sum_variables(self.base.log_prob(self.from_layer(value)))

    def rsample_with_coords(self, sample_shape: Size | tuple[int, ...] = Size()) -> tuple[Tensor, Tensor, Tensor]:
        r"""A draw, its stable coordinates and their log-density: ``(z, coords, log_q)``.

        ``z`` has shape (*sample_shape, *batch, V * K, *spatial) as :meth:`rsample`; ``coords``
        are what ``z`` is computed from, kept before they are mapped onto the simplex, where
        coordinates underflow to exact zeros at small :math:`\tau` or large logits: for
        Gumbel-Softmax :math:`y = \log z` (the :class:`~vaekit.distributions.relaxed.ExpConcrete`
        draw), shape (*sample_shape, *batch, V, *spatial, K); for IGR the Gaussian point
        :math:`\lambda` before softmax++, shape (*sample_shape, *batch, V, *spatial, K - 1).
        ``log_q`` (shape (*sample_shape, *batch)) is :meth:`log_prob_coords` of ``coords``,
        computed while drawing (for IGR from the standard normal noise, exact also where the
        scale is tiny); score them under another layer with its :meth:`log_prob_coords`.
        """
        base, shape = self.base, Size(sample_shape)
        if isinstance(base, GumbelSoftmax):
            coords = base.exp_concrete.rsample(shape)
            return self.to_layer(base._finish(coords)), coords, self._sum_variables(base.exp_concrete.log_prob(coords))
        coords, log_q = base.rsample_gaussian(shape)
        return self.to_layer(base.to_simplex(coords)), coords, self._sum_variables(log_q)

    def log_prob_coords(self, coords: Tensor) -> Tensor:
        r"""Log-density of stable coordinates (see :meth:`rsample_with_coords`), summed over the variables, shape (...).

        Gumbel-Softmax: the :class:`~vaekit.distributions.relaxed.ExpConcrete` density of
        :math:`y = \log z`; IGR: the Gaussian density of :math:`\lambda`. Two layers that
        :meth:`shares_coordinates` score the same draw with respect to the same base measure, so
        the difference of their scores is :math:`\log q(z) - \log p(z)` (the Jacobian of the
        map onto the simplex is the same for both and cancels), finite at any temperature.
        """
        base = self.base
        if isinstance(base, GumbelSoftmax):
            return self._sum_variables(base.exp_concrete.log_prob(coords))
        if base.has_flows:
            raise NotImplementedError("an IGR layer with planar steps scores only its own draws: the steps have no "
                                      "closed-form inverse, so the density of a given lambda is unavailable")
        return self._sum_variables(base.base.log_prob(coords))

    def shares_coordinates(self, other: Distribution) -> bool:
        r"""Whether ``other`` is a layer whose :meth:`log_prob_coords` scores this layer's coordinates (same map onto the simplex).

        Gumbel-Softmax layers always do (``z = exp(y)``); IGR layers when their temperature and
        :math:`\delta` are equal and neither has planar steps.
        """
        if not isinstance(other, RelaxedLayer) or type(other.base) is not type(self.base) or \
                other.n_categories != self.n_categories or other.spatial_dims != self.spatial_dims:
            return False
        if isinstance(self.base, GumbelSoftmax):
            return True
        a, b = self.base, other.base
        if a.has_flows or b.has_flows or a.delta != b.delta:  # type: ignore[union-attr]
            return False
        ta, tb = torch.as_tensor(a.temperature), torch.as_tensor(b.temperature)
        return ta.shape == tb.shape and bool((ta == tb.to(ta)).all())

    def point_estimate(self) -> Tensor:
        """The draw at zero noise: ``softmax(logits / tau)`` (Gumbel-Softmax), ``softmax++(mu)`` (IGR)."""
        return self.tempered_sample(0.0)

    def tempered_sample(self, temperature: float) -> Tensor:
        r"""A draw with its noise multiplied by ``temperature`` (1: a draw of this distribution, 0: :meth:`point_estimate`).

        Gumbel-Softmax: :math:`\mathrm{softmax}((\log\pi + t\,g)/\tau)`; IGR:
        :math:`\mathrm{softmax{+}{+}}(\mu + t\,\sigma\,\epsilon)`.
        """
        base = self.base
        if isinstance(base, GumbelSoftmax):
            z = base._finish(base.exp_concrete.rsample(noise_scale=temperature))
        else:
            lam = base.loc + temperature * base.scale * torch.randn_like(base.loc) if temperature > 0 else base.loc
            z = base.to_simplex(lam)
        return self.to_layer(z)

    @torch.no_grad()
    def implied_probs(self, num_samples: int = 1000) -> Tensor:
        """The categorical law of each variable's argmax, in the layer's layout (*batch, V * K, *spatial)."""
        return self.to_layer(self.base.implied_probs(num_samples))

    def expand(self, batch_shape: Size | tuple[int, ...], _instance: Any = None) -> RelaxedLayer:
        inner = self.base.batch_shape[len(self.batch_shape):]
        return RelaxedLayer(self.base.expand(Size(batch_shape) + inner), self.spatial_dims)


@register_kl(RelaxedLayer, RelaxedLayer)
def _kl_layer_layer(q: RelaxedLayer, p: RelaxedLayer) -> Tensor:
    """The closed-form Gaussian KL summed over the variables, for IGR layers sharing their map; else none."""
    if isinstance(q.base, IGR) and isinstance(p.base, IGR):  # the closed form registered for IGR pairs, or NotImplementedError
        return q._sum_variables(torch.distributions.kl_divergence(q.base, p.base))
    raise NotImplementedError("no closed-form KL between these relaxed layers (Gumbel-Softmax, or IGR layers with other "
                              "temperatures); use the single-sample estimate log q(z) - log p(z)")
