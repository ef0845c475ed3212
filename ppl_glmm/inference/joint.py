"""The joint covariance of [beta-hat; b-hat - b] (MATLAB's sigma^2 V) and the products built on it.

In the engine's variables -- spherical u with b = L u, L = sigma blockdiag(Lambda_r) (sigma = 1 for
families without a dispersion), A = Z L, and C the observed information at the mode (for a
pseudo-likelihood fit, the final pseudo-data LME's W / sigma^2) -- the negative log posterior of
(beta, u) given theta-hat and y, with a flat prior on beta, has the Hessian

    J = [[X'CX, X'CA], [A'CX, H]],      H = A'CA + I,

and MATLAB's sigma^2 V (with V^-1 = [[X'C_m X, X'C_m Z], [Z'C_m X, Z'C_m Z + D^-1]], C_m = sigma^2 C,
Psi = sigma^2 D) is exactly J^-1 mapped to b: the engine's C already carries the 1/sigma^2, so no
further factor appears. With G = H^-1 A'CX and S = X'CX - X'CA G (S^-1 = the 'Conditional'
Cov(beta-hat)), block inversion gives

    Cov(beta)    = S^-1,
    Cov(beta, u) = -S^-1 G',
    Cov(u)       = H^-1 + G S^-1 G',

so for a row [x; z] (a = L'z) and for a contrast H beta + K b (R = K L):

    Var(x'beta + z'b) = a'H^-1 a + (x - G'a)' S^-1 (x - G'a),
    Cov(H beta + K b) = R H^-1 R' + (H - R G) S^-1 (H - R G)',
    Cov(b)            = L (H^-1 + G S^-1 G') L',

and lme4's ``condVar`` (b given beta-hat) is the first part alone, L H^-1 L'. H^-1 is used only
through solves with its sparse Cholesky factor and through its selected inverse (the diagonal
blocks of each level are on the factor's pattern): no dense n x q or q x q matrix is formed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..engine.laplace import InnerMode, LaplaceProblem
from ..results import FitRecord

__all__ = ["JointCovariance", "joint_covariance"]

_SOLVE_ENTRIES = 2_000_000  # right-hand sides per batch of solves with H: q x k <= this many doubles


@dataclass(frozen=True, eq=False)
class JointCovariance:
    """The pieces of the joint covariance at the fit's mode (u in the engine's internal order)."""

    fit: FitRecord
    problem: LaplaceProblem
    mode: InnerMode
    G: np.ndarray  # (q, p) H^-1 A'CX, internal order
    S_inv: np.ndarray  # (p, p) conditional Cov(beta-hat) = S^-1
    L: sp.csr_matrix  # (q, q) b = L u_original

    @property
    def q(self) -> int:
        return self.G.shape[0]

    # ---- internal helpers -----------------------------------------------------------------
    def _internal_of_original(self) -> np.ndarray:
        re = self.problem.re
        out = np.empty(re.q, dtype=np.int64)
        out[re.orig_index] = np.arange(re.q)
        return out

    def _to_u(self, K) -> sp.csr_matrix:
        """K (M x q, b in MATLAB's order) -> K L with columns in the engine's internal u order."""
        KL = sp.csr_matrix(sp.csr_matrix(K) @ self.L)
        return sp.csr_matrix(KL[:, self.problem.re.orig_index])

    def _hinv_blocks(self, term_offset: int, n_levels: int, q_r: int) -> np.ndarray:
        """(n_levels, q_r, q_r) diagonal blocks of H^-1 for one term (from the selected inverse)."""
        hfac = self.mode.hfac
        sel = self._selected()
        idx = self._internal_of_original()
        cols = term_offset + np.arange(n_levels)[:, None] * q_r + np.arange(q_r)[None, :]  # original
        ci = idx[cols]  # internal
        r = np.repeat(ci, q_r, axis=1).reshape(n_levels, q_r, q_r)
        c = np.tile(ci, (1, q_r)).reshape(n_levels, q_r, q_r)
        pos = hfac.sym.positions(r.ravel(), c.ravel())
        return sel[pos].reshape(n_levels, q_r, q_r)

    def _selected(self) -> np.ndarray:
        sel = self.__dict__.get("_sel")
        if sel is None:
            sel = self.mode.hfac.selected_inverse()
            object.__setattr__(self, "_sel", sel)
        return sel

    def _term_lambda(self, r: int) -> np.ndarray:
        fit = self.fit
        return fit.result.sigma * fit.ws.layout.lambdas(fit.result.theta)[r]

    # ---- random effects -------------------------------------------------------------------
    def conditional_variances(self) -> list[np.ndarray]:
        """lme4's condVar: per term, (n_levels, q_r, q_r) blocks of L H^-1 L' = Cov(b | beta-hat)."""
        out = []
        for r, term in enumerate(self.fit.design.terms):
            Lr = self._term_lambda(r)
            hb = self._hinv_blocks(term.offset, term.n_levels, term.q_r)
            out.append(np.einsum("ij,ljk,mk->lim", Lr, hb, Lr))
        return out

    def b_covariance_blocks(self) -> list[np.ndarray]:
        """MATLAB's CMSEP: per term, (n_levels, q_r, q_r) blocks of L (H^-1 + G S^-1 G') L'."""
        G_orig = self.G[self._internal_of_original()]  # rows in MATLAB's b order
        out = []
        for r, (term, cv) in enumerate(zip(self.fit.design.terms, self.conditional_variances())):
            Lr = self._term_lambda(r)
            Gr = G_orig[term.offset : term.offset + term.size].reshape(term.n_levels, term.q_r, -1)
            LG = np.einsum("ij,ljp->lip", Lr, Gr)
            out.append(cv + np.einsum("lip,pq,ljq->lij", LG, self.S_inv, LG))
        return out

    def b_variance(self) -> np.ndarray:
        """diag Cov(b-hat - b), length q in MATLAB's b order (SEPred^2)."""
        return np.concatenate([np.diagonal(B, axis1=1, axis2=2).ravel() for B in self.b_covariance_blocks()])

    # ---- contrasts and rows -----------------------------------------------------------------
    def contrast_covariance(self, Hm: np.ndarray, K) -> np.ndarray:
        """Cov(H beta-hat + K b-hat - K b) = R H^-1 R' + (H - R G) S^-1 (H - R G)', R = K L."""
        R = self._to_u(K)
        Rd = R.toarray()
        D = Hm - Rd @ self.G
        out = Rd @ self.mode.hfac.solve(Rd.T) + D @ self.S_inv @ D.T
        return 0.5 * (out + out.T)

    def eta_variance_fitted(self) -> np.ndarray:
        """Var(x_i'beta-hat + z_i'b-hat - z_i'b) for the fitted rows: h_i + r_i'S^-1 r_i with the
        leverages h_i = a_i'H^-1 a_i (selected inverse) and r_i = x_i - G'a_i."""
        re, av = self.problem.re, self.mode.avals
        h = re.leverages(av, self._selected())
        R = self.problem.X - re.mul(av, self.G)
        return h + np.einsum("ip,pq,iq->i", R, self.S_inv, R)

    def eta_variance_rows(self, X: np.ndarray, Z) -> np.ndarray:
        """The same for new rows (X: m x p; Z: m x q sparse in MATLAB's b order, zero for new
        levels): a'H^-1 a = sum over pairs of a row's entries of a_k a_l (H^-1)_kl, the entries
        read from the selected inverse where the pair is in the factor's pattern (every pair a
        fitted row has) and, for the others (levels of crossed terms never seen together), from
        solves with H for the distinct columns of the side with fewer of them. A solve per row
        took 15 s for 100,000 new rows of a crossed model fitted in 6 s, and 80 s for a nested one."""
        A = self._to_u(Z).tocsr()  # m x q, internal order
        A.sort_indices()
        m = A.shape[0]
        h = np.zeros(m)
        if A.nnz:
            sym, sel = self.mode.hfac.sym, self._selected()
            counts = np.diff(A.indptr)
            row_of = np.repeat(np.arange(m), counts)
            slot = np.arange(A.nnz) - A.indptr[row_of]
            k = int(counts.max())
            C = np.full((m, k), -1, dtype=np.int64)
            V = np.zeros((m, k))
            C[row_of, slot], V[row_of, slot] = A.indices, A.data
            for a in range(k):
                for b in range(a, k):
                    rows = np.flatnonzero((C[:, a] >= 0) & (C[:, b] >= 0))
                    r, c = C[rows, a], C[rows, b]
                    pos = sym.find(r, c)
                    vals = sel[np.maximum(pos, 0)]
                    outside = pos < 0
                    if outside.any():
                        vals[outside] = self._hinv_entries(r[outside], c[outside])
                    term = V[rows, a] * V[rows, b] * vals
                    h[rows] += term if a == b else 2.0 * term
        R = X - A @ self.G
        return h + np.einsum("ip,pq,iq->i", R, self.S_inv, R)

    def _hinv_entries(self, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        """(H^-1)[r, c] by solves for the distinct columns of the side with fewer of them, in
        batches of at most _SOLVE_ENTRIES values."""
        if np.unique(r).size < np.unique(c).size:  # H^-1 is symmetric
            r, c = c, r
        cols, at = np.unique(c, return_inverse=True)
        out = np.empty(r.size)
        k = max(1, _SOLVE_ENTRIES // max(self.q, 1))
        for start in range(0, cols.size, k):
            block = cols[start : start + k]
            E = np.zeros((self.q, block.size))
            E[block, np.arange(block.size)] = 1.0
            Y = self.mode.hfac.solve(E)
            here = (at >= start) & (at < start + block.size)
            out[here] = Y[r[here], at[here] - start]
        return out


def _b_map(fit: FitRecord) -> sp.csr_matrix:
    """L (q x q, MATLAB's b order): b = L u, L = sigma blockdiag(I_levels kron Lambda_r)."""
    lambdas = fit.ws.layout.lambdas(fit.result.theta)
    blocks = [
        sp.kron(sp.identity(t.n_levels), fit.result.sigma * Lr) for t, Lr in zip(fit.design.terms, lambdas)
    ]
    return sp.csr_matrix(sp.block_diag(blocks)) if blocks else sp.csr_matrix((0, 0))


def joint_covariance(fit: FitRecord) -> JointCovariance:
    """The joint covariance pieces at the fit's mode: one inner solve on a fresh problem (the final
    pseudo-data LME for MPL/REMPL), p solves with H, and the p x p Schur complement."""
    from ..fitting import conditional_cov_beta

    problem = fit.problem()
    beta, theta, phi = problem.unpack(fit.result.x)
    mode = problem.inner(beta, theta, phi)
    re, X = problem.re, problem.X
    c = -mode.derivs[2]
    G = mode.hfac.solve(re.tmul(mode.avals, c[:, None] * X))
    S_inv = conditional_cov_beta(problem, mode)
    return JointCovariance(fit=fit, problem=problem, mode=mode, G=G, S_inv=S_inv, L=_b_map(fit))
