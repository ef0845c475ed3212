"""fit_method='quadrature' (adaptive Gauss-Hermite quadrature, lme4's glmer nAGQ = K).

Reference values (lme4 1.1-31 at tight settings): the cbpp_agq, agq_poisson and agq_bernoulli entries
of tests/reference/families_reference.json (make_reference_families.R: glmer nAGQ = 1, 9, 25 and the
exact marginal likelihood by integrate()), and tests/reference/agq_reference.json
(agq_reference.R: lme4's AGQ objective at a fixed point, nAGQ = 2, Poisson with effects coding, a
covariate as the term's column). lme4's logLik for nAGQ > 1 omits the saturated log-likelihood
sum_i log p(y_i | mu_i = y_i); both files record it and the sum ("logLik_full",
"logLik_all_constants"), which ppl_glmm reports (every constant, as for Laplace).
"""

from __future__ import annotations

import json
import re
import warnings
from functools import cache

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st
from reference_cases import REF, _cbpp, _data, _mfr, inverse_gaussian_data
from scipy.integrate import quad
from scipy.optimize import minimize
from scipy.special import expit

import ppl_glmm
from ppl_glmm.engine.quadrature import QuadratureProblem, gauss_hermite
from ppl_glmm.errors import InputError, InputTypeError
from ppl_glmm.fit_methods import FitSettings

CBPP = ("incidence ~ period + (1|herd)", {"distribution": "binomial", "binomial_size": "size"})
MFR = (
    "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)",
    {"distribution": "poisson", "dummy_var_coding": "effects"},
)
CASES = {  # reference key -> (data, formula, fitglme keywords)
    "cbpp_agq": (_cbpp, *CBPP),
    "agq_poisson": (lambda: _data("agq_poisson.csv"), "y ~ x + (1|g)", {"distribution": "poisson"}),
    "agq_bernoulli": (lambda: _data("agq_bernoulli.csv"), "y ~ x + (1|g)", {"distribution": "binomial"}),
    "mfr_agq": (_mfr, *MFR),
    "binary_slope_agq": (
        lambda: _data("binary_slope.csv"),
        "y ~ x + (0 + x|subject)",
        {"distribution": "binomial"},
    ),
}
FAMILIES_CASES = ["cbpp_agq", "agq_poisson", "agq_bernoulli"]  # in families_reference.json
OWN_CASES = ["cbpp_agq", "mfr_agq", "binary_slope_agq"]  # in agq_reference.json


@cache
def families_reference() -> dict:
    return json.loads((REF / "families_reference.json").read_text())


@cache
def own_reference() -> dict:
    return json.loads((REF / "agq_reference.json").read_text())


@cache
def fit(case: str, K: int, **extra):
    load, formula, kw = CASES[case]
    return ppl_glmm.fitglme(load(), formula, fit_method="quadrature", n_agq=K, **kw, **extra)


def problems(model, Ks, kernels: bool | None = None):
    """Laplace and quadrature problems (K in Ks) loaded with the model's data; ``kernels`` forces
    the quadrature's Numba kernels (True) or its NumPy steps (False)."""
    ws = model._ws
    d = ws.design
    k = ws.dist.observed_value(model._result.y, d.weights, d.binomial_size)
    lap = ws.new_problem("laplace", k, swap=False)
    qs = [ws.new_problem("quadrature", k, swap=False, settings=FitSettings(n_agq=K)) for K in Ks]
    if kernels is not None:
        for q in qs:
            q.kernels = kernels
    return lap, qs


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
    for case in OWN_CASES:
        r = own_reference()[case]
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


@pytest.mark.parametrize("kernels", [False, True], ids=["numpy", "numba"])
@pytest.mark.parametrize("case", list(_gradient_cases()))
def test_gradient_matches_central_differences(case, kernels):
    load, formula, kw, dx = _gradient_cases()[case]
    model = ppl_glmm.fitglme(load(), formula, **kw)
    lap, qs = problems(model, [9, 25], kernels=kernels)
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


