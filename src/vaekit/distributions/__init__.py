"""Posterior, prior and observation families, all ``torch.distributions`` compatible."""

from .base import ConditionalDistribution, DrawWithLogProb, point_estimate, rsample_and_log_prob
from .gaussian import DiagonalGaussian, DiagonalNormal, LearnedGaussian, StandardNormal
from .kl import closed_form_kl, kl_divergence
from .laplace import DiagonalLaplace
from .likelihoods import Bernoulli, DiscretizedLogistic, DiscretizedLogisticDistribution, Gaussian, Likelihood
from .logistic_mixture import DiscretizedLogisticMixture, DiscretizedLogisticMixtureDistribution

__all__ = [
    "ConditionalDistribution", "rsample_and_log_prob", "point_estimate", "DrawWithLogProb", "DiagonalNormal", "DiagonalGaussian", "StandardNormal", "DiagonalLaplace",
    "LearnedGaussian", "kl_divergence", "closed_form_kl", "Likelihood", "Bernoulli", "Gaussian", "DiscretizedLogistic",
    "DiscretizedLogisticDistribution", "DiscretizedLogisticMixture", "DiscretizedLogisticMixtureDistribution",
]

from .flows import (IAF, POSTERIORS, AuxiliaryFlow, FlowDistribution, NeuralSplineFlow, PlanarFlow, RadialFlow,
                    RealNVPFlow, SylvesterFlow, make_posterior)

__all__ += ["PlanarFlow", "RadialFlow", "SylvesterFlow", "RealNVPFlow", "AuxiliaryFlow", "IAF", "NeuralSplineFlow",
            "FlowDistribution", "make_posterior", "POSTERIORS"]

from .relaxed import (IGR, ExpConcrete, GumbelSoftmax, IGRPrior, IGRStickBreaking, PlanarStep, RelaxedCategorical,
                      RelaxedLayer, fit_igr_prior, relaxed_kl, softmax_pp, vertex_proximity)

__all__ += ["GumbelSoftmax", "ExpConcrete", "IGR", "IGRStickBreaking", "PlanarStep", "RelaxedCategorical", "RelaxedLayer",
            "relaxed_kl", "fit_igr_prior", "IGRPrior", "softmax_pp", "vertex_proximity"]
