"""The Bayesian PyMC model: same likelihood graph as the ML model, default priors, names and coords."""

import numpy as np
import pandas as pd
import pymc as pm
import pytest
from bayes_family_cases import FAMILY_CASES, family_fit

import ppl_glmm
from ppl_glmm import InputError
from ppl_glmm.bayes.model import build_bayes_model, point_from_ml, transformed_point
from ppl_glmm.bayes.priors import resolve_priors
from ppl_glmm.names import ModelNames


def _bayes_graph(m, priors=None, centered=False):
    ws = m._ws
    names = ModelNames.from_design(ws.design, ws.dist)
    prior_set = resolve_priors(ws.design, ws.dist, ws.link, names, priors)
    return build_bayes_model(ws.design, ws.dist, ws.link, names, prior_set, (centered,) * len(names.terms))


def _pointwise_loglik(model, point):
    """log p(y_i | parameters) for every observation, at a constrained point of ``model``."""
    y = model.observed_RVs[0]
    logp = model.logp(vars=[y], jacobian=False, sum=False)[0]
    fn = model.compile_fn(logp, inputs=model.value_vars, on_unused_input="ignore")
    return np.asarray(fn(transformed_point(model, point)))


@pytest.mark.parametrize("centered", [False, True], ids=["noncentered", "centered"])
@pytest.mark.parametrize(
    "name",
    [
        "mfr_poisson_effects",
        "binary_slope",
        "sleepstudy_lmm",
        "cbpp_probit",
        "grouseticks_nested_crossed",
        *FAMILY_CASES,
    ],
)
def test_both_models_give_the_same_log_likelihood_at_corresponding_points(fitted, name, centered):
    """At any ML point (theta with negative diagonal entries included) and its image under
    point_from_ml, the per-observation log-likelihoods of the two PyMC models agree to rounding,
    with the random effects non-centred (u) or centred (b). The gamma, inverse Gaussian and negative
    binomial cases move sigma (which also scales the random effects) or theta off the ML estimate."""
    m = family_fit(name) if name in FAMILY_CASES else fitted(name)
    ws, res = m._ws, m._result
    d = ws.design  # this model's response in the ML model's pm.Data container (a refit of a model
    # sharing the workspace may have left another one there)
    ws.graph.set_observed(ws.dist.observed_value(res.y, d.weights, d.binomial_size))
    rng = np.random.default_rng(7)
    beta = res.beta + rng.normal(0, 0.05, res.beta.size)
    theta = res.theta + rng.normal(0, 0.05, res.theta.size)
    diag = ws.layout.is_diagonal()
    theta[diag] = np.abs(theta[diag]) + 0.1
    theta[np.flatnonzero(diag)[0]] *= -1  # the ML sign symmetry: Lambda and -Lambda give the same fit
    anc = res.ancillary * 1.1 if res.ancillary is not None else None  # sigma or NB's theta
    u = res.u + rng.normal(0, 0.2, res.u.size)
    ml_point = {"beta": beta}
    start = 0
    for r, (term, sl) in enumerate(zip(ws.design.terms, ws.layout.slices())):
        ml_point[f"theta_{r}"] = theta[sl]
        ml_point[f"u_{r}"] = u[start : start + term.size].reshape(term.n_levels, term.q_r)
        start += term.size
    if ws.dist.has_ancillary:
        ml_point[ws.dist.ancillary.name] = np.asarray(anc)
    ll_ml = _pointwise_loglik(ws.graph.model, ml_point)

    graph = _bayes_graph(m, centered=centered)
    point = point_from_ml(graph, ws.layout, beta, theta, anc, u)
    assert all((t.b in point) == centered and (t.u in point) != centered for t in graph.names.terms)
    if ws.dist.has_ancillary:
        assert point[ws.dist.ancillary.name] == anc
    ll_bayes = _pointwise_loglik(graph.model, point)
    assert ll_ml.shape == (ws.design.n,)
    np.testing.assert_allclose(ll_bayes, ll_ml, rtol=1e-12, atol=1e-10)


def test_sds_are_positive_and_the_cholesky_diagonal_is_positive(fitted):
    """No sign symmetry reaches the posterior: SDs are positive variables and the LKJ Cholesky
    factor has a positive diagonal; point_from_ml flips Lambda's negative columns."""
    m = fitted("binary_slope")
    graph = _bayes_graph(m)
    model = graph.model
    assert {v.name for v in model.free_RVs} == {"beta", "u_subject", "chol_subject"}
    theta = m._result.theta.copy()
    theta[0] = -abs(theta[0])
    point = point_from_ml(graph, m._ws.layout, m._result.beta, theta, 1.0, m._result.u)
    L = np.zeros((2, 2))
    L[np.tril_indices(2)] = point["chol_subject"]
    assert np.all(np.diag(L) > 0)
    Lam = m._ws.layout.lambdas(theta)[0]
    np.testing.assert_allclose(L @ L.T, Lam @ Lam.T, rtol=1e-12)  # the same covariance
    assert str(model.rvs_to_transforms[model["chol_subject"]].__class__.__name__) == "CholeskyCovPacked"


