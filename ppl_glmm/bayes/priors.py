"""Priors of the Bayesian model: weakly informative defaults scaled to the data, and user overrides.

Defaults (rstanarm's autoscaling, as bambi uses it), with ``s_y`` the unit of the linear predictor:
``sd(y)`` for a normal response with the identity link; ``m |g'(m)|`` (m = mean response) for gamma,
inverse Gaussian and negative binomial, the change in eta for a 100% change in the mean (1 for the
log link, 1/m for the reciprocal link); 1 otherwise:

* a non-constant column x_j of X: ``beta_j ~ Normal(0, 2.5 s_y / sd(x_j))``;
* the intercept (a constant column): ``Normal(m_0, sqrt((2.5 s_y)^2 + sum_j sigma_j^2 xbar_j^2))``
  with ``m_0 = g(mean response) - mean(offset)`` (brms centres its intercept prior the same way;
  the second term widens it because the other columns are not centred, as bambi does);
* the SD of random-effect coefficient k of a term: ``HalfNormal(2.5 s_y / sd(T_k))``, and
  ``HalfNormal(2.5 s_y)`` for a constant column (an intercept);
* the correlations of a term with q >= 2 coefficients: ``LKJ(eta = 2)`` on its Cholesky factor;
* sigma (sqrt(Dispersion): normal, gamma, inverse Gaussian): ``HalfStudentT(nu = 4, sigma =
  sd(y) / sqrt(v(mean y)))``, v the family's variance function (sd(y) for normal, the coefficient
  of variation for gamma);
* negative binomial's theta (``nb_theta``): ``InverseGamma(0.4, 0.3)``, brms's default, close to
  the penalised-complexity prior that shrinks towards the Poisson model (theta -> inf).

Overrides: ``priors={name: pm.<Distribution>.dist(...)}`` with ``name`` one of ``'beta'`` (every
fixed effect; scalar or shape (p,)), a coefficient name (``'newprocess'`` or ``'beta[newprocess]'``;
scalar), ``'sd_<term>'`` (scalar or shape (q,), positive support), ``'corr_<term>'``
(``pm.LKJCorr.dist(n=q, eta=...)``), ``'sigma'`` or ``'nb_theta'`` (scalar, positive support).
Improper priors (``pm.Flat``, ``pm.HalfFlat``) are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError, InputTypeError
from ..names import ModelNames

__all__ = ["DEFAULT_LKJ_ETA", "Prior", "PriorSet", "resolve_priors"]

SCALE = 2.5
DEFAULT_LKJ_ETA = 2.0
SIGMA_NU = 4.0
NB_THETA_PRIOR = {"alpha": 0.4, "beta": 0.3}  # InverseGamma: brms's default for NB's shape


@dataclass(frozen=True)
class Prior:
    """A PyMC distribution family with its parameters (the defaults), or the user's own ``.dist()``."""

    family: str | None = None
    params: dict = field(default_factory=dict)
    user: Any = None  # a PyMC .dist() variable

    def dist(self, shape: tuple[int, ...]):
        """An unregistered PyMC distribution of the given shape (a new node: the user's is not touched)."""
        import pymc as pm

        if self.user is None:
            return getattr(pm, self.family).dist(**self.params, shape=shape)
        return _resized(self.user, shape)

    def describe(self) -> str:
        if self.user is not None:
            from pymc.printing import str_for_dist

            return str_for_dist(self.user)
        args = ", ".join(f"{k}={_fmt(v)}" for k, v in self.params.items())
        return f"{self.family}({args})"

    def subset(self, idx: np.ndarray) -> Prior:
        """The prior of some entries of a vector prior (default priors only)."""
        params = {k: np.asarray(v)[idx] if np.ndim(v) else v for k, v in self.params.items()}
        return Prior(self.family, params)


