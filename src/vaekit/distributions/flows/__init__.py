r"""Flow posterior families: amortized :math:`q(z|x)` beyond the diagonal Gaussian.

Each family is a :class:`~vaekit.distributions.ConditionalDistribution` whose
``forward(context)`` returns a ``torch.distributions.Distribution`` with batch shape
``context.shape[:-1]``, event shape ``(latent_features,)``, ``rsample()`` and
``rsample_and_log_prob(sample_shape)`` (draw and log-density in one pass). ``log_prob`` of
arbitrary points works where the flow inverts cheaply (radial, RealNVP, IAF, NSF) and
raises ``NotImplementedError`` elsewhere (planar, Sylvester; the auxiliary flow's
density term is a bound, not a density). The KL to the prior is then Monte Carlo,
chosen automatically by :func:`vaekit.distributions.kl_divergence`.

Every family except the auxiliary flow is a :class:`FlowPosterior`: a base
:class:`~vaekit.distributions.DiagonalGaussian` plus ``transforms``, a list of step modules
whose ``forward(context)`` returns that step's transform (``call_and_ladj(z)``); its
distribution is a :class:`FlowDistribution`, with ``push(z0) -> (z, logdet)`` and
``point_estimate()`` (the flow at the base mean). :class:`AuxiliaryFlow` is built from
the same :class:`AffineCoupling` steps around its auxiliary variable.

========================== =============================================== ==================
name (``make_posterior``)  class                                           ``log_prob(z)``
========================== =============================================== ==================
``planar``                 :class:`PlanarFlow`                             no
``radial``                 :class:`RadialFlow`                             yes (closed form)
``sylvester_*``            :class:`SylvesterFlow` (``kind=...``)           no
``realnvp``                :class:`RealNVPFlow`                            yes
``af``                     :class:`AuxiliaryFlow`                          no (a bound)
``iaf``                    :class:`IAF`                                    yes (d passes)
``nsf``                    :class:`NeuralSplineFlow`                       yes (d passes)
========================== =============================================== ==================
"""

from ._base import FlowDistribution, FlowPosterior, StepTransform, upgrade_state_dict
from .autoregressive import IAF, NeuralSplineFlow
from .auxiliary import AuxiliaryFlow, AuxiliaryFlowDistribution
from .coupling import AffineCoupling, AffineCouplingTransform, RealNVPFlow
from .factory import POSTERIORS, make_posterior, posterior_name
from .planar import PlanarFlow, PlanarFlowStep, PlanarTransform
from .radial import RadialFlow, RadialFlowStep, RadialTransform
from .sylvester import SylvesterFlow, SylvesterFlowStep, SylvesterTransform

__all__ = [
    "FlowDistribution", "FlowPosterior", "StepTransform", "PlanarFlow", "RadialFlow", "SylvesterFlow", "RealNVPFlow",
    "AffineCoupling", "AuxiliaryFlow", "AuxiliaryFlowDistribution", "IAF", "NeuralSplineFlow", "make_posterior",
    "posterior_name", "POSTERIORS", "upgrade_state_dict", "PlanarFlowStep", "PlanarTransform", "RadialFlowStep",
    "RadialTransform", "SylvesterFlowStep", "SylvesterTransform", "AffineCouplingTransform",
]
