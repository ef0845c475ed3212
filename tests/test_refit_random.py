"""random and refit: PyMC forward sampling, no recompilation, validation, immutability."""

import re

import numpy as np
import pandas as pd
import pytest
from reference_cases import _data, case_spec, fit_case

import ppl_glmm
from ppl_glmm.datasets import load_mfr

MFR_FORMULA = "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)"


def test_refit_does_not_compile_anything(mfr_model, request):
    mfr_model.random(rng=1)  # the sampler is compiled once, lazily
    unchanged = request.getfixturevalue("forbid_compilation")
    for seed in range(5):
        mfr_model.refit(mfr_model.random(rng=seed))
    assert unchanged()


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("cbpp_binomial", {"fit_method": "mpl", "dispersion_flag": True}),
        ("cbpp_binomial", {"fit_method": "rempl"}),
        ("sleepstudy_lmm", {"fit_method": "reml"}),
        ("sleepstudy_lmm", {"fit_method": "mpl"}),
        ("cbpp_binomial", {"fit_method": "laplace", "init_pl_iterations": 3}),
    ],
)
def test_refit_of_every_fit_method_compiles_nothing(name, kwargs, request):
    """REML, pseudo-likelihood (its pseudo-data LME's normal PyMC model) and PL-started Laplace:
    refits are warm-started and compile nothing."""
    loader, formula, kw, _ = case_spec(name)
    m = ppl_glmm.fitglme(loader(), formula, **{**kw, **kwargs})
    m.random(rng=1)  # the sampler is compiled once, lazily
    unchanged = request.getfixturevalue("forbid_compilation")
    for seed in range(3):
        new = m.refit(m.random(rng=seed))
        assert new.fit_method == m.fit_method and new.converged
    assert unchanged()


def test_refit_swaps_the_observed_pm_data_container(mfr_model):
    y = mfr_model.random(rng=3)
    new = mfr_model.refit(y)
    container = new._ws.graph.containers["y"].get_value()
    np.testing.assert_array_equal(container, y.astype(int))


def test_refit_matches_a_fresh_fit_on_the_new_response(mfr_model):
    y = mfr_model.random(rng=11)
    data = load_mfr()
    data["defects"] = y.astype(int)
    fresh = ppl_glmm.fitglme(data, MFR_FORMULA, distribution="poisson", dummy_var_coding="effects")
    refitted = mfr_model.refit(y)
    np.testing.assert_allclose(
        refitted.coefficients["Estimate"], fresh.coefficients["Estimate"], rtol=2e-5, atol=1e-7
    )
    assert refitted.log_likelihood == pytest.approx(fresh.log_likelihood, abs=1e-8)


def test_refit_leaves_the_original_model_unchanged(mfr_model):
    coef = mfr_model.coefficients.copy()
    ll = mfr_model.log_likelihood
    new = mfr_model.refit(mfr_model.random(rng=5))
    assert new is not mfr_model
    assert new.log_likelihood != ll
    pd.testing.assert_frame_equal(mfr_model.coefficients, coef)
    assert mfr_model.log_likelihood == ll
    np.testing.assert_array_equal(mfr_model.response()[:5], load_mfr()["defects"].to_numpy()[:5])


def test_refit_with_the_original_response_reproduces_the_fit(mfr_model):
    again = mfr_model.refit(mfr_model.response())
    np.testing.assert_allclose(again.coefficients["Estimate"], mfr_model.coefficients["Estimate"], rtol=2e-5)
    assert again.log_likelihood == pytest.approx(mfr_model.log_likelihood, abs=1e-8)


def test_random_same_seed_same_draw(mfr_model):
    a, b = mfr_model.random(rng=42), mfr_model.random(rng=42)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, mfr_model.random(rng=43))
    g1, g2 = np.random.default_rng(7), np.random.default_rng(7)
    np.testing.assert_array_equal(mfr_model.random(rng=g1), mfr_model.random(rng=g2))


def test_random_draws_new_random_effects_from_the_fitted_prior(mfr_model):
    """E[y] = exp(X beta + sigma_b^2 / 2) when b ~ N(0, sigma_b^2) is redrawn (not the modes)."""
    sims = np.array([mfr_model.random(rng=s) for s in range(600)])
    sd_b = mfr_model.covariance_parameters()[2][0]["Estimate"].iloc[0]
    expected = np.exp(
        mfr_model.design_matrix("fixed") @ mfr_model.coefficients["Estimate"].to_numpy() + sd_b**2 / 2
    )
    assert sims.mean() == pytest.approx(expected.mean(), rel=0.04)
    # rows of one factory share one new draw of b: they covary across simulations; rows of
    # different factories do not
    same = np.corrcoef(sims[:, 0], sims[:, 1])[0, 1]
    other = np.corrcoef(sims[:, 0], sims[:, 5])[0, 1]
    assert same > 0.15 and abs(other) < 0.12
    assert np.all(sims == np.round(sims)) and np.all(sims >= 0)


