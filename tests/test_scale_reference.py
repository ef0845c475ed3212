"""Nested and crossed random effects at scale (issue 8, the sparse Cholesky) against lme4 and glmmTMB.

Cases (tests/reference/scale_reference.json, made by tests/reference/make_reference_scale.R with
lme4 1.1-31 at tight settings and glmmTMB 1.1.5; data in tests/reference/data/scale_*.csv):

* nested_poisson: y ~ x + (1|school/class), Poisson, 300 schools x 4 classes x 3 pupils (3,600 rows);
* nested_crossed_binomial: y ~ x + (1|school/class) + (1|rater), Bernoulli, 100 schools x 4 classes
  x 10 pupils (4,000 rows), 50 raters crossed with the nesting;
* insteval_ml / insteval_reml / insteval_binomial: the first 6,000 rows of lme4::InstEval (217
  students s, 850 instructors d, 14 departments), y ~ service + (1|s) + (1|d) + (1|dept) by ML and
  REML, and (y >= 4) ~ ... binomial. The dept SD is on the boundary (0) in all three fits, in lme4
  as here (both flag a singular fit);
* crossed_poisson: y ~ x + (1|a) + (1|b), Poisson, 20,000 rows, a: 1,000 levels, b: 300 levels.

Issue 8 asks for fixed effects to 4 significant digits and logLik to 1e-3 "or better than lme4
where lme4 stops early". The engine does much better; the tolerances below are what it achieves,
with headroom of ~3x over the largest difference measured (ppl_glmm working tree on top of commit
27403c4, Laplace engine with the sparse Cholesky):

* logLik: within LOGLIK_ABS = 2e-7 of lme4 (measured: the engine is 0 to 4.2e-8 *above* lme4 in
  every case, nested_poisson the largest) and never below lme4 by more than LOGLIK_BELOW = 1e-9.
  Against glmmTMB 3e-6 (measured <= 1.26e-6, insteval_reml: glmmTMB's log-SD parametrisation
  cannot reach the dept SD of 0, so it stops short of the boundary optimum); never below it by
  more than 1e-9 either.
* fixed effects: FIXEF_REL = 3e-6 relative to lme4 (measured <= 6.2e-7, nested_crossed_binomial),
  except crossed_poisson, 2e-5: lme4's bobyqa stops where the logLik is flat to 1e-9, and where it
  stops changes between R sessions (its intercept was 7.0e-6 and, in the committed run, 1.5e-6
  relative away from ours in two runs of the same script); the engine agrees with glmmTMB to
  7.6e-7 there and lme4's own objective is 3.1e-10 higher at the engine's estimates. Against
  glmmTMB 1e-4, the issue's 4 significant digits (measured <= 5.9e-5,
  nested_crossed_binomial intercept: glmmTMB's optimiser is the less precise one, its logLik is
  2.9e-8 below ours).
* random-effect SDs: SD_REL = 2e-6 relative to lme4 (measured <= 7.1e-7, crossed_poisson); SDs on
  the boundary (lme4's SD below 1e-3 of the case's largest SD: InstEval's dept) to SD_BOUNDARY_ABS
  = 1e-4 absolute (measured: lme4 1.5e-7, 1.9e-5, 0; the engine <= 3.7e-7: the logLik is flat
  there). Against glmmTMB: 1e-4 relative (measured <= 2.1e-5, the rater SD) and 3e-3 absolute on
  the boundary (glmmTMB stops at 1.7e-4 .. 1.0e-3).
* residual SD of the normal models: 1e-7 relative (measured <= 2.1e-8).
* SEs (conditional on the variance parameters, lme4's RX-based vcov; the engine's default):
  SE_REL = 2e-6 relative (measured <= 2.1e-7, and 6.0e-7 for crossed_poisson, where they follow
  lme4's estimates). glmmTMB's SEs (from the joint Hessian) are in the JSON but not tested.

lme4's own deviance function at our estimates: tests/reference/export_scale_estimates.py writes the
engine's estimates (tests/reference/scale_ppl_glmm_estimates.json) and tests/reference/
check_scale_devfun.R evaluates lme4's devfun there and at lme4's optimum, plus an independent exact
Laplace log-likelihood (GLMMs) at ppl_glmm's, lme4's and glmmTMB's estimates; it records them in the
JSON as "ppl_glmm_devfun_check". Findings:

* lme4's objective at our estimates is never worse than at lme4's own optimum by more than 1.8e-11
  (rounding) and better by 4.6e-10 (insteval_reml) and 3.1e-10 (crossed_poisson): the optima agree.
* In the two nested GLMMs our logLik is 4.2e-8 / 3.5e-8 above lme4's, yet lme4's devfun gives the
  same value at both estimate sets. The gap is lme4's evaluation, not the optimum: its log|L|^2 is
  8.5e-8 / 6.9e-8 above the exact log-determinant at its own converged mode (consistent with L
  being factored at the previous PIRLS iterate's weights, see make_reference.R), and the exact
  Laplace value at lme4's estimates equals ours to < 2e-11. Elsewhere lme4's objective at our
  estimates equals our logLik to <= 3.1e-10.

Checked here: DEVFUN_AT_OURS_BELOW = 1e-9 (lme4's objective at ours minus at lme4's, measured >=
-1.8e-11); lme4's objective at ours within DEVFUN_LOGLIK_ABS = 2e-7 of our logLik (measured <= 4.2e-8,
the log|L| above; lmer <= 1.3e-11); the exact Laplace value at ours within EXACT_LOGLIK_ABS = 1e-9
of our logLik (measured <= 3.7e-12) and not below its value at lme4's or glmmTMB's estimates by more
than 1e-9. test_lme4_devfun_check_is_for_these_estimates makes sure the record still describes what
the engine returns (rerun both scripts when the engine's estimates move).

Runtime: the six fits take 20-45 s together on a busy 2-core machine (44 s for the whole module, of
which crossed_poisson 4-23 s: its tests are marked slow).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ppl_glmm

REF = Path(__file__).parent / "reference"
GROUPING_COLUMNS = ("school", "class", "rater", "s", "d", "dept", "a", "b")

LOGLIK_ABS = 2e-7
LOGLIK_BELOW = 1e-9
FIXEF_REL_DEFAULT = 3e-6
FIXEF_REL = {"crossed_poisson": 2e-5}
SD_REL = 2e-6
SD_BOUNDARY_ABS = 1e-4
BOUNDARY = 1e-3  # an SD below this fraction of the case's largest (lme4) SD is on the boundary
SIGMA_REL = 1e-7
SE_REL = 2e-6
TMB_LOGLIK_ABS = 3e-6
TMB_FIXEF_REL = 1e-4
TMB_SD_REL = 1e-4
TMB_SD_BOUNDARY_ABS = 3e-3
# the engine against its own estimates recorded for the devfun check (the engine is deterministic:
# these allow last-digit changes of the engine only)
RECORDED_FIXEF_REL = 1e-6
RECORDED_SD_REL = 1e-5
RECORDED_SD_ABS = 1e-6
RECORDED_LOGLIK_ABS = 1e-8
# lme4's devfun and the exact Laplace value of check_scale_devfun.R (see the module docstring)
DEVFUN_AT_OURS_BELOW = 1e-9
DEVFUN_LOGLIK_ABS = 2e-7
EXACT_LOGLIK_ABS = 1e-9


@cache
def reference() -> dict:
    return json.loads((REF / "scale_reference.json").read_text())


CASE_NAMES = [k for k in reference() if not k.startswith("_")]
# crossed_poisson (20,000 rows, 1,300 random effects) fits in 4-6 s on an idle machine but took
# up to 23 s on the busy 2-core machine: marked slow (deselect with -m "not slow")
SLOW = {"crossed_poisson"}


def _params(names) -> list:
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


CASES = _params(CASE_NAMES)
GLMM_CASES = _params([n for n in CASE_NAMES if reference()[n]["family"] != "gaussian"])
LMM_CASES = _params([n for n in CASE_NAMES if reference()[n]["family"] == "gaussian"])


def load_data(name: str) -> pd.DataFrame:
    """The case's CSV, grouping columns as strings (integer columns would be covariates)."""
    path = REF / "data" / reference()[name]["data"]
    header = pd.read_csv(path, nrows=0).columns
    return pd.read_csv(path, dtype={c: str for c in GROUPING_COLUMNS if c in header})


