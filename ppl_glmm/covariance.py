"""Covariance parameters: theta <-> relative Cholesky factors Lambda_r, and SD/correlation scale.

For a block with q_r coefficients, theta_r holds the lower triangle of Lambda_r column by column
(lme4's order), so ``Psi_r = sigma^2 Lambda_r Lambda_r'`` (sigma = 1 for binomial/Poisson). Diagonal
entries are bounded below by 0; a diagonal theta at 0 is a singular (boundary) fit.

Canonical parameters (MATLAB ``covarianceParameters``): SDs ``sqrt(Psi_jj)`` and correlations,
listed in column-major lower-triangle order. Natural parameters (for Wald intervals): log SDs and
``log((1 + rho)/(1 - rho))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

__all__ = ["ThetaLayout"]


@dataclass(frozen=True)
class ThetaLayout:
    """Where each theta entry sits: term index, row and column within the block."""

    sizes: tuple[int, ...]  # q_r per term

    @property
    def entries(self) -> list[tuple[int, int, int]]:
        out = []
        for r, q in enumerate(self.sizes):
            for j in range(q):
                for i in range(j, q):
                    out.append((r, i, j))
        return out

    @property
    def n_theta(self) -> int:
        return sum(q * (q + 1) // 2 for q in self.sizes)

    def slices(self) -> list[slice]:
        out, start = [], 0
        for q in self.sizes:
            k = q * (q + 1) // 2
            out.append(slice(start, start + k))
            start += k
        return out

    def start(self, column_rms: list[np.ndarray] | None = None) -> np.ndarray:
        """Diagonal Lambda_r: the identity, or 1 / rms of each column of T_r (``column_rms``), so
        that every random coefficient starts contributing O(1) to eta whatever its covariate's
        units (a slope on x of scale 1e3 starting at SD 1 puts eta at +-1e3)."""
        out = []
        for r, i, j in self.entries:
            if i != j:
                out.append(0.0)
            elif column_rms is None:
                out.append(1.0)
            else:
                rms = float(column_rms[r][j])
                out.append(1.0 / rms if np.isfinite(rms) and rms > 0 else 1.0)
        return np.array(out)

    def is_diagonal(self) -> np.ndarray:
        return np.array([i == j for _, i, j in self.entries])

    def lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        """Relative Cholesky factors Lambda_r (lower triangular)."""
        out = []
        for q, sl in zip(self.sizes, self.slices()):
            L = np.zeros((q, q))
            rows, cols = _upper_indices(q)  # column-major lower triangle = row-major upper of L'
            L[cols, rows] = theta[sl]
            out.append(L)
        return out

    def covariances(self, theta: np.ndarray, sigma: float) -> list[np.ndarray]:
        """Psi_r = sigma^2 Lambda_r Lambda_r'."""
        return [sigma**2 * L @ L.T for L in self.lambdas(theta)]

    # --- canonical (sd, corr) and natural scales -----------------------------------------
    @staticmethod
    def canonical(psi: np.ndarray) -> np.ndarray:
        """[sd or corr] for the column-major lower triangle of Psi."""
        sd = np.sqrt(np.maximum(np.diag(psi), 0.0))
        out = []
        q = psi.shape[0]
        for j in range(q):
            for i in range(j, q):
                if i == j:
                    out.append(sd[i])
                else:
                    den = sd[i] * sd[j]
                    out.append(psi[i, j] / den if den > 0 else 0.0)
        return np.array(out)

    @staticmethod
    def psi_from_canonical(c: np.ndarray, q: int) -> np.ndarray:
        sd, R = np.zeros(q), np.eye(q)
        k = 0
        for j in range(q):
            for i in range(j, q):
                if i == j:
                    sd[i] = c[k]
                else:
                    R[i, j] = R[j, i] = c[k]
                k += 1
        return sd[:, None] * R * sd[None, :]

    @staticmethod
    def to_natural(c: np.ndarray, q: int) -> np.ndarray:
        out, k = [], 0
        for j in range(q):
            for i in range(j, q):
                if i == j:
                    out.append(np.log(c[k]) if c[k] > 0 else -np.inf)
                else:
                    rho = np.clip(c[k], -1 + 1e-15, 1 - 1e-15)
                    out.append(np.log((1 + rho) / (1 - rho)))
                k += 1
        return np.array(out)

    @staticmethod
    def from_natural(z: np.ndarray, q: int) -> np.ndarray:
        out, k = [], 0
        for j in range(q):
            for i in range(j, q):
                out.append(np.exp(z[k]) if i == j else np.tanh(z[k] / 2))
                k += 1
        return np.array(out)

    def theta_from_psis(self, psis: list[np.ndarray], sigma: float) -> np.ndarray:
        """theta such that Lambda_r Lambda_r' = Psi_r / sigma^2 (Cholesky, PSD-safe)."""
        out = []
        for psi in psis:
            q = psi.shape[0]
            A = psi / sigma**2
            try:
                L = np.linalg.cholesky(A)
            except np.linalg.LinAlgError:
                L = np.linalg.cholesky(A + 1e-12 * np.eye(q))
            rows, cols = np.triu_indices(q)
            out.append(L[cols, rows])
        return np.concatenate(out) if out else np.zeros(0)


@cache
def _upper_indices(q: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.triu_indices(q)``, read-only, made once per size (every evaluation builds Lambda)."""
    rows, cols = np.triu_indices(q)
    rows.flags.writeable = False
    cols.flags.writeable = False
    return rows, cols