def test_centred_terms_sample_b_directly(fitted):
    model = _bayes_graph(fitted("sleepstudy_lmm"), centered=True).model
    assert {v.name for v in model.free_RVs} == {"beta", "chol_Subject", "b_Subject", "sigma"}
    assert type(model["b_Subject"].owner.op).__name__ == "MvNormalRV"
    assert model.named_vars_to_dims["b_Subject"] == ("Subject_level", "Subject_coef")


def test_names_and_coords_match_the_ml_fit(fitted):
    m = fitted("sleepstudy_lmm")
    model = _bayes_graph(m).model
    assert list(model.coords["coef"]) == m.coefficient_names
    assert list(model.coords["Subject_coef"]) == ["(Intercept)", "Days"]
    assert list(model.coords["Subject_pair"]) == ["Days, (Intercept)"]
    assert list(model.coords["Subject_level"]) == list(m._ws.design.terms[0].levels)
    assert model.named_vars_to_dims["b_Subject"] == ("Subject_level", "Subject_coef")
    assert {v.name for v in model.deterministics} == {"sd_Subject", "corr_Subject", "b_Subject"}
    assert {v.name for v in model.free_RVs} == {"beta", "chol_Subject", "u_Subject", "sigma"}
    assert model.observed_RVs[0].name == "Reaction"


def test_two_terms_on_one_grouping_variable_get_distinct_labels(fitted):
    names = ModelNames.from_design(fitted("sleepstudy_uncorrelated")._ws.design, True)
    assert [t.label for t in names.terms] == ["Subject", "Subject_2"]
    assert [t.group for t in names.terms] == ["Subject", "Subject"]
    assert names.covariance_vars() == ["sd_Subject", "sd_Subject_2", "sigma"]


def test_default_priors_are_scaled_to_the_data(mfr_model, fitted):
    """rstanarm/bambi autoscaling: slopes N(0, 2.5 s_y / sd(x)), the intercept centred at g(mean y)
    and widened for uncentred columns, SDs HalfNormal(2.5 s_y / sd(column)), sigma HalfStudentT(4, sd y)."""
    d = mfr_model._ws.design
    graph = _bayes_graph(mfr_model)
    params = graph.priors.beta.params
    X = d.X
    np.testing.assert_allclose(params["sigma"][1:], 2.5 / X[:, 1:].std(axis=0))
    ybar = (d.y.sum() + 0.25) / d.n  # MATLAB's starting mean for Poisson, always positive
    assert params["mu"][0] == pytest.approx(np.log(ybar))
    widen = np.sum((params["sigma"][1:] * X[:, 1:].mean(axis=0)) ** 2)
    assert params["sigma"][0] == pytest.approx(np.sqrt(2.5**2 + widen))
    np.testing.assert_allclose(graph.priors.sd[0].params["sigma"], [2.5])

    sleep = fitted("sleepstudy_lmm")
    ds = sleep._ws.design
    g2 = _bayes_graph(sleep)
    s_y = ds.y.std()
    np.testing.assert_allclose(
        g2.priors.sd[0].params["sigma"], [2.5 * s_y, 2.5 * s_y / ds.terms[0].T[:, 1].std()]
    )
    assert g2.priors.ancillary.params == {"nu": 4.0, "sigma": pytest.approx(s_y)}
    assert g2.priors.lkj_eta == (2.0,)
    table = g2.priors.table(g2.names)
    assert list(table["Parameter"]) == [
        "beta[(Intercept)]",
        "beta[Days]",
        "sd_Subject",
        "corr_Subject",
        "sigma",
    ]
    assert table.loc[3, "Prior"] == "LKJ(eta=2)"
    assert (table["Source"] == "default").all()


def test_priors_are_overridden_by_parameter_and_by_coefficient_name(mfr_model):
    graph = _bayes_graph(
        mfr_model,
        {"newprocess": pm.StudentT.dist(nu=3, mu=0, sigma=1), "sd_factory": pm.Exponential.dist(2.0)},
    )
    model = graph.model
    assert {v.name for v in model.free_RVs} == {"beta_rest", "beta_newprocess", "u_factory", "sd_factory"}
    assert model["beta"] in model.deterministics
    assert list(model.coords["coef_rest"]) == [c for c in mfr_model.coefficient_names if c != "newprocess"]
    table = graph.priors.table(graph.names).set_index("Parameter")
    assert table.loc["beta[newprocess]", "Source"] == "user"
    assert table.loc["beta[newprocess]", "Prior"].startswith("StudentT")
    assert table.loc["sd_factory", "Prior"].startswith("Exponential")
    assert table.loc["beta[time_dev]", "Source"] == "default"
    # the user's distribution objects are not registered or renamed
    user = pm.Normal.dist(0, 5)
    _bayes_graph(mfr_model, {"beta": user})
    assert user.name is None


