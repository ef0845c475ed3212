"""Random-effects structure for the engine: A = Z Lambda kept as (n x m) values plus column indices.

Every row of Z has exactly m = sum_r q_r structural entries (one level per term), so A = Z Lambda,
with Lambda = s * blockdiag(Lambda_r) (s = sigma for families with a dispersion, else 1), has the same
column pattern as Z with values ``T_r[i, :] @ Lambda_r``. All products the engine needs (A v, A'w,
the blocks of A'CA, A'CX, the leverages a_i' H^-1 a_i) are gathers and ``bincount`` scatters over
this layout: no dense n x q matrix is ever formed.

Internally the columns are permuted so that the term with the most coefficients comes first (its
block of H is block diagonal, see :mod:`.linalg`); ``to_original``/``to_internal`` convert u between
this order and MATLAB's b order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..covariance import ThetaLayout
from .linalg import BlockedSPD

__all__ = ["REStructure"]


def _pairs(slots_a: np.ndarray, slots_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.meshgrid(slots_a, slots_b, indexing="ij")
    return a.ravel(), b.ravel()


@dataclass(frozen=True)
class REStructure:
    T: tuple[np.ndarray, ...]  # per term (n, q_r)
    cols: np.ndarray  # (n, m) int: internal column of u for each structural entry
    slot_term: np.ndarray  # (m,) term of each slot
    slot_index: np.ndarray  # (m,) position within the term's block
    layout: ThetaLayout
    q: int
    n: int
    n1: int  # size of the first (block-diagonal) part
    k: int  # block size of the first part (q_r of the largest term)
    orig_index: np.ndarray  # (q,) original column of each internal column
    first_slots: np.ndarray
    other_slots: np.ndarray

    @classmethod
    def from_terms(cls, terms, n: int) -> REStructure:
        sizes = [t.size for t in terms]
        r0 = int(np.argmax(sizes))
        order = [r0] + [r for r in range(len(terms)) if r != r0]
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
        cols = np.concatenate(cols, axis=1)
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
            n1=terms[r0].size,
            k=terms[r0].q_r,
            orig_index=orig,
            first_slots=np.flatnonzero(slot_term == r0),
            other_slots=np.flatnonzero(slot_term != r0),
        )

    @property
    def m(self) -> int:
        return self.cols.shape[1]

    @property
    def q2(self) -> int:
        return self.q - self.n1

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

    def mul(self, vals: np.ndarray, v: np.ndarray) -> np.ndarray:
        """A @ v for a vector v, or A @ V for a (q, k) matrix V."""
        if v.ndim == 1:
            return (vals * v[self.cols]).sum(axis=1)
        return np.einsum("im,imk->ik", vals, v[self.cols])

    def tmul(self, vals: np.ndarray, w: np.ndarray) -> np.ndarray:
        """A' @ w for a vector w, or A' @ W for an (n, k) matrix W (result (q, k))."""
        if w.ndim == 1:
            return np.bincount(self.cols.ravel(), weights=(vals * w[:, None]).ravel(), minlength=self.q)
        k = w.shape[1]
        idx = (self.cols[:, :, None] * k + np.arange(k)[None, None, :]).ravel()
        prod = (vals[:, :, None] * w[:, None, :]).ravel()
        return np.bincount(idx, weights=prod, minlength=self.q * k).reshape(self.q, k)

    # ---- H = A'CA + I in blocks -----------------------------------------------------------
    @cached_property
    def _block_index(self) -> dict:
        """Scatter indices of the (D, B, C) blocks, computed once per structure."""
        k, n1, q2 = self.k, self.n1, self.q2
        out = {}
        fa, fb = _pairs(self.first_slots, self.first_slots)
        level = self.cols[:, self.first_slots[0]] // k
        out["D"] = (fa, fb, (level[:, None] * k * k + self.slot_index[fa] * k + self.slot_index[fb]).ravel())
        if q2:
            ba, bb = _pairs(self.first_slots, self.other_slots)
            out["B"] = (ba, bb, (self.cols[:, ba] * q2 + (self.cols[:, bb] - n1)).ravel())
            ca, cb = _pairs(self.other_slots, self.other_slots)
            out["C"] = (ca, cb, ((self.cols[:, ca] - n1) * q2 + (self.cols[:, cb] - n1)).ravel())
        return out

    def hessian_blocks(self, vals: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(D, B, C) with A'CA + I = [[blockdiag(D), B], [B', C]] in the internal order."""
        L, k, n1, q2 = self.n1 // self.k, self.k, self.n1, self.q2
        idx = self._block_index
        fa, fb, ix = idx["D"]
        D = np.bincount(ix, weights=(c[:, None] * vals[:, fa] * vals[:, fb]).ravel(), minlength=L * k * k)
        D = D.reshape(L, k, k)
        D[:, np.arange(k), np.arange(k)] += 1.0
        if q2 == 0:
            return D, np.zeros((n1, 0)), np.zeros((0, 0))
        ba, bb, ix = idx["B"]
        B = np.bincount(ix, weights=(c[:, None] * vals[:, ba] * vals[:, bb]).ravel(), minlength=n1 * q2)
        ca, cb, ix = idx["C"]
        C = np.bincount(ix, weights=(c[:, None] * vals[:, ca] * vals[:, cb]).ravel(), minlength=q2 * q2)
        C = C.reshape(q2, q2)
        C[np.arange(q2), np.arange(q2)] += 1.0
        return D, B.reshape(n1, q2), C

    def factor_h(self, vals: np.ndarray, c: np.ndarray) -> BlockedSPD:
        return BlockedSPD(*self.hessian_blocks(vals, c))

    def factor_joint(self, vals: np.ndarray, c: np.ndarray, X: np.ndarray) -> BlockedSPD:
        """[[H, A'CX], [X'CA, X'CX]] with the unknowns ordered (u_internal, beta)."""
        D, B, C = self.hessian_blocks(vals, c)
        AtCX = self.tmul(vals, c[:, None] * X)
        XtCX = (X.T * c) @ X
        B2 = np.hstack([B, AtCX[: self.n1]])
        top = np.hstack([C, AtCX[self.n1 :]])
        bottom = np.hstack([AtCX[self.n1 :].T, XtCX])
        return BlockedSPD(D, B2, np.vstack([top, bottom]))

    # ---- selected inverse lookups -------------------------------------------------------------
    def _gather(self, a: int, b: int) -> tuple[int, np.ndarray]:
        """Which block of the selected inverse holds (H^-1)[col_a, col_b] for every row, and the flat
        index into it. The block depends only on the two slots' terms, so this is computed once."""
        key = ("gather", a, b)
        cache = self.__dict__.setdefault("_gathers", {})
        if key not in cache:
            k, n1, q2 = self.k, self.n1, self.q2
            r, c = self.cols[:, a], self.cols[:, b]
            fa, fb = bool(np.all(r < n1)), bool(np.all(c < n1))
            if fa and fb:
                cache[key] = (0, (r // k) * k * k + (r % k) * k + (c % k))
            elif fa:
                cache[key] = (1, r * q2 + (c - n1))
            elif fb:
                cache[key] = (1, c * q2 + (r - n1))
            else:
                cache[key] = (2, (r - n1) * q2 + (c - n1))
        return cache[key]

    def _hinv_pair(self, sel: tuple, a: int, b: int) -> np.ndarray:
        block, idx = self._gather(a, b)
        return np.take(sel[block], idx)

    def leverages(self, vals: np.ndarray, sel: tuple) -> np.ndarray:
        """h_i = a_i' H^-1 a_i."""
        h = np.zeros(self.n)
        for a in range(self.m):
            for b in range(a, self.m):
                term = vals[:, a] * vals[:, b] * self._hinv_pair(sel, a, b)
                h += term if a == b else 2.0 * term
        return h

    def a_hinv_at(self, vals: np.ndarray, sel: tuple, slot: int) -> np.ndarray:
        """(A H^-1)[i, col_i] with col_i the column of ``slot`` in row i."""
        out = np.zeros(self.n)
        for a in range(self.m):
            out += vals[:, a] * self._hinv_pair(sel, a, slot)
        return out

    @staticmethod
    def trace_inverse(sel: tuple) -> float:
        blocks, _, Cinv = sel
        return float(np.trace(blocks, axis1=1, axis2=2).sum() + np.trace(Cinv))

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
