"""Covariance parameters: Wald intervals, and the joint-Hessian covariance of beta.

Wald intervals (MATLAB ``covarianceParameters``) are formed on the natural scale (log SD,
``log((1+rho)/(1-rho))`` -- for CompSymm's common correlation ``log((rho - lo)/(1 - rho))``,
lo = -1/(q-1) -- and log sigma; one row per parameter of each term's covariance pattern) with a
normal quantile, from the Hessian of the fit's objective (the negative Laplace, restricted or final
pseudo-data log-likelihood) in (beta unless it is inner, natural parameters), and mapped back to
SD/correlation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import GLMMWarning, warn
from ..fit_methods import METHODS
from ..results import FitRecord
from .distributions import norm_ppf

__all__ = [
    "beta_is_inner",
    "covariance_tables",
    "held_terms",
    "joint_hessian_cov_beta",
    "natural_covariance",
    "natural_estimates",
    "optimizer_vector",
]


def beta_is_inner(fit: FitRecord) -> bool:
    """True when beta is found in the inner step (ApproximateLaplace, REML, pseudo-likelihood), so
    the optimiser vector and the natural parameters hold no beta."""
    return METHODS[fit.result.fit_method].inner_beta


def optimizer_vector(fit, z: np.ndarray) -> np.ndarray:
    """Optimiser vector x from [beta (Laplace only), natural params per term, (log sigma)].

    Per term the natural parameters are those of its covariance pattern (one per reported row:
    ``ppl_glmm.covariance_patterns.TermPattern.natural``); Psi_r from them, theta_r =
    vech(chol(Psi_r / sigma^2)), and x holds the pattern's parameters for theta."""
    ws, res = fit.ws, fit.result
    layout, patterns = ws.layout, ws.patterns
    has_phi = res.ancillary is not None  # log sigma (or NB's log theta) is in x
    k = 0 if beta_is_inner(fit) else len(res.beta)
    beta = z[:k]
    log_sigma = z[-1] if has_phi else 0.0
    sigma = np.exp(log_sigma) if _dispersion_estimated(fit) else 1.0
    psis = [
        t.psi_from_natural(z[k + sl.start : k + sl.stop])
        for t, sl in zip(patterns.terms, patterns.param_slices())
    ]
    theta = layout.theta_from_psis(psis, sigma)
    parts = [beta, ws.cov_from_theta(theta)] + ([[log_sigma]] if has_phi else [])
    return np.concatenate(parts)


def natural_estimates(fit: FitRecord) -> np.ndarray:
    """[beta (Laplace only), natural params per term (its pattern's), (log sigma)] at the fit."""
    ws, res = fit.ws, fit.result
    parts = [] if beta_is_inner(fit) else [res.beta]
    for psi, t in zip(ws.layout.covariances(res.theta, res.sigma), ws.patterns.terms):
        parts.append(t.natural(psi))
    if res.ancillary is not None:
        parts.append([np.log(res.ancillary)])
    return np.concatenate(parts)


def held_terms(fit: FitRecord) -> np.ndarray:
    """Which random-effects terms are on the boundary (a variance at zero): their parameters are
    held at their estimates by :func:`natural_covariance`."""
    from ..fitting import boundary_terms

    if not fit.result.singular:
        return np.zeros(len(fit.ws.layout.sizes), dtype=bool)
    return boundary_terms(fit.ws, fit.result.theta, fit.result.sigma)


def _zero_columns(fit: FitRecord, r: int) -> set[int]:
    """The columns of term r whose Lambda diagonal is below the boundary tolerance."""
    from ..engine.optimize import SINGULAR_TOL
    from ..fitting import boundary_unit

    ws = fit.ws
    theta = fit.result.theta[ws.layout.slices()[r]]
    entries = [(i, j) for t, i, j in ws.layout.entries if t == r]
    tol = SINGULAR_TOL * boundary_unit(ws, fit.result.sigma)
    return {i for (i, j), v in zip(entries, theta) if i == j and abs(v) < tol}


