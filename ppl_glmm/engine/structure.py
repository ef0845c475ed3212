"""Random-effects structure for the engine: A = Z Lambda kept as (n x m) values plus column indices.

Every row of Z has exactly m = sum_r q_r structural entries (one level per term), so A = Z Lambda,
with Lambda = s * blockdiag(Lambda_r) (s = sigma for families with a dispersion, else 1), has the same
column pattern as Z with values ``T_r[i, :] @ Lambda_r``. All products the engine needs (A v, A'w,
the entries of A'CA and A'CX, the leverages a_i' H^-1 a_i) are gathers and ``bincount`` scatters over
this layout: no dense n x q matrix is ever formed.

Internally the terms are ordered by decreasing size (q_r x levels; a nested factor's finer term
before the coarser one), which is the elimination order of the sparse Cholesky
(:mod:`.sparse_cholesky`); ``to_original``/``to_internal`` convert u between this order and
MATLAB's b order. H = A'CA + I has a non-zero (j, k) only where columns j and k share an
observation: the symbolic factorisation and the scatter positions of those pairs are computed once
per structure.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..covariance import ThetaLayout
from .sparse_cholesky import SparseCholesky, SymbolicFactor

__all__ = ["REStructure", "column_sums"]


def column_sums(bins: np.ndarray, W: np.ndarray, size: int) -> np.ndarray:
    """(size, k) sums of the rows of an (N, k) array W by ``bins`` (one bincount for all k columns:
    entry (i, j) goes to bin ``bins[i] * k + j``)."""
    k = W.shape[1]
    idx = (bins[:, None] * k + np.arange(k)).ravel()
    return np.bincount(idx, weights=W.ravel(), minlength=size * k).reshape(size, k)


@dataclass(frozen=True, eq=False)
class _Pattern:
    """The symbolic factor of H (or of the joint (u, beta) matrix) and, for every pair of slots
    a <= b, the position in its value array of the entry (cols[i, a], cols[i, b]) of each row."""

    sym: SymbolicFactor
    pairs: tuple[tuple[int, int], ...]
    pos: np.ndarray  # (len(pairs), n)
    beta_pos: np.ndarray | None = None  # (q, p) positions of (q + j, col) in the joint matrix
    beta_block: np.ndarray | None = None  # (p, p) positions of the beta block (lower triangle)


@dataclass(frozen=True)
class REStructure:
    T: tuple[np.ndarray, ...]  # per term (n, q_r)
    cols: np.ndarray  # (n, m) int: internal column of u for each structural entry
    slot_term: np.ndarray  # (m,) term of each slot
    slot_index: np.ndarray  # (m,) position within the term's block
    layout: ThetaLayout
    q: int
    n: int
    boundaries: tuple[int, ...]  # internal first column of each term
    orig_index: np.ndarray  # (q,) original column of each internal column

    @classmethod
    def from_terms(cls, terms, n: int) -> REStructure:
        order = sorted(range(len(terms)), key=lambda r: -terms[r].size)  # stable: ties keep order
        start, internal_offset = 0, {}
        for r in order:
            internal_offset[r] = start
            start += terms[r].size
        q = start
        cols, orig = [], np.empty(q, dtype=np.int64)
        for r, t in enumerate(terms):
            c_int = internal_offset[r] + t.codes[:, None] * t.q_r + np.arange(t.q_r)[None, :]
            cols.append(c_int)
            orig[internal_offset[r] : internal_offset[r] + t.size] = t.offset + np.arange(t.size)
        cols = np.ascontiguousarray(np.concatenate(cols, axis=1), dtype=np.int64)
        slot_term = np.concatenate([np.full(t.q_r, r) for r, t in enumerate(terms)])
        slot_index = np.concatenate([np.arange(t.q_r) for t in terms])
        layout = ThetaLayout(tuple(t.q_r for t in terms))
        return cls(
            T=tuple(t.T for t in terms),
            cols=cols,
            slot_term=slot_term,
            slot_index=slot_index,
            layout=layout,
            q=q,
            n=n,
            boundaries=tuple(sorted(internal_offset.values())),
            orig_index=orig,
        )

    @property
    def m(self) -> int:
        return self.cols.shape[1]

    def to_original(self, u: np.ndarray) -> np.ndarray:
        out = np.empty_like(u)
        out[self.orig_index] = u
        return out

    def to_internal(self, u: np.ndarray) -> np.ndarray:
        return u[self.orig_index]

    # ---- A = Z Lambda values ---------------------------------------------------------------
    def a_values(self, lambdas: list[np.ndarray], scale: float) -> np.ndarray:
        """(n, m) values of A for relative factors ``lambdas`` scaled by ``scale``."""
        return np.concatenate([scale * (T @ L) for T, L in zip(self.T, lambdas)], axis=1)

    def avals(self, theta: np.ndarray, scale: float) -> np.ndarray:
        """:meth:`a_values` at ``theta``. With scalar terms only, Lambda_r = theta_r and
        A's values are ``T[:, r] * scale * theta_r``: one product, no factor matrices."""
        if self._scalar_T is not None:
            return self._scalar_T * (scale * np.asarray(theta, dtype=float))
        return self.a_values(self.layout.lambdas(theta), scale)

    @cached_property
    def _scalar_T(self) -> np.ndarray | None:
        """The terms' columns side by side (n, m) when every term is scalar, else None."""
        if any(q != 1 for q in self.layout.sizes):
            return None
        return np.ascontiguousarray(np.concatenate(self.T, axis=1), dtype=float)

    @cached_property
    def _diagonal_col(self) -> np.ndarray | None:
        """With one scalar term (H diagonal): the column of u of each row; else None."""
        return np.ascontiguousarray(self.cols[:, 0]) if self.m == 1 else None

    def mul(self, vals: np.ndarray, v: np.ndarray) -> np.ndarray:
        """A @ v for a vector v, or A @ V for a (q, k) matrix V."""
        if v.ndim == 1:
            return (vals * v[self.cols]).sum(axis=1)
        out = vals[:, :1] * v[self.cols[:, 0]]
        for a in range(1, self.m):
            out += vals[:, a : a + 1] * v[self.cols[:, a]]
        return out

    def tmul(self, vals: np.ndarray, w: np.ndarray) -> np.ndarray:
        """A' @ w for a vector w, or A' @ W for an (n, k) matrix W (result (q, k))."""
        flat = self.cols.ravel()
        if w.ndim == 1:
            return np.bincount(flat, weights=(vals * w[:, None]).ravel(), minlength=self.q)
        return column_sums(flat, (vals[:, :, None] * w[:, None, :]).reshape(-1, w.shape[1]), self.q)

    # ---- H = A'CA + I and the joint matrix, sparse ------------------------------------------
    def _slot_pairs(self) -> tuple[tuple[int, int], ...]:
        return tuple((a, b) for a in range(self.m) for b in range(a, self.m))

    @cached_property
    def _h_pattern(self) -> _Pattern:
        """Symbolic factor of H and the scatter positions, computed once per structure."""
        pairs = self._slot_pairs()
        r = np.concatenate([self.cols[:, a] for a, b in pairs])
        c = np.concatenate([self.cols[:, b] for a, b in pairs])
        sym = SymbolicFactor.analyse(self.q, r, c, [*self.boundaries, self.q])
        return _Pattern(sym, pairs, sym.positions(r, c).reshape(len(pairs), self.n))

    @property
    def dense_order(self) -> int:
        """Order of the dense trailing block of H's factor (BLAS threads pay off only for a large one)."""
        return self._h_pattern.sym.m

    def _joint_pattern(self, p: int) -> _Pattern:
        """The same for [[H, A'CX], [X'CA, X'CX]] (beta last, dense: every u couples to it)."""
        cache = self.__dict__.get("_joint_patterns", {})
        if p in cache:
            return cache[p]
        pairs = self._slot_pairs()
        qt = self.q + p
        r = np.concatenate([self.cols[:, a] for a, b in pairs])
        c = np.concatenate([self.cols[:, b] for a, b in pairs])
        ub_r = np.repeat(self.q + np.arange(p), self.q)
        ub_c = np.tile(np.arange(self.q), p)
        bb_r, bb_c = np.tril_indices(p)
        sym = SymbolicFactor.analyse(
            qt,
            np.concatenate([r, ub_r, self.q + bb_r]),
            np.concatenate([c, ub_c, self.q + bb_c]),
            list(self.boundaries),
        )
        pat = _Pattern(
            sym,
            pairs,
            sym.positions(r, c).reshape(len(pairs), self.n),
            beta_pos=sym.positions(ub_r, ub_c).reshape(p, self.q).T.copy(),
            beta_block=sym.positions(self.q + bb_r, self.q + bb_c),
        )
        # a new dict each time: a concurrent reader never sees one being filled
        self.__dict__["_joint_patterns"] = {**cache, p: pat}
        return pat

    def _scatter(self, pat: _Pattern, vals: np.ndarray, c: np.ndarray) -> np.ndarray:
        """The value array of A'CA + I on the pattern: sum_i c_i a_ia a_ib at each pair's entry."""
        if pat.sym.diagonal:  # one scalar term: H_jj = 1 + sum over the level's rows of c_i a_i^2
            a = vals[:, 0]
            F = np.bincount(self._diagonal_col, weights=c * a * a, minlength=self.q)
            F += 1.0
            return F
        w = np.concatenate([c * vals[:, a] * vals[:, b] for a, b in pat.pairs])
        F = np.bincount(pat.pos.ravel(), weights=w, minlength=pat.sym.size)
        F[pat.sym.diag[: self.q]] += 1.0
        return F

    def factor_h(self, vals: np.ndarray, c: np.ndarray) -> SparseCholesky:
        """Cholesky factor of H = A'CA + I (internal order)."""
        pat = self._h_pattern
        return pat.sym.factor(self._scatter(pat, vals, c))

    def factor_joint(self, vals: np.ndarray, c: np.ndarray, X: np.ndarray) -> SparseCholesky:
        """Factor of [[H, A'CX], [X'CA, X'CX]] with the unknowns ordered (u_internal, beta)."""
        p = X.shape[1]
        pat = self._joint_pattern(p)
        F = self._scatter(pat, vals, c)
        CX = c[:, None] * X
        F[pat.beta_pos] += self.tmul(vals, CX)
        bb = X.T @ CX
        rr, cc = np.tril_indices(p)
        F[pat.beta_block] += bb[rr, cc]
        return pat.sym.factor(F)

    # ---- selected inverse lookups -------------------------------------------------------------
    def _pair_index(self, a: int, b: int) -> int:
        a, b = min(a, b), max(a, b)
        return a * self.m - a * (a - 1) // 2 + (b - a)

    def _hinv_pair(self, sel: np.ndarray, a: int, b: int) -> np.ndarray:
        """(H^-1)[cols[i, a], cols[i, b]] for every row i."""
        return np.take(sel, self._h_pattern.pos[self._pair_index(a, b)])

    def leverages(self, vals: np.ndarray, sel: np.ndarray) -> np.ndarray:
        """h_i = a_i' H^-1 a_i."""
        if self._diagonal_col is not None:  # H diagonal: h_i = a_i^2 / H_jj
            a = vals[:, 0]
            return a * a * sel[self._diagonal_col]
        h = np.zeros(self.n)
        for a in range(self.m):
            for b in range(a, self.m):
                term = vals[:, a] * vals[:, b] * self._hinv_pair(sel, a, b)
                h += term if a == b else 2.0 * term
        return h

    def a_hinv_at(self, vals: np.ndarray, sel: np.ndarray, slot: int) -> np.ndarray:
        """(A H^-1)[i, col_i] with col_i the column of ``slot`` in row i."""
        if self._diagonal_col is not None:
            return vals[:, 0] * sel[self._diagonal_col]
        out = np.zeros(self.n)
        for a in range(self.m):
            out += vals[:, a] * self._hinv_pair(sel, a, slot)
        return out

    def trace_inverse(self, sel: np.ndarray) -> float:
        """tr(H^-1) from the selected inverse."""
        return float(sel[self._h_pattern.sym.diag].sum())

    # ---- derivatives in theta -----------------------------------------------------------------
    def theta_entries(self) -> list[tuple[np.ndarray, np.ndarray, int]]:
        """For each theta_k = Lambda_r[i, j]: (T_r[:, i], column of slot j in each row, slot j).

        d A / d theta_k has one entry per observation: value s * T_r[obs, i] at that column.
        """
        out = []
        for r, i, j in self.layout.entries:
            slot_j = int(np.flatnonzero((self.slot_term == r) & (self.slot_index == j))[0])
            out.append((self.T[r][:, i], self.cols[:, slot_j], slot_j))
        return out
