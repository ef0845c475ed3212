"""Simulate the data of the issue 7 reference cases (gamma, inverse Gaussian, negative binomial,
weighted LMM, adaptive quadrature) and of the R family benchmarks.

Run from the repository root::

    .venv/bin/python tests/reference/simulate_families.py

It writes, with fixed seeds (numpy's default_rng, one seed per file), the CSV files that
``tests/reference/make_reference_families.R`` and ``benchmarks/families_bench.R`` read:

* ``gamma_log.csv``: 40 groups x 8 rows, x ~ N(0, 1), log mu = 1 + 0.5 x + b, b ~ N(0, 0.4^2),
  y ~ Gamma(shape 3, mean mu).
* ``gamma_weights.csv``: the x, g and b of gamma_log.csv plus prior weights w in {1, 2, 3};
  y ~ Gamma(shape 3 w, mean mu) (MATLAB's rule Var(y | b) = sigma^2 mu^2 / w with sigma^2 = 1/3).
* ``gamma_inverse.csv``: 50 groups x 10 rows, x ~ U(-2, 2), 1/mu = 0.5 + 0.1 x + b,
  b ~ N(0, 0.05^2), shape 8 (eta stays in about [0.2, 0.8]).
* ``gamma_reciprocal_offset.csv``: 10 groups x 10 rows, x ~ N(0, 1), offset off ~ U(-1, 1),
  1/mu = 1.2 + 0.1 x + b + off, b ~ N(0, 0.1^2), shape 5 (eta in about [0.05, 2.5]; the offset,
  outside the span of X, put the old least-squares start's eta below 0 on some rows).
* ``gamma_slope.csv``: 30 groups x 10 rows, x ~ N(0, 1), log mu = 1 + 0.5 x + b0 + b1 x with
  sd(b0) = 0.4, sd(b1) = 0.2, corr 0.3, shape 5.
* ``invgauss_log.csv``: 30 groups x 10 rows, x ~ N(0, 1), log mu = 0.5 + 0.3 x + b, b ~ N(0, 0.3^2),
  y ~ IG(mu, lambda = 5) (dispersion sigma^2 = 1/lambda = 0.2).
* ``invgauss_canonical.csv``: 40 groups x 10 rows, x ~ U(-2, 2), 1/mu^2 = 1 + 0.2 x + b,
  b ~ N(0, 0.1^2), lambda = 5 (eta stays in about [0.3, 1.7]).
* ``nb_single.csv``: 50 groups x 8 rows, x ~ N(0, 1), log mu = 1 + 0.4 x + b, b ~ N(0, 0.5^2),
  y ~ NB2(mu, theta = 2) (Var = mu + mu^2 / theta).
* ``nb_weights.csv``: the x, g and b of nb_single.csv plus weights w in {1, 2}; the count
  k ~ NB2(w mu, w theta) (the sum of w iid NB2(mu, theta) counts) and y = k / w (their mean).
* ``nb_two_terms.csv``: 40 g levels x 15 h levels, fully crossed (600 rows), x ~ N(0, 1),
  log mu = 1 + 0.4 x + a_g + c_h, a ~ N(0, 0.5^2), c ~ N(0, 0.3^2), theta = 3.
* ``normal_weighted_crossed.csv``: 30 g levels x 20 h levels (600 rows), x ~ N(0, 1),
  y = 2 + 0.5 x + a_g + c_h + e, a ~ N(0, 0.8^2), c ~ N(0, 0.5^2), w ~ U(0.5, 2),
  e ~ N(0, 1 / w) (sigma = 1).
* ``agq_poisson.csv``: 60 groups x 3 rows, x ~ N(0, 1), log mu = 0.5 + 0.5 x + b, b ~ N(0, 1).
* ``agq_bernoulli.csv``: 80 groups x 4 rows, x ~ N(0, 1), logit p = -0.5 + x + b, b ~ N(0, 1.5^2).
* ``pl_binary.csv``: 20 groups x 15 rows, x ~ U(-1, 1), logit p = 0.5 + 0.3 x + b,
  b ~ N(0, 0.3^2), Bernoulli y (fitted with the comploglog link: an MPL case whose early
  pseudo-data LMEs have their variance optimum at zero).
* ``agq_large.csv`` (benchmarks): the agq_bernoulli model with 5000 groups x 4 rows (20,000).
* ``gamma_large.csv`` / ``nb_large.csv`` (benchmarks): 500 groups x 40 rows (20,000), the
  gamma_log / nb_single models.

Values are rounded (x to 4 decimals, w to 3, continuous y to 7 significant digits) so that R and
pandas read the same doubles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).parent / "data"


def _groups(n_group: int, per: int, prefix: str = "g") -> tuple[np.ndarray, np.ndarray]:
    idx = np.repeat(np.arange(n_group), per)
    width = len(str(n_group))
    return idx, np.array([f"{prefix}{i + 1:0{width}d}" for i in idx])


def _signif(y: np.ndarray, digits: int = 7) -> np.ndarray:
    return np.array([float(f"{v:.{digits}g}") for v in y])


def _gamma(rng: np.random.Generator, mu: np.ndarray, shape: np.ndarray | float) -> np.ndarray:
    shape = np.broadcast_to(shape, mu.shape)
    return _signif(rng.gamma(shape, mu / shape))


def _nb2(rng: np.random.Generator, mu: np.ndarray, theta: np.ndarray | float) -> np.ndarray:
    # numpy's negative_binomial(n, p): failures before n successes, mean n (1 - p) / p
    theta = np.broadcast_to(theta, mu.shape)
    return rng.negative_binomial(theta, theta / (theta + mu))


def gamma_log(seed: int = 7001, n_group: int = 40, per: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx, g = _groups(n_group, per)
    x = np.round(rng.normal(0, 1, idx.size), 4)
    b = rng.normal(0, 0.4, n_group)[idx]
    mu = np.exp(1 + 0.5 * x + b)
    y = _gamma(rng, mu, 3.0)
    # weighted variant (same x, g, b): shape 3 w
    w = rng.integers(1, 4, idx.size)
    y_w = _gamma(rng, mu, 3.0 * w)
    return pd.DataFrame({"y": y, "x": x, "g": g, "w": w, "y_w": y_w})


def gamma_inverse(seed: int = 7002) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx, g = _groups(50, 10)
    x = np.round(rng.uniform(-2, 2, idx.size), 4)
    b = rng.normal(0, 0.05, 50)[idx]
    eta = 0.5 + 0.1 * x + b
    assert eta.min() > 0.1
    return pd.DataFrame({"y": _gamma(rng, 1 / eta, 20.0), "x": x, "g": g})


def gamma_reciprocal_offset(seed: int = 7027) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx, g = _groups(10, 10)
    x = np.round(rng.normal(0, 1, idx.size), 4)
    off = np.round(rng.uniform(-1, 1, idx.size), 4)
    b = rng.normal(0, 0.2, 10)[idx]
    eta = 1.2 + 0.1 * x + b + off
    assert eta.min() > 0.05
    return pd.DataFrame({"y": _gamma(rng, 1 / eta, 5.0), "x": x, "off": off, "g": g})


def gamma_slope(seed: int = 7003) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx, g = _groups(30, 10)
    x = np.round(rng.normal(0, 1, idx.size), 4)
    sd = np.array([0.4, 0.2])
    cov = np.diag(sd) @ np.array([[1, 0.3], [0.3, 1]]) @ np.diag(sd)
    b = rng.multivariate_normal([0, 0], cov, 30)[idx]
    mu = np.exp(1 + 0.5 * x + b[:, 0] + b[:, 1] * x)
    return pd.DataFrame({"y": _gamma(rng, mu, 5.0), "x": x, "g": g})


def invgauss(seed: int, canonical: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_group = 40 if canonical else 30
    idx, g = _groups(n_group, 10)
    if canonical:
        x = np.round(rng.uniform(-2, 2, idx.size), 4)
        eta = 1 + 0.2 * x + rng.normal(0, 0.1, n_group)[idx]
        assert eta.min() > 0.1
        mu = 1 / np.sqrt(eta)
    else:
        x = np.round(rng.normal(0, 1, idx.size), 4)
        mu = np.exp(0.5 + 0.3 * x + rng.normal(0, 0.3, n_group)[idx])
    # numpy's wald(mean, scale) is IG(mu, lambda = scale)
    y = _signif(rng.wald(mu, 5.0))
    return pd.DataFrame({"y": y, "x": x, "g": g})


def nb_single(seed: int = 7006, n_group: int = 50, per: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx, g = _groups(n_group, per)
    x = np.round(rng.normal(0, 1, idx.size), 4)
    b = rng.normal(0, 0.5, n_group)[idx]
    mu = np.exp(1 + 0.4 * x + b)
    y = _nb2(rng, mu, 2.0)
    # weighted variant (same x, g, b): k ~ NB2(w mu, w theta), y = k / w
    w = rng.integers(1, 3, idx.size)
    k = _nb2(rng, w * mu, 2.0 * w)
    return pd.DataFrame({"y": y, "x": x, "g": g, "w": w, "k": k, "y_w": k / w})


def nb_two_terms(seed: int = 7007) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    gi, hi = np.meshgrid(np.arange(40), np.arange(15), indexing="ij")
    gi, hi = gi.ravel(), hi.ravel()
    x = np.round(rng.normal(0, 1, gi.size), 4)
    a = rng.normal(0, 0.5, 40)[gi]
    c = rng.normal(0, 0.3, 15)[hi]
    y = _nb2(rng, np.exp(1 + 0.4 * x + a + c), 3.0)
    return pd.DataFrame(
        {"y": y, "x": x, "g": [f"g{i + 1:02d}" for i in gi], "h": [f"h{i + 1:02d}" for i in hi]}
    )


def normal_weighted_crossed(seed: int = 7008) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    gi, hi = np.meshgrid(np.arange(30), np.arange(20), indexing="ij")
    gi, hi = gi.ravel(), hi.ravel()
    x = np.round(rng.normal(0, 1, gi.size), 4)
    w = np.round(rng.uniform(0.5, 2.0, gi.size), 3)
    a = rng.normal(0, 0.8, 30)[gi]
    c = rng.normal(0, 0.5, 20)[hi]
    y = _signif(2 + 0.5 * x + a + c + rng.normal(0, 1, gi.size) / np.sqrt(w))
    return pd.DataFrame(
        {"y": y, "x": x, "w": w, "g": [f"g{i + 1:02d}" for i in gi], "h": [f"h{i + 1:02d}" for i in hi]}
    )


def agq_poisson(seed: int = 7009) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx, g = _groups(60, 3)
    x = np.round(rng.normal(0, 1, idx.size), 4)
    b = rng.normal(0, 1.0, 60)[idx]
    return pd.DataFrame({"y": rng.poisson(np.exp(0.5 + 0.5 * x + b)), "x": x, "g": g})


def agq_bernoulli(seed: int = 7010, n_groups: int = 80, per_group: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx, g = _groups(n_groups, per_group)
    x = np.round(rng.normal(0, 1, idx.size), 4)
    b = rng.normal(0, 1.5, n_groups)[idx]
    p = 1 / (1 + np.exp(-(-0.5 + x + b)))
    return pd.DataFrame({"y": rng.binomial(1, p), "x": x, "g": g})


def pl_binary(seed: int = 7019) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx, g = _groups(20, 15)
    x = np.round(rng.uniform(-1, 1, idx.size), 4)
    b = rng.normal(0, 0.3, 20)[idx]
    p = 1 / (1 + np.exp(-(0.5 + 0.3 * x + b)))
    return pd.DataFrame({"y": rng.binomial(1, p), "x": x, "g": g})


def main() -> None:
    gl = gamma_log()
    gl[["y", "x", "g"]].to_csv(OUT / "gamma_log.csv", index=False)
    gl[["y_w", "x", "g", "w"]].rename(columns={"y_w": "y"}).to_csv(OUT / "gamma_weights.csv", index=False)
    gamma_inverse().to_csv(OUT / "gamma_inverse.csv", index=False)
    gamma_slope().to_csv(OUT / "gamma_slope.csv", index=False)
    gamma_reciprocal_offset().to_csv(OUT / "gamma_reciprocal_offset.csv", index=False)
    invgauss(7004, canonical=False).to_csv(OUT / "invgauss_log.csv", index=False)
    invgauss(7005, canonical=True).to_csv(OUT / "invgauss_canonical.csv", index=False)
    nb = nb_single()
    nb[["y", "x", "g"]].to_csv(OUT / "nb_single.csv", index=False)
    nb[["y_w", "k", "w", "x", "g"]].rename(columns={"y_w": "y"}).to_csv(OUT / "nb_weights.csv", index=False)
    nb_two_terms().to_csv(OUT / "nb_two_terms.csv", index=False)
    normal_weighted_crossed().to_csv(OUT / "normal_weighted_crossed.csv", index=False)
    agq_poisson().to_csv(OUT / "agq_poisson.csv", index=False)
    agq_bernoulli().to_csv(OUT / "agq_bernoulli.csv", index=False)
    pl_binary().to_csv(OUT / "pl_binary.csv", index=False)
    gamma_log(7011, 500, 40)[["y", "x", "g"]].to_csv(OUT / "gamma_large.csv", index=False)
    nb_single(7012, 500, 40)[["y", "x", "g"]].to_csv(OUT / "nb_large.csv", index=False)
    agq_bernoulli(7013, 5000, 4).to_csv(OUT / "agq_large.csv", index=False)


if __name__ == "__main__":
    main()
