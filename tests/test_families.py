"""Gamma, inverse Gaussian and negative binomial families; reciprocal, power and custom links (issue 7).

* Each family's compiled log-likelihood equals MATLAB's formula (matlab-glme.md 3.2), with weights,
  and its eta- and phi-derivatives equal finite differences of it.
* The exact gradient of the Laplace objective equals central finite differences for every new
  family, including negative binomial's separate dispersion path and a model with several terms.
* Links: power links (0 is log), mu_eta, MATLAB's warnings; a custom link built from PyTensor ops
  reproduces the built-in one.
* Support checks name the rows; refit and random work for each family without recompiling.
"""

import pickle

import numpy as np
import pandas as pd
import pytest
import scipy.special as sps
import scipy.stats as stats
from reference_cases import gamma_reciprocal_data

import ppl_glmm
from ppl_glmm.api import _prepare
from ppl_glmm.families import LINKS, get_link, power_link


def _data(seed: int = 0, G: int = 12, m: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), m)
    h = rng.integers(0, 5, G * m)
    x = rng.normal(size=G * m)
    b = rng.normal(0, 0.4, G)
    mu = np.exp(0.8 + 0.4 * x + b[g])
    w = rng.integers(1, 4, G * m).astype(float)
    return pd.DataFrame(
        {
            "g": g.astype(str),
            "h": h.astype(str),
            "x": x,
            "w": w,
            "ygam": rng.gamma(3 * w, mu / (3 * w)),
            "yig": rng.wald(mu, 4 * w),
            "k": rng.negative_binomial(2.0, 2.0 / (2.0 + mu)),
        }
    )


def _problem(df, formula, distribution, link=None, weights=None):
    ws, key, _ = _prepare(
        df,
        formula,
        distribution=distribution,
        link=link,
        fit_method="laplace",
        dummy_var_coding="reference",
        binomial_size=None,
        weights=weights,
        offset=None,
        exclude=None,
        options={},
    )
    d = ws.design
    return ws, ws.new_problem(key, ws.dist.observed_value(d.y, d.weights, d.binomial_size), swap=False)


def _matlab_loglik(family: str, y, mu, w, a):
    """MATLAB's conditional log-likelihoods (a = sigma for gamma/IG, theta for NB), per row."""
    if family == "gamma":
        s2 = a * a
        return (w / s2) * (np.log(y * w / (mu * s2)) - y / mu) - np.log(y) - sps.gammaln(w / s2)
    if family == "inverse_gaussian":
        s2 = a * a
        return -w * (y - mu) ** 2 / (2 * s2 * mu**2 * y) + 0.5 * np.log(w / (2 * np.pi * s2 * y**3))
    k = y * w  # NB: k = w y ~ NB2(w mu, w theta)
    size = w * a
    return stats.nbinom.logpmf(k, size, size / (size + w * mu))


@pytest.mark.parametrize(
    "family,column", [("gamma", "ygam"), ("inverse_gaussian", "yig"), ("negative_binomial", "k")]
)
def test_log_likelihood_is_matlabs_formula_with_weights(family, column):
    df = _data()
    _, problem = _problem(df, f"{column} ~ x + (1|g)", family, link="log", weights="w")
    rng = np.random.default_rng(1)
    eta = rng.normal(0.8, 0.5, len(df))
    for a in (0.3, 1.7):
        phi = np.full(len(df), np.log(a))
        d = problem.obs(eta, problem.y, problem.w, problem.trials, phi)
        y = df[column].to_numpy()  # the response (for NB the count is k = w y)
        want = _matlab_loglik(family, y, np.exp(eta), df["w"].to_numpy(), a)
        np.testing.assert_allclose(d[0], want, rtol=1e-12, atol=1e-12)
        # derivatives in eta (orders 1-3) and in phi against central differences of the order below
        for k, hi in enumerate(d[1:4]):
            h = 1e-6
            up = problem.obs(eta + h, problem.y, problem.w, problem.trials, phi)[k]
            dn = problem.obs(eta - h, problem.y, problem.w, problem.trials, phi)[k]
            np.testing.assert_allclose(hi, (up - dn) / (2 * h), rtol=1e-6, atol=1e-6)
        for k in range(3):
            h = 1e-6
            up = problem.obs(eta, problem.y, problem.w, problem.trials, phi + h)[k]
            dn = problem.obs(eta, problem.y, problem.w, problem.trials, phi - h)[k]
            np.testing.assert_allclose(d[4 + k], (up - dn) / (2 * h), rtol=1e-6, atol=1e-6)


