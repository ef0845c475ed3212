"""Simulate the data of the numerically hard reference cases (issue 6, "trustworthy fits").

Run from the repository root::

    python tests/reference/simulate_hard.py

It writes, with fixed seeds (numpy's default_rng), the CSV files that
``tests/reference/make_reference.R`` reads for the hard cases:

* ``poisson_large.csv``: 30 groups x 8 rows, ``y_1e4`` and ``y_1e9`` Poisson counts with
  log mu = log(1e4) + 0.3 x + b and log(5e8) + 0.3 x + b (b ~ N(0, 0.4^2) and N(0, 0.3^2)).
* ``binomial_extreme_{probit,cloglog,loglog}.csv``: 40 groups x 12 rows, a strong covariate ``x``
  so that the success probability runs from about 1e-12 to 1 - 1e-12, with a band of overlap in the
  middle (no complete separation); ``y`` is Bernoulli, ``k`` is successes out of ``n`` = 20.
* ``poisson_two_offsets.csv``: 30 groups x 8 rows, log mu = log(exposure) + log(area) + 0.2 + 0.5 x + b.

Values are rounded (x to 4 decimals, exposure/area to 3) so that R and pandas read the same doubles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

OUT = Path(__file__).parent / "data"


def _groups(n_group: int, per: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.repeat(np.arange(n_group), per)
    return idx, np.array([f"g{i + 1:02d}" for i in idx])


def poisson_large(seed: int = 6001) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx, g = _groups(30, 8)
    x = np.round(rng.normal(0, 1, idx.size), 4)
    b4 = rng.normal(0, 0.4, 30)[idx]
    b9 = rng.normal(0, 0.3, 30)[idx]
    y4 = rng.poisson(np.exp(np.log(1e4) + 0.3 * x + b4))
    y9 = rng.poisson(np.exp(np.log(5e8) + 0.3 * x + b9))
    return pd.DataFrame({"y_1e4": y4, "y_1e9": y9, "x": x, "g": g})


# success probability as a function of the linear predictor
_INV = {
    "probit": lambda eta: stats.norm.cdf(eta),
    "cloglog": lambda eta: -np.expm1(-np.exp(eta)),
    "loglog": lambda eta: np.exp(-np.exp(-eta)),
}
# (intercept, slope): x ~ U(-2.5, 2.5) spans p ~ 1e-12 .. 1 - 1e-12 under each link
_COEF = {"probit": (0.0, 2.6), "cloglog": (-12.0, 6.0), "loglog": (12.0, 6.0)}


def binomial_extreme(link: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx, g = _groups(40, 12)
    x = np.round(rng.uniform(-2.5, 2.5, idx.size), 4)
    b = rng.normal(0, 0.5, 40)[idx]
    b0, b1 = _COEF[link]
    p = _INV[link](b0 + b1 * x + b)
    y = rng.binomial(1, p)
    k = rng.binomial(20, p)
    return pd.DataFrame({"y": y, "k": k, "n": 20, "x": x, "g": g})


def poisson_two_offsets(seed: int = 6005) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx, g = _groups(30, 8)
    x = np.round(rng.normal(0, 1, idx.size), 4)
    exposure = np.round(rng.uniform(0.5, 3.0, idx.size), 3)
    area = np.round(rng.uniform(0.2, 5.0, idx.size), 3)
    b = rng.normal(0, 0.5, 30)[idx]
    y = rng.poisson(np.exp(np.log(exposure) + np.log(area) + 0.2 + 0.5 * x + b))
    return pd.DataFrame({"y": y, "x": x, "exposure": exposure, "area": area, "g": g})


def main() -> None:
    poisson_large().to_csv(OUT / "poisson_large.csv", index=False)
    # loglog: seed 6004 gave a Bernoulli fit with the random-intercept SD at 0 (a boundary
    # optimum, not what these cases test); 6110 was the first seed of 6100.. with SD estimates
    # well inside (0.48 Bernoulli, 0.45 trials) and probabilities down to ~1e-11
    for link, seed in (("probit", 6002), ("cloglog", 6003), ("loglog", 6110)):
        binomial_extreme(link, seed).to_csv(OUT / f"binomial_extreme_{link}.csv", index=False)
    poisson_two_offsets().to_csv(OUT / "poisson_two_offsets.csv", index=False)


if __name__ == "__main__":
    main()
