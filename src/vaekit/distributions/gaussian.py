"""Diagonal Gaussian posterior and Gaussian priors."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Size, Tensor, nn
from torch.distributions import Distribution, Independent, Normal, register_kl

from .._checks import check_float, check_int
from .base import SCALAR_SHAPE, ConditionalDistribution, last_dims

__all__ = ["DiagonalLocScale", "DiagonalNormal", "DiagonalGaussian", "StandardNormal", "LearnedGaussian", "positive_scale"]

_LOG_2PI = math.log(2 * math.pi)


class DiagonalLocScale(Independent):
    """Independent ``factor(loc, scale)`` over the last ``event_dims`` dimensions: what the diagonal families share.

    Subclasses set ``factor`` (a location-scale ``torch.distributions`` class).
    """

    factor: type = Normal

    def __init__(self, loc: Tensor, scale: Tensor, validate_args: bool | None = False, event_dims: int = 1) -> None:
        event_dims = check_int("event_dims", event_dims)
        if event_dims > loc.dim():
            raise ValueError(f"event_dims={event_dims} but loc has only {loc.dim()} dimensions (shape {tuple(loc.shape)})")
        base = (_same_shape_normal(loc, scale, validate_args) if self.factor is Normal
                else self.factor(loc, scale, validate_args=validate_args))
        if validate_args is False:  # (every posterior and prior of every step): what Independent.__init__ sets,
            shape = base._batch_shape + base._event_shape  # set directly (nothing to validate, fewer Python calls)
            cut = len(shape) - event_dims - len(base._event_shape)
            self.base_dist, self.reinterpreted_batch_ndims = base, event_dims
            self._batch_shape, self._event_shape, self._validate_args = shape[:cut], shape[cut:], False
            return
        super().__init__(base, event_dims, validate_args=validate_args)

    @property
    def loc(self) -> Tensor:
        return self.base_dist.loc

    @property
    def scale(self) -> Tensor:
        return self.base_dist.scale

    def expand(self, batch_shape, _instance=None):  # keep the subclass under expand()
        shape = Size(batch_shape) + self.event_shape
        return type(self)(self.loc.expand(shape), self.scale.expand(shape), event_dims=self.reinterpreted_batch_ndims)


class DiagonalNormal(DiagonalLocScale):
    r"""Multivariate normal with diagonal covariance over the last dimension (or the last ``event_dims``).

    A :class:`torch.distributions.Independent` ``Normal`` that also draws and scores in one
    pass: with :math:`z = \mu + \sigma\epsilon`,
    :math:`\log q(z) = -\tfrac12\sum_j (\epsilon_j^2 + \log 2\pi) - \sum_j \log\sigma_j`.

    Parameters
    ----------
    loc : Tensor of shape (*batch, *event)
    scale : Tensor of shape (*batch, *event), positive
    event_dims : int
        How many trailing dimensions form one event: 1 for a latent vector (the default),
        3 for a spatial latent of shape (C, H, W), whose log-density and KL sum over the
        channels and positions.

    Examples
    --------
    >>> q = DiagonalNormal(torch.zeros(2, 3), torch.ones(2, 3))
    >>> z, lp = q.rsample_and_log_prob((4,))
    >>> z.shape, lp.shape, torch.allclose(lp, q.log_prob(z))
    (torch.Size([4, 2, 3]), torch.Size([4, 2]), True)
    >>> DiagonalNormal(torch.zeros(2, 4, 3, 3), torch.ones(2, 4, 3, 3), event_dims=3).event_shape
    torch.Size([4, 3, 3])
    """

    factor = Normal

    def rsample(self, sample_shape: Size = Size()) -> Tensor:
        """``loc + scale * eps`` with ``eps`` from ``torch.randn``: the draws of ``Normal.rsample`` (the same
        numbers from the same generator state), in one operator instead of two; a subclass with another
        ``factor`` draws from its own ``rsample``."""
        if self.factor is not Normal:
            return super().rsample(sample_shape)
        loc = self.loc  # (the properties: a subclass may define its own)
        shape = loc.shape if not sample_shape else self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=loc.dtype, device=loc.device)
        return loc + eps * self.scale

    def rsample_and_log_prob(self, sample_shape: Size = Size()) -> tuple[Tensor, Tensor]:
        if self.factor is not Normal:  # (the density below is the Gaussian's)
            z = self.rsample(sample_shape)
            return z, self.log_prob(z)
        loc, scale = self.loc, self.scale
        eps = torch.randn(Size(sample_shape) + loc.shape, dtype=loc.dtype, device=loc.device)
        z = loc + scale * eps
        dims = tuple(range(-self.reinterpreted_batch_ndims, 0))
        log_prob = -0.5 * (eps.pow(2) + _LOG_2PI).sum(dims) - scale.log().sum(dims)
        return z, log_prob


def _same_shape_normal(loc: Tensor, scale: Tensor, validate_args: bool | None) -> Normal:
    """``Normal(loc, scale)``; when both are tensors of one shape, without ``broadcast_all``'s operator (which
    would return views of the same shape): one operator less per posterior and prior in every step."""
    if not (isinstance(loc, Tensor) and isinstance(scale, Tensor) and loc.shape == scale.shape):
        return Normal(loc, scale, validate_args=validate_args)
    out = Normal.__new__(Normal)
    out.loc, out.scale = loc, scale
    if validate_args is False:  # what Distribution.__init__ sets, set directly (every posterior and prior of every step)
        out._batch_shape, out._event_shape, out._validate_args = loc.shape, SCALAR_SHAPE, False
    else:
        Distribution.__init__(out, loc.size(), validate_args=validate_args)
    return out


@register_kl(DiagonalNormal, DiagonalNormal)
def _kl_diagonal_normal(q: DiagonalNormal, p: DiagonalNormal) -> Tensor:
    if q.event_shape != p.event_shape:
        raise ValueError(f"KL between diagonal normals of different event shapes: {tuple(q.event_shape)} and {tuple(p.event_shape)}")
    n = q.reinterpreted_batch_ndims
    dims = last_dims(n)
    if getattr(p, "standard", False):  # p = N(0, I): 0.5 * sum(mu^2 + sigma^2 - 1) - sum(log sigma), fewer operations
        loc, scale = q.loc, q.scale
        return 0.5 * (loc.square() + scale.square() - 1.0).sum(dims) - scale.log().sum(dims)
    var_ratio = (q.scale / p.scale).pow(2)
    t = ((q.loc - p.loc) / p.scale).pow(2)
    return 0.5 * (var_ratio + t - 1 - var_ratio.log()).sum(dims)


def positive_scale(raw: Tensor, kind: Literal["softplus", "exp"] = "softplus", min_scale: float = 0.0) -> Tensor:
    r"""An unconstrained network output mapped to a positive scale.

    :math:`\sigma = \mathrm{softplus}(\rho) + \sigma_{\min}` (default) or
    :math:`\sigma = \exp(\rho) + \sigma_{\min}`: the scale map of every Gaussian head in vaekit (:class:`DiagonalGaussian`,
    :class:`LearnedGaussian`, the latent layers of hierarchical models).

    Parameters
    ----------
    raw : Tensor of any shape
    kind : {"softplus", "exp"}
    min_scale : float
        Floor added to the scale.

    Returns
    -------
    Tensor of the shape of ``raw``, every entry >= ``min_scale``.

    Examples
    --------
    >>> positive_scale(torch.tensor([0.0, -50.0]), min_scale=1e-4)
    tensor([6.9325e-01, 1.0000e-04])
    """
    return (F.softplus(raw) if kind == "softplus" else raw.exp()) + min_scale


class DiagonalGaussian(ConditionalDistribution):
    r"""Amortized factorized-Gaussian posterior :math:`q(z|x) = \mathcal N(\mu(h), \mathrm{diag}\,\sigma(h)^2)`.

    A linear layer maps the encoder features ``h`` to :math:`(\mu, \rho)`; the scale is
    :math:`\sigma = \mathrm{softplus}(\rho) + \sigma_{\min}` (default; gradients stay bounded
    for large :math:`\rho`) or :math:`\sigma = \exp(\rho) + \sigma_{\min}` (the log-variance
    style of most papers, ``scale="exp"``).

    Parameters
    ----------
    context_features : int
        Size of the encoder output ``h``.
    latent_features : int
        Dimension of ``z``.
    scale : {"softplus", "exp"}
        Scale parametrisation.
    min_scale : float
        Floor added to the scale (keeps log q finite).

    Examples
    --------
    >>> q = DiagonalGaussian(context_features=8, latent_features=2)
    >>> d = q(torch.randn(5, 8))
    >>> d.batch_shape, d.event_shape
    (torch.Size([5]), torch.Size([2]))
    """

    def __init__(self, context_features: int, latent_features: int, scale: Literal["softplus", "exp"] = "softplus",
                 min_scale: float = 1e-5) -> None:
        super().__init__()
        check_int("context_features", context_features)
        check_int("latent_features", latent_features)
        if scale not in ("softplus", "exp"):
            raise ValueError(f"scale must be 'softplus' or 'exp', got {scale!r}")
        check_float("min_scale", min_scale, 0)
        self.context_features, self.latent_features = int(context_features), int(latent_features)
        self.scale_kind, self.min_scale = scale, float(min_scale)
        self.linear = nn.Linear(self.context_features, 2 * self.latent_features)

    def forward(self, context: Tensor | None = None) -> DiagonalNormal:
        if context is None:
            raise ValueError("DiagonalGaussian is a posterior: it needs the encoder features as context")
        loc, raw = self.linear(context).chunk(2, dim=-1)
        return DiagonalNormal(loc, positive_scale(raw, self.scale_kind, self.min_scale))


class StandardNormal(ConditionalDistribution):
    """Fixed prior :math:`p(z) = \\mathcal N(0, I)`.

    >>> StandardNormal(3)().log_prob(torch.zeros(3))
    tensor(-2.7568)
    """

    def __init__(self, latent_features: int) -> None:
        super().__init__()
        check_int("latent_features", latent_features)
        self.latent_features = int(latent_features)
        self.register_buffer("loc", torch.zeros(self.latent_features), persistent=False)
        self.register_buffer("scale", torch.ones(self.latent_features), persistent=False)

    def forward(self, context: Tensor | None = None) -> DiagonalNormal:
        buffers = self._buffers
        loc, scale = buffers["loc"], buffers["scale"]
        p = None if torch.compiler.is_compiling() else self.__dict__.get("_dist")
        # one distribution object, made again only when the buffers are other tensors (.to(), load_state_dict
        # with assign): a prior read at every step costs no Python object
        if p is None or p.base_dist.loc is not loc or p.base_dist.scale is not scale:
            p = DiagonalNormal(loc, scale)
            p.standard = True  # type: ignore[attr-defined]  # the closed-form KL takes its shorter form
            if not torch.compiler.is_compiling():
                self.__dict__["_dist"] = p
        return p

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_dist", None)  # (made again at the first call)
        return state


class LearnedGaussian(ConditionalDistribution):
    """Prior with trainable mean and diagonal scale (softplus parametrisation), initialised at N(0, I).

    >>> p = LearnedGaussian(2)
    >>> torch.allclose(p().scale, torch.ones(2))
    True
    """

    def __init__(self, latent_features: int, min_scale: float = 1e-4) -> None:
        super().__init__()
        check_int("latent_features", latent_features)
        check_float("min_scale", min_scale, 0, 1, high_open=True)
        self.latent_features, self.min_scale = int(latent_features), float(min_scale)
        self.loc = nn.Parameter(torch.zeros(self.latent_features))
        # softplus(raw) + min_scale == 1 at initialisation
        self.raw_scale = nn.Parameter(torch.full((self.latent_features,), math.log(math.expm1(1.0 - self.min_scale))))

    def forward(self, context: Tensor | None = None) -> DiagonalNormal:
        return DiagonalNormal(self.loc, positive_scale(self.raw_scale, "softplus", self.min_scale))
