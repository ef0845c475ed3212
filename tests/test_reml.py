"""REML (fit_method='reml') against lmer(REML = TRUE), and its exact gradient.

Reference: tests/reference/families_reference.json (``lme4`` entries of ``sleepstudy_reml`` and
``normal_weighted_crossed_reml``), made by tests/reference/make_reference_families.R with
lmer(REML = TRUE), bobyqa rhoend = 1e-12, lme4 1.1-31.

Tolerances, with the largest difference measured (lme4 1.1-31's bobyqa at rhoend = 1e-12 reaches
the maximum as precisely as the engine here, so they are tight):

* restricted log-likelihood at the optimum: 1e-9 absolute (measured 5.7e-13);
* the objective evaluated at lmer's own (theta, sigma): 1e-9 (measured 3.4e-13): the formula,
  free of either optimiser;
* fixed effects 1e-8 relative (measured 4e-10); SDs and correlations 3e-6 (measured 3.6e-7,
  sleepstudy); sigma 1e-7 (measured 1e-8); SEs (lmer's vcov, conditional on theta) 1e-6 (measured
  1.1e-7); conditional modes 1e-6 of the largest (measured 8.2e-8);
* gradient against central differences of the objective: 1e-6 relative to the largest component.
"""

import json
from functools import cache

import numpy as np
import pandas as pd
import pytest
from reference_cases import REF

import ppl_glmm


@cache
def families_reference() -> dict:
    return json.loads((REF / "families_reference.json").read_text())


def _sleepstudy() -> pd.DataFrame:
    return pd.read_csv(REF / "data" / "sleepstudy.csv")


def _weighted_crossed() -> pd.DataFrame:
    return pd.read_csv(REF / "data" / "normal_weighted_crossed.csv")


# case -> (data, formula, fitglme keyword arguments)
CASES = {
    "sleepstudy_reml": (_sleepstudy, "Reaction ~ 1 + Days + (1 + Days|Subject)", {}),
    "normal_weighted_crossed_reml": (_weighted_crossed, "y ~ x + (1|g) + (1|h)", {"weights": "w"}),
}

LOGLIK_ABS = 1e-9
AT_R_ESTIMATES_ABS = 1e-9
FIXEF_REL = 1e-8
VARCOMP_REL = 3e-6
SIGMA_REL = 1e-7
SE_REL = 1e-6
RANEF_REL = 1e-6
GRADIENT_REL = 1e-6


@cache
def _fit(name: str, fit_method: str = "reml"):
    loader, formula, kw = CASES[name]
    return ppl_glmm.fitglme(loader(), formula, fit_method=fit_method, **kw)


def _R(name: str) -> dict:
    return families_reference()[name]["lme4"]


@pytest.mark.parametrize("name", CASES)
def test_restricted_loglik_matches_lmer(name):
    m, R = _fit(name), _R(name)
    assert m.log_likelihood == pytest.approx(R["logLik"], abs=LOGLIK_ABS)


@pytest.mark.parametrize("name", CASES)
def test_objective_at_lmers_estimates_is_lmers_criterion(name):
    """f_R(theta_R, log sigma_R) = -logLik_R: the formula, whatever either optimiser did."""
    m, R = _fit(name), _R(name)
    x = np.concatenate([R["theta"], [np.log(R["sigma"])]])
    assert -m._problem().value(x) == pytest.approx(R["logLik"], abs=AT_R_ESTIMATES_ABS)
    assert -2 * m.log_likelihood == pytest.approx(R["REML_criterion"], abs=2 * LOGLIK_ABS)


@pytest.mark.parametrize("name", CASES)
def test_estimates_match_lmer(name):
    m, R = _fit(name), _R(name)
    np.testing.assert_allclose(m.coefficients["Estimate"], R["fixef"], rtol=FIXEF_REL)
    np.testing.assert_allclose(m.coefficients["SE"], R["se"], rtol=SE_REL)
    est = np.concatenate([t["Estimate"].to_numpy() for t in m.covariance_parameters()[2][:-1]])
    np.testing.assert_allclose(est, [row["estimate"] for row in R["varcorr"]], rtol=VARCOMP_REL)
    assert m.covariance_parameters()[2][-1]["Estimate"].iloc[0] == pytest.approx(R["sigma"], rel=SIGMA_REL)
    assert m.dispersion == pytest.approx(R["sigma"] ** 2, rel=2 * SIGMA_REL)


@pytest.mark.parametrize("name", CASES)
def test_conditional_modes_match_lmer(name):
    from reference_cases import ranef_blocks

    m, R = _fit(name), _R(name)
    scale = max(max(abs(v) for v in ref.values()) for *_, ref in ranef_blocks(m, R))
    for _, _, got, ref in ranef_blocks(m, R):
        np.testing.assert_allclose([got[k] for k in ref], list(ref.values()), atol=RANEF_REL * scale)