def natural_covariance(fit: FitRecord) -> np.ndarray | None:
    """Inverse Hessian of the negative Laplace log-likelihood in natural parameters.

    In a singular fit, the parameters of each term on the boundary (:func:`held_terms`: an SD at 0
    has log SD = -inf; under a Diagonal pattern only its SDs at 0, under a boolean pattern only
    its blocks with an SD at 0 (or a correlation at +-1), under CompSymm only its
    correlation when that is at a bound and the SD is not 0) are held at their estimates: the
    other parameters' covariance is the inverse of the Hessian of the free parameters alone (the
    reduced Hessian of a constrained optimum), and the held ones' rows and columns are NaN. Returns
    None when the free parameters' Hessian cannot be formed or inverted.
    """
    from ..engine.optimize import beta_basis

    z0 = natural_estimates(fit)
    P = z0.size
    k0 = 0 if beta_is_inner(fit) else len(fit.result.beta)
    free = np.ones(P, dtype=bool)
    patterns = fit.ws.patterns
    for r, (held, sl, pattern) in enumerate(zip(held_terms(fit), patterns.param_slices(), patterns.terms)):
        if not held:
            continue
        if pattern.kind in ("Diagonal", "Pattern"):
            # independent SDs, or blocks (a boolean pattern): hold only the blocks with a column at
            # zero (a block's Cholesky entries stay in the block; a correlation at +-1 zeroes one)
            zero = _zero_columns(fit, r)
            mask = np.eye(pattern.q, dtype=bool) if pattern.mask is None else np.array(pattern.mask)
            held_cols = {int(i) for z in zero for i in np.flatnonzero(mask[z])}
            for k, (i, _) in enumerate(pattern.rows):
                free[k0 + sl.start + k] = i not in held_cols
        elif pattern.kind == "CompSymm" and pattern.q > 1 and 0 not in _zero_columns(fit, r):
            # a common correlation at its bound with a positive SD: hold only the correlation (rows
            # (std, corr)); the SD's interval is then that of the model with rho fixed there
            free[k0 + sl.start + 1] = False
        else:
            free[k0 + sl.start : k0 + sl.stop] = False
    if not free.any() or not np.all(np.isfinite(z0[free])):
        return None
    idx = np.flatnonzero(free)
    problem = fit.problem()
    saved_u, saved_b = problem.u_start.copy(), problem.beta_start.copy()

    def grad(z):
        x = optimizer_vector(fit, z)
        _, g = problem.value_and_grad(x)
        # chain rule: dx/dz by central differences of the (cheap, closed-form) map
        J = np.empty((x.size, idx.size))
        for c, j in enumerate(idx):
            h = 1e-6 * max(units[j], abs(z[j]))
            e = np.zeros(P)
            e[j] = h
            J[:, c] = (optimizer_vector(fit, z + e) - optimizer_vector(fit, z - e)) / (2 * h)
        return J.T @ g

    # beta's steps in the link scale's units (natural covariance parameters are logs or angles),
    # in the coordinates beta~ = T^-1 beta of engine.optimize.beta_basis, where a unit step moves
    # eta by rms 1 (steps in beta itself ignored the columns' scales: x + 1e4 gave an SD's Wald
    # interval 45 times too narrow); H~ = D' H D is inverted, and cov = D H~^-1 D'
    units = np.ones(P)
    D = np.eye(P)
    if not beta_is_inner(fit):
        p = len(fit.result.beta)
        if problem.fd_units is not None:
            units[:p] = problem.fd_units[:p]
        D[:p, :p] = beta_basis(problem.X)
    zt = np.linalg.solve(D, z0)
    Di = D[np.ix_(idx, idx)]  # (D is block diagonal and beta is always free)
    H = np.zeros((idx.size, idx.size))
    try:
        for c, j in enumerate(idx):
            h = 1e-4 * max(units[j], abs(zt[j]))
            e = h * D[:, j]
            H[:, c] = Di.T @ (grad(z0 + e) - grad(z0 - e)) / (2 * h)
    except np.linalg.LinAlgError:
        # a step of the differences left the positive definite covariances (a term whose Psi is
        # nearly singular without a zero Lambda diagonal): no Hessian, the intervals are NaN
        return None
    finally:
        problem.u_start, problem.beta_start = saved_u, saved_b
    H = 0.5 * (H + H.T)
    try:
        inv = Di @ np.linalg.inv(H) @ Di.T
    except np.linalg.LinAlgError:
        return None
    cov = np.full((P, P), np.nan)
    cov[np.ix_(idx, idx)] = inv
    return cov