def test_prior_on_all_coefficients_by_beta(mfr_model):
    graph = _bayes_graph(mfr_model, {"beta": pm.Normal.dist(0, 5)})
    beta = graph.model["beta"]
    assert beta in graph.model.free_RVs
    logp = pm.logp(beta, np.zeros(6)).eval()
    np.testing.assert_allclose(logp, np.full(6, -np.log(5 * np.sqrt(2 * np.pi))))


def test_default_priors_of_gamma_inverse_gaussian_and_negative_binomial():
    """The linear predictor's unit is s_y = m |g'(m)| (m the mean response): 1 for the log link, 1/m
    for gamma's reciprocal link, 2/m^2 for inverse Gaussian's mu^-2; sigma ~ HalfStudentT(4,
    sd(y)/sqrt(v(mean y))); NB's theta ~ InverseGamma(0.4, 0.3)."""
    from ppl_glmm.bayes.priors import default_priors
    from ppl_glmm.families import get_link

    gam = family_fit("gamma_log_slope")
    d = gam._ws.design
    x, y = d.X[:, 1], d.y
    g = _bayes_graph(gam).priors
    np.testing.assert_allclose(g.beta.params["sigma"][1], 2.5 / x.std())
    assert g.beta.params["mu"][0] == pytest.approx(np.log(y.mean()))
    np.testing.assert_allclose(g.sd[0].params["sigma"], [2.5, 2.5 / x.std()])
    assert g.ancillary.family == "HalfStudentT"
    assert g.ancillary.params == {"nu": 4.0, "sigma": pytest.approx(y.std() / y.mean())}  # the CV

    rec = _bayes_graph(family_fit("gamma_reciprocal")).priors  # canonical link 1/mu
    m = y.mean()
    assert rec.beta.params["mu"][0] == pytest.approx(1 / m)
    widen = (2.5 / (m * x.std()) * x.mean()) ** 2
    np.testing.assert_allclose(
        rec.beta.params["sigma"], [np.sqrt((2.5 / m) ** 2 + widen), 2.5 / (m * x.std())]
    )
    np.testing.assert_allclose(rec.sd[0].params["sigma"], [2.5 / m])

    ig = family_fit("inverse_gaussian_log")
    yi = ig._ws.design.y
    names = ModelNames.from_design(ig._ws.design, ig._ws.dist)
    beta, sds, anc = default_priors(ig._ws.design, ig._ws.dist, ig._ws.link, names)
    assert anc.params["sigma"] == pytest.approx(yi.std() / yi.mean() ** 1.5)
    np.testing.assert_allclose(sds[0].params["sigma"], [2.5])
    beta, sds, _ = default_priors(ig._ws.design, ig._ws.dist, get_link(-2.0, ig._ws.dist), names)
    s_y = 2 / yi.mean() ** 2  # m |g'(m)| for g(mu) = mu^-2
    assert beta.params["mu"][0] == pytest.approx(yi.mean() ** -2)
    np.testing.assert_allclose(beta.params["sigma"][1], 2.5 * s_y / x.std())
    np.testing.assert_allclose(sds[0].params["sigma"], [2.5 * s_y])

    nb = family_fit("negative_binomial_log")
    graph = _bayes_graph(nb)
    k = nb._ws.design.y
    assert graph.priors.beta.params["mu"][0] == pytest.approx(np.log((k.sum() + 0.25) / k.size))
    np.testing.assert_allclose(graph.priors.sd[0].params["sigma"], [2.5])
    table = graph.priors.table(graph.names)
    assert list(table["Parameter"]) == ["beta[(Intercept)]", "beta[x]", "sd_g", "nb_theta"]
    assert table.loc[3, "Prior"] == "InverseGamma(alpha=0.4, beta=0.3)"
    theta_prior = graph.model["nb_theta"]
    # 1/theta ~ Gamma(0.4, rate 0.3): P(theta < 1) = P(Gamma > 1)
    from scipy import stats

    cdf = float(pm.math.exp(pm.logcdf(theta_prior, 1.0)).eval())
    assert cdf == pytest.approx(stats.gamma(0.4, scale=1 / 0.3).sf(1.0), rel=1e-10)


