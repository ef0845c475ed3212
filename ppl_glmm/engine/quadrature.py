"""Adaptive Gauss-Hermite quadrature (lme4's ``glmer(nAGQ = K)``) for one scalar random-effects term.

With a single term of one column (``(1|g)`` or ``(0 + x|g)``) the levels j are independent and
u_j ~ N(0, 1) is scalar, so the marginal likelihood is a product of one-dimensional integrals. With
Q_j(u) = sum_{i in j} l_i(eta_i(u)) - u^2/2 (l_i with all constants), the conditional mode u~_j,
h_j = 1 + sum_{i in j} c_i a_i^2 (the j-th diagonal of H = A'CA + I, c = -l'' the observed
information), s_j = h_j^(-1/2) and the K-node rule (z_k, w_k) for the standard normal density
(lme4's ``GHrule``, sum_k w_k = 1), substituting u = u~_j + z s_j:

    L_j = int exp(Q_j(u)) du / sqrt(2 pi)  ~  s_j sum_k w_k exp(Q_j(u~_j + z_k s_j) + z_k^2 / 2)

    f = -sum_j log L_j = f_Laplace - sum_j log M_j,     M_j = sum_k w_k exp(R_jk)
    R_jk = sum_{i in j} [l_i(eta_ik) - l_i(eta_i)] - z_k s_j (u~_j + z_k s_j / 2) + z_k^2 / 2

where eta_ik = eta_i + a_i z_k s_j and f_Laplace = sum_j [log(h_j)/2 - Q_j(u~_j)] is
:class:`LaplaceProblem`'s objective at the same mode (so K = 1, one node z = 0 with w = 1, gives
M_j = 1: the Laplace objective exactly). This is lme4's ``glmerAGQ`` deviance / 2 term by term,
except that lme4 writes Q with deviance residuals: its ``logLik`` for nAGQ > 1 omits the saturated
log-likelihood sum_i l_i(y_i | mu_i = y_i), which ``f`` keeps (all constants, as for Laplace):

    -f = lme4's logLik(nAGQ = K) + sum_i l_i(y_i | mu_i = y_i)       (K > 1; 0 for Bernoulli data)

Gradient (exact, by implicit differentiation of u~_j and h_j). For an outer parameter psi, with
e_i = d eta_i/d psi and a'_i = d a_i/d psi at fixed u, l_psi, l'_psi, l''_psi the likelihood's
derivatives at fixed eta (non-zero only for phi), pi_jk = w_k exp(R_jk) / M_j, and
Q'_jk = sum_{i in j} l'_i(eta_ik) a_i - u_jk:

    du~_j = sum_{i in j} (-c_i e_i a_i + l'_psi,i a_i + l'_i a'_i) / h_j
    dc_i  = -l'''_i (e_i + a_i du~_j) - l''_psi,i
    dh_j  = sum_{i in j} (dc_i a_i^2 + 2 c_i a_i a'_i),      ds_j = -s_j dh_j / (2 h_j)
    df/dpsi = df_Laplace/dpsi - sum_{j,k} pi_jk [ sum_{i in j} (l'_i(eta_ik) (e_i + z_k s_j a'_i)
              - l'_i e_i + l_psi,i(eta_ik) - l_psi,i)  +  Q'_jk (du~_j + z_k ds_j) ]

e and a' are those of the Laplace gradient: beta: e = x_i, a' = 0; theta: a' = s t_i, e = a' u~_j
(t the term's column, s = sigma or 1); phi = log sigma: a' = a_i, e = a_i u~_j when phi scales the
random effects (``phi_scales_re``, the normal family), a' = e = 0 when phi enters only the
likelihood. At the z = 0 node Q'_jk = Q'(u~_j) is the inner step's residual, which the Laplace
gradient (envelope step) drops; keeping it corrects the gradient to first order in that residual
(errors of ~1e-6 at a badly scaled mode fall to ~1e-9), so with K = 1 the gradient is Laplace's
minus sum_j Q'(u~_j) du~_j, equal to it to the inner precision. Cost of one evaluation: the inner step,
the Laplace gradient, one call of the compiled observation function on the n K node values of eta,
and O(n (K + P)) NumPy work for P outer parameters; no finite differences.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..pymc_model import ObservationFunction
from .laplace import InnerMode, LaplaceProblem, _invalid_parameter_errors
from .structure import REStructure, column_sums

__all__ = ["QuadratureMode", "QuadratureProblem", "gauss_hermite"]


@functools.lru_cache(maxsize=32)
def gauss_hermite(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes z and weights w with sum_k w_k g(z_k) ~ E g(Z), Z ~ N(0, 1) (lme4's ``GHrule(k)``).

    Made symmetric as lme4 >= 2.0 and MixedModels.jl do (z <- (z - rev z)/2, w <- (w + rev w)/2),
    so an odd rule has the node z = 0 exactly; agrees with lme4 1.1's rule to 2e-13 relative.
    Computed once per k in a process (~0.3 ms, a tenth of a small fit): the arrays are read-only."""
    z, w = np.polynomial.hermite_e.hermegauss(k)
    w = w / w.sum()
    z, w = 0.5 * (z - z[::-1]), 0.5 * (w + w[::-1])
    z.flags.writeable = False
    w.flags.writeable = False
    return z, w


