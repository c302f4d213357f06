"""Observation models p(x | z): the decoder's output parameters -> a distribution over x.

A likelihood needs ``params_per_dim`` numbers per data dimension. The model reshapes the
decoder output to ``(*lead, params_per_dim * data_shape[0], *data_shape[1:])`` and the
likelihood splits it along that axis; the returned distribution has batch shape
``lead`` and event shape ``data_shape``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Size, Tensor, nn
from torch.distributions import Bernoulli as _Bernoulli
from torch.distributions import Distribution, Independent, Normal, constraints

from .._checks import check_float, check_int
from .._recording import Configurable
from .base import SCALAR_SHAPE, last_dims

__all__ = ["Likelihood", "Bernoulli", "Gaussian", "DiscretizedLogistic", "DiscretizedLogisticDistribution"]


class Likelihood(Configurable, nn.Module):
    """Base class: ``forward(params, event_ndim)`` returns a distribution over x."""

    params_per_dim: int = 1

    def forward(self, params: Tensor, event_ndim: int) -> Distribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def validate(self, x: Tensor, name: str = "x") -> None:
        """Raise ``ValueError`` if ``x`` lies outside this likelihood's support."""

    def _split(self, params: Tensor, event_ndim: int) -> tuple[Tensor, ...]:
        return params.chunk(self.params_per_dim, dim=-event_ndim) if self.params_per_dim > 1 else (params,)


class Bernoulli(Likelihood):
    """Bernoulli pixels with logits from the decoder; x must be binary (0/1).

    Parameters
    ----------
    strict : bool
        Reject non-binary data in :meth:`validate` (default). Set False to use the
        "continuous Bernoulli-style" cross-entropy on grey values in [0, 1], which is not
        a normalised likelihood and so makes log p(x) estimates meaningless.

    Examples
    --------
    >>> px = Bernoulli()(torch.zeros(2, 4), event_ndim=1)
    >>> px.log_prob(torch.ones(2, 4))
    tensor([-2.7726, -2.7726])
    """

    params_per_dim = 1

    def __init__(self, strict: bool = True) -> None:
        super().__init__()
        self.strict = bool(strict)

    def forward(self, params: Tensor, event_ndim: int) -> Distribution:
        return _IndependentBernoulli.of_logits(params, event_ndim)

    def validate(self, x: Tensor, name: str = "x") -> None:
        if self.strict and not ((x == 0) | (x == 1)).all():
            lo, hi = float(x.min()), float(x.max())
            raise ValueError(
                f"{name} is not binary (values in [{lo:.3g}, {hi:.3g}]) but the likelihood is Bernoulli; binarize the data "
                "(e.g. binarize='dynamic' or 'threshold' in the data module) or use a Gaussian / DiscretizedLogistic likelihood"
            )


def _bernoulli_logits(logits: Tensor) -> _Bernoulli:
    """``torch.distributions.Bernoulli(logits=logits, validate_args=False)`` without ``broadcast_all``'s operator
    (it returns a view of the same shape for one tensor)."""
    if not isinstance(logits, Tensor):
        return _Bernoulli(logits=logits, validate_args=False)
    out = _Bernoulli.__new__(_Bernoulli)
    out.logits = out._param = logits
    out._batch_shape, out._event_shape, out._validate_args = logits.shape, SCALAR_SHAPE, False  # Distribution.__init__'s
    return out


