"""Pseudo-likelihood (fit_method='mpl' / 'rempl'), MATLAB's default fitting method.

References (tests/reference/families_reference.json, made by
tests/reference/make_reference_families.R):

* ``pl_fit``: an R implementation of MATLAB's PL loop (matlab-glme.md 3.1) whose pseudo-data LME is
  maximised by its own optimiser over the exact dense Gaussian (restricted) log-likelihood, and
  which stops at ``max|delta eta| <= max(1e-10 max|eta|, 1e-10)``. It is the reference.
* ``glmmPQL`` (MASS) for the cases with an estimated dispersion: another PQL algorithm (it starts
  from a glm fit and stops when ``sum(delta eta^2) < 1e-6 sum(eta^2)``, with nlme's default
  tolerances), so it is compared loosely (see GLMMPQL_*).

Tolerances. The estimates agree to ~1e-9 or better whatever the rule, but the reported log-likelihood is
first-order in the final eta (the pseudo-data and the 1/2 sum log W term follow it), so it agrees
to what the stopping rule leaves (largest differences measured, over the five cases):

* at the reference's rule (pl_tolerance = 1e-10): logLik 5e-8 absolute (measured 2.0e-8,
  grouse_mpl, which stops two iterations before R), AIC/BIC twice that; fixed effects, SEs, SD of b
  and dispersion 1e-8 relative (measured <= 3.6e-10);
* at MATLAB's default pl_tolerance = 1e-8: logLik 5e-7 (measured 1.65e-7, grouse), estimates 1e-8
  (measured <= 2.2e-9).
* glmmPQL (dispersion cases): fixed effects 1e-4 absolute (measured 1.7e-5), SD of b and sigma
  2e-4 relative (measured 4.8e-5 and 2.2e-5): glmmPQL's rule stops it earlier.
"""

import json
import warnings
from functools import cache

import numpy as np
import pandas as pd
import pytest
from reference_cases import REF

import ppl_glmm
from ppl_glmm import ConvergenceWarning
from ppl_glmm.api import _prepare
from ppl_glmm.pseudo import working_response

# ---------------------------------------------------------------------------------------------
# The working response: l'(eta) / W_F is MATLAB's g'(mu)(y - mu) for every family and link
# ---------------------------------------------------------------------------------------------

FAMILY_LINKS = [
    ("normal", "identity"),
    ("normal", "log"),
    ("binomial", "logit"),
    ("binomial", "probit"),
    ("binomial", "comploglog"),
    ("binomial", "loglog"),
    ("binomial", "log"),
    ("binomial", "identity"),
    ("poisson", "log"),
    ("poisson", "identity"),
    ("gamma", -1.0),  # MATLAB's canonical power -1 (reciprocal)
    ("gamma", "log"),
    ("gamma", "identity"),
    ("inverse_gaussian", -2.0),
    ("inverse_gaussian", "log"),
]


def _family_data(dist: str, rng) -> tuple[pd.DataFrame, dict]:
    n = 60
    d = pd.DataFrame({"x": rng.normal(size=n), "g": np.repeat([f"g{i}" for i in range(10)], 6)})
    kw: dict = {"distribution": dist, "offset": rng.normal(scale=0.1, size=n), "binomial_size": None}
    if dist == "normal":
        d["y"] = rng.normal(2.0, 1.0, size=n)
        kw["weights"] = rng.uniform(0.5, 2.0, size=n)
    elif dist == "binomial":
        d["n"] = rng.integers(1, 8, size=n)
        d["y"] = rng.binomial(d["n"], 0.4)
        kw["binomial_size"] = "n"
        kw["weights"] = rng.integers(1, 3, size=n).astype(float)
    elif dist == "poisson":
        d["y"] = rng.poisson(4.0, size=n)
        kw["weights"] = rng.integers(1, 3, size=n).astype(float)
    else:  # gamma, inverse Gaussian: positive
        d["y"] = rng.gamma(4.0, 0.5, size=n)
        kw["weights"] = rng.uniform(0.5, 2.0, size=n)
    return d, kw


