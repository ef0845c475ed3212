"""fit_method='quadrature' (adaptive Gauss-Hermite quadrature, lme4's glmer nAGQ = K).

Reference values: tests/reference/agq_reference.json, written by tests/reference/agq_reference.R
(lme4 1.1-31 at tight settings). lme4's logLik for nAGQ > 1 omits the saturated log-likelihood
sum_i log p(y_i | mu_i = y_i); the JSON's "logLik_all_constants" adds it back (ppl_glmm keeps every
constant, as for Laplace).
"""

from __future__ import annotations

import json
import re
from functools import cache

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st
from reference_cases import REF, _cbpp, _data, _mfr
from scipy.integrate import quad
from scipy.optimize import minimize
from scipy.special import expit

import ppl_glmm
from ppl_glmm import pymc_model
from ppl_glmm.engine.quadrature import QuadratureProblem, gauss_hermite
from ppl_glmm.errors import InputError, InputTypeError
from ppl_glmm.fit_methods import FitSettings

CBPP = ("incidence ~ period + (1|herd)", {"distribution": "binomial", "binomial_size": "size"})
MFR = (
    "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)",
    {"distribution": "poisson", "dummy_var_coding": "effects"},
)
CASES = {  # JSON key -> (data, formula, fitglme keywords)
    "cbpp_agq": (_cbpp, *CBPP),
    "mfr_agq": (_mfr, *MFR),
    "binary_agq": (lambda: _data("binary_slope.csv"), "y ~ x + (1|subject)", {"distribution": "binomial"}),
    "binary_slope_agq": (
        lambda: _data("binary_slope.csv"),
        "y ~ x + (0 + x|subject)",
        {"distribution": "binomial"},
    ),
}


@cache
def reference() -> dict:
    return json.loads((REF / "agq_reference.json").read_text())


@cache
def fit(case: str, K: int, **extra):
    load, formula, kw = CASES[case]
    return ppl_glmm.fitglme(load(), formula, fit_method="quadrature", n_agq=K, **kw, **extra)


def problems(model, Ks):
    """Laplace and quadrature problems (K in Ks) loaded with the model's data."""
    ws = model._ws
    d = ws.design
    k = ws.dist.observed_value(model._result.y, d.weights, d.binomial_size)
    lap = ws.new_problem("laplace", k, swap=False)
    return lap, [ws.new_problem("quadrature", k, swap=False, settings=FitSettings(n_agq=K)) for K in Ks]


def central_difference(problem, x, step=1e-4):
    """Central differences of the objective, Richardson-extrapolated (error O(step^4))."""
    g = np.empty_like(x)
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = step * max(1.0, abs(x[j]))
        d1 = (problem.value(x + e) - problem.value(x - e)) / (2 * e[j])
        d2 = (problem.value(x + e / 2) - problem.value(x - e / 2)) / e[j]
        g[j] = (4 * d2 - d1) / 3
    return g


# ---- the rule ------------------------------------------------------------------------------


def test_gauss_hermite_rule_is_lme4s():
    z, w = gauss_hermite(1)
    assert (z[0], w[0]) == (0.0, 1.0)
    # lme4 1.1-31 GHrule(25), first row (printed with 17 digits)
    z, w = gauss_hermite(25)
    assert z[0] == pytest.approx(-8.7175976783995885, rel=1e-14)
    assert w[0] == pytest.approx(1.5300389979987010e-17, rel=1e-12)
    assert z[12] == 0.0 and np.array_equal(z, -z[::-1]) and np.array_equal(w, w[::-1])
    for K in (2, 9, 25, 100):
        z, w = gauss_hermite(K)
        # E Z^2 = 1, E Z^4 = 3, E Z^6 = 15 under N(0, 1): exact for K >= 4
        assert w.sum() == pytest.approx(1.0, abs=1e-15)
        assert w @ z**2 == pytest.approx(1.0, abs=1e-13)
        if K >= 4:
            assert w @ z**4 == pytest.approx(3.0, abs=1e-12) and w @ z**6 == pytest.approx(15.0, abs=1e-11)


# ---- objective and gradient ------------------------------------------------------------------


@pytest.fixture(scope="module")
def cbpp_laplace():
    return ppl_glmm.fitglme(_cbpp(), CBPP[0], **CBPP[1])


def test_one_node_is_the_laplace_objective_and_gradient(cbpp_laplace):
    lap, (q1,) = problems(cbpp_laplace, [1])
    x = cbpp_laplace._result.x + np.array([0.1, -0.2, 0.05, 0.3, -0.15])
    f_l, g_l = lap.value_and_grad(x)
    f_q, g_q = q1.value_and_grad(x)
    assert f_q == pytest.approx(f_l, rel=1e-12)
    np.testing.assert_allclose(g_q, g_l, rtol=1e-12, atol=1e-12 * np.max(np.abs(g_l)))
    assert isinstance(q1, QuadratureProblem) and q1.n_agq == 1


