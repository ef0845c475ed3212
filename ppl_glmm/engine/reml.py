"""Restricted maximum likelihood (REML): the likelihood integrated over beta with a flat prior.

The restricted likelihood is ``L_R(theta, sigma) = int L(beta, theta, sigma) d beta``. With beta in
the inner step (as ApproximateLaplace), the Laplace approximation of the joint integral over
(u, beta) -- u with its N(0, I) prior, beta flat -- gives the objective minimised here::

    f_R = -sum_i l_i(eta~) + u~'u~ / 2 + log|M| / 2 - (p/2) log(2 pi)
    M   = [[A'CA + I, A'CX], [X'CA, X'CX]]          (the joint Newton matrix at the mode (u~, beta~))

(u's (2 pi)^(q/2) cancels against its prior's normalising constant; beta's flat prior leaves
(2 pi)^(p/2)). For the linear mixed model (normal, identity link) the integrand is Gaussian in
(u, beta), so f_R is exact: with log|M| = log|L|^2 + log|R_X|^2 - p log sigma^2 (C = W/sigma^2,
A = sigma Z Lambda) it is lme4's REML criterion over 2::

    -2 l_R = log|L|^2 + log|R_X|^2 + pwrss / sigma^2 + (n - p) log(2 pi sigma^2) - sum log w_i,

which at the profiled sigma^2 = pwrss / (n - p) is lmer's ``REMLcrit``. For another link or family
it is the Laplace approximation of the restricted likelihood (glmmTMB's ``REML = TRUE``).

Gradient: that of ApproximateLaplace (see :mod:`.laplace`) with the joint leverages and trace::

    df_R/dpsi = -l'e - sum l_psi + (sum_i dc_i b_i' M^-1 b_i) / 2 + tr(M^-1 B'C B_psi),
    b_i = [a_i; x_i],   B_psi = [A_psi, 0].

With K = H^-1 G, G = A'CX, S = X'CX - G'K (the Schur complement; p extra solves with H) and
r_i = K'a_i - x_i, the block inverse of M gives

    b_i' M^-1 b_i        = a_i' H^-1 a_i + r_i' S^-1 r_i
    (B M^-1)[i, u-block] = a_i' H^-1 + r_i' S^-1 K'

so the trace for theta_k adds sum_i c_i (a_psi)_i (R S^-1 K')[i, col_i] to ApproximateLaplace's,
and for psi = log sigma it is ``q - tr((M^-1)_uu) = q - tr(H^-1) - tr(K S^-1 K')``.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ..pymc_model import ObservationFunction
from .laplace import InnerMode, LaplaceProblem, PirlsFailure, _invalid_parameter_errors
from .linalg import NotPositiveDefinite
from .lmm import profiled_log_sigma
from .structure import REStructure

__all__ = ["JointBasis", "LinearInner", "LinearREMLProblem", "REMLProblem"]


def _spd_inverse(S: np.ndarray) -> np.ndarray:
    try:
        L = np.linalg.cholesky(0.5 * (S + S.T))
    except np.linalg.LinAlgError as err:
        raise NotPositiveDefinite("X'CX - X'CA H^-1 A'CX is not positive definite") from err
    Li = np.linalg.inv(L)
    return Li.T @ Li


class JointBasis:
    """Mixin: the joint (u, beta) factor built with X~ = X T, T = ``optimize.beta_basis(X)``
    (orthogonal columns of rms 1), beta = T beta~. With X itself the Schur complement
    X'CX - X'CA H^-1 A'CX cancelled digits where a column's mean dwarfs its spread: a REML fit of
    x + 1e6 was 1.2e-3 off in logLik, reported converged (now 1e-10)."""

    def joint_x(self) -> tuple[np.ndarray, np.ndarray]:
        """(X~, T): the columns the joint factor is built with, and beta = T beta~ (computed once
        per problem)."""
        cached = self.__dict__.get("_joint_basis")
        if cached is None or cached[0] is not self.X:
            from .optimize import beta_basis

            T = beta_basis(self.X)
            cached = self._joint_basis = (self.X, self.X @ T, T, float(np.linalg.slogdet(T)[1]))
        return cached[1], cached[2]

    def joint_logdet_shift(self) -> float:
        """log|M| - log|M~| = -2 log|det T| (M~ the joint matrix in the basis X~)."""
        self.joint_x()
        return -2.0 * self._joint_basis[3]


class LinearInner(JointBasis):
    """Mixin for a linear mixed model (normal, identity link; beta in the inner step): the joint
    mode (u, beta) in one linear solve.

    l'' = -w/sigma^2 does not depend on eta, so one Newton step from zero with the joint matrix
    M = [[A'CA + I, A'CX], [X'CA, X'CX]] is the exact mode, and M is also the matrix REML needs:
    one factorisation of M and one of H per evaluation (the general inner step makes three of M).
    It is exact at every evaluation: a warm-started general inner step stops without moving once
    its Newton decrement is below 1e-13, which leaves eta ~1e-7 stale (pseudo-likelihood's fixed
    point is first-order in eta)."""

    def _inner(self, beta, theta, phi, **_) -> InnerMode:
        re = self.re
        X, T = self.joint_x()
        scale = float(np.exp(phi)) if self.phi_scales_re else 1.0
        avals = re.avals(theta, scale)
        phis = np.full(re.n, phi)
        try:
            d0 = self.obs(self.offset, self.y, self.w, self.trials, phis, self.terms)  # u = 0, beta = 0
            joint = re.factor_joint(avals, -d0[2], X)
            step = joint.solve(np.concatenate([re.tmul(avals, d0[1]), X.T @ d0[1]]))
            u, bt = step[: re.q], step[re.q :]
            b = T @ bt
            eta = X @ bt + re.mul(avals, u) + self.offset
            d = self.obs(eta, self.y, self.w, self.trials, phis, self.terms)
            hfac = re.factor_h(avals, -d[2])
        except NotPositiveDefinite as err:
            raise PirlsFailure("the LME's Newton matrix is not positive definite") from err
        except _invalid_parameter_errors() as err:
            # sigma = exp(phi) outside (0, inf) at a trial point far out (a pseudo-likelihood start
            # escaped fitglme with PyMC's 'sigma > 0'): an infeasible point, the line search steps back
            raise PirlsFailure(f"the LME's likelihood is undefined here ({err})") from err
        objective = -float(d[0].sum() - 0.5 * u @ u) + 0.5 * hfac.logdet
        if not np.isfinite(objective):
            raise PirlsFailure("the LME's log-likelihood is not finite")
        self.u_start, self.beta_start = u, b
        self.n_evals += 1
        return InnerMode(u, b, eta, d, avals, hfac, objective, 1, joint_fac=joint)


class REMLProblem(JointBasis, LaplaceProblem):
    """The REML objective ``f_R`` over ``[theta, (phi)]``; beta is the inner step's joint mode."""

    def __init__(self, X: np.ndarray, re: REStructure, obs: ObservationFunction):
        super().__init__(X, re, obs, inner_beta=True)
        self._log_2pi_p = 0.5 * self.p * math.log(2.0 * math.pi)

    def inner(self, beta: np.ndarray | None, theta: np.ndarray, phi: float) -> InnerMode:
        """The joint mode, with objective ``-Q + log|M|/2 - (p/2) log(2 pi)`` (not ``log|H|/2``);
        M is factored in the basis of :meth:`joint_x` (the general inner step's own factor, built
        with X for its Newton steps, is factored again there: one more factorisation)."""
        mode = super().inner(beta, theta, phi)
        if not isinstance(self, LinearInner):
            joint = self.re.factor_joint(mode.avals, -mode.derivs[2], self.joint_x()[0])
            mode = replace(mode, joint_fac=joint)
        logdet_m = mode.joint_fac.logdet + self.joint_logdet_shift()
        objective = mode.objective + 0.5 * (logdet_m - mode.hfac.logdet) - self._log_2pi_p
        return replace(mode, objective=objective)

    def gradient(self, mode: InnerMode, phi: float) -> np.ndarray:
        """Exact gradient of ``f_R`` over ``[theta, (phi)]`` (module docstring), in the joint
        factor's beta coordinates (:meth:`joint_x`; the gradient does not depend on them)."""
        re = self.re
        X = self.joint_x()[0]
        d1, d3 = mode.derivs[1], mode.derivs[3]
        c = -mode.derivs[2]
        av, u = mode.avals, mode.u
        scale = float(np.exp(phi)) if self.phi_scales_re else 1.0
        sel = mode.hfac.selected_inverse()
        G = re.tmul(av, c[:, None] * X)  # A'CX  (q x p)
        K = mode.hfac.solve(G)  # H^-1 A'CX
        S_inv = _spd_inverse((X.T * c) @ X - G.T @ K)
        R = re.mul(av, K) - X  # rows r_i' = a_i'K - x_i'
        RS = R @ S_inv
        lev = re.leverages(av, sel) + np.einsum("ip,ip->i", RS, R)  # b_i' M^-1 b_i

        E_cols, rhs_cols, lpsi, trace = [], [], [], []
        for tcol, jcol, slot in self.theta_entries:
            vals = scale * tcol  # dA/dtheta_k: one entry per row, at column jcol
            E_cols.append((vals * u[jcol])[:, None])
            rhs_cols.append(np.bincount(jcol, weights=vals * d1, minlength=re.q)[:, None])
            lpsi.append(0.0)
            m_row = re.a_hinv_at(av, sel, slot) + np.einsum("ip,ip->i", RS, K[jcol])
            trace.append(float(np.sum(c * vals * m_row)))
        if self.phi_scales_re:  # phi = log sigma: A = sigma Z Lambda, so dA/dphi = A
            E_cols.append(re.mul(av, u)[:, None])
            rhs_cols.append(re.tmul(av, d1)[:, None])
            trace.append(float(re.q - re.trace_inverse(sel) - np.sum((K @ S_inv) * K)))
        elif self.has_phi:  # a likelihood parameter only (NB's log theta): no direct effect on eta
            E_cols.append(np.zeros((re.n, 1)))
            rhs_cols.append(np.zeros((re.q, 1)))
            trace.append(0.0)
        if self.has_phi:
            lpsi.append(float(mode.derivs[4].sum()))
        E = np.hstack(E_cols)
        CE = c[:, None] * E
        rhs_u = np.hstack(rhs_cols) - re.tmul(av, CE)
        rhs_b = -X.T @ CE
        if self.has_phi:
            rhs_u[:, -1] += re.tmul(av, mode.derivs[5])
            rhs_b[:, -1] += X.T @ mode.derivs[5]
        dv = mode.joint_fac.solve(np.vstack([rhs_u, rhs_b]))
        deta = E + re.mul(av, dv[: re.q]) + X @ dv[re.q :]
        dc = -d3[:, None] * deta
        if self.has_phi:
            dc[:, -1] -= mode.derivs[6]
        return -(d1 @ E) - np.array(lpsi) + 0.5 * (lev @ dc) + np.array(trace)


