"""Inference on a fitted model, one module per thing computed. Every function takes the frozen
:class:`~ppl_glmm.results.FitRecord` (workspace, fit result, settings), never the facade.

* :mod:`.distributions` -- t, F, chi-square tails and quantiles (``scipy.special``).
* :mod:`.tables` -- coefficient tables, DF methods, information criteria.
* :mod:`.covariance_parameters` -- Wald intervals for SDs/correlations, joint-Hessian Cov(beta).
* :mod:`.compare` -- likelihood-ratio comparison of two fits, nesting checks (``compare``).
* :mod:`.residuals` -- raw, Pearson and deviance residuals.
* :mod:`.goodness` -- SSE, SSR, SST and R-squared.
* :mod:`.joint` -- the joint [beta; b] covariance (MATLAB's sigma^2 V) and lme4's condVar.
* :mod:`.random_effects` -- random-effects tables with SEPred (MATLAB ``randomEffects``).
* :mod:`.hypothesis` -- ``coef_test`` (H beta + K b = c) and ``anova`` (marginal F per term).
* :mod:`.prediction` -- ``predict`` with pointwise or simultaneous intervals.
* :mod:`.profile` -- profile-likelihood intervals for SDs, correlations, sigma and theta.
"""

from .compare import ComparedModel, compare_models
from .covariance_parameters import (
    beta_is_inner,
    covariance_tables,
    held_terms,
    joint_hessian_cov_beta,
    natural_covariance,
    natural_estimates,
    optimizer_vector,
)
from .goodness import Rsquared, SumsOfSquares, rsquared, sums_of_squares
from .hypothesis import CoefTestResult, anova_table, check_hypothesis, coef_test, fixed_terms
from .joint import JointCovariance, joint_covariance
from .prediction import predict
from .profile import check_profile, profile_deviance, profile_tables
from .random_effects import random_effects_interval, random_effects_table, re_names
from .residuals import check_kind as check_residual_kind
from .residuals import residuals
from .tables import DF_METHODS, coefficient_table, degrees_of_freedom, model_criterion

__all__ = [
    "DF_METHODS",
    "CoefTestResult",
    "ComparedModel",
    "JointCovariance",
    "Rsquared",
    "SumsOfSquares",
    "anova_table",
    "beta_is_inner",
    "check_hypothesis",
    "check_profile",
    "check_residual_kind",
    "coef_test",
    "coefficient_table",
    "compare_models",
    "covariance_tables",
    "degrees_of_freedom",
    "fixed_terms",
    "held_terms",
    "joint_covariance",
    "joint_hessian_cov_beta",
    "model_criterion",
    "natural_covariance",
    "natural_estimates",
    "optimizer_vector",
    "predict",
    "profile_deviance",
    "profile_tables",
    "random_effects_interval",
    "random_effects_table",
    "re_names",
    "residuals",
    "rsquared",
    "sums_of_squares",
]
