"""Conditional distributions of y given the random effects, and link functions.

Model (MATLAB's standard form): ``y_i | b ~ Distr(mu_i, sigma^2 / w_i)``, ``g(mu) = eta``. The
likelihood of every family is a PyMC distribution (:meth:`Distribution.likelihood`); nothing here
evaluates a log-density by hand. The observed container holds

* normal: y;
* binomial: success counts ``k = w n y`` out of ``w n`` trials (y is a proportion, n = BinomialSize);
* poisson: counts ``k = w y`` with mean ``w mu`` (MATLAB's prior-weight convention).

Each link is given once, in a form that works on PyTensor tensors and on NumPy arrays alike
(``xp`` is ``pytensor.tensor`` or ``numpy``/``scipy.special``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.special as sps

from .errors import InputError, InputTypeError

__all__ = ["DISTRIBUTIONS", "LINKS", "Distribution", "Link", "get_distribution", "get_link"]


@dataclass(frozen=True)
class Link:
    """g(mu) = eta; ``inverse_pt`` builds mu in the PyMC graph, ``inverse_np`` evaluates it in NumPy."""

    name: str
    inverse_pt: Callable
    inverse_np: Callable
    link_np: Callable
    logit_pt: Callable | None = None  # log p - log(1 - p) from eta, stable where p rounds to 0 or 1
    mu_eta_np: Callable | None = None  # d mu / d eta = 1 / g'(mu), in NumPy

    def mu_eta(self, eta: np.ndarray) -> np.ndarray:
        """d mu / d eta at ``eta`` (NumPy): 1 / g'(mu), used for Fisher weights."""
        return self.mu_eta_np(np.asarray(eta, dtype=float))

    @property
    def display(self) -> str:
        return self.name[0].upper() + self.name[1:]

    def __reduce__(self):
        """Pickled by name (the callables are module-level lambdas)."""
        return (_link_named, (self.name,))


def _link_named(name: str) -> Link:
    return LINKS[name]


def _pt():
    import pytensor.tensor as pt

    return pt


# Binomial likelihoods take logit(p) = log p - log(1 - p), computed so that log p and log(1 - p)
# stay exact where p rounds to 0 or 1 (PyMC's Binomial then evaluates k log p + (n - k) log(1 - p)
# through softplus). Each piecewise form evaluates every branch on an input clipped to that branch's
# range, so no branch produces inf or NaN that could leak into the derivatives the engine takes.


def _log_ndtr(z):
    """log Phi(z): erfcx form below -1 (the lower tail), log1p form above."""
    pt = _pt()
    low = pt.lt(z, -1.0)
    lo = pt.switch(low, z, -1.0)  # clipped with switch: its gradient needs no boolean product
    hi = pt.switch(low, -1.0, z)
    tail = pt.log(pt.erfcx(-lo / math.sqrt(2.0)) / 2.0) - 0.5 * lo * lo
    body = pt.log1p(-0.5 * pt.erfc(hi / math.sqrt(2.0)))
    return pt.switch(low, tail, body)


def _probit_logit(e):
    """logit(Phi(e)) = log Phi(e) - log Phi(-e)."""
    return _log_ndtr(e) - _log_ndtr(-e)


def _log_expm1_exp(e):
    """log(exp(exp(e)) - 1) = logit of p = 1 - exp(-exp(e)): log(expm1(m)) for m = exp(e) <= e^2,
    m + log1p(-exp(-m)) above (where expm1 would overflow)."""
    pt = _pt()
    low = pt.lt(e, 2.0)
    m_lo = pt.exp(pt.switch(low, e, 2.0))
    m_hi = pt.exp(pt.switch(low, 2.0, e))
    return pt.switch(low, pt.log(pt.expm1(m_lo)), m_hi + pt.log1p(-pt.exp(-m_hi)))


def _cloglog_logit(e):
    """p = 1 - exp(-exp(e)): p / (1 - p) = exp(exp(e)) - 1."""
    return _log_expm1_exp(e)


def _loglog_logit(e):
    """p = exp(-exp(-e)) = 1 - q with q the complementary log-log probability at -e."""
    return -_log_expm1_exp(-e)


def _poisson_dist(mu, size):
    import pymc as pm

    return pm.Poisson.dist(mu, size=size)