def covariance_tables(fit: FitRecord, alpha: float = 0.05, natural=None) -> list[pd.DataFrame]:
    """MATLAB ``covarianceParameters`` stats: one table per term, then the Error table.
    ``natural()``: :func:`natural_covariance` of the fit, when the caller keeps it."""
    ws, res = fit.ws, fit.result
    k0 = 0 if beta_is_inner(fit) else len(res.beta)
    zcrit = norm_ppf(1 - alpha / 2) if alpha is not None else np.nan
    cov = (natural() if natural is not None else natural_covariance(fit)) if alpha is not None else None
    if cov is None and alpha is not None:
        warn(
            "covariance_parameters: confidence intervals unavailable (the Hessian of the covariance "
            "parameters is singular); Lower/Upper are NaN",
            GLMMWarning,
        )
    elif alpha is not None and np.isnan(cov).any():
        groups = ", ".join(t.group for t, held in zip(ws.design.terms, held_terms(fit)) if held)
        warn(
            f"covariance_parameters: the random-effects term(s) of {groups} are on the boundary (a "
            "variance at zero or a correlation at its bound): the Lower/Upper of their parameters "
            "there are NaN; the other intervals hold them at their estimates",
            GLMMWarning,
        )
    z0 = natural_estimates(fit)
    tables = []
    patterns = ws.patterns
    psis = ws.layout.covariances(res.theta, res.sigma)
    for term, pat, sl, psi in zip(ws.design.terms, patterns.terms, patterns.param_slices(), psis):
        canon = pat.canonical_rows(psi)
        rows = []
        for k, (i, j) in enumerate(pat.rows):
            idx = k0 + sl.start + k
            lo = hi = np.nan
            if cov is not None and cov[idx, idx] >= 0:
                half = zcrit * np.sqrt(cov[idx, idx])
                lo, hi = pat.from_natural_rows_at(k, np.array([z0[idx] - half, z0[idx] + half]))
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
        table = pd.DataFrame(rows)
        table.attrs["title"] = f"Covariance Type: {pat.type_name}"
        tables.append(table)
    if _dispersion_estimated(fit) and cov is not None and cov[-1, -1] >= 0:
        half = zcrit * np.sqrt(cov[-1, -1])
        lo, hi = res.sigma * np.exp(-half), res.sigma * np.exp(half)
    elif _dispersion_estimated(fit):
        lo = hi = np.nan
    else:
        lo = hi = 1.0
    rows = [{"Group": "Error", "Name": "sqrt(Dispersion)", "Estimate": res.sigma, "Lower": lo, "Upper": hi}]
    anc = ws.dist.ancillary
    if anc is not None and not anc.scales_random_effects:  # negative binomial's theta
        lo = hi = np.nan
        if cov is not None and cov[-1, -1] >= 0:
            half = zcrit * np.sqrt(cov[-1, -1])
            with np.errstate(over="ignore"):  # theta at its Poisson limit: [0, inf]
                lo, hi = res.ancillary * np.exp(-half), res.ancillary * np.exp(half)
        rows.append(
            {"Group": "Error", "Name": anc.label, "Estimate": res.ancillary, "Lower": lo, "Upper": hi}
        )
    tables.append(pd.DataFrame(rows))
    return tables


def joint_hessian_cov_beta(fit: FitRecord) -> np.ndarray:
    """MATLAB 'JointHessian': the beta block of the (pseudo-)inverse Hessian of the negative Laplace
    log-likelihood over all parameters (Laplace only). It accounts for covariance-parameter
    uncertainty; the beta block is the same whatever parameterisation of theta is used."""
    from ..engine.optimize import hessian_in_basis

    problem = fit.problem()
    Ht, D = hessian_in_basis(problem, fit.result.x)  # (H^-1 = D H~^-1 D': see hessian_in_basis)
    p = len(fit.result.beta)
    return (D @ np.linalg.pinv(Ht) @ D.T)[:p, :p]


def _dispersion_estimated(fit: FitRecord) -> bool:
    """MATLAB's DispersionEstimated (see ``GeneralizedLinearMixedModel.dispersion_estimated``)."""
    if METHODS[fit.result.fit_method].pseudo:
        return fit.result.ancillary is not None
    return fit.ws.dist.has_dispersion