@pytest.mark.parametrize("name", CASES)
def test_criteria_use_n_minus_p(name):
    """MATLAB: BIC = -2 L + k log(N - p) for restricted fits (lme4's BIC uses N)."""
    m, R = _fit(name), _R(name)
    crit = m.model_criterion
    assert crit["BIC"].iloc[0] == pytest.approx(R["BIC_matlab"], abs=2 * LOGLIK_ABS)
    assert crit["AIC"].iloc[0] == pytest.approx(R["AIC"], abs=2 * LOGLIK_ABS)


def _fd_check(problem, x):
    g = problem.value_and_grad(x)[1]
    fd = np.empty_like(x)
    for k in range(x.size):
        h = 1e-5 * max(1.0, abs(x[k]))
        e = np.zeros_like(x)
        e[k] = h
        fd[k] = (problem.value(x + e) - problem.value(x - e)) / (2 * h)
    np.testing.assert_allclose(g, fd, atol=GRADIENT_REL * np.max(np.abs(fd)))


@pytest.mark.parametrize(
    "name,formula",
    [
        ("sleepstudy_reml", None),  # correlated slope
        ("normal_weighted_crossed_reml", None),  # two crossed terms, prior weights
        ("normal_weighted_crossed_reml", "y ~ x + (1 + x|g) + (1|h)"),  # slope + crossed + weights
    ],
)
def test_gradient_matches_finite_differences(name, formula):
    loader, f0, kw = CASES[name]
    m = ppl_glmm.fitglme(loader(), formula or f0, fit_method="reml", **kw)
    rng = np.random.default_rng(3)
    x = m._result.x + 0.2 * rng.standard_normal(m._result.x.size)  # away from the optimum
    _fd_check(m._problem(), x)


@pytest.mark.parametrize("fit_method", ["reml", "laplace"])
@pytest.mark.parametrize("name", CASES)
def test_sigma_is_profiled_out_exactly(name, fit_method):
    """profile_phi gives the phi where df/dphi = 0 (sigma^2 = pwrss / (n - p) for REML, pwrss / n
    for ML) at any other parameters (REML: theta; ML: beta and theta), the profiled objective's
    gradient is the full gradient without phi's entry (central differences of
    theta -> f(theta, phi^(theta))), and at the fit phi^ is the fitted log sigma."""
    m = _fit(name, fit_method)
    problem = m._problem()
    rng = np.random.default_rng(5)
    theta = m._result.x[:-1] + 0.2 * rng.standard_normal(m._result.x.size - 1)
    phi = problem.profile_phi(theta)
    f, g = problem.value_and_grad(np.append(theta, phi))
    assert abs(g[-1]) < 1e-9 * np.max(np.abs(g[:-1]))  # measured: ~1e-13 relative
    for d in (-1e-3, 1e-3):
        assert problem.value(np.append(theta, phi + d)) > f

    def profiled(t):
        return problem.value(np.append(t, problem.profile_phi(t)))

    fd = np.empty_like(theta)
    for k in range(theta.size):
        e = np.zeros_like(theta)
        e[k] = 1e-5 * max(1.0, abs(theta[k]))
        fd[k] = (profiled(theta + e) - profiled(theta - e)) / (2 * e[k])
    np.testing.assert_allclose(g[:-1], fd, atol=GRADIENT_REL * np.max(np.abs(fd)))
    assert problem.profile_phi(m._result.x[:-1]) == pytest.approx(m._result.x[-1], abs=1e-9)


@pytest.mark.parametrize("name", CASES)
def test_fit_is_at_the_exact_optimum(name):
    """One Newton step on the finite-difference Hessian from the fit (the exact optimum to
    rounding) gains less than 1e-11 in the objective, and no more than it gains from lmer's
    estimates plus 1e-12 (measured: 1e-13 and 3e-13 on sleepstudy, within rounding crossed; in
    theta the fit is 2e-8 from that optimum, lmer's estimates 1.6e-7)."""
    from ppl_glmm.engine.optimize import hessian

    m, R = _fit(name), _R(name)
    problem, x = m._problem(), m._result.x
    f, g = problem.value_and_grad(x)
    f_opt = problem.value(x - np.linalg.solve(hessian(problem, x), g))
    f_lmer = problem.value(np.concatenate([R["theta"], [np.log(R["sigma"])]]))
    assert -1e-12 <= f - f_opt < 1e-11
    assert f - f_opt <= max(f_lmer - f_opt, 0.0) + 1e-12


@pytest.mark.parametrize(
    "name,fit_method,most",
    [
        ("sleepstudy_reml", "reml", 9),  # measured 7 (24 over (theta, log sigma) before profiling)
        ("sleepstudy_reml", "laplace", 8),  # measured 6 (18 before)
        ("normal_weighted_crossed_reml", "reml", 12),  # measured 9 (19 before)
        ("normal_weighted_crossed_reml", "laplace", 16),  # measured 12 (20 before)
    ],
)
def test_profiled_fits_need_few_evaluations(name, fit_method, most):
    """With sigma profiled out, and BFGS started from the profiled objective's finite-difference
    Hessian, the optimiser needs a few evaluations after the start (the last one the
    quasi-Newton step that finishes a profiled fit)."""
    assert _fit(name, fit_method)._result.optimization.n_evaluations <= most


