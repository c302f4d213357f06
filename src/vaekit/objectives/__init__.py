"""Training objectives: ``loss, metrics = objective(model, batch, step)``.

- :class:`ELBO` with KL weighting (constant, linear or logistic warm-up, entropy warm-up,
  free bits) and :class:`IWAE`, the importance-weighted bound (:mod:`.elbo`).
"""

from .elbo import ELBO, IWAE, KLWeight, Objective, logmeanexp

__all__ = ["KLWeight", "Objective", "ELBO", "IWAE", "logmeanexp"]
