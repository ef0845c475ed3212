"""Residuals (MATLAB ``residuals``, plus lme4's deviance residuals), on the rows used.

With mu-hat = g^-1(X beta-hat + Z b-hat + offset) (``conditional=True``) or g^-1(X beta-hat +
offset) (``conditional=False``), y and mu-hat on MATLAB's scale (proportions for binomial), the
effective weight ``w_eff`` = prior weight x BinomialSize for binomial and the prior weight
otherwise, and sigma-hat = sqrt(Dispersion) (1 when it is fixed):

* raw: ``r = y - mu``;
* Pearson (MATLAB): ``r = (y - mu) / (sigma-hat sqrt(v(mu) / w_eff))``;
* deviance (lme4's ``residuals(type = "deviance")``, R's ``glm``): ``r = sign(y - mu)
  sqrt(w_eff d(y, mu))`` with the unit deviance d below; not divided by sigma-hat.

Unit deviances d(y, mu) (``0 log 0 = 0``): normal ``(y - mu)^2``; binomial ``2[y log(y/mu) +
(1-y) log((1-y)/(1-mu))]``; Poisson ``2[y log(y/mu) - (y - mu)]``; gamma ``2[-log(y/mu) +
(y - mu)/mu]``; inverse Gaussian ``(y - mu)^2 / (y mu^2)``; negative binomial (NB2, theta)
``2[y log(y/mu) - (y + theta) log((y + theta)/(mu + theta))]``.

The negative binomial (not a MATLAB family) uses its full variance ``v(mu) = mu + mu^2 / theta``
in the Pearson residual, as R's ``glm.nb`` and ``glmer.nb``.
"""

from __future__ import annotations

import numpy as np
import scipy.special as sc

from ..errors import InputError, InputTypeError
from ..results import FitRecord

__all__ = [
    "RESIDUAL_KINDS",
    "check_kind",
    "effective_weights",
    "family_variance",
    "fitted_mean",
    "residuals",
    "unit_deviance",
    "variance_weights",
]

RESIDUAL_KINDS = ("raw", "pearson", "deviance")


def check_kind(kind) -> str:
    """The residual kind in lower case, or an InputError naming the choices."""
    if not isinstance(kind, str):
        raise InputTypeError(f"kind: expected one of {', '.join(map(repr, RESIDUAL_KINDS))}, got {kind!r}")
    key = kind.strip().lower()
    if key not in RESIDUAL_KINDS:
        raise InputError(
            f"kind: unknown residual type {kind!r}; use 'raw' (y - mu), 'pearson' or 'deviance'"
            + (" (MATLAB's 'Standardized' does not exist for a GLMM)" if key == "standardized" else "")
        )
    return key


def fitted_mean(fit: FitRecord, conditional: bool = True) -> np.ndarray:
    """mu-hat on the rows used: g^-1(eta), eta with b-hat (conditional) or b = 0, offset included;
    clipped to the family's mean range (as ``fitted``)."""
    d, ws = fit.design, fit.ws
    eta = fit.result.eta if conditional else d.X @ fit.result.beta + d.offset
    return ws.dist.clip_mean(ws.link.inverse_np(eta))


def effective_weights(fit: FitRecord) -> np.ndarray:
    """w_eff: prior weight x BinomialSize for binomial, the prior weight otherwise (MATLAB)."""
    d = fit.design
    return d.weights * d.binomial_size if fit.ws.dist.name == "binomial" else d.weights.copy()


def family_variance(fit: FitRecord, mu: np.ndarray) -> np.ndarray:
    """v(mu) (MATLAB's variance function); mu + mu^2 / theta for the negative binomial."""
    dist = fit.ws.dist
    if dist.name == "negative_binomial":
        return mu + mu**2 / fit.result.ancillary
    return dist.variance(mu)


def variance_weights(fit: FitRecord, mu: np.ndarray) -> np.ndarray:
    """w_eff / v(mu): the weights of Pearson residuals and of SSE/SSR (MATLAB's weff)."""
    return effective_weights(fit) / family_variance(fit, mu)


def _ylogy(y: np.ndarray, m: np.ndarray) -> np.ndarray:
    """y log(y / m), 0 where y = 0."""
    return sc.xlogy(y, y) - sc.xlogy(y, m)


def unit_deviance(family: str, y: np.ndarray, mu: np.ndarray, theta: float | None = None) -> np.ndarray:
    """d(y, mu) of the family (module docstring); >= 0."""
    if family == "normal":
        d = (y - mu) ** 2
    elif family == "binomial":
        d = 2 * (_ylogy(y, mu) + _ylogy(1 - y, 1 - mu))
    elif family == "poisson":
        d = 2 * (_ylogy(y, mu) - (y - mu))
    elif family == "gamma":
        d = 2 * (-np.log(y / mu) + (y - mu) / mu)
    elif family == "inverse_gaussian":
        d = (y - mu) ** 2 / (y * mu**2)
    elif family == "negative_binomial":
        d = 2 * (_ylogy(y, mu) - (y + theta) * np.log((y + theta) / (mu + theta)))
    else:  # pragma: no cover - every registered family is listed above
        raise InputError(f"residuals: no deviance for distribution {family!r}")
    return np.maximum(d, 0.0)  # rounding can leave -1e-17 where y = mu


def residuals(fit: FitRecord, conditional: bool = True, kind: str = "raw") -> np.ndarray:
    """Residuals of ``kind`` ('raw', 'pearson', 'deviance'; checked by :func:`check_kind`) on the
    rows used; formulas in the module docstring."""
    y = fit.result.y
    mu = fitted_mean(fit, conditional)
    raw = y - mu
    if kind == "raw":
        return raw
    if kind == "pearson":
        return raw * np.sqrt(variance_weights(fit, mu)) / fit.result.sigma
    d = unit_deviance(fit.ws.dist.name, y, mu, fit.result.ancillary)
    return np.sign(raw) * np.sqrt(effective_weights(fit) * d)
