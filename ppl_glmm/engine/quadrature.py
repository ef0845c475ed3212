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
minus sum_j Q'(u~_j) du~_j, equal to it to the inner precision.

Cost of one evaluation: the inner step, one call of the compiled observation function on the n K
node values of eta, and three steps of O(n (K + P)) for P outer parameters: the node values, the
node weights, and the whole gradient (this scalar term's Laplace gradient and the correction); no
finite differences. The steps are Numba kernels (:mod:`._quadrature_kernels`, one or two passes
over the rows) where the fit's functions run on Numba (more than ``backend.C_MAX_POINTS`` rows,
by default), and NumPy (:mod:`._quadrature_numpy`, ~0.1 ms more per evaluation of a small model)
on the C backend, whose point is that a new process need not import Numba.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..pymc_model import ObservationFunction
from .laplace import InnerMode, LaplaceProblem, PirlsFailure, _invalid_parameter_errors
from .structure import REStructure

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
        kernels: bool = False,
    ):
        if len(re.T) != 1 or re.m != 1:
            raise InputError(
                "fit_method: 'quadrature' needs exactly one random-effects term with one column; "
                "use fit_method='laplace'"
            )
        super().__init__(X, re, obs, inner_beta=False)
        # at the nodes only l, l_e (and l_p) are needed: a function compiled without l_ee, l_eee,
        # taking (K, n) node values with the data broadcast (observation_function(orders=1))
        self.nodes = nodes
        # the Numba kernels where the fit's functions run on Numba anyway; NumPy on the C backend,
        # so that a small fit in a new process does not import Numba (fitting.Workspace._template)
        self.kernels = bool(kernels)
        self.n_agq = int(n_agq)
        z, gh_weights = gauss_hermite(self.n_agq)  # (self.w is the prior weights: set_data)
        self.z = z.copy()  # writable: the kernels take writable arrays (one compiled signature)
        self.log_w = np.log(gh_weights)
        self._log_w_half_z2 = self.log_w + 0.5 * self.z**2  # log w_k + z_k^2 / 2
        self.group = np.ascontiguousarray(re.cols[:, 0], dtype=np.int64)  # level of each row
        self._X = np.ascontiguousarray(X, dtype=float)  # the kernels' layout
        self._t = np.ascontiguousarray(self.theta_entries[0][0], dtype=float)  # d a / d theta = s t
        self.node_failures = 0  # evaluations with a node outside the support (per fit: clones copy 0)

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
        quad = self._quadrature(mode, phi)
        if not math.isfinite(quad.objective) and np.any(mode.u):
            # Where the conditional log-likelihood is not concave (an inverse Gaussian, or a gamma
            # on an identity or power link) a level can have two modes, and the warm start (the
            # last point's mode) may hold the lesser one, whose nodes leave the support: a fit
            # ended there at -inf, 136 log-likelihood units from its optimum. Start once more
            # from u = 0 and keep the better quadrature.
            try:
                cold = self.cold_inner(beta, theta, phi)
            except PirlsFailure:
                cold = None
            if cold is not None:
                again = self._quadrature(cold, phi)
                if again.objective < quad.objective:
                    quad = again
                else:
                    self._warm(mode.u, mode.beta)
        if not math.isfinite(quad.objective):
            self.node_failures += 1
        return quad

    def _quadrature(self, mode: InnerMode, phi: float) -> QuadratureMode:
        k = self._steps()
        c = -mode.derivs[2]
        h, s, eta_nodes = k.node_etas(mode.eta, mode.avals[:, 0], c, self.group, self.z, self.re.q)
        if self.in_range is not None and not self.in_range(eta_nodes, phi if self.has_phi else None):
            return self._failed(mode)  # (a node outside the range, found without an exception)
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                d = self._at_nodes(eta_nodes, phi)
        except _invalid_parameter_errors():
            # a node outside the likelihood's support (e.g. a negative Poisson mean on an identity
            # link): the quadrature cannot be formed here; the outer line search steps back
            return self._failed(mode)
        log_m, pi = k.node_weights(
            d[0], mode.derivs[0], self.group, s, mode.u, self.z, self._log_w_half_z2, self.re.q
        )
        if not math.isfinite(log_m):
            return self._failed(mode)
        fields = _fields(mode)
        fields["objective"] = mode.objective - log_m
        lp = d[2] if self.has_phi else _EMPTY_NODES
        return QuadratureMode(**fields, laplace=mode.objective, s=s, h=h, pi=pi, l1_nodes=d[1], lp_nodes=lp)

    @staticmethod
    def _failed(mode: InnerMode) -> QuadratureMode:
        fields = _fields(mode)
        fields["objective"] = np.inf
        return QuadratureMode(**fields, laplace=mode.objective)

    def _steps(self):
        """What computes the node values, weights and gradient: the Numba kernels' module, or this
        problem's :class:`NumpySteps` (made on first use)."""
        if self.kernels:
            from . import _quadrature_kernels

            return _quadrature_kernels
        steps = self.__dict__.get("_numpy_steps")
        if steps is None or steps.K != self.n_agq:
            from ._quadrature_numpy import NumpySteps

            P = self.p + 1 + int(self.has_phi)
            steps = self._numpy_steps = NumpySteps(self.group, self.n_agq, self.re.q, P)
        return steps

    # ---- gradient -------------------------------------------------------------------------
    def gradient(self, mode: InnerMode, phi: float) -> np.ndarray:
        """Exact gradient of the quadrature objective (module docstring), Laplace part included;
        sets ``mode.dv`` as :meth:`LaplaceProblem.gradient` does."""
        if not isinstance(mode, QuadratureMode) or mode.pi is None:
            return super().gradient(mode, phi)
        der = mode.derivs  # l, l', l'', l''' (and l_phi, l'_phi, l''_phi) at the mode
        if self.has_phi:
            d4, d5, d6 = der[4], der[5], der[6]
        else:
            d4 = d5 = d6 = _EMPTY
        grad, mode.dv = self._steps().scalar_gradient(
            self._X,
            self.group,
            mode.avals[:, 0],
            -der[2],
            der[1],
            der[3],
            mode.u,
            mode.h,
            mode.s,
            self._t,
            self._re_scale(phi),
            bool(self.has_phi and getattr(self, "phi_scales_re", True)),
            d4,
            d5,
            d6,
            mode.pi,
            self.z,
            mode.l1_nodes,
            mode.lp_nodes,
        )
        return grad


_EMPTY = np.empty(0)  # (the kernels compile once per argument type: these are writable arrays)
_EMPTY_NODES = np.empty((0, 0))


_INNER_FIELDS = tuple(f.name for f in dataclasses.fields(InnerMode))


def _fields(mode: InnerMode) -> dict:
    return {name: getattr(mode, name) for name in _INNER_FIELDS}
