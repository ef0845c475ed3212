"""The Laplace approximation of the marginal log-likelihood and its exact gradient.

For parameters (beta, theta, phi = log sigma) and spherical random effects u ~ N(0, I_q),

    eta(u) = X beta + A u + offset,   A = Z Lambda,   Lambda = s blockdiag(Lambda_r(theta)),

with s = sigma for families with a dispersion (MATLAB's b ~ N(0, sigma^2 D)), else s = 1; phi is
log sigma, or for the negative binomial log theta, which enters the likelihood only (A_phi = 0,
e = 0: the separate dispersion path of the gradient below). The
objective minimised is the negative Laplace log-likelihood (lme4's deviance / 2)::

    f = -sum_i l_i(eta_i(u~)) + u~'u~ / 2 + log|H| / 2,    H = A' C A + I,   C = diag(-l''_i)

where l_i is the model's full conditional log-likelihood (all constants) and u~ the conditional
mode, found by damped Newton (PIRLS with the observed information C: the exact Laplace of glmmTMB
and MATLAB; equal to lme4's for canonical links). No q/2 log(2 pi) term appears: it cancels.

ApproximateLaplace (lme4 nAGQ = 0, MATLAB 'ApproximateLaplace') takes beta into the inner step:
(beta~, u~) is the joint mode with a flat prior on beta and the outer variables are (theta, phi).

Gradient (implicit differentiation through the inner mode; envelope theorem for the first two
terms). For an outer parameter psi with direct effect e = d eta/d psi at fixed inner variables,
A_psi = dA/d psi, and inner variables v with design B = [X A] or A:

    dv       = J^-1 (B_psi' l' - B' C e + B' l'_psi)
    d eta    = e + B dv,        dc = -l''' d eta - l''_psi
    df/dpsi  = -l'e - sum l_psi + (sum_i dc_i h_i)/2 + tr(H^-1 A'C A_psi),   h_i = a_i' H^-1 a_i
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np

from ..errors import FitError, LikelihoodSupportError
from ..pymc_model import ObservationFunction
from .linalg import NotPositiveDefinite
from .sparse_cholesky import SparseCholesky
from .structure import REStructure

__all__ = ["InnerMode", "LaplaceProblem", "PirlsFailure", "beta_precision"]

_TOL_DEC = 1e-20  # Newton decrement (twice the predicted objective decrease) at convergence
_FULL_STEP_DEC = 1e-6  # below this decrement full Newton steps are taken without a value test
_MAX_INNER = 60
# above this |Q| the decrement's rounding noise (~1e-16 |Q|) exceeds 1e-8: it cannot fall below
# 1e-13 nor settle under 1e-6, and a response of ~1e14 (normal, sigma started at 1) never stopped
_LARGE_Q = 1e8


class PirlsFailure(FitError):
    """The inner (penalized Newton) step cannot find the conditional mode at these parameters."""


def _invalid_parameter_errors() -> tuple[type[BaseException], ...]:
    """Exceptions a likelihood evaluation raises for parameters outside its support (numerical
    failures, not programming errors): PyMC's parameter checks, e.g. a negative Poisson mean, as
    the compiled observation function raises them (``pymc_model._observation_graph``)."""
    return (LikelihoodSupportError, FloatingPointError)


def newton_converged(it: int, dec: float, dec_prev: float, Q: float, modified: bool) -> bool:
    """The inner Newton iteration's stop rule (see :meth:`LaplaceProblem._inner`): the decrement
    ``dec`` is negligible, or (after one step) below 1e-13 relative, or below 1e-15 |Q| where |Q|
    is so large (> 1e8) that Q's rounding hides anything smaller, or it has reached its noise floor
    and stops shrinking (exact Newton steps only)."""
    return (
        dec < _TOL_DEC
        or dec < 0
        or (it > 1 and dec < min(1e-13, 1e-15 * abs(Q)))
        or (it > 1 and abs(Q) > _LARGE_Q and dec < 1e-15 * abs(Q))
        or (dec < _FULL_STEP_DEC and dec > 0.25 * dec_prev and not modified)
    )


def final_step_due(dec: float, modified: bool) -> bool:
    """Whether a Newton iteration stopped by :func:`newton_converged` takes the full step it has
    computed before ending: it stopped ~sqrt(dec) off the optimum (up to ~3e-7 in u by the relative
    test, more at the noise floor), where Q is good to ~dec but log|H| in the Laplace objective
    moves with u to first order (measured 4e-9 in a gamma log-likelihood). An exact Newton step
    (not a modified one) in the quadratic region costs one more evaluation, no new factor, and
    takes the iterate to rounding."""
    return _TOL_DEC <= dec < _FULL_STEP_DEC and not modified


def step_accepted(t: float, dec: float, Q: float, Q_new: float, modified: bool) -> bool:
    """Far from the mode a step must increase Q; close to it (quadratic region) Newton's full step
    is right and Q's rounding noise must not veto it."""
    near = t == 1.0 and dec < _FULL_STEP_DEC and not modified
    return math.isfinite(Q_new) and (Q_new >= Q - 1e-13 * abs(Q) or near)


