"""The ML fit in ArviZ, and ML beside Bayes: compare_fits and plot_compare."""

import arviz as az
import matplotlib
import numpy as np
import pandas as pd
import pytest
from reference_cases import inverse_gaussian_data

import ppl_glmm
from ppl_glmm import InputError
from ppl_glmm.inference import natural_covariance, natural_estimates

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def mfr_ml_idata(mfr_model):
    return mfr_model.to_inference_data(draws=2000, rng=0)


def test_ml_datatree_has_the_bayesian_names(mfr_ml_idata, mfr_bayes):
    dt = mfr_ml_idata
    assert {"posterior", "posterior_predictive", "observed_data"} <= set(dt.children)
    assert set(dt["posterior"].data_vars) == {"beta", "sd_factory"}
    for v in dt["posterior"].data_vars:
        assert dt["posterior"][v].dims == mfr_bayes.idata["posterior"][v].dims
        for dim in dt["posterior"][v].dims[2:]:
            assert list(dt["posterior"][v].coords[dim].values) == list(
                mfr_bayes.idata["posterior"][dim].values
            )
    assert dt["posterior"]["beta"].shape == (1, 2000, 6)
    np.testing.assert_array_equal(dt["observed_data"]["defects"], mfr_bayes.idata["observed_data"]["defects"])
    assert dt["posterior_predictive"]["defects"].shape == (1, 2000, 100)


def test_ml_draws_follow_the_asymptotic_normal_on_the_natural_scale(mfr_model, mfr_ml_idata):
    """(beta, log sd) ~ N(estimates, H^-1): means within 4 SE/sqrt(2000), SDs within 8% (the sampling
    error of an SD from 2,000 draws is 1.6%)."""
    post = mfr_ml_idata["posterior"]
    z = np.column_stack([post["beta"].values[0], np.log(post["sd_factory"].values[0, :, 0])])
    z0, cov = natural_estimates(mfr_model._fit), natural_covariance(mfr_model._fit)
    se = np.sqrt(np.diag(cov))
    assert np.all(np.abs(z.mean(axis=0) - z0) < 4 * se / np.sqrt(2000))
    np.testing.assert_allclose(z.std(axis=0), se, rtol=0.08)
    assert np.all(post["sd_factory"].values > 0)


def test_ml_posterior_predictive_is_random(mfr_model, mfr_ml_idata):
    """Responses from random(): counts with the fitted marginal mean (sum over rows within 4 sd)."""
    pp = mfr_ml_idata["posterior_predictive"]["defects"].values[0]
    assert pp.dtype.kind == "i" and np.all(pp >= 0)
    first = mfr_model.to_inference_data(draws=3, rng=0)["posterior_predictive"]["defects"].values[0]
    again = mfr_model.to_inference_data(draws=3, rng=0)["posterior_predictive"]["defects"].values[0]
    np.testing.assert_array_equal(first, again)
    totals = pp.sum(axis=1)
    assert abs(totals.mean() - mfr_model.response().sum()) < 4 * totals.std()


def test_arviz_treats_both_fits_alike(mfr_model, mfr_ml_idata, mfr_bayes):
    s_ml = az.summary(mfr_ml_idata, var_names=["beta", "sd_factory"])
    s_b = az.summary(mfr_bayes.idata, var_names=["beta", "sd_factory"])
    assert list(s_ml.index) == list(s_b.index)
    ml = mfr_model.to_inference_data(draws=1000, chains=4, rng=1, predictive=False)  # the posterior's layout
    assert ml["posterior"]["beta"].shape == (4, 1000, 6)
    pc = az.plot_forest({"ML": ml, "NUTS": mfr_bayes.idata}, var_names=["beta"], backend="matplotlib")
    assert not np.isnan(pc.data["beta"].values).any()  # both fits' draws, aligned
    assert list(pc.data["model"].values) == ["ML", "NUTS"]
    pc2 = az.plot_ppc_dist(mfr_ml_idata, num_samples=20, backend="matplotlib")
    assert pc2.viz["predictive_dist"]["defects"].sizes["sample"] == 20  # 20 simulated responses drawn
    assert "observed_dist" in pc2.viz.children