def test_binomial_random_returns_proportions_and_refit_takes_them(fitted):
    m = fitted("cbpp_binomial")
    y = m.random(rng=0)
    size = m.observation_info["BinomSize"].to_numpy()
    assert np.all((y >= 0) & (y <= 1))
    np.testing.assert_allclose(y * size, np.round(y * size), atol=1e-12)
    assert np.any((y > 0) & (y < 1))
    new = m.refit(y)
    assert new.num_observations == m.num_observations
    assert np.isfinite(new.log_likelihood)


def test_normal_random_and_refit(fitted):
    m = fitted("sleepstudy_lmm")
    y = m.random(rng=2)
    assert y.dtype == float and np.all(np.isfinite(y))
    new = m.refit(y)
    assert new.dispersion_estimated and new.dispersion > 0


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda y: y[:-1], "expected 100 values"),
        (lambda y: np.where(np.arange(y.size) == 3, np.nan, y), "NaN"),
        (lambda y: -y - 1, ">= 0"),
        (lambda y: y + 0.5, "integer counts"),
        (lambda y: "abc", "numeric"),
    ],
)
def test_refit_rejects_bad_poisson_responses(mfr_model, make, match):
    with pytest.raises((ValueError, TypeError), match=match) as err:  # TypeError for a non-numeric ynew
        mfr_model.refit(make(mfr_model.response()))
    assert "ynew" in str(err.value)


@pytest.mark.parametrize(
    "make,error,message",
    [
        (lambda y: None, "InputTypeError", "ynew: expected a numeric vector, got NoneType"),
        (
            lambda y: [str(int(v)) for v in y],
            "InputTypeError",
            "ynew: expected a numeric vector, got text values (list)",
        ),
        (
            lambda y: np.vstack([y, y]),
            "InputError",
            "ynew: expected a vector (one value per row), got an array of shape (2, 100)",
        ),
        (lambda y: pd.DataFrame({"a": y, "b": y}), "InputError", "got a table of 2 columns"),
    ],
)
def test_refit_refuses_none_text_and_tables(mfr_model, make, error, message):
    """None was reported as 'expected 100 values, got 1'; text and tables were converted or flattened."""
    with pytest.raises((ValueError, TypeError)) as err:
        mfr_model.refit(make(mfr_model.response()))
    assert type(err.value).__name__ == error and message in str(err.value)


def test_refit_accepts_a_one_column_table(mfr_model):
    y = mfr_model.random(rng=4)
    same = mfr_model.refit(y)
    assert mfr_model.refit(pd.DataFrame({"y": y})).log_likelihood == same.log_likelihood


def test_refit_rejects_bad_binomial_proportions(fitted):
    m = fitted("cbpp_binomial")
    y = m.response()
    with pytest.raises(ValueError, match="proportions in \\[0, 1\\]"):
        m.refit(y * 0 + 1.5)
    with pytest.raises(ValueError, match="integers"):
        m.refit(np.full(y.size, 0.5 / m.observation_info["BinomSize"].max() + 1e-3))


def test_random_and_refit_with_excluded_rows():
    data = load_mfr()
    data.loc[[3, 50], "time_dev"] = np.nan
    m = ppl_glmm.fitglme(data, MFR_FORMULA, distribution="poisson", exclude=[7])
    assert m.num_observations == 97 and m.num_missing == 2 and m.num_excluded == 1
    y = m.random(rng=0)
    assert y.size == 100 and np.isnan(y[[3, 7, 50]]).all() and np.isfinite(np.delete(y, [3, 7, 50])).all()
    assert m.refit(y).num_observations == 97
    assert m.refit(y[m.observation_info["Subset"].to_numpy()]).num_observations == 97


def test_rng_argument_is_validated(mfr_model):
    with pytest.raises(TypeError, match="rng"):
        mfr_model.random(rng="zero")
    with pytest.raises(ValueError, match="rng"):
        mfr_model.random(rng=-1)


def test_approximate_laplace_refit(fitted):
    m = fitted("cbpp_binomial_approx")
    new = m.refit(m.random(rng=4))
    assert new.fit_method == "approximatelaplace"
    assert np.isfinite(new.log_likelihood)


