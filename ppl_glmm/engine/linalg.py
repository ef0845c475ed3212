"""Blocked Cholesky for H = Lambda'Z'CZ Lambda + I (and the ApproximateLaplace Newton matrix).

As in lme4 and MixedModels.jl, the random-effects term with the most coefficients is ordered first:
its diagonal block of H is block diagonal (one q_1 x q_1 block per level), so with

    M = [[D, B], [B', C]],   D = blockdiag(D_1..D_L),   S = C - B' D^-1 B,

``log|M| = sum_l log|D_l| + log|S|`` and solves cost O(L q_1^3 + L q_1 m + m^3) with m = dim C (the
other terms' coefficients, plus beta for ApproximateLaplace). Only S is dense. The selected inverse
returns the entries of M^-1 the gradient needs: the diagonal blocks of the D part, and the dense
B and C parts.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg.lapack import dpotrf, dpotri, dpotrs

__all__ = ["BlockedSPD", "NotPositiveDefinite"]


class NotPositiveDefinite(np.linalg.LinAlgError):
    pass


def _chol(M: np.ndarray) -> np.ndarray:
    L, info = dpotrf(M, lower=1, clean=1, overwrite_a=0)
    if info != 0:
        raise NotPositiveDefinite("matrix is not positive definite")
    return L


class BlockedSPD:
    """Factorisation of the symmetric positive definite ``[[blockdiag(D), B], [B', C]]``."""

    def __init__(self, D: np.ndarray, B: np.ndarray, C: np.ndarray):
        L, k, _ = D.shape
        self.L, self.k, self.m = L, k, C.shape[0]
        self.n1 = L * k
        if k == 1:
            d = D[:, 0, 0]
            if np.any(d <= 0):
                raise NotPositiveDefinite("diagonal block is not positive definite")
            self.Dinv = (1.0 / d)[:, None, None]
            logdet_d = float(np.log(d).sum())
        else:
            try:
                Lc = np.linalg.cholesky(D)
                self.Dinv = np.linalg.inv(D)
            except np.linalg.LinAlgError as err:
                raise NotPositiveDefinite("diagonal block is not positive definite") from err
            diag = np.diagonal(Lc, axis1=1, axis2=2)
            if not (np.all(diag > 0) and np.all(np.isfinite(self.Dinv))):  # NaN passes cholesky
                raise NotPositiveDefinite("diagonal block is not positive definite")
            logdet_d = 2.0 * float(np.log(diag).sum())
        self.B = B
        if self.m:
            self.K = self._dinv(B)  # D^-1 B  (n1 x m)
            S = C - B.T @ self.K
            self.S_chol = _chol(S)
            logdet_s = 2.0 * float(np.log(np.diag(self.S_chol)).sum())
        else:
            self.K = np.zeros((self.n1, 0))
            self.S_chol = np.zeros((0, 0))
            logdet_s = 0.0
        self.logdet = logdet_d + logdet_s

    def _dinv(self, R: np.ndarray) -> np.ndarray:
        """D^-1 R for R with n1 rows (vector or matrix)."""
        if R.ndim == 1:
            return np.einsum("lab,lb->la", self.Dinv, R.reshape(self.L, self.k)).ravel()
        return np.einsum("lab,lbc->lac", self.Dinv, R.reshape(self.L, self.k, -1)).reshape(self.n1, -1)

    def _sinv(self, R: np.ndarray) -> np.ndarray:
        x, info = dpotrs(self.S_chol, R, lower=1)
        if info != 0:  # pragma: no cover - argument errors only
            raise NotPositiveDefinite(f"potrs failed ({info})")
        return x

    def solve(self, r: np.ndarray) -> np.ndarray:
        r1, r2 = r[: self.n1], r[self.n1 :]
        y1 = self._dinv(r1)
        if not self.m:
            return y1
        x2 = self._sinv(r2 - self.B.T @ y1)
        x1 = y1 - self.K @ x2
        return np.concatenate([x1, x2], axis=0)

    def selected_inverse(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(diagonal blocks of the inverse's D part (L, k, k), its B part (n1, m), its C part (m, m))."""
        if not self.m:
            return self.Dinv, np.zeros((self.n1, 0)), np.zeros((0, 0))
        inv, info = dpotri(self.S_chol, lower=1)
        if info != 0:  # pragma: no cover
            raise NotPositiveDefinite(f"potri failed ({info})")
        Sinv = np.tril(inv) + np.tril(inv, -1).T
        KS = self.K @ Sinv  # n1 x m
        K3 = self.K.reshape(self.L, self.k, self.m)
        KS3 = KS.reshape(self.L, self.k, self.m)
        blocks = self.Dinv + np.einsum("lam,lbm->lab", KS3, K3)
        return blocks, -KS, Sinv
