"""Random-effects structure for the engine: A = Z Lambda kept as (n x m) values plus column indices.

Every row of Z has exactly m = sum_r q_r structural entries (one level per term), so A = Z Lambda,
with Lambda = s * blockdiag(Lambda_r) (s = sigma for families with a dispersion, else 1), has the same
column pattern as Z with values ``T_r[i, :] @ Lambda_r``. All products the engine needs (A v, A'w,
A'CA, A'CX, the leverages a_i' H^-1 a_i) are gathers and ``bincount`` scatters over this layout:
no dense n x q matrix is ever formed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..covariance import ThetaLayout

__all__ = ["REStructure"]


@dataclass(frozen=True)
class REStructure:
    T: tuple[np.ndarray, ...]  # per term (n, q_r)
    cols: np.ndarray  # (n, m) int: column of b for each structural entry
    slot_term: np.ndarray  # (m,) term of each slot
    slot_index: np.ndarray  # (m,) position within the term's block
    layout: ThetaLayout
    q: int
    n: int

    @classmethod
    def from_terms(cls, terms, n: int) -> REStructure:
        if not terms:
            return cls((), np.zeros((n, 0), dtype=np.int64), np.zeros(0, int), np.zeros(0, int),
                       ThetaLayout(()), 0, n)
        cols = np.concatenate([t.columns() for t in terms], axis=1)
        slot_term = np.concatenate([np.full(t.q_r, r) for r, t in enumerate(terms)])
        slot_index = np.concatenate([np.arange(t.q_r) for t in terms])
        layout = ThetaLayout(tuple(t.q_r for t in terms))
        return cls(tuple(t.T for t in terms), cols, slot_term, slot_index, layout,
                   sum(t.size for t in terms), n)

    @property
    def m(self) -> int:
        return self.cols.shape[1]

    # ---- A = Z Lambda values ---------------------------------------------------------------
    def a_values(self, lambdas: list[np.ndarray], scale: float) -> np.ndarray:
        """(n, m) values of A for relative factors ``lambdas`` scaled by ``scale``."""
        if not self.T:
            return np.zeros((self.n, 0))
        return np.concatenate([scale * (T @ L) for T, L in zip(self.T, lambdas)], axis=1)

    def mul(self, vals: np.ndarray, v: np.ndarray) -> np.ndarray:
        """A @ v."""
        return (vals * v[self.cols]).sum(axis=1)

    def tmul(self, vals: np.ndarray, w: np.ndarray) -> np.ndarray:
        """A' @ w for a vector w, or A' @ W for an (n, k) matrix W (result (q, k))."""
        if w.ndim == 1:
            return np.bincount(self.cols.ravel(), weights=(vals * w[:, None]).ravel(), minlength=self.q)
        k = w.shape[1]
        idx = (self.cols[:, :, None] * k + np.arange(k)[None, None, :]).ravel()
        prod = (vals[:, :, None] * w[:, None, :]).ravel()
        return np.bincount(idx, weights=prod, minlength=self.q * k).reshape(self.q, k)

    def crossprod(self, vals: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Dense q x q A' diag(c) A."""
        q, m = self.q, self.m
        idx = (self.cols[:, :, None] * q + self.cols[:, None, :]).ravel()
        prod = (c[:, None, None] * vals[:, :, None] * vals[:, None, :]).ravel()
        del m
        return np.bincount(idx, weights=prod, minlength=q * q).reshape(q, q)

    def leverages(self, vals: np.ndarray, Hinv: np.ndarray) -> np.ndarray:
        """h_i = a_i' H^-1 a_i."""
        G = Hinv[self.cols[:, :, None], self.cols[:, None, :]]  # (n, m, m)
        return np.einsum("ia,iab,ib->i", vals, G, vals)

    # ---- derivatives in theta -----------------------------------------------------------------
    def theta_entries(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """For each theta_k = Lambda_r[i, j]: (T_r[:, i], column j of the obs' block, slot rows).

        d A / d theta_k has one entry per observation: value s * T_r[obs, i] at column
        ``offset_r + code * q_r + j``.
        """
        out = []
        for r, i, j in self.layout.entries:
            slot_j = np.flatnonzero((self.slot_term == r) & (self.slot_index == j))[0]
            out.append((self.T[r][:, i], self.cols[:, slot_j]))
        return out
