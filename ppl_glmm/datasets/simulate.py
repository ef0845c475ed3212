"""Generators of the simulated data sets (run as a script to regenerate the CSV files).

``python -m ppl_glmm.datasets.simulate`` rewrites ``mfr.csv`` beside this module and the simulated
reference data in ``tests/reference/data`` (when run from a source checkout).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd


def simulate_mfr(seed: int = 20261127) -> pd.DataFrame:
    """Simulate the mfr-like data set documented in :func:`ppl_glmm.datasets.load_mfr`."""
    rng = np.random.default_rng(seed)
    n_factory, n_batch = 20, 5
    factory = np.repeat(np.arange(1, n_factory + 1), n_batch)
    newprocess = (factory <= 10).astype(int)
    time = np.round(3 + rng.normal(0, 0.12, factory.size), 3)
    temp = np.round(20 + rng.normal(0, 0.10, factory.size), 3)
    supplier = rng.choice(["A", "B", "C"], size=factory.size)
    time_dev = np.round(np.abs(time - 3), 3)
    temp_dev = np.round(np.abs(temp - 20), 3)
    b = rng.normal(0, 0.40, n_factory)[factory - 1]
    s = pd.Series(supplier).map({"C": -0.07, "B": 0.07, "A": 0.0}).to_numpy()
    eta = 1.45 - 0.35 * newprocess - 0.10 * time_dev - 0.25 * temp_dev + s + b
    defects = rng.poisson(np.exp(eta))
    return pd.DataFrame(
        {
            "factory": factory,
            "newprocess": newprocess,
            "time": time,
            "temp": temp,
            "supplier": supplier,
            "defects": defects,
            "time_dev": time_dev,
            "temp_dev": temp_dev,
        }
    )


def simulate_poisson_offset(seed: int = 11) -> pd.DataFrame:
    """Counts with exposure: log mu = log(exposure) + 0.3 + 0.5 x - 0.4 trt + 0.3 x:trt + b_site."""
    rng = np.random.default_rng(seed)
    n_site, per = 30, 8
    site = np.repeat([f"s{i:02d}" for i in range(n_site)], per)
    x = np.round(rng.normal(0, 1, site.size), 4)
    trt = rng.choice(["ctl", "trt"], size=site.size)
    exposure = np.round(rng.uniform(0.5, 3.0, site.size), 3)
    b = rng.normal(0, 0.5, n_site)[np.repeat(np.arange(n_site), per)]
    t = (trt == "trt").astype(float)
    eta = np.log(exposure) + 0.3 + 0.5 * x - 0.4 * t + 0.3 * x * t + b
    y = rng.poisson(np.exp(eta))
    return pd.DataFrame({"y": y, "x": x, "trt": trt, "exposure": exposure, "site": site})


def simulate_binary_slope(seed: int = 7) -> pd.DataFrame:
    """0/1 responses with a correlated random intercept and slope per subject (logit link)."""
    rng = np.random.default_rng(seed)
    n_subj, per = 40, 15
    subj = np.repeat(np.arange(n_subj), per)
    x = np.round(rng.uniform(-1, 1, subj.size), 4)
    cov = np.array([[0.8**2, 0.4 * 0.8 * 0.6], [0.4 * 0.8 * 0.6, 0.6**2]])
    re = rng.multivariate_normal([0, 0], cov, n_subj)[subj]
    eta = -0.3 + 1.0 * x + re[:, 0] + re[:, 1] * x
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    return pd.DataFrame({"y": y, "x": x, "subject": [f"id{s:02d}" for s in subj]})


def main() -> None:
    here = Path(__file__).parent
    simulate_mfr().to_csv(here / "mfr.csv", index=False)
    ref = Path.cwd() / "tests" / "reference" / "data"
    if ref.is_dir():
        simulate_mfr().to_csv(ref / "mfr.csv", index=False)
        simulate_poisson_offset().to_csv(ref / "poisson_offset.csv", index=False)
        simulate_binary_slope().to_csv(ref / "binary_slope.csv", index=False)
    else:
        print("tests/reference/data not found: only mfr.csv written", file=sys.stderr)


if __name__ == "__main__":
    main()
