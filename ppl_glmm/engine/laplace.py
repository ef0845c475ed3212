"""The Laplace approximation of the marginal log-likelihood and its exact gradient.

For parameters (beta, theta, phi = log sigma) and spherical random effects u ~ N(0, I_q),

    eta(u) = X beta + A u + offset,   A = Z Lambda,   Lambda = s blockdiag(Lambda_r(theta)),

with s = sigma for families with a dispersion (MATLAB's b ~ N(0, sigma^2 D)), else s = 1. The
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

from dataclasses import dataclass, field

import numpy as np
from scipy.linalg.lapack import dpotrf, dpotri, dpotrs

from ..pymc_model import ObservationFunction
from .structure import REStructure

__all__ = ["InnerMode", "LaplaceProblem", "PirlsFailure"]

_TOL_DEC = 1e-20  # Newton decrement (twice the predicted objective decrease) at convergence
_MAX_INNER = 60


class PirlsFailure(RuntimeError):
    pass


@dataclass
class InnerMode:
    """State at the conditional mode for one parameter value."""

    u: np.ndarray
    beta: np.ndarray
    eta: np.ndarray
    derivs: list[np.ndarray]
    avals: np.ndarray
    chol: np.ndarray  # lower Cholesky factor of H (q x q)
    logdet: float
    objective: float
    iterations: int
    joint_chol: np.ndarray | None = None  # Cholesky factor of J (ApproximateLaplace)
    extra: dict = field(default_factory=dict)


class LaplaceProblem:
    """Objective and gradient over the outer parameter vector, with a warm-started inner mode.

    Outer vector: Laplace ``[beta, theta, (phi)]``; ApproximateLaplace ``[theta, (phi)]``.
    Data (y, weights, trials, offset) are read from the PyMC containers by :meth:`set_data`.
    """

    def __init__(
        self,
        X: np.ndarray,
        re: REStructure,
        obs: ObservationFunction,
        *,
        inner_beta: bool,
    ):
        self.X = np.ascontiguousarray(X, dtype=float)
        self.re = re
        self.obs = obs
        self.inner_beta = inner_beta
        self.p = X.shape[1]
        self.n_theta = re.layout.n_theta
        self.has_phi = obs.has_dispersion
        self.theta_entries = re.theta_entries()
        self.u_start = np.zeros(re.q)
        self.beta_start = np.zeros(self.p)
        self.n_evals = 0

    # ---- data -----------------------------------------------------------------------------
    def set_data(self, y: np.ndarray, weights: np.ndarray, trials: np.ndarray, offset: np.ndarray) -> None:
        self.y = np.ascontiguousarray(y, dtype=self.obs.y_dtype)
        self.w = np.ascontiguousarray(weights, dtype=float)
        self.trials = np.ascontiguousarray(trials, dtype=self.obs.trials_dtype)
        self.offset = np.ascontiguousarray(offset, dtype=float)
        self.u_start = np.zeros(self.re.q)

    # ---- parameter vector -----------------------------------------------------------------
    def unpack(self, x: np.ndarray) -> tuple[np.ndarray | None, np.ndarray, float]:
        k = 0
        beta = None
        if not self.inner_beta:
            beta, k = x[: self.p], self.p
        theta = x[k : k + self.n_theta]
        phi = float(x[k + self.n_theta]) if self.has_phi else 0.0
        return beta, theta, phi

    def n_outer(self) -> int:
        return (0 if self.inner_beta else self.p) + self.n_theta + int(self.has_phi)

    def bounds(self) -> list[tuple[float | None, float | None]]:
        b: list[tuple[float | None, float | None]] = []
        if not self.inner_beta:
            b += [(None, None)] * self.p
        b += [(lo if np.isfinite(lo) else None, None) for lo in self.re.layout.lower_bounds()]
        if self.has_phi:
            b.append((None, None))
        return b

    def _derivs(self, eta: np.ndarray, phi: float) -> list[np.ndarray]:
        return self.obs.fn(eta, self.y, self.w, self.trials, np.full(eta.shape[0], phi))

    # ---- inner step -----------------------------------------------------------------------
    def inner(self, beta: np.ndarray | None, theta: np.ndarray, phi: float) -> InnerMode:
        """Conditional mode of u (and beta for ApproximateLaplace) by damped Newton."""
        re = self.re
        scale = float(np.exp(phi)) if self.has_phi else 1.0
        avals = re.a_values(re.layout.lambdas(theta), scale)
        u = self.u_start.copy()
        b = self.beta_start.copy() if self.inner_beta else np.asarray(beta, dtype=float)
        q, p = re.q, self.p
        diag_q = np.arange(q)
        phis = np.full(self.re.n, phi)
        eta_fixed = None if self.inner_beta else self.X @ b + self.offset

        def evaluate(u, b):
            base = self.X @ b + self.offset if eta_fixed is None else eta_fixed
            eta = base + re.mul(avals, u)
            d = self.obs.fn(eta, self.y, self.w, self.trials, phis)
            return eta, d, float(d[0].sum() - 0.5 * u @ u)

        eta, d, Q = evaluate(u, b)
        if not np.isfinite(Q):
            u, b = np.zeros(q), (b if not self.inner_beta else np.zeros(p))
            eta, d, Q = evaluate(u, b)
        for it in range(1, _MAX_INNER + 1):
            c = -d[2]
            if np.any(c < 0):  # observed information not PSD here: safe (absolute) weights
                c = np.abs(c)
            H = re.crossprod(avals, c)
            H[diag_q, diag_q] += 1.0
            gu = re.tmul(avals, d[1]) - u
            if self.inner_beta:
                XtC = self.X.T * c
                AtCX = re.tmul(avals, XtC.T)
                M = np.block([[XtC @ self.X, AtCX.T], [AtCX, H]])
                g = np.concatenate([self.X.T @ d[1], gu])
            else:
                M, g = H, gu
            fac = _chol(M)
            step = _solve(fac, g)
            dec = float(g @ step)
            if dec < max(_TOL_DEC, 1e-15 * abs(Q)) or dec < 0:
                break
            t = 1.0
            while True:
                if self.inner_beta:
                    b_new, u_new = b + t * step[:p], u + t * step[p:]
                else:
                    b_new, u_new = b, u + t * step
                eta_new, d_new, Q_new = evaluate(u_new, b_new)
                if np.isfinite(Q_new) and Q_new >= Q - 1e-13 * abs(Q):
                    break
                t *= 0.5
                if t < 1e-10:
                    raise PirlsFailure("PIRLS step-halving failed to increase the penalized likelihood")
            u, b, eta, d, Q = u_new, b_new, eta_new, d_new, Q_new
        else:
            raise PirlsFailure(f"PIRLS did not converge in {_MAX_INNER} iterations")
        # H at the final point, with the observed information (no safeguard)
        H = re.crossprod(avals, -d[2])
        H[diag_q, diag_q] += 1.0
        chol = _chol(H)
        logdet = 2.0 * float(np.log(np.diag(chol)).sum())
        objective = -Q + 0.5 * logdet
        self.u_start = u
        if self.inner_beta:
            self.beta_start = b
        self.n_evals += 1
        return InnerMode(u, b, eta, d, avals, chol, logdet, objective, it,
                         joint_chol=fac if self.inner_beta else None)

    # ---- objective and gradient -----------------------------------------------------------
    def value(self, x: np.ndarray) -> float:
        beta, theta, phi = self.unpack(x)
        try:
            return self.inner(beta, theta, phi).objective
        except PirlsFailure:
            return np.inf

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        beta, theta, phi = self.unpack(x)
        try:
            mode = self.inner(beta, theta, phi)
        except PirlsFailure:
            return np.inf, np.zeros_like(x)
        return mode.objective, self.gradient(mode, theta, phi)

    def gradient(self, mode: InnerMode, theta: np.ndarray, phi: float) -> np.ndarray:
        re, X = self.re, self.X
        d1, d2, d3 = mode.derivs[1], mode.derivs[2], mode.derivs[3]
        c = -d2
        av, u = mode.avals, mode.u
        scale = float(np.exp(phi)) if self.has_phi else 1.0
        Hinv = _inverse(mode.chol)
        h = re.leverages(av, Hinv)
        n = X.shape[0]

        # direct effects e (n x P), rhs for the inner solve, extra terms per parameter
        cols_e, rhs_extra, lpsi, l1psi, l2psi, trace = [], [], [], [], [], []
        zeros_q = np.zeros(re.q)
        if not self.inner_beta:
            for k in range(self.p):
                cols_e.append(X[:, k])
                rhs_extra.append(zeros_q)
                lpsi.append(0.0)
                l1psi.append(None)
                l2psi.append(None)
                trace.append(0.0)
        if self.n_theta:
            AH = _rows_times(av, re.cols, Hinv)  # function giving (A H^-1)[i, col_i]
        for tcol, jcol in self.theta_entries:
            vals = scale * tcol  # dA/dtheta_k entries (one per row, at column jcol)
            cols_e.append(vals * u[jcol])
            rhs_extra.append(np.bincount(jcol, weights=vals * d1, minlength=re.q))
            lpsi.append(0.0)
            l1psi.append(None)
            l2psi.append(None)
            trace.append(float(np.sum(c * vals * AH(jcol))))
        if self.has_phi:
            cols_e.append(re.mul(av, u))
            rhs_extra.append(re.tmul(av, d1))
            lpsi.append(float(mode.derivs[4].sum()))
            l1psi.append(mode.derivs[5])
            l2psi.append(mode.derivs[6])
            trace.append(float(re.q - np.trace(Hinv)))
        P = len(cols_e)
        E = np.column_stack(cols_e) if P else np.zeros((n, 0))
        CE = c[:, None] * E
        rhs_u = np.column_stack(rhs_extra) - re.tmul(av, CE)
        for k in range(P):
            if l1psi[k] is not None:
                rhs_u[:, k] += re.tmul(av, l1psi[k])
        if self.inner_beta:
            rhs_b = -X.T @ CE
            for k in range(P):
                if l1psi[k] is not None:
                    rhs_b[:, k] += X.T @ l1psi[k]
            dv = _solve(mode.joint_chol, np.vstack([rhs_b, rhs_u]))
            deta = E + X @ dv[: self.p] + _mul_cols(re, av, dv[self.p :])
        else:
            du = _solve(mode.chol, rhs_u)
            deta = E + _mul_cols(re, av, du)
        dc = -d3[:, None] * deta
        for k in range(P):
            if l2psi[k] is not None:
                dc[:, k] -= l2psi[k]
        grad = -(d1 @ E) - np.array(lpsi) + 0.5 * (h @ dc) + np.array(trace)
        return grad


def _chol(M: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor (LAPACK potrf; raises PirlsFailure if not positive definite)."""
    L, info = dpotrf(M, lower=1, clean=1, overwrite_a=0)
    if info != 0:
        raise PirlsFailure("Newton system is not positive definite")
    return L


def _solve(L: np.ndarray, b: np.ndarray) -> np.ndarray:
    x, info = dpotrs(L, b, lower=1)
    if info != 0:  # pragma: no cover - argument errors only
        raise PirlsFailure(f"potrs failed ({info})")
    return x


def _inverse(L: np.ndarray) -> np.ndarray:
    """(L L')^-1 from the Cholesky factor (LAPACK potri, symmetrised)."""
    inv, info = dpotri(L, lower=1)
    if info != 0:  # pragma: no cover
        raise PirlsFailure(f"potri failed ({info})")
    return np.tril(inv) + np.tril(inv, -1).T


def _mul_cols(re: REStructure, av: np.ndarray, V: np.ndarray) -> np.ndarray:
    """A @ V for a (q, k) matrix V."""
    return np.einsum("im,imk->ik", av, V[re.cols])


def _rows_times(av: np.ndarray, cols: np.ndarray, Hinv: np.ndarray):
    """Return f(col) = (A H^-1)[i, col_i] for a column index per row."""

    def f(col: np.ndarray) -> np.ndarray:
        return np.einsum("im,im->i", av, Hinv[cols, col[:, None]])

    return f