def test_ml_datatree_of_a_correlated_normal_model(fitted):
    m = fitted("sleepstudy_lmm")
    post = m.to_inference_data(draws=500, rng=1, predictive=False)["posterior"]
    assert set(post.data_vars) == {"beta", "sd_Subject", "corr_Subject", "sigma"}
    assert np.all(np.abs(post["corr_Subject"].values) < 1)
    assert abs(np.median(post["sigma"].values) - m._result.sigma) < 0.05 * m._result.sigma


def test_compare_fits_table(mfr_model, mfr_bayes):
    tab = ppl_glmm.compare_fits(mfr_model, mfr_bayes)
    assert list(tab["Parameter"]) == [f"beta[{c}]" for c in mfr_model.coefficient_names] + [
        "sd_factory[(Intercept)]"
    ]
    assert list(tab["Type"]) == ["fixed"] * 6 + ["std"]
    fe = mfr_model.fixed_effects()
    np.testing.assert_allclose(tab["ML_Estimate"][:6], fe["Estimate"])
    np.testing.assert_allclose(tab["ML_SE"][:6], fe["SE"])
    np.testing.assert_allclose(tab["ML_Lower"][:6], fe["Lower"])
    stats = mfr_model.covariance_parameters()[2][0].iloc[0]
    assert tab["ML_Estimate"].iloc[6] == pytest.approx(stats["Estimate"])
    assert (tab["ML_Lower"].iloc[6], tab["ML_Upper"].iloc[6]) == pytest.approx(
        (stats["Lower"], stats["Upper"])
    )
    se_log = np.sqrt(natural_covariance(mfr_model._fit)[6, 6])
    assert tab["ML_SE"].iloc[6] == pytest.approx(stats["Estimate"] * se_log)  # delta method
    post = mfr_bayes.coefficients
    np.testing.assert_allclose(tab["Post_Mean"][:6], post["Mean"])
    np.testing.assert_allclose(tab["Diff_in_SE"], (tab["Post_Mean"] - tab["ML_Estimate"]) / tab["ML_SE"])
    assert (tab["Diff_in_SE"][:6].abs() < 0.5).all()  # the same model: ML and posterior agree
    for col in ("Post_Median", "Post_SD", "Post_Lower", "Post_Upper", "Rhat", "ESS_bulk"):
        assert tab[col].notna().all()


def test_compare_fits_with_correlation_and_dispersion(fitted, sleep_bayes):
    tab = ppl_glmm.compare_fits(fitted("sleepstudy_lmm"), sleep_bayes, ci_prob=0.9)
    # sigma's Type is std, as in covariance_parameters (it was "dispersion")
    assert list(tab["Type"]) == ["fixed", "fixed", "std", "corr", "std", "std"]
    assert list(tab["Name"][2:]) == ["(Intercept)", "Days, (Intercept)", "Days", "sqrt(Dispersion)"]
    assert tab.loc[5, "Group"] == "Error"
    assert tab["ML_SE"].notna().all() and (tab["ML_SE"] > 0).all()
    rho = tab.loc[3, "ML_Estimate"]
    assert -1 < rho < 1 and tab.loc[3, "ML_Lower"] < rho < tab.loc[3, "ML_Upper"]
    # the ML_ columns are the frequentist fit by its own method, which attrs names (it was
    # unlabelled: a REML fit's estimates sat in ML_ columns with nothing saying so)
    assert tab.attrs["ml_fit_method"] == "Laplace"
    ml = fitted("sleepstudy_lmm")
    reml = ppl_glmm.fitglme(ml.variables, ml.formula, fit_method="reml")
    tab_reml = ppl_glmm.compare_fits(reml, sleep_bayes, ci_prob=0.9)
    assert tab_reml.attrs["ml_fit_method"] == "REML"
    assert tab_reml.loc[4, "ML_Estimate"] > tab.loc[4, "ML_Estimate"]  # REML's larger Days SD


