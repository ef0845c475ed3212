"""Sparse Cholesky of H = Lambda'Z'CZ Lambda + I (and of the joint (u, beta) matrix): sparse leading
columns, a dense trailing block, and the Takahashi selected inverse.

The columns are in the engine's internal order (random-effects terms by decreasing size; beta last
in the joint matrix). As in MixedModels.jl's blocked scheme and CHOLMOD's supernodes, the factor
splits at a term boundary ``s``::

    P = [[P_11, P_21'], [P_21, P_22]],   L = [[L_11, 0], [L_21, L_22]],
    L_11 sparse (left-looking, on the symbolic pattern),  L_22 = chol(P_22 - L_21 L_21')  dense (LAPACK)

The leading columns of a nested factor keep zero fill (a pupil's class lies in one school), and the
coupling of two crossed factors is kept sparse until the Schur complement of the smaller one, which
is dense in practice (students x instructors) and is left to LAPACK. ``s`` minimises a flop model,
``2 sum_{j<s} c_j^2`` for the sparse columns (c_j their counts) against ``2 m^3 / (3 gamma)`` for
the dense block (m = n - s; gamma = 10, BLAS's advantage per flop). The symbolic analysis
(elimination tree, column counts, pattern, scatter positions) is done once per model structure
and reused by every evaluation, refit and bootstrap replicate.

A diagonal P (one scalar random-effects term: no two columns share an observation) is factored
elementwise at any size: L = sqrt(P), log|P| = sum_j log P_jj, P^-1 = 1 / P (``diagonal``).

log|P| = 2 sum_j log L_jj + log|P_22 - L_21 L_21'|. The selected inverse Z = P^-1 on L's pattern
(all the gradient needs: Z[i, j] for the pairs of columns that share an observation, and diag Z)
comes from Takahashi's recursion over the sparse columns, after ``Z_22`` from LAPACK's ``potri``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.linalg.lapack import dpotrf, dpotri, dpotrs

from .linalg import NotPositiveDefinite

__all__ = ["SparseCholesky", "SymbolicFactor"]

_GAMMA = 10.0  # flop-rate advantage of a dense LAPACK factorisation over the scalar sparse loop
_ALL_DENSE = 200  # matrices up to this order are factored dense (no kernel is compiled for them)
_EMPTY22 = np.zeros((0, 0))  # the (absent) dense block of a diagonal factor; never written


def _kernels():
    from . import _kernels

    return _kernels


@dataclass(frozen=True, eq=False)
class SymbolicFactor:
    """Pattern of L and the scatter positions of the matrix's lower entries into its value array.

    The value array ``F`` is ``[L's leading-column values (nnz), the trailing block (m x m,
    column-major, lower triangle)]``; the selected inverse has the same layout.
    """

    n: int
    s: int
    colptr: np.ndarray
    rows: np.ndarray
    lrptr: np.ndarray
    lcols: np.ndarray
    lpos: np.ndarray
    tailstart: np.ndarray  # where each leading column's trailing rows (>= s) begin
    diag: np.ndarray  # position of each diagonal entry in F
    diagonal: bool = False  # no off-diagonal entry (one scalar random-effects term): L = sqrt(P)

    @property
    def m(self) -> int:
        return self.n - self.s

    @property
    def nnz(self) -> int:
        return int(self.colptr[self.s])

    @property
    def size(self) -> int:
        return self.nnz + self.m * self.m

    @classmethod
    def analyse(cls, n: int, r: np.ndarray, c: np.ndarray, boundaries: list[int]) -> SymbolicFactor:
        """Symbolic factorisation of the n x n pattern with lower entries (r >= c) and the diagonal;
        the split ``s`` is chosen among ``boundaries`` (column indices) by the flop model."""
        r, c = np.maximum(r, c), np.minimum(r, c)
        key = np.unique(np.concatenate([r * n + c, np.arange(n, dtype=np.int64) * (n + 1)]))
        rr, cc = key // n, key % n  # sorted by row, then column: the row view of the lower pattern
        off = rr != cc
        rptr = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(rr[off], minlength=n), out=rptr[1:])
        rcol = np.ascontiguousarray(cc[off])
        if not off.any():  # diagonal: every column sparse with no fill, factored elementwise
            ar = np.arange(n + 1, dtype=np.int64)
            empty = np.zeros(0, np.int64)
            return cls(n, n, ar, ar[:-1], np.zeros(n + 1, np.int64), empty, empty, ar[1:], ar[:-1], True)
        if n <= _ALL_DENSE:
            s, colptr = 0, np.zeros(1, np.int64)
            rows = lrptr = lcols = lpos = np.zeros(0, np.int64)
            lrptr = np.zeros(1, np.int64)
        else:
            k = _kernels()
            parent = k.etree(n, rptr, rcol)
            counts = k.column_counts(n, rptr, rcol, parent)
            s = _choose_split(n, counts, boundaries)
            colptr = np.zeros(s + 1, np.int64)
            np.cumsum(counts[:s] + 1, out=colptr[1:])
            rows, lrptr, lcols, lpos = k.fill_pattern(n, s, rptr, rcol, parent, colptr)
        col_of = np.repeat(np.arange(s, dtype=np.int64), np.diff(colptr))
        tailstart = colptr[:-1] + np.bincount(col_of[rows < s], minlength=s)  # rows sorted: leading first
        sym = cls(n, s, colptr, rows, lrptr, lcols, lpos, tailstart, np.empty(0, np.int64))
        object.__setattr__(sym, "diag", sym.positions(np.arange(n), np.arange(n)))
        return sym

    def positions(self, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Position in F of the lower entry (max(r, c), min(r, c)) for each pair (which must be in
        the pattern); in the trailing block, column-major."""
        out = self.find(r, c)
        if np.any(out < 0):
            raise AssertionError("entry outside the symbolic pattern")  # pragma: no cover
        return out

    def find(self, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        """:meth:`positions` of the pairs in the pattern, -1 for the others (whose entries of a
        selected inverse are not computed)."""
        r, c = np.maximum(r, c), np.minimum(r, c)
        out = np.full(r.shape, -1, dtype=np.int64)
        sparse = c < self.s
        if np.any(sparse):
            keys = self._keys()
            want = c[sparse] * self.n + r[sparse]
            at = np.minimum(np.searchsorted(keys, want), keys.size - 1)
            out[sparse] = np.where(keys[at] == want, at, -1)
        dense = ~sparse
        out[dense] = self.nnz + (c[dense] - self.s) * self.m + (r[dense] - self.s)
        return out

    def _keys(self) -> np.ndarray:
        cols = np.repeat(np.arange(self.s, dtype=np.int64), np.diff(self.colptr))
        return cols * self.n + self.rows

    def factor(self, F: np.ndarray) -> SparseCholesky:
        """Numeric factorisation of the matrix whose lower entries are scattered in ``F``
        (overwritten)."""
        return SparseCholesky(self, F)


def _choose_split(n: int, counts: np.ndarray, boundaries: list[int]) -> int:
    """The boundary s minimising 2 sum_{j<s} c_j^2 + 2 (n - s)^3 / (3 gamma)."""
    sparse_cost = np.concatenate([[0.0], np.cumsum(counts.astype(float) ** 2)])
    best, best_cost = n, np.inf
    for s in sorted({b for b in boundaries if 0 <= b <= n} | {0, n}):
        m = n - s
        cost = 2.0 * sparse_cost[s] + 2.0 * m**3 / (3.0 * _GAMMA) + m * m
        if cost < best_cost:
            best, best_cost = s, cost
    return best


class SparseCholesky:
    """Numeric factor P = L L' for one value array; ``solve``, ``logdet`` and ``selected_inverse``."""

    def __init__(self, sym: SymbolicFactor, F: np.ndarray):
        self.sym = sym
        s, m = sym.s, sym.m
        if sym.diagonal:  # L = sqrt(P), log|P| = sum log P_jj
            # one pass: log P_jj is finite exactly when 0 < P_jj < inf (NaN gives NaN), so a finite
            # sum certifies the whole diagonal (this runs once per inner Newton step)
            with np.errstate(divide="ignore", invalid="ignore"):
                logdet = float(np.log(F).sum())
            if not math.isfinite(logdet):
                bad = np.flatnonzero(~(np.isfinite(F) & (F > 0)))
                raise NotPositiveDefinite(
                    f"matrix is not positive definite (column {bad[0] if bad.size else 0})"
                )
            # (L = sqrt(P) is never formed: solves and the inverse divide by P itself)
            self.L22, self._d, self.logdet = _EMPTY22, F, logdet
            return
        if s:
            bad = _kernels().factor_columns(
                s, m, sym.colptr, sym.rows, sym.lrptr, sym.lcols, sym.lpos, sym.tailstart, F
            )
            if bad >= 0:
                raise NotPositiveDefinite(f"matrix is not positive definite (column {bad})")
            self.Lx = F[: sym.nnz]
            logdet = 2.0 * float(np.log(self.Lx[sym.colptr[:-1]]).sum())
        else:
            self.Lx = F[:0]
            logdet = 0.0
        if m:
            S = F[sym.nnz :].reshape(m, m, order="F")  # a view: potrf works in place
            Lc, info = dpotrf(S, lower=1, clean=0, overwrite_a=1)
            if info != 0:
                raise NotPositiveDefinite("matrix is not positive definite (trailing block)")
            self.L22 = Lc  # F's own memory (lower triangle; the upper one is not read)
            logdet += 2.0 * float(np.log(np.diag(Lc)).sum())
        else:
            self.L22 = np.zeros((0, 0))
        if not np.isfinite(logdet):
            raise NotPositiveDefinite("matrix is not positive definite (log-determinant not finite)")
        self.logdet = logdet

    def solve(self, r: np.ndarray) -> np.ndarray:
        """P^-1 r for a vector or an (n, k) matrix."""
        sym = self.sym
        if sym.diagonal:
            return r / (self._d if np.ndim(r) == 1 else self._d[:, None])
        X = np.array(r, dtype=float, order="C", ndmin=2, copy=True)
        vector = np.ndim(r) == 1
        if vector:
            X = X.reshape(-1, 1)
        if sym.s:
            _kernels().solve_forward(sym.s, sym.colptr, sym.rows, self.Lx, X)
        if sym.m:
            tail, info = dpotrs(self.L22, X[sym.s :], lower=1)
            if info != 0:  # pragma: no cover - argument errors only
                raise NotPositiveDefinite(f"potrs failed ({info})")
            X[sym.s :] = tail
        if sym.s:
            _kernels().solve_backward(sym.s, sym.colptr, sym.rows, self.Lx, X)
        return X[:, 0] if vector else X

    def selected_inverse(self) -> np.ndarray:
        """P^-1 on L's pattern, as a value array laid out like F."""
        sym = self.sym
        if sym.diagonal:
            return 1.0 / self._d
        sel = np.empty(sym.size)
        if sym.m:
            Zd = sel[sym.nnz :].reshape(sym.m, sym.m, order="F")
            Zd[...] = self.L22
            inv, info = dpotri(Zd, lower=1, overwrite_c=1)
            if info != 0:  # pragma: no cover
                raise NotPositiveDefinite(f"potri failed ({info})")
            if not np.shares_memory(inv, Zd):  # pragma: no cover - f2py copied after all
                Zd[...] = inv
            if sym.s:  # the recursion reads whole columns of Z_22: mirror the lower triangle
                _kernels().mirror_lower(sel[sym.nnz :], sym.m)
        if sym.s:
            _kernels().selected_inverse(
                sym.s, sym.m, sym.colptr, sym.rows, self.Lx, sel[: sym.nnz], sel[sym.nnz :]
            )
        return sel

    def trace_inverse(self, sel: np.ndarray) -> float:
        return float(sel[self.sym.diag].sum())