class LinearREMLProblem(LinearInner, REMLProblem):
    """REML of a linear mixed model (normal, identity link) with the one-solve inner step.

    sigma is profiled out of the outer optimisation (as lmer does): :meth:`profile_phi` gives
    phi^(theta) = log sigma^(theta), and the optimiser works on theta alone (see
    ``optimize.minimize``)."""

    def profile_phi(self, x: np.ndarray) -> float:
        """phi^ = log sigma^ for the outer vector without phi: sigma^2 = pwrss / (n - p).

        With v = sigma u the joint mode (v, beta) and eta do not depend on sigma, and
        f_R = pwrss / (2 sigma^2) + (n - p) log sigma + (terms free of sigma), with
        pwrss = sum_i w_i (y_i - eta_i)^2 + |v|^2 (the module docstring's -2 l_R / 2). So
        df_R/dphi = (n - p) - pwrss / sigma^2 vanishes exactly at sigma^2 = pwrss / (n - p), and
        the profiled objective f_R(theta, phi^(theta)) has gradient df_R/dtheta at phi^ (the
        envelope theorem): the full problem's gradient without its phi entry. pwrss comes from
        the joint mode at sigma = 1, one solve with M (the outer evaluation at phi^ makes its own).
        """
        re = self.re
        X = self.joint_x()[0]  # (the residual does not depend on beta's coordinates)
        theta = self.unpack(np.append(x, 0.0))[1]
        avals = re.avals(theta, 1.0)
        r0 = self.y - self.offset  # the residual at v = 0, beta = 0
        try:
            joint = re.factor_joint(avals, self.w, X)  # C = w at sigma = 1
        except NotPositiveDefinite as err:
            raise PirlsFailure("the LME's Newton matrix is not positive definite") from err
        step = joint.solve(np.concatenate([re.tmul(avals, self.w * r0), X.T @ (self.w * r0)]))
        v, b = step[: re.q], step[re.q :]
        return profiled_log_sigma(r0 - X @ b - re.mul(avals, v), v, self.w, re.n - self.p)