GRADIENT_CASES = [
    ("ygam ~ x + (1|g)", "gamma", "log", None),
    ("ygam ~ x + (1 + x|g)", "gamma", "log", "w"),
    ("ygam ~ x + (1|g)", "gamma", None, None),  # canonical: reciprocal link
    ("yig ~ x + (1|g) + (1|h)", "inverse_gaussian", "log", "w"),
    ("k ~ x + (1|g)", "negative_binomial", None, None),
    ("k ~ x + (1 + x|g) + (1|h)", "negative_binomial", None, "w"),
]


@pytest.mark.parametrize("formula,family,link,weights", GRADIENT_CASES)
def test_exact_gradient_matches_finite_differences(formula, family, link, weights):
    df = _data(3)
    if link is None and family == "gamma":
        df["ygam"] = 1.0 / (1.0 + 0.2 * df["ygam"])  # a response whose reciprocal is well inside (0, inf)
    if weights is not None and family == "negative_binomial":
        df["w"] = 1.0  # counts k = w y must stay integers
    ws, problem = _problem(df, formula, family, link=link, weights=weights)
    rng = np.random.default_rng(2)
    p, nt = problem.p, problem.n_theta
    mu0 = ws.dist.clip_mean(ws.dist.mu_start(ws.design.y, ws.design.binomial_size))
    beta = np.linalg.lstsq(ws.design.X, ws.link.link_np(mu0), rcond=None)[0]
    x = np.concatenate([beta + rng.normal(0, 0.02, p), 0.3 + 0.1 * rng.random(nt), [np.log(0.8)]])
    f0, g = problem.value_and_grad(x)
    assert np.isfinite(f0)
    fd = np.empty_like(x)
    for j in range(x.size):
        h = 1e-5 * max(1.0, abs(x[j]))
        e = np.zeros_like(x)
        e[j] = h
        problem.u_start[:] = 0
        fp = problem.value(x + e)
        problem.u_start[:] = 0
        fm = problem.value(x - e)
        fd[j] = (fp - fm) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=2e-6, atol=2e-6 * max(1.0, np.max(np.abs(fd))))


def test_power_links():
    assert power_link(0) is LINKS["log"]
    assert power_link(1) is LINKS["identity"]
    assert power_link(-1) is LINKS["reciprocal"]
    half = power_link(0.5)
    assert half.name == "power(0.5)" and half.power == 0.5
    eta = np.array([0.5, 1.0, 2.0])
    np.testing.assert_allclose(half.inverse_np(eta), eta**2)
    np.testing.assert_allclose(half.link_np(eta**2), eta)
    for link in (half, power_link(-2), LINKS["reciprocal"], *LINKS.values()):
        e = np.array([0.3, 0.9, 1.7])
        fd = (link.inverse_np(e + 1e-6) - link.inverse_np(e - 1e-6)) / 2e-6
        np.testing.assert_allclose(link.mu_eta(e), fd, rtol=1e-6, err_msg=link.name)
    assert pickle.loads(pickle.dumps(power_link(-2))).name == "power(-2)"
    # the exponent itself survives pickling, not its 6-digit name
    assert pickle.loads(pickle.dumps(power_link(1 / 3))).power == 1 / 3
    near_identity = pickle.loads(pickle.dumps(power_link(1.0000001)))
    assert near_identity.power == 1.0000001 and near_identity.name == "power(1)"
    gamma = ppl_glmm.families.get_distribution("gamma")
    assert get_link(None, gamma).name == "reciprocal"  # MATLAB's canonical power -1
    assert get_link(None, ppl_glmm.families.get_distribution("InverseGaussian")).name == "power(-2)"
    assert get_link("power(-2)", gamma).power == -2.0


