"""Argument checks and the Gaussian head shared by the deterministic and the generative blocks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from ...distributions import DiagonalNormal
from ...distributions.gaussian import positive_scale

__all__ = ["block_names", "block_module", "gaussian_head"]


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


def gaussian_head(params: Tensor, latent_features: int, min_scale: float, what: str) -> DiagonalNormal:
    """``N(loc, softplus(raw) + min_scale)`` from a network output (..., 2 * latent_features): location, then raw scale."""
    if params.shape[-1] != 2 * latent_features:
        raise ValueError(f"{what} returned {params.shape[-1]} features but a Gaussian over {latent_features} latents needs "
                         f"2 * latent_features = {2 * latent_features} (location and raw scale)")
    loc, raw = params.chunk(2, dim=-1)
    return DiagonalNormal(loc, positive_scale(raw, "softplus", min_scale))
