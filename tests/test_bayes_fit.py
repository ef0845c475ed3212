"""NUTS fits of the same model: ArviZ output, agreement with ML, diagnostics, pickling, samplers."""

import copy
import pickle

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import ppl_glmm
from ppl_glmm import SamplingWarning


def test_mfr_with_the_defaults_converges(mfr_bayes):
    """Seeded defaults (4 chains x 1000 draws, ML warm start): R-hat <= 1.01, no divergences."""
    diag = mfr_bayes.diagnostics().set_index("Check")
    assert diag.loc["divergences", "Value"] == 0
    assert diag.loc["max R-hat", "Value"] <= 1.01
    assert diag.loc["min ESS (bulk)", "Value"] >= 400
    assert diag["OK"].all()
    assert mfr_bayes.warnings == ()
    s = mfr_bayes.settings
    assert (s.chains, s.draws, s.tune, s.init, s.sampler, s.target_accept) == (
        4,
        1000,
        300,
        "ml",
        "pymc",
        0.9,
    )


def test_datatree_has_every_group_with_the_ml_names(mfr_bayes, mfr_model):
    dt = mfr_bayes.idata
    assert isinstance(dt, xr.DataTree)
    assert {"posterior", "sample_stats", "log_likelihood", "observed_data", "constant_data"} <= set(
        dt.children
    )
    post = dt["posterior"]
    assert list(post["beta"].coords["coef"].values) == mfr_model.coefficient_names
    assert post["beta"].shape == (4, 1000, 6)
    assert list(post["sd_factory"].coords["factory_coef"].values) == ["(Intercept)"]
    assert post["b_factory"].dims == ("chain", "draw", "factory_level", "factory_coef")
    assert list(post["b_factory"].coords["factory_level"].values) == [str(i) for i in range(1, 21)]
    assert dt["log_likelihood"]["defects"].shape == (4, 1000, 100)
    np.testing.assert_array_equal(dt["observed_data"]["defects"].values, load_counts())
    np.testing.assert_allclose(dt["constant_data"]["X"].values, mfr_model.design_matrix())
    # noncentered='auto' centres mfr's term (the data dominate: rho = 0.28, tests/test_bayes_centering.py)
    assert "u_factory" not in post and dt.attrs["centered_terms"] == "factory"


def load_counts():
    from ppl_glmm.datasets import load_mfr

    return load_mfr()["defects"].to_numpy()


def test_arviz_summary_loo_and_netcdf_round_trip(mfr_bayes, tmp_path):
    summ = az.summary(mfr_bayes.idata, var_names=["beta", "sd_factory"])
    assert "beta[newprocess]" in summ.index and "sd_factory[(Intercept)]" in summ.index
    loo = az.loo(mfr_bayes.idata)
    assert np.isfinite(loo.elpd) and loo.elpd < 0
    path = tmp_path / "mfr_bayes.nc"
    mfr_bayes.idata.to_netcdf(path)
    back = xr.open_datatree(path)
    for group in ("posterior", "log_likelihood", "observed_data", "constant_data", "sample_stats"):
        xr.testing.assert_allclose(back[group].to_dataset(), mfr_bayes.idata[group].to_dataset())
    assert back.attrs["formula"] == mfr_bayes.formula


def test_coefficients_table_matches_the_draws(mfr_bayes):
    tab = mfr_bayes.coefficients
    assert list(tab.columns) == [
        "Name",
        "Mean",
        "SD",
        "Lower",
        "Upper",
        "Rhat",
        "ESS_bulk",
        "ESS_tail",
        "MCSE",
    ]
    draws = mfr_bayes.idata["posterior"]["beta"].values.reshape(-1, 6)
    np.testing.assert_allclose(tab["Mean"], draws.mean(axis=0))
    np.testing.assert_allclose(tab["SD"], draws.std(axis=0, ddof=1))
    np.testing.assert_allclose(tab["Lower"], np.quantile(draws, 0.025, axis=0))
    np.testing.assert_allclose(tab["Upper"], np.quantile(draws, 0.975, axis=0))
    rhat = az.rhat(mfr_bayes.idata, var_names=["beta"])["beta"].values
    np.testing.assert_allclose(tab["Rhat"], rhat)
    assert (tab["MCSE"] < tab["SD"] / 10).all()
    ci90 = mfr_bayes.fixed_effects(ci_prob=0.9)
    np.testing.assert_allclose(ci90["Lower"], np.quantile(draws, 0.05, axis=0))


