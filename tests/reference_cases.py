"""The lme4/glmmTMB reference cases: how each is fitted in Python, and the committed R values.

``tests/reference/make_reference.R`` fits the same models in R (lme4 at tight tolerances, lme4
defaults, glmmTMB) and writes ``tests/reference/lme4_reference.json``.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

REF = Path(__file__).parent / "reference"


@cache
def reference() -> dict:
    return json.loads((REF / "lme4_reference.json").read_text())


def _data(name: str) -> pd.DataFrame:
    return pd.read_csv(REF / "data" / name)


def _mfr() -> pd.DataFrame:
    d = _data("mfr.csv")
    d["supplier"] = pd.Categorical(d["supplier"], categories=["C", "B", "A"])
    return d


def gamma_reciprocal_data() -> pd.DataFrame:
    """Gamma responses (shape 5) about means 1 / (0.5 e^b), b ~ N(0, 0.5^2), 20 levels of 10 rows,
    and an unused covariate x (a bug hunt's data: PL diverging from mu_start, random() draws with
    eta <= 0 under the reciprocal link)."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(20), 10)
    x = rng.normal(size=200)
    mu = 1 / (0.5 * np.exp(rng.normal(scale=0.5, size=20))[g])
    return pd.DataFrame({"y": rng.gamma(5, mu / 5), "x": x, "g": g.astype(str)})