@pytest.mark.parametrize("kernels", [False, True], ids=["numpy", "numba"])
@pytest.mark.parametrize("case", ["gamma", "negative_binomial", "normal_log", "binomial_covariate"])
def test_one_node_gradient_is_the_laplace_gradient_for_every_outer_column(case, kernels):
    """With K = 1 the quadrature's gradient (its own scalar-term Laplace gradient, in the Numba
    kernel and in NumPy) equals the general Laplace gradient: phi scaling the random effects
    (gamma, normal), phi in the likelihood only (NB), a covariate as the term's column."""
    load, formula, kw, dx = _gradient_cases()[case]
    model = ppl_glmm.fitglme(load(), formula, **kw)
    lap, (q1,) = problems(model, [1], kernels=kernels)
    x = model._result.x + np.asarray(dx)
    mode_l, g_l = lap.mode_and_gradient(x)
    mode_q, g_q = q1.mode_and_gradient(x)
    assert mode_q.objective == pytest.approx(mode_l.objective, rel=1e-12)
    # the inner residual's term is in both (Laplace: -Q_u du; quadrature: at the z = 0 node);
    # measured: <= 1.2e-15 relative to max|g|, and 4e-16 for the mode's slope dv
    assert np.max(np.abs(g_q - g_l)) < 1e-13 * np.max(np.abs(g_l))
    # the mode's slope in the parameters (the next inner step's predicted start)
    assert np.max(np.abs(mode_q.dv - mode_l.dv)) < 1e-13 * np.max(np.abs(mode_l.dv))


@pytest.mark.parametrize("case", ["gamma", "binomial", "negative_binomial"])
def test_node_function_broadcasts_the_data_and_equals_the_engine_function(case):
    """The quadrature's node function takes eta and phi as (K, n) node values and the data as (n,)
    vectors; its l, l_e (and l_phi) equal the engine's per-row function on the data tiled K times."""
    from ppl_glmm.pymc_model import observation_function

    load, formula, kw, _ = _gradient_cases()[case]
    model = ppl_glmm.fitglme(load(), formula, **kw)
    ws, d = model._ws, model._ws.design
    nodes, rows = observation_function(ws, orders=1), observation_function(ws)
    assert nodes.orders == 1 and rows.orders == 3
    K, n = 5, d.n
    k = ws.dist.observed_value(model._result.y, d.weights, d.binomial_size)
    y = np.ascontiguousarray(k, nodes.y_dtype)
    w = np.ascontiguousarray(d.weights, float)
    trials = np.ascontiguousarray(d.binomial_size, nodes.trials_dtype)
    eta = (d.X @ model._result.beta)[None, :] + np.linspace(-0.5, 0.5, K)[:, None]
    phi = np.full((K, n), -0.4)
    out = nodes(eta, y, w, trials, phi)
    ref = rows(eta.ravel(), np.tile(y, K), np.tile(w, K), np.tile(trials, K), phi.ravel())
    assert len(out) == (3 if ws.dist.has_ancillary else 2)
    for got, want in zip(out, [ref[0], ref[1], *ref[4:5]]):
        assert got.shape == (K, n)
        np.testing.assert_allclose(got, want.reshape(K, n), rtol=1e-13, atol=1e-12)


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


@pytest.mark.parametrize("case", [*_gradient_cases(), "underflow"])
def test_numba_kernels_equal_the_numpy_steps(case):
    """The two implementations of the quadrature's steps (Numba kernels above 1,000 rows, NumPy on
    the C backend) agree: objective, node weights, gradient and the mode's slope, at K = 9 and 25
    away from the optimum (and where node weights underflow)."""
    if case == "underflow":
        model, xx = _underflow_model()
    else:
        load, formula, kw, dx = _gradient_cases()[case]
        model = ppl_glmm.fitglme(load(), formula, **kw)
        xx = model._result.x + np.asarray(dx)
    _, (q9, q25) = problems(model, [9, 25], kernels=False)
    _, (k9, k25) = problems(model, [9, 25], kernels=True)
    for q, k in ((q9, k9), (q25, k25)):
        mq, gq = q.mode_and_gradient(xx)
        mk, gk = k.mode_and_gradient(xx)
        # measured: objectives identical, weights to 2.2e-16, gradients to 3.3e-15 relative, dv 2.7e-16
        assert mk.objective == pytest.approx(mq.objective, rel=1e-13)
        assert np.max(np.abs(mk.pi - mq.pi)) < 1e-13
        assert np.max(np.abs(gk - gq)) < 1e-12 * np.max(np.abs(gq))
        assert np.max(np.abs(mk.dv - mq.dv)) < 1e-12 * np.max(np.abs(mq.dv))


