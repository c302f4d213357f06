"""Latent-variable models implementing the protocol of :mod:`vaekit.models.base`."""

from .base import ElboTerms, LatentVariableModel

__all__ = ["ElboTerms", "LatentVariableModel"]