@dataclass(frozen=True)
class PriorSet:
    """The resolved priors of one model (every parameter has exactly one)."""

    beta: Prior  # vector prior over the coefficients in ``beta_shared``
    beta_shared: tuple[int, ...]  # coefficient indices under ``beta``
    beta_own: dict[int, Prior]  # coefficient index -> its own scalar prior
    sd: tuple[Prior, ...]  # per term, for its q SDs
    lkj_eta: tuple[float | None, ...]  # per term (None when q = 1)
    ancillary: Prior | None  # of sigma or nb_theta (``ModelNames.ancillary``)
    sources: dict[str, str]  # parameter -> 'default' or 'user'

    def table(self, names: ModelNames) -> pd.DataFrame:
        """Parameter, Prior, Source: one row per coefficient, per term's SDs and correlations, and
        sigma or nb_theta."""
        rows = []
        for j, coef in enumerate(names.coef):
            if j in self.beta_own:
                prior = self.beta_own[j]
            elif self.beta.user is None:
                prior = self.beta.subset(np.array([self.beta_shared.index(j)]))
            else:
                prior = self.beta
            rows.append((f"beta[{coef}]", prior.describe(), self.sources[f"beta[{coef}]"]))
        for tn, sd, eta in zip(names.terms, self.sd, self.lkj_eta):
            rows.append((tn.sd, sd.describe(), self.sources[tn.sd]))
            if eta is not None:
                rows.append((tn.corr, f"LKJ(eta={_fmt(eta)})", self.sources[tn.corr]))
        if self.ancillary is not None:
            rows.append((names.ancillary, self.ancillary.describe(), self.sources[names.ancillary]))
        return pd.DataFrame(rows, columns=["Parameter", "Prior", "Source"])


def _fmt(v) -> str:
    a = np.asarray(v, dtype=float)
    if a.size == 1:
        return f"{float(a.ravel()[0]):.4g}"
    return "[" + ", ".join(f"{x:.4g}" for x in a.ravel()) + "]"


# ---- validation of a user's distribution ---------------------------------------------------------
def _check_dist(key: str, value) -> None:
    from pymc.distributions.continuous import FlatRV, HalfFlatRV
    from pytensor.graph.basic import Variable
    from pytensor.tensor.random.op import RandomVariable

    try:
        from pymc.distributions.distribution import SymbolicRandomVariable
    except ImportError:  # pragma: no cover
        SymbolicRandomVariable = RandomVariable

    if not isinstance(value, Variable) or value.owner is None:
        raise InputTypeError(
            f"priors['{key}']: expected a PyMC distribution made with .dist(), e.g. "
            f"pm.Normal.dist(0, 2.5); got {type(value).__name__}"
        )
    op = value.owner.op
    if isinstance(op, (FlatRV, HalfFlatRV)):
        raise InputError(
            f"priors['{key}']: improper flat priors are not allowed (the posterior may not exist and "
            "model comparison is undefined); give a proper prior such as pm.Normal.dist(0, 10)"
        )
    if not isinstance(op, (RandomVariable, SymbolicRandomVariable)):
        raise InputTypeError(
            f"priors['{key}']: expected a PyMC distribution made with .dist(), e.g. "
            f"pm.Normal.dist(0, 2.5); got an expression ({op})"
        )
    if value.name:
        raise InputError(
            f"priors['{key}']: '{value.name}' is a model variable; pass an unnamed distribution made "
            "with .dist(), e.g. pm.Normal.dist(0, 2.5)"
        )


def _shape_of(value) -> tuple[int, ...]:
    shape = value.type.shape
    if all(s is not None for s in shape):
        return tuple(int(s) for s in shape)
    return tuple(int(s) for s in value.shape.eval())  # pragma: no cover - symbolic sizes only


def _resized(value, shape: tuple[int, ...]):
    from pymc.distributions.shape_utils import change_dist_size

    return change_dist_size(value, new_size=shape)  # a new node, also when the shape is the same


def _check_shape(key: str, value, allowed: list[tuple[int, ...]], what: str) -> None:
    shape = _shape_of(value)
    if shape not in allowed:
        opts = " or ".join("a scalar" if s == () else f"shape {s}" for s in allowed)
        raise InputError(f"priors['{key}']: shape {shape} does not fit {what}; give {opts}")


def _check_positive(key: str, value, what: str = "a standard deviation") -> None:
    import pymc as pm

    ndim_supp = getattr(value.owner.op, "ndim_supp", 0)
    if ndim_supp:
        raise InputError(f"priors['{key}']: expected a univariate distribution, got a multivariate one")
    # the log-density at negative values from -1e-8 to -1e8, and 200 draws: -inf at each and all
    # draws positive for a prior on positive values (evaluating at -1 only let Uniform(-0.5, 2) and
    # Uniform(-3, -2) through)
    from pymc.distributions.shape_utils import change_dist_size

    shape = _shape_of(value)
    grid = -np.logspace(-8, 8, 65)
    points = np.broadcast_to(grid.reshape((-1,) + (1,) * len(shape)), grid.shape + shape)
    many = change_dist_size(value, new_size=grid.shape, expand=True)
    logp = pm.logp(many, points).eval(mode="FAST_COMPILE")  # (Python: no backend compile)
    draws = pm.draw(many, draws=4, random_seed=0, mode="FAST_COMPILE")  # 4 x 65 draws
    if np.any(np.asarray(logp) != -np.inf) or np.any(np.asarray(draws) <= 0):
        raise InputError(
            f"priors['{key}']: {what} needs a prior on positive values, e.g. "
            "pm.HalfNormal.dist(1) or pm.Exponential.dist(1)"
        )


