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
    theta; None when not estimated), ``u`` the spherical conditional modes and
    ``b = sigma Lambda u`` the random effects in MATLAB's order. ``cov_beta`` is MATLAB's
    'Conditional' covariance ``(X'CX - X'CA H^-1 A'CX)^-1`` with the observed information C at the mode.

    Pseudo-likelihood fits (MPL, REMPL) report the final pseudo-data LME, whose sigma is the
    ``ancillary`` when estimated (also for binomial/Poisson with ``dispersion_flag``): ``working``
    holds its response and weights ``(z, W)`` (None for other methods), so the LME can be rebuilt.
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
    working: tuple[np.ndarray, np.ndarray] | None = None  # pseudo-likelihood: (z, W) of the final LME