def test_a_fit_on_the_kernels_equals_the_fit_on_numpy(monkeypatch):
    """Where the fit's functions run on Numba (engine_mode None: more than 1,000 rows by default)
    the quadrature uses its kernels; the fit ends where the NumPy fit does (the two paths' rounding
    differs, so the optimiser's last steps may)."""
    import ppl_glmm.fitting as fitting
    from ppl_glmm.backend import C_MODE

    small = fit("cbpp_agq", 9)
    assert small._ws._template("quadrature", FitSettings(n_agq=9)).kernels is False  # the C backend
    real = fitting.observation_function
    monkeypatch.setattr(fitting, "engine_mode", lambda points: None)
    monkeypatch.setattr(fitting, "observation_function", lambda src, mode, **kw: real(src, C_MODE, **kw))
    load, formula, kw = CASES["cbpp_agq"]
    on_kernels = ppl_glmm.fitglme(load(), formula, fit_method="quadrature", n_agq=9, **kw)
    assert on_kernels._ws._template("quadrature", FitSettings(n_agq=9)).kernels is True
    assert on_kernels.log_likelihood == pytest.approx(small.log_likelihood, abs=1e-9)
    np.testing.assert_allclose(on_kernels._result.x, small._result.x, rtol=1e-6, atol=1e-7)


def _underflow_model():
    """Levels without a single count, and theta 2.5 above its estimate (see below)."""
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(10), 5)
    x = rng.normal(size=g.size)
    y = rng.poisson(np.exp(0.5 + 0.3 * x + rng.normal(0, 1.0, 10)[g]))
    y[g < 3] = 0  # three levels without a count
    model = ppl_glmm.fitglme(
        pd.DataFrame({"y": y, "x": x, "g": g.astype(str)}), "y ~ x + (1|g)", distribution="poisson"
    )
    return model, model._result.x + np.array([0.0, 0.0, 2.5])


@pytest.mark.parametrize("kernels", [False, True], ids=["numpy", "numba"])
def test_gradient_where_node_weights_underflow(kernels):
    """Levels without a single count and a wide random-effects SD: at the far nodes exp(eta) is
    huge, the nodes' weights pi_jk underflow to 0 and those nodes leave the gradient's sums."""
    model, xx = _underflow_model()
    _, (q,) = problems(model, [25], kernels=kernels)
    assert np.sum(q.inner(*q.unpack(xx)).pi == 0) > 0  # measured: 19 of 250 weights
    _, gq = q.value_and_grad(xx)
    # measured: 2e-10 relative to max|g|
    assert np.max(np.abs(gq - central_difference(q, xx))) < 2e-9 * np.max(np.abs(gq))


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


def check_fit(m, K, loglik, fixef, sd, se_conditional, ranef):
    assert m.converged and m.fit_method == "quadrature"
    # measured (K > 1 / K = 1): |logLik - lme4| <= 4e-10 / 7e-9, fixed effects <= 1.3e-6 / 2.8e-6
    # relative (the optimizers' tolerance), SD <= 1.3e-7 / 9.3e-7, conditional SEs <= 7.8e-8 /
    # 4.8e-7, modes <= 1.5e-7 / 1.4e-6 of the largest
    assert m.log_likelihood == pytest.approx(loglik, abs=1e-9 if K > 1 else 2e-8)
    np.testing.assert_allclose(m.coefficients["Estimate"], fixef, rtol=1e-5, atol=1e-7)
    assert float(np.sqrt(m.covariance_parameters()[0][0][0, 0])) == pytest.approx(sd, rel=1e-5)
    np.testing.assert_allclose(m.coefficients["SE"], se_conditional, rtol=1e-5)
    b = m.random_effects()["Estimate"].to_numpy()
    np.testing.assert_allclose(b, ranef, rtol=0, atol=1e-5 * np.max(np.abs(b)))