def test_display_in_the_spirit_of_the_ml_one(mfr_bayes):
    text = str(mfr_bayes)
    assert text.startswith("Generalized linear mixed-effects model fit by NUTS (pymc)")
    assert "    Number of observations             100" in text
    assert "Fixed effects coefficients (posterior mean, sd, 95% equal-tailed intervals):" in text
    assert "Group: factory (20 Levels)" in text
    assert "4 chains x 1000 draws after 300 tuning steps, init 'ml'" in text
    assert "divergences 0" in text
    assert "BayesianGLMM poisson/log" in repr(mfr_bayes)


def test_posterior_predictive_by_pymc_on_a_new_fit(mfr_bayes):
    new = mfr_bayes.sample_posterior_predictive(rng=3, progress=False)
    assert "posterior_predictive" not in mfr_bayes.idata.children  # the fit is not changed
    pp = new.idata["posterior_predictive"]["defects"]
    assert pp.shape == (4, 1000, 100) and pp.dtype.kind == "i"
    # the predictive mean of each count follows the posterior mean of exp(eta), within 5 MC SEs
    again = mfr_bayes.sample_posterior_predictive(rng=3, progress=False)
    np.testing.assert_array_equal(again.idata["posterior_predictive"]["defects"].values, pp.values)
    total = pp.values.sum(axis=-1).ravel()
    assert abs(total.mean() - load_counts().sum()) < 4 * total.std()


def test_pickle_and_deepcopy_rebuild_the_model(mfr_bayes):
    back = pickle.loads(pickle.dumps(mfr_bayes))
    pd.testing.assert_frame_equal(back.coefficients, mfr_bayes.coefficients)
    assert back.model is not mfr_bayes.model  # rebuilt from the design and priors
    assert {v.name for v in back.model.free_RVs} == {v.name for v in mfr_bayes.model.free_RVs}
    clone = copy.deepcopy(mfr_bayes)
    assert str(clone) == str(mfr_bayes)


def test_correlated_normal_model_reports_sd_corr_and_sigma(sleep_bayes, fitted):
    ml = fitted("sleepstudy_lmm")
    post = sleep_bayes.idata["posterior"]
    assert list(post["corr_Subject"].coords["Subject_pair"].values) == ["Days, (Intercept)"]
    assert post["sigma"].dims == ("chain", "draw")
    assert np.all(np.abs(post["corr_Subject"].values) < 1) and np.all(post["sd_Subject"].values > 0)
    cov = sleep_bayes.covariance_parameters()
    assert list(cov["Type"]) == ["std", "corr", "std", "std"]
    assert list(cov["Group"]) == ["Subject", "Subject", "Subject", "Error"]
    ml_cov = ml.covariance_parameters()[2][0]
    assert list(cov["Name1"][:3]) == list(ml_cov["Name1"]) and list(cov["Name2"][:3]) == list(ml_cov["Name2"])
    # 2 chains x 300 draws is too short for ESS >= 400: a SamplingWarning was issued and recorded
    assert any("min ESS" in w for w in sleep_bayes.warnings)
    re = sleep_bayes.random_effects()
    assert list(re.columns[:3]) == ["Group", "Level", "Name"] and len(re) == 36


def test_non_centred_random_effects_on_request(mfr_model, mfr_bayes):
    b = mfr_model.fit_bayes(noncentered=True, draws=400, chains=2, rng=6, progress=False)
    post = b.idata["posterior"]
    assert post["u_factory"].shape == post["b_factory"].shape == (2, 400, 20, 1)
    assert "random effects: non-centred" in str(b) and "random effects: centred" in str(mfr_bayes)
    # b = u * sd on every draw: the random effects are the non-centred u scaled
    b_vals = post["b_factory"].values[..., 0]
    np.testing.assert_allclose(b_vals, post["u_factory"].values[..., 0] * post["sd_factory"].values)
    # the same posterior as the centred default: SD medians within 10%
    sd_n = float(post["sd_factory"].median())
    sd_c = float(mfr_bayes.idata["posterior"]["sd_factory"].median())
    assert abs(sd_c - sd_n) < 0.1 * sd_c


def test_diagnostics_fail_loudly_on_a_short_run(mfr_model):
    with pytest.warns(SamplingWarning, match="min ESS"):
        b = mfr_model.fit_bayes(draws=30, tune=20, chains=2, cores=1, rng=5, progress=False)
    table = b.diagnostics()
    assert list(table.columns) == ["Check", "Value", "Threshold", "OK", "Message"]
    assert not table.set_index("Check").loc["min ESS (bulk)", "OK"]
    assert b.warnings and all(isinstance(w, str) for w in b.warnings)


