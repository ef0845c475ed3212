"""Conditional distributions of y given the random effects, and link functions.

Model (MATLAB's standard form): ``y_i | b ~ Distr(mu_i, sigma^2 / w_i)``, ``g(mu) = eta``. Each
family is one declarative :class:`Distribution` record in :data:`DISTRIBUTIONS`: its PyMC
likelihood, variance function, support check, starting values and ancillary parameter. Apart from
the Poisson log-density (written without cancellation, inside PyMC's ``CustomDist``) every
likelihood is a PyMC distribution. The observed container holds

* normal, gamma, inverse Gaussian: y (Var = sigma^2 v(mu) / w: gamma shape w / sigma^2, inverse
  Gaussian lambda = w / sigma^2);
* binomial: success counts ``k = w n y`` out of ``w n`` trials (y is a proportion, n = BinomialSize);
* poisson: counts ``k = w y`` with mean ``w mu`` (MATLAB's prior-weight convention);
* negative binomial (NB2, Var = mu + mu^2 / theta): counts ``k = w y`` ~ NB2(w mu, w theta), the
  sum of w counts NB2(mu, theta) (the same convention as Poisson's).

Each link is given once, in a form that works on PyTensor tensors and on NumPy arrays alike
(``xp`` is ``pytensor.tensor`` or ``numpy``/``scipy.special``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields

import numpy as np
import scipy.special as sps

from .errors import InputError, InputTypeError

__all__ = [
    "DISTRIBUTIONS",
    "LINKS",
    "Ancillary",
    "Distribution",
    "Link",
    "custom_link",
    "get_distribution",
    "get_link",
    "link_warning",
    "power_link",
]


@dataclass(frozen=True)
class Link:
    """g(mu) = eta; ``inverse_pt`` builds mu in the PyMC graph, ``inverse_np`` evaluates it in NumPy.

    Built-in links pickle by name; a custom link (:func:`custom_link`) pickles its callables.
    """

    name: str
    inverse_pt: Callable
    inverse_np: Callable
    link_np: Callable
    logit_pt: Callable | None = None  # log p - log(1 - p) from eta, stable where p rounds to 0 or 1
    mu_eta_np: Callable | None = None  # d mu / d eta = 1 / g'(mu), in NumPy
    power: float | None = None  # exponent of a power link g(mu) = mu^power
    builtin: bool = True
    # eta has no units (log: log-ratios; logit, probit, ...: bounded means): the default start of
    # the random effects' SDs, 1 / rms of their columns, is on the right scale
    scale_free: bool = False

    def mu_eta(self, eta: np.ndarray) -> np.ndarray:
        """d mu / d eta at ``eta`` (NumPy): 1 / g'(mu), used for Fisher weights."""
        return self.mu_eta_np(np.asarray(eta, dtype=float))

    @property
    def display(self) -> str:
        return self.name[0].upper() + self.name[1:]

    def __reduce__(self):
        """Built-in links pickle by name (their callables are module-level lambdas), power links by
        their exponent (the name rounds it to 6 digits: power(1/3) came back as power(0.333333),
        and power(1.0000001) as the identity), custom links by their callables."""
        if not self.builtin:
            return (Link, tuple(getattr(self, f.name) for f in fields(self)))
        if self.power is not None:
            return (power_link, (self.power,))
        return (_link_named, (self.name,))


def _link_named(name: str) -> Link:
    if name.startswith("power("):
        return power_link(float(name[6:-1]))
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


def _stirling_remainder(x):
    """lgamma(x) - ((x - 1/2) log x - x + log(2 pi) / 2) for x >= 100 (error < 1e-17)."""
    return 1.0 / (12.0 * x) - 1.0 / (360.0 * x**3) + 1.0 / (1260.0 * x**5)


def _negative_binomial_dist(mu, alpha, size):
    """NB2 draws as the gamma-Poisson mixture: lambda ~ Gamma(shape alpha, rate alpha / mu), then
    k ~ Poisson(lambda). PyMC's NegativeBinomial draws with p = alpha / (alpha + mu), and 1 - p is
    lost to rounding as alpha / mu grows: at the Poisson limit a fit ends at (theta = 1e16) every
    row with mean below 1 drew 0 (P(k = 0) 0.43 where the model's is 0.29), and the bootstrap's
    interval for the random-effects SD excluded the estimate. The mixture is exact at every theta."""
    import pymc as pm

    lam = pm.Gamma.dist(alpha=alpha, beta=alpha / mu, size=size)
    return pm.Poisson.dist(mu=lam, size=size)