@pytest.mark.parametrize("dist,link", FAMILY_LINKS)
def test_working_response_is_matlabs_pseudo_data(dist, link):
    """z - (eta - offset) = l'(eta) / W_F equals g'(mu)(y - mu), and W = w / (v(mu) g'(mu)^2) (w: the
    prior weight, times the binomial size), with l' from the PyMC model's compiled derivative, for
    every MATLAB family (sigma cancels: l' carries 1 / sigma^2 as W_F does)."""
    rng = np.random.default_rng(7)
    d, kw = _family_data(dist, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bad-link warnings (binomial log / identity, ...)
        ws, _, _ = _prepare(
            d,
            "y ~ x + (1|g)",
            link=link,
            fit_method="mpl",
            dummy_var_coding="reference",
            exclude=None,
            options={},
            **kw,
        )
    des = ws.design
    k = ws.dist.observed_value(des.y, des.weights, des.binomial_size)
    family = ws.new_problem("laplace", k, swap=False)
    lo, hi = {"binomial": (0.05, 0.95), "poisson": (0.5, 20.0)}.get(dist, (0.5, 5.0))
    mu = rng.uniform(lo, hi, size=des.n)
    eta = ws.link.link_np(mu)
    w_eff = des.weights * des.binomial_size
    g_prime = 1.0 / ws.link.mu_eta(eta)
    for sigma in (1.0, 2.5):  # sigma cancels (the normal's l' carries 1 / sigma^2, as W_F)
        z, W = working_response(ws, family, eta, sigma)
        np.testing.assert_allclose(z - (eta - des.offset), g_prime * (des.y - mu), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(W, w_eff / (ws.dist.variance(mu) * g_prime**2), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# Against R: MATLAB's PL loop (pl_fit) and MASS::glmmPQL
# ---------------------------------------------------------------------------------------------


@cache
def families_reference() -> dict:
    return json.loads((REF / "families_reference.json").read_text())


def _cbpp() -> pd.DataFrame:
    d = pd.read_csv(REF / "data" / "cbpp.csv")
    d["period"] = d["period"].astype(str)
    return d


def _grouse() -> pd.DataFrame:
    d = pd.read_csv(REF / "data" / "grouseticks.csv")
    d["YEAR"] = d["YEAR"].astype(str)
    return d


def _pl_binary() -> pd.DataFrame:
    return pd.read_csv(REF / "data" / "pl_binary.csv")


_PL_BINARY = ("y ~ x + (1|g)", {"distribution": "binomial", "link": "comploglog"})
_CBPP = ("incidence ~ period + (1|herd)", {"distribution": "binomial", "binomial_size": "size"})
_GROUSE = ("TICKS ~ YEAR + (1|BROOD)", {"distribution": "poisson"})
PL_CASES = {
    "cbpp_mpl": (_cbpp, *_CBPP, {"fit_method": "mpl"}),
    "cbpp_mpl_dispersion": (_cbpp, *_CBPP, {"fit_method": "mpl", "dispersion_flag": True}),
    "cbpp_rempl": (_cbpp, *_CBPP, {"fit_method": "rempl"}),
    "grouse_mpl": (_grouse, *_GROUSE, {"fit_method": "mpl"}),
    "grouse_mpl_dispersion": (_grouse, *_GROUSE, {"fit_method": "mpl", "dispersion_flag": True}),
    # the first iterations' pseudo-data LMEs have their variance optimum at 0: warm-started there,
    # each later LME stayed at 0 (gradient 0 by symmetry; SD 5e-16) where its ML optimum is 0.26
    "pl_binary_cloglog_mpl": (_pl_binary, *_PL_BINARY, {"fit_method": "mpl"}),
    "pl_binary_cloglog_rempl": (_pl_binary, *_PL_BINARY, {"fit_method": "rempl"}),
}

TIGHT = {"loglik": 5e-8, "rel": 1e-8}  # at the reference's rule, pl_tolerance = 1e-10
# at MATLAB's default pl_tolerance = 1e-8; the fixed point is then known to ~1e-9 on the eta scale,
# so an estimate near 0 (pl_binary's intercept, 0.0021) is held to an absolute 1e-9
DEFAULT = {"loglik": 5e-7, "rel": 1e-8, "abs": 1e-9}
GLMMPQL_REL = 2e-4  # SDs and sigma against glmmPQL (module docstring)
GLMMPQL_FIXEF_ABS = 1e-4


@cache
def _pl_fit(name: str, pl_tolerance: float | None = None):
    loader, formula, kw, method_kw = PL_CASES[name]
    extra = {} if pl_tolerance is None else {"pl_tolerance": pl_tolerance}
    return ppl_glmm.fitglme(loader(), formula, **kw, **method_kw, **extra)


def _sd_of_b(m) -> float:
    return float(m.covariance_parameters()[2][0]["Estimate"].iloc[0])


@pytest.mark.parametrize("name", PL_CASES)
@pytest.mark.parametrize("tol,limits", [(1e-10, TIGHT), (None, DEFAULT)], ids=["tol1e-10", "default"])
def test_pl_matches_matlabs_loop_in_R(name, tol, limits):
    m, R = _pl_fit(name, tol), families_reference()[name]["pl_fit"]
    assert m.converged and not m.warnings
    assert m.log_likelihood == pytest.approx(R["logLik"], abs=limits["loglik"])
    np.testing.assert_allclose(
        m.coefficients["Estimate"], R["fixef"], rtol=limits["rel"], atol=limits.get("abs", 0)
    )
    np.testing.assert_allclose(m.coefficients["SE"], R["se"], rtol=limits["rel"])
    assert _sd_of_b(m) == pytest.approx(R["varcorr"][0]["estimate"], rel=limits["rel"])
    assert m.covariance_parameters()[1] == pytest.approx(R["dispersion"], rel=2 * limits["rel"])
    assert m.dispersion_estimated == R["dispersion_estimated"]
    crit = m.model_criterion.iloc[0]
    assert crit["AIC"] == pytest.approx(R["AIC"], abs=2 * limits["loglik"])
    assert crit["BIC"] == pytest.approx(R["BIC"], abs=2 * limits["loglik"])  # N - p for REMPL


@pytest.mark.parametrize("name", [n for n in PL_CASES if n.endswith("_dispersion")])
def test_dispersion_cases_agree_with_glmmpql(name):
    """MASS::glmmPQL: the same fixed point, reached by a looser rule (module docstring)."""
    m, Q = _pl_fit(name), families_reference()[name]["glmmPQL"]
    np.testing.assert_allclose(m.coefficients["Estimate"], Q["fixef"], atol=GLMMPQL_FIXEF_ABS)
    assert _sd_of_b(m) == pytest.approx(Q["varcorr"][0]["estimate"], rel=GLMMPQL_REL)
    assert m._result.sigma == pytest.approx(Q["sigma"], rel=GLMMPQL_REL)


# ---------------------------------------------------------------------------------------------
# Normal identity: MPL is ML, REMPL is REML
# ---------------------------------------------------------------------------------------------


def _sleepstudy():
    return pd.read_csv(REF / "data" / "sleepstudy.csv")


def _weighted_crossed():
    return pd.read_csv(REF / "data" / "normal_weighted_crossed.csv")


@pytest.mark.parametrize("pl,ml", [("mpl", "laplace"), ("rempl", "reml")], ids=["mpl=laplace", "rempl=reml"])
@pytest.mark.parametrize(
    "loader,formula,kw",
    [
        (
            lambda: pd.read_csv(REF / "data" / "sleepstudy.csv"),
            "Reaction ~ 1 + Days + (1 + Days|Subject)",
            {},
        ),
        (_weighted_crossed, "y ~ x + (1|g) + (1|h)", {"weights": "w"}),
    ],
    ids=["sleepstudy", "weighted_crossed"],
)
def test_normal_identity_pl_is_the_lme_fit(pl, ml, loader, formula, kw):
    """z = y - offset and W = w whatever eta is: one LME fit, equal to ML / REML."""
    a = ppl_glmm.fitglme(loader(), formula, fit_method=pl, **kw)
    b = ppl_glmm.fitglme(loader(), formula, fit_method=ml, **kw)
    assert a.optimization.n_iterations == 2  # the second confirms eta did not move
    assert a.log_likelihood == pytest.approx(b.log_likelihood, abs=1e-9)
    np.testing.assert_allclose(a.coefficients["Estimate"], b.coefficients["Estimate"], rtol=1e-7)
    np.testing.assert_allclose(a.coefficients["SE"], b.coefficients["SE"], rtol=1e-5)
    pa, pb = a.covariance_parameters(), b.covariance_parameters()
    for ta, tb in zip(pa[2], pb[2]):
        np.testing.assert_allclose(ta["Estimate"], tb["Estimate"], rtol=1e-5)
        np.testing.assert_allclose(ta[["Lower", "Upper"]], tb[["Lower", "Upper"]], rtol=1e-4)
    np.testing.assert_allclose(a.model_criterion, b.model_criterion, rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(a.random_effects()["Estimate"], b.random_effects()["Estimate"], atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Behaviour: convergence, options, dispersion, display, inference, refit
# ---------------------------------------------------------------------------------------------


def test_pl_iterations_limit_warns_and_flags_the_fit():
    loader, formula, kw, method_kw = PL_CASES["cbpp_mpl"]
    with pytest.warns(ConvergenceWarning, match=r"pseudo-likelihood did not converge in pl_iterations=2"):
        m = ppl_glmm.fitglme(loader(), formula, **kw, **method_kw, pl_iterations=2)
    assert not m.converged and m.optimization.n_iterations == 2
    assert "increase pl_iterations" in m.warnings[0]
    assert np.isfinite(m.log_likelihood)


def test_dispersion_flag_estimates_sigma_for_binomial():
    fixed, free = _pl_fit("cbpp_mpl"), _pl_fit("cbpp_mpl_dispersion")
    assert not fixed.dispersion_estimated and fixed.dispersion == 1.0
    assert free.dispersion_estimated and free.dispersion > 1.0
    assert free.num_covariance_parameters == fixed.num_covariance_parameters + 1
    err = free.covariance_parameters()[2][-1].iloc[0]
    assert err["Lower"] < err["Estimate"] < err["Upper"]
    ferr = fixed.covariance_parameters()[2][-1].iloc[0]
    assert (ferr["Lower"], ferr["Upper"]) == (1.0, 1.0)


def test_display_says_pseudo_likelihood():
    text = str(_pl_fit("cbpp_rempl"))
    assert text.startswith("Generalized linear mixed-effects model fit by PL")
    assert "FitMethod                       REMPL" in text


def test_inference_uses_the_final_pseudo_data_lme():
    """The model rebuilds the final LME from its (z, W): the objective there is the reported
    log-likelihood, and the covariance-parameter intervals come from its Hessian."""
    m = _pl_fit("grouse_mpl_dispersion")
    z, W = m._result.working
    assert z.shape == W.shape == (m.num_observations,)
    assert -m._problem().value(m._result.x) == pytest.approx(m.log_likelihood, abs=1e-9)
    tables = m.covariance_parameters()[2]
    lo, hi = tables[0][["Lower", "Upper"]].iloc[0]
    assert lo < _sd_of_b(m) < hi
    with pytest.raises(ValueError, match="'jointhessian' needs fit_method='laplace'"):
        loader, formula, kw, _ = PL_CASES["cbpp_mpl"]
        ppl_glmm.fitglme(loader(), formula, **kw, fit_method="mpl", covariance_method="jointhessian")


def test_refit_is_warm_and_equals_a_fresh_fit():
    m = _pl_fit("cbpp_mpl_dispersion")
    y = m.random(rng=5)
    new = m.refit(y)
    d = _cbpp()
    d["incidence"] = np.rint(y * d["size"]).astype(int)
    _, formula, kw, method_kw = PL_CASES["cbpp_mpl_dispersion"]
    fresh = ppl_glmm.fitglme(d, formula, **kw, **method_kw)
    assert new.converged and new.fit_method == "mpl"
    # the same PL fixed point, each reached to pl_tolerance = 1e-8
    assert new.log_likelihood == pytest.approx(fresh.log_likelihood, abs=1e-7)
    np.testing.assert_allclose(new.coefficients["Estimate"], fresh.coefficients["Estimate"], rtol=1e-6)
    assert new._result.sigma == pytest.approx(fresh._result.sigma, rel=1e-6)


def test_mu_start_changes_the_path_not_the_fixed_point():
    loader, formula, kw, method_kw = PL_CASES["cbpp_mpl"]
    d = loader()
    mu = np.full(len(d), 0.3)
    a = ppl_glmm.fitglme(d, formula, **kw, **method_kw, mu_start=mu, pl_tolerance=1e-10)
    b = _pl_fit("cbpp_mpl", 1e-10)
    assert a.log_likelihood == pytest.approx(b.log_likelihood, abs=1e-8)
    np.testing.assert_allclose(a.coefficients["Estimate"], b.coefficients["Estimate"], rtol=1e-7)


@pytest.mark.parametrize(
    "options,match",
    [
        (
            {"fit_method": "mpl", "mu_start": np.full(56, 1.2)},
            r"mu_start: binomial means must lie in \(0, 1\)",
        ),
        (
            {"fit_method": "mpl", "mu_start": np.zeros(56)},
            r"1 value|56 value\(s\) do not \(first: position 0",
        ),
        ({"fit_method": "mpl", "mu_start": np.full(5, 0.5)}, "mu_start: expected 56 values"),
        ({"fit_method": "mpl", "pl_iterations": 0}, "pl_iterations: must be >= 1"),
        ({"fit_method": "mpl", "pl_tolerance": -1e-8}, "pl_tolerance: must be a positive finite number"),
        ({"fit_method": "mpl", "dispersion_flag": "yes"}, "dispersion_flag: expected True or False"),
        ({"pl_iterations": 5}, "pl_iterations: applies to fit_method='mpl' or 'rempl', not 'laplace'"),
        ({"fit_method": "rempl", "init_pl_iterations": 3}, "init_pl_iterations: applies to fit_method="),
        (
            {"fit_method": "reml"},
            "fit_method: 'reml' applies to distribution normal, not 'binomial'; use one of 'laplace', "
            ".*'rempl'.* \\(the restricted fit of other distributions is 'rempl'\\)",
        ),
        (
            {"fit_method": "mpl", "dispersion_flag": 2},
            r"dispersion_flag: expected True or False \(or 1/0\), got 2",
        ),
        ({"check_hessian": 0.5}, "check_hessian: expected True or False"),
    ],
)
def test_bad_options_are_refused_before_any_work(options, match):
    loader, formula, kw, _ = PL_CASES["cbpp_mpl"]
    with pytest.raises((ValueError, TypeError), match=match):
        ppl_glmm.fitglme(loader(), formula, **kw, **options)


def test_logical_options_take_numpy_booleans_and_matlabs_1_and_0():
    """np.False_ was refused for dispersion_flag outside PL (an identity test against False),
    np.True_ for verbose, and 1/0 (MATLAB's logicals) for every flag."""
    loader, formula, kw, _ = PL_CASES["cbpp_mpl"]
    base = ppl_glmm.fitglme(loader(), formula, **kw, fit_method="mpl", dispersion_flag=True)
    for flag in (np.True_, 1):
        m = ppl_glmm.fitglme(
            loader(), formula, **kw, fit_method="mpl", dispersion_flag=flag, check_hessian=flag
        )
        assert m.dispersion_estimated and m.log_likelihood == base.log_likelihood
    lap = ppl_glmm.fitglme(loader(), formula, **kw)
    for flag in (np.False_, 0, False):
        m = ppl_glmm.fitglme(loader(), formula, **kw, dispersion_flag=flag, check_hessian=flag, verbose=flag)
        assert m.log_likelihood == lap.log_likelihood
    with pytest.raises(ValueError, match="dispersion_flag: applies to fit_method='mpl' or 'rempl'"):
        ppl_glmm.fitglme(loader(), formula, **kw, dispersion_flag=np.True_)


# ---------------------------------------------------------------------------------------------
# init_pl_iterations: Laplace and ApproximateLaplace started from PL estimates
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fit_method", ["laplace", "approximatelaplace"])
def test_init_pl_iterations_reaches_the_same_optimum(fit_method):
    loader, formula, kw, _ = PL_CASES["cbpp_mpl"]
    a = ppl_glmm.fitglme(loader(), formula, **kw, fit_method=fit_method)
    b = ppl_glmm.fitglme(loader(), formula, **kw, fit_method=fit_method, init_pl_iterations=10)
    assert b.converged
    assert b.log_likelihood == pytest.approx(a.log_likelihood, abs=1e-8)
    np.testing.assert_allclose(b.coefficients["Estimate"], a.coefficients["Estimate"], rtol=1e-5)
    assert b.optimization.n_iterations < a.optimization.n_iterations  # it starts closer


@pytest.mark.parametrize("fit_method", ["laplace", "approximatelaplace"])
def test_init_pl_iterations_at_a_zero_variance_still_find_the_optimum(fit_method):
    """pl_binary's first PL iterations put the variance at 0, where the gradient is 0: started
    there, Laplace stayed (logLik -202.04 against -200.95, SD 3e-14) and reported convergence."""
    loader, formula, kw, _ = PL_CASES["pl_binary_cloglog_mpl"]
    a = ppl_glmm.fitglme(loader(), formula, **kw, fit_method=fit_method)
    for n in (1, 10):
        b = ppl_glmm.fitglme(loader(), formula, **kw, fit_method=fit_method, init_pl_iterations=n)
        assert b.converged and not b.singular
        assert b.log_likelihood == pytest.approx(a.log_likelihood, abs=1e-8)
        assert _sd_of_b(b) == pytest.approx(_sd_of_b(a), rel=1e-4)


def test_a_diverging_pl_start_is_not_taken():
    """A gamma of shape 0.25: three PL iterations diverge (max|delta eta| 20 -> 27) and left a start
    1e17 log-likelihood units out, where BFGS met its scale-free tests and reported convergence at
    logLik -2260.59 (beta0 -33,801) against -130.45 (optimum hunt). The PL start is taken only
    where its objective beats the GLM start's."""
    rng = np.random.default_rng(1501015)
    g = np.r_[np.arange(20), rng.integers(0, 20, 280)]
    rng.shuffle(g)
    x, b = rng.normal(size=300), rng.normal(0, 1, 20)
    rng.normal(0, 1, 20)
    y = np.maximum(rng.gamma(0.25, np.exp(1.0 + 0.5 * x + 0.5 * b[g]) / 0.25), 1e-300)
    d = pd.DataFrame({"y": y, "x": x, "g": [f"g{v:03d}" for v in g]})
    kw = {"distribution": "gamma", "link": "log"}
    default = ppl_glmm.fitglme(d, "y ~ x + (1|g)", **kw)
    started = ppl_glmm.fitglme(d, "y ~ x + (1|g)", init_pl_iterations=3, **kw)
    assert default.converged and started.converged
    assert started.log_likelihood == pytest.approx(default.log_likelihood, abs=1e-8)
    np.testing.assert_allclose(started.coefficients["Estimate"], default.coefficients["Estimate"], rtol=1e-5)


def test_gamma_mpl_agrees_with_glmmpql():
    """Gamma (sigma^2 always estimated, as MATLAB): against MASS::glmmPQL, the same iteration
    stopped by its looser rule (tests/reference/pl_reference.R). Measured: fixed effects 1e-5
    absolute, SD of b 6e-5, sigma 1.2e-4 and SEs 1.2e-4 relative."""
    R = json.loads((REF / "pl_reference.json").read_text())["gamma_log_mpl_glmmPQL"]
    d = pd.read_csv(REF / "data" / "gamma_log.csv")
    m = ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution="gamma", link="log", fit_method="mpl")
    assert m.converged and m.dispersion_estimated
    np.testing.assert_allclose(m.coefficients["Estimate"], R["fixef"], atol=GLMMPQL_FIXEF_ABS)
    np.testing.assert_allclose(m.coefficients["SE"], R["se"], rtol=5e-4)
    assert _sd_of_b(m) == pytest.approx(R["sd_b"], rel=5e-4)
    assert m._result.sigma == pytest.approx(R["sigma"], rel=5e-4)


def test_inverse_gaussian_pl_converges_and_restricted_is_wider():
    """No R reference (glmmPQL has no inverse Gaussian family); PQL's estimates are not Laplace's
    (the intercept differs by 7% here), so only the loop's behaviour is checked."""
    d = pd.read_csv(REF / "data" / "invgauss_log.csv")
    kw = {"distribution": "inverse_gaussian", "link": "log"}
    mpl = ppl_glmm.fitglme(d, "y ~ x + (1|g)", fit_method="mpl", **kw)
    rempl = ppl_glmm.fitglme(d, "y ~ x + (1|g)", fit_method="rempl", **kw)
    assert mpl.converged and rempl.converged and mpl.optimization.n_iterations < 30
    assert _sd_of_b(rempl) > _sd_of_b(mpl)  # REML's degrees-of-freedom correction
    assert mpl.dispersion_estimated and mpl.num_covariance_parameters == 2


@pytest.mark.parametrize("fit_method", ["mpl", "rempl"])
def test_normal_log_link_with_non_positive_responses_starts_where_the_link_is_defined(fit_method):
    """MATLAB's start mu = y: log(y) of the 7 rows with y <= 0 is NaN, and the fit failed with
    'iterations diverged' (refits of random() draws of a positive fit too). Those rows start at
    log(mean y); the fixed point is the one a start of mean(y) on every row reaches."""
    rng = np.random.default_rng(1)
    g, x = np.repeat(np.arange(10), 10), rng.normal(size=100)
    y = np.exp(0.2 + 0.3 * x + rng.normal(0, 0.3, 10)[g]) + rng.normal(0, 0.8, 100)
    assert (y <= 0).sum() == 7
    d = pd.DataFrame({"y": y, "x": x, "g": g})
    m = ppl_glmm.fitglme(d, "y ~ x + (1|g)", link="log", fit_method=fit_method)
    same = ppl_glmm.fitglme(
        d, "y ~ x + (1|g)", link="log", fit_method=fit_method, mu_start=np.full(100, y.mean())
    )
    assert m.converged
    assert m.log_likelihood == pytest.approx(same.log_likelihood, abs=1e-5)  # pl_tolerance
    np.testing.assert_allclose(m.coefficients["Estimate"], same.coefficients["Estimate"], atol=1e-6)


def test_unfinished_iterations_on_a_large_link_scale_are_not_called_diverged():
    """Gamma means of ~1e-7 under the canonical link: eta ~1e7, and the second iteration changes it
    by ~2e6 while converging (it does in 8). The divergence threshold was absolute (1e6) and
    raised FitError; it is relative to the start's eta, so the unfinished fit is returned with its
    warning."""
    rng = np.random.default_rng(0)
    g, x = rng.integers(0, 10, 200), rng.uniform(size=200)
    mu = 1e-7 * np.exp(0.5 + 0.5 * x + rng.normal(0, 0.3, 10)[g])
    d = pd.DataFrame({"g": [f"g{i}" for i in g], "x": x, "y": rng.gamma(3, mu / 3)})
    with pytest.warns(ConvergenceWarning, match="pseudo-likelihood did not converge in pl_iterations=2"):
        m = ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution="gamma", fit_method="mpl", pl_iterations=2)
    assert not m.converged
    full = ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution="gamma", fit_method="mpl")
    assert full.converged


def test_iterations_that_settle_with_means_outside_the_range_raise():
    """A gamma fit on the reciprocal link whose linear predictor goes negative in a few rows: the
    pseudo-data clip those means to the range, and the loop settled there, reporting convergence
    with a dispersion of 1e31 and a log-likelihood of -11118 (the Laplace fit: -428.1355, with
    glmmTMB's estimates). It raises, naming the rows' count and the way out; the same data on
    the log link fit."""
    rng = np.random.default_rng(1)
    g, x = rng.integers(0, 20, 300), rng.normal(size=300)
    b, off = rng.normal(scale=0.5, size=20), rng.normal(scale=0.3, size=300)
    mu = np.exp(0.3 + 0.5 * x + b[g] + off)
    d = pd.DataFrame({"g": g.astype(str), "x": x, "o": 0.1 * off, "y": rng.gamma(4, mu / 4)})
    for method in ("mpl", "rempl"):
        with pytest.raises(ppl_glmm.FitError, match=r"means of \d+ row\(s\) outside the gamma family"):
            ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution="gamma", offset="o", fit_method=method)
    laplace = ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution="gamma", offset="o")
    assert laplace.converged and 0.3 < laplace.dispersion < 0.6  # (the data's shape 4: 0.25)
    on_log = ppl_glmm.fitglme(
        d, "y ~ x + (1|g)", distribution="gamma", link="log", offset="o", fit_method="mpl"
    )
    assert on_log.converged and np.isfinite(on_log.log_likelihood)


