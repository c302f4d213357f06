"""Estimators on trained models: the IWAE log-likelihood, AIS and BDMC, local optimisation, inference gaps,
new-group inference for group-latent models.

Every estimator sees a model only through the protocol of
:class:`vaekit.models.LatentVariableModel`.
"""

from .ais import (AISResult, BDMCResult, HMCSettings, ais_log_likelihood, ais_schedule, bdmc, check_annealable, combine_max,
                  reverse_ais)
from .gaps import GapColumn, gap_table, inference_gaps, write_gap_report
from .groups import FewGroupsWarning, data_efficiency_curve, evaluate_groups, infer_new_group
from .iwae import IWAEResult, iwae_log_likelihood
from .local_opt import LocalOptResult, optimize_local_posterior

__all__ = ["IWAEResult", "iwae_log_likelihood", "AISResult", "BDMCResult", "HMCSettings", "ais_log_likelihood", "ais_schedule", "bdmc",
           "check_annealable", "combine_max", "reverse_ais", "LocalOptResult", "optimize_local_posterior", "GapColumn", "gap_table",
           "inference_gaps", "write_gap_report", "data_efficiency_curve", "evaluate_groups", "infer_new_group", "FewGroupsWarning"]