def negative_binomial_logp(value, mu, alpha):
    """log NB2(k | mu, theta = alpha) = log Poisson(k | mu) + G(k, theta) + mu - (theta + k) log1p(mu / theta)
    without cancelling large terms.

    PyMC's ``lgamma(k + theta) - lgamma(theta) + ...`` subtracts terms of ~2e9 at theta ~ 1e8, the
    Poisson limit a fit of data that are not overdispersed runs to (rounding ~1e-7 a row: the NB
    fit ended 7e-5 below the Poisson fit it contains on 500 rows of counts ~ e^8). Here G(k, theta) =
    lgamma(k + theta) - lgamma(theta) - k log theta is, from theta = 100 on,
    (k + theta - 1/2) log1p(k / theta) - k + S(k + theta) - S(theta) with Stirling's remainder S,
    and direct below; the Poisson part is :func:`poisson_logp`. Every term is then of the size of
    the result (-> 0 as theta grows, leaving the Poisson log-density), and no switch to the Poisson
    form is needed. Draws come from :func:`_negative_binomial_dist` (``CustomDist``)."""
    from pymc.distributions.dist_math import check_parameters

    pt = _pt()
    k = pt.cast(value, "float64")
    big = pt.ge(alpha, 100.0)
    tb = pt.switch(big, alpha, 100.0)
    ts = pt.switch(big, 1.0, alpha)
    g_big = (k + tb - 0.5) * pt.log1p(k / tb) - k + _stirling_remainder(k + tb) - _stirling_remainder(tb)
    g_small = pt.gammaln(k + ts) - pt.gammaln(ts) - k * pt.log(ts)
    g = pt.switch(big, g_big, g_small)
    res = poisson_logp(value, mu) + g + mu - (alpha + k) * pt.log1p(mu / alpha)
    return check_parameters(res, pt.gt(mu, 0.0), pt.gt(alpha, 0.0), msg="mu > 0, alpha > 0")


LINKS: dict[str, Link] = {
    "identity": Link("identity", lambda e: e, lambda e: e, lambda m: m, None, np.ones_like),
    "log": Link("log", lambda e: _pt().exp(e), np.exp, np.log, None, np.exp, scale_free=True),
    "logit": Link(
        "logit",
        lambda e: _pt().sigmoid(e),
        sps.expit,
        sps.logit,
        lambda e: e,
        lambda e: sps.expit(e) * sps.expit(-e),
        scale_free=True,
    ),
    "probit": Link(
        "probit",
        lambda e: 0.5 * _pt().erfc(-e / math.sqrt(2.0)),
        sps.ndtr,
        sps.ndtri,
        _probit_logit,
        lambda e: np.exp(-0.5 * e * e) / math.sqrt(2.0 * math.pi),
        scale_free=True,
    ),
    "comploglog": Link(
        "comploglog",
        lambda e: -_pt().expm1(-_pt().exp(e)),
        lambda e: -np.expm1(-np.exp(e)),
        lambda m: np.log(-np.log1p(-m)),
        _cloglog_logit,
        lambda e: np.exp(e - np.exp(e)),
        scale_free=True,
    ),
    "loglog": Link(
        "loglog",
        lambda e: _pt().exp(-_pt().exp(-e)),
        lambda e: np.exp(-np.exp(-e)),
        lambda m: -np.log(-np.log(m)),
        _loglog_logit,
        lambda e: np.exp(-e - np.exp(-e)),
        scale_free=True,
    ),
}
LINKS["reciprocal"] = Link(
    "reciprocal",
    lambda e: 1.0 / e,
    lambda e: 1.0 / e,
    lambda m: 1.0 / m,
    None,
    lambda e: -1.0 / (e * e),
)
_LINK_ALIASES = {"cloglog": "comploglog", "inverse": "reciprocal"}