def test_names_and_ancillary_variables_of_the_new_families():
    nb = _bayes_graph(family_fit("negative_binomial_log"))
    assert {v.name for v in nb.model.free_RVs} == {"beta", "u_g", "sd_g", "nb_theta"}
    assert nb.names.ancillary == "nb_theta" and not nb.names.has_dispersion
    assert nb.names.covariance_vars() == ["sd_g", "nb_theta"]
    assert nb.model.observed_RVs[0].name == "k"
    gam = _bayes_graph(family_fit("gamma_log_slope"))
    assert {v.name for v in gam.model.free_RVs} == {"beta", "u_g", "chol_g", "sigma"}
    assert gam.names.ancillary == "sigma" and gam.names.has_dispersion
    assert gam.names.covariance_vars() == ["sd_g", "corr_g", "sigma"]


def test_ml_warm_start_carries_sigma_and_theta():
    """At the ML estimates: sigma scales the random effects (sd = sigma |Lambda|) and is the start
    of sigma; NB's theta is the start of nb_theta and does not scale them (sd = |Lambda|)."""
    for name in ("gamma_reciprocal", "inverse_gaussian_log", "negative_binomial_log"):
        m = family_fit(name)
        r = m._result
        point = point_from_ml(_bayes_graph(m), m._ws.layout, r.beta, r.theta, r.ancillary, r.u)
        var = m._ws.dist.ancillary.name
        assert float(point[var]) == r.ancillary
        scale = r.ancillary if var == "sigma" else 1.0
        np.testing.assert_allclose(point["sd_g"], [scale * abs(r.theta[0])], rtol=1e-14)
        sd_ml = m.covariance_parameters()[2][0]["Estimate"].iloc[0]
        np.testing.assert_allclose(point["sd_g"], [sd_ml], rtol=1e-12)


def test_ancillary_priors_are_overridden_by_name_and_checked():
    nb = family_fit("negative_binomial_log")
    graph = _bayes_graph(nb, {"nb_theta": pm.Gamma.dist(2.0, 0.5)})
    row = graph.priors.table(graph.names).set_index("Parameter").loc["nb_theta"]
    assert row["Source"] == "user" and row["Prior"].startswith("Gamma")
    logp = pm.logp(graph.model["nb_theta"], 3.0).eval()
    assert logp == pytest.approx(pm.logp(pm.Gamma.dist(2.0, 0.5), 3.0).eval())
    with pytest.raises(InputError, match=r"unknown parameter 'sigma'.*'nb_theta'"):
        _bayes_graph(nb, {"sigma": pm.HalfNormal.dist(1.0)})
    with pytest.raises(InputError, match=r"priors\['nb_theta'\]: improper flat priors"):
        _bayes_graph(nb, {"nb_theta": pm.HalfFlat.dist()})
    with pytest.raises(InputError, match=r"priors\['nb_theta'\]: theta needs a prior on positive values"):
        _bayes_graph(nb, {"nb_theta": pm.Normal.dist(0.0, 1.0)})
    with pytest.raises(InputError, match=r"shape \(2,\) does not fit nb_theta"):
        _bayes_graph(nb, {"nb_theta": pm.Exponential.dist(1.0, shape=2)})
    gam = family_fit("gamma_reciprocal")
    graph = _bayes_graph(gam, {"sigma": pm.HalfNormal.dist(2.0)})
    assert graph.priors.table(graph.names).set_index("Parameter").loc["sigma", "Source"] == "user"
    with pytest.raises(InputError, match="unknown parameter 'nb_theta'"):
        _bayes_graph(gam, {"nb_theta": pm.Exponential.dist(1.0)})


def test_gamma_sigma_prior_uses_the_weighted_mean_response():
    """bayes.md: sigma's scale is sd(y)/sqrt(v(mean y)) with mean y the weighted mean for gamma and
    inverse Gaussian (as the intercept's); the code used the unweighted mean."""
    from ppl_glmm.bayes.priors import default_priors

    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(10), 8)
    w = rng.integers(1, 5, 80).astype(float)
    mu = np.exp(1 + rng.normal(0, 0.3, 10)[g])
    y = rng.gamma(3 * w, mu / (3 * w)) * np.where(w > 2, 3.0, 1.0)
    m = ppl_glmm.fitglme(
        pd.DataFrame({"y": y, "g": g.astype(str), "w": w}), "y ~ 1 + (1|g)", distribution="gamma", weights="w"
    )
    d = m._ws.design
    names = ModelNames.from_design(d, m._ws.dist)
    *_, sigma = default_priors(d, m._ws.dist, m._ws.link, names)
    wmean = np.average(d.y, weights=d.weights)
    assert abs(wmean - d.y.mean()) > 0.1 * wmean
    assert sigma.params["sigma"] == pytest.approx(d.y.std() / wmean, rel=1e-12)