def test_the_polish_takes_newton_steps_with_a_renewed_hessian(monkeypatch):
    """Where the first optimum's matrix fails, _polish computes the Hessian again; its 2P
    evaluations were counted as steps, so with P >= 3 the loop ended before one step with it
    (decrement ~1e-7 against the 1e-9 target)."""
    from ppl_glmm import pseudo

    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(12), 8)
    x = rng.normal(size=96)
    rng.uniform(0.5, 2, size=96)
    b = rng.multivariate_normal([0, 0], [[0.09, 0.027], [0.027, 0.01]], size=12)
    y = rng.poisson(np.exp(0.5 + 0.3 * x + b[g, 0] + b[g, 1] * x))
    seen = []
    polish, hessian = pseudo._polish, pseudo.hessian

    def spy_hessian(lme, x, *a, **k):
        H = hessian(lme, x, *a, **k)
        seen.append(H)
        return H

    def spy_polish(lme, summary, hess_inv):
        seen.clear()
        out = polish(lme, summary, hess_inv)
        if seen:  # the decrement in the renewed matrix's metric
            grad = lme.value_and_grad(out[0].x)[1]
            renewals.append(float(np.sqrt(grad @ np.linalg.solve(seen[0], grad))))
        return out

    renewals: list[float] = []
    monkeypatch.setattr(pseudo, "_polish", spy_polish)
    monkeypatch.setattr(pseudo, "hessian", spy_hessian)
    d = pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})
    ppl_glmm.fitglme(d, "y ~ x + (1 + x|g)", distribution="poisson", fit_method="mpl")
    assert renewals and max(renewals) < 1e-9


