"""Estimates against R: lme4 (glmer Laplace / nAGQ=0, lmer ML) and glmmTMB for non-canonical links.

Tolerances (issue 6: "tightened to what the engine achieves"), against the tight lme4 settings (or
glmmTMB for the non-canonical links). The largest difference measured on these cases
(``python tests/reference/compare_engine.py``; ppl_glmm at commit 1b54610) is given for each:

* log-likelihood: 1e-6 absolute (measured <= 6.7e-9, cbpp_binomial); AIC/BIC 2e-6 (twice that).
* fixed effects: 1e-5 relative (measured <= 2.9e-6, mfr), except grouseticks_nested_crossed, 3e-5:
  measured 1.56e-5 (intercept) against lme4, whose bobyqa stops where the logLik is flat to 1e-9;
  the engine is 8e-10 above lme4 and glmmTMB in logLik and within 7e-7 of glmmTMB's estimates,
  while lme4 and glmmTMB differ from each other by 1.6e-5.
* variance components (SDs, correlations): 1e-5 relative (measured <= 1.3e-6, sleepstudy_lmm,
  where lme4 and glmmTMB differ by 7e-5); residual SD 1e-6 (measured <= 1.5e-8). binary_olre
  (an observation-level effect on 0/1 data) 3e-4, and its conditional modes too: the logLik is
  flat in the SD to 2e-11 over 0.077977 (lme4 tight), 0.077984 (lme4 defaults) and 0.077996
  (glmmTMB); ours is 0.077984 (8.7e-5 from lme4 tight), with a logLik 3e-11 above lme4's.
* conditional SEs: 5e-6 relative (measured <= 5.3e-7, grouseticks): they move with the estimates.
* conditional modes: 1e-5 of the largest |mode| (measured <= 3.1e-6, grouseticks, same reason as its
  fixed effects).
* Hessian-based SEs (covariance_method='JointHessian'): 3e-5 relative (measured <= 1.45e-5, mfr):
  lme4's are from a finite-difference Hessian (optinfo$derivs), glmmTMB's are at its own optimum,
  which is 1e-6..1e-5 away from the exact one.

Reference values: tests/reference/lme4_reference.json, made by tests/reference/make_reference.R
(lme4 1.1-31 at tight tolerances; glmmTMB 1.1.5).
"""

import numpy as np
import pytest
from reference_cases import CASES, ranef_blocks, reference

CASE_NAMES = list(CASES)

LOGLIK_ABS = 1e-6
CRITERION_ABS = 2e-6
FIXEF_REL = {"grouseticks_nested_crossed": 3e-5}  # see the module docstring
FIXEF_REL_DEFAULT = 1e-5
VARCOMP_REL = {"binary_olre": 3e-4}  # see the module docstring
VARCOMP_REL_DEFAULT = 1e-5
SIGMA_REL = 1e-6
SE_REL = 5e-6
RANEF_REL = 1e-5
JOINT_HESSIAN_SE_REL = 3e-5


def _ref(name):
    r = reference()[name]
    return r, r[CASES[name][3]]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_coefficient_names_follow_matlab(fitted, name):
    r, _ = _ref(name)
    assert fitted(name).coefficient_names == r["names_python"]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_fixed_effects(fitted, name):
    _, R = _ref(name)
    est = fitted(name).coefficients["Estimate"].to_numpy()
    np.testing.assert_allclose(est, R["fixef"], rtol=FIXEF_REL.get(name, FIXEF_REL_DEFAULT), atol=0)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_variance_components(fitted, name):
    _, R = _ref(name)
    _, _, stats = fitted(name).covariance_parameters()
    rows = [row for table in stats[:-1] for row in table.to_dict("records")]
    assert [(r["Group"], r["Name1"], r["Name2"], r["Type"]) for r in rows] == [
        (v["group"], v["name1"], v["name2"], v["type"]) for v in R["varcorr"]
    ]
    est = np.array([r["Estimate"] for r in rows])
    rtol = VARCOMP_REL.get(name, VARCOMP_REL_DEFAULT)
    np.testing.assert_allclose(est, [v["estimate"] for v in R["varcorr"]], rtol=rtol, atol=0)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_dispersion(fitted, name):
    _, R = _ref(name)
    m = fitted(name)
    np.testing.assert_allclose(np.sqrt(m.dispersion), R["sigma"], rtol=SIGMA_REL, atol=0)
    assert m.dispersion_estimated == (CASES[name][2].get("distribution", "normal") == "normal")