@pytest.mark.filterwarnings("ignore::ppl_glmm.SamplingWarning")
def test_same_seed_same_draws(mfr_model):
    a = mfr_model.fit_bayes(draws=50, tune=50, chains=2, cores=1, rng=11, progress=False)
    b = mfr_model.fit_bayes(draws=50, tune=50, chains=2, cores=1, rng=11, progress=False)
    np.testing.assert_array_equal(a.idata["posterior"]["beta"].values, b.idata["posterior"]["beta"].values)


def test_nutpie_gives_the_same_datatree_layout(mfr_model, mfr_bayes):
    pytest.importorskip("nutpie")
    b = mfr_model.fit_bayes(sampler="nutpie", draws=200, tune=200, chains=2, rng=4, progress=False)
    assert set(b.idata.children) == set(mfr_bayes.idata.children)
    for group in ("posterior", "log_likelihood", "observed_data"):
        assert set(b.idata[group].data_vars) == set(mfr_bayes.idata[group].data_vars)
        for v in b.idata[group].data_vars:
            assert b.idata[group][v].dims[-1:] == mfr_bayes.idata[group][v].dims[-1:]
    assert list(b.coefficients["Name"]) == mfr_model.coefficient_names
    assert b.settings.sampler == "nutpie"


def test_fitglme_bayes_with_auto_init_needs_no_ml_fit(monkeypatch):
    from ppl_glmm import api
    from ppl_glmm.datasets import load_mfr

    def boom(*args, **kwargs):
        raise AssertionError("init='auto' should not fit by ML")

    monkeypatch.setattr(api, "fit", boom)
    b = ppl_glmm.fitglme_bayes(
        load_mfr(),
        "defects ~ 1 + newprocess + (1|factory)",
        distribution="poisson",
        init="auto",
        draws=100,
        tune=100,
        chains=2,
        rng=0,
        progress=False,
    )
    assert b.settings.init == "auto" and b.settings.tune == 100
    assert b.idata["posterior"]["beta"].shape == (2, 100, 2)


@pytest.fixture(scope="module")
def simulated():
    """50 groups x 20 observations, logistic, known parameters; the ML fit and a default NUTS fit."""
    rng = np.random.default_rng(20261129)
    g = np.repeat(np.arange(50), 20)
    x = rng.normal(size=g.size)
    b = rng.normal(0, 0.8, 50)
    eta = -0.4 + 0.9 * x + b[g]
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    data = pd.DataFrame({"y": y, "x": x, "g": g})
    ml = ppl_glmm.fitglme(data, "y ~ x + (1|g)", distribution="binomial")
    return ml, ml.fit_bayes(rng=8, progress=False)


def test_posterior_agrees_with_ml_on_simulated_data(simulated):
    """Posterior means of the fixed effects within 0.25 ML SE + 3 MCSE of the ML estimates (with
    1,000 observations the prior and the Laplace error move the mean by far less than one SE), and
    the posterior median of the SD within 10% of the ML SD: the marginal posterior of an SD is
    right-skewed and the ML SD is biased low by about 1/(2 x groups), so the median sits a few
    percent above it."""
    ml, bayes = simulated
    fe = ml.fixed_effects()
    post = bayes.coefficients
    tol = 0.25 * fe["SE"].to_numpy() + 3 * post["MCSE"].to_numpy()
    assert np.all(np.abs(post["Mean"].to_numpy() - fe["Estimate"].to_numpy()) <= tol)
    sd_ml = ml.covariance_parameters()[2][0]["Estimate"].iloc[0]
    sd_post = bayes.covariance_parameters().set_index("Type").loc["std", "Median"]
    assert abs(sd_post - sd_ml) <= 0.10 * sd_ml
    # both recover the truth (beta = (-0.4, 0.9), sd = 0.8) within their 95% intervals
    assert np.all((post["Lower"] < [-0.4, 0.9]) & (post["Upper"] > [-0.4, 0.9]))


def test_fitglme_bayes_equals_fit_bayes_on_the_ml_fit(mfr_model):
    from ppl_glmm.datasets import load_mfr

    kw = {"draws": 60, "tune": 60, "chains": 2, "cores": 1, "rng": 21, "progress": False}
    with pytest.warns(SamplingWarning):
        a = ppl_glmm.fitglme_bayes(
            load_mfr(),
            "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)",
            distribution="Poisson",
            dummy_var_coding="effects",
            **kw,
        )
    with pytest.warns(SamplingWarning):
        b = mfr_model.fit_bayes(**kw)
    np.testing.assert_allclose(a.idata["posterior"]["beta"].values, b.idata["posterior"]["beta"].values)
    assert a.formula == b.formula == mfr_model.formula


