"""Outer optimisation of the Laplace objective: preconditioned BFGS with the exact gradient.

The objective is even in each column of a relative Cholesky factor (Lambda_r and Lambda_r with a
column negated give the same covariance), so theta is optimised without bounds and the signs are
made canonical afterwards (non-negative diagonal, lme4's convention). A diagonal that ends within
``SINGULAR_TOL`` of 0 is a singular (boundary) fit, as in lme4.

Scale-free convergence. BFGS runs in coordinates z with x = x0 + S z, S S' = P an approximate
inverse Hessian (at the start of a fit: the beta precision and a finite-difference Hessian of the
covariance block; on refit: the previous fit's inverse Hessian). In z one unit is about one
standard error, so the test ``max|S'g| < GTOL`` and the Newton decrement

    lambda = sqrt(g' H^-1 g)      (2 x the predicted decrease of f, in log-likelihood units)

do not depend on the response's scale (counts of 1e9, a normal response times 1e-6) nor on large
constants in the log-likelihood, whose rounding noise can stall BFGS's line search. When BFGS stops
with lambda above ``GTOL``, Newton steps on a finite-difference Hessian of the exact gradient finish
the fit; those use gradients only. The fit counts as converged when lambda < ``CONVERGED_TOL``
(lme4 flags a scaled gradient above 2e-3).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import scipy.optimize as so

from .laplace import (
    _MAX_INNER,
    InnerMode,
    LaplaceProblem,
    PirlsFailure,
    beta_precision,
    final_step_due,
    newton_converged,
    step_accepted,
)

__all__ = [
    "IterationRecord",
    "OptimizationSummary",
    "beta_basis",
    "canonical_theta",
    "glm_start",
    "hessian",
    "hessian_in_basis",
    "minimize",
]

GTOL = 3e-6  # max|S'g|: the gradient in standard-error units, BFGS's stopping test
POLISH_ABOVE = 1e-4  # Newton decrement after BFGS above which Newton steps finish the fit
CONVERGED_TOL = 1e-3  # Newton decrement at the optimum below which the fit counts as converged
FINISH_BELOW = 1e-8  # a profiled problem's decrement after BFGS above which one more step is taken
SINGULAR_TOL = 1e-4  # lme4's boundary tolerance on diagonal theta
_POLISH_STEPS = 8


@dataclass(frozen=True)
class OptimizationSummary:
    """What the outer optimiser did (an auditable record of one fit).

    ``newton_decrement`` is sqrt(g' H^-1 g) at the optimum (scale-free); ``max_gradient`` is
    max|g| in the parameters' own units.
    """

    x: np.ndarray
    objective: float
    n_iterations: int
    n_evaluations: int
    converged: bool
    message: str
    max_gradient: float
    seconds: float
    inner_iterations: int
    newton_decrement: float = np.nan
    newton_steps: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "x", _read_only(self.x))  # the record's own copy (it is frozen)

    def __setstate__(self, state: dict) -> None:  # unpickled arrays are writeable again
        self.__dict__.update(state, x=_read_only(state["x"]))


def _read_only(x) -> np.ndarray:
    x = np.array(x, dtype=float)
    x.flags.writeable = False
    return x


@dataclass(frozen=True)
class IterationRecord:
    """One iteration of the outer optimiser, for ``minimize``'s ``callback`` (verbose output).

    ``stage`` is 'bfgs' or 'newton'; ``objective`` and ``max_gradient`` (max|g| in the parameters'
    own units) are at the new iterate, ``max_step`` is max|x_new - x_old|; ``inner_iterations``
    holds the inner step's iterations of each inner solve made in this iteration (for 'newton',
    the finite-difference Hessian's included)."""

    stage: str
    iteration: int
    objective: float
    max_gradient: float
    max_step: float
    inner_iterations: tuple[int, ...]


class _EvaluationLog:
    """What ``minimize`` reports to its callback, from the evaluations it makes anyway: (f, g) of
    each point BFGS evaluates (its iterate is the line search's last accepted point, so the values
    are looked up, never recomputed), and, while :meth:`counting`, the inner step's iterations of
    every inner solve since the last report."""

    def __init__(self, problem: LaplaceProblem, callback: Callable[[IterationRecord], None]):
        self.problem = problem
        self.callback = callback
        self.points: dict[bytes, tuple[float, np.ndarray]] = {}
        self.inner: list[int] = []

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = self.problem.value_and_grad(x)
        if len(self.points) > 64:  # the newest point is always kept
            self.points.clear()
        self.points[x.tobytes()] = (f, g)
        return f, g

    @contextmanager
    def counting(self) -> Iterator[None]:
        """Record ``mode.iterations`` of every ``problem.inner`` call (an instance attribute that
        wraps the method for the duration; the problem is the fit's own clone)."""
        problem, inner = self.problem, self.problem.inner
        own = "inner" in vars(problem)

        def counted(beta, theta, phi):
            mode = inner(beta, theta, phi)
            self.inner.append(int(mode.iterations))
            return mode

        problem.inner = counted
        try:
            yield
        finally:
            if own:
                problem.inner = inner
            else:
                del problem.inner

    def emit(self, stage: str, k: int, f: float, g: np.ndarray | None, step: float) -> None:
        gmax = float(np.max(np.abs(g))) if g is not None and g.size else np.nan
        inner, self.inner = tuple(self.inner), []
        self.callback(IterationRecord(stage, k, float(f), gmax, step, inner))


def canonical_theta(problem: LaplaceProblem, x: np.ndarray) -> np.ndarray:
    """Flip the sign of every Lambda_r column whose diagonal is negative (under a covariance
    pattern: the pattern's own sign convention)."""
    x = x.copy()
    k0 = 0 if problem.inner_beta else problem.p
    if problem.pattern is not None:
        x[k0 : k0 + problem.n_cov] = problem.pattern.canonical(x[k0 : k0 + problem.n_cov])
        return x
    entries = problem.re.layout.entries
    for k, (r, i, j) in enumerate(entries):
        if i == j and x[k0 + k] < 0:
            for kk, (rr, _, jj) in enumerate(entries):
                if rr == r and jj == j:
                    x[k0 + kk] = -x[k0 + kk]
    return x


def _preconditioner(P: int, hess_inv0: np.ndarray | None) -> np.ndarray:
    if hess_inv0 is not None:
        try:
            return np.linalg.cholesky(0.5 * (hess_inv0 + hess_inv0.T))
        except np.linalg.LinAlgError:
            pass
    return np.eye(P)


def _decrement(g: np.ndarray, H: np.ndarray) -> float:
    """sqrt(g' H^-1 g) with H's eigenvalues made positive (a saddle is measured, not hidden)."""
    if g.size == 0:
        return 0.0
    w, V = np.linalg.eigh(0.5 * (H + H.T))
    w = np.maximum(np.abs(w), 1e-12 * max(1.0, float(np.max(np.abs(w)))))
    c = V.T @ g
    return float(np.sqrt(np.sum(c * c / w)))


RESTARTS = 3  # BFGS restarts from the best point evaluated when it stops on a line-search failure


def minimize(
    problem: LaplaceProblem,
    x0: np.ndarray,
    hess_inv0: np.ndarray | None = None,
    maxiter: int = 1000,
    callback: Callable[[IterationRecord], None] | None = None,
) -> tuple[OptimizationSummary, InnerMode]:
    """Minimise from x0; ``hess_inv0`` (an approximate inverse Hessian) preconditions BFGS.
    ``callback`` (verbose output) receives an :class:`IterationRecord` after every BFGS iteration
    and Newton step, made from values computed anyway: the fit is the same with or without it."""
    if callback is None:
        return _minimize(problem, x0, hess_inv0, maxiter, None)
    log = _EvaluationLog(problem, callback)
    with log.counting():
        return _minimize(problem, x0, hess_inv0, maxiter, log)


def _minimize(
    problem: LaplaceProblem,
    x0: np.ndarray,
    hess_inv0: np.ndarray | None,
    maxiter: int,
    log: _EvaluationLog | None,
) -> tuple[OptimizationSummary, InnerMode]:
    t0 = time.perf_counter()
    evals0 = problem.n_evals
    nodes0 = getattr(problem, "node_failures", 0)  # (quadrature: evaluations with a node outside)
    evaluate = problem.value_and_grad if log is None else log
    # a problem that profiles phi out (the linear mixed model, ML or REML: sigma in closed form; see
    # engine.lmm) is optimised over the other parameters, with the full gradient without phi's entry
    profile = getattr(problem, "profile_phi", None)
    k = x0.size - 1 if profile is not None else x0.size
    if profile is not None and hess_inv0 is not None and hess_inv0.shape[0] == x0.size:
        hess_inv0 = hess_inv0[:k, :k]  # = the profiled objective's inverse Hessian (Schur complement)
    S = _preconditioner(k, hess_inv0)
    base = x0[:k]

    def full(z: np.ndarray) -> np.ndarray:
        xr = base + S @ z
        return xr if profile is None else np.append(xr, profile(xr))

    best = [np.inf, None]  # the lowest objective evaluated so far, and its point x
    outside = [0]  # points evaluated where the objective is not finite

    def fz(z):
        try:
            x = full(z)
        except PirlsFailure:  # no finite profiled phi here: the line search steps back
            return np.inf, np.zeros(k)
        f, g = evaluate(x)
        gz = S.T @ g[:k]
        # BFGS's own stopping test, met at any point evaluated that is no higher than the best
        # so far (a step can land on a flat region far uphill, where the gradient is ~0 too: a
        # singular two-term Poisson refit stopped there 311 log-likelihood units low)
        low = f <= best[0] + 1e-9 * max(1.0, abs(best[0])) if np.isfinite(best[0]) else True
        if profile is None and k and np.isfinite(f) and low and float(np.max(np.abs(gz))) <= GTOL:
            raise _GradientTestMet(z, f)
        if np.isfinite(f) and f < best[0]:
            best[0], best[1] = f, x[:k].copy()
        outside[0] += not np.isfinite(f)
        return f, gz

    report = None
    if log is not None:
        last = [x0, 0]  # previous iterate, iteration count

        def report(intermediate_result):
            x_k = full(intermediate_result.x)
            f, g = log.points.get(x_k.tobytes(), (intermediate_result.fun, None))
            step = float(np.max(np.abs(x_k - last[0]))) if x_k.size else 0.0
            last[0], last[1] = x_k, last[1] + 1
            log.emit("bfgs", last[1], f, g, step)

    options = {"gtol": GTOL, "maxiter": maxiter}
    iterations = [0]

    def counted(intermediate_result):
        iterations[0] += 1
        if report is not None:
            report(intermediate_result)

    def run() -> so.OptimizeResult:
        try:
            # (SciPy's line search computes inf - inf after an infinite trial value: NumPy's
            # invalid-value warning leaked from refits, and failed bootstrap replicates under an
            # 'error' warnings filter; np.errstate is per thread)
            with np.errstate(invalid="ignore", over="ignore"):
                return so.minimize(
                    fz, np.zeros(k), jac=True, method="BFGS", options=options, callback=counted
                )
        except _GradientTestMet as met:  # the iteration whose line search met it counts
            res = met.result(iterations[0] + (1 if iterations[0] or met.z.any() else 0))
            if report is not None and res.nit > iterations[0]:
                report(so.OptimizeResult(x=met.z, fun=met.f))
            return res

    res = run()
    nit, restarts = int(res.nit), 0
    # BFGS stops ('precision loss') when its line search meets points where the objective is +inf
    # (a mode or a quadrature node outside the family's support), and returns its last accepted
    # iterate. When that is its start (no iteration made) although it evaluated better points,
    # start again from the best point evaluated, with steps a quarter as long. (After iterations
    # the Newton polish below starts from BFGS's end: restarting there too made 3 of 72 fits
    # against the support end lower after the polish, and cost 3-8 times as much.)
    for _ in range(RESTARTS):
        if res.success or res.nit > 0 or best[1] is None or not k:
            break
        f_res = res.fun if np.isfinite(res.fun) else np.inf
        if not best[0] < f_res - 1e-9 * max(1.0, abs(best[0])):
            break
        base, S = best[1], 0.25 * S
        res = run()
        nit += int(res.nit)
        restarts += 1
    x = full(res.x)
    mode, g = problem.mode_and_gradient(x)  # BFGS's last evaluation, as a rule: remembered
    # BFGS's own inverse Hessian (in z) measures the decrement for free when it succeeded
    lam = float(np.sqrt(max(0.0, (S.T @ g[:k]) @ res.hess_inv @ (S.T @ g[:k])))) if k else 0.0
    if profile is not None and res.success and lam > FINISH_BELOW:
        # a profiled linear mixed model converges in a few cheap evaluations, and BFGS's test
        # leaves it ~1e-7 from the optimum in the parameters: one more quasi-Newton step on BFGS's
        # own inverse Hessian takes it to ~1e-8 (kept only if the decrement falls)
        z = res.x - res.hess_inv @ (S.T @ g[:k])
        try:
            mode_n, g_n = problem.mode_and_gradient(full(z))
        except PirlsFailure:
            mode_n = None
        if mode_n is not None:
            lam_n = float(np.sqrt(max(0.0, (S.T @ g_n[:k]) @ res.hess_inv @ (S.T @ g_n[:k]))))
            if np.isfinite(mode_n.objective) and lam_n < lam:
                x, mode, g, lam = full(z), mode_n, g_n, lam_n
            else:
                mode, g = problem.mode_and_gradient(x)  # the warm start back at BFGS's point
    steps = 0
    if not res.success or lam > POLISH_ABOVE:
        x, mode, g, lam, steps = _newton_polish(problem, x, mode, g, None if log is None else log.emit)
    x = canonical_theta(problem, x)
    mode, g = problem.mode_and_gradient(x)
    gmax = float(np.max(np.abs(g))) if g.size else 0.0
    converged = bool(np.isfinite(mode.objective) and lam < CONVERGED_TOL)
    message = str(res.message)
    if restarts:
        message += f"; restarted {restarts} time(s) from the best point evaluated"
    nodes = getattr(problem, "node_failures", 0) - nodes0
    if not converged and nodes:
        # the model is defined there (its Laplace objective is finite): only the quadrature is not
        message += (
            f"; {max(outside[0], 1)} point(s) evaluated had no finite objective (quadrature nodes "
            "that put a mean outside the family's range: the quadrature is not defined there, "
            "although the model is): the fit stopped at the edge of the region where the "
            "quadrature is defined, which need not be near the optimum; fit_method='laplace', fewer "
            "nodes (n_agq) or a link that keeps every mean in range avoids it"
        )
    elif not converged and outside[0]:
        message += (
            f"; {outside[0]} point(s) evaluated had no finite objective (a conditional mode where "
            "the link puts the mean outside the family's range): the optimum may lie against that "
            "boundary; a link that keeps every mean in range avoids it"
        )
    if steps:
        message += f"; {steps} Newton step(s) on the finite-difference Hessian"
    summary = OptimizationSummary(
        x=x,
        objective=mode.objective,
        n_iterations=nit,
        n_evaluations=problem.n_evals - evals0,
        converged=converged,
        message=message,
        max_gradient=gmax,
        seconds=time.perf_counter() - t0,
        inner_iterations=mode.iterations,
        newton_decrement=lam,
        newton_steps=steps,
    )
    return summary, mode


class _GradientTestMet(Exception):
    """A point where BFGS's gradient test max|S'g| <= GTOL holds, met at a line search's trial point.

    Near the optimum the objective's changes fall below its rounding noise (~1e-12), and the Wolfe
    line search can reject a trial point that meets the gradient test because its value is not
    lower; BFGS then spends ~20 evaluations on noise and stops with 'precision loss'. The test uses
    gradients only, so such a point is the optimum BFGS is looking for: the fit stops there. Its
    inverse Hessian is the preconditioner's (identity in z: the start's Hessian). Not for a profiled
    problem, whose finishing quasi-Newton step needs BFGS's own inverse Hessian."""

    def __init__(self, z: np.ndarray, f: float):
        super().__init__()
        self.z = np.array(z, dtype=float)
        self.f = float(f)

    def result(self, nit: int) -> so.OptimizeResult:
        return so.OptimizeResult(
            x=self.z,
            success=True,
            hess_inv=np.eye(self.z.size),
            nit=nit,
            message="Optimization terminated successfully (gradient test met at a line-search point).",
        )


def _newton_polish(
    problem: LaplaceProblem,
    x: np.ndarray,
    mode: InnerMode,
    g: np.ndarray,
    emit: Callable[..., None] | None = None,
):
    """Newton steps x <- x - H^-1 g on the finite-difference Hessian of the exact gradient, kept
    while the decrement shrinks. Uses no objective values, so it works below their rounding noise.
    ``emit(stage, k, f, g, step)`` is told of each step taken (verbose output)."""
    H = hessian(problem, x)
    lam = _decrement(g, H)
    steps = 0
    for _ in range(_POLISH_STEPS):
        if lam < GTOL:
            break
        w, V = np.linalg.eigh(0.5 * (H + H.T))
        w = np.maximum(np.abs(w), 1e-12 * max(1.0, float(np.max(np.abs(w)))))
        dx = -(V @ ((V.T @ g) / w))
        accepted = False
        for t in (1.0, 0.5, 0.25, 0.125):
            xn = x + t * dx
            beta, theta, phi = problem.unpack(xn)
            try:
                mn = problem.inner(beta, theta, phi)
            except PirlsFailure:
                continue
            gn = problem.outer_gradient(xn, mn, phi)
            lam_n = _decrement(gn, H)
            if np.isfinite(mn.objective) and lam_n < lam:
                step = float(np.max(np.abs(xn - x)))
                x, mode, g, lam, accepted = xn, mn, gn, lam_n, True
                break
        if not accepted:
            break
        steps += 1
        if emit is not None:
            emit("newton", steps, mode.objective, g, step)
        H = hessian(problem, x)
        lam = _decrement(g, H)
    return x, mode, g, lam, steps


def fd_steps(problem: LaplaceProblem, x: np.ndarray, step: float) -> np.ndarray:
    """Finite-difference steps ``step * max(unit_k, |x_k|)``: unit 1, or the units a workspace gave
    the problem for a link whose scale has units (``problem.fd_units``, ``Workspace.fd_units``)."""
    units = getattr(problem, "fd_units", None)
    if units is None or units.size != x.size:
        units = np.ones(x.size)
    return step * np.maximum(units, np.abs(x))


def initial_inverse_hessian(problem: LaplaceProblem, x0: np.ndarray, step: float = 1e-5) -> np.ndarray | None:
    """BFGS's starting matrix: the inverse of blockdiag(beta precision given theta, FD Hessian of the
    covariance-parameter block) at x0. beta and theta live on very different scales; starting from
    the identity cost BFGS tens of evaluations to learn that. For a problem that profiles phi out
    (``profile_phi``; x0's phi must be the profiled one) the matrix is that of the profiled
    objective, without phi's row and column."""
    k = 0 if problem.inner_beta else problem.p
    profile = getattr(problem, "profile_phi", None)
    P = x0.size - (profile is not None)  # a profiled phi: the Hessian of the profiled objective
    u_saved, b_saved = problem.u_start.copy(), problem.beta_start.copy()

    def gradient(x: np.ndarray) -> np.ndarray:
        if profile is not None:
            x = np.append(x[:P], profile(x[:P]))
        return problem.value_and_grad(x)[1][:P]

    try:
        H = np.zeros((P, P))
        mode0, g0 = problem.mode_and_gradient(x0)  # (the start's check evaluated x0: remembered)
        g0 = g0[:P]
        if k:
            H[:k, :k] = beta_precision(problem, mode0)
        steps = fd_steps(problem, x0, step)
        for j in range(k, P):  # forward differences: a preconditioner needs no more accuracy
            h = steps[j]
            e = np.zeros(x0.size)
            e[j] = h
            H[k:, j] = (gradient(x0 + e)[k:] - g0[k:]) / h
        # far from the optimum the covariance block can be indefinite: use |eigenvalues|, of the
        # block scaled to a unit diagonal, so that the floor does not depend on the parameters'
        # units (theta in units of y on an identity link, phi a log: curvatures 1e10 apart)
        B = 0.5 * (H[k:, k:] + H[k:, k:].T)
        d = np.sqrt(np.abs(np.diag(B)))
        d = np.where(d > 0, d, 1.0)
        w, V = np.linalg.eigh(B / np.outer(d, d))
        floor = 1e-6 * max(1.0, float(np.max(np.abs(w)))) if w.size else 1.0
        H[k:, k:] = np.outer(d, d) * ((V * np.maximum(np.abs(w), floor)) @ V.T)
        np.linalg.cholesky(H)
        Hi = np.linalg.inv(H)
        return 0.5 * (Hi + Hi.T)
    except (np.linalg.LinAlgError, PirlsFailure):
        return None
    finally:
        problem.u_start, problem.beta_start = u_saved, b_saved


def beta_basis(X: np.ndarray) -> np.ndarray:
    """T with X T = sqrt(n) Q (X = QR, thin): coordinates beta~ = T^-1 beta in which a unit step
    moves the linear predictor by a vector of rms 1 whatever X's columns' scales and means. Finite
    differences in beta itself took steps ~1e-4 |beta_j| that moved eta by 0.46 where an
    intercept was -4,600 (x + 1e4), and the Hessian's (intercept, slope) block, of condition ~1e8,
    magnified the error: Wald intervals of an SD came out 45 times too narrow or NaN."""
    n = X.shape[0]
    R = np.linalg.qr(X, mode="r")
    return np.sqrt(n) * np.linalg.inv(R)


def hessian_in_basis(
    problem: LaplaceProblem, x: np.ndarray, step: float = 1e-5
) -> tuple[np.ndarray, np.ndarray]:
    """(H~, D): the symmetrised central-difference Hessian of the exact gradient in coordinates
    x = D x~, D = blockdiag(T, I) with T = :func:`beta_basis` of X for an outer beta (identity
    where beta is in the inner step), so that H = D^-T H~ D^-1 and H^-1 = D H~^-1 D'. Inverting
    H~ instead of H keeps the digits a badly centred covariate costs."""
    P = x.size
    D = np.eye(P)
    k = 0 if problem.inner_beta else problem.p
    if k:
        D[:k, :k] = beta_basis(problem.X)
    xt = np.linalg.solve(D, x)
    units = getattr(problem, "fd_units", None)
    if units is None or units.size != P:
        units = np.ones(P)
    steps = step * np.maximum(units, np.abs(xt))
    Ht = np.zeros((P, P))
    u_saved, b_saved = problem.u_start.copy(), problem.beta_start.copy()
    try:
        for j in range(P):
            h = steps[j]
            gp = problem.value_and_grad(x + h * D[:, j])[1]
            gm = problem.value_and_grad(x - h * D[:, j])[1]
            Ht[:, j] = D.T @ (gp - gm) / (2 * h)
    finally:
        problem.u_start, problem.beta_start = u_saved, b_saved
    return 0.5 * (Ht + Ht.T), D


def hessian(problem: LaplaceProblem, x: np.ndarray, step: float = 1e-5) -> np.ndarray:
    """Symmetrised central-difference Jacobian of the exact gradient (outer parameters)."""
    P = x.size
    H = np.zeros((P, P))
    u_saved, b_saved = problem.u_start.copy(), problem.beta_start.copy()
    steps = fd_steps(problem, x, step)
    for k in range(P):
        h = steps[k]
        e = np.zeros(P)
        e[k] = h
        gp = problem.value_and_grad(x + e)[1]
        gm = problem.value_and_grad(x - e)[1]
        H[:, k] = (gp - gm) / (2 * h)
    problem.u_start, problem.beta_start = u_saved, b_saved
    return 0.5 * (H + H.T)


def glm_start(problem: LaplaceProblem, beta0: np.ndarray) -> np.ndarray:
    """Fixed effects of the GLM without random effects, from beta0: the inner step's Newton
    iteration (its stop rule, step halving and modified steps) on beta alone, with the p x p
    matrix X'CX. (With Lambda = 0 the joint (u, beta) system is blockdiag(I, X'CX) and u stays
    0: factoring the (q + p) joint matrix would give the same steps at q-dependent cost.) Its
    failures are the inner step's, with the inner step's messages."""
    X, offset = problem.X, problem.offset
    phis = np.zeros(problem.re.n)

    def evaluate(b):
        return problem.observe(X @ b + offset, phis)

    b = np.asarray(beta0, dtype=float)
    d, Q = evaluate(b)
    if not np.isfinite(Q):
        b = np.zeros(problem.p)
        d, Q = evaluate(b)
    if not np.isfinite(Q):
        raise PirlsFailure("the log-likelihood is not finite at the starting values")
    dec_prev = np.inf
    for it in range(1, _MAX_INNER + 1):
        c = -d[2]
        g = X.T @ d[1]
        modified = False
        try:
            step = _newton_step(X, c, g)
        except np.linalg.LinAlgError:
            # negative observed information on some rows (a non-canonical link): a modified
            # Newton step with safe absolute weights, as in the inner step
            if not np.any(c < 0):
                raise PirlsFailure("PIRLS Newton matrix is not positive definite") from None
            modified = True
            try:
                step = _newton_step(X, np.abs(c), g)
            except np.linalg.LinAlgError:
                raise PirlsFailure("PIRLS Newton matrix is not positive definite") from None
        dec = float(g @ step)
        if newton_converged(it, dec, dec_prev, Q, modified):
            if final_step_due(dec, modified) and math.isfinite(evaluate(b + step)[1]):
                return b + step  # as the inner step ends (LaplaceProblem._inner)
            return b
        dec_prev, t = dec, 1.0
        while True:
            b_new = b + t * step
            d_new, Q_new = evaluate(b_new)
            if step_accepted(t, dec, Q, Q_new, modified):
                break
            t *= 0.5
            if t < 1e-10:
                raise PirlsFailure("PIRLS step-halving failed to increase the penalized likelihood")
        b, d, Q = b_new, d_new, Q_new
    raise PirlsFailure(f"PIRLS did not converge in {_MAX_INNER} iterations")


def _newton_step(X: np.ndarray, c: np.ndarray, g: np.ndarray) -> np.ndarray:
    """(X'CX)^-1 g by Cholesky (LinAlgError when X'CX is not positive definite)."""
    L = np.linalg.cholesky((X.T * c) @ X)
    return np.linalg.solve(L.T, np.linalg.solve(L, g))