def _same(c: np.ndarray, c_last: np.ndarray) -> bool:
    """Whether C is unchanged (a linear mixed model's); the first entry settles it cheaply for a
    GLMM, where every Newton step moves it."""
    return bool(c[0] == c_last[0]) and np.array_equal(c, c_last)


@dataclass
class InnerMode:
    """State at the conditional mode for one parameter value (u in the engine's internal order)."""

    u: np.ndarray
    beta: np.ndarray
    eta: np.ndarray
    derivs: list[np.ndarray]
    avals: np.ndarray
    hfac: SparseCholesky  # factor of H = A'CA + I
    objective: float
    iterations: int
    joint_fac: SparseCholesky | None = None  # factor of the (u, beta) Newton matrix (ApproximateLaplace)
    dv: np.ndarray | None = None  # d(u, beta)/d(beta, theta, phi) at the mode, once the gradient is known


_RECENT_POINTS = 4  # evaluations remembered by value and gradient (the last one also by its mode)


class LaplaceProblem:
    """Objective and gradient over the outer parameter vector, with a warm-started inner mode.

    Outer vector: Laplace ``[beta, theta, (phi)]``; ApproximateLaplace ``[theta, (phi)]``.
    Data (y, weights, trials, offset) come from the PyMC containers through :meth:`set_data`.
    """

    def __init__(self, X: np.ndarray, re: REStructure, obs: ObservationFunction, *, inner_beta: bool):
        self.X = np.ascontiguousarray(X, dtype=float)
        self.re = re
        self.obs = obs
        self.inner_beta = inner_beta
        self.p = X.shape[1]
        self.n_theta = re.layout.n_theta
        self.has_phi = obs.has_dispersion
        self.phi_scales_re = bool(getattr(obs, "phi_scales_re", True)) if self.has_phi else False
        self.theta_entries = re.theta_entries()
        self.pattern = None  # covariance patterns: a map v -> theta (None: the parameters are theta)
        self.in_range = None  # families.MeanRange where the link can leave the family's range
        self.n_cov = self.n_theta  # covariance parameters in the outer vector
        self.fd_units: np.ndarray | None = None  # finite-difference units (optimize.fd_steps)
        self.beta_glm: np.ndarray | None = None  # the fit's GLM start (fitting._start) or warm beta
        self.scale_start: np.ndarray | None = None  # the link scale's start where it lost (fitting._start)
        self.u_start = np.zeros(re.q)
        self.beta_start = np.zeros(self.p)
        self.n_evals = 0
        self._forget()

    def clone(self) -> LaplaceProblem:
        """A problem of its own for one fit: shares the immutable design (X, the random-effects
        structure, the compiled function) and has its own data and warm-start state, so fits in
        several threads never see each other's state."""
        new = copy.copy(self)
        new.u_start = self.u_start.copy()
        new.beta_start = self.beta_start.copy()
        new.n_evals = 0
        new._forget()
        return new

    # ---- data -----------------------------------------------------------------------------
    def set_data(self, y: np.ndarray, weights: np.ndarray, trials: np.ndarray, offset: np.ndarray) -> None:
        self.y = np.ascontiguousarray(y, dtype=self.obs.y_dtype)
        self.w = np.ascontiguousarray(weights, dtype=float)
        self.trials = np.ascontiguousarray(trials, dtype=self.obs.trials_dtype)
        self.offset = np.ascontiguousarray(offset, dtype=float)
        self.terms = self.obs.data_terms(self.y, self.w, self.trials)  # (once per response)
        self.u_start = np.zeros(self.re.q)
        self._forget()

    # ---- parameter vector -----------------------------------------------------------------
    def set_pattern(self, pattern) -> None:
        """Optimise over a covariance pattern's parameters v (``theta = pattern.theta(v)``, with
        ``pattern.jacobian(v)`` and ``pattern.canonical(v)``; see ``ppl_glmm.covariance_patterns``)
        instead of theta; None: over theta itself."""
        self.pattern = pattern
        self.n_cov = self.n_theta if pattern is None else pattern.n_params
        self._forget()

    def unpack(self, x: np.ndarray) -> tuple[np.ndarray | None, np.ndarray, float]:
        """(beta or None, theta, phi) from the outer vector [beta, theta or v, (phi)]."""
        k = 0
        beta = None
        if not self.inner_beta:
            beta, k = x[: self.p], self.p
        theta = x[k : k + self.n_cov]
        if self.pattern is not None:
            theta = self.pattern.theta(theta)
        phi = float(x[k + self.n_cov]) if self.has_phi else 0.0
        return beta, theta, phi

    def outer_gradient(self, x: np.ndarray, mode: InnerMode, phi: float) -> np.ndarray:
        """The gradient in the outer vector x: :meth:`gradient` (in theta), with the covariance
        block mapped by the chain rule ``g_v = J(v)' g_theta`` under a covariance pattern."""
        g = self.gradient(mode, phi)
        if self.pattern is None:
            return g
        k = 0 if self.inner_beta else self.p
        v = x[k : k + self.n_cov]
        gv = self.pattern.jacobian(v).T @ g[k : k + self.n_theta]
        return np.concatenate([g[:k], gv, g[k + self.n_theta :]])

    def joint_x(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(X~, T): the fixed-effects columns the joint (u, beta) factor of an InnerMode is built
        with, and beta = T beta~ (None: X itself). The general inner step uses X; the linear mixed
        model's one-solve step (``reml.LinearInner``) a basis of orthogonal columns."""
        return self.X, None

    # ---- inner step -----------------------------------------------------------------------
    def inner(self, beta: np.ndarray | None, theta: np.ndarray, phi: float) -> InnerMode:
        """Conditional mode of u (and beta for ApproximateLaplace) by damped Newton."""
        with np.errstate(over="ignore", invalid="ignore"):  # an overshooting step gives Q = -inf
            try:
                return self._inner(beta, theta, phi, warm=True)
            except PirlsFailure:
                fallback, self._fallback = self._fallback, None
                if fallback is not None:  # a predicted start (_predict_start) failed: the last mode
                    self.u_start, self.beta_start = fallback
                    try:
                        return self._inner(beta, theta, phi, warm=True)
                    except PirlsFailure:
                        pass
                # The warm start is the mode at the last point evaluated, which a line search may
                # have taken far from this one (Newton then gains only ~1 unit of eta per step on a
                # log link): start once more from u = 0.
                if not np.any(self.u_start):
                    raise
                return self._inner(beta, theta, phi, warm=False)
            finally:
                self._fallback = None

    def cold_inner(self, beta: np.ndarray | None, theta: np.ndarray, phi: float) -> InnerMode:
        """The conditional mode by Newton from u = 0 (and the GLM's beta), whatever the warm start."""
        with np.errstate(over="ignore", invalid="ignore"):
            return self._inner(beta, theta, phi, warm=False)

    def _natural(self, beta: np.ndarray | None, theta: np.ndarray, phi: float) -> np.ndarray:
        """(beta, theta, phi): the parameters the gradient's d(u, beta)/dpsi columns are in."""
        parts = [] if self.inner_beta else [np.asarray(beta, dtype=float)]
        parts.append(np.asarray(theta, dtype=float))
        if self.has_phi:
            parts.append([phi])
        return np.concatenate(parts)

    def _predict_start(self, psi: np.ndarray) -> None:
        """Start the inner step at the first-order prediction of the new mode,
        ``v(psi) ~ v0 + (dv/dpsi)(psi - psi0)``, from the last mode whose gradient is known (its
        ``dv`` is the implicit derivative the gradient computes anyway). Only when the warm start
        is still that mode's (nothing reset it); if the predicted start fails, :meth:`inner`
        starts again from the mode itself. Along a line search this saves about one Newton
        iteration of the inner step per evaluation."""
        if self._slope is None:
            return
        psi0, mode0 = self._slope
        if self.u_start is not mode0.u or mode0.dv is None:
            return
        if psi.shape != psi0.shape or mode0.dv.shape[1] != psi.size:
            return
        step = mode0.dv @ (psi - psi0)
        if not np.all(np.isfinite(step)):
            return
        q = self.re.q
        self._fallback = (mode0.u, self.beta_start)
        self.u_start = mode0.u + step[:q]
        if self.inner_beta:
            self.beta_start = mode0.beta + step[q:]

    def observe(self, eta: np.ndarray, phis: np.ndarray) -> tuple[tuple | None, float]:
        """The observation function's outputs at ``eta`` and the log-likelihood sum l(eta); -inf
        (and no outputs) where the value or its first two derivatives are unusable: outside the
        family's support, or not finite (an overshooting Newton step)."""
        check = self.in_range
        if check is not None and not check(eta, float(phis[0]) if self.has_phi and phis.size else None):
            return None, -np.inf  # (without calling the function: see families.MeanRange)
        try:
            d = self.obs(eta, self.y, self.w, self.trials, phis, self.terms)
        except _invalid_parameter_errors():
            return None, -np.inf
        loglik = float(d[0].sum())
        if not math.isfinite(loglik) or not math.isfinite(float(d[1].sum() + d[2].sum())):
            return None, -np.inf
        return d, loglik

    def _inner(self, beta: np.ndarray | None, theta: np.ndarray, phi: float, *, warm: bool) -> InnerMode:
        re, X, p = self.re, self.X, self.p
        scale = float(np.exp(phi)) if self.phi_scales_re else 1.0
        avals = re.avals(theta, scale)
        u = self.u_start.copy() if warm else np.zeros(re.q)
        b = self.beta_start.copy() if self.inner_beta else np.asarray(beta, dtype=float)
        phis = np.full(re.n, phi)
        eta_fixed = None if self.inner_beta else X @ b + self.offset

        def evaluate(u, b):
            base = X @ b + self.offset if eta_fixed is None else eta_fixed
            eta = base + re.mul(avals, u)
            d, loglik = self.observe(eta, phis)
            Q = loglik - 0.5 * float(u @ u)
            return eta, d, Q if math.isfinite(Q) else -np.inf

        eta, d, Q = evaluate(u, b)
        if not math.isfinite(Q):
            u = np.zeros(re.q)
            if self.inner_beta:  # the GLM's beta where known (beta = 0 is outside a power link's domain)
                b = np.zeros(p) if self.beta_glm is None else self.beta_glm.copy()
            eta, d, Q = evaluate(u, b)
        if not math.isfinite(Q):
            raise PirlsFailure("the log-likelihood is not finite at the starting values")
        dec_prev = np.inf
        last = None  # (C, factor) of the last exact Newton matrix
        for it in range(1, _MAX_INNER + 1):
            c = -d[2]
            gu = re.tmul(avals, d[1]) - u
            g = np.concatenate([gu, X.T @ d[1]]) if self.inner_beta else gu
            # Newton on the observed information; where it is negative for some rows (a
            # non-canonical link) and the Newton matrix is then not positive definite, safe
            # absolute weights (a modified Newton step, which converges only linearly)
            modified = False
            try:
                if last is not None and _same(c, last[0]):
                    fac = last[1]  # C does not depend on eta (a linear mixed model): same matrix
                else:
                    fac = self._newton_matrix(avals, c)
                    last = (c, fac)
            except NotPositiveDefinite as err:
                if not np.any(c < 0):
                    raise PirlsFailure("PIRLS Newton matrix is not positive definite") from err
                modified = True
                try:
                    fac = self._newton_matrix(avals, np.abs(c))
                except NotPositiveDefinite as err2:
                    raise PirlsFailure("PIRLS Newton matrix is not positive definite") from err2
            step = fac.solve(g)
            # The decrement g'H^-1 g (twice the predicted increase of Q) is computed from
            # derivatives, so it is free of the rounding noise that large constants put into Q
            # (e.g. y log mu - log y! for counts of 1e9). Converged when it is negligible, or when
            # it has reached its own noise floor and stops shrinking.
            dec = float(g @ step)
            # (Near the mode Newton's decrement falls quadratically; a decrement below 1e-6 that
            # no longer falls by 4x is rounding noise. The relative test, capped at 1e-13 in
            # log-likelihood units, ends typical fits one iteration earlier. Both need one Newton
            # step taken: a start already that close, e.g. a predicted one, is ~sqrt(dec) off the
            # mode, and log|H| in the objective moves with u to first order, so one more step
            # brings its error from ~1e-7 to rounding.)
            if newton_converged(it, dec, dec_prev, Q, modified):
                if final_step_due(dec, modified):  # the full step to rounding (H is factored below)
                    polished = evaluate(u + step[: re.q], b + step[re.q :] if self.inner_beta else b)
                    if math.isfinite(polished[2]):
                        u = u + step[: re.q]
                        b = b + step[re.q :] if self.inner_beta else b
                        eta, d, Q = polished
                break
            dec_prev = dec
            t = 1.0
            while True:
                u_new = u + t * step[: re.q]
                b_new = b + t * step[re.q :] if self.inner_beta else b
                eta_new, d_new, Q_new = evaluate(u_new, b_new)
                if step_accepted(t, dec, Q, Q_new, modified):
                    break
                t *= 0.5
                if t < 1e-10:
                    raise PirlsFailure("PIRLS step-halving failed to increase the penalized likelihood")
            u, b, eta, d, Q = u_new, b_new, eta_new, d_new, Q_new
        else:
            raise PirlsFailure(f"PIRLS did not converge in {_MAX_INNER} iterations")
        # H at the final point, with the observed information (no safeguard)
        c = -d[2]
        same = last is not None and _same(c, last[0])
        try:
            if self.inner_beta:
                joint = last[1] if same else re.factor_joint(avals, c, X)
                hfac = re.factor_h(avals, c)
            else:
                joint = None
                hfac = last[1] if same else re.factor_h(avals, c)
        except NotPositiveDefinite as err:
            raise PirlsFailure("H = A'CA + I is not positive definite at the mode") from err
        objective = -Q + 0.5 * hfac.logdet
        self.u_start = u
        if self.inner_beta:
            self.beta_start = b
        self.n_evals += 1
        return InnerMode(u, b, eta, d, avals, hfac, objective, it, joint_fac=joint)

    def _newton_matrix(self, avals: np.ndarray, c: np.ndarray) -> SparseCholesky:
        """Factor of the inner Newton matrix: H = A'CA + I, or with beta [[H, A'CX], [X'CA, X'CX]]."""
        if self.inner_beta:
            return self.re.factor_joint(avals, c, self.X)
        return self.re.factor_h(avals, c)

    # ---- objective and gradient -----------------------------------------------------------
    def value(self, x: np.ndarray) -> float:
        beta, theta, phi = self.unpack(x)
        try:
            return self.inner(beta, theta, phi).objective
        except PirlsFailure:
            return np.inf

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Objective and gradient at x; inf and zeros where the inner step fails. A point among the
        last few evaluated is not evaluated again (the optimiser's start, which the start-up checks
        and the first inverse Hessian also evaluate)."""
        hit = self._recent.get(x.tobytes())
        if hit is not None:
            f, g, u, b = hit
            self._warm(u, b)
            return f, g.copy()
        try:
            mode, g = self.mode_and_gradient(x)
        except PirlsFailure:
            return np.inf, np.zeros_like(x)
        return mode.objective, g

    def mode_and_gradient(self, x: np.ndarray) -> tuple[InnerMode, np.ndarray]:
        """The inner mode and the outer gradient at x (PirlsFailure if the inner step fails); the
        last point evaluated is remembered with its mode, so asking again costs nothing. The warm
        start is left at the mode, as by an evaluation."""
        key = x.tobytes()
        if self._last is not None and self._last[0] == key:
            mode, g = self._last[1], self._last[2]
            self._warm(mode.u, mode.beta)
            self._slope = (self._natural(*self.unpack(x)), mode)
            return mode, g.copy()
        beta, theta, phi = self.unpack(x)
        psi = self._natural(beta, theta, phi)
        self._predict_start(psi)
        mode = self.inner(beta, theta, phi)
        g = self.outer_gradient(x, mode, phi)
        self._slope = (psi, mode)
        self._last = (key, mode, g)
        self._recent[key] = (mode.objective, g, mode.u, mode.beta)
        while len(self._recent) > _RECENT_POINTS:
            del self._recent[next(iter(self._recent))]  # the oldest (dicts keep insertion order)
        return mode, g.copy()

    def _warm(self, u: np.ndarray, b: np.ndarray) -> None:
        """The warm start an evaluation ending at (u, b) leaves (``_inner`` copies it before use)."""
        self.u_start = u
        if self.inner_beta:
            self.beta_start = b

    def _forget(self) -> None:
        """Drop the remembered evaluations (new data, a new parametrisation, a clone)."""
        self._last: tuple | None = None  # (x bytes, mode, gradient) of the last point evaluated
        self._slope: tuple | None = None  # (psi, mode) of the last mode with its gradient
        self._fallback: tuple | None = None  # the start a prediction replaced (in inner only)
        self._recent: dict[bytes, tuple] = {}  # x bytes -> (f, g, u, beta) of the last few points

    def gradient(self, mode: InnerMode, phi: float, *, residual: bool = True) -> np.ndarray:
        """Exact gradient (module docstring). ``residual``: include -Q_v dv/dpsi, the term the
        envelope theorem drops (zero at the exact mode); a subclass that accounts for the inner
        residual itself (quadrature) leaves it out."""
        re, X = self.re, self.X
        d1, d3 = mode.derivs[1], mode.derivs[3]
        c = -mode.derivs[2]
        av, u = mode.avals, mode.u
        scale = float(np.exp(phi)) if self.phi_scales_re else 1.0
        sel = mode.hfac.selected_inverse()
        h = re.leverages(av, sel)
        at_d1 = re.tmul(av, d1)  # A'l'

        # per outer parameter (columns: beta, theta, phi): direct effect e on eta, the direct part
        # of the inner right-hand side, l_psi summed, and tr(H^-1 A'C A_psi)
        k = 0 if self.inner_beta else self.p
        P = k + len(self.theta_entries) + int(self.has_phi)
        T = None
        E = np.zeros((re.n, P))
        rhs_u = np.zeros((re.q, P))
        lpsi = np.zeros(P)
        trace = np.zeros(P)
        if not self.inner_beta:
            E[:, :k] = X
        for col, (tcol, jcol, slot) in enumerate(self.theta_entries, start=k):
            vals = scale * tcol  # dA/dtheta_k: one entry per row, at column jcol
            E[:, col] = vals * u[jcol]
            rhs_u[:, col] = np.bincount(jcol, weights=vals * d1, minlength=re.q)
            trace[col] = float(np.sum(c * vals * re.a_hinv_at(av, sel, slot)))
        if self.phi_scales_re:  # phi = log sigma: A = sigma Z Lambda, so dA/dphi = A
            E[:, -1] = re.mul(av, u)
            rhs_u[:, -1] = at_d1
            trace[-1] = float(re.q - re.trace_inverse(sel))
        # (a likelihood parameter only, NB's log theta: no direct effect on eta, zero columns)
        if self.has_phi:
            lpsi[-1] = float(mode.derivs[4].sum())
            l1psi, l2psi = mode.derivs[5], mode.derivs[6]
        CE = c[:, None] * E
        rhs_u -= re.tmul(av, CE)
        if self.has_phi:
            rhs_u[:, -1] += re.tmul(av, l1psi)
        g_inner = at_d1 - u  # the inner gradient: ~0, left by the inner step's stop
        if self.inner_beta:
            Xj, T = self.joint_x()  # (the joint factor's beta coordinates: beta = T beta~)
            rhs_b = -Xj.T @ CE
            if self.has_phi:
                rhs_b[:, -1] += Xj.T @ l1psi
            dv = mode.joint_fac.solve(np.vstack([rhs_u, rhs_b]))
            deta = E + re.mul(av, dv[: re.q]) + Xj @ dv[re.q :]
            g_inner = np.concatenate([g_inner, Xj.T @ d1])
        else:
            dv = mode.hfac.solve(rhs_u)
            deta = E + re.mul(av, dv)
        # the mode's slope in the parameters: the next inner step's predicted start (beta's rows
        # back in beta's own coordinates)
        mode.dv = dv if not self.inner_beta or T is None else np.vstack([dv[: re.q], T @ dv[re.q :]])
        dc = -d3[:, None] * deta
        if self.has_phi:
            dc[:, -1] -= l2psi
        # -Q_v dv/dpsi: zero at the exact mode (the envelope theorem); kept, it makes the gradient
        # that of the objective as evaluated, whose mode is exact only to the inner tolerance
        grad = -(d1 @ E) - lpsi + 0.5 * (h @ dc) + trace
        return grad - g_inner @ dv if residual else grad


def beta_precision(problem: LaplaceProblem, mode: InnerMode, T: np.ndarray | None = None) -> np.ndarray:
    """X'CX - X'CA H^-1 A'CX: the precision of beta given theta (MATLAB 'Conditional', inverted);
    with ``T``, that of beta~ = T^-1 beta, built with X T (``optimize.beta_basis``: the complement
    then keeps its digits where a column's mean dwarfs its spread)."""
    X, re = (problem.X if T is None else problem.X @ T), problem.re
    c = -mode.derivs[2]
    AtCX = re.tmul(mode.avals, c[:, None] * X)
    S = (X.T * c) @ X - AtCX.T @ mode.hfac.solve(AtCX)
    return 0.5 * (S + S.T)