def test_link_warnings_follow_matlab():
    df = _data()
    with pytest.warns(ppl_glmm.GLMMWarning, match="link: 'identity' with distribution 'gamma'"):
        _prepare_only(df, "ygam ~ x + (1|g)", "gamma", "identity")
    with pytest.warns(ppl_glmm.GLMMWarning, match=r"'power\(0.5\)' needs a positive linear predictor"):
        _prepare_only(df, "k ~ x + (1|g)", "negative_binomial", 0.5)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _prepare_only(df, "ygam ~ x + (1|g)", "gamma", None)  # canonical reciprocal: no warning
        _prepare_only(df, "yig ~ x + (1|g)", "inverse_gaussian", -2)


def test_a_unit_interval_link_warns_when_the_responses_average_at_least_one():
    """A logit/probit/cloglog/loglog link keeps a gamma, Poisson, NB or inverse Gaussian mean below
    1: with responses averaging 3.7 a gamma logit fit ended with every fitted mean 1.0000, an
    intercept of 36 and SEs of 5e6, reporting convergence. It now warns, before any work; binomial
    and responses averaging below 1 do not."""
    import warnings

    df = _data()
    for family, y, link in [
        ("gamma", "ygam", "logit"),
        ("negative_binomial", "k", "probit"),
        ("inverse_gaussian", "yig", "loglog"),
    ]:
        mean = df[y].mean()
        assert mean >= 1
        match = rf"^link: '{link}' keeps the means of a {family} model in \(0, 1\), "
        match += rf"but the responses average {mean:.4g};"
        with pytest.warns(ppl_glmm.GLMMWarning, match=match):
            _prepare_only(df, f"{y} ~ x + (1|g)", family, link)
    small = df.assign(ygam=df["ygam"] / (2 * df["ygam"].max()), k=(df["k"] > 6).astype(int))
    assert small["k"].mean() < 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _prepare_only(small, "ygam ~ x + (1|g)", "gamma", "logit")
        _prepare_only(small, "k ~ x + (1|g)", "poisson", "comploglog")
        _prepare_only(small, "k ~ x + (1|g)", "binomial", "probit")


def _prepare_only(df, formula, family, link):
    return _problem(df, formula, family, link=link)


def custom_logit_inverse(eta):
    import pytensor.tensor as pt

    return 1.0 / (1.0 + pt.exp(-eta))


def custom_logit(mu):
    return np.log(mu / (1.0 - mu))


def test_custom_link_from_pytensor_ops_matches_the_builtin_link():
    """cbpp with a hand-written logit (derivatives by PyTensor) against the built-in logit."""
    cbpp = pd.read_csv("tests/reference/data/cbpp.csv")
    kw = dict(distribution="binomial", binomial_size="size")
    builtin = ppl_glmm.fitglme(cbpp, "incidence ~ period + (1|herd)", **kw)
    link = {"inverse": custom_logit_inverse, "link": custom_logit, "name": "mylogit"}
    custom = ppl_glmm.fitglme(cbpp, "incidence ~ period + (1|herd)", link=link, **kw)
    assert custom.link == "mylogit"
    assert custom.log_likelihood == pytest.approx(builtin.log_likelihood, abs=1e-9)
    np.testing.assert_allclose(custom.coefficients.Estimate, builtin.coefficients.Estimate, rtol=1e-6)
    again = pickle.loads(pickle.dumps(custom))  # module-level callables pickle
    assert again.link == "mylogit"
    assert again.refit(custom.response()).log_likelihood == pytest.approx(custom.log_likelihood, abs=1e-9)