def test_fit_case_cache_consistency():
    """Two fits of the same case in one process give identical numbers (no state leaks)."""
    a = fit_case("poisson_offset_interaction")
    b = fit_case("poisson_offset_interaction")
    assert a.log_likelihood == b.log_likelihood


def test_random_with_newdata(mfr_model):
    new = load_mfr().iloc[:10].copy()
    new["factory"] = [101, 101, 102, 102, 103, 103, 104, 104, 105, 105]  # unseen levels: new draws
    y = mfr_model.random(rng=3, newdata=new)
    assert y.shape == (10,) and np.all(y >= 0) and np.all(y == np.round(y))
    np.testing.assert_array_equal(y, mfr_model.random(rng=3, newdata=new))
    sims = np.array([mfr_model.random(rng=s, newdata=new, offset=np.full(10, 2.0)) for s in range(200)])
    base = np.array([mfr_model.random(rng=s, newdata=new) for s in range(200)])
    assert sims.mean() / base.mean() == pytest.approx(np.exp(2.0), rel=0.15)


def test_random_newdata_errors(mfr_model):
    new = load_mfr().iloc[:4].copy()
    with pytest.raises(ValueError, match="newdata: column 'factory' is missing"):
        mfr_model.random(newdata=new.drop(columns="factory"))
    bad = new.copy()
    bad["supplier"] = ["Z", "A", "B", "C"]
    with pytest.raises(ValueError, match="levels not seen"):
        mfr_model.random(newdata=bad)
    with pytest.raises(ValueError, match="newdata: column 'time_dev' is missing"):
        mfr_model.random(newdata=new.drop(columns="time_dev"))
    with pytest.raises(ValueError, match="newdata: weights, binomial_size and offset apply only to new rows"):
        mfr_model.random(offset=np.zeros(100))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            {"weights": 1.5},
            "weights: poisson prior weights must be positive integers, and are not in rows 0, 1, 2, 3",
        ),
        (
            {"weights": 0},
            "weights: prior weights must be positive, and are not in rows 0, 1, 2, 3 "
            "(remove those rows of newdata)",
        ),
        ({"weights": [1, 1, np.nan, 1]}, "weights: contains NaN; give a value for every row of newdata"),
        ({"binomial_size": 3}, "binomial_size: only valid with distribution='binomial'"),
    ],
)
def test_random_newdata_weights_are_checked_as_fitglme_checks_them(mfr_model, kwargs, message):
    """They were not: weights 1.5 drew non-integer Poisson counts, and negative ones -0."""
    new = load_mfr().iloc[:4]
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        mfr_model.random(newdata=new, rng=0, **kwargs)


def test_random_newdata_binomial_sizes_are_checked(fitted):
    cbpp = fitted("cbpp_binomial")
    new = cbpp.variables.iloc[:3]
    for size in (2.5, 0, -3):
        with pytest.raises(ValueError) as err:
            cbpp.random(newdata=new, rng=0, binomial_size=size)
        # the rows are named (by newdata's labels), as every InputError names them
        assert str(err.value) == (
            f"binomial_size: must be positive integers, and are not in rows 0, 1, 2 (first: {size:g}; "
            "remove those rows of newdata)"
        )
    draws = cbpp.random(newdata=new, rng=0, binomial_size=[4, 5, 6])
    assert np.all((draws >= 0) & (draws <= 1)) and np.allclose(draws * [4, 5, 6], np.rint(draws * [4, 5, 6]))


def test_random_accepts_newdata_positionally_like_matlab(mfr_model):
    new = load_mfr().iloc[:6]
    y = mfr_model.random(new)  # glme.random(tblnew)
    assert y.shape == (6,) and np.all(y >= 0)


def test_the_refit_warm_start_hessian_is_computed_by_the_first_refit_only():
    """fitglme does not pay for the refit preconditioner (2P gradient evaluations); the first
    refit computes it at the refitted model's optimum, and later refits reuse that matrix."""
    m = ppl_glmm.fitglme(
        load_mfr(), "defects ~ 1 + newprocess + time_dev + (1|factory)", distribution="Poisson"
    )
    assert m._ws.hess_inv_start == {}
    m2 = m.refit(m.random(rng=1))
    hinv = m._ws.hess_inv_start["laplace"]
    assert hinv.shape == (m._result.x.size,) * 2 and np.all(np.linalg.eigvalsh(hinv) > 0)
    m2.refit(m.random(rng=2))
    assert m._ws.hess_inv_start["laplace"] is hinv