def _lkj_eta(key: str, value, q: int) -> float:
    if type(value.owner.op).__name__ != "LKJCorrRV":
        raise InputError(
            f"priors['{key}']: correlations take an LKJ prior, e.g. pm.LKJCorr.dist(n={q}, eta=2)"
        )
    _, _, n, eta = value.owner.inputs
    n = int(np.asarray(n.eval()))
    if n != q:
        raise InputError(f"priors['{key}']: LKJCorr has n={n} but the term has {q} coefficients; use n={q}")
    eta = float(np.asarray(eta.eval()))
    if not eta > 0:
        raise InputError(f"priors['{key}']: the LKJ shape eta must be positive, got {eta}")
    return eta


# ---- defaults ------------------------------------------------------------------------------------
_MEAN_SCALED = ("gamma", "inverse_gaussian", "negative_binomial")


def _response_scale(design, dist, link) -> float:
    """The unit s_y of the linear predictor (module docstring)."""
    if dist.name == "normal" and link.name == "identity":
        s = float(np.std(design.y))
        return s if s > 0 else 1.0
    if dist.name in _MEAN_SCALED:
        m = _mean_response(design, dist)
        with np.errstate(all="ignore"):
            mu_eta = float(np.ravel(link.mu_eta(np.atleast_1d(link.link_np(np.asarray(m)))))[0])
            s = abs(m / mu_eta)
        return s if np.isfinite(s) and s > 0 else 1.0
    return 1.0


def _mean_response(design, dist) -> float:
    """Mean response on MATLAB's scale, kept inside the family's range (MATLAB's PL start rule)."""
    w = design.weights
    if dist.name == "binomial":
        n = w * design.binomial_size
        return float((np.sum(n * design.y) + 0.5) / (np.sum(n) + 1))
    if dist.name in ("poisson", "negative_binomial"):
        return float((np.sum(w * design.y) + 0.25) / np.sum(w))
    return float(np.average(design.y, weights=w))


def _col_sd(x: np.ndarray) -> float:
    return float(np.std(x))


def default_priors(design, dist, link, names: ModelNames) -> tuple[Prior, list[Prior], Prior | None]:
    """(beta vector prior, per-term SD priors, sigma or nb_theta prior) by the module docstring's rules."""
    X = design.X
    s_y = _response_scale(design, dist, link)
    sds = np.array([_col_sd(X[:, j]) for j in range(X.shape[1])])
    const = sds <= 1e-12 * np.maximum(1.0, np.abs(X).max(axis=0))
    mu = np.zeros(X.shape[1])
    sigma = np.where(const, SCALE * s_y, SCALE * s_y / np.where(const, 1.0, sds))
    if const.any():
        with np.errstate(all="ignore"):
            m0 = float(link.link_np(np.asarray(_mean_response(design, dist)))) - float(np.mean(design.offset))
        if not np.isfinite(m0):
            m0 = 0.0
        xbar = X.mean(axis=0)
        widen = float(np.sum((sigma[~const] * xbar[~const]) ** 2))
        j0 = int(np.flatnonzero(const)[0])
        mu[j0] = m0 / float(X[0, j0]) if X[0, j0] != 0 else 0.0
        sigma[j0] = np.sqrt((SCALE * s_y) ** 2 + widen) / abs(float(X[0, j0]) or 1.0)
        for j in np.flatnonzero(const)[1:]:  # further constant columns: centred at 0
            sigma[j] = SCALE * s_y
    beta = Prior("Normal", {"mu": mu, "sigma": sigma})
    sd_priors = []
    for term in design.terms:
        tsd = np.array([_col_sd(term.T[:, k]) for k in range(term.q_r)])
        scale = np.where(tsd > 1e-12, SCALE * s_y / np.where(tsd > 1e-12, tsd, 1.0), SCALE * s_y)
        sd_priors.append(Prior("HalfNormal", {"sigma": scale}))
    anc_prior = None
    if dist.has_dispersion:
        with np.errstate(all="ignore"):
            # v at "mean y" as for the intercept (the weighted mean for gamma and inverse Gaussian)
            s = float(np.std(design.y) / np.sqrt(dist.variance(np.asarray(_mean_response(design, dist)))))
        anc_prior = Prior("HalfStudentT", {"nu": SIGMA_NU, "sigma": s if np.isfinite(s) and s > 0 else 1.0})
    elif dist.has_ancillary:  # negative binomial's theta
        anc_prior = Prior("InverseGamma", dict(NB_THETA_PRIOR))
    return beta, sd_priors, anc_prior


