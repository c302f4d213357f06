"""Argument checks and the Gaussian head shared by the deterministic and the generative blocks."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

import torch.nn.functional as F

from ..._checks import InvalidArgumentError, check_choice, check_float, check_int
from ...distributions import IGR, DiagonalLaplace, DiagonalNormal, GumbelSoftmax, RelaxedLayer
from ...distributions.gaussian import positive_scale

__all__ = ["block_names", "block_module", "gaussian_head", "relaxed_head", "head_features", "check_categories",
           "latent_shape_of", "latent_size", "LATENT_FAMILIES", "RELAXED_FAMILIES",
           "DEFAULT_RELAXATION_TEMPERATURE", "hvae_scale", "check_hvae_head", "HVAEHead", "Base", "SigmaParam"]

#: The families of a latent layer: its prior and posterior are both of this family.
LATENT_FAMILIES = ("gaussian", "laplace", "gs", "igr_i")
#: The relaxed categorical families among them (Gumbel-Softmax, IGR-I), with ``categories`` per variable.
RELAXED_FAMILIES = ("gs", "igr_i")
#: ``relaxation_temperature``'s default, the only value a Gaussian or Laplace layer accepts.
DEFAULT_RELAXATION_TEMPERATURE = 0.5


def block_names(arg: str, value: str | Sequence[str], block: str) -> tuple[str, ...]:
    """``value`` (one block name or several) as a tuple of names, or a TypeError naming ``arg`` and ``block``."""
    names = (value,) if isinstance(value, str) else tuple(value)
    if not all(isinstance(v, str) and v for v in names):
        raise TypeError(f"{arg} of block {block!r} must be a block name or a list of names, got {value!r}")
    return names


def block_module(arg: str, value: Any, block: str, optional: bool = True) -> nn.Module:
    """``value`` if it is a module (``None``: the identity, where ``optional``), else a TypeError naming ``arg``."""
    if value is None and optional:
        return nn.Identity()
    if not isinstance(value, nn.Module):
        raise TypeError(f"{arg} of block {block!r} must be a torch.nn.Module (e.g. vaekit.nn.MLP), got {type(value).__name__}")
    return value


def latent_shape_of(value: int | Sequence[int], block: str) -> tuple[int, ...]:
    """A latent's shape for one example: ``(features,)`` from an int, ``(C, H, W)`` (any length) from a sequence.

    >>> latent_shape_of(3, "z"), latent_shape_of([4, 8, 8], "z")
    ((3,), (4, 8, 8))
    """
    if not isinstance(value, Sequence) or isinstance(value, str):
        return (check_int(f"latent_features of block {block!r}", value),)
    shape = tuple(value)
    if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise InvalidArgumentError(f"latent_features of block {block!r} must be a positive int (a latent vector) or a list of "
                                   f"positive ints (a spatial latent, e.g. [C, H, W]), got {value!r}")
    return shape


def gaussian_head(params: Tensor, latent_shape: int | Sequence[int], min_scale: float, what: str,
                  family: str = "gaussian", scale: Callable[[Tensor], Tensor] | None = None) -> DiagonalNormal | DiagonalLaplace:
    """``N(loc, softplus(raw) + min_scale)`` from a network output: location, then raw scale, along the feature axis.

    ``family="laplace"`` gives a :class:`~vaekit.distributions.DiagonalLaplace` with the same
    location and scale instead. ``scale`` replaces the map from the raw scale to the scale
    (``softplus``; ``min_scale`` is added to either), e.g. the predecessor hVAE's
    (:func:`vaekit.models.hierarchical.hvae_compat.hvae_scale`).

    A latent vector of ``d`` features reads an output of shape (..., 2 * d), split on its last
    axis; a spatial latent of shape (C, H, W) reads an output of shape (N, 2 * C, H, W), split
    on the channel axis, and gives a Gaussian whose event is the whole (C, H, W) map.
    """
    shape = (latent_shape,) if isinstance(latent_shape, int) else tuple(latent_shape)
    if len(shape) == 1:
        if params.shape[-1] != 2 * shape[0]:
            raise ValueError(f"{what} returned {params.shape[-1]} features but a Gaussian over {shape[0]} latents needs "
                             f"2 * latent_features = {2 * shape[0]} (location and raw scale)")
        loc, raw = params.chunk(2, dim=-1)
        return _family(family)(loc, _scale(raw, min_scale, scale))
    want = (2 * shape[0], *shape[1:])
    if tuple(params.shape[1:]) != want:
        raise ValueError(f"{what} returned shape {tuple(params.shape)} but a Gaussian over a latent of shape {shape} needs "
                         f"(N, {', '.join(map(str, want))}) (2 * {shape[0]} channels: location and raw scale)")
    loc, raw = params.chunk(2, dim=1)
    return _family(family)(loc, _scale(raw, min_scale, scale), event_dims=len(shape))


def _scale(raw: Tensor, min_scale: float, scale: Callable[[Tensor], Tensor] | None) -> Tensor:
    return positive_scale(raw, "softplus", min_scale) if scale is None else scale(raw) + min_scale


def _family(name: str) -> type:
    return DiagonalLaplace if name == "laplace" else DiagonalNormal


def check_categories(family: str, categories: int | None, latent_shape: Sequence[int], temperature: float,
                     block: str) -> tuple[int | None, float]:
    """``(categories, relaxation_temperature)`` checked against ``family`` and the latent's features (channels).

    A relaxed family needs ``categories >= 2`` dividing the features (channels) of the latent;
    a Gaussian or Laplace layer takes none, and no temperature but the default 0.5.

    >>> check_categories("gs", 4, (12,), 0.5, "z")
    (4, 0.5)
    >>> check_categories("gs", 5, (12,), 0.5, "z")
    Traceback (most recent call last):
    ...
    vaekit._checks.InvalidArgumentError: categories of block 'z' must divide its latent features (channels) 12 into variables of K categories each, got 5
    """
    temperature = check_float("relaxation_temperature", temperature, 0, low_open=True)
    if family not in RELAXED_FAMILIES:
        if categories is not None:
            raise InvalidArgumentError(f"categories of block {block!r} is for the relaxed categorical families "
                                       f"{RELAXED_FAMILIES}, got categories={categories!r} with latent_family={family!r}")
        if temperature != DEFAULT_RELAXATION_TEMPERATURE:
            raise InvalidArgumentError(f"relaxation_temperature of block {block!r} is for the relaxed categorical families "
                                       f"{RELAXED_FAMILIES}, got relaxation_temperature={temperature!r} with "
                                       f"latent_family={family!r} (leave it at {DEFAULT_RELAXATION_TEMPERATURE})")
        return None, temperature
    if categories is None:
        raise InvalidArgumentError(f"latent_family={family!r} of block {block!r} needs categories (K >= 2 per variable, "
                                   f"dividing the latent features {latent_shape[0]}), got None")
    k = check_int("categories", categories, 2)
    if latent_shape[0] % k:
        raise InvalidArgumentError(f"categories of block {block!r} must divide its latent features (channels) "
                                   f"{latent_shape[0]} into variables of K categories each, got {k}")
    return k, temperature


def head_features(family: str, features: int, categories: int | None = None) -> int:
    r"""How many features (channels of a map) a network gives a head of ``family`` over ``features`` latent features.

    Gaussian and Laplace: location and raw scale, ``2 * features``; Gumbel-Softmax: the
    logits, ``features``; IGR-I: location and raw scale in :math:`\mathbb R^{K-1}` per
    variable, ``2 * (features / K) * (K - 1)``.

    >>> head_features("gaussian", 12), head_features("gs", 12, 4), head_features("igr_i", 12, 4)
    (24, 12, 18)
    """
    if family == "gs":
        return features
    if family == "igr_i":
        return 2 * (features // categories) * (categories - 1)  # type: ignore[operator]
    return 2 * features


def relaxed_head(params: Tensor, latent_shape: Sequence[int], family: str, categories: int, temperature: float,
                 min_scale: float, what: str) -> RelaxedLayer:
    """A :class:`~vaekit.distributions.RelaxedLayer` of ``latent_shape[0] / categories`` variables from a network output.

    Gumbel-Softmax reads the logits, ``K`` per variable; IGR-I reads the locations then the raw
    scales (``softplus(raw) + min_scale``), ``K - 1`` each per variable; both along the
    feature axis of a vector (..., P) or the channel axis of a map (N, P, H, W).
    """
    shape = tuple(latent_shape)
    v, k = shape[0] // categories, categories
    want = head_features(family, shape[0], k)
    got = params.shape[-1] if len(shape) == 1 else params.shape[1]
    if got != want or (len(shape) > 1 and tuple(params.shape[2:]) != shape[1:]):
        raise ValueError(f"{what} returned shape {tuple(params.shape)} but a {family!r} latent of shape {shape} "
                         f"({v} variables of {k} categories) needs {want} {'features' if len(shape) == 1 else 'channels'}"
                         + ("" if len(shape) == 1 else f" at {shape[1:]}")
                         + (" (K logits per variable)" if family == "gs" else " (K - 1 locations, then K - 1 raw scales, per variable)"))
    s = len(shape) - 1
    axis = params.dim() - 1 - s  # the feature (channel) axis

    def per_variable(t: Tensor, size: int) -> Tensor:  # (..., v * size, *spatial) -> (..., v, *spatial, size)
        return t.unflatten(axis, (v, size)).movedim(axis + 1, -1)

    if family == "gs":
        return RelaxedLayer(GumbelSoftmax(per_variable(params, k), temperature), s)
    loc, raw = params.chunk(2, dim=axis)
    scale = F.softplus(raw) + min_scale
    return RelaxedLayer(IGR(per_variable(loc, k - 1), per_variable(scale, k - 1), temperature), s)


def latent_size(shape: Sequence[int]) -> int:
    """Number of scalar entries of a latent of this shape (what ``latent_dims`` counts)."""
    return math.prod(shape)


# ---------------------------------------------------------------------- the predecessor hVAE's heads
# (shared by hvae_compat's TDVAE blocks and hvae_compat_evdvae's EfficientVDVAE blocks)
Base = Literal["logstd", "std"]
SigmaParam = Literal["var", "std"]


def hvae_scale(raw: Tensor, base: Base = "logstd", sigma_param: SigmaParam = "var", beta: float = 1.0) -> Tensor:
    """hVAE's scale from a raw network output (see :mod:`vaekit.models.hierarchical.hvae_compat`).

    >>> hvae_scale(torch.tensor([0.0, 2.0]), "logstd", "var", 1.0)   # sqrt(exp(rho))
    tensor([1.0000, 2.7183])
    """
    s = torch.exp(raw * beta) if base == "logstd" else F.softplus(raw, beta=beta)
    return s.sqrt() if sigma_param == "var" else s


def check_hvae_head(block: str, family: str, base: str, sigma_param: str, beta: float) -> tuple[str, str, str, float]:
    """hVAE's head arguments of ``block``, checked: ``(distribution, base, sigma_param, beta)``."""
    return (check_choice(f"distribution of block {block!r}", family, ("normal", "laplace")),
            check_choice(f"base of block {block!r}", base, ("logstd", "std")),
            check_choice(f"sigma_param of block {block!r}", sigma_param, ("var", "std")),
            check_float("beta", beta, 0, low_open=True))


class HVAEHead:
    """What hVAE's latent blocks share: the core heads (:class:`~vaekit.distributions.DiagonalNormal` or
    :class:`~vaekit.distributions.DiagonalLaplace`, by ``latent_family``) with hVAE's scale map."""

    base: str
    sigma_param: str
    beta: float
    latent_shape: tuple[int, ...]
    latent_family: str
    min_scale: float

    def head(self, params: Tensor, what: str) -> DiagonalNormal | DiagonalLaplace:
        return gaussian_head(params, self.latent_shape, self.min_scale, what, self.latent_family, scale=self.scale_of)

    def scale_of(self, raw: Tensor) -> Tensor:
        """hVAE's scale of a raw network output (:func:`hvae_scale` with this block's ``base``, ``sigma_param``, ``beta``)."""
        return hvae_scale(raw, self.base, self.sigma_param, self.beta)  # type: ignore[arg-type]
