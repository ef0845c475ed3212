"""Simulated data and ML fits for the Bayesian tests of the gamma, inverse Gaussian and negative
binomial families: 15 groups x 6 observations, log-mean 0.8 + 0.4 x + b_g (+ a random slope for
the gamma case), gamma shape 4 (sigma = 0.5), inverse Gaussian lambda 8, NB theta 2."""

from functools import cache

import numpy as np
import pandas as pd

# name -> (formula, distribution, link)
FAMILY_CASES = {
    "gamma_log_slope": ("ygam ~ x + (1 + x|g)", "gamma", "log"),
    "gamma_reciprocal": ("ygam ~ x + (1|g)", "gamma", None),
    "inverse_gaussian_log": ("yig ~ x + (1|g)", "inverse_gaussian", "log"),
    "negative_binomial_log": ("k ~ x + (1|g)", "negative_binomial", None),
}


@cache
def family_data(seed: int = 20261203, groups: int = 15, per_group: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per_group)
    x = rng.normal(size=g.size)
    b0 = rng.normal(0, 0.4, groups)
    b1 = rng.normal(0, 0.25, groups)
    mu = np.exp(0.8 + 0.4 * x + b0[g])
    mu_slope = np.exp(0.8 + (0.4 + b1[g]) * x + b0[g])
    return pd.DataFrame(
        {
            "g": [f"g{i:02d}" for i in g],
            "x": x,
            "ygam": rng.gamma(4.0, mu_slope / 4.0),
            "yig": rng.wald(mu, 8.0),
            "k": rng.negative_binomial(2.0, 2.0 / (2.0 + mu)),
        }
    )


@cache
def family_fit(name: str):
    """The ML (Laplace) fit of case ``name`` (cached for the session)."""
    import ppl_glmm

    formula, dist, link = FAMILY_CASES[name]
    return ppl_glmm.fitglme(family_data(), formula, distribution=dist, link=link)
