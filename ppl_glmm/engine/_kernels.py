"""Numba kernels of the sparse Cholesky (:mod:`.sparse_cholesky`): symbolic analysis, left-looking
numeric factorisation of the sparse leading columns, triangular solves and the Takahashi selected
inverse. Compiled on first use and cached on disk (``cache=True``); a model whose random-effects
matrix is small enough to be factored dense never calls them.

Storage: the leading ``s`` columns of L in CSC (``colptr``, ``rows``, values ``Lx``), rows sorted,
the diagonal first in each column; their rows may reach into the dense trailing block (rows >= s),
an ``m x m`` array (m = n - s) in column-major order (LAPACK's, so it is factored in place), of
which only the lower triangle is read: entry (i, k), i >= k, is at ``k * m + i``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "column_counts",
    "etree",
    "factor_columns",
    "fill_pattern",
    "mirror_lower",
    "selected_inverse",
    "solve_backward",
    "solve_forward",
]


@njit(cache=True)
def etree(n, rptr, rcol):  # pragma: no cover - compiled
    """Elimination tree from the lower pattern given by rows (``rcol[rptr[i]:rptr[i+1]]`` holds the
    columns j < i of row i): Liu's algorithm with path compression (CSparse's cs_etree)."""
    parent = np.full(n, -1, np.int64)
    ancestor = np.full(n, -1, np.int64)
    for k in range(n):
        for p in range(rptr[k], rptr[k + 1]):
            i = rcol[p]
            while i != -1 and i < k:
                inext = ancestor[i]
                ancestor[i] = k
                if inext == -1:
                    parent[i] = k
                i = inext
    return parent


@njit(cache=True)
def _ereach(k, rptr, rcol, parent, mark, stack):  # pragma: no cover - compiled
    """Columns j < k with L[k, j] != 0 (the row subtree of k), in ``stack[:top]``."""
    top = 0
    mark[k] = k
    for p in range(rptr[k], rptr[k + 1]):
        i = rcol[p]
        while mark[i] != k:
            stack[top] = i
            top += 1
            mark[i] = k
            i = parent[i]
    return top


@njit(cache=True)
def column_counts(n, rptr, rcol, parent):  # pragma: no cover - compiled
    """Number of off-diagonal entries of each column of L."""
    counts = np.zeros(n, np.int64)
    mark = np.full(n, -1, np.int64)
    stack = np.empty(n, np.int64)
    for k in range(n):
        top = _ereach(k, rptr, rcol, parent, mark, stack)
        for t in range(top):
            counts[stack[t]] += 1
    return counts


@njit(cache=True)
def fill_pattern(n, s, rptr, rcol, parent, colptr):  # pragma: no cover - compiled
    """Rows of L's leading ``s`` columns (``colptr`` from the counts), and the row lists of the
    leading rows: for row k < s, the columns j < k with L[k, j] != 0 and that entry's position."""
    rows = np.empty(colptr[s], np.int64)
    fill = colptr[:s].copy()
    mark = np.full(n, -1, np.int64)
    stack = np.empty(n, np.int64)
    lrptr = np.zeros(s + 1, np.int64)
    lcols = np.empty(max(colptr[s] - s, 0), np.int64)
    lpos = np.empty(max(colptr[s] - s, 0), np.int64)
    nl = 0
    for k in range(n):
        if k < s:
            rows[fill[k]] = k  # the diagonal, first in its column
            fill[k] += 1
        top = _ereach(k, rptr, rcol, parent, mark, stack)
        for t in range(top):
            j = stack[t]
            if j < s:
                if k < s:
                    lcols[nl] = j
                    lpos[nl] = fill[j]
                    nl += 1
                rows[fill[j]] = k
                fill[j] += 1
        if k < s:
            lrptr[k + 1] = nl
    return rows, lrptr, lcols[:nl], lpos[:nl]


