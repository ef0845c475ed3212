"""Outer optimisation of the Laplace objective: BFGS with the exact gradient.

The objective is even in each column of a relative Cholesky factor (Lambda_r and Lambda_r with a
column negated give the same covariance), so theta is optimised without bounds and the signs are
made canonical afterwards (non-negative diagonal, lme4's convention). A diagonal that ends within
``SINGULAR_TOL`` of 0 is a singular (boundary) fit, as in lme4.

Refits start from the previous estimates with the previous inverse Hessian as BFGS's initial
matrix, which typically halves the number of evaluations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.optimize as so

from .laplace import InnerMode, LaplaceProblem, PirlsFailure, beta_precision

__all__ = ["OptimizationSummary", "canonical_theta", "glm_start", "hessian", "minimize"]

GTOL = 1e-5  # max|gradient|, scaled up for objectives above 1e4 (large n)
SINGULAR_TOL = 1e-4  # lme4's boundary tolerance on diagonal theta
GRADIENT_WARN = 1e-3  # |gradient| above this at the end is reported as a convergence problem


@dataclass(frozen=True)
class OptimizationSummary:
    """What the outer optimiser did (an auditable record of one fit)."""

    x: np.ndarray
    objective: float
    n_iterations: int
    n_evaluations: int
    converged: bool
    message: str
    max_gradient: float
    seconds: float
    inner_iterations: int


def canonical_theta(problem: LaplaceProblem, x: np.ndarray) -> np.ndarray:
    """Flip the sign of every Lambda_r column whose diagonal is negative."""
    x = x.copy()
    k0 = 0 if problem.inner_beta else problem.p
    entries = problem.re.layout.entries
    for k, (r, i, j) in enumerate(entries):
        if i == j and x[k0 + k] < 0:
            for kk, (rr, _, jj) in enumerate(entries):
                if rr == r and jj == j:
                    x[k0 + kk] = -x[k0 + kk]
    return x


def minimize(
    problem: LaplaceProblem,
    x0: np.ndarray,
    hess_inv0: np.ndarray | None = None,
    maxiter: int = 1000,
    f_scale: float | None = None,
) -> tuple[OptimizationSummary, InnerMode]:
    """BFGS from x0; ``f_scale`` (the objective's size, e.g. from the fit being refitted) sets gtol
    without an extra evaluation."""
    t0 = time.perf_counter()
    evals0 = problem.n_evals
    # the gradient is exact up to the inner solve, whose tolerance is relative to the objective's size
    f0 = problem.value(x0) if f_scale is None else f_scale
    options: dict = {"gtol": GTOL * max(1.0, 1e-4 * abs(f0)) if np.isfinite(f0) else GTOL, "maxiter": maxiter}
    if hess_inv0 is not None:
        options["hess_inv0"] = hess_inv0
    res = so.minimize(problem.value_and_grad, x0, jac=True, method="BFGS", options=options)
    x = canonical_theta(problem, res.x)
    beta, theta, phi = problem.unpack(x)
    mode = problem.inner(beta, theta, phi)
    g = problem.gradient(mode, phi)
    gmax = float(np.max(np.abs(g))) if g.size else 0.0
    converged = np.isfinite(mode.objective) and (bool(res.success) or gmax < GRADIENT_WARN)
    summary = OptimizationSummary(
        x=x,
        objective=mode.objective,
        n_iterations=int(res.nit),
        n_evaluations=problem.n_evals - evals0,
        converged=bool(converged),
        message=str(res.message),
        max_gradient=gmax,
        seconds=time.perf_counter() - t0,
        inner_iterations=mode.iterations,
    )
    return summary, mode


def initial_inverse_hessian(problem: LaplaceProblem, x0: np.ndarray, step: float = 1e-5) -> np.ndarray | None:
    """BFGS's starting matrix: the inverse of blockdiag(beta precision given theta, FD Hessian of the
    covariance-parameter block) at x0. beta and theta live on very different scales; starting from
    the identity cost BFGS tens of evaluations to learn that."""
    k = 0 if problem.inner_beta else problem.p
    P = x0.size
    u_saved, b_saved = problem.u_start.copy(), problem.beta_start.copy()
    try:
        H = np.zeros((P, P))
        if k:
            beta, theta, phi = problem.unpack(x0)
            H[:k, :k] = beta_precision(problem, problem.inner(beta, theta, phi))
        for j in range(k, P):
            h = step * max(1.0, abs(x0[j]))
            e = np.zeros(P)
            e[j] = h
            H[k:, j] = (problem.value_and_grad(x0 + e)[1][k:] - problem.value_and_grad(x0 - e)[1][k:]) / (
                2 * h
            )
        # far from the optimum the covariance block can be indefinite: use |eigenvalues|
        w, V = np.linalg.eigh(0.5 * (H[k:, k:] + H[k:, k:].T))
        floor = 1e-6 * max(1.0, float(np.max(np.abs(w)))) if w.size else 1.0
        H[k:, k:] = (V * np.maximum(np.abs(w), floor)) @ V.T
        np.linalg.cholesky(H)
        Hi = np.linalg.inv(H)
        return 0.5 * (Hi + Hi.T)
    except (np.linalg.LinAlgError, PirlsFailure):
        return None
    finally:
        problem.u_start, problem.beta_start = u_saved, b_saved


def hessian(problem: LaplaceProblem, x: np.ndarray, step: float = 1e-5) -> np.ndarray:
    """Symmetrised central-difference Jacobian of the exact gradient (outer parameters)."""
    P = x.size
    H = np.zeros((P, P))
    u_saved, b_saved = problem.u_start.copy(), problem.beta_start.copy()
    for k in range(P):
        h = step * max(1.0, abs(x[k]))
        e = np.zeros(P)
        e[k] = h
        gp = problem.value_and_grad(x + e)[1]
        gm = problem.value_and_grad(x - e)[1]
        H[:, k] = (gp - gm) / (2 * h)
    problem.u_start, problem.beta_start = u_saved, b_saved
    return 0.5 * (H + H.T)


def glm_start(problem: LaplaceProblem, beta0: np.ndarray) -> np.ndarray:
    """Fixed effects of the GLM without random effects (the inner step with Lambda = 0), from beta0."""
    saved = problem.inner_beta, problem.u_start, problem.beta_start
    problem.inner_beta = True
    problem.beta_start = np.asarray(beta0, dtype=float)
    try:
        mode = problem.inner(None, np.zeros(problem.n_theta), 0.0)
        return mode.beta.copy()
    finally:
        problem.inner_beta = saved[0]
        problem.u_start, problem.beta_start = saved[1], saved[2]