@cache
def fit_case(name: str):
    py = reference()[name]["python"]
    return ppl_glmm.fitglme(load_data(name), py["formula"], **py["kwargs"])


def estimates(m) -> dict:
    """What the tests compare: fixed effects, SEs, SDs (python group order), sigma, logLik."""
    _, _, stats = m.covariance_parameters()
    rows = [r for table in stats[:-1] for r in table.to_dict("records")]
    return {
        "names": list(m.coefficient_names),
        "fixef": m.coefficients["Estimate"].to_numpy(),
        "se": m.coefficients["SE"].to_numpy(),
        "groups": [r["Group"] for r in rows],
        "types": [r["Type"] for r in rows],
        "sd": np.array([r["Estimate"] for r in rows]),
        "sigma": float(np.sqrt(m.dispersion)),
        "logLik": float(m.log_likelihood),
        "singular": bool(m.singular),
    }


@cache
def _est(name: str) -> dict:
    import warnings

    with warnings.catch_warnings():
        # singular InstEval fits warn (SingularFitWarning; no CIs for covariance parameters)
        warnings.simplefilter("ignore")
        return estimates(fit_case(name))


def _boundary(R: dict) -> np.ndarray:
    sd = np.asarray(R["sd"], float)
    return sd < BOUNDARY * sd.max()