def power_link(p: float) -> Link:
    """g(mu) = mu^p (MATLAB's numeric link): p = 0 is the log link, p = 1 the identity and p = -1
    the reciprocal link (returned under those names); otherwise ``power(p)``, mu = eta^(1/p) for
    eta > 0 and undefined (NaN: an infeasible point for the fit) for eta <= 0."""
    p = float(p)
    if not math.isfinite(p):
        raise InputError(f"link: a power link needs a finite exponent, got {p}")
    if p == 0.0:
        return LINKS["log"]
    if p == 1.0:
        return LINKS["identity"]
    if p == -1.0:
        return LINKS["reciprocal"]
    r = 1.0 / p

    def inverse_pt(e):
        # eta > 0 only (R's power links too): eta^r of an integer r = 1/p is defined below 0 but
        # not the model's (mu = eta^2 for p = 0.5 folds eta < 0 onto the same means, and fits
        # ended on that branch); the inner switch keeps the derivatives finite where eta <= 0
        pt = _pt()
        positive = pt.gt(e, 0.0)
        return pt.switch(positive, pt.switch(positive, e, 1.0) ** r, np.nan)

    def inverse_np(e):
        e = np.asarray(e, dtype=float)
        return np.where(e > 0, np.power(np.where(e > 0, e, 1.0), r), np.nan)

    def mu_eta_np(e):
        e = np.asarray(e, dtype=float)
        return np.where(e > 0, r * np.power(np.where(e > 0, e, 1.0), r - 1.0), np.nan)

    return Link(f"power({p:g})", inverse_pt, inverse_np, lambda m: np.power(m, p), None, mu_eta_np, power=p)


def custom_link(inverse: Callable, link: Callable, name: str = "custom") -> Link:
    """A link given by its inverse mu = g^-1(eta) and g(mu).

    ``inverse`` must work on PyTensor tensors (build it from ``pytensor.tensor`` operations, e.g.
    ``lambda eta: pt.exp(eta) / (1 + pt.exp(eta))``): the model's likelihood is built with it, so
    every derivative the engine needs is automatic. ``link`` maps NumPy means to eta (starting
    values). NumPy evaluations of the inverse and of d mu/d eta are compiled from ``inverse`` on
    first use. The callables must be picklable (module-level functions) for the model to pickle.
    """
    if not callable(inverse) or not callable(link):
        raise InputTypeError("link: a custom link needs callables inverse(eta) and link(mu)")
    taken = {n.lower() for n in (*LINKS, *_LINK_ALIASES)}
    if (
        not isinstance(name, str)
        or not name.isidentifier()
        or name.lower() in taken
        or name.lower().startswith("power")
    ):
        raise InputError(
            f"link: a custom link needs a new identifier as its name, got {name!r} (built-in names and "
            f"aliases, in any case: {', '.join([*LINKS, *_LINK_ALIASES])}, power)"
        )
    compiled = _CompiledInverse(inverse)
    return Link(name, inverse, compiled.value, link, None, compiled.derivative, builtin=False)


class _CompiledInverse:
    """NumPy evaluation of a PyTensor-built inverse link and of its derivative (compiled once)."""

    def __init__(self, inverse: Callable):
        self.inverse = inverse
        self._fns: tuple | None = None

    def _compile(self) -> tuple:
        if self._fns is None:
            import pytensor.tensor as pt

            from .backend import COMPILE_LOCK, import_pytensor

            pytensor = import_pytensor()
            with COMPILE_LOCK:
                if self._fns is None:
                    e = pt.vector("eta", dtype="float64")
                    mu = self.inverse(e)
                    d = pytensor.grad(mu.sum(), e)
                    self._fns = (pytensor.function([e], mu), pytensor.function([e], d))
        return self._fns

    def value(self, eta):
        return self._call(0, eta)

    def derivative(self, eta):
        return self._call(1, eta)

    def _call(self, which: int, eta) -> np.ndarray:
        """The compiled function takes a vector: an array of any shape (the quadrature's (K, n)
        nodes) goes in flat and comes back in its shape (an elementwise inverse keeps the size;
        one that does not is refused by :func:`check_custom_link` before a fit)."""
        x = np.atleast_1d(np.asarray(eta, dtype=float))
        out = self._compile()[which](x.ravel())
        return out.reshape(x.shape) if x.ndim > 1 and np.size(out) == x.size else out

    def __getstate__(self):
        return {"inverse": self.inverse, "_fns": None}


# ---- families ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ancillary:
    """A family's parameter besides the mean, estimated on the log scale (phi = log value).

    ``scales_random_effects``: MATLAB's dispersion sigma, with b ~ N(0, sigma^2 D) (normal, gamma,
    inverse Gaussian), so the random effects' relative covariance is D; otherwise a parameter of
    the likelihood only (negative binomial's theta). ``label`` is its row in the covariance tables.
    """

    name: str  # the PyMC variable
    label: str
    scales_random_effects: bool


