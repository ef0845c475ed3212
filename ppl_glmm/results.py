"""Frozen records produced by a fit (nothing is attached to an object after construction)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .engine.optimize import OptimizationSummary

if TYPE_CHECKING:
    from .engine.laplace import LaplaceProblem
    from .fit_methods import FitSettings
    from .fitting import Workspace

__all__ = ["FitRecord", "FitResult"]


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
    # quadrature: points evaluated had nodes outside the family's range (the optimum found is that
    # of the region where the quadrature is defined; the fit's warnings say so)
    quadrature_edge: bool = False


@dataclass(frozen=True)
class FitRecord:
    """What inference on a fitted model reads: the workspace (design, family, link, PyMC model;
    shared with refits), the frozen :class:`FitResult` and the fit's settings. Inference functions
    take this record, never the facade, and change none of it."""

    ws: Workspace
    result: FitResult
    settings: FitSettings

    @property
    def design(self):
        return self.ws.design

    @property
    def n(self) -> int:
        return self.ws.design.n

    @property
    def p(self) -> int:
        return len(self.result.beta)

    @property
    def dfe(self) -> int:
        """N - p: MATLAB's residual degrees of freedom."""
        return self.n - self.p

    def blas_limit(self):
        """A context with BLAS threads as a fit of this model uses them: one when the dense part of
        the factorisation is small (thread wake-ups dominate: potri on sleepstudy's 36 x 36 block
        takes 30 ms with two threads on a busy machine, 0.03 ms with one), all above that."""
        from .blas import THREADS_ABOVE_DENSE, blas_limit

        dense = self.ws.re.dense_order + self.p
        return blas_limit(None if dense > THREADS_ABOVE_DENSE else 1)

    def problem(self) -> LaplaceProblem:
        """A fresh engine problem loaded with this fit's response, warm-started at its mode (for a
        pseudo-likelihood fit, the final pseudo-data LME). The PyMC model's observed container is
        not touched, so read-only methods never change shared state."""
        ws, res = self.ws, self.result
        if res.working is not None:
            from .pseudo import lme_problem

            return lme_problem(ws, res)
        d = ws.design
        k = ws.dist.observed_value(res.y, d.weights, d.binomial_size)
        problem = ws.new_problem(res.fit_method, k, swap=False, settings=self.settings)
        problem.u_start = problem.re.to_internal(res.u)
        problem.beta_start = res.beta.copy()
        return problem