def test_quadrature_at_one_point_matches_lme4s_agq_deviance():
    """f at lme4's optimum = glmer(devFunOnly = TRUE, nAGQ = K)(theta, beta) / 2 - saturated: the same
    objective at the same point, free of either optimizer's tolerance."""
    for case in CASES:
        r = reference()[case]
        model = fit(case, 9)
        for key, e in r.items():
            if not key.startswith("nAGQ_"):
                continue
            K = int(key.removeprefix("nAGQ_"))
            (prob,) = problems(model, [K])[1]
            x = np.r_[e["fixef"], np.ravel(e["theta"])]
            expected = e["devfun_at_opt"] / 2 - (r["saturated"] if K > 1 else 0.0)
            # measured: <= 3e-13 for K > 1; 9e-8 at K = 1 (lme4's Laplace deviance function at
            # tolPwrss = 1e-14 stops its inner iteration earlier)
            assert prob.value(x) == pytest.approx(expected, abs=1e-10 if K > 1 else 2e-7), (case, K)


def _simulated(seed: int = 0, G: int = 12, m: int = 6) -> pd.DataFrame:
    """Gamma and negative binomial (theta = 2) responses with a random intercept of SD 0.4."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), m)
    x = rng.normal(size=G * m)
    mu = np.exp(0.8 + 0.4 * x + rng.normal(0, 0.4, G)[g])
    return pd.DataFrame(
        {"g": g, "x": x, "ygam": rng.gamma(3.0, mu / 3.0), "k": rng.negative_binomial(2.0, 2.0 / (2.0 + mu))}
    )


def _gradient_cases():
    sleep = lambda: _data("sleepstudy.csv")  # noqa: E731
    return {
        # phi = log sigma scales the random effects (MATLAB's sigma^2 D)
        "gamma": (
            _simulated,
            "ygam ~ x + (1|g)",
            {"distribution": "gamma", "link": "log"},
            [0.1, -0.1, 0.3, 0.2],
        ),
        # phi = log theta enters the likelihood only (phi_scales_re = False)
        "negative_binomial": (
            _simulated,
            "k ~ x + (1|g)",
            {"distribution": "negative_binomial"},
            [0.1, -0.1, 0.3, 0.3],
        ),
        "binomial": (_cbpp, *CBPP, [0.1, -0.2, 0.05, 0.3, -0.15]),
        "poisson": (_mfr, *MFR, [0.05] * 6 + [0.2]),
        "normal": (sleep, "Reaction ~ Days + (1|Subject)", {}, [3.0, -1.0, 0.1, 0.2]),
        "normal_log": (sleep, "Reaction ~ Days + (1|Subject)", {"link": "log"}, [0.01, -0.001, 0.1, 0.1]),
        "binomial_covariate": (
            lambda: _cbpp().assign(x=lambda d: d["size"] / 10.0),
            "incidence ~ period + (0 + x|herd)",
            CBPP[1],
            [0.1, -0.2, 0.05, 0.3, -0.05],
        ),
    }


@pytest.mark.parametrize("case", list(_gradient_cases()))
def test_gradient_matches_central_differences(case):
    load, formula, kw, dx = _gradient_cases()[case]
    model = ppl_glmm.fitglme(load(), formula, **kw)
    lap, qs = problems(model, [9, 25])
    x = model._result.x + np.asarray(dx)  # away from the optimum: every component non-zero
    for q in qs:
        f, g = q.value_and_grad(x)
        fd = central_difference(q, x)
        # measured: <= 1.7e-10 relative to max|g| (the differences' own error), NB 1.4e-10
        assert np.max(np.abs(g - fd)) < 2e-9 * max(1.0, np.max(np.abs(g))), case
        f_l = lap.value(x)
        if case == "normal":  # identity link: the integrand is Gaussian, every rule is exact
            assert f == pytest.approx(f_l, rel=1e-12)
        else:  # quadrature moves the objective by O(1e-2) here
            assert abs(f - f_l) > 1e-3


def test_gradient_with_a_dispersion_that_does_not_scale_the_random_effects():
    """phi_scales_re = False (negative binomial's log theta): phi only enters the likelihood."""
    sleep = _data("sleepstudy.csv")
    model = ppl_glmm.fitglme(sleep, "Reaction ~ Days + (1|Subject)", link="log")
    lap, (q,) = problems(model, [9])
    for p in (lap, q):
        p.phi_scales_re = False
    x = model._result.x + np.array([0.01, -0.001, 0.0, 0.1])
    x[2] = 0.1 / 25  # theta alone now carries the random effects' SD (0.1 on the log scale)
    a0 = q.inner(*q.unpack(x)).avals
    a1 = q.inner(*q.unpack(x + np.r_[0, 0, 0, 0.1])).avals
    np.testing.assert_array_equal(a0, a1)  # A does not depend on phi
    f, g = q.value_and_grad(x)
    # measured: 6e-11 relative to max|g|
    assert np.max(np.abs(g - central_difference(q, x))) < 2e-9 * np.max(np.abs(g))
    assert abs(f - lap.value(x)) > 1e-6


def test_quadrature_converges_to_the_exact_integral(cbpp_laplace):
    """At fixed parameters the K-node objective tends to the marginal likelihood computed by
    one-dimensional integration (scipy's quad) of the binomial likelihood, constants included."""
    m = cbpp_laplace
    x = m._result.x
    beta, theta = x[:4], x[4]
    data = _cbpp()
    eta0 = m.design_matrix("fixed") @ beta
    k, n = data["incidence"].to_numpy(), data["size"].to_numpy()
    codes = pd.factorize(data["herd"], sort=True)[0]
    exact = 0.0
    for j in range(codes.max() + 1):
        rows = codes == j

        def log_integrand(u, rows=rows):
            p = expit(eta0[rows] + theta * u)
            return st.binom.logpmf(k[rows], n[rows], p).sum() + st.norm.logpdf(u)

        mode = minimize(lambda v: -log_integrand(v[0]), [0.0]).x[0]
        top = log_integrand(mode)
        scaled = lambda u, top=top: np.exp(log_integrand(u) - top)  # noqa: E731
        val = quad(scaled, -np.inf, np.inf, epsabs=0, epsrel=1e-13)[0]
        exact += top + np.log(val)
    _, qs = problems(m, [1, 9, 25])
    errors = [abs(-q.value(x) - exact) for q in qs]
    # measured: Laplace 4.2e-2, K = 9 2.6e-6, K = 25 3e-14
    assert errors[0] > 1e-2 and errors[1] < 1e-5 and errors[2] < 1e-11


# ---- fits against glmer(nAGQ = K) ------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("K", [1, 9, 25])
def test_fit_matches_glmer(case, K):
    r = reference()[case]
    e = r[f"nAGQ_{K}"]
    m = fit(case, K)
    assert m.converged and m.fit_method == "quadrature"
    # measured: |logLik - lme4| <= 1.3e-12 for K > 1, <= 7e-9 for K = 1; fixed effects <= 3e-6
    # relative (the optimizers' tolerance), SD <= 2.4e-7, conditional SEs <= 1.1e-7
    assert m.log_likelihood == pytest.approx(e["logLik_all_constants"], abs=1e-9 if K > 1 else 2e-8)
    if K > 1:  # what glmer prints: without the saturated log-likelihood
        assert m.log_likelihood - r["saturated"] == pytest.approx(e["logLik"], abs=1e-9)
    est = m.coefficients["Estimate"].to_numpy()
    np.testing.assert_allclose(est, e["fixef"], rtol=1e-5, atol=1e-7)
    sd = float(np.sqrt(m.covariance_parameters()[0][0][0, 0]))
    assert sd == pytest.approx(np.ravel(e["sd"])[0], rel=1e-5)
    np.testing.assert_allclose(m.coefficients["SE"], e["se_rx"], rtol=1e-5)
    b = m.random_effects()["Estimate"].to_numpy()
    np.testing.assert_allclose(b, np.asarray(e["ranef"]), rtol=0, atol=1e-5 * np.max(np.abs(b)))


@pytest.mark.parametrize("case", ["cbpp_agq", "mfr_agq", "binary_slope_agq"])
def test_joint_hessian_ses_match_glmers_default_vcov(case):
    """lme4's default vcov() for nAGQ > 0 is the finite-difference Hessian of the AGQ deviance."""
    e = reference()[case]["nAGQ_25"]
    m = fit(case, 25, covariance_method="jointhessian")
    # measured: <= 1.7e-6 relative
    np.testing.assert_allclose(m.coefficients["SE"], e["se"], rtol=2e-5)


def test_one_node_fit_is_the_laplace_fit(cbpp_laplace):
    m = fit("cbpp_agq", 1)
    assert m.log_likelihood == pytest.approx(cbpp_laplace.log_likelihood, abs=1e-9)
    np.testing.assert_allclose(m._result.x, cbpp_laplace._result.x, rtol=1e-5)


def test_covariance_parameter_interval_uses_the_quadrature_objective():
    """Wald SE of log(sd) = 1/sqrt(curvature) of the profiled quadrature objective."""
    m = fit("cbpp_agq", 25)
    _, _, stats = m.covariance_parameters(alpha=0.05)
    lo, est, hi = stats[0].loc[0, ["Lower", "Estimate", "Upper"]]
    assert lo < est < hi
    se_log = (np.log(hi) - np.log(est)) / st.norm.ppf(0.975)
    problem = m._problem()
    assert isinstance(problem, QuadratureProblem) and problem.n_agq == 25

    def profile(log_sd):
        return minimize(lambda b: problem.value(np.r_[b, np.exp(log_sd)]), m._result.beta, method="BFGS").fun

    h = 0.02
    curv = (profile(np.log(est) + h) - 2 * profile(np.log(est)) + profile(np.log(est) - h)) / h**2
    assert se_log == pytest.approx(1 / np.sqrt(curv), rel=0.02)
    assert est == pytest.approx(0.6475184722, rel=1e-6)  # glmer nAGQ = 25


# ---- refit, random, display ------------------------------------------------------------------


def test_refit_and_random_compile_nothing_and_match_a_fresh_fit(monkeypatch):
    import pytensor

    m = fit("cbpp_agq", 9)
    y = m.random(rng=3)  # the sampler is compiled once, lazily
    fresh_data = _cbpp()
    fresh_data["incidence"] = np.rint(y * fresh_data["size"]).astype(int)
    fresh = ppl_glmm.fitglme(fresh_data, CBPP[0], fit_method="quadrature", n_agq=9, **CBPP[1])
    before = dict(pymc_model.COMPILE_COUNT)

    def boom(*args, **kwargs):
        raise AssertionError("pytensor.function called during refit")

    monkeypatch.setattr(pytensor, "function", boom)
    monkeypatch.setattr(pytensor.compile.function, "function", boom, raising=False)
    refitted = m.refit(y)
    for seed in range(3):
        assert np.isfinite(m.refit(m.random(rng=seed)).log_likelihood)
    assert pymc_model.COMPILE_COUNT == before
    assert refitted.fit_method == "quadrature" and refitted._settings.n_agq == 9
    assert refitted.log_likelihood == pytest.approx(fresh.log_likelihood, abs=1e-8)
    np.testing.assert_allclose(
        refitted.coefficients["Estimate"], fresh.coefficients["Estimate"], rtol=2e-5, atol=1e-7
    )


def test_display_names_the_method():
    text = str(fit("cbpp_agq", 9))
    assert re.search(r"FitMethod +Quadrature\n", text)
    assert "-91.983" in text  # the log-likelihood with all constants (lme4 prints -50.005)


# ---- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "formula,found",
    [
        ("incidence ~ period + (1|herd) + (1|period)", "2 terms"),
        ("incidence ~ 1 + (1 + period|herd)", "4 columns"),
    ],
)
def test_models_quadrature_cannot_fit_are_refused_before_any_work(formula, found, monkeypatch):
    from ppl_glmm import api

    def no_work(*args, **kwargs):
        raise AssertionError("the PyMC model was built")

    monkeypatch.setattr(api.Workspace, "build", no_work)
    with pytest.raises(InputError) as err:
        ppl_glmm.fitglme(_cbpp(), formula, fit_method="quadrature", n_agq=9, **CBPP[1])
    msg = str(err.value)
    assert "fit_method='quadrature'" in msg and "use fit_method='laplace'" in msg.lower() and found in msg


@pytest.mark.parametrize(
    "options,error,match",
    [
        ({"n_agq": 0}, InputError, "n_agq: must be >= 1, got 0"),
        ({"n_agq": 101}, InputError, "n_agq: at most 100"),
        ({"n_agq": 2.5}, InputTypeError, "n_agq: expected an integer"),
        ({"n_agq": True}, InputTypeError, "n_agq: expected an integer"),
        ({"fit_method": "laplace", "n_agq": 9}, InputError, "n_agq: applies to fit_method='quadrature'"),
        (
            {"fit_method": "approximatelaplace", "covariance_method": "jointhessian"},
            InputError,
            "needs fit_method='laplace' or 'quadrature'",
        ),
    ],
)
def test_options_are_validated(options, error, match):
    kw = {"fit_method": "quadrature", **options}
    with pytest.raises(error, match=match):
        ppl_glmm.fitglme(_cbpp(), CBPP[0], **kw, **CBPP[1])