def test_custom_link_under_quadrature_matches_the_builtin_link():
    """The quadrature checks its (K, n) node values of eta through the link's NumPy inverse, which
    a custom link compiles for a vector: every custom-link quadrature fit but the normal family's
    raised 'Wrong number of dimensions: expected 1, got 2'."""
    cbpp = pd.read_csv("tests/reference/data/cbpp.csv")
    kw = dict(distribution="binomial", binomial_size="size", fit_method="quadrature", n_agq=9)
    builtin = ppl_glmm.fitglme(cbpp, "incidence ~ period + (1|herd)", **kw)
    link = {"inverse": custom_logit_inverse, "link": custom_logit, "name": "mylogit"}
    custom = ppl_glmm.fitglme(cbpp, "incidence ~ period + (1|herd)", link=link, **kw)
    assert custom.log_likelihood == pytest.approx(builtin.log_likelihood, abs=1e-9)
    np.testing.assert_allclose(custom.coefficients.Estimate, builtin.coefficients.Estimate, rtol=1e-6)
    eta = np.linspace(-3, 3, 12).reshape(3, 4)
    inverse = get_link(link, ppl_glmm.families.DISTRIBUTIONS["binomial"]).inverse_np
    np.testing.assert_allclose(inverse(eta), 1 / (1 + np.exp(-eta)), rtol=1e-14)


def _summed_inverse(eta):
    return custom_logit_inverse(eta).sum()


def _widened_inverse(eta):
    import pytensor.tensor as pt

    return custom_logit_inverse(eta)[:, None] * pt.ones((1, 2))


@pytest.mark.parametrize("inverse,shape", [(_summed_inverse, r"\(\)"), (_widened_inverse, r"\(56, 2\)")])
def test_custom_inverse_that_is_not_elementwise_is_refused(inverse, shape):
    """An inverse that sums or adds an axis failed with NumPy's IndexError or a broadcast error."""
    cbpp = pd.read_csv("tests/reference/data/cbpp.csv")
    link = {"inverse": inverse, "link": custom_logit}
    with pytest.raises(
        ppl_glmm.InputError,
        match=rf"link: the custom link's inverse\(eta\) returned an array of shape {shape}",
    ):
        ppl_glmm.fitglme(
            cbpp, "incidence ~ period + (1|herd)", distribution="binomial", binomial_size="size", link=link
        )


def custom_cloglog_inverse(eta):
    import pytensor.tensor as pt

    return 1.0 - pt.exp(-pt.exp(eta))


def custom_cloglog(mu):
    return np.log(-np.log1p(-mu))


def test_custom_link_whose_derivative_underflows_matches_the_builtin_link():
    """A hand-written complementary log-log on Bernoulli data with a steep covariate: at the GLM
    start d mu/d eta = exp(eta - exp(eta)) underflows on the largest eta, the working residuals
    (y - mu) / (d mu/d eta) reach ~1e200, and the data-scale SD start (a custom link has units as
    far as the engine knows) was ~1e45. The fit stayed there, 'converged', at logLik -1225.8
    against the built-in link's -82.73. The start now keeps the data's scale only where its
    objective beats the default start's."""
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(20), 10)
    x = 2.0 * rng.normal(size=200)
    b = rng.normal(scale=0.7, size=20)
    eta = -1.0 + x + b[g]
    y = (rng.uniform(size=200) < -np.expm1(-np.exp(eta))).astype(float)
    data = pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})
    builtin = ppl_glmm.fitglme(data, "y ~ x + (1|g)", distribution="binomial", link="comploglog")
    link = {"inverse": custom_cloglog_inverse, "link": custom_cloglog, "name": "mycll"}
    custom = ppl_glmm.fitglme(data, "y ~ x + (1|g)", distribution="binomial", link=link)
    assert custom.log_likelihood == pytest.approx(builtin.log_likelihood, abs=1e-8)
    np.testing.assert_allclose(custom.coefficients.Estimate, builtin.coefficients.Estimate, rtol=1e-5)


def custom_exp(eta):
    import pytensor.tensor as pt

    return pt.exp(eta)