def inverse_gaussian_data(
    seed: int, groups: int, per: int, beta: tuple[float, float], sd: float, lam: float
) -> pd.DataFrame:
    """y ~ inverse Gaussian(mean exp(beta0 + beta1 x + b_g), shape lam), b_g ~ N(0, sd^2), ``per``
    rows in each of ``groups`` levels 'g00', 'g01', ... (x, b, y drawn in that order)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per)
    x = rng.normal(size=g.size)
    b = rng.normal(0, sd, groups)
    y = rng.wald(np.exp(beta[0] + beta[1] * x + b[g]), lam)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i:02d}" for i in g]})


def _cbpp() -> pd.DataFrame:
    d = _data("cbpp.csv")
    d["period"] = d["period"].astype(str)
    return d


def _grouse() -> pd.DataFrame:
    d = _data("grouseticks.csv")
    d["YEAR"] = d["YEAR"].astype(str)
    return d


def _poisson_offset() -> pd.DataFrame:
    return _data("poisson_offset.csv")


# case -> (data loader, formula, keyword arguments for fitglme, reference key)
CASES: dict[str, tuple] = {
    "mfr_poisson_effects": (
        _mfr,
        "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)",
        {"distribution": "Poisson", "dummy_var_coding": "effects"},
        "lme4",
    ),
    "cbpp_binomial": (
        _cbpp,
        "incidence ~ period + (1|herd)",
        {"distribution": "binomial", "binomial_size": "size"},
        "lme4",
    ),
    "cbpp_binomial_approx": (
        _cbpp,
        "incidence ~ period + (1|herd)",
        {"distribution": "binomial", "binomial_size": "size", "fit_method": "ApproximateLaplace"},
        "lme4",
    ),
    "cbpp_probit": (
        _cbpp,
        "incidence ~ period + (1|herd)",
        {"distribution": "binomial", "binomial_size": "size", "link": "probit"},
        "glmmTMB",
    ),
    "cbpp_cloglog": (
        _cbpp,
        "incidence ~ period + (1|herd)",
        {"distribution": "binomial", "binomial_size": "size", "link": "comploglog"},
        "glmmTMB",
    ),
    "poisson_offset_interaction": (
        _poisson_offset,
        "y ~ x*trt + (1|site)",
        {"distribution": "poisson", "offset": "__log_exposure__"},
        "lme4",
    ),
    "grouseticks_nested_crossed": (
        _grouse,
        "TICKS ~ YEAR + cHEIGHT + (1|LOCATION/BROOD) + (1|INDEX)",
        {"distribution": "poisson"},
        "lme4",
    ),
    "sleepstudy_lmm": (
        lambda: _data("sleepstudy.csv"),
        "Reaction ~ Days + (Days|Subject)",
        {},
        "lme4",
    ),
    "sleepstudy_uncorrelated": (
        lambda: _data("sleepstudy.csv"),
        "Reaction ~ Days + (1|Subject) + (0 + Days|Subject)",
        {},
        "lme4",
    ),
    "binary_slope": (
        lambda: _data("binary_slope.csv"),
        "y ~ x + (1 + x|subject)",
        {"distribution": "binomial"},
        "lme4",
    ),
    # an observation-level effect on 0/1 data: fitted by lme4 and glmmTMB (SD 0.078), once refused
    # as complete separation by the random effects
    "binary_olre": (
        lambda: _data("binary_slope.csv").assign(obs=lambda d: np.arange(len(d))),
        "y ~ x + (1|obs)",
        {"distribution": "binomial"},
        "lme4",
    ),
}


def _scaled_sleepstudy(factor: float):
    def load() -> pd.DataFrame:
        d = _data("sleepstudy.csv")
        d["Reaction"] = d["Reaction"] * factor  # as make_reference.R: the same double product
        return d

    return load


def _extreme(link: str):
    return lambda: _data(f"binomial_extreme_{link}.csv")


def _log_area(data: pd.DataFrame) -> np.ndarray:
    return np.log(data["area"].to_numpy())


# Numerically hard cases (issue 6, "trustworthy fits"): large counts, a response scaled by
# 1e-6 / 1e6, non-logit binomial links with fitted probabilities down to ~1e-12 and up to
# ~1 - 1e-12, and offsets in the formula. Same layout as CASES (an ``offset`` may be a callable of
# the data). They are kept out of CASES so that test_reference_lme4.py does not run them; they
# have their own, tighter tests in test_hard_numerics.py. Data: tests/reference/simulate_hard.py.
# Authoritative reference ("lme4", "glmmTMB" or "exact_laplace", a key of the case's JSON entry):
# lme4 at tight settings for the normal models, the ~1e4 counts and the offsets (lme4, glmmTMB
# and the exact Laplace check agree to <= 5e-10 in logLik there). "exact_laplace" is the Laplace
# log-likelihood that make_reference.R computes itself without cancellation and maximises: it is
# the reference for the ~5e8 counts (glmer fails outright; glmmTMB's y log(mu) - mu - lgamma(y+1)
# is 1.3e-4 off in logLik) and for the non-canonical links (glmer uses expected-information
# weights, not the exact Laplace approximation; glmmTMB agrees with the exact value to < 4e-9 in
# logLik, but its optimizer leaves the probit-trials intercept 5e-5 relative short).
HARD_CASES: dict[str, tuple] = {
    "poisson_large_1e4": (
        lambda: _data("poisson_large.csv"),
        "y_1e4 ~ 1 + x + (1|g)",
        {"distribution": "poisson"},
        "lme4",
    ),
    "poisson_large_1e9": (
        lambda: _data("poisson_large.csv"),
        "y_1e9 ~ 1 + x + (1|g)",
        {"distribution": "poisson"},
        "exact_laplace",
    ),
    "sleepstudy_times_1em6": (
        _scaled_sleepstudy(1e-6),
        "Reaction ~ 1 + Days + (1 + Days|Subject)",
        {},
        "lme4",
    ),
    "sleepstudy_times_1e6": (
        _scaled_sleepstudy(1e6),
        "Reaction ~ 1 + Days + (1 + Days|Subject)",
        {},
        "lme4",
    ),
    "poisson_offset_formula": (
        _poisson_offset,
        "y ~ x*trt + offset(log(exposure)) + (1|site)",
        {"distribution": "poisson"},
        "lme4",
    ),
    "poisson_two_offsets": (
        lambda: _data("poisson_two_offsets.csv"),
        "y ~ x + offset(log(exposure)) + (1|g)",
        {"distribution": "poisson", "offset": _log_area},
        "lme4",
    ),
}
for _link, _name in (("probit", "probit"), ("cloglog", "comploglog"), ("loglog", "loglog")):
    HARD_CASES[f"binomial_extreme_{_link}_bernoulli"] = (
        _extreme(_link),
        "y ~ x + (1|g)",
        {"distribution": "binomial", "link": _name},
        "exact_laplace",
    )
    HARD_CASES[f"binomial_extreme_{_link}_trials"] = (
        _extreme(_link),
        "k ~ x + (1|g)",
        {"distribution": "binomial", "link": _name, "binomial_size": "n"},
        "exact_laplace",
    )


def case_spec(name: str) -> tuple:
    return CASES[name] if name in CASES else HARD_CASES[name]


def fit_case(name: str):
    import ppl_glmm

    loader, formula, kwargs, _ = case_spec(name)
    data = loader()
    kwargs = dict(kwargs)
    if kwargs.get("offset") == "__log_exposure__":
        kwargs["offset"] = np.log(data["exposure"].to_numpy())
    elif callable(kwargs.get("offset")):
        kwargs["offset"] = kwargs["offset"](data)
    return ppl_glmm.fitglme(data, formula, **kwargs)


def sig_close(actual, expected, digits: int = 4) -> bool:
    """True when ``actual`` agrees with ``expected`` to ``digits`` significant digits."""
    actual, expected = np.atleast_1d(np.asarray(actual, float)), np.atleast_1d(np.asarray(expected, float))
    scale = 10.0 ** (np.floor(np.log10(np.maximum(np.abs(expected), 1e-300))) - (digits - 1))
    return bool(np.all(np.abs(actual - expected) <= 0.5 * scale))


def ranef_blocks(model, R: dict):
    """Per random term and coefficient: (group key, coefficient name, the model's {level: estimate},
    lme4's {level: value}); the JSON names a repeated group's second term ``group.1``."""
    re = model.random_effects()
    seen: set = set()
    start = 0
    for term in model._ws.design.terms:  # one block per term, in formula order
        key = term.group if term.group not in seen else f"{term.group}.1"
        seen.add(term.group)
        block = re.iloc[start : start + term.size]
        start += term.size
        ref = R["ranef"][key]
        for name1, sub in block.groupby("Name", sort=False):
            expected = dict(zip(ref["levels"], ref["values"][ref["names"].index(name1)]))
            yield key, name1, dict(zip(sub["Level"], sub["Estimate"])), expected
