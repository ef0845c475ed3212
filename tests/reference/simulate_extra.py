"""Simulate the data of the stop-33 reference cases (tests/test_extra_reference.py), combinations
the earlier reference scripts did not cover; the numeric hunt compared them with R first.

Run from the repository root::

    .venv/bin/python tests/reference/simulate_extra.py

It writes, with fixed seeds, the CSV files ``tests/reference/extra_reference.R`` reads:

* ``nb_slope_crossed.csv``: 30 g levels x 10 h levels, 2 rows per cell (600 rows), x ~ N(0, 1),
  log mu = 1 + 0.4 x + a0_g + a1_g x + c_h, sd(a0) = 0.5, sd(a1) = 0.3, corr 0.4, sd(c) = 0.3,
  y ~ NB2(mu, theta = 3).
* ``poisson_many_levels.csv``: 600 levels x 2 rows, x ~ N(0, 1), log mu = 0.2 + 0.4 x + b,
  b ~ N(0, 0.8^2) (where glmer's log-likelihood is 2.2e-5 low).
* ``normal_log.csv``: 30 groups x 10 rows, x ~ N(0, 1), y = exp(1.5 + 0.3 x + b) + e (all > 0),
  b ~ N(0, 0.3^2), e ~ N(0, 0.5^2).
* ``poisson_offset_agq.csv``: 50 groups x 4 rows, x ~ N(0, 1), exposure t ~ U(0.5, 3),
  log mu = log t - 0.5 + 0.5 x + b, b ~ N(0, 0.8^2).
"""

from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).parent / "data"


def nb_slope_crossed() -> pd.DataFrame:
    rng = np.random.default_rng(3301)
    g = np.repeat(np.arange(30), 20)
    h = np.tile(np.repeat(np.arange(10), 2), 30)
    x = rng.normal(size=600)
    cov = np.array([[0.25, 0.4 * 0.5 * 0.3], [0.4 * 0.5 * 0.3, 0.09]])
    a = rng.multivariate_normal([0.0, 0.0], cov, size=30)
    c = rng.normal(0.0, 0.3, 10)
    mu = np.exp(1 + 0.4 * x + a[g, 0] + a[g, 1] * x + c[h])
    y = rng.negative_binomial(3.0, 3.0 / (3.0 + mu))
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{v:02d}" for v in g], "h": [f"h{v}" for v in h]})


def poisson_many_levels() -> pd.DataFrame:
    rng = np.random.default_rng(3302)
    g = np.repeat(np.arange(600), 2)
    x = rng.normal(size=1200)
    b = rng.normal(0.0, 0.8, 600)
    y = rng.poisson(np.exp(0.2 + 0.4 * x + b[g]))
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{v:03d}" for v in g]})


def normal_log() -> pd.DataFrame:
    rng = np.random.default_rng(3303)
    g = np.repeat(np.arange(30), 10)
    x = rng.normal(size=300)
    b = rng.normal(0.0, 0.3, 30)
    y = np.exp(1.5 + 0.3 * x + b[g]) + rng.normal(0.0, 0.5, 300)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{v:02d}" for v in g]})


def poisson_offset_agq() -> pd.DataFrame:
    rng = np.random.default_rng(3304)
    g = np.repeat(np.arange(50), 4)
    x = rng.normal(size=200)
    t = rng.uniform(0.5, 3.0, 200)
    b = rng.normal(0.0, 0.8, 50)
    y = rng.poisson(t * np.exp(-0.5 + 0.5 * x + b[g]))
    return pd.DataFrame({"y": y, "x": x, "t": t, "g": [f"g{v:02d}" for v in g]})


if __name__ == "__main__":
    for make in (nb_slope_crossed, poisson_many_levels, normal_log, poisson_offset_agq):
        make().to_csv(OUT / f"{make.__name__}.csv", index=False)