@pytest.mark.parametrize("case", FAMILIES_CASES)
@pytest.mark.parametrize("K", [1, 9, 25])
def test_fit_matches_glmer(case, K):
    r = families_reference()[case]
    e = r[f"nAGQ_{K}"]
    m = fit(case, K)
    assert m.coefficient_names == r["names_python"]
    (group,) = e["ranef"]
    if K == 1:  # glmer's Laplace PIRLS stops early: its logLik is up to 2.4e-7 below the exact
        # Laplace at its own estimates, which the reference computes too ("agq_check")
        assert m.log_likelihood == pytest.approx(e["logLik"], abs=5e-7)
    check_fit(
        m,
        K,
        e["agq_check"] if K == 1 else e["logLik_full"],
        e["fixef"],
        e["varcorr"][0]["estimate"],
        e["se_conditional"],
        e["ranef"][group]["values"][0],
    )
    if K > 1:  # what glmer prints: the log-likelihood without the saturated one
        assert m.log_likelihood - e["saturated_loglik"] == pytest.approx(e["logLik"], abs=1e-9)


@pytest.mark.parametrize(
    "case,K", [(c, K) for c in OWN_CASES for K in (1, 2, 9, 25) if K != 2 or c == "cbpp_agq"]
)
def test_fit_matches_glmer_more_cases(case, K):
    e = own_reference()[case][f"nAGQ_{K}"]
    m = fit(case, K)
    check_fit(m, K, e["logLik_all_constants"], e["fixef"], e["sd"], e["se_rx"], e["ranef"])


@pytest.mark.parametrize("case", FAMILIES_CASES)
def test_objective_at_glmers_estimates_and_the_exact_integral(case):
    """At glmer's nAGQ = 25 estimates: -f(K = 25) is glmer's log-likelihood there, -f(K = 9) the
    reference's own 9-node rule, and both differ from the exact integral (R's integrate) by the
    rule's error only."""
    r = families_reference()[case]
    e25, exact = r["nAGQ_25"], r["exact_integral"]
    (_, (q1, q9, q25)) = problems(fit(case, 9), [1, 9, 25])
    x = np.r_[e25["fixef"], e25["theta"]]
    # measured: <= 4e-13 (K = 25, 9); Laplace 2e-7 (lme4 stops its inner iteration earlier)
    assert -q25.value(x) == pytest.approx(e25["logLik_full"], abs=1e-10)
    assert -q9.value(x) == pytest.approx(exact["agq9_at_agq25_estimates"], abs=1e-10)
    assert -q1.value(x) == pytest.approx(exact["laplace_at_same_estimates"], abs=5e-7)
    rule_error = abs(exact["agq25_full_logLik_minus_exact"])  # 5e-8 for the Poisson case
    assert abs(-q25.value(x) - exact["logLik"]) < rule_error + 1e-10


@pytest.mark.parametrize("case", [*FAMILIES_CASES, "mfr_agq", "binary_slope_agq"])
def test_joint_hessian_ses_match_glmers_default_vcov(case):
    """lme4's default vcov() for nAGQ > 0 is the finite-difference Hessian of the AGQ deviance."""
    ref = families_reference() if case in FAMILIES_CASES else own_reference()
    e = ref[case]["nAGQ_25"]
    m = fit(case, 25, covariance_method="jointhessian")
    # measured: <= 1.7e-6 relative (mfr; 2.9e-7 to 7.8e-7 for the others)
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


