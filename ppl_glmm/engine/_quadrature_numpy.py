"""The quadrature's three steps in NumPy, for fits on PyTensor's C backend (:mod:`.quadrature`).

Same methods, arguments and results as the Numba kernels of :mod:`._quadrature_kernels` (which
document the formulas), as whole-array operations, with the bins of the level sums made once per
problem. A fit of up to ``backend.C_MAX_POINTS`` rows runs its likelihood on the C backend so that
a new process need not import Numba (~0.5 s); its quadrature uses these too, at ~0.1 ms more per
evaluation than the kernels (180 rows x 25 nodes). The two agree to rounding
(``tests/test_quadrature.py``).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["NumpySteps"]


class NumpySteps:
    """The three steps for one problem's rows and rule: the bins of its level sums are made once
    (``group``: level of each row, K nodes, J levels, P outer parameters)."""

    def __init__(self, group: np.ndarray, K: int, J: int, P: int):
        self.node_bins = (np.arange(K)[:, None] * J + group[None, :]).ravel()  # entry (k, i)
        self.row_bins = (group[:, None] * P + np.arange(P)).ravel()  # entry (i, col)
        self.K, self.J, self.P = K, J, P

    def _node_sums(self, M: np.ndarray) -> np.ndarray:
        """(J, K) sums over each level's rows of a (K, n) array of node values."""
        K, J = self.K, self.J
        return np.bincount(self.node_bins, weights=M.ravel(), minlength=J * K).reshape(K, J).T

    def _row_sums(self, W: np.ndarray) -> np.ndarray:
        """(J, P) sums over each level's rows of an (n, P) array."""
        J, P = self.J, self.P
        return np.bincount(self.row_bins, weights=W.ravel(), minlength=J * P).reshape(J, P)

    @staticmethod
    def node_etas(eta, a, c, group, z, J):
        """h_j = 1 + sum_{i in j} c_i a_i^2, s_j = h_j^-1/2 and eta_ik = eta_i + z_k a_i s_j, (K, n)."""
        h = 1.0 + np.bincount(group, weights=c * a * a, minlength=J)
        s = 1.0 / np.sqrt(h)
        return h, s, eta[None, :] + z[:, None] * (a * s[group])[None, :]

    def node_weights(self, l_nodes, l_mode, group, s, u, z, log_w_half_z2, J):
        """sum_j log M_j and pi (J, K); NaN where a level's largest term is not finite."""
        shift = s[:, None] * z[None, :]  # (J, K): u_jk - u~_j
        A = self._node_sums(l_nodes - l_mode) - shift * (u[:, None] + 0.5 * shift)
        A += log_w_half_z2
        A[np.isnan(A)] = -np.inf
        top = A.max(axis=1)
        if not math.isfinite(float(top.sum())):
            return np.nan, np.empty_like(A)
        A -= top[:, None]
        E = np.exp(A, out=A)
        total = E.sum(axis=1)  # >= 1: the largest term is exp(0)
        E /= total[:, None]
        return float((top + np.log(total)).sum()), E

    def scalar_gradient(
        self, X, group, a, c, d1, d3, u, h, s, t, scale, phi_re, d4, d5, d6, pi, z, l1_nodes, lp_nodes
    ):
        """The Laplace gradient minus the quadrature's correction, and dv (J, P)."""
        n, p = X.shape
        J = h.size
        has_phi = d4.size > 0
        P = p + 1 + int(has_phi)
        ug, hg = u[group], h[group]
        E = np.empty((n, P))  # e_i = d eta_i / d psi at fixed u
        Ap = np.zeros((n, P))  # a'_i = d a_i / d psi
        E[:, :p] = X
        Ap[:, p] = scale * t
        E[:, p] = Ap[:, p] * ug
        if has_phi:
            if phi_re:
                Ap[:, -1] = a
                E[:, -1] = a * ug
            else:
                E[:, -1] = 0.0
        ca = c * a
        M = d1[:, None] * Ap - ca[:, None] * E
        if has_phi:
            M[:, -1] += a * d5
        dv = self._row_sums(M) / h[:, None]
        dc = -d3[:, None] * (E + a[:, None] * dv[group])
        if has_phi:
            dc[:, -1] -= d6
        a2 = a * a
        grad = -(d1 @ E) + 0.5 * ((a2 / hg) @ dc)
        grad[p] += scale * float((ca / hg) @ t)
        if has_phi:
            grad[-1] -= float(d4.sum())
            if phi_re:
                grad[-1] += J - float(np.sum(1.0 / h))
        dh = self._row_sums(dc * a2[:, None] + 2.0 * ca[:, None] * Ap)
        ds = -0.5 * (s / h)[:, None] * dh

        pig = pi.T[:, group]  # (K, n): pi of each row's level
        l1, lp = l1_nodes, lp_nodes
        if not pi.all():  # nodes without weight (underflow) take no part
            used = pig > 0
            l1 = np.where(used, l1, 0.0)
            lp = np.where(used, lp, 0.0) if has_phi else lp
        W = pig * l1
        r = W.sum(axis=0)  # sum_k pi l'(eta_ik)
        r2 = s[group] * (z @ W)  # s_j sum_k pi z_k l'(eta_ik)
        dQ = self._node_sums(l1 * a) - (u[:, None] + s[:, None] * z[None, :])  # Q'_jk
        V = pi * dQ
        corr = (r - d1) @ E + r2 @ Ap + V.sum(axis=1) @ dv + (V @ z) @ ds
        if has_phi:
            corr[-1] += float(np.sum(pig * lp) - d4.sum())
        return grad - corr, dv