def test_custom_link_whose_link_does_not_invert_its_inverse_is_refused():
    """link=np.log10 with inverse=pt.exp: the ML fit used only the inverse and still ended at the
    log link's optimum, but the start, MPL's start and the Bayesian default priors use
    link(mu), so a mismatch changed those silently. Refused before any work, with the fix."""
    cbpp = pd.read_csv("tests/reference/data/cbpp.csv")
    link = {"inverse": custom_exp, "link": np.log10, "name": "mylog"}
    match = r"link: the custom link's link and inverse do not invert each other: inverse\(link\("
    with pytest.raises(ppl_glmm.InputError, match=match):
        ppl_glmm.fitglme(cbpp, "incidence ~ period + (1|herd)", distribution="poisson", link=link)
    with pytest.raises(ppl_glmm.InputError, match=match):
        ppl_glmm.fitglme_bayes(cbpp, "incidence ~ period + (1|herd)", distribution="poisson", link=link)
    ok = ppl_glmm.fitglme(
        cbpp, "incidence ~ period + (1|herd)", distribution="poisson", link={**link, "link": np.log}
    )
    assert ok.log_likelihood == pytest.approx(
        ppl_glmm.fitglme(cbpp, "incidence ~ period + (1|herd)", distribution="poisson").log_likelihood,
        abs=1e-9,
    )


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"link": {"inverse": custom_logit_inverse}}, "link: a custom link is a mapping with keys"),
        (
            {"link": {"inverse": custom_logit_inverse, "link": custom_logit, "name": "logit"}},
            "new identifier",
        ),
        # aliases and other cases of built-in names too: a custom 'cloglog' logit displayed as
        # Cloglog, and model.link == 'cloglog' read back as the complementary log-log
        (
            {"link": {"inverse": custom_logit_inverse, "link": custom_logit, "name": "cloglog"}},
            "new identifier",
        ),
        (
            {"link": {"inverse": custom_logit_inverse, "link": custom_logit, "name": "Logit"}},
            "new identifier",
        ),
        (
            {"link": {"inverse": custom_logit_inverse, "link": custom_logit, "name": "inverse"}},
            "new identifier",
        ),
        ({"link": float("nan")}, "link: a power link needs a finite exponent"),
        ({"link": [1, 2]}, "link: expected a link name"),
    ],
)
def test_bad_links_are_refused(bad, match):
    cbpp = pd.read_csv("tests/reference/data/cbpp.csv")
    with pytest.raises((ValueError, TypeError), match=match):
        ppl_glmm.fitglme(
            cbpp, "incidence ~ period + (1|herd)", distribution="binomial", binomial_size="size", **bad
        )


@pytest.mark.parametrize(
    "family,column,value,match",
    [
        ("gamma", "ygam", 0.0, r"gamma responses must be > 0, and are not in rows 3, 10"),
        (
            "inverse_gaussian",
            "yig",
            -1.0,
            r"inverse Gaussian responses must be > 0, and are not in rows 3, 10",
        ),
        (
            "negative_binomial",
            "k",
            1.5,
            r"negative binomial responses \(times weights\) must be integer counts",
        ),
        (
            "negative_binomial",
            "k",
            -2.0,
            r"negative binomial responses must be >= 0, and are not in rows 3, 10",
        ),
    ],
)
def test_responses_outside_the_support_are_refused_naming_rows(family, column, value, match):
    df = _data()
    df[column] = df[column].astype(float)
    df.loc[[3, 10], column] = value
    with pytest.raises(ppl_glmm.InputError, match=match):
        ppl_glmm.fitglme(df, f"{column} ~ x + (1|g)", distribution=family)


def test_negative_binomial_weights_must_be_integers():
    df = _data()
    df.loc[5, "w"] = 1.5
    with pytest.raises(
        ppl_glmm.InputError, match="weights: negative_binomial prior weights must be positive integers"
    ):
        ppl_glmm.fitglme(df, "k ~ x + (1|g)", distribution="negative_binomial", weights="w")


@pytest.mark.parametrize(
    "family,column,link",
    [("gamma", "ygam", "log"), ("inverse_gaussian", "yig", "log"), ("negative_binomial", "k", None)],
)
def test_random_and_refit_without_recompiling(family, column, link, request):
    df = _data(5, G=20, m=8)
    model = ppl_glmm.fitglme(df, f"{column} ~ x + (1|g)", distribution=family, link=link)
    sim = model.random(rng=1)
    np.testing.assert_array_equal(sim, model.random(rng=1))
    assert np.all(sim >= 0 if family == "negative_binomial" else sim > 0)
    if family == "negative_binomial":
        np.testing.assert_array_equal(sim, np.rint(sim))
    unchanged = request.getfixturevalue("forbid_compilation")  # the sampler exists by now
    refits = [model.refit(model.random(rng=s)) for s in range(4)]
    assert unchanged()
    assert all(r.converged for r in refits)
    # refit of the original response reproduces the fit
    same = model.refit(model.response())
    assert same.log_likelihood == pytest.approx(model.log_likelihood, abs=1e-8)