def test_compare_fits_refuses_different_models(mfr_model, sleep_bayes):
    with pytest.raises(InputError, match="not of the same model and data"):
        ppl_glmm.compare_fits(mfr_model, sleep_bayes)
    with pytest.raises(InputError, match="ci_prob"):
        ppl_glmm.compare_fits(mfr_model, sleep_bayes, ci_prob=95)


def test_plot_compare_returns_a_figure(mfr_model, mfr_bayes, tmp_path):
    fig = ppl_glmm.plot_compare(mfr_model, mfr_bayes)
    assert isinstance(fig, matplotlib.figure.Figure)
    legend = [
        t.get_text()
        for leg in fig.legends + [a.get_legend() for a in fig.axes if a.get_legend()]
        for t in leg.get_texts()
    ]
    assert "Laplace fit" in legend and "Bayes (NUTS)" in legend  # the fit's method, not always "Laplace"
    assert len(fig.axes) >= 2
    fig.savefig(tmp_path / "forest.png")
    assert (tmp_path / "forest.png").stat().st_size > 10_000


def test_ml_datatree_of_an_approximate_laplace_fit(fitted):
    """ApproximateLaplace: beta is not an outer parameter; it is drawn from coefficient_covariance."""
    m = fitted("cbpp_binomial_approx")
    post = m.to_inference_data(draws=4000, rng=2, predictive=False)["posterior"]
    beta = post["beta"].values[0]
    np.testing.assert_allclose(beta.std(axis=0), np.sqrt(np.diag(m.coefficient_covariance)), rtol=0.06)
    assert post["sd_herd"].shape == (1, 4000, 1)


def test_ml_datatree_of_a_singular_fit_holds_the_sds(recwarn):
    import pandas as pd

    data = pd.DataFrame({"g": np.repeat(np.arange(8), 5), "y": np.tile([0, 1, 2, 4, 3], 8)})
    with pytest.warns(ppl_glmm.SingularFitWarning):
        m = ppl_glmm.fitglme(data, "y ~ 1 + (1|g)", distribution="poisson")
    with pytest.warns(ppl_glmm.SingularFitWarning, match="held at their estimates"):
        post = m.to_inference_data(draws=50, rng=0, predictive=False)["posterior"]
    assert np.unique(post["sd_g"].values).size == 1
    assert post["beta"].values.std() > 0


def test_ml_datatree_of_a_singular_fit_draws_the_other_terms():
    """Only the boundary term is held: the other term's SD and sigma are drawn with their Wald spread."""
    import pandas as pd

    rng = np.random.default_rng(0)
    g, h, x = np.repeat(np.arange(8), 6), np.tile(np.arange(6), 8), rng.normal(size=48)
    y = 1 + 0.5 * x + rng.normal(0, 0.6, 6)[h] + rng.normal(0, 1, 48)
    data = pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g], "h": [f"h{i}" for i in h]})
    with pytest.warns(ppl_glmm.SingularFitWarning):
        m = ppl_glmm.fitglme(data, "y ~ x + (1|g) + (1|h)")
    with pytest.warns(ppl_glmm.SingularFitWarning, match="term\\(s\\) of g are on the boundary"):
        post = m.to_inference_data(draws=4000, rng=0, predictive=False)["posterior"]
    assert np.unique(post["sd_g"].values).size == 1
    log_sd_h = np.log(post["sd_h"].values.ravel())
    with pytest.warns(UserWarning):
        h_row = m.covariance_parameters()[2][1].iloc[0]
    wald_sd = (np.log(h_row.Upper) - np.log(h_row.Estimate)) / 1.959963984540054
    assert log_sd_h.std() == pytest.approx(wald_sd, rel=0.05)


def _short(model, **kw):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit_bayes(draws=20, tune=20, chains=1, cores=1, rng=3, progress=False, **kw)