def test_a_refit_does_not_stop_at_a_flat_point_uphill():
    """A bug hunt's singular two-term Poisson refit: a line-search step of 1869 landed on a flat
    region 311 log-likelihood units uphill, where the gradient is ~0 too, and BFGS's gradient test
    stopped there (beta0 = -1191.8, converged=True). Only points no higher than the best so far
    may meet the test: the refit equals a fresh fit of the same response."""
    import warnings

    from ppl_glmm import GLMMWarning

    rng = np.random.default_rng(114)
    g = np.repeat(np.arange(10), 6).astype(str)
    h = np.tile(np.arange(6), 10).astype(str)
    x, w, off = rng.normal(size=60), rng.integers(1, 3, 60).astype(float), rng.uniform(-0.3, 0.3, 60)
    eta = 0.8 + rng.normal(0, 0.5, 10)[np.repeat(np.arange(10), 6)] + off
    df = pd.DataFrame({"y": rng.poisson(w * np.exp(eta)) / w, "x": x, "g": g, "h": h, "w": w, "off": off})
    kw = {"distribution": "poisson", "weights": "w", "offset": "off"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GLMMWarning)
        small = ppl_glmm.fitglme(df, "y ~ 1 + (1|g)", **kw)
        big = ppl_glmm.fitglme(df, "y ~ 1 + (1|g) + (1|h)", **kw)  # singular: sd(h) ~ 4e-10
        ys = small.random(rng=8763579550078684524)
        refitted = big.refit(ys)
        fresh = ppl_glmm.fitglme(df.assign(y=ys), "y ~ 1 + (1|g) + (1|h)", **kw)
    assert refitted.log_likelihood == pytest.approx(fresh.log_likelihood, abs=1e-6)
    assert refitted.log_likelihood >= small.refit(ys).log_likelihood - 1e-6  # it contains the small model
    assert abs(refitted.coefficients.Estimate.iloc[0]) < 5


@pytest.mark.parametrize(
    "response,kwargs",
    [
        ("y", {}),
        ("y", {"fit_method": "reml"}),
        ("k", {"distribution": "poisson"}),
        ("k", {"distribution": "poisson", "fit_method": "mpl"}),
        ("k", {"distribution": "poisson", "fit_method": "quadrature", "n_agq": 5}),
    ],
)
def test_a_refit_of_a_singular_fit_leaves_the_boundary(response, kwargs):
    """At theta = 0 the objective is even in theta, so its gradient is 0: refits warm-started there
    stayed at a zero variance, reporting convergence, where fresh fits of the same response found
    one (normal: 8 of 20 simulated responses, up to 1.4 logLik units; parametric bootstrap SDs all
    0). A term on the boundary now starts where a fresh fit starts."""
    import warnings

    rng = np.random.default_rng(0)
    d = pd.DataFrame({"g": pd.Categorical(np.repeat(np.arange(10), 6).astype(str)), "x": rng.normal(size=60)})
    d["y"] = 1 + 0.5 * d.x + rng.normal(size=60)  # no group effect: the fits are singular
    d["k"] = rng.poisson(np.exp(0.5 + 0.3 * d.x))
    formula = f"{response} ~ 1 + x + (1|g)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = ppl_glmm.fitglme(d, formula, **kwargs)
        assert m.singular
        interior = 0
        for seed in range(8):
            y = m.random(rng=seed)
            refit = m.refit(y)
            fresh = ppl_glmm.fitglme(d.assign(**{response: y}), formula, **kwargs)
            tol = 1e-5 if kwargs.get("fit_method") == "mpl" else 1e-8  # PL: pl_tolerance
            assert refit.log_likelihood == pytest.approx(fresh.log_likelihood, abs=tol)
            assert refit.singular == fresh.singular
            interior += not fresh.singular
    assert interior >= 1  # some responses support a variance (the refits found it too)