def test_dispersion_reports():
    """gamma: MATLAB's Dispersion = sigma^2 with a sqrt(Dispersion) row; NB: theta has its own row,
    the MATLAB dispersion is fixed at 1, and theta counts as a covariance parameter (AIC's k)."""
    df = _data(5, G=20, m=8)
    gam = ppl_glmm.fitglme(df, "ygam ~ x + (1|g)", distribution="gamma", link="log")
    err = gam.covariance_parameters()[2][-1]
    assert list(err.Name) == ["sqrt(Dispersion)"]
    assert err.Estimate.iloc[0] == pytest.approx(np.sqrt(gam.dispersion))
    assert gam.dispersion_estimated and gam.num_covariance_parameters == 2
    nb = ppl_glmm.fitglme(df, "k ~ x + (1|g)", distribution="negative_binomial")
    err = nb.covariance_parameters()[2][-1]
    assert list(err.Name) == ["sqrt(Dispersion)", "theta"]
    assert err.Estimate.iloc[1] == pytest.approx(nb.nb_theta)
    assert err.Lower.iloc[1] < nb.nb_theta < err.Upper.iloc[1]
    assert nb.dispersion == 1.0 and not nb.dispersion_estimated
    assert nb.num_covariance_parameters == 2
    k = nb.num_coefficients + 2
    assert nb.model_criterion.AIC.iloc[0] == pytest.approx(-2 * nb.log_likelihood + 2 * k)


@pytest.mark.parametrize(
    "response, distribution, link, weights",
    [
        ("k", "poisson", "log", None),
        ("k", "poisson", "identity", None),
        ("ygam", "gamma", "log", "w"),
        ("ygam", "gamma", "reciprocal", None),
        ("yig", "inverse_gaussian", None, None),
        ("k", "negative_binomial", None, None),
    ],
)
def test_glm_start_is_the_glm_fit_the_joint_inner_step_gave(response, distribution, link, weights):
    """glm_start's Newton iteration on beta alone (p x p) converges where the inner step on the
    joint (u, beta) system with Lambda = 0 converged: the GLM's score vanishes there."""
    from ppl_glmm.engine.optimize import glm_start

    _, problem = _problem(_data(), f"{response} ~ x + (1|g) + (1|h)", distribution, link, weights)
    beta0 = np.linalg.lstsq(problem.X, np.full(problem.re.n, 0.5), rcond=None)[0]
    beta = glm_start(problem, beta0)
    problem.inner_beta, problem.beta_start = True, beta0  # the previous start: the joint system
    joint = problem.inner(None, np.zeros(problem.n_theta), 0.0).beta
    np.testing.assert_allclose(beta, joint, rtol=1e-9, atol=1e-11)
    d = problem.obs(
        problem.X @ beta + problem.offset, problem.y, problem.w, problem.trials, np.zeros(problem.re.n)
    )
    score = problem.X.T @ d[1]
    assert np.max(np.abs(score)) < 1e-6 * max(1.0, float(np.max(np.abs(problem.X.T @ np.abs(d[1])))))


# ---- random() where a drawn mean leaves the family's range ------------------------------------


@pytest.mark.parametrize("distribution", ["gamma", "inverse_gaussian"])
def test_random_gives_nan_where_a_drawn_mean_is_outside_the_range(distribution):
    """Under the reciprocal link a new level's b can make eta <= 0, a negative mean: gamma drew
    negative responses there (90 of 2000) and the inverse Gaussian raised NumPy's 'mean <= 0'. Those
    rows are NaN (MATLAB's generators give NaN for invalid parameters), with a warning counting
    them; the other rows are in the support, and the flagged rows are exactly those with eta <= 0."""
    m = ppl_glmm.fitglme(
        gamma_reciprocal_data(), "y ~ 1 + (1|g)", distribution=distribution, link="reciprocal"
    )
    new = pd.DataFrame({"g": [f"z{i}" for i in range(2000)]})
    with pytest.warns(ppl_glmm.GLMMWarning, match=r"random: \d+ of 2000 drawn means fell outside"):
        y = m.random(new, rng=2)
    nan = np.isnan(y)
    assert 50 < nan.sum() < 250  # 90 and 139 measured
    assert np.all(y[~nan] > 0)
    beta = float(m.coefficients["Estimate"].iloc[0])
    sd = float(np.sqrt(m.covariance_parameters()[0][0][0, 0]))
    expected = 2000 * sps.ndtr(-beta / sd)  # P(eta <= 0) for a new level
    assert nan.sum() == pytest.approx(expected, abs=4 * np.sqrt(expected))