def test_compare_fits_refuses_another_coding_or_offset(mfr_model):
    """The same formula, data and response coded otherwise (reference against effects) or with an
    offset on one side only: the coefficients mean different things, and were compared."""
    from ppl_glmm.datasets import load_mfr

    formula = "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)"
    reference = ppl_glmm.fitglme(load_mfr(), formula, distribution="Poisson")
    with pytest.raises(InputError, match=r"fixed-effects coding, offset and binomial sizes must agree"):
        ppl_glmm.compare_fits(mfr_model, _short(reference))
    shifted = ppl_glmm.fitglme(
        load_mfr(), formula, distribution="Poisson", dummy_var_coding="effects", offset=np.log(2.0)
    )
    with pytest.raises(InputError, match="not of the same model and data"):
        ppl_glmm.compare_fits(mfr_model, _short(shifted))


def test_levels_holding_a_comma_and_independent_terms_of_one_group():
    """random_effects split 'Smith, G00, (Intercept)' at its first ', ' (Level 'Smith'), and the
    display of (1 + x || g) printed both terms' rows under each of its two 'Group: g' blocks."""
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(8), 12)
    x = rng.normal(size=g.size)
    y = rng.poisson(np.exp(0.5 + 0.3 * x + rng.normal(0, 0.4, 8)[g] + rng.normal(0, 0.3, 8)[g] * x))
    d = pd.DataFrame({"y": y, "x": x, "g": [f"Smith, G{i:02d}" for i in g]})
    b = _short(ppl_glmm.fitglme(d, "y ~ x + (1 + x || g)", distribution="poisson"))
    re = b.random_effects()
    assert re["Level"].iloc[:2].tolist() == ["Smith, G00", "Smith, G01"]
    assert set(re["Name"]) == {"(Intercept)", "x"} and len(re) == 16
    text = str(b)
    blocks = text.split("Group: g (8 Levels)")[1:]
    assert len(blocks) == 2
    assert "(Intercept)" in blocks[0].split("Group:")[0] and "{'x'}" not in blocks[0].split("Group:")[0]
    assert "{'x'}" in blocks[1].split("Group:")[0] and "(Intercept)" not in blocks[1].split("Group:")[0]


def test_compare_fits_refuses_a_restricted_pattern_or_a_quasi_dispersion():
    """A CompSymm or Diagonal ML fit was compared with the unstructured Bayesian model (rows such as
    sd_g[z] or corr_g silently missing), and a binomial PL fit with dispersion_flag (sigma 0.955,
    b = sigma Lambda u) with a posterior of a model without dispersion."""
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(8), 6)
    x, z = rng.normal(size=48), rng.normal(size=48)
    y = 1 + 0.5 * x + rng.normal(0, 0.8, 8)[g] + z * rng.normal(0.3, 0.8, 8)[g] + rng.normal(0, 0.5, 48)
    d = pd.DataFrame({"g": [f"g{i}" for i in g], "x": x, "z": z, "y": y})
    b = _short(ppl_glmm.fitglme(d, "y ~ x + (1 + z|g)"))
    for pattern in ("CompSymm", "Diagonal"):
        ml = ppl_glmm.fitglme(d, "y ~ x + (1 + z|g)", covariance_pattern=pattern)
        with pytest.raises(
            InputError, match="ml: covariance_pattern: the Bayesian fit supports unstructured"
        ):
            ppl_glmm.compare_fits(ml, b)
    d["k"] = rng.binomial(1, 1 / (1 + np.exp(-(0.3 + x + rng.normal(0, 0.6, 8)[g]))))
    quasi = ppl_glmm.fitglme(
        d, "k ~ x + (1|g)", distribution="binomial", fit_method="mpl", dispersion_flag=True
    )
    assert quasi.dispersion_estimated and quasi.dispersion != 1.0
    with pytest.raises(InputError, match="ml: a binomial fit with an estimated dispersion"):
        ppl_glmm.compare_fits(
            quasi, _short(ppl_glmm.fitglme(d, "k ~ x + (1|g)", distribution="binomial", fit_method="mpl"))
        )


