"""Coefficient tables and information criteria.

* Fixed effects (MATLAB ``fixedEffects``): ``t = beta / SE``, DF = N - p ('residual') or inf
  ('none'), ``p = 2 P(T_DF > |t|)``, CI ``beta -/+ t_{1-alpha/2, DF} SE``.
* Criteria: with ``k = p + n_cov (+1 if the dispersion is estimated)`` and L the fit's
  log-likelihood with all constants (Laplace, restricted, or pseudo-likelihood): ``AIC = -2L + 2k``,
  ``BIC = -2L + k log n_eff``, ``Deviance = -2L``; n_eff = N, or N - p for REML and REMPL (MATLAB).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .distributions import t_ppf, t_sf

__all__ = ["DF_METHODS", "coefficient_table", "degrees_of_freedom", "model_criterion", "t_columns"]

DF_METHODS = ("residual", "none")


def degrees_of_freedom(dfmethod: str, dfe: float) -> float:
    """DF for MATLAB's DFMethod: 'residual' gives N - p, 'none' gives inf ('satterthwaite' is not
    available for GLMMs, as in MATLAB)."""
    from ..errors import InputError, InputTypeError

    if not isinstance(dfmethod, str):
        raise InputTypeError(f"dfmethod: expected 'residual' or 'none', got {dfmethod!r}")
    key = dfmethod.strip().lower()
    if key == "residual":
        return float(dfe)
    if key == "none":
        return float("inf")
    if key == "satterthwaite":
        raise InputError(
            "dfmethod: 'satterthwaite' is not available for a GLMM (as in MATLAB); use 'residual' or 'none'"
        )
    raise InputError(
        f"dfmethod: unknown value {dfmethod!r}; use 'residual' (DF = N - p) or 'none' (DF = inf)"
    )


def t_columns(estimate: np.ndarray, se: np.ndarray, df: float, alpha: float, se_name: str = "SE") -> dict:
    """Estimate, SE, tStat, DF, pValue, Lower, Upper as arrays (t = Estimate / SE, two-sided p,
    Estimate -/+ t_{1-alpha/2, DF} SE)."""
    estimate = np.asarray(estimate, dtype=float)
    se = np.asarray(se, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = estimate / se
    crit = t_ppf(1 - alpha / 2, df)
    return {
        "Estimate": estimate,
        se_name: se,
        "tStat": t,
        "DF": np.full(len(estimate), df),
        "pValue": 2 * t_sf(np.abs(t), df),
        "Lower": estimate - crit * se,
        "Upper": estimate + crit * se,
    }


def coefficient_table(
    names, estimate: np.ndarray, se: np.ndarray, df: float, alpha: float = 0.05
) -> pd.DataFrame:
    """Name, Estimate, SE, tStat, DF, pValue, Lower, Upper (one row per estimate)."""
    return pd.DataFrame({"Name": list(names), **t_columns(estimate, se, df, alpha)})


def model_criterion(loglik: float, k: int, n: int) -> pd.DataFrame:
    """AIC, BIC, LogLikelihood, Deviance; ``n`` is N, or N - p for a restricted criterion (MATLAB)."""
    return pd.DataFrame(
        {
            "AIC": [-2 * loglik + 2 * k],
            "BIC": [-2 * loglik + k * np.log(n)],
            "LogLikelihood": [loglik],
            "Deviance": [-2 * loglik],
        }
    )