@dataclass
class QuadratureMode(InnerMode):
    """The inner mode plus the quadrature's node values (for the gradient).

    ``laplace`` is the Laplace objective at this mode; ``objective`` the quadrature one."""

    laplace: float = np.nan
    s: np.ndarray | None = None  # (J,) h_j^-1/2
    h: np.ndarray | None = None  # (J,) h_j
    pi: np.ndarray | None = None  # (J, K) normalised node weights pi_jk
    l1_nodes: np.ndarray | None = None  # (K, n) l'_i(eta_ik) (0 where pi_jk = 0)
    lp_nodes: np.ndarray | None = None  # (K, n) l_phi,i(eta_ik), or None


class QuadratureProblem(LaplaceProblem):
    """Negative AGQ log-likelihood over ``[beta, theta, (phi)]`` for one scalar random-effects term.

    Same interface as :class:`LaplaceProblem` (the outer optimiser, ``hessian`` and the inference
    code use it unchanged); :meth:`inner` returns a :class:`QuadratureMode` whose ``objective`` is
    the quadrature objective, and :meth:`gradient` its exact gradient. With ``inner_beta`` set (the
    GLM start) it is the plain Laplace inner step.
    """

    def __init__(
        self,
        X: np.ndarray,
        re: REStructure,
        obs: ObservationFunction,
        n_agq: int,
        nodes: ObservationFunction,
    ):
        if len(re.T) != 1 or re.m != 1:
            raise InputError(
                "fit_method='quadrature' needs exactly one random-effects term with one column; "
                "use fit_method='laplace'"
            )
        super().__init__(X, re, obs, inner_beta=False)
        # at the nodes only l, l_e (and l_p) are needed: a function compiled without l_ee, l_eee,
        # taking (K, n) node values with the data broadcast (observation_function(orders=1))
        self.nodes = nodes
        self.n_agq = int(n_agq)
        self.z, gh_weights = gauss_hermite(self.n_agq)  # (self.w is the prior weights: set_data)
        self.log_w = np.log(gh_weights)
        self._log_w_half_z2 = self.log_w + 0.5 * self.z**2  # log w_k + z_k^2 / 2
        self.group = re.cols[:, 0].copy()  # level of each row (internal order = original order)
        J = re.q
        # bin of entry (k, i) of a (K, n) node array: level of row i at node k
        self._node_bins = (np.arange(self.n_agq)[:, None] * J + self.group[None, :]).ravel()

    def _at_nodes(self, eta_nodes: np.ndarray, phi: float) -> list[np.ndarray]:
        """[l, l_e, (l_phi)] at a (K, n) array of eta, the (n,) data broadcast over the nodes."""
        return self.nodes(eta_nodes, self.y, self.w, self.trials, np.full(eta_nodes.shape, phi))

    def _re_scale(self, phi: float) -> float:
        """s in A = s Z Lambda: sigma when phi = log sigma scales the random effects, else 1."""
        return float(np.exp(phi)) if self.has_phi and getattr(self, "phi_scales_re", True) else 1.0

    # ---- objective ------------------------------------------------------------------------
    def inner(self, beta: np.ndarray | None, theta: np.ndarray, phi: float) -> InnerMode:
        """Laplace's conditional mode, then the quadrature over each level's nodes."""
        mode = super().inner(beta, theta, phi)
        if self.inner_beta:  # the GLM start (optimize.glm_start): no quadrature
            return mode
        return self._quadrature(mode, phi)

    def _quadrature(self, mode: InnerMode, phi: float) -> QuadratureMode:
        K, g, n = self.n_agq, self.group, self.re.n
        a = mode.avals[:, 0]
        c = -mode.derivs[2]
        h = 1.0 + np.bincount(g, weights=c * a * a, minlength=self.re.q)  # = diag(H) (1 x 1 blocks)
        s = 1.0 / np.sqrt(h)
        u = mode.u
        shift = s[:, None] * self.z[None, :]  # (J, K): u_jk - u~_j
        eta_nodes = mode.eta[None, :] + self.z[:, None] * (a * s[g])[None, :]  # (K, n)
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                d = self._at_nodes(eta_nodes, phi)
        except _invalid_parameter_errors():
            # a node outside the likelihood's support (e.g. a negative Poisson mean on an identity
            # link): the quadrature cannot be formed here; the outer line search steps back
            return self._failed(mode)
        l0 = d[0].reshape(K, n)
        # R_jk = log of the integrand at node k over its value at the mode, plus z_k^2 / 2 (the
        # Gaussian weight the rule carries); A = log w_k + R
        A = self._node_sums(l0 - mode.derivs[0][None, :]) - shift * (u[:, None] + 0.5 * shift)
        A += self._log_w_half_z2
        A[np.isnan(A)] = -np.inf
        top = A.max(axis=1)
        if not math.isfinite(float(top.sum())):
            return self._failed(mode)
        E = np.exp(A - top[:, None])
        total = E.sum(axis=1)  # >= 1: the largest term is exp(0)
        log_m = float((top + np.log(total)).sum())  # sum_j log sum_k w_k exp(R_jk), without overflow
        if not math.isfinite(log_m):
            return self._failed(mode)
        pi = E / total[:, None]
        l1 = d[1].reshape(K, n)
        lp = d[2].reshape(K, n) if self.has_phi else None
        if not pi.all():  # nodes without weight (underflow) take no part in the gradient
            used = (pi > 0)[g].T  # (K, n)
            l1 = np.where(used, l1, 0.0)
            lp = np.where(used, lp, 0.0) if lp is not None else None
        fields = _fields(mode)
        fields["objective"] = mode.objective - log_m
        return QuadratureMode(**fields, laplace=mode.objective, s=s, h=h, pi=pi, l1_nodes=l1, lp_nodes=lp)

    def _node_sums(self, M: np.ndarray) -> np.ndarray:
        """(J, K) sums over each level's rows of a (K, n) array of node values."""
        J, K = self.re.q, self.n_agq
        return np.bincount(self._node_bins, weights=M.ravel(), minlength=J * K).reshape(K, J).T

    @staticmethod
    def _failed(mode: InnerMode) -> QuadratureMode:
        fields = _fields(mode)
        fields["objective"] = np.inf
        return QuadratureMode(**fields, laplace=mode.objective)

    # ---- gradient -------------------------------------------------------------------------
    def gradient(self, mode: InnerMode, phi: float) -> np.ndarray:
        """Exact gradient of the quadrature objective (module docstring)."""
        grad = super().gradient(mode, phi, residual=False)  # the Laplace part; the residual is in corr
        if not isinstance(mode, QuadratureMode) or mode.pi is None:
            return grad
        g, X, z = self.group, self.X, self.z
        d1, d3 = mode.derivs[1], mode.derivs[3]
        c = -mode.derivs[2]
        a = mode.avals[:, 0]
        s, h, pi = mode.s, mode.h, mode.pi
        ug = mode.u[g]
        n, p = self.re.n, self.p
        scale = self._re_scale(phi)
        t = self.theta_entries[0][0]  # the term's column: d a / d theta = s t
        phi_re = self.has_phi and getattr(self, "phi_scales_re", True)

        # per parameter: e = d eta / d psi and a' = d a / d psi at fixed u; l'_psi, l''_psi at fixed
        # eta (the last column only, phi's: L1p = l_e,phi and L2p = l_ee,phi, zero elsewhere)
        P = p + 1 + int(self.has_phi)
        E = np.empty((n, P))
        Ap = np.zeros((n, P))
        E[:, :p] = X
        Ap[:, p] = scale * t
        E[:, p] = Ap[:, p] * ug
        if self.has_phi:
            if phi_re:
                Ap[:, -1] = a
                E[:, -1] = a * ug
            else:
                E[:, -1] = 0.0

        J = self.re.q
        ca = c * a
        M = d1[:, None] * Ap - ca[:, None] * E
        if self.has_phi:
            M[:, -1] += a * mode.derivs[5]
        du = column_sums(g, M, J) / h[:, None]
        dc = -d3[:, None] * (E + a[:, None] * du[g])
        if self.has_phi:
            dc[:, -1] -= mode.derivs[6]
        dh = column_sums(g, dc * (a * a)[:, None] + 2.0 * ca[:, None] * Ap, J)
        ds = -0.5 * (s / h)[:, None] * dh

        l1 = mode.l1_nodes
        pig = pi.T[:, g]  # (K, n): pi of each row's level
        W = pig * l1
        r = W.sum(axis=0)  # sum_k pi l'(eta_ik)
        r2 = s[g] * (z @ W)  # s_j sum_k pi z_k l'(eta_ik)
        dQ = self._node_sums(l1 * a[None, :]) - (mode.u[:, None] + s[:, None] * z[None, :])  # Q'_jk
        V = pi * dQ
        corr = (r - d1) @ E + r2 @ Ap + V.sum(axis=1) @ du + (V @ z) @ ds
        if self.has_phi:
            corr[-1] += float(np.sum(pig * mode.lp_nodes) - mode.derivs[4].sum())
        return grad - corr


_INNER_FIELDS = tuple(f.name for f in dataclasses.fields(InnerMode))


def _fields(mode: InnerMode) -> dict:
    return {name: getattr(mode, name) for name in _INNER_FIELDS}