def test_a_quasi_dispersion_fit_warms_nuts_at_its_random_effects_sd():
    """fit_bayes from a binomial PL fit with dispersion_flag started the SD at Lambda, not at the
    fit's SD sigma Lambda (b = sigma Lambda u)."""
    from ppl_glmm.bayes.model import point_from_ml

    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(10), 10)
    x = rng.normal(size=100)
    k = rng.binomial(1, 1 / (1 + np.exp(-(0.3 + x + rng.normal(0, 0.8, 10)[g]))))
    d = pd.DataFrame({"g": g.astype(str), "x": x, "k": k})
    quasi = ppl_glmm.fitglme(
        d, "k ~ x + (1|g)", distribution="binomial", fit_method="mpl", dispersion_flag=True
    )
    starts = []

    def spy(graph, layout, beta, theta, ancillary, u, **kw):
        point = point_from_ml(graph, layout, beta, theta, ancillary, u, **kw)
        starts.append(point)
        return point

    import ppl_glmm.bayes.fit as bayes_fit

    real = bayes_fit.point_from_ml
    bayes_fit.point_from_ml = spy
    try:
        _short(quasi, init="ml")
    finally:
        bayes_fit.point_from_ml = real
    sd_ml = float(quasi.covariance_parameters()[2][0]["Estimate"].iloc[0])
    sd_start = [np.ravel(v)[0] for name, v in starts[0].items() if name.startswith("sd")]
    assert quasi.dispersion != pytest.approx(1.0, abs=1e-3)
    assert sd_start and sd_start[0] == pytest.approx(sd_ml, rel=1e-8)


def test_a_small_sd_off_the_boundary_starts_nuts_at_its_ml_value():
    """The SD floor (5% of the prior scale, for a zero ML SD) was applied to every SD below it: an
    inverse Gaussian SD of 0.0195 started at 0.0258, which moved every b by 32%, put a linear
    predictor at eta < 0 (no mean on the canonical power -2 link) and made fit_bayes fail with 'the
    log posterior is not finite at the ML estimates'. Only a term the ML fit puts on the boundary is
    raised now."""
    from ppl_glmm.bayes.model import point_from_ml

    d = inverse_gaussian_data(3, 15, 10, (1.0, 0.5), 0.5, 1 / 0.3**2)
    m = ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution="inverse_gaussian")
    sd_ml = float(m.covariance_parameters()[2][0]["Estimate"].iloc[0])
    assert not m.singular and 0.01 < sd_ml < 0.025
    starts = []

    def spy(*args, **kw):
        starts.append(point_from_ml(*args, **kw))
        return starts[-1]

    import ppl_glmm.bayes.fit as bayes_fit

    real = bayes_fit.point_from_ml
    bayes_fit.point_from_ml = spy
    try:
        fit = _short(m, init="ml")
    finally:
        bayes_fit.point_from_ml = real
    assert float(np.ravel(starts[0]["sd_g"])[0]) == pytest.approx(sd_ml, rel=1e-8)
    assert fit.idata.posterior["sd_g"].size == 20
    # the old rule (every term raised) is what point_from_ml does without the ML fit's flags
    assert float(np.ravel(point_from_ml(*_spy_args(m))["sd_g"])[0]) > 1.3 * sd_ml


def _spy_args(m):
    from ppl_glmm.bayes.model import build_bayes_model
    from ppl_glmm.bayes.priors import resolve_priors
    from ppl_glmm.names import ModelNames

    ws, r = m._ws, m._result
    names = ModelNames.from_design(ws.design, ws.dist)
    priors = resolve_priors(ws.design, ws.dist, ws.link, names, None)
    graph = build_bayes_model(ws.design, ws.dist, ws.link, names, priors, (False,))
    return graph, ws.layout, r.beta, r.theta, r.ancillary, r.u