def test_random_nan_warning_for_binomial_names_links_that_keep_the_range():
    """The hint named the log link, which can give p > 1 for a binomial."""
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(10), 20)
    y = rng.binomial(1, np.clip(0.5 + rng.normal(0, 0.15, 10)[g], 0.05, 0.95))
    with pytest.warns(ppl_glmm.GLMMWarning):
        m = ppl_glmm.fitglme(
            pd.DataFrame({"y": y, "g": g}), "y ~ 1 + (1|g)", distribution="binomial", link="identity"
        )
    new = pd.DataFrame({"g": [f"z{i}" for i in range(4000)]})
    with pytest.warns(ppl_glmm.GLMMWarning) as caught:
        m.random(new, rng=1)
    message = next(str(w.message) for w in caught if "drawn means fell outside" in str(w.message))
    assert message.endswith("A logit, probit, comploglog or loglog link keeps every mean in range")


def test_binomial_log_link_draws_nan_where_the_mean_exceeds_one():
    """PyMC's binomial draws every trial a success for p > 1: random() gave proportions of exactly 1
    there, with no warning (the log link was taken as one that cannot leave the range)."""
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(12), 20)
    x = rng.uniform(0, 2, g.size)
    y = rng.binomial(1, np.exp(-1.3 + 0.5 * x + rng.normal(0, 0.1, 12)[g]))
    with pytest.warns(ppl_glmm.GLMMWarning, match="can give means outside"):
        m = ppl_glmm.fitglme(
            pd.DataFrame({"y": y, "x": x, "g": g}), "y ~ x + (1|g)", distribution="binomial", link="log"
        )
    beta = m.coefficients["Estimate"].to_numpy()
    x_new = np.array([0.5, 1.0, -beta[0] / beta[1] + 1.0])  # the last: eta = beta_x > 0, p > 1
    new = pd.DataFrame({"x": np.repeat(x_new, 200), "g": ["z"] * 600})
    with pytest.warns(ppl_glmm.GLMMWarning, match="drawn means fell outside the binomial range"):
        p = m.random(new, rng=5, binomial_size=10).reshape(3, 200)
    assert np.isnan(p[2]).mean() > 0.5  # a new level's b ~ N(0, sd) rarely brings eta below 0
    assert not np.isnan(p[0]).any() and 0 < np.nanmean(p[0]) < 1


def test_random_under_a_scale_free_link_draws_as_before():
    """The guard is only compiled for links that can leave the range: a log-link gamma model's
    sampler has one output, and its draws have no NaN."""
    m = ppl_glmm.fitglme(gamma_reciprocal_data(), "y ~ 1 + (1|g)", distribution="gamma", link="log")
    y = m.random(rng=3)
    assert not m._ws.sampler.guarded and np.all(y > 0)