def test_refit_and_random_compile_nothing_and_match_a_fresh_fit(request):
    m = fit("cbpp_agq", 9)
    y = m.random(rng=3)  # the sampler is compiled once, lazily
    fresh_data = _cbpp()
    fresh_data["incidence"] = np.rint(y * fresh_data["size"]).astype(int)
    fresh = ppl_glmm.fitglme(fresh_data, CBPP[0], fit_method="quadrature", n_agq=9, **CBPP[1])
    unchanged = request.getfixturevalue("forbid_compilation")
    refitted = m.refit(y)
    for seed in range(3):
        assert np.isfinite(m.refit(m.random(rng=seed)).log_likelihood)
    assert unchanged()
    assert refitted.fit_method == "quadrature" and refitted._settings.n_agq == 9
    assert refitted.log_likelihood == pytest.approx(fresh.log_likelihood, abs=1e-8)
    np.testing.assert_allclose(
        refitted.coefficients["Estimate"], fresh.coefficients["Estimate"], rtol=2e-5, atol=1e-7
    )


def test_display_names_the_method():
    text = str(fit("cbpp_agq", 9))
    assert re.search(r"FitMethod +Quadrature \(n_agq = 9\)\n", text)
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
    assert msg.startswith("fit_method: 'quadrature' needs exactly one random-effects term with one column")
    assert "use fit_method='laplace'" in msg.lower() and found in msg


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


def _identity_poisson_wall_data() -> pd.DataFrame:
    """Poisson counts under an identity link with a wide level SD: levels with means near 0."""
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(30), 6)
    x = rng.normal(size=g.size)
    mu = np.clip(2 + 0.3 * x + 1.5 * rng.normal(size=30)[g], 0.05, None)
    return pd.DataFrame({"y": rng.poisson(mu), "x": x, "g": g.astype(str)})


def test_a_quadrature_stopped_where_its_nodes_leave_the_support_says_so():
    """A quadrature node outside the family's range makes the quadrature undefined where the model
    (and its Laplace objective) is defined. The warning blamed the optimum ('may lie against that
    boundary'); it now says that the fit stopped at the edge of where the quadrature is defined,
    and how to avoid it. A Laplace fit stopped by its conditional modes keeps the other message."""
    d = _identity_poisson_wall_data()
    kw = {"distribution": "poisson", "link": "identity"}

    def message(**more) -> str:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m = ppl_glmm.fitglme(d, "y ~ x + (1|g)", **kw, **more)
        assert not m.converged
        return next(str(w.message) for w in caught if issubclass(w.category, ppl_glmm.ConvergenceWarning))

    quad = message(fit_method="quadrature", n_agq=9)
    assert "quadrature nodes that put a mean outside the family's range" in quad
    assert "need not be near the optimum; fit_method='laplace', fewer nodes (n_agq)" in quad
    laplace = message()
    assert "a conditional mode where the link puts the mean outside" in laplace
    assert "quadrature" not in laplace


