"""Argument checks and the Gaussian head shared by the deterministic and the generative blocks."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn

from ..._checks import InvalidArgumentError, check_int
from ...distributions import DiagonalLaplace, DiagonalNormal
from ...distributions.gaussian import positive_scale

__all__ = ["block_names", "block_module", "gaussian_head", "latent_shape_of", "latent_size", "LATENT_FAMILIES"]

#: The families of a latent layer: its prior and posterior are both of this family.
LATENT_FAMILIES = ("gaussian", "laplace")


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
        return (check_int("latent_features", value),)
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


def latent_size(shape: Sequence[int]) -> int:
    """Number of scalar entries of a latent of this shape (what ``latent_dims`` counts)."""
    return math.prod(shape)