def poisson_logp(value, mu):
    """log Poisson(k | mu) = -D(k, mu) - S(k) without cancelling large terms.

    PyMC's ``k log mu - mu - lgamma(k + 1)`` adds terms of ~1e10 for counts of ~1e9 (rounding
    ~1e-6 per count). Here D = k log(k / mu) - k + mu >= 0 is the deviance term, computed as
    mu ((1 + r) log1p(r) - r) with r = (k - mu) / mu (D = mu at k = 0), and S(k) = lgamma(k + 1) -
    k log k + k is Stirling's remainder, 0.5 log(2 pi k) + 1/(12k) - 1/(360k^3) + 1/(1260k^5) above
    k = 100 (error < 1e-17) and direct below. The PyMC model keeps PyMC's Poisson sampler
    (``CustomDist(dist=Poisson)``); only the log-density is written here, with PyMC's parameter check.
    """
    from pymc.distributions.dist_math import check_parameters

    pt = _pt()
    k = pt.cast(value, "float64")
    pos = pt.gt(k, 0.0)
    k1 = pt.switch(pos, k, 1.0)  # k > 0 branches see k >= 1 (no log 0)
    mu_s = pt.switch(pt.gt(mu, 0.0), mu, 1.0)
    r = (k1 - mu_s) / mu_s  # > -1 for k > 0
    dev = pt.switch(pos, mu_s * ((1.0 + r) * pt.log1p(r) - r), mu)
    big = pt.gt(k1, 100.0)
    kb = pt.switch(big, k1, 101.0)
    ks = pt.switch(big, 1.0, k1)
    stirling_big = (
        0.5 * pt.log(2.0 * math.pi * kb) + 1.0 / (12.0 * kb) - 1.0 / (360.0 * kb**3) + 1.0 / (1260.0 * kb**5)
    )
    stirling_small = pt.gammaln(ks + 1.0) - ks * pt.log(ks) + ks
    stirling = pt.switch(pos, pt.switch(big, stirling_big, stirling_small), 0.0)
    res = pt.switch(pt.lt(k, 0.0), -np.inf, -dev - stirling)
    return check_parameters(res, pt.ge(mu, 0.0), msg="mu >= 0")


LINKS: dict[str, Link] = {
    "identity": Link("identity", lambda e: e, lambda e: e, lambda m: m, None, np.ones_like),
    "log": Link("log", lambda e: _pt().exp(e), np.exp, np.log, None, np.exp),
    "logit": Link(
        "logit",
        lambda e: _pt().sigmoid(e),
        sps.expit,
        sps.logit,
        lambda e: e,
        lambda e: sps.expit(e) * sps.expit(-e),
    ),
    "probit": Link(
        "probit",
        lambda e: 0.5 * _pt().erfc(-e / math.sqrt(2.0)),
        sps.ndtr,
        sps.ndtri,
        _probit_logit,
        lambda e: np.exp(-0.5 * e * e) / math.sqrt(2.0 * math.pi),
    ),
    "comploglog": Link(
        "comploglog",
        lambda e: -_pt().expm1(-_pt().exp(e)),
        lambda e: -np.expm1(-np.exp(e)),
        lambda m: np.log(-np.log1p(-m)),
        _cloglog_logit,
        lambda e: np.exp(e - np.exp(e)),
    ),
    "loglog": Link(
        "loglog",
        lambda e: _pt().exp(-_pt().exp(-e)),
        lambda e: np.exp(-np.exp(-e)),
        lambda m: -np.log(-np.log(m)),
        _loglog_logit,
        lambda e: np.exp(-e - np.exp(-e)),
    ),
}
_LINK_ALIASES = {"cloglog": "comploglog"}