def test_pl_converges_with_two_terms_on_the_boundary():
    """Inverse Gaussian (log link), (1 + x|g) + (1|h) with h's variance and the correlation at
    their bounds: with the polish's renewed Hessian kept as the next iterations' preconditioner,
    MPL and REMPL cycled at max|delta eta| ~2e-6 for 300 iterations (MATLAB's loop in R with lmer
    contracts to 9e-8 by iteration 120); they converge in 104-107."""
    rng = np.random.default_rng(1)
    g = rng.integers(0, 25, 500)
    h = rng.integers(0, 10, 500)
    x = rng.normal(size=500)
    bg = rng.multivariate_normal([0, 0], np.diag([0.25, 0.0]), size=25)
    bh = rng.normal(0, 0.0, h.max() + 1)
    y = rng.wald(np.exp(1.0 + 0.3 * x + bg[g, 0] + bg[g, 1] * x + bh[h]), 5.0)
    d = pd.DataFrame({"y": y, "x": x, "g": [f"g{i:03d}" for i in g], "h": [f"h{i:04d}" for i in h]})
    for method in ("mpl", "rempl"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ppl_glmm.SingularFitWarning)
            m = ppl_glmm.fitglme(
                d,
                "y ~ 1 + x + (1 + x|g) + (1|h)",
                distribution="inverse_gaussian",
                link="log",
                fit_method=method,
                pl_iterations=300,
            )
        assert m.converged and m.singular and m.optimization.n_iterations < 150
