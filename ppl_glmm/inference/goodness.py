"""Sums of squares and R-squared (MATLAB's SSE, SSR, SST and Rsquared of a GLME).

From the conditional fitted values F = mu-hat (with b-hat) on the N rows used and the weights
``weff = w_eff / v(F)`` (w_eff = prior weight x BinomialSize for binomial, the prior weight
otherwise; v the variance function, ``F + F^2 / theta`` for the negative binomial):

* ``SSE = sum weff (y - F)^2``;
* ``SSR = sum weff (F - Fbar)^2`` with ``Fbar = sum weff F / sum weff``;
* ``SST = SSE + SSR`` (MATLAB's definition, not the usual total sum of squares);
* ``Rsquared.ordinary = 1 - SSE / SST``, ``Rsquared.adjusted = 1 - (SSE / SST) (N - 1) / DFE``
  with DFE = N - p. MATLAB inherits these from classreg; its exact formula for a GLME is
  unverified (docs/algorithms.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..results import FitRecord
from .residuals import fitted_mean, variance_weights

__all__ = ["Rsquared", "SumsOfSquares", "rsquared", "sums_of_squares"]


@dataclass(frozen=True)
class SumsOfSquares:
    sse: float
    ssr: float
    sst: float


@dataclass(frozen=True)
class Rsquared:
    """MATLAB's ``Rsquared`` struct: ``ordinary`` (Ordinary) and ``adjusted`` (Adjusted)."""

    ordinary: float
    adjusted: float


def sums_of_squares(fit: FitRecord) -> SumsOfSquares:
    """SSE, SSR and SST = SSE + SSR (module docstring)."""
    F = fitted_mean(fit, conditional=True)
    weff = variance_weights(fit, F)
    sse = float(np.sum(weff * (fit.result.y - F) ** 2))
    fbar = float(np.sum(weff * F) / np.sum(weff))
    ssr = float(np.sum(weff * (F - fbar) ** 2))
    return SumsOfSquares(sse, ssr, sse + ssr)


def rsquared(fit: FitRecord) -> Rsquared:
    """Ordinary 1 - SSE/SST and Adjusted 1 - (SSE/SST)(N - 1)/DFE."""
    ss = sums_of_squares(fit)
    ratio = ss.sse / ss.sst
    return Rsquared(1.0 - ratio, 1.0 - ratio * (fit.n - 1) / fit.dfe)
