"""Inference on a fitted model, one module per thing computed. Every function takes the frozen
:class:`~ppl_glmm.results.FitRecord` (workspace, fit result, settings), never the facade.

* :mod:`.distributions` -- t, F, chi-square tails and quantiles (``scipy.special``).
* :mod:`.tables` -- coefficient tables, DF methods, information criteria.
* :mod:`.covariance_parameters` -- Wald intervals for SDs/correlations, joint-Hessian Cov(beta).
* :mod:`.joint` -- the joint [beta; b] covariance (MATLAB's sigma^2 V) and lme4's condVar.
* :mod:`.random_effects` -- random-effects tables with SEPred (MATLAB ``randomEffects``).
* :mod:`.hypothesis` -- ``coef_test`` (H beta + K b = c) and ``anova`` (marginal F per term).
* :mod:`.prediction` -- ``predict`` with pointwise or simultaneous intervals.
"""

from .covariance_parameters import (
    beta_is_inner,
    covariance_tables,
    joint_hessian_cov_beta,
    natural_covariance,
    natural_estimates,
    optimizer_vector,
)
from .hypothesis import CoefTestResult, anova_table, check_hypothesis, coef_test, fixed_terms
from .joint import JointCovariance, joint_covariance
from .prediction import predict
from .random_effects import random_effects_interval, random_effects_table, re_names
from .tables import DF_METHODS, coefficient_table, degrees_of_freedom, model_criterion

__all__ = [
    "DF_METHODS",
    "CoefTestResult",
    "JointCovariance",
    "anova_table",
    "beta_is_inner",
    "check_hypothesis",
    "coef_test",
    "coefficient_table",
    "covariance_tables",
    "degrees_of_freedom",
    "fixed_terms",
    "joint_covariance",
    "joint_hessian_cov_beta",
    "model_criterion",
    "natural_covariance",
    "natural_estimates",
    "optimizer_vector",
    "predict",
    "random_effects_interval",
    "random_effects_table",
    "re_names",
]
