"""Training objectives: ``loss, metrics = objective(model, batch, step)``.

- :class:`ELBO` with KL weighting (constant, linear or logistic warm-up, entropy warm-up,
  free bits, NVAE KL balancing) and :class:`IWAE`, the importance-weighted bound (:mod:`.elbo`);
- :class:`CapacityObjective`, the capacity-controlled objective of JointVAE (:mod:`.capacity`).
"""

from .capacity import CapacityObjective, linear_capacity
from .elbo import ELBO, IWAE, KLWeight, Objective, logmeanexp

__all__ = ["KLWeight", "Objective", "ELBO", "IWAE", "logmeanexp", "CapacityObjective", "linear_capacity"]