_SIGMA = Ancillary("sigma", "sqrt(Dispersion)", True)
_NB_THETA = Ancillary("nb_theta", "theta", False)


def _rint_counts(y, w, n):
    return np.rint(y * w).astype(np.int64)


def _counts_to_response(k, w, n):
    return k / w


def _identity_observed(y, w, n):
    return np.asarray(y, dtype=float)


def _binomial_observed(y, w, n):
    return np.rint(y * w * n).astype(np.int64)


def _normal_likelihood(name, eta, link, data, anc, dims):
    import pymc as pm

    pt = _pt()
    sd = anc / pt.sqrt(data["weights"])
    return pm.Normal(name, mu=link.inverse_pt(eta), sigma=sd, observed=data["y"], dims=dims)


def _binomial_likelihood(name, eta, link, data, anc, dims):
    import pymc as pm

    k, trials = data["y"], data["trials"]
    if link.logit_pt is not None:  # log p and log(1 - p) stay exact where p rounds to 0 or 1
        return pm.Binomial(name, n=trials, logit_p=link.logit_pt(eta), observed=k, dims=dims)
    return pm.Binomial(name, n=trials, p=link.inverse_pt(eta), observed=k, dims=dims)


def _poisson_likelihood(name, eta, link, data, anc, dims):
    import pymc as pm

    mu = data["weights"] * link.inverse_pt(eta)
    return pm.CustomDist(
        name, mu, dist=_poisson_dist, logp=poisson_logp, observed=data["y"], dims=dims, dtype="int64"
    )


def _gamma_likelihood(name, eta, link, data, anc, dims):
    """y ~ Gamma(shape a = w / sigma^2, rate a / mu): mean mu, variance sigma^2 mu^2 / w."""
    import pymc as pm

    shape = data["weights"] / (anc * anc)
    return pm.Gamma(name, alpha=shape, beta=shape / link.inverse_pt(eta), observed=data["y"], dims=dims)


def _inverse_gaussian_likelihood(name, eta, link, data, anc, dims):
    """y ~ IG(mu, lambda = w / sigma^2) (PyMC's Wald): variance sigma^2 mu^3 / w."""
    import pymc as pm

    lam = data["weights"] / (anc * anc)
    return pm.Wald(name, mu=link.inverse_pt(eta), lam=lam, observed=data["y"], dims=dims)


def _negative_binomial_likelihood(name, eta, link, data, anc, dims):
    """k = w y ~ NB2(w mu, w theta): the sum of w counts NB2(mu, theta), variance mu + mu^2/theta each."""
    import pymc as pm

    w = data["weights"]
    return pm.CustomDist(
        name,
        w * link.inverse_pt(eta),
        w * anc,
        dist=_negative_binomial_dist,
        logp=negative_binomial_logp,
        observed=data["y"],
        dims=dims,
        dtype="int64",
    )


def _check_counts(family: str):
    def check(y, w, n, arg, index=None):
        tol = math.sqrt(np.finfo(float).eps)
        bad = y < 0
        if np.any(bad):
            raise InputError(f"{arg}: {family} responses must be >= 0, and are not in {_rows(bad, index)}")
        k = y * w
        bad = np.abs(k - np.rint(k)) > tol * np.maximum(1, np.abs(k))
        if np.any(bad):
            raise InputError(
                f"{arg}: {family} responses (times weights) must be integer counts, and are not in "
                f"{_rows(bad, index)}"
            )

    return check


def _check_positive(family: str):
    def check(y, w, n, arg, index=None):
        bad = y <= 0
        if np.any(bad):
            raise InputError(
                f"{arg}: {family} responses must be > 0, and are not in {_rows(bad, index)}; "
                "exclude those rows or use another distribution"
            )

    return check


def _check_binomial(y, w, n, arg, index=None):
    tol = math.sqrt(np.finfo(float).eps)
    bad = (y < 0) | (y > 1)
    if np.any(bad):
        raise InputError(
            f"{arg}: binomial responses must be proportions in [0, 1] (success counts divided by "
            f"binomial_size), and are not in {_rows(bad, index)}"
        )
    k = y * w * n
    bad = np.abs(k - np.rint(k)) > tol * np.maximum(1, np.abs(k))
    if np.any(bad):
        raise InputError(
            f"{arg}: binomial proportions times weights x binomial_size must be integers, and are not "
            f"in {_rows(bad, index)}"
        )