# ---- resolution ------------------------------------------------------------------------------------
def _key_map(names: ModelNames) -> dict[str, tuple[str, int | None]]:
    keys: dict[str, tuple[str, int | None]] = {"beta": ("beta", None)}
    for j, c in enumerate(names.coef):
        keys[f"beta[{c}]"] = ("coef", j)
        keys.setdefault(c, ("coef", j))
    for r, tn in enumerate(names.terms):
        keys[tn.sd] = ("sd", r)
        if tn.q > 1:
            keys[tn.corr] = ("corr", r)
    if names.ancillary is not None:
        keys[names.ancillary] = ("ancillary", None)
    return keys


def resolve_priors(design, dist, link, names: ModelNames, priors: Mapping | None) -> PriorSet:
    """Defaults, then the user's overrides, each validated before any sampling."""
    if priors is None:
        priors = {}
    if not isinstance(priors, Mapping):
        raise InputTypeError(
            f"priors: expected a dict of parameter name -> PyMC distribution, got {type(priors).__name__}"
        )
    beta, sd_priors, anc_prior = default_priors(design, dist, link, names)
    p = len(names.coef)
    sources = {f"beta[{c}]": "default" for c in names.coef}
    for tn in names.terms:
        sources[tn.sd] = "default"
        if tn.q > 1:
            sources[tn.corr] = "default"
    if names.ancillary is not None:
        sources[names.ancillary] = "default"
    etas: list[float | None] = [DEFAULT_LKJ_ETA if tn.q > 1 else None for tn in names.terms]
    own: dict[int, Prior] = {}
    keys = _key_map(names)
    named: dict[tuple[str, int | None], str] = {}  # parameter -> the key that set it
    for key, value in priors.items():
        if not isinstance(key, str) or key not in keys:
            corr_hint = ""
            if isinstance(key, str) and key.startswith("corr_"):
                corr_hint = " (a term with one coefficient has no correlation)"
            valid = ", ".join(repr(k) for k in keys if not k.startswith("beta["))
            raise InputError(f"priors: unknown parameter {key!r}{corr_hint}; use one of {valid}")
        kind, idx = keys[key]
        if (kind, idx) in named:
            raise InputError(
                f"priors: {named[kind, idx]!r} and {key!r} name the same parameter; give one of them"
            )
        named[kind, idx] = key
        _check_dist(key, value)
        if kind == "beta":
            _check_shape(key, value, [(), (p,)], f"the {p} fixed-effects coefficients")
            beta = Prior(user=value)
            for c in names.coef:
                if sources[f"beta[{c}]"] == "default":
                    sources[f"beta[{c}]"] = "user"
        elif kind == "coef":
            _check_shape(key, value, [()], f"coefficient '{names.coef[idx]}'")
            own[idx] = Prior(user=value)
            sources[f"beta[{names.coef[idx]}]"] = "user"
        elif kind == "sd":
            q = names.terms[idx].q
            _check_shape(key, value, [(), (q,)] if q > 1 else [(), (1,)], f"the {q} SD(s) of the term")
            _check_positive(key, value)
            sd_priors[idx] = Prior(user=value)
            sources[key] = "user"
        elif kind == "corr":
            etas[idx] = _lkj_eta(key, value, names.terms[idx].q)
            sources[key] = "user"
        else:
            _check_shape(key, value, [()], f"{key} (a scalar)")
            _check_positive(key, value, "sigma" if key == "sigma" else "theta")
            anc_prior = Prior(user=value)
            sources[key] = "user"
    shared = tuple(j for j in range(p) if j not in own)
    if own and beta.user is not None and _shape_of(beta.user) == (p,):
        raise InputError(
            "priors['beta']: a prior of shape (p,) cannot be combined with per-coefficient priors; "
            "give 'beta' as a scalar distribution"
        )
    if beta.user is None and len(shared) < p:
        beta = beta.subset(np.array(shared, dtype=int))
    return PriorSet(beta, shared, own, tuple(sd_priors), tuple(etas), anc_prior, sources)
