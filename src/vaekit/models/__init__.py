"""Latent-variable models implementing the protocol of :mod:`vaekit.models.base`."""

from .base import ElboTerms, LatentVariableModel
from .vae import VAE, conv_vae, make_likelihood, mlp_vae

__all__ = ["ElboTerms", "LatentVariableModel", "VAE", "mlp_vae", "conv_vae", "make_likelihood"]

from . import hierarchical
from .hierarchical import HierarchicalVAE, ladder_vae, small_vdvae

__all__ += ["HierarchicalVAE", "ladder_vae", "small_vdvae"]

from .discrete import DiscreteVAE, RelaxedLatentModel, categorical_kl, discrete_vae
from .joint import JointVAE, joint_vae
from .structured import StructuredPredictor, structured_predictor

__all__ += ["DiscreteVAE", "RelaxedLatentModel", "categorical_kl", "discrete_vae", "JointVAE", "joint_vae",
            "StructuredPredictor", "structured_predictor"]

from .group import GroupLatent, GroupPredictor

__all__ += ["GroupLatent", "GroupPredictor"]
