"""The Bayesian PyMC model: same likelihood graph as the ML model, default priors, names and coords."""

import numpy as np
import pymc as pm
import pytest

from ppl_glmm.bayes.model import build_bayes_model, point_from_ml, transformed_point
from ppl_glmm.bayes.priors import resolve_priors
from ppl_glmm.names import ModelNames


def _bayes_graph(m, priors=None, centered=False):
    ws = m._ws
    names = ModelNames.from_design(ws.design, ws.dist.has_dispersion)
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
    ["mfr_poisson_effects", "binary_slope", "sleepstudy_lmm", "cbpp_probit", "grouseticks_nested_crossed"],
)
def test_both_models_give_the_same_log_likelihood_at_corresponding_points(fitted, name, centered):
    """At any ML point (theta with negative diagonal entries included) and its image under
    point_from_ml, the per-observation log-likelihoods of the two PyMC models agree to rounding,
    with the random effects non-centred (u) or centred (b)."""
    m = fitted(name)
    m._problem()  # this model's response in the ML model's pm.Data container
    ws, res = m._ws, m._result
    rng = np.random.default_rng(7)
    beta = res.beta + rng.normal(0, 0.05, res.beta.size)
    theta = res.theta + rng.normal(0, 0.05, res.theta.size)
    diag = ws.layout.is_diagonal()
    theta[diag] = np.abs(theta[diag]) + 0.1
    theta[np.flatnonzero(diag)[0]] *= -1  # the ML sign symmetry: Lambda and -Lambda give the same fit
    sigma = res.sigma * 1.1
    u = res.u + rng.normal(0, 0.2, res.u.size)
    ml_point = {"beta": beta}
    start = 0
    for r, (term, sl) in enumerate(zip(ws.design.terms, ws.layout.slices())):
        ml_point[f"theta_{r}"] = theta[sl]
        ml_point[f"u_{r}"] = u[start : start + term.size].reshape(term.n_levels, term.q_r)
        start += term.size
    if ws.dist.has_dispersion:
        ml_point["sigma"] = np.asarray(sigma)
    ll_ml = _pointwise_loglik(ws.graph.model, ml_point)

    graph = _bayes_graph(m, centered=centered)
    point = point_from_ml(graph, ws.layout, beta, theta, sigma, u)
    assert all((t.b in point) == centered and (t.u in point) != centered for t in graph.names.terms)
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