def _no_check(y, w, n, arg, index=None):
    return None


def _rows(mask: np.ndarray, index) -> str:
    from .design.checks import rows_where

    return rows_where(mask, index)


def _sigma_start_normal(y, mu, w):
    return float(np.sqrt(np.mean(w * (y - mu) ** 2)))


def _sigma_start_power(power: float):
    """Moment start sqrt(mean(w (y - mu)^2 / mu^power)) for Var = sigma^2 mu^power / w."""

    def start(y, mu, w):
        return float(np.sqrt(np.mean(w * (y - mu) ** 2 / mu**power)))

    return start


def _nb_theta_start(y, mu, w):
    """Moment start: Var - mu = mu^2 / theta, pooled; large (near Poisson) when not overdispersed."""
    excess = float(np.sum((y - mu) ** 2 - mu))
    return float(np.sum(mu**2) / excess) if excess > 0 else 100.0


NB_POISSON_LIMIT = 1e6  # a fit ending beyond this theta is checked by a restart (_nb_theta_restart)
NB_THETA_AT_LIMIT = 1e16  # theta standing for the Poisson limit itself (log-density 1e-12 from Poisson's)


def _nb_theta_restart(y, mu, w, phi):
    """log theta to fit again from when a fit ended at theta > ``NB_POISSON_LIMIT``, or None.

    Above theta ~ 1e10 the NB2 log-density differs from the Poisson one by ~mu^2 / theta, too little
    for the gradient: a first BFGS step from a start far below the optimum (log theta moved by ~30)
    can land there, and the gradient test is then met at the Poisson fit (49 log-likelihood units below
    glmmTMB's on one data set). If the counts are overdispersed about the fit's conditional means
    mu (moment estimate finite and below the limit), the optimum is at a finite theta: restart.
    If they are not, the optimum is the limit itself (the Poisson fit), and a fit that stopped on the
    way (theta = 8.5e8 ended 1.8e-5 log-likelihood units below the Poisson fit it contains, its
    gradient in log theta ~c / theta below the test; counts of mean ~2 stopped at theta 2.5e6 to
    3e7, 2e-6 below) restarts from theta = ``NB_THETA_AT_LIMIT``. The better fit is kept, so the
    limit only decides which fits pay for a second one."""
    if phi <= np.log(NB_POISSON_LIMIT):
        return None
    excess = float(np.sum((y - mu) ** 2 - mu))
    theta = float(np.sum(mu**2) / excess) if excess > 0 else np.inf
    if 0 < theta < NB_POISSON_LIMIT:
        return float(np.log(theta))
    far = float(np.log(NB_THETA_AT_LIMIT))
    return far if phi < far - 1.0 else None