class _IndependentBernoulli(Independent):
    """Independent Bernoulli pixels whose ``log_prob`` sums the cross-entropy before negating it
    (one negation per example instead of one per pixel, forward and backward)."""

    @classmethod
    def of_logits(cls, logits: Tensor, event_ndim: int) -> _IndependentBernoulli:
        """``_IndependentBernoulli(_bernoulli_logits(logits), event_ndim)``: for a tensor of logits, what
        ``Independent.__init__`` would set, set directly (one decoder output per step)."""
        base = _bernoulli_logits(logits)
        if not isinstance(logits, Tensor) or type(event_ndim) is not int or not 0 <= event_ndim <= logits.dim():
            return cls(base, event_ndim)
        shape = base._batch_shape
        out = cls.__new__(cls)
        cut = len(shape) - event_ndim
        out.base_dist, out.reinterpreted_batch_ndims = base, event_ndim
        out._batch_shape, out._event_shape = shape[:cut], shape[cut:]  # (validation: the class default, as
        return out  # Independent.__init__ leaves it)

    def log_prob(self, value: Tensor) -> Tensor:
        logits = self.base_dist.logits
        if value.shape != logits.shape:
            logits, value = torch.broadcast_tensors(logits, value)
        # (torch's operator itself: F.binary_cross_entropy_with_logits checks the shapes again; 0 = no reduction)
        bce = torch.binary_cross_entropy_with_logits(logits, value, None, None, 0)
        n = self.reinterpreted_batch_ndims
        return -(bce.sum(last_dims(n)) if n else bce)


class Gaussian(Likelihood):
    r"""Gaussian pixels :math:`\mathcal N(x; \mu, \sigma^2)` with mean from the decoder.

    Parameters
    ----------
    variance : {"fixed", "learned", "predicted"}
        ``"fixed"``: :math:`\sigma` = ``scale``; ``"learned"``: one global trainable
        :math:`\sigma` (initialised at ``scale``); ``"predicted"``: per-dimension
        :math:`\sigma = \mathrm{softplus}(\rho) + \sigma_{\min}` from the decoder (which
        then outputs twice as many numbers).
    scale : float
        Fixed or initial standard deviation.
    min_scale : float
        Floor on predicted/learned scales.

    Examples
    --------
    >>> px = Gaussian(scale=1.0)(torch.zeros(1, 2), event_ndim=1)
    >>> px.log_prob(torch.zeros(1, 2))
    tensor([-1.8379])
    """

    def __init__(self, variance: Literal["fixed", "learned", "predicted"] = "fixed", scale: float = 1.0,
                 min_scale: float = 1e-3) -> None:
        super().__init__()
        if variance not in ("fixed", "learned", "predicted"):
            raise ValueError(f"variance must be 'fixed', 'learned' or 'predicted', got {variance!r}")
        check_float("scale", scale, 0, low_open=True)
        check_float("min_scale", min_scale, 0)
        if variance == "learned" and scale > 1e6:
            raise ValueError(f"scale must be <= 1e6 for variance='learned', got {scale}")
        self.variance, self.min_scale = variance, float(min_scale)
        self.params_per_dim = 2 if variance == "predicted" else 1
        if variance == "learned":
            raw = max(scale - self.min_scale, 1e-6)
            self.raw_scale = nn.Parameter(torch.tensor(raw + math.log(-math.expm1(-raw))))  # softplus^-1, stable
        else:
            self.register_buffer("fixed_scale", torch.tensor(float(scale)), persistent=False)

    def forward(self, params: Tensor, event_ndim: int) -> Distribution:
        if self.variance == "predicted":
            loc, raw = self._split(params, event_ndim)
            scale = F.softplus(raw) + self.min_scale
        else:
            loc = params
            scale = F.softplus(self.raw_scale) + self.min_scale if self.variance == "learned" else self.fixed_scale
            scale = scale.to(loc.dtype).expand_as(loc)
        return Independent(Normal(loc, scale, validate_args=False), event_ndim)


