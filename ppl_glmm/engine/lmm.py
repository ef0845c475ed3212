"""The linear mixed model (normal distribution, identity link): sigma profiled out of the outer
optimisation, as lmer does.

With v = sigma u, at fixed theta (and beta, for ML) the mode of (v, beta) and eta do not depend on
sigma, and the objective (exact here: the integrand is Gaussian) is

    f = pwrss / (2 sigma^2) + d log sigma + (terms free of sigma),
    pwrss = sum_i w_i (y_i - eta_i)^2 + |v|^2,      d = n - p (REML) or n (ML),

so df/dphi = d - pwrss / sigma^2 vanishes exactly at sigma^2 = pwrss / d, and by the envelope
theorem the profiled objective's gradient is the full gradient at (., log sigma^) without phi's
entry. A problem with ``profile_phi(x without phi) -> phi^`` is optimised that way by
``optimize.minimize``: :class:`LinearMLProblem` here, ``reml.LinearREMLProblem`` for REML.
"""

from __future__ import annotations

import math

import numpy as np

from ..pymc_model import ObservationFunction
from .laplace import LaplaceProblem, PirlsFailure
from .linalg import NotPositiveDefinite
from .structure import REStructure

__all__ = ["LinearMLProblem", "profiled_log_sigma"]


def profiled_log_sigma(r: np.ndarray, v: np.ndarray, w: np.ndarray, dof: int) -> float:
    """log sigma^ = log sqrt(pwrss / dof), pwrss = sum_i w_i r_i^2 + |v|^2 (the linear mixed model's
    penalized weighted residual sum of squares at the mode, v = sigma u); dof = n - p for REML, n
    for ML."""
    with np.errstate(over="ignore", invalid="ignore"):  # (a response of ~1e300: refused below)
        pwrss = float(w @ (r * r) + v @ v)
    if not (math.isfinite(pwrss) and pwrss > 0 and dof > 0):
        raise PirlsFailure("the penalized residual sum of squares is not positive and finite")
    return 0.5 * math.log(pwrss / dof)


class LinearMLProblem(LaplaceProblem):
    """ML of a linear mixed model (normal, identity link; beta in the outer vector) with sigma
    profiled out, as ``reml.LinearREMLProblem``: at fixed (beta, theta) the mode v = sigma u and
    eta do not depend on sigma and f = pwrss / (2 sigma^2) + n log sigma + (terms free of sigma)
    (the Laplace approximation is exact here), so sigma^2 = pwrss / n and the profiled gradient
    is the full one without phi's entry."""

    def __init__(self, X: np.ndarray, re: REStructure, obs: ObservationFunction):
        super().__init__(X, re, obs, inner_beta=False)

    def profile_phi(self, x: np.ndarray) -> float:
        """phi^ = log sigma^ for the outer vector [beta, theta] (without phi): sigma^2 = pwrss / n,
        with v the mode of the penalized least squares (H v = A'W r0, H = A'WA + I at sigma = 1)."""
        re = self.re
        beta, theta, _ = self.unpack(np.append(x, 0.0))
        avals = re.avals(theta, 1.0)
        r0 = self.y - self.X @ beta - self.offset
        try:
            v = re.factor_h(avals, self.w).solve(re.tmul(avals, self.w * r0))
        except NotPositiveDefinite as err:
            raise PirlsFailure("A'WA + I is not positive definite") from err
        return profiled_log_sigma(r0 - re.mul(avals, v), v, self.w, re.n)