@pytest.mark.parametrize("name", CASES)
def test_names_and_groups(name):
    E, ref = _est(name), reference()[name]
    assert E["names"] == ref["names_python"]
    assert E["groups"] == ref["groups"]
    assert E["types"] == ["std"] * len(ref["groups"])


@pytest.mark.parametrize("name", CASES)
def test_fixed_effects_match_lme4(name):
    E, R = _est(name), reference()[name]["lme4"]
    np.testing.assert_allclose(E["fixef"], R["fixef"], rtol=FIXEF_REL.get(name, FIXEF_REL_DEFAULT), atol=0)


@pytest.mark.parametrize("name", CASES)
def test_log_likelihood_matches_lme4(name):
    E, R = _est(name), reference()[name]["lme4"]
    assert abs(E["logLik"] - R["logLik"]) < LOGLIK_ABS, E["logLik"] - R["logLik"]
    assert E["logLik"] > R["logLik"] - LOGLIK_BELOW, E["logLik"] - R["logLik"]


@pytest.mark.parametrize("name", CASES)
def test_random_effect_sds_match_lme4(name):
    E, R = _est(name), reference()[name]["lme4"]
    ref, b = np.asarray(R["sd"]), _boundary(R)
    np.testing.assert_allclose(E["sd"][~b], ref[~b], rtol=SD_REL, atol=0)
    np.testing.assert_allclose(E["sd"][b], ref[b], rtol=0, atol=SD_BOUNDARY_ABS)


@pytest.mark.parametrize("name", CASES)
def test_singular_fit_as_lme4(name):
    E, R = _est(name), reference()[name]["lme4"]
    lme4_singular = any("singular" in msg for msg in R["conv_messages"])
    assert lme4_singular == bool(_boundary(R).any())
    assert E["singular"] == lme4_singular