def test_a_refit_ending_at_a_correlation_of_one_leaves_the_boundary():
    """(1 + x|g) refits that ended with theta_22 = 0 (correlation +-1) stayed there, 0.1 logLik
    units below fresh fits that found a slope variance; replacing the whole term by the fresh
    start lost its good intercept SD, so the zero entry alone is moved off the boundary too."""
    import warnings

    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(15), 20)
    x = rng.normal(size=300)
    d = pd.DataFrame(
        {"y": 1 + 0.5 * x + rng.normal(0, 0.5, 15)[g] + rng.normal(size=300), "x": x, "g": g.astype(str)}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = ppl_glmm.fitglme(d, "y ~ x + (1+x|g)")
        for seed in (8, 21):
            y = m.random(rng=seed)
            fresh = ppl_glmm.fitglme(d.assign(y=y), "y ~ x + (1+x|g)")
            assert not fresh.singular
            assert m.refit(y).log_likelihood == pytest.approx(fresh.log_likelihood, abs=1e-8)


def test_random_with_newdata_refuses_a_numeric_predictor_given_as_text():
    """random(newdata) converted a text column silently to numbers where predict(newdata) refuses
    it; both now run the same dtype check (one newdata design)."""
    m = fit_case("mfr_poisson_effects")
    new = load_mfr().head(10)
    new = new.assign(time_dev=new["time_dev"].astype(str))
    for call in (lambda: m.random(new, rng=0), lambda: m.predict(new)):
        with pytest.raises(
            ppl_glmm.InputTypeError, match=r"newdata: column 'time_dev' is numeric in the fitted"
        ):
            call()


def test_random_of_a_quasi_dispersion_fit_warns_that_its_draws_carry_none():
    """A Poisson MPL fit with dispersion_flag estimated Dispersion 2.1, but random() draws y | b
    from the Poisson: refits of the draws estimated 0.9-1.1, silently. random warns now (once for
    the posterior-predictive draws of to_inference_data, not once per draw)."""
    import warnings

    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(10), 20)
    x = rng.normal(size=g.size)
    mu = np.exp(0.5 + 0.4 * x + rng.normal(scale=0.5, size=10)[g])
    y = rng.negative_binomial(2.0, 2.0 / (2.0 + mu))  # overdispersed counts
    d = pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})
    kw = {"distribution": "poisson", "fit_method": "mpl"}
    m = ppl_glmm.fitglme(d, "y ~ x + (1|g)", dispersion_flag=True, **kw)
    assert m.dispersion > 1.5
    with pytest.warns(
        ppl_glmm.GLMMWarning, match=r"random: this poisson fit estimated a dispersion .*no overdispersion"
    ):
        draw = m.random(rng=1)
    assert m.refit(draw).dispersion < 0.8 * m.dispersion  # what the warning says
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m.to_inference_data(draws=5)
    assert sum("no overdispersion" in str(w.message) for w in caught) == 1
    plain = ppl_glmm.fitglme(d, "y ~ x + (1|g)", **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain.random(rng=1)


def test_negative_binomial_draws_are_right_at_every_theta_up_to_the_poisson_limit():
    """PyMC's NB2 sampler forms p = theta / (theta + mu), which is 1.0 in floating point at theta =
    1e16 (the Poisson limit a fit ends at): every draw of mean 0.5 was 0, P(0) = 1 for e^-0.5. The
    gamma-Poisson draws are exact at every theta: zeros, mean and variance mu + mu^2/theta."""
    import pymc as pm

    from ppl_glmm.families import _negative_binomial_dist

    n = 20_000
    for theta in (2.0, 1e8, 1e16):
        k = pm.draw(_negative_binomial_dist(np.full(n, 0.5), np.full(n, theta), (n,)), random_seed=3)
        p0 = (theta / (theta + 0.5)) ** theta if theta < 1e6 else np.exp(-0.5)
        assert np.mean(k == 0) == pytest.approx(p0, abs=0.015)  # SE ~ 0.0035
        assert k.mean() == pytest.approx(0.5, abs=0.025)
        assert k.var() == pytest.approx(0.5 + 0.25 / theta, rel=0.06)


def test_a_refit_of_a_fit_at_the_poisson_limit_also_fits_from_a_fresh_start():
    """The NB fit of agq_poisson ends at its Poisson limit (theta 1e16; glmmTMB's logLik agrees).
    A refit to a response drawn from the Poisson fit stayed at theta 1e16 (converged, logLik
    -361.4519), where a fresh fit of that response finds theta ~104 and -361.3725."""
    import warnings

    d = _data("agq_poisson.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nb = ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution="negative_binomial")
        po = ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution="poisson")
        y = po.random(rng=0)
        refit = nb.refit(y)
        fresh = ppl_glmm.fitglme(d.assign(y=y), "y ~ x + (1|g)", distribution="negative_binomial")
    assert nb.nb_theta > 1e15
    assert fresh.nb_theta < 1e3
    assert refit.log_likelihood == pytest.approx(fresh.log_likelihood, abs=1e-6)
    assert refit.nb_theta == pytest.approx(fresh.nb_theta, rel=1e-3)
