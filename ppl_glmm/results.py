"""Frozen records produced by a fit (nothing is attached to an object after construction)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .engine.optimize import OptimizationSummary

__all__ = ["FitResult"]


@dataclass(frozen=True)
class FitResult:
    """Estimates at the optimum of one fit (internal names follow lme4).

    ``theta`` are the relative Cholesky entries, ``sigma`` the square root of the dispersion
    (1 when fixed), ``ancillary`` the family's other parameter (sigma, or negative binomial's
    theta; None for binomial and Poisson), ``u`` the spherical conditional modes and
    ``b = sigma Lambda u`` the random effects in MATLAB's order. ``cov_beta`` is MATLAB's
    'Conditional' covariance ``(X'CX - X'CA H^-1 A'CX)^-1`` with the observed information C at the mode.
    """

    fit_method: str
    beta: np.ndarray
    theta: np.ndarray
    sigma: float
    u: np.ndarray
    b: np.ndarray
    eta: np.ndarray  # conditional linear predictor on the used rows (offset included)
    log_likelihood: float
    cov_beta: np.ndarray
    x: np.ndarray  # optimiser's parameter vector
    optimization: OptimizationSummary
    singular: bool
    warnings: tuple[str, ...]
    y: np.ndarray  # response on MATLAB's scale (proportions for binomial), used rows
    ancillary: float | None = None  # the family's sigma, or negative binomial's theta