@pytest.mark.parametrize("name", LMM_CASES)
def test_residual_sd_matches_lmer(name):
    E, R = _est(name), reference()[name]["lme4"]
    assert E["sigma"] == pytest.approx(R["sigma"], rel=SIGMA_REL)


@pytest.mark.parametrize("name", CASES)
def test_standard_errors_match_lme4(name):
    E, R = _est(name), reference()[name]["lme4"]
    np.testing.assert_allclose(E["se"], R["se"], rtol=SE_REL, atol=0)


@pytest.mark.parametrize("name", CASES)
def test_second_opinion_glmmtmb(name):
    E, T = _est(name), reference()[name]["glmmTMB"]
    assert abs(E["logLik"] - T["logLik"]) < TMB_LOGLIK_ABS, E["logLik"] - T["logLik"]
    assert E["logLik"] > T["logLik"] - LOGLIK_BELOW, E["logLik"] - T["logLik"]
    np.testing.assert_allclose(E["fixef"], T["fixef"], rtol=TMB_FIXEF_REL, atol=0)
    b = _boundary(reference()[name]["lme4"])
    ref = np.asarray(T["sd"])
    np.testing.assert_allclose(E["sd"][~b], ref[~b], rtol=TMB_SD_REL, atol=0)
    np.testing.assert_allclose(E["sd"][b], ref[b], rtol=0, atol=TMB_SD_BOUNDARY_ABS)


def _check(name: str) -> dict:
    check = reference()[name].get("ppl_glmm_devfun_check")
    assert check is not None, "run export_scale_estimates.py and check_scale_devfun.R"
    return check


@pytest.mark.parametrize("name", CASES)
def test_lme4_devfun_check_is_for_these_estimates(name):
    """The recorded devfun check was computed at what the engine returns now."""
    E, C = _est(name), _check(name)["ppl_glmm"]
    np.testing.assert_allclose(E["fixef"], C["fixef"], rtol=RECORDED_FIXEF_REL, atol=0)
    np.testing.assert_allclose(E["sd"], C["sd"], rtol=RECORDED_SD_REL, atol=RECORDED_SD_ABS)
    assert E["logLik"] == pytest.approx(C["logLik"], abs=RECORDED_LOGLIK_ABS)


@pytest.mark.parametrize("name", CASES)
def test_lme4_devfun_at_our_estimates(name):
    """lme4's own objective is at least as good at our estimates as at lme4's optimum, and it is our
    logLik there (glmer: the same Laplace approximation, up to lme4's log|L| of the previous PIRLS
    iterate; lmer: the profiled deviance at our theta, so our beta and sigma are the profile optimum)."""
    C = _check(name)
    at_ours, at_lme4 = C["logLik_lme4_objective_at_ppl_glmm"], C["logLik_lme4_objective_at_lme4"]
    assert at_ours > at_lme4 - DEVFUN_AT_OURS_BELOW, at_ours - at_lme4
    assert at_ours == pytest.approx(C["ppl_glmm"]["logLik"], abs=DEVFUN_LOGLIK_ABS)


@pytest.mark.parametrize("name", GLMM_CASES)
def test_exact_laplace_at_our_estimates(name):
    """The independent exact Laplace log-likelihood: it is our logLik at our estimates, and it is not
    higher at lme4's or glmmTMB's estimates (where our logLik exceeds lme4's, this shows which is
    right)."""
    C = _check(name)
    X = C["exact_laplace"]
    assert X["at_ppl_glmm"] == pytest.approx(C["ppl_glmm"]["logLik"], abs=EXACT_LOGLIK_ABS)
    assert X["at_ppl_glmm"] > X["at_lme4"] - LOGLIK_BELOW, X["at_ppl_glmm"] - X["at_lme4"]
    assert X["at_ppl_glmm"] > X["at_glmmTMB"] - LOGLIK_BELOW, X["at_ppl_glmm"] - X["at_glmmTMB"]
    assert X["max_gradient"] < 1e-10