@njit(cache=True)
def factor_columns(s, m, colptr, rows, lrptr, lcols, lpos, tailstart, F):  # pragma: no cover
    """Left-looking Cholesky of the leading ``s`` columns, in place in ``F[:colptr[s]]`` (which holds
    the matrix's lower entries on L's pattern), then the trailing block's update
    ``S -= L_ts L_ts'`` in ``F[colptr[s]:]`` (m x m, column-major, lower triangle; ``tailstart``:
    where each leading column's trailing rows begin). Returns -1, or the column where the matrix is
    not positive definite."""
    n = s + m
    Lx = F[: colptr[s]]
    S = F[colptr[s] :]  # column-major m x m
    x = np.zeros(n)
    for j in range(s):
        for p in range(colptr[j], colptr[j + 1]):
            x[rows[p]] = Lx[p]
        for t in range(lrptr[j], lrptr[j + 1]):
            k = lcols[t]
            pos = lpos[t]
            ljk = Lx[pos]
            for p in range(pos, colptr[k + 1]):
                x[rows[p]] -= Lx[p] * ljk
        d = x[j]
        if not d > 0.0 or not np.isfinite(d):
            return j
        ljj = np.sqrt(d)
        Lx[colptr[j]] = ljj
        x[j] = 0.0
        for p in range(colptr[j] + 1, colptr[j + 1]):
            i = rows[p]
            Lx[p] = x[i] / ljj
            x[i] = 0.0
    for k in range(s):  # rank-one updates, each written column by column of S (rows ascending)
        t1 = colptr[k + 1]
        for p2 in range(tailstart[k], t1):
            base = (rows[p2] - s) * m - s
            v = Lx[p2]
            for p in range(p2, t1):
                S[base + rows[p]] -= v * Lx[p]
    return -1


@njit(cache=True)
def solve_forward(s, colptr, rows, Lx, X):  # pragma: no cover - compiled
    """X <- L_s^-1 X over the leading columns (their updates reach the trailing rows)."""
    r = X.shape[1]
    for j in range(s):
        d = Lx[colptr[j]]
        for c in range(r):
            X[j, c] /= d
        for p in range(colptr[j] + 1, colptr[j + 1]):
            i = rows[p]
            v = Lx[p]
            for c in range(r):
                X[i, c] -= v * X[j, c]


@njit(cache=True)
def solve_backward(s, colptr, rows, Lx, X):  # pragma: no cover - compiled
    """X <- L_s^-T X over the leading columns, the trailing rows already solved."""
    r = X.shape[1]
    for j in range(s - 1, -1, -1):
        d = Lx[colptr[j]]
        for p in range(colptr[j] + 1, colptr[j + 1]):
            i = rows[p]
            v = Lx[p]
            for c in range(r):
                X[j, c] -= v * X[i, c]
        for c in range(r):
            X[j, c] /= d


@njit(cache=True)
def selected_inverse(s, m, colptr, rows, Lx, Zx, Zd):  # pragma: no cover - compiled
    """Takahashi's recursion: the entries of Z = (L L')^-1 on L's pattern, into ``Zx``, given the
    trailing block of Z (``Zd``, column-major, both triangles). For column j with off-diagonal rows
    I and l = L[I, j] / L[j, j]: Z[I, j] = -Z[I, I] l and Z[j, j] = 1 / L[j, j]^2 - l' Z[I, j]."""
    n = s + m
    pos = np.full(n, -1, np.int64)
    acc = np.zeros(n)
    for j in range(s - 1, -1, -1):
        p0, p1 = colptr[j] + 1, colptr[j + 1]
        ljj = Lx[colptr[j]]
        for p in range(p0, p1):
            pos[rows[p]] = p - p0
            acc[p - p0] = 0.0
        for p in range(p0, p1):
            k = rows[p]
            lk = Lx[p] / ljj
            t = p - p0
            if k >= s:
                base = (k - s) * m - s
                for p2 in range(p0, p1):
                    i = rows[p2]
                    if i >= s:
                        acc[p2 - p0] += Zd[base + i] * lk
            else:
                acc[t] += Zx[colptr[k]] * lk
                for q in range(colptr[k] + 1, colptr[k + 1]):
                    t2 = pos[rows[q]]
                    if t2 >= 0:
                        acc[t2] += Zx[q] * lk
                        acc[t] += Zx[q] * Lx[p0 + t2] / ljj
        diag = 1.0 / (ljj * ljj)
        for p in range(p0, p1):
            t = p - p0
            Zx[p] = -acc[t]
            diag += acc[t] * Lx[p] / ljj
            pos[rows[p]] = -1
        Zx[colptr[j]] = diag


@njit(cache=True)
def mirror_lower(Z, m):  # pragma: no cover - compiled
    """Copy the lower triangle of the column-major m x m ``Z`` into its upper triangle."""
    for c in range(m):
        for r in range(c + 1, m):
            Z[r * m + c] = Z[c * m + r]
