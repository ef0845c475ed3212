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
}


def fit_case(name: str):
    import ppl_glmm

    loader, formula, kwargs, _ = CASES[name]
    data = loader()
    kwargs = dict(kwargs)
    if kwargs.get("offset") == "__log_exposure__":
        kwargs["offset"] = np.log(data["exposure"].to_numpy())
    return ppl_glmm.fitglme(data, formula, **kwargs)


def sig_close(actual, expected, digits: int = 4) -> bool:
    """True when ``actual`` agrees with ``expected`` to ``digits`` significant digits."""
    actual, expected = np.atleast_1d(np.asarray(actual, float)), np.atleast_1d(np.asarray(expected, float))
    scale = 10.0 ** (np.floor(np.log10(np.maximum(np.abs(expected), 1e-300))) - (digits - 1))
    return bool(np.all(np.abs(actual - expected) <= 0.5 * scale))
