"""Relaxed categorical distributions: Gumbel-Softmax and the Invertible Gaussian Reparameterization family.

Every distribution here is a reparameterizable :class:`torch.distributions.Distribution` with
batch shape the leading dimensions and event shape ``(K,)``, whose samples lie on the
``K``-simplex, and offers ``rsample_and_log_prob`` (numerically stable at small temperature)
and ``implied_probs`` (the categorical distribution of the argmax of a sample).
"""

from ._simplex import softmax_pp, vertex_proximity
from .family import RELAXATIONS, RelaxedCategorical
from .gumbel import ExpConcrete, GumbelSoftmax
from .igr import IGR, GaussianRelaxation, PlanarStep
from .kl import RELAXED_KL_METHODS, relaxed_kl
from .layer import RelaxedLayer
from .prior_fit import IGRPrior, fit_igr_prior
from .stick import IGRStickBreaking

__all__ = ["softmax_pp", "vertex_proximity", "GumbelSoftmax", "ExpConcrete", "IGR", "IGRStickBreaking",
           "GaussianRelaxation", "PlanarStep", "relaxed_kl", "RELAXED_KL_METHODS", "RelaxedCategorical", "RELAXATIONS",
           "fit_igr_prior", "IGRPrior", "RelaxedLayer"]