@dataclass(frozen=True)
class Distribution:
    name: str
    display: str
    canonical_link: str
    has_dispersion: bool  # sigma estimated under Laplace (and b ~ N(0, sigma^2 D))
    bad_links: tuple[str, ...]  # links that are allowed with a warning

    def variance(self, mu: np.ndarray) -> np.ndarray:
        """Variance function v(mu): Var(y | b) = sigma^2 v(mu) / w (MATLAB's table)."""
        mu = np.asarray(mu, dtype=float)
        if self.name == "binomial":
            return mu * (1.0 - mu)
        if self.name == "poisson":
            return mu
        return np.ones_like(mu)

    # --- data on the likelihood's scale -------------------------------------------------
    def observed_value(self, y: np.ndarray, w: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Container value for response y (proportions for binomial)."""
        if self.name == "binomial":
            return np.rint(y * w * n).astype(np.int64)
        if self.name == "poisson":
            return np.rint(y * w).astype(np.int64)
        return np.asarray(y, dtype=float)

    def response_from_observed(self, k: np.ndarray, w: np.ndarray, n: np.ndarray) -> np.ndarray:
        if self.name == "binomial":
            return k / (w * n)
        if self.name == "poisson":
            return k / w
        return np.asarray(k, dtype=float)

    def check_response(self, y: np.ndarray, w: np.ndarray, n: np.ndarray, arg: str) -> None:
        """Raise ValueError unless y holds permitted values (MATLAB refit table)."""
        y = np.asarray(y, dtype=float)
        if not np.all(np.isfinite(y)):
            raise InputError(f"{arg}: contains NaN or infinite values; remove or impute them")
        tol = math.sqrt(np.finfo(float).eps)
        if self.name == "binomial":
            if np.any((y < 0) | (y > 1)):
                raise InputError(
                    f"{arg}: binomial responses must be proportions in [0, 1] "
                    "(success counts divided by binomial_size)"
                )
            k = y * w * n
            if np.any(np.abs(k - np.rint(k)) > tol * np.maximum(1, np.abs(k))):
                raise InputError(
                    f"{arg}: binomial proportions times weights x binomial_size must be integers"
                )
        elif self.name == "poisson":
            if np.any(y < 0):
                raise InputError(f"{arg}: Poisson responses must be >= 0")
            k = y * w
            if np.any(np.abs(k - np.rint(k)) > tol * np.maximum(1, np.abs(k))):
                raise InputError(f"{arg}: Poisson responses (times weights) must be integer counts")

    # --- the PyMC likelihood --------------------------------------------------------------
    def likelihood(self, name: str, eta, link: Link, data: dict, sigma, dims=None):
        """PyMC observed variable for linear predictor ``eta`` (``sigma`` per observation)."""
        import pymc as pm

        k = data["y"]
        if self.name == "normal":
            pt = _pt()
            return pm.Normal(
                name, mu=link.inverse_pt(eta), sigma=sigma / pt.sqrt(data["weights"]), observed=k, dims=dims
            )
        if self.name == "binomial":
            trials = data["trials"]
            if link.logit_pt is not None:  # log p and log(1 - p) stay exact where p rounds to 0 or 1
                return pm.Binomial(name, n=trials, logit_p=link.logit_pt(eta), observed=k, dims=dims)
            return pm.Binomial(name, n=trials, p=link.inverse_pt(eta), observed=k, dims=dims)
        if self.name == "poisson":
            mu = data["weights"] * link.inverse_pt(eta)
            return pm.CustomDist(
                name, mu, dist=_poisson_dist, logp=poisson_logp, observed=k, dims=dims, dtype="int64"
            )
        raise NotImplementedError(self.name)  # pragma: no cover

    def mu_start(self, y: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Starting means (MATLAB's PL initialisation): Poisson y + 1/4, binomial (ny + 1/2)/(n + 1)."""
        if self.name == "poisson":
            return y + 0.25
        if self.name == "binomial":
            return (n * y + 0.5) / (n + 1)
        return np.asarray(y, dtype=float)

    def clip_mean(self, mu: np.ndarray) -> np.ndarray:
        eps = np.finfo(float).eps
        if self.name == "binomial":
            return np.clip(mu, eps, 1 - eps)
        if self.name == "poisson":
            return np.maximum(mu, eps)
        return mu


DISTRIBUTIONS: dict[str, Distribution] = {
    "normal": Distribution("normal", "Normal", "identity", True, ()),
    "binomial": Distribution("binomial", "Binomial", "logit", False, ("identity", "log")),
    "poisson": Distribution("poisson", "Poisson", "log", False, ("identity",)),
}
_DIST_ALIASES = {"gaussian": "normal"}
_LATER = {"gamma", "inversegaussian", "inverse gaussian"}


def get_distribution(value: str) -> Distribution:
    if not isinstance(value, str):
        raise InputTypeError(f"distribution: expected a string such as 'poisson', got {value!r}")
    key = _DIST_ALIASES.get(value.strip().lower(), value.strip().lower())
    if key in _LATER:
        raise InputError(
            f"distribution: '{value}' is not supported yet; use 'normal', 'binomial' or 'poisson'"
        )
    if key not in DISTRIBUTIONS:
        raise InputError(f"distribution: unknown '{value}'; use one of 'normal', 'binomial', 'poisson'")
    return DISTRIBUTIONS[key]


def get_link(value: str | None, dist: Distribution) -> Link:
    if value is None:
        return LINKS[dist.canonical_link]
    if not isinstance(value, str):
        raise InputTypeError(
            f"link: expected a link name such as 'logit', got {value!r} "
            "(power and custom links are not supported yet)"
        )
    key = value.strip().lower()
    key = _LINK_ALIASES.get(key, key)
    if key in ("reciprocal", "power"):
        raise InputError(f"link: '{value}' is not supported yet; use one of {', '.join(LINKS)}")
    if key not in LINKS:
        raise InputError(f"link: unknown '{value}'; use one of {', '.join(LINKS)}")
    return LINKS[key]
