"""The quadrature's three steps in NumPy, for fits on PyTensor's C backend (:mod:`.quadrature`).

Same functions, arguments and results as the Numba kernels of :mod:`._quadrature_kernels` (which
document the formulas), as whole-array operations. A fit of up to ``backend.C_MAX_POINTS`` rows
runs its likelihood on the C backend so that a new process need not import Numba (~0.5 s); its
quadrature uses these too, at ~0.2 ms more per evaluation than the kernels. The two agree to
rounding (``tests/test_quadrature.py``).
"""

from __future__ import annotations

import math

import numpy as np

from .structure import column_sums

__all__ = ["node_etas", "node_weights", "scalar_gradient"]


def node_etas(eta, a, c, group, z, J):
    """h_j = 1 + sum_{i in j} c_i a_i^2, s_j = h_j^-1/2 and eta_ik = eta_i + z_k a_i s_j, (K, n)."""
    h = 1.0 + np.bincount(group, weights=c * a * a, minlength=J)
    s = 1.0 / np.sqrt(h)
    return h, s, eta[None, :] + z[:, None] * (a * s[group])[None, :]


def _node_sums(M: np.ndarray, group: np.ndarray, J: int) -> np.ndarray:
    """(J, K) sums over each level's rows of a (K, n) array of node values."""
    K = M.shape[0]
    bins = (np.arange(K)[:, None] * J + group[None, :]).ravel()
    return np.bincount(bins, weights=M.ravel(), minlength=J * K).reshape(K, J).T


def node_weights(l_nodes, l_mode, group, s, u, z, log_w_half_z2, J):
    """sum_j log M_j and pi (J, K); NaN where a level's largest term is not finite."""
    shift = s[:, None] * z[None, :]  # (J, K): u_jk - u~_j
    A = _node_sums(l_nodes - l_mode[None, :], group, J) - shift * (u[:, None] + 0.5 * shift)
    A += log_w_half_z2
    A[np.isnan(A)] = -np.inf
    top = A.max(axis=1)
    if not math.isfinite(float(top.sum())):
        return np.nan, np.empty_like(A)
    E = np.exp(A - top[:, None])
    total = E.sum(axis=1)  # >= 1: the largest term is exp(0)
    return float((top + np.log(total)).sum()), E / total[:, None]


def scalar_gradient(X, group, a, c, d1, d3, u, h, s, t, scale, phi_re, d4, d5, d6, pi, z, l1_nodes, lp_nodes):
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
    dv = column_sums(group, M, J) / h[:, None]
    dc = -d3[:, None] * (E + a[:, None] * dv[group])
    if has_phi:
        dc[:, -1] -= d6
    grad = -(d1 @ E) + 0.5 * ((a * a / hg) @ dc)
    grad[p] += float(np.sum(ca * scale * t / hg))
    if has_phi:
        grad[-1] -= float(d4.sum())
        if phi_re:
            grad[-1] += J - float(np.sum(1.0 / h))
    dh = column_sums(group, dc * (a * a)[:, None] + 2.0 * ca[:, None] * Ap, J)
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
    dQ = _node_sums(l1 * a[None, :], group, J) - (u[:, None] + s[:, None] * z[None, :])  # Q'_jk
    V = pi * dQ
    corr = (r - d1) @ E + r2 @ Ap + V.sum(axis=1) @ dv + (V @ z) @ ds
    if has_phi:
        corr[-1] += float(np.sum(pig * lp) - d4.sum())
    return grad - corr, dv