def test_power_links_are_defined_for_a_positive_linear_predictor_only():
    """mu = eta^2 (power 0.5) is also a mean for eta < 0: fits and refits ended on that branch
    (here 4 of 20 fits had min eta < 0, refits and fresh fits on different branches). R's power
    links need eta > 0, as the link warning says; g^-1 is NaN below 0, an infeasible point."""
    import warnings

    from ppl_glmm.families import power_link

    link = power_link(0.5)
    np.testing.assert_array_equal(link.inverse_np(np.array([-1.0, 0.0, 2.0])), [np.nan, np.nan, 4.0])
    rng = np.random.default_rng(1)
    g, x = np.repeat(np.arange(15), 8), rng.normal(size=120)
    d = pd.DataFrame({"g": g.astype(str), "x": x})
    d["y"] = rng.poisson(np.exp(0.3 + 0.5 * x + rng.normal(0, 0.5, 15)[g])).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = ppl_glmm.fitglme(d, "y ~ 1 + x + (1|g)", distribution="poisson", link=0.5)
        assert m._result.eta.min() > 0
        for seed in range(20):
            y = m.random(rng=seed)
            if np.isnan(y).any():  # a drawn mean with eta <= 0: flagged NaN
                continue
            refit = m.refit(y)
            fresh = ppl_glmm.fitglme(d.assign(y=y), "y ~ 1 + x + (1|g)", distribution="poisson", link=0.5)
            assert refit._result.eta.min() > 0 and fresh._result.eta.min() > 0
            if refit.converged and fresh.converged:
                assert refit.log_likelihood == pytest.approx(fresh.log_likelihood, abs=1e-6)


def test_random_of_a_normal_model_with_a_power_link_warns_where_eta_is_not_positive():
    """mu = eta^2 is defined for eta > 0 only: a normal model's draws were NaN where a drawn eta
    fell below 0, with no warning (the guard ran only for families with a bounded range)."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(10), 10)
    eta = 0.6 + rng.normal(0, 0.4, 10)[g]
    d = pd.DataFrame({"g": g, "y": eta**2 + rng.normal(0, 0.1, 100)})
    with pytest.warns(ppl_glmm.GLMMWarning, match="needs a positive linear predictor"):
        m = ppl_glmm.fitglme(d, "y ~ 1 + (1|g)", link=0.5)
    new = pd.DataFrame({"g": [f"z{i}" for i in range(3000)]})
    with pytest.warns(
        ppl_glmm.GLMMWarning, match=r"random: \d+ of 3000 drawn linear predictors fell outside"
    ):
        y = m.random(new, rng=1)
    beta = float(m.coefficients["Estimate"].iloc[0])
    sd = float(np.sqrt(m.covariance_parameters()[0][0][0, 0]))
    expected = 3000 * stats.norm.cdf(-beta / sd)  # P(eta <= 0) for a new level
    assert np.isnan(y).sum() == pytest.approx(expected, abs=5 * np.sqrt(expected) + 5)


def test_points_outside_the_range_are_rejected_before_the_compiled_likelihood():
    """The compiled likelihood raises at a mean outside the family's range, and an exception from
    Numba-compiled code leaks the arrays it allocated: 28 such points per fit of a 200,000-row
    gamma model on the reciprocal link grew the process by 400 MB a fit. A NumPy check rejects them
    first; the fit evaluates the same points with no exception."""
    import copy
    import math

    import ppl_glmm.pymc_model as pm_model
    from ppl_glmm.families import DISTRIBUTIONS, mean_range_check

    gamma, binomial = DISTRIBUTIONS["gamma"], DISTRIBUTIONS["binomial"]
    assert (
        mean_range_check(gamma, LINKS["log"]) is None and mean_range_check(binomial, LINKS["probit"]) is None
    )
    assert mean_range_check(DISTRIBUTIONS["normal"], LINKS["reciprocal"]) is None
    check = mean_range_check(gamma, LINKS["reciprocal"])
    assert check(np.array([0.5, 2.0]), 0.0) and not check(np.array([0.5, -1e-9]), 0.0)
    assert not check(np.array([0.5, np.nan]), 0.0) and not check(np.array([0.5]), 800.0)
    assert pickle.loads(pickle.dumps(check))(np.array([0.5]), 0.0) and copy.deepcopy(check) == check

    calls = {"ok": 0, "raised": 0}
    original = pm_model.ObservationFunction.__call__

    def counted(self, *args):
        try:
            out = original(self, *args)
        except Exception:
            calls["raised"] += 1
            raise
        calls["ok"] += 1
        return out

    d = gamma_reciprocal_data()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pm_model.ObservationFunction, "__call__", counted)
        m = ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution="gamma", link="reciprocal")
    assert calls["ok"] > 0 and calls["raised"] == 0 and math.isfinite(m.log_likelihood)