@pytest.mark.parametrize("name", CASE_NAMES)
def test_log_likelihood_within_1e_6(fitted, name):
    _, R = _ref(name)
    ll = fitted(name).log_likelihood
    assert abs(ll - R["logLik"]) < LOGLIK_ABS, ll - R["logLik"]


@pytest.mark.parametrize("name", [n for n in CASE_NAMES if CASES[n][3] == "lme4"])
def test_information_criteria_match_lme4(fitted, name):
    _, R = _ref(name)
    crit = fitted(name).model_criterion.iloc[0]
    assert abs(crit["AIC"] - R["AIC"]) < CRITERION_ABS
    assert abs(crit["BIC"] - R["BIC"]) < CRITERION_ABS
    assert crit["Deviance"] == pytest.approx(-2 * crit["LogLikelihood"])


@pytest.mark.parametrize("name", [n for n in CASE_NAMES if CASES[n][3] == "lme4"])
def test_conditional_standard_errors(fitted, name):
    _, R = _ref(name)
    se = fitted(name).coefficients["SE"].to_numpy()
    np.testing.assert_allclose(se, R["se_conditional"], rtol=SE_REL, atol=0)


@pytest.mark.parametrize(
    "name,source,key",
    [
        ("cbpp_binomial", "lme4", "se_hessian"),
        ("mfr_poisson_effects", "lme4", "se_hessian"),
        ("cbpp_probit", "glmmTMB", "se"),
        ("cbpp_cloglog", "glmmTMB", "se"),
    ],
)
def test_joint_hessian_standard_errors(name, source, key):
    """covariance_method='jointhessian' (MATLAB JointHessian) = the Hessian-based SEs of lme4/glmmTMB."""
    from reference_cases import CASES as C

    import ppl_glmm

    loader, formula, kwargs, _ = C[name]
    m = ppl_glmm.fitglme(loader(), formula, covariance_method="JointHessian", **kwargs)
    se = m.coefficients["SE"].to_numpy()
    np.testing.assert_allclose(se, reference()[name][source][key], rtol=JOINT_HESSIAN_SE_REL, atol=0)


@pytest.mark.parametrize("name", [n for n in CASE_NAMES if CASES[n][3] == "lme4"])
def test_conditional_modes_match_ranef(fitted, name):
    _, R = _ref(name)
    m = fitted(name)
    for key, name1, got, expected in ranef_blocks(m, R):
        assert set(got) == set(expected)
        e = np.array([expected[lv] for lv in got])
        g = np.array(list(got.values()))
        tol = VARCOMP_REL.get(name, RANEF_REL)  # (the modes scale with the SD)
        assert np.max(np.abs(g - e)) < tol * np.max(np.abs(e)), (key, name1)


def test_probit_and_cloglog_are_exact_laplace_not_lme4_fisher_weights(fitted):
    """lme4 uses expected-information weights for non-canonical links; we match glmmTMB (exact)."""
    for name in ("cbpp_probit", "cbpp_cloglog"):
        ref = reference()[name]
        m = fitted(name)
        assert abs(m.log_likelihood - ref["glmmTMB"]["logLik"]) < 1e-6
        assert abs(m.log_likelihood - ref["lme4"]["logLik"]) > 1e-2


def test_loglog_is_cloglog_of_the_complementary_response():
    """loglog P(y) = exp(-exp(-eta)) equals 1 - cloglog^-1(-eta): same fit, with beta -> -beta."""
    from reference_cases import _cbpp

    import ppl_glmm

    data = _cbpp()
    data["failures"] = data["size"] - data["incidence"]
    a = ppl_glmm.fitglme(
        data, "incidence ~ period + (1|herd)", distribution="binomial", binomial_size="size", link="loglog"
    )
    b = ppl_glmm.fitglme(
        data, "failures ~ period + (1|herd)", distribution="binomial", binomial_size="size", link="comploglog"
    )
    assert a.log_likelihood == pytest.approx(b.log_likelihood, abs=1e-7)
    np.testing.assert_allclose(a.coefficients["Estimate"], -b.coefficients["Estimate"], rtol=1e-5)
    sd = [m.covariance_parameters()[2][0]["Estimate"].iloc[0] for m in (a, b)]
    assert sd[0] == pytest.approx(sd[1], rel=1e-5)