class DiscretizedLogisticDistribution(Distribution):
    r"""Logistic density integrated over the bins of ``n_bins``-level data in [0, 1] (elementwise).

    As in PixelCNN++: data are mapped to [-1, 1]; each interior bin of half-width
    :math:`1/(n-1)` gets :math:`\sigma((x-\mu+h)/s) - \sigma((x-\mu-h)/s)`, the edge bins
    take the tails, so the masses sum to one.
    """

    arg_constraints = {"loc": constraints.real, "log_scale": constraints.real}
    support = constraints.unit_interval

    def __init__(self, loc: Tensor, log_scale: Tensor, n_bins: int = 256, validate_args: bool | None = False) -> None:
        self.loc, self.log_scale = torch.broadcast_tensors(loc, log_scale)
        self.n_bins = int(n_bins)
        super().__init__(self.loc.shape, validate_args=validate_args)

    @property
    def mean(self) -> Tensor:
        """Bin-quantised clamp of the location (the exact mean has no closed form)."""
        return self._quantise(self.loc)

    def _quantise(self, y: Tensor) -> Tensor:
        levels = self.n_bins - 1
        return torch.round((y.clamp(-1, 1) + 1) / 2 * levels) / levels

    def log_prob(self, value: Tensor) -> Tensor:
        x = value * 2 - 1
        half = 1.0 / (self.n_bins - 1)
        centered = x - self.loc
        inv_s = torch.exp(-self.log_scale)
        plus_in, min_in, mid_in = inv_s * (centered + half), inv_s * (centered - half), inv_s * centered
        log_cdf_plus = plus_in - F.softplus(plus_in)  # log sigmoid(plus_in): left edge bin
        log_one_minus_cdf_min = -F.softplus(min_in)  # right edge bin
        cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
        # log of density * bin width, used where cdf_delta underflows
        log_pdf_mid = mid_in - self.log_scale - 2.0 * F.softplus(mid_in) + math.log(2 * half)
        interior = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp_min(1e-12)), log_pdf_mid)
        return torch.where(x < -1 + half, log_cdf_plus, torch.where(x > 1 - half, log_one_minus_cdf_min, interior))

    def sample(self, sample_shape: Size = Size()) -> Tensor:
        with torch.no_grad():
            shape = self._extended_shape(sample_shape)
            u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device).clamp(1e-5, 1 - 1e-5)
            y = self.loc + torch.exp(self.log_scale) * (torch.log(u) - torch.log1p(-u))
            return self._quantise(y)


class DiscretizedLogistic(Likelihood):
    """8-bit (by default) discretized logistic likelihood for images in [0, 1].

    The decoder predicts a location and a log-scale per pixel (``params_per_dim = 2``).

    Parameters
    ----------
    n_bins : int
        Number of intensity levels (256 for 8-bit images).
    min_log_scale : float
        Lower clamp of the predicted log-scale.

    Examples
    --------
    >>> lik = DiscretizedLogistic()
    >>> px = lik(torch.zeros(1, 6), event_ndim=1)   # loc=0 and log_scale=0 for 3 pixels
    >>> px.event_shape
    torch.Size([3])
    >>> levels = torch.arange(256.0) / 255
    >>> total = DiscretizedLogisticDistribution(torch.zeros(256), torch.zeros(256)).log_prob(levels).exp().sum()
    >>> round(float(total), 4)
    1.0
    """

    params_per_dim = 2

    def __init__(self, n_bins: int = 256, min_log_scale: float = -7.0) -> None:
        super().__init__()
        check_int("n_bins", n_bins, 2)
        check_float("min_log_scale", min_log_scale)
        self.n_bins, self.min_log_scale = int(n_bins), float(min_log_scale)

    def forward(self, params: Tensor, event_ndim: int) -> Distribution:
        loc, log_scale = self._split(params, event_ndim)
        return Independent(DiscretizedLogisticDistribution(loc, log_scale.clamp_min(self.min_log_scale), self.n_bins), event_ndim)

    def validate(self, x: Tensor, name: str = "x") -> None:
        if float(x.min()) < 0 or float(x.max()) > 1:
            raise ValueError(f"{name} must lie in [0, 1] for DiscretizedLogistic, got values in [{float(x.min()):.3g}, {float(x.max()):.3g}]")
        levels = x * (self.n_bins - 1)
        off = (levels - levels.round()).abs().max()
        if float(off) > 1e-3:
            raise ValueError(f"{name} is not on the grid of {self.n_bins} levels k/{self.n_bins - 1} that "
                             f"DiscretizedLogistic(n_bins={self.n_bins}) scores (largest offset {float(off):.3g} levels); "
                             "quantise the data or choose n_bins to match it")
