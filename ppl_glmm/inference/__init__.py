"""Inference on a fitted model, one module per thing computed. Every function takes the frozen
:class:`~ppl_glmm.results.FitRecord` (workspace, fit result, settings), never the facade.

* :mod:`.distributions` -- t, F, chi-square tails and quantiles (``scipy.special``).
* :mod:`.tables` -- coefficient tables, DF methods, information criteria.
* :mod:`.covariance_parameters` -- Wald intervals for SDs/correlations, joint-Hessian Cov(beta).
* :mod:`.profile` -- profile-likelihood intervals for SDs, correlations, sigma and theta.
"""

from .covariance_parameters import (
    beta_is_inner,
    covariance_tables,
    joint_hessian_cov_beta,
    natural_covariance,
    natural_estimates,
    optimizer_vector,
)
from .profile import check_profile, profile_deviance, profile_tables
from .tables import DF_METHODS, coefficient_table, degrees_of_freedom, model_criterion

__all__ = [
    "DF_METHODS",
    "beta_is_inner",
    "check_profile",
    "coefficient_table",
    "covariance_tables",
    "degrees_of_freedom",
    "joint_hessian_cov_beta",
    "model_criterion",
    "natural_covariance",
    "natural_estimates",
    "optimizer_vector",
    "profile_deviance",
    "profile_tables",
]
