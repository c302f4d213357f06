"""Estimators on trained models: the IWAE log-likelihood (more to come: AIS, gaps).

Every estimator sees a model only through the protocol of
:class:`vaekit.models.LatentVariableModel`.
"""

from .iwae import IWAEResult, iwae_log_likelihood
from .local_opt import LocalOptResult, optimize_local_posterior

__all__ = ["IWAEResult", "iwae_log_likelihood", "LocalOptResult", "optimize_local_posterior"]
