"""The Bayesian fit's log_likelihood group, computed by the engine's observation function, equals
PyMC's own ``pm.compute_log_likelihood`` on the sampled model: families with and without an ancillary
parameter, weights, an offset, binomial trials, and centred and non-centred correlated terms."""

import warnings

import numpy as np
import pandas as pd
import pymc as pm
import pytest

import ppl_glmm
from ppl_glmm import SamplingWarning


def _data() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(12), 5)
    x = rng.normal(size=g.size)
    expo = rng.uniform(0.5, 2.0, g.size)
    b0, b1 = rng.normal(0, 0.5, 12), rng.normal(0, 0.3, 12)
    eta = 0.3 + 0.5 * x + b0[g] + b1[g] * x
    size = rng.integers(3, 9, g.size)
    return pd.DataFrame(
        {
            "g": [f"g{i}" for i in g],
            "x": x,
            "k": rng.poisson(expo * np.exp(eta)),
            "log_expo": np.log(expo),
            "w": rng.uniform(0.5, 1.5, g.size),
            "wi": rng.integers(1, 4, g.size).astype(float),  # Poisson prior weights are integers (MATLAB)
            "y": eta + rng.normal(0, 0.4, g.size),
            "hits": rng.binomial(size, 1 / (1 + np.exp(-eta))),  # successes of binomial_size trials
            "size": size,
        }
    )


CASES = {
    "poisson_offset_weights": (
        "k ~ x + (1|g)",
        {"distribution": "poisson", "offset": "log_expo", "weights": "wi"},
    ),
    "normal_weights_slope": ("y ~ x + (1 + x|g)", {"weights": "w"}),
    "binomial_trials": ("hits ~ x + (1|g)", {"distribution": "binomial", "binomial_size": "size"}),
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "centered"),
    [(c, False) for c in CASES] + [("normal_weights_slope", True)],
    ids=[*CASES, "normal_weights_slope_centered"],
)
def test_log_likelihood_group_equals_pymc_compute_log_likelihood(case, centered):
    formula, kw = CASES[case]
    d = _data()
    kw = {k: (d[v].to_numpy() if k in ("offset", "weights") else v) for k, v in kw.items()}
    ml = ppl_glmm.fitglme(d, formula, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)  # 20 draws: ESS and R-hat warnings
        bayes = ml.fit_bayes(
            draws=20, tune=20, chains=2, cores=1, rng=4, progress=False, noncentered=not centered
        )
    ours = bayes.idata["log_likelihood"][bayes.names.response]
    ref = pm.compute_log_likelihood(
        bayes.idata.copy(), model=bayes.model, extend_inferencedata=False, progressbar=False
    )
    ref = ref[bayes.names.response]
    assert ours.dims == ref.dims == ("chain", "draw", "obs") and ours.shape == (2, 20, len(d))
    np.testing.assert_array_equal(ours["obs"].values, ref["obs"].values)
    np.testing.assert_allclose(ours.values, ref.values, rtol=1e-12, atol=1e-11)
    assert np.ptp(ours.values[:, :, 0]) > 0  # the draws differ, so the comparison covers several points
