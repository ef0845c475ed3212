"""Inference on a fitted model: coefficient tables, information criteria, covariance-parameter CIs.

* Fixed effects (MATLAB ``fixedEffects`` with DFMethod 'residual'): ``t = beta / SE``, DF = N - p,
  ``p = 2 P(T_DF > |t|)``, CI ``beta -/+ t_{1-alpha/2, DF} SE``.
* Criteria: with ``k = p + n_theta (+1 if the dispersion is estimated)`` and L the fit's
  log-likelihood with all constants (Laplace, restricted, or pseudo-likelihood): ``AIC = -2L + 2k``,
  ``BIC = -2L + k log n_eff``, ``Deviance = -2L``; n_eff = N, or N - p for REML and REMPL (MATLAB).
* Covariance parameters: Wald intervals on the natural scale (log SD, ``log((1+rho)/(1-rho))``,
  log sigma) with a normal quantile, from the Hessian of the fit's objective (the negative Laplace,
  restricted or final pseudo-data log-likelihood) in (beta unless it is inner, natural parameters),
  mapped back to SD/correlation.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.special as sc

from .errors import GLMMWarning
from .fit_methods import METHODS

__all__ = [
    "beta_is_inner",
    "coefficient_table",
    "covariance_tables",
    "joint_hessian_cov_beta",
    "model_criterion",
    "natural_covariance",
]


# Student t and normal quantiles from scipy.special, which the fit imports anyway: these are the
# functions scipy.stats.t and scipy.stats.norm call (scipy 1.18), without importing scipy.stats
# (~0.3 s at start-up, no other use on a fit's path).


def _t_sf(x, df):
    """``scipy.stats.t.sf(x, df)``."""
    return sc.stdtr(df, -np.asarray(x, dtype=float))


def _t_ppf(q, df):
    """``scipy.stats.t.ppf(q, df)`` (stdtrit gives +inf at q = 0; the quantile there is -inf)."""
    q = np.asarray(q, dtype=float)
    return np.where((q == 0) & (np.asarray(df) > 0), -np.inf, sc.stdtrit(df, q))[()]


def coefficient_table(
    names, beta: np.ndarray, cov: np.ndarray, dfe: float, alpha: float = 0.05
) -> pd.DataFrame:
    se = np.sqrt(np.diag(cov))
    t = beta / se
    p = 2 * _t_sf(np.abs(t), dfe)
    crit = _t_ppf(1 - alpha / 2, dfe)
    return pd.DataFrame(
        {
            "Name": list(names),
            "Estimate": beta,
            "SE": se,
            "tStat": t,
            "DF": np.full(len(beta), dfe),
            "pValue": p,
            "Lower": beta - crit * se,
            "Upper": beta + crit * se,
        }
    )


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


def beta_is_inner(model) -> bool:
    """True when beta is found in the inner step (ApproximateLaplace, REML, pseudo-likelihood), so
    the optimiser vector and the natural parameters hold no beta."""
    return METHODS[model.fit_method].inner_beta


def _natural_to_x(model, z: np.ndarray) -> np.ndarray:
    """Optimiser vector x from [beta (Laplace only), natural params per term, (log sigma)]."""
    ws, res = model._ws, model._result
    layout = ws.layout
    has_phi = res.ancillary is not None  # log sigma (or NB's log theta) is in x
    k = 0 if beta_is_inner(model) else len(res.beta)
    beta = z[:k]
    log_sigma = z[-1] if has_phi else 0.0
    sigma = np.exp(log_sigma) if model.dispersion_estimated else 1.0
    psis = []
    for sl, q in zip(layout.slices(), layout.sizes):
        zr = z[k + sl.start : k + sl.stop]
        psis.append(layout.psi_from_canonical(layout.from_natural(zr, q), q))
    theta = layout.theta_from_psis(psis, sigma)
    parts = [beta, theta] + ([[log_sigma]] if has_phi else [])
    return np.concatenate(parts)


def _x_to_natural(model) -> np.ndarray:
    ws, res = model._ws, model._result
    layout = ws.layout
    parts = [] if beta_is_inner(model) else [res.beta]
    for psi, q in zip(layout.covariances(res.theta, res.sigma), layout.sizes):
        parts.append(layout.to_natural(layout.canonical(psi), q))
    if res.ancillary is not None:
        parts.append([np.log(res.ancillary)])
    return np.concatenate(parts)


def natural_covariance(model) -> np.ndarray | None:
    """Inverse Hessian of the negative Laplace log-likelihood in natural parameters.

    Returns None for a boundary (singular) fit: an SD at 0 has log SD = -inf.
    """
    if model.singular:
        return None
    z0 = _x_to_natural(model)
    if not np.all(np.isfinite(z0)):
        return None
    problem = model._problem()
    P = z0.size
    saved_u, saved_b = problem.u_start.copy(), problem.beta_start.copy()

    def grad(z):
        x = _natural_to_x(model, z)
        _, g = problem.value_and_grad(x)
        # chain rule: dx/dz by central differences of the (cheap, closed-form) map
        J = np.empty((x.size, P))
        for j in range(P):
            h = 1e-6 * max(1.0, abs(z[j]))
            e = np.zeros(P)
            e[j] = h
            J[:, j] = (_natural_to_x(model, z + e) - _natural_to_x(model, z - e)) / (2 * h)
        return J.T @ g

    H = np.zeros((P, P))
    try:
        for j in range(P):
            h = 1e-4 * max(1.0, abs(z0[j]))
            e = np.zeros(P)
            e[j] = h
            H[:, j] = (grad(z0 + e) - grad(z0 - e)) / (2 * h)
    finally:
        problem.u_start, problem.beta_start = saved_u, saved_b
    H = 0.5 * (H + H.T)
    try:
        return np.linalg.inv(H)
    except np.linalg.LinAlgError:
        return None


def covariance_tables(model, alpha: float = 0.05) -> list[pd.DataFrame]:
    """MATLAB ``covarianceParameters`` stats: one table per term, then the Error table."""
    ws, res = model._ws, model._result
    layout = ws.layout
    k0 = 0 if beta_is_inner(model) else len(res.beta)
    zcrit = sc.ndtri(1 - alpha / 2) if alpha is not None else np.nan
    cov = natural_covariance(model) if alpha is not None else None
    if cov is None and alpha is not None:
        warnings.warn(
            "covariance_parameters: confidence intervals unavailable (a parameter is on the boundary "
            "or the Hessian is singular); Lower/Upper are NaN",
            GLMMWarning,
            stacklevel=3,
        )
    z0 = _x_to_natural(model)
    tables = []
    for term, sl, psi in zip(ws.design.terms, layout.slices(), layout.covariances(res.theta, res.sigma)):
        q = term.q_r
        canon = layout.canonical(psi)
        rows = []
        k = 0
        for j in range(q):
            for i in range(j, q):
                idx = k0 + sl.start + k
                lo = hi = np.nan
                if cov is not None and cov[idx, idx] >= 0:
                    half = zcrit * np.sqrt(cov[idx, idx])
                    zl, zh = z0[idx] - half, z0[idx] + half
                    if i == j:
                        lo, hi = np.exp(zl), np.exp(zh)
                    else:
                        lo, hi = np.tanh(zl / 2), np.tanh(zh / 2)
                rows.append(
                    {
                        "Group": term.group,
                        "Name1": term.names[i],
                        "Name2": term.names[j],
                        "Type": "std" if i == j else "corr",
                        "Estimate": canon[k],
                        "Lower": lo,
                        "Upper": hi,
                    }
                )
                k += 1
        tables.append(pd.DataFrame(rows))
    if model.dispersion_estimated and cov is not None:
        half = zcrit * np.sqrt(cov[-1, -1])
        lo, hi = res.sigma * np.exp(-half), res.sigma * np.exp(half)
    elif model.dispersion_estimated:
        lo = hi = np.nan
    else:
        lo = hi = 1.0
    rows = [{"Group": "Error", "Name": "sqrt(Dispersion)", "Estimate": res.sigma, "Lower": lo, "Upper": hi}]
    anc = ws.dist.ancillary
    if anc is not None and not anc.scales_random_effects:  # negative binomial's theta
        lo = hi = np.nan
        if cov is not None and cov[-1, -1] >= 0:
            half = zcrit * np.sqrt(cov[-1, -1])
            lo, hi = res.ancillary * np.exp(-half), res.ancillary * np.exp(half)
        rows.append(
            {"Group": "Error", "Name": anc.label, "Estimate": res.ancillary, "Lower": lo, "Upper": hi}
        )
    tables.append(pd.DataFrame(rows))
    return tables


def joint_hessian_cov_beta(model) -> np.ndarray:
    """MATLAB 'JointHessian': the beta block of the (pseudo-)inverse Hessian of the negative Laplace
    log-likelihood over all parameters (Laplace only). It accounts for covariance-parameter
    uncertainty; the beta block is the same whatever parameterisation of theta is used."""
    from .engine.optimize import hessian

    problem = model._problem()
    H = hessian(problem, model._result.x)
    p = len(model._result.beta)
    return np.linalg.pinv(H)[:p, :p]