@pytest.mark.filterwarnings("ignore::ppl_glmm.SamplingWarning")
def test_a_generator_rng_advances_once_whichever_entry_point(mfr_model):
    """fitglme_bayes draws its seed from a numpy Generator once, as fit_bayes does: the same
    Generator state gives the same draws through either entry point."""
    from ppl_glmm.datasets import load_mfr

    kw = {"draws": 40, "tune": 40, "chains": 2, "cores": 1, "progress": False}
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    a = ppl_glmm.fitglme_bayes(
        load_mfr(),
        "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)",
        distribution="Poisson",
        dummy_var_coding="effects",
        rng=g1,
        **kw,
    )
    b = mfr_model.fit_bayes(rng=g2, **kw)
    np.testing.assert_allclose(a.idata["posterior"]["beta"].values, b.idata["posterior"]["beta"].values)
    assert g1.integers(1 << 30) == g2.integers(1 << 30)


def test_a_refitted_model_samples_and_reports_its_own_response(mfr_model):
    """A refit shares the workspace (design, PyMC model) with the original fit; its Bayesian fit and
    its ArviZ view must use the refit's response, not the data's."""
    ynew = mfr_model.random(rng=11)
    refitted = mfr_model.refit(ynew)
    assert not np.array_equal(ynew, mfr_model.response())
    ml_tree = refitted.to_inference_data(draws=10, rng=0, predictive=False)
    np.testing.assert_array_equal(ml_tree["observed_data"]["defects"].values, ynew)
    b = refitted.fit_bayes(draws=20, tune=20, chains=1, rng=0, progress=False)
    np.testing.assert_array_equal(b.idata["observed_data"]["defects"].values, ynew)
    # the original model's views are unchanged
    np.testing.assert_array_equal(
        mfr_model.to_inference_data(draws=10, rng=0, predictive=False)["observed_data"]["defects"].values,
        mfr_model.response(),
    )


@pytest.mark.parametrize("tune", [200, 300])
def test_the_mass_matrix_is_dense_and_anchored_to_the_laplace_covariance(mfr_model, monkeypatch, tune):
    """mfr has 27 coordinates: a dense mass matrix at any tune (the rule was dense only up to tune/10
    coordinates, and the diagonal one gave min bulk ESS 47 of 800 draws on a centred 45-coordinate
    gamma model), anchored by max(50, d) = 50 pseudo-draws."""
    import pymc as pm

    from ppl_glmm.bayes.mass_matrix import LaplaceAnchoredAdapt

    seen = {}

    class Stop(Exception):
        pass

    def sample(*args, step=None, **kwargs):
        seen["potential"] = step.potential
        raise Stop

    monkeypatch.setattr(pm, "sample", sample)
    with pytest.raises(Stop):
        mfr_model.fit_bayes(tune=tune, draws=10, chains=1, rng=0, progress=False)
    pot = seen["potential"]
    assert isinstance(pot, LaplaceAnchoredAdapt) and pot._n == 27 and pot._initial_weight == 50


def test_every_adaptation_window_is_shrunk_towards_the_laplace_covariance():
    """After PyMC's first window (101 draws) the next window's estimate starts from S with w
    pseudo-draws: (w S + sum of the window's centred outer products) / (w + n - 1). PyMC's own
    class starts it from nothing (the plain sample covariance)."""
    import warnings

    from ppl_glmm.bayes.mass_matrix import LaplaceAnchoredAdapt

    rng = np.random.default_rng(0)
    d, w = 3, 40
    A = rng.normal(size=(d, d))
    S = A @ A.T + d * np.eye(d)
    mean0 = rng.normal(size=d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyMC: "an experimental feature"
        pot = LaplaceAnchoredAdapt(d, mean0, S, w, adaptation_window=101)
    x = rng.normal(size=(260, d)) * [1.0, 2.0, 0.5]
    for t in range(x.shape[0]):
        pot.update(x[t], None, True)
    # the window switch came after 102 draws (PyMC's delta >= window); the second window holds the
    # other 158, with its anchor centred at the first window's running mean
    first, second = x[:102], x[102:]
    anchor_mean = (w * mean0 + first.sum(axis=0)) / (w + len(first))
    m = (w * anchor_mean + second.sum(axis=0)) / (w + len(second))
    n = w + len(second)
    np.testing.assert_allclose(pot._background_cov.current_mean(), m, rtol=1e-12)
    scatter = (second - m).T @ (second - m) + w * np.outer(anchor_mean - m, anchor_mean - m) + w * S
    np.testing.assert_allclose(pot._background_cov.current_covariance(), scatter / (n - 1), rtol=1e-10)