def test_a_singular_quadrature_fit_whose_nodes_left_the_support_says_so():
    """An inverse Gaussian (canonical power -2 link) quadrature fit ended at SD 1e-8, converged, 4.2
    logLik units below the Laplace fit (the exact marginal likelihood at the Laplace estimates is
    -285.3, by scipy): larger SDs put nodes at eta <= 0, where the quadrature is not defined. The
    singular-fit warning now says the zero may come from there; a singular fit whose nodes stayed in
    range (cbpp-like binomial) keeps the plain message."""
    d = inverse_gaussian_data(4, 15, 10, (1.0, 0.5), 0.5, 1 / 0.3**2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        laplace = ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution="inverse_gaussian")
        quad = ppl_glmm.fitglme(
            d, "y ~ x + (1|g)", distribution="inverse_gaussian", fit_method="quadrature", n_agq=7
        )
    assert not laplace.singular and laplace.log_likelihood > quad.log_likelihood + 4
    assert quad.singular and quad.converged
    (msg,) = [str(w.message) for w in caught if issubclass(w.category, ppl_glmm.SingularFitWarning)]
    assert msg == quad.warnings[0]
    assert re.search(
        r"; \d+ point\(s\) evaluated had quadrature nodes outside the family's range .*the variance "
        r"may be at zero only because larger ones could not be evaluated; compare with fit_method='laplace'",
        msg,
    )
    # nodes in range (a logit link): the plain singular message
    s = pd.DataFrame({"k": np.tile([0, 1], 30), "x": np.arange(60) % 7, "g": np.repeat(np.arange(6), 10)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = ppl_glmm.fitglme(
            s, "k ~ x + (1|g)", distribution="binomial", fit_method="quadrature", n_agq=5
        )
    assert plain.singular and plain.warnings[-1].endswith(
        "(a variance at zero, or a correlation at its bound)"
    )


def test_a_converged_quadrature_fit_whose_nodes_left_the_support_warns():
    """Inverse Gaussian on its canonical power -2 link, 5 nodes: the fit ended converged at SD
    0.008, 2.4 logLik units below the 5-node quadrature at the Laplace estimates (SD 0.144), with
    no warning: larger SDs put nodes at eta <= 0, where the quadrature is not defined. Such a fit
    now says so (GLMMWarning, also in model.warnings); a Laplace fit of the same data does not."""
    d = inverse_gaussian_data(5, 12, 8, (0.5, 0.3), 0.4, 4.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        laplace = ppl_glmm.fitglme(d, "y ~ 1 + x + (1|g)", distribution="inverse_gaussian")
        assert not caught
        quad = ppl_glmm.fitglme(
            d, "y ~ 1 + x + (1|g)", distribution="inverse_gaussian", fit_method="quadrature", n_agq=5
        )
    assert quad.converged and not quad.singular
    assert laplace.log_likelihood > quad.log_likelihood + 2
    (msg,) = [str(w.message) for w in caught]
    assert msg == quad.warnings[-1]
    assert re.match(r"quadrature: \d+ point\(s\) evaluated had nodes outside the family's range", msg)
    assert "compare with fit_method='laplace'" in msg


def _two_mode_data() -> pd.DataFrame:
    """Inverse Gaussian on the identity link with weights and an offset: the conditional
    log-likelihood is not concave in u (l'' > 0 where mu > 1.5 y), and level g02 has two modes
    at the fit's end (u = -1.56, the better, and u = -9.99)."""
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(20), 10)
    x = rng.uniform(0, 1, g.size)
    u = rng.normal(0, 0.1, 20)
    w = rng.integers(1, 4, g.size)
    off = rng.uniform(0, 0.05, g.size)
    rng.gamma(3 * w, np.maximum(0.1 + 0.6 * x + u[g] + off, 0.01) ** 2 / (3 * w))  # (the draws' order)
    yi = rng.wald(np.maximum(0.1 + 0.6 * x + u[g] + off, 0.02), 4.0 * w)
    return pd.DataFrame({"y": yi, "x": x, "w": w, "off": off, "g": [f"g{i:02d}" for i in g]})


def test_a_warm_start_at_the_lesser_of_two_modes_is_restarted_from_zero():
    """A line search left the warm start at g02's lesser mode (-9.99), where the nodes leave the
    support: every later evaluation was +inf, and the fit reported LogLikelihood -Inf and g02's
    random effect as -0.144 (the better mode's is -0.022), although the quadrature at the
    returned estimates is finite. An evaluation whose quadrature fails from a warm start now
    starts once more from u = 0 and keeps the better quadrature."""
    kw = {"distribution": "inverse_gaussian", "link": "identity", "weights": "w", "offset": "off"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = ppl_glmm.fitglme(_two_mode_data(), "y ~ x + (1|g)", fit_method="quadrature", n_agq=15, **kw)
    _, (q,) = problems(m, [15])
    fresh, _ = q.mode_and_gradient(m._result.x)  # from u = 0
    assert np.isfinite(m.log_likelihood)
    assert m.log_likelihood == pytest.approx(-fresh.objective, abs=1e-8)
    np.testing.assert_allclose(m._result.u, fresh.u, atol=1e-6)
    # the warm start at the lesser mode, directly: the same objective as from u = 0
    lesser = fresh.u.copy()
    lesser[2] = -9.99
    q.u_start, q._last, q._slope, q._recent = lesser, None, None, {}
    again, _ = q.mode_and_gradient(m._result.x.copy())
    assert again.objective == pytest.approx(fresh.objective, abs=1e-9)
    # (the 15-node quadrature is undefined near the Laplace optimum: the fit says it stopped at
    # that edge, not converged, rather than reporting -inf)
    assert not m.converged
    assert any("edge of the region where the quadrature is defined" in str(w.message) for w in caught)