def test_reml_differs_from_ml_by_the_restriction():
    """REML SDs are larger than ML's (beta's degrees of freedom), both equal lmer's."""
    reml, ml = _fit("normal_weighted_crossed_reml"), _fit("normal_weighted_crossed_reml", "laplace")
    R_ml = families_reference()["normal_weighted_crossed_ml"]["lme4"]
    assert ml.log_likelihood == pytest.approx(R_ml["logLik"], abs=LOGLIK_ABS)
    sd = [t["Estimate"].iloc[0] for t in reml.covariance_parameters()[2][:-1]]
    sd_ml = [t["Estimate"].iloc[0] for t in ml.covariance_parameters()[2][:-1]]
    assert all(a > b for a, b in zip(sd, sd_ml))


def test_display_inference_and_refit():
    m = _fit("sleepstudy_reml")
    text = str(m)
    assert text.startswith("Generalized linear mixed-effects model fit by REML")
    assert "FitMethod                       REML" in text
    tables = m.covariance_parameters()[2]
    assert np.all(np.isfinite(tables[0][["Lower", "Upper"]].to_numpy()))
    lo, hi = tables[-1][["Lower", "Upper"]].iloc[0]
    assert lo < m._result.sigma < hi
    y = m.random(rng=4)
    new = m.refit(y)
    d = _sleepstudy()
    d["Reaction"] = y
    fresh = ppl_glmm.fitglme(d, "Reaction ~ 1 + Days + (1 + Days|Subject)", fit_method="reml")
    assert new.log_likelihood == pytest.approx(fresh.log_likelihood, abs=1e-8)
    np.testing.assert_allclose(new.coefficients["Estimate"], fresh.coefficients["Estimate"], rtol=1e-6)


def test_reml_needs_the_normal_distribution():
    d = _sleepstudy()
    d["count"] = np.rint(d["Reaction"] / 10).astype(int)
    with pytest.raises(ValueError, match="'reml' applies to distribution normal, not 'poisson'; use one of"):
        ppl_glmm.fitglme(d, "count ~ Days + (1|Subject)", distribution="poisson", fit_method="reml")


def test_non_identity_link_is_glmmtmbs_laplace_reml():
    """With a log link the objective is the Laplace approximation of the restricted likelihood, as
    glmmTMB's REML = TRUE (tests/reference/reml_glmmtmb.R; glmmTMB 1.1.5, whose nlminb ends with
    'singular convergence' at max|gradient| 3e-5). Measured: logLik 4.6e-11 above glmmTMB, fixed
    effects 8e-8 relative, sigma 4e-8, SDs 2e-7 and the correlation 1.8e-6 absolute."""
    R = json.loads((REF / "reml_glmmtmb.json").read_text())["sleepstudy_log_reml"]
    m = ppl_glmm.fitglme(
        _sleepstudy(), "Reaction ~ 1 + Days + (1 + Days|Subject)", link="log", fit_method="reml"
    )
    assert m.converged
    assert m.log_likelihood == pytest.approx(R["logLik"], abs=1e-8)
    np.testing.assert_allclose(m.coefficients["Estimate"], R["fixef"], rtol=1e-6)
    assert m._result.sigma == pytest.approx(R["sigma"], rel=1e-6)
    np.testing.assert_allclose(
        m.covariance_parameters()[2][0]["Estimate"], R["varcorr"], rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    "method,family,link",
    [
        ("reml", "normal", None),
        ("reml", "normal", "log"),
        ("mpl", "poisson", None),
        ("rempl", "gamma", "log"),
    ],
)
def test_inner_beta_fits_do_not_depend_on_a_covariates_location(method, family, link):
    """Invariance hunt: with x + 1e6 a normal REML fit was 1.2e-3 off in logLik (slope 2.6e-3),
    Poisson MPL 2.8e-3, gamma REMPL 0.022, reported converged: the joint factor's Schur complement
    X'CX - X'CA H^-1 A'CX cancelled digits. It is now built with X T (orthogonal columns)."""
    rng = np.random.default_rng(2)
    g = rng.integers(0, 20, 200)
    x = rng.normal(size=200)
    b = rng.normal(scale=0.5, size=20)
    mu = np.exp(0.5 + 0.3 * x + b[g])
    d = pd.DataFrame({"x": x, "g": g.astype(str), "k": rng.poisson(mu), "yg": rng.gamma(3, mu / 3)})
    y = "k" if family == "poisson" else "yg"
    kw = {"distribution": family, "fit_method": method, "link": link}
    base = ppl_glmm.fitglme(d, f"{y} ~ x + (1|g)", **kw)
    moved = ppl_glmm.fitglme(d.assign(x=d.x + 1e6), f"{y} ~ x + (1|g)", **kw)
    assert moved.converged
    assert moved.log_likelihood == pytest.approx(base.log_likelihood, abs=1e-8)
    assert moved.coefficients["Estimate"][1] == pytest.approx(base.coefficients["Estimate"][1], rel=1e-8)
    np.testing.assert_allclose(moved.coefficients["SE"][1:], base.coefficients["SE"][1:], rtol=1e-6)
