"""The NUTS mass matrix adapted from the Laplace covariance (``init='ml'``).

PyMC's dense adaptation (``QuadPotentialFullAdapt``) estimates the mass matrix from the tuning
draws of each adaptation window; only its first window starts from the initial matrix (with
``initial_weight`` pseudo-draws), and every later window starts from nothing, so the matrix it
ends on is the plain sample covariance of a few hundred draws: noise with fewer than ~10 draws per
coordinate. :class:`LaplaceAnchoredAdapt` starts *every* window from the Laplace covariance S with
w pseudo-draws, so the mass matrix is always the shrinkage estimate

    M^-1 = (w S + sum_t (x_t - xbar)(x_t - xbar)') / (w + n - 1)

of the window's n draws towards S. Imported only when a Bayesian fit samples (it imports PyMC).
"""

from __future__ import annotations

import numpy as np
from pymc.step_methods.hmc.quadpotential import QuadPotentialFullAdapt, _WeightedCovariance

__all__ = ["LaplaceAnchoredAdapt"]


class LaplaceAnchoredAdapt(QuadPotentialFullAdapt):
    """PyMC's dense adaptation with every adaptation window anchored to the initial (Laplace)
    covariance by ``initial_weight`` pseudo-draws (module docstring)."""

    def _anchored(self, mean: np.ndarray) -> _WeightedCovariance:
        return _WeightedCovariance(self._n, mean, self._initial_cov, self._initial_weight, self.dtype)

    def reset(self) -> None:
        super().reset()
        self._background_cov = self._anchored(self._initial_mean)

    def update(self, sample, grad, tune) -> None:
        super().update(sample, grad, tune)
        if tune and self._background_cov.n_samples == 0:  # PyMC began a window from nothing
            self._background_cov = self._anchored(self._foreground_cov.current_mean())
