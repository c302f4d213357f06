"""Latent-variable models implementing the protocol of :mod:`vaekit.models.base`."""

from .base import ElboTerms, LatentVariableModel
from .vae import VAE, conv_vae, make_likelihood, mlp_vae

__all__ = ["ElboTerms", "LatentVariableModel", "VAE", "mlp_vae", "conv_vae", "make_likelihood"]

from . import hierarchical
from .hierarchical import HierarchicalVAE, ladder_vae, small_vdvae

__all__ += ["HierarchicalVAE", "ladder_vae", "small_vdvae"]