@dataclass(frozen=True)
class Distribution:
    """One conditional distribution y | b: a declarative record (adding a family = one entry).

    ``likelihood(name, eta, link, data, ancillary, dims)`` builds the PyMC observed variable from
    the ``pm.Data`` containers (``ancillary`` is sigma or theta per observation, or None);
    ``variance`` is MATLAB's v(mu); ``observed``/``response`` map MATLAB's response scale to the
    observed container and back; ``support`` refuses responses outside the family's support, naming
    the rows; ``mean_range`` clips means; ``ancillary_start(y, mu, w)`` starts sigma or theta.
    """

    name: str
    display: str
    canonical_link: str | float
    likelihood: Callable
    variance_fn: Callable
    support: Callable
    start_fn: Callable  # (y, n) -> starting means (MATLAB's PL rule)
    mean_range: tuple[float, float]
    observed: Callable = _identity_observed
    response: Callable = _counts_to_response
    ancillary: Ancillary | None = None
    ancillary_start: Callable | None = None
    # (y, conditional means, w, phi) -> phi to fit again from, where phi ended in a region the
    # likelihood does not depend on (negative binomial's Poisson limit), or None
    ancillary_restart: Callable | None = None
    # log phi beyond which the likelihood hardly depends on phi (the Poisson limit): a refit
    # warm-started from a fit there is fitted again from a fresh start (fitting._refit_at_limit)
    ancillary_limit: float | None = None
    bad_links: tuple[str, ...] = ()  # links that are allowed with a warning (MATLAB)
    counts: bool = False  # observed values are integers (weights must be positive integers)

    def __reduce__(self):
        return (get_distribution, (self.name,))

    @property
    def has_dispersion(self) -> bool:
        """MATLAB's dispersion sigma^2 is estimated (normal, gamma, inverse Gaussian)."""
        return self.ancillary is not None and self.ancillary.scales_random_effects

    @property
    def has_ancillary(self) -> bool:
        """The likelihood has a parameter besides the mean (sigma, or negative binomial's theta)."""
        return self.ancillary is not None

    def variance(self, mu: np.ndarray) -> np.ndarray:
        """Variance function v(mu): Var(y | b) = sigma^2 v(mu) / w (MATLAB's table)."""
        return self.variance_fn(np.asarray(mu, dtype=float))

    def observed_value(self, y: np.ndarray, w: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Container value for response y (proportions for binomial)."""
        return self.observed(y, w, n)

    def response_from_observed(self, k: np.ndarray, w: np.ndarray, n: np.ndarray) -> np.ndarray:
        if self.observed is _identity_observed:
            return np.asarray(k, dtype=float)
        return self.response(k, w, n)

    def check_response(self, y: np.ndarray, w: np.ndarray, n: np.ndarray, arg: str, index=None) -> None:
        """Raise InputError unless y holds permitted values (MATLAB refit table), naming rows."""
        y = np.asarray(y, dtype=float)
        bad = ~np.isfinite(y)
        if np.any(bad):
            raise InputError(
                f"{arg}: contains NaN or infinite values in {_rows(bad, index)}; remove or impute them"
            )
        self.support(y, np.asarray(w, dtype=float), np.asarray(n, dtype=float), arg, index)

    def likelihood_rv(self, name: str, eta, link: Link, data: dict, ancillary, dims=None):
        """PyMC observed variable for linear predictor ``eta``."""
        return self.likelihood(name, eta, link, data, ancillary, dims)

    def mu_start(self, y: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Starting means (MATLAB's PL initialisation)."""
        return self.start_fn(np.asarray(y, dtype=float), np.asarray(n, dtype=float))

    def clip_mean(self, mu: np.ndarray) -> np.ndarray:
        lo, hi = self.mean_range
        eps = np.finfo(float).eps
        return np.clip(mu, lo + eps if np.isfinite(lo) else lo, hi - eps if np.isfinite(hi) else hi)


@dataclass(frozen=True)
class MeanRange:
    """Whether a linear predictor's means (and the ancillary parameter) are inside the family's
    range, checked in NumPy before the compiled likelihood is called: that function raises at a
    point outside (PyMC's parameter check), and an exception raised from Numba-compiled code leaks
    the arrays it had allocated (~14 MB per rejected evaluation at 200,000 rows: 28 such points
    per gamma fit on the reciprocal link grew a process by 400 MB a fit). Only certain violations
    are caught here (a mean below or above the range, NaN, exp(phi) not a positive finite number);
    an edge case still reaches the function's own check."""

    lo: float
    hi: float
    link: Link

    def __call__(self, eta: np.ndarray, phi: float | None = None) -> bool:
        with np.errstate(all="ignore"):
            if phi is not None and not 0.0 < float(np.exp(phi)) < math.inf:
                return False
        return not bool(self.outside(eta).any())

    def outside(self, eta: np.ndarray) -> np.ndarray:
        """Rows whose mean g^-1(eta) is below or above the range, or NaN."""
        with np.errstate(all="ignore"):
            mu = self.link.inverse_np(eta)
        return (mu < self.lo) | (mu > self.hi) | np.isnan(mu)


_SAFE_LINKS = {(0.0, np.inf): ("log",), (0.0, 1.0): ("logit", "probit", "comploglog", "loglog")}


def mean_range_check(dist: Distribution, link: Link) -> MeanRange | None:
    """The :class:`MeanRange` check of ``dist`` and ``link``, or None where every eta gives a mean
    in range (log for the positive families, the four binomial links, any link of the normal)."""
    lo, hi = dist.mean_range
    if not (np.isfinite(lo) or np.isfinite(hi)):
        return None
    if link.builtin and link.name in _SAFE_LINKS.get((lo, hi), ()):
        return None
    return MeanRange(lo, hi, link)


_EPS = np.finfo(float).eps
DISTRIBUTIONS: dict[str, Distribution] = {
    "normal": Distribution(
        "normal",
        "Normal",
        "identity",
        _normal_likelihood,
        np.ones_like,
        _no_check,
        lambda y, n: y,
        (-np.inf, np.inf),
        ancillary=_SIGMA,
        ancillary_start=_sigma_start_normal,
    ),
    "binomial": Distribution(
        "binomial",
        "Binomial",
        "logit",
        _binomial_likelihood,
        lambda mu: mu * (1.0 - mu),
        _check_binomial,
        lambda y, n: (n * y + 0.5) / (n + 1),
        (0.0, 1.0),
        observed=_binomial_observed,
        response=lambda k, w, n: k / (w * n),
        bad_links=("identity", "log"),
        counts=True,
    ),
    "poisson": Distribution(
        "poisson",
        "Poisson",
        "log",
        _poisson_likelihood,
        lambda mu: mu,
        _check_counts("Poisson"),
        lambda y, n: y + 0.25,
        (0.0, np.inf),
        observed=_rint_counts,
        bad_links=("identity",),
        counts=True,
    ),
    "gamma": Distribution(
        "gamma",
        "Gamma",
        -1.0,
        _gamma_likelihood,
        lambda mu: mu * mu,
        _check_positive("gamma"),
        lambda y, n: np.maximum(y, _EPS),
        (0.0, np.inf),
        ancillary=_SIGMA,
        ancillary_start=_sigma_start_power(2.0),
        bad_links=("identity",),
    ),
    "inverse_gaussian": Distribution(
        "inverse_gaussian",
        "InverseGaussian",
        -2.0,
        _inverse_gaussian_likelihood,
        lambda mu: mu**3,
        _check_positive("inverse Gaussian"),
        lambda y, n: np.maximum(y, _EPS),
        (0.0, np.inf),
        ancillary=_SIGMA,
        ancillary_start=_sigma_start_power(3.0),
        bad_links=("identity",),
    ),
    "negative_binomial": Distribution(
        "negative_binomial",
        "NegativeBinomial",
        "log",
        _negative_binomial_likelihood,
        lambda mu: mu,  # the Poisson part; the theta part mu^2/theta is not a dispersion scale
        _check_counts("negative binomial"),
        lambda y, n: y + 0.25,
        (0.0, np.inf),
        observed=_rint_counts,
        ancillary=_NB_THETA,
        ancillary_start=_nb_theta_start,
        ancillary_restart=_nb_theta_restart,
        ancillary_limit=math.log(NB_POISSON_LIMIT),
        bad_links=("identity",),
        counts=True,
    ),
}
_DIST_ALIASES = {
    "gaussian": "normal",
    "inversegaussian": "inverse_gaussian",
    "inverse gaussian": "inverse_gaussian",
    "inverse_gaussian": "inverse_gaussian",
    "ig": "inverse_gaussian",
    "negativebinomial": "negative_binomial",
    "negative binomial": "negative_binomial",
    "nb": "negative_binomial",
    "nbinom2": "negative_binomial",
}


def get_distribution(value: str) -> Distribution:
    if not isinstance(value, str):
        raise InputTypeError(f"distribution: expected a string such as 'poisson', got {value!r}")
    key = value.strip().lower()
    key = _DIST_ALIASES.get(key, key)
    if key not in DISTRIBUTIONS:
        raise InputError(f"distribution: unknown '{value}'; use one of {', '.join(map(repr, DISTRIBUTIONS))}")
    return DISTRIBUTIONS[key]


def get_link(value, dist: Distribution) -> Link:
    """A link from a name, a number (MATLAB's power link; 0 is log), a :class:`Link` (e.g. from
    :func:`custom_link`) or a mapping with ``inverse``, ``link`` and optional ``name`` (MATLAB's
    link struct, with PyTensor callables). None gives the distribution's canonical link."""
    if value is None:
        value = dist.canonical_link
    if isinstance(value, Link):
        return value
    if isinstance(value, Mapping):
        unknown = set(value) - {"inverse", "link", "name"}
        if unknown or not {"inverse", "link"} <= set(value):
            raise InputError(
                "link: a custom link is a mapping with keys 'inverse' (eta -> mu, PyTensor ops), "
                f"'link' (mu -> eta, NumPy) and optional 'name'; got keys {sorted(value)}"
            )
        return custom_link(value["inverse"], value["link"], value.get("name", "custom"))
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        value = value.item()
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return power_link(float(value))
    if not isinstance(value, str):
        raise InputTypeError(
            "link: expected a link name such as 'logit', a number (power link) or a custom link "
            "(ppl_glmm.custom_link(inverse, link, name), or a dict with keys 'inverse', 'link' and "
            f"optionally 'name'), got {value!r}"
        )
    key = value.strip().lower()
    key = _LINK_ALIASES.get(key, key)
    if key.startswith("power(") and key.endswith(")"):
        try:
            return power_link(float(key[6:-1]))
        except ValueError:
            pass
    if key not in LINKS:
        raise InputError(
            f"link: unknown '{value}'; use one of {', '.join(LINKS)}, a number P for the power link "
            "mu^P, or a custom link"
        )
    return LINKS[key]


def link_warning(dist: Distribution, link: Link) -> str | None:
    """MATLAB's warning for a link that can put the mean outside the distribution's range (not for
    a family's canonical power link, which would warn on every gamma and inverse Gaussian fit)."""
    canonical = link.power == dist.canonical_link or (
        link.name == "reciprocal" and dist.canonical_link == -1.0
    )
    if (link.power is not None or link.name == "reciprocal") and not canonical:
        return f"link: '{link.name}' needs a positive linear predictor; fits may fail where it is not"
    if link.name in dist.bad_links:
        return f"link: '{link.name}' with distribution '{dist.name}' can give means outside the valid range"
    return None


UNIT_INTERVAL_LINKS = ("logit", "probit", "comploglog", "loglog")  # mu = F(eta) in (0, 1)


def unit_link_warning(dist: Distribution, link: Link, y: np.ndarray, weights: np.ndarray) -> str | None:
    """A link whose means lie in (0, 1) for a family whose means do not (every family but the
    binomial), when the responses' weighted mean is at least 1: the fit can only push eta to
    +infinity where the means would exceed 1, a flat ridge that reports convergence (a gamma model
    on a logit link ended with every fitted mean 1.0000, an intercept of 36 and SEs of 5e6)."""
    if dist.name == "binomial" or not link.builtin or link.name not in UNIT_INTERVAL_LINKS or y.size == 0:
        return None
    mean = float(np.average(y, weights=weights))
    if not mean >= 1.0:
        return None
    return (
        f"link: '{link.name}' keeps the means of a {dist.name} model in (0, 1), but the responses "
        f"average {mean:.4g}; the fit cannot follow them (the means pile up at 1, with unbounded "
        "coefficients): use 'log' or the family's canonical link"
    )


def check_custom_link(link: Link, dist: Distribution, y: np.ndarray, n: np.ndarray) -> None:
    """A custom link's ``link`` must invert its ``inverse``: g^-1(g(mu)) = mu (relative 1e-6) at the
    family's starting means of the data, where g(mu) is finite. The ML fit needs only ``inverse``
    (the PyMC model's likelihood), but its start, MPL's start and clipped means and the Bayesian default
    priors use ``link``: one that is not the inverse (np.log10 for pt.exp) would change them
    silently. Built-in links pass unchecked."""
    if link.builtin:
        return
    mu = dist.mu_start(y, n)
    with np.errstate(all="ignore"):
        eta = np.asarray(link.link_np(mu), dtype=float)
        back = np.asarray(link.inverse_np(eta), dtype=float) if eta.shape == mu.shape else None
    if back is None:
        raise InputError(
            f"link: the custom link's link(mu) returned an array of shape {eta.shape} for {mu.size} "
            "means; it must map each mean to its linear predictor (NumPy, elementwise)"
        )
    if back.shape != mu.shape:
        raise InputError(
            f"link: the custom link's inverse(eta) returned an array of shape {back.shape} for "
            f"{eta.size} linear predictors; it must map each to its mean (PyTensor ops applied "
            "elementwise, e.g. pt.exp(eta), without sums or new axes)"
        )
    # (a mean outside the link's range, e.g. a negative normal response under a log link, is left
    # to the start, which does without it)
    bad = np.isfinite(eta) & ~np.isclose(back, mu, rtol=1e-6, atol=1e-12)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"link: the custom link's link and inverse do not invert each other: inverse(link({mu[i]:.6g})) "
            f"= {back[i]:.6g} (link gave eta = {eta[i]:.6g}); give link(mu) as the inverse function of "
            "inverse(eta), e.g. np.log for pt.exp"
        )
