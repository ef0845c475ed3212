"""fitglme's covariance_pattern (MATLAB 'CovariancePattern'), against R fits of the same structure.

References: tests/reference/patterns_reference.json, written by
tests/reference/make_reference_patterns.R (lme4 ``||`` and equivalent formulas, glmmTMB ``diag()``
and ``cs()`` with tied SDs). Tolerances:

* logLik: 1e-8 against lmer (exact ML) and glmmTMB (exact Laplace); measured: at most 2.2e-10.
* fixed effects, Psi and sigma: 1e-5 relative (Psi: plus 1e-6 x its largest entry, for its zeros).
  The log-likelihood is flat at its maximum, so estimates agree only to about the square root of
  the optimisers' tolerances in the objective: glmmTMB's estimates differ from ours (and from
  lme4's) by up to 2.2e-6 relative; lme4's by at most 1.3e-7.
"""

from __future__ import annotations

import copy
import json
import pickle
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ppl_glmm as pg
from ppl_glmm.covariance_patterns import TermPattern
from ppl_glmm.errors import InputError, InputTypeError

REF = Path(__file__).parent / "reference"
PAT3 = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=bool)  # {(Intercept), Days} and {D2}


@cache
def reference() -> dict:
    return json.loads((REF / "patterns_reference.json").read_text())


def sleep() -> pd.DataFrame:
    d = pd.read_csv(REF / "data" / "sleepstudy.csv")
    d["Subject"] = d["Subject"].astype(str)
    d["period3"] = (d["Days"] // 4).astype(str)  # as the R script: factor(Days %/% 4)
    d["D2"] = (d["Days"] - 4.5) ** 2 / 10
    return d


def cbpp() -> pd.DataFrame:
    d = pd.read_csv(REF / "data" / "cbpp.csv")
    d["period"] = d["period"].astype(str)
    d["herd"] = d["herd"].astype(str)
    return d


def binary() -> pd.DataFrame:
    return pd.read_csv(REF / "data" / "binary_slope.csv")


# name -> (data, formula, fitglme keywords)
MODELS = {
    "sleep_diagonal": (sleep, "Reaction ~ Days + (1 + Days | Subject)", {"covariance_pattern": "Diagonal"}),
    "sleep_isotropic": (sleep, "Reaction ~ Days + (1 + Days | Subject)", {"covariance_pattern": "isotropic"}),
    "sleep_compsymm": (
        sleep,
        "Reaction ~ period3 + (0 + period3 | Subject)",
        {"covariance_pattern": "CompSymm"},
    ),
    "sleep_pattern": (sleep, "Reaction ~ Days + (1 + Days + D2 | Subject)", {"covariance_pattern": PAT3}),
    "binary_diagonal": (
        binary,
        "y ~ x + (1 + x | subject)",
        {"distribution": "binomial", "covariance_pattern": ["Diagonal"]},
    ),
    "cbpp_compsymm": (
        cbpp,
        "incidence ~ period + (0 + period | herd)",
        {"distribution": "binomial", "binomial_size": "size", "covariance_pattern": "CompSymm"},
    ),
}


@cache
def model(name: str, **extra):
    data, formula, kw = MODELS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pg.fitglme(data(), formula, **{**kw, **extra})


# model -> R cases it must match (the lme4 binary case is checked separately below)
CASES = [
    ("sleep_diagonal", "sleep_diagonal_lme4"),
    ("sleep_diagonal", "sleep_diagonal_glmmtmb"),
    ("sleep_isotropic", "sleep_isotropic_glmmtmb"),
    ("sleep_compsymm", "sleep_compsymm_lme4"),
    ("sleep_compsymm", "sleep_compsymm_glmmtmb"),
    ("sleep_pattern", "sleep_pattern_lme4"),
    ("binary_diagonal", "binary_diagonal_glmmtmb"),
    ("cbpp_compsymm", "cbpp_compsymm_glmmtmb"),
]


@pytest.mark.parametrize(("name", "case"), CASES, ids=[c for _, c in CASES])
def test_pattern_fit_matches_r(name, case):
    m, r = model(name), reference()[case]
    assert m.log_likelihood == pytest.approx(r["logLik"], abs=1e-8)
    np.testing.assert_allclose(m._result.beta, r["fixef"], rtol=1e-5)
    psi = m.covariance_parameters()[0][0]
    np.testing.assert_allclose(psi, np.array(r["psi"]), rtol=1e-5, atol=1e-6 * np.max(np.abs(r["psi"])))
    assert m._result.sigma == pytest.approx(r["sigma"], rel=1e-5)


def test_lme4_binary_diagonal_stops_below_the_laplace_optimum():
    """glmer's logLik for the binary (x || subject) fit is 6e-4 below glmmTMB's and ours: at lme4's
    own estimates our exact Laplace log-likelihood is glmmTMB's maximum to 1e-5, so the
    difference is lme4's deviance approximation, not the optimum; the estimates agree to 1e-3."""
    m, r = model("binary_diagonal"), reference()["binary_diagonal_lme4"]
    x = np.concatenate([r["fixef"], np.sqrt(np.diag(np.array(r["psi"])))])
    at_lme4 = -m._fit.problem().value(x)
    assert at_lme4 <= m.log_likelihood + 1e-9
    assert at_lme4 == pytest.approx(m.log_likelihood, abs=1e-5)
    np.testing.assert_allclose(m._result.beta, r["fixef"], rtol=1e-3)


def test_compsymm_is_the_variance_components_model():
    """(0 + f | g) CompSymm = (1 | g) + (1 | g:f): s^2 = tau^2 + omega^2, rho = tau^2 / s^2."""
    r = reference()["sleep_compsymm_lme4"]
    table = model("sleep_compsymm").covariance_parameters()[2][0]
    s2 = r["tau2"] + r["omega2"]
    assert table["Estimate"].tolist() == pytest.approx([np.sqrt(s2), r["tau2"] / s2], rel=1e-4)


# ---- the same likelihood written in the formula: every fit method --------------------------------
@pytest.mark.parametrize("fit_method", ["laplace", "approximatelaplace", "reml", "mpl", "rempl"])
def test_diagonal_pattern_equals_the_double_bar_formula(fit_method):
    """Diagonal on (1 + Days | Subject) and (1 + Days || Subject) (two scalar terms, the default
    parametrisation) are one model: same log-likelihood, estimates and Wald intervals, by every
    fit method (the pattern path and the default path share no parametrisation code). Tolerance
    1e-7 on logLik, 1e-5 relative on estimates and 1e-3 on CIs (finite-difference Hessians)."""
    d = sleep()
    a = pg.fitglme(
        d, "Reaction ~ Days + (1 + Days | Subject)", fit_method=fit_method, covariance_pattern="diagonal"
    )
    b = pg.fitglme(d, "Reaction ~ Days + (1 + Days || Subject)", fit_method=fit_method)
    assert a.log_likelihood == pytest.approx(b.log_likelihood, abs=1e-7)
    np.testing.assert_allclose(a._result.beta, b._result.beta, rtol=1e-5)
    ta, tb = a.covariance_parameters()[2], b.covariance_parameters()[2]
    est_b = [tb[0]["Estimate"].iloc[0], tb[1]["Estimate"].iloc[0]]
    np.testing.assert_allclose(ta[0]["Estimate"], est_b, rtol=1e-5)
    lo_b = [tb[0]["Lower"].iloc[0], tb[1]["Lower"].iloc[0]]
    hi_b = [tb[0]["Upper"].iloc[0], tb[1]["Upper"].iloc[0]]
    np.testing.assert_allclose(ta[0]["Lower"], lo_b, rtol=1e-3)
    np.testing.assert_allclose(ta[0]["Upper"], hi_b, rtol=1e-3)
    assert a.num_covariance_parameters == b.num_covariance_parameters == 3
    np.testing.assert_allclose(a.model_criterion.to_numpy(), b.model_criterion.to_numpy(), rtol=1e-8)


def test_boolean_pattern_intervals_equal_the_split_formula():
    """PAT3 on (1 + Days + D2 | Subject) = (1 + Days | Subject) + (0 + D2 | Subject): same rows
    (std, corr, std, std) and Wald intervals (1e-3 relative: finite-difference Hessians)."""
    a = model("sleep_pattern")
    b = pg.fitglme(sleep(), "Reaction ~ Days + (1 + Days | Subject) + (0 + D2 | Subject)")
    ta = a.covariance_parameters()[2][0]
    tb = pd.concat(b.covariance_parameters()[2][:2], ignore_index=True)
    assert list(zip(ta["Name1"], ta["Name2"], ta["Type"])) == list(zip(tb["Name1"], tb["Name2"], tb["Type"]))
    for col in ("Estimate", "Lower", "Upper"):
        np.testing.assert_allclose(ta[col], tb[col], rtol=1e-3)


def test_full_and_fullcholesky_are_the_same_fit():
    d = sleep()
    a = pg.fitglme(d, "Reaction ~ Days + (1 + Days | Subject)", covariance_pattern="Full")
    b = pg.fitglme(d, "Reaction ~ Days + (1 + Days | Subject)")
    assert a.log_likelihood == b.log_likelihood
    assert a.covariance_parameters()[2][0].attrs["title"] == "Covariance Type: Full"
    assert b.covariance_parameters()[2][0].attrs["title"] == "Covariance Type: FullCholesky"
    assert "Covariance Type" not in str(b)  # default displays are unchanged


# ---- tables, display, counts --------------------------------------------------------------------
ROWS = {
    "sleep_diagonal": [("(Intercept)", "(Intercept)", "std"), ("Days", "Days", "std")],
    "sleep_isotropic": [("(Intercept)", "(Intercept)", "std")],
    "sleep_compsymm": [("period3_0", "period3_0", "std"), ("period3_1", "period3_0", "corr")],
    "sleep_pattern": [
        ("(Intercept)", "(Intercept)", "std"),
        ("Days", "(Intercept)", "corr"),
        ("Days", "Days", "std"),
        ("D2", "D2", "std"),
    ],
}
TYPES = {"sleep_diagonal": "Diagonal", "sleep_isotropic": "Isotropic", "sleep_compsymm": "CompSymm"}
TYPES["sleep_pattern"] = "Pattern"


@pytest.mark.parametrize("name", list(ROWS))
def test_covariance_parameters_rows_and_title(name):
    m = model(name)
    psi, _, stats = m.covariance_parameters()
    t = stats[0]
    assert list(zip(t["Name1"], t["Name2"], t["Type"])) == ROWS[name]
    assert t.attrs["title"] == f"Covariance Type: {TYPES[name]}"
    assert np.all((t["Lower"] < t["Estimate"]) & (t["Estimate"] < t["Upper"]))
    # the Psi returned has the pattern's structure
    if name == "sleep_diagonal":
        assert psi[0][0, 1] == 0.0
    if name == "sleep_isotropic":
        assert psi[0][0, 0] == pytest.approx(psi[0][1, 1], rel=1e-12) and psi[0][0, 1] == 0.0
    if name == "sleep_compsymm":
        off = psi[0][~np.eye(3, dtype=bool)]
        np.testing.assert_allclose(np.diag(psi[0]), psi[0][0, 0], rtol=1e-12)
        np.testing.assert_allclose(off, off[0], rtol=1e-12)
    if name == "sleep_pattern":
        assert psi[0][2, 0] == psi[0][2, 1] == 0.0


def test_compsymm_correlation_interval_is_wald_on_its_own_scale():
    """CompSymm's correlation CI is symmetric in log((rho - lo)/(1 - rho)), lo = -1/(q-1) = -1/2;
    the std CI symmetric in log s."""
    t = model("sleep_compsymm").covariance_parameters()[2][0]
    lo = -0.5

    def nat(r):
        return np.log((r - lo) / (1 - r))

    est, low, up = t.loc[1, ["Estimate", "Lower", "Upper"]]
    assert nat(up) - nat(est) == pytest.approx(nat(est) - nat(low), rel=1e-10)
    est, low, up = t.loc[0, ["Estimate", "Lower", "Upper"]]
    assert np.log(up / est) == pytest.approx(np.log(est / low), rel=1e-10)


def test_display_shows_the_covariance_type():
    text = str(model("sleep_diagonal"))
    lines = text.splitlines()
    k = lines.index("Group: Subject (18 Levels)")
    assert lines[k + 1].strip() == "Covariance Type: Diagonal"
    assert "Covariance parameters                3" in text


@pytest.mark.parametrize(
    ("name", "k"),
    [
        ("sleep_diagonal", 2 + 2 + 1),
        ("sleep_isotropic", 2 + 1 + 1),
        ("sleep_compsymm", 3 + 2 + 1),
        ("sleep_pattern", 2 + 4 + 1),
    ],
)
def test_model_criterion_counts_the_pattern_parameters(name, k):
    """DF = p + the pattern's parameters + sigma: a Diagonal 2 x 2 term has 2, Isotropic 1,
    CompSymm 2, the 3 x 3 block pattern 4."""
    m = model(name)
    mc = m.model_criterion.iloc[0]
    assert m.num_coefficients + m.num_covariance_parameters == k
    assert mc["AIC"] == pytest.approx(2 * (k - m.log_likelihood), rel=1e-14)
    assert mc["BIC"] == pytest.approx(k * np.log(180) - 2 * m.log_likelihood, rel=1e-14)


# ---- refit, random, copies ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sleep_compsymm", "cbpp_compsymm", "sleep_pattern"])
def test_refit_of_its_own_response_reproduces_the_fit(name, forbid_compilation):
    m = model(name)
    r = m.refit(m.response())
    assert r.log_likelihood == pytest.approx(m.log_likelihood, abs=1e-9)
    np.testing.assert_allclose(r._result.theta, m._result.theta, rtol=1e-6, atol=1e-8)
    assert forbid_compilation()


def test_random_draws_have_the_patterned_covariance():
    """Draws from the CompSymm sleepstudy fit: the covariance of the per-(subject, period) mean
    residual y - X beta over 300 draws x 18 subjects equals Psi + sigma^2 diag(1 / n_k) (n_k = 4,
    4, 2 days per period). Tolerance 10% relative: the sampling SE of a variance from 5400 draws
    is ~2%, of a covariance ~2.5%; the seed is fixed."""
    m = model("sleep_compsymm")
    d = sleep()
    psi = m.covariance_parameters()[0][0]
    resid = np.array([m.random(rng=s) for s in range(300)]) - (m.design_matrix("fixed") @ m._result.beta)
    means = []
    for _, rows in d.groupby("Subject").indices.items():
        per = d["period3"].to_numpy()[rows]
        means.append(np.column_stack([resid[:, rows[per == k]].mean(axis=1) for k in ("0", "1", "2")]))
    emp = np.cov(np.vstack(means).T)
    expected = psi + m.dispersion * np.diag([1 / 4, 1 / 4, 1 / 2])
    np.testing.assert_allclose(emp, expected, rtol=0.1)


@pytest.mark.parametrize(
    "clone", [lambda m: pickle.loads(pickle.dumps(m)), copy.deepcopy], ids=["pickle", "deepcopy"]
)
def test_a_copied_patterned_model_keeps_its_pattern(clone):
    m = model("sleep_compsymm")
    c = clone(m)
    assert c._ws.patterns == m._ws.patterns
    assert c.log_likelihood == m.log_likelihood
    y = m.random(rng=5)
    np.testing.assert_array_equal(c.random(rng=5), y)
    assert c.refit(y).log_likelihood == pytest.approx(m.refit(y).log_likelihood, abs=1e-9)


def test_bayesian_fits_refuse_a_structured_pattern():
    m = model("sleep_diagonal")
    with pytest.raises(InputError, match="covariance_pattern"):
        m.fit_bayes(draws=10, chains=1, progress=False)
    with pytest.raises(InputError, match="covariance_pattern"):
        m.to_inference_data(draws=10)
    with pytest.raises(InputError, match="covariance_pattern"):
        pg.fitglme_bayes(sleep(), "Reaction ~ Days + (1 + Days | Subject)", covariance_pattern="Diagonal")


# ---- the maps themselves --------------------------------------------------------------------------
@pytest.mark.parametrize("q", [2, 3, 5])
def test_compsymm_jacobian_and_inverse(q):
    """The exact Jacobian equals central differences (step 1e-6: error ~1e-10); params_from_theta
    inverts the map; theta gives Psi = a^2 [(1 - rho) I + rho 11']."""
    t = TermPattern("CompSymm", q)
    v = np.array([0.8, -0.4])
    J = t.jacobian(v)
    Jn = np.column_stack([(t.theta(v + e) - t.theta(v - e)) / 2e-6 for e in 1e-6 * np.eye(2)])
    np.testing.assert_allclose(J, Jn, atol=1e-8)
    np.testing.assert_allclose(t.params_from_theta(t.theta(v)), v, atol=1e-12)
    np.testing.assert_allclose(t.params_from_theta(-t.theta(v)), v, atol=1e-12)  # sign symmetry
    L = np.zeros((q, q))
    cols, rows = np.triu_indices(q)
    L[rows, cols] = t.theta(v)
    lo = -1 / (q - 1)
    rho = (1 + lo) / 2 + (1 - lo) / 2 * np.tanh(-0.4)
    np.testing.assert_allclose(L @ L.T, 0.64 * ((1 - rho) * np.eye(q) + rho), atol=1e-14)


def test_isotropic_and_diagonal_maps():
    iso, dg = TermPattern("Isotropic", 3), TermPattern("Diagonal", 3)
    # theta order: (1,1) (2,1) (3,1) (2,2) (3,2) (3,3)
    np.testing.assert_array_equal(iso.theta(np.array([2.0])), [2, 0, 0, 2, 0, 2])
    np.testing.assert_array_equal(dg.theta(np.array([1.0, 2.0, 3.0])), [1, 0, 0, 2, 0, 3])
    np.testing.assert_array_equal(dg.canonical(np.array([-1.0, 2.0, -3.0])), [1, 2, 3])


# ---- bad input --------------------------------------------------------------------------------------
BAD = [
    ("Diagonals", InputError, "unknown pattern 'Diagonals'"),
    (["Diagonal", "Full"], InputError, "2 pattern\\(s\\) for 1 random-effects term"),
    (3, InputTypeError, "expected a string or a boolean matrix"),
    (np.ones((2, 3), bool), InputError, "must be square"),
    (np.array([[1, 1], [0, 1]], bool), InputError, "not symmetric"),
    (np.array([[1, 0], [0, 0]], bool), InputError, "True on its diagonal"),
    (np.ones((3, 3), bool), InputError, "must be 2 x 2, got 3 x 3"),
    (np.array([[0.5, 0], [0, 1]]), InputTypeError, "must be boolean"),
    ([], InputError, "empty list"),
    # names as a numpy array, a Series, per-term matrices as nested lists, and which entry is bad
    (
        np.array(["Diagonal", "Isotropic"]),
        InputTypeError,
        r"numpy array of names .* pass the names as a list",
    ),
    (pd.Series(["Diagonal"]), InputTypeError, "boolean matrix, got a Series;"),
    ([[[True, False], [False, True]], [[True]]], InputTypeError, r"pass a list of numpy arrays"),
    (
        [np.array([[1, 1], [0, 1]], bool), "Isotropic"],
        InputError,
        r"matrix \(entry 1 of the list\) is not symm",
    ),
]


@pytest.mark.parametrize(("value", "err", "msg"), BAD)
def test_bad_patterns_are_refused(value, err, msg):
    with pytest.raises(err, match=msg):
        pg.fitglme(sleep(), "Reaction ~ Days + (1 + Days | Subject)", covariance_pattern=value)


def test_a_pattern_that_is_not_block_diagonal_is_refused():
    chain = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], bool)  # 1-2 and 2-3 linked, 1-3 not
    with pytest.raises(InputError, match="block diagonal after a permutation"):
        pg.fitglme(sleep(), "Reaction ~ Days + (1 + Days + D2 | Subject)", covariance_pattern=chain)


def test_bad_pattern_type_is_refused_before_the_design():
    """A bad value is refused before the data are read (no design is needed to see it)."""
    with pytest.raises(InputError, match="unknown pattern"):
        pg.fitglme(pd.DataFrame({"y": [1.0]}), "y ~ 1 + (1 | g)", covariance_pattern="banded")


@pytest.mark.parametrize("fit_method", ["approximatelaplace", "reml", "rempl"])
def test_compsymm_equals_the_variance_components_formula(fit_method):
    """CompSymm on (0 + period3 | Subject) and (1 | Subject) + (1 | Subject:period3) fitted in
    Python by the default path are one model when rho >= 0 (here 0.72): same log-likelihood (1e-7)
    and s^2 = tau^2 + omega^2, rho = tau^2 / s^2 (1e-5 relative), under the nonlinear map's
    gradient for methods with beta in the inner step and for pseudo-likelihood."""
    d = sleep()
    a = pg.fitglme(
        d,
        "Reaction ~ period3 + (0 + period3 | Subject)",
        fit_method=fit_method,
        covariance_pattern="CompSymm",
    )
    b = pg.fitglme(d, "Reaction ~ period3 + (1 | Subject) + (1 | Subject:period3)", fit_method=fit_method)
    assert a.log_likelihood == pytest.approx(b.log_likelihood, abs=1e-7)
    tau2, om2 = (p[0][0, 0] for p in [b.covariance_parameters()[0][:1], b.covariance_parameters()[0][1:]])
    s2 = tau2 + om2
    est = a.covariance_parameters()[2][0]["Estimate"].to_numpy()
    np.testing.assert_allclose(est, [np.sqrt(s2), tau2 / s2], rtol=1e-5)
    np.testing.assert_allclose(a._result.beta, b._result.beta, rtol=1e-5)


def test_inference_methods_on_a_diagonal_pattern_equal_the_double_bar_model():
    """The methods of a fitted model work under a pattern: (1 + Days | Subject) with 'Diagonal' is
    (1 + Days || Subject), whose b holds the same effects in another order (term-major); the
    SEPred table, condVar, coef_test, predictions with intervals and the LRT against the full
    model agree with that model's."""
    d = sleep()
    diag = pg.fitglme(d, "Reaction ~ Days + (1 + Days | Subject)", covariance_pattern="Diagonal")
    split = pg.fitglme(d, "Reaction ~ Days + (1 + Days || Subject)")
    full = pg.fitglme(d, "Reaction ~ Days + (1 + Days | Subject)")
    a = diag.random_effects().sort_values(["Name", "Level"]).reset_index(drop=True)
    b = split.random_effects().sort_values(["Name", "Level"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[["Group", "Level", "Name"]], b[["Group", "Level", "Name"]])
    cols = ["Estimate", "SEPred", "Lower", "Upper"]
    np.testing.assert_allclose(a[cols].to_numpy(), b[cols].to_numpy(), rtol=1e-5, atol=1e-6)
    cv = diag.cond_var()[0]  # levels x 2 x 2 (the data couple a subject's intercept and slope, so
    # the blocks are not diagonal; the || model reports each term's variances alone)
    assert np.all(np.abs(cv[:, 0, 1]) > 0)
    np.testing.assert_allclose(cv[:, 0, 0], split.cond_var()[0][:, 0, 0], rtol=1e-5)
    np.testing.assert_allclose(cv[:, 1, 1], split.cond_var()[1][:, 0, 0], rtol=1e-5)
    np.testing.assert_allclose(diag.coef_test().F, split.coef_test().F, rtol=1e-6)
    for m in (diag, split):
        assert np.all(np.isfinite(m.predict(d.iloc[:5])[1]))
    np.testing.assert_allclose(diag.predict()[1], split.predict()[1], rtol=1e-6)
    lrt = diag.compare(full)
    assert list(lrt["DF"]) == [5, 6]
    np.testing.assert_allclose(
        lrt["LRStat"].iloc[1], 2 * (full.log_likelihood - split.log_likelihood), rtol=1e-6
    )


def test_a_compound_symmetry_fit_at_its_correlation_bound_refits():
    """The fitted correlation is -1/(q - 1) = -0.5: tanh of the optimiser's parameter rounds to -1
    there, R(rho) is singular, and refit (hence every bootstrap replicate) raised LinAlgError."""
    import warnings

    rng = np.random.default_rng(7)
    n = 96
    g, h, x = np.repeat(np.arange(12), 8), rng.integers(0, 6, size=n), rng.normal(size=n)
    eta = 1 + 0.3 * x + rng.normal(scale=0.4, size=12)[g] + rng.normal(scale=0.2, size=6)[h]
    d = pd.DataFrame({"g": g.astype(str), "x": x, "yg": rng.gamma(shape=4, scale=np.exp(eta) / 4)})
    d["x2"] = np.random.default_rng(1).normal(size=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = pg.fitglme(
            d, "yg ~ x + (1 + x + x2|g)", distribution="gamma", link="log", covariance_pattern="CompSymm"
        )
        corr = m.covariance_parameters()[2][0]["Estimate"].iloc[1]
        assert corr == pytest.approx(-0.5, abs=1e-6)
        again = m.refit(m.response())
    assert again.log_likelihood == pytest.approx(m.log_likelihood, abs=1e-8)


def test_compound_symmetry_at_its_correlation_bound_is_singular():
    """An NB (0 + f|g) CompSymm fit ended at z = 7.97 (rho = 1 - 1.1e-7), where Lambda's smallest
    diagonal, 1.6e-4, is above lme4's tolerance: not flagged singular, and its Wald interval was
    [-0.5, NaN] with NumPy overflow warnings ((lo + e^z)/(1 + e^z) is inf/inf)."""
    rng = np.random.default_rng(5)
    g = rng.integers(0, 30, 900)
    h = rng.integers(0, 15, 900)
    x = rng.normal(size=900)
    cov = np.array([[0.25, 0.3 * 0.5 * 0.4], [0.3 * 0.5 * 0.4, 0.16]])
    bg = rng.multivariate_normal([0, 0], cov, size=30)
    bh = rng.normal(0, 0.3, h.max() + 1)
    mu = np.exp(1.0 + 0.3 * x + bg[g, 0] + bg[g, 1] * x + bh[h])
    y = rng.negative_binomial(2.0, 2.0 / (2.0 + mu))
    f = np.random.default_rng(9).choice(["p", "q", "r"], 900)
    d = pd.DataFrame({"y": y, "x": x, "g": [f"g{i:03d}" for i in g], "f": f})
    with pytest.warns(pg.SingularFitWarning):
        m = pg.fitglme(
            d, "y ~ 1 + x + (0 + f|g)", distribution="negative_binomial", covariance_pattern="CompSymm"
        )
    assert m.singular
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("ignore", pg.GLMMWarning)
        row = m.covariance_parameters()[2][0].loc[1]
    assert (
        row["Estimate"] == pytest.approx(1.0, abs=1e-6) and np.isnan(row["Lower"]) and np.isnan(row["Upper"])
    )
    nested = pg.fitglme(d, "y ~ 1 + x + (1|g) + (1|g:f)", distribution="negative_binomial")
    assert m.log_likelihood == pytest.approx(nested.log_likelihood, abs=1e-5)  # the same model at rho = 1
    # only the correlation is held: the SD's interval is that of the model with rho = 1, (1|g)
    # (it was NaN while the whole term was held)
    one = pg.fitglme(d, "y ~ 1 + x + (1|g)", distribution="negative_binomial")
    assert m.log_likelihood == pytest.approx(one.log_likelihood, abs=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pg.GLMMWarning)
        sd = m.covariance_parameters()[2][0].loc[0, ["Estimate", "Lower", "Upper"]].to_numpy(float)
    sd_one = one.covariance_parameters()[2][0].loc[0, ["Estimate", "Lower", "Upper"]].to_numpy(float)
    np.testing.assert_allclose(sd, sd_one, rtol=1e-4)


def _gamma_slopes(scale: float) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    gi = np.repeat(np.arange(40), 15)
    x1 = rng.normal(size=gi.size)
    b = rng.multivariate_normal(np.zeros(2), [[0.5, 0.1], [0.1, 0.3]], size=40)
    mu = np.exp(0.3 + 0.3 * x1 + b[gi, 0] + b[gi, 1] * x1)
    return pd.DataFrame({"y": scale * rng.gamma(4.0, mu / 4.0), "x1": x1, "g": [f"g{i:02d}" for i in gi]})


@pytest.mark.parametrize("pattern", ["Diagonal", "CompSymm"])
def test_patterned_joint_hessian_is_unit_free(pattern):
    """Finite-difference steps of a pattern's parameters had a unit of 1 while theta is in the link
    scale's units: on y x 1e6 (gamma, reciprocal link: eta ~ 1e-6) the Diagonal term's joint-Hessian
    SEs were (0.048, NaN) for (0.054, 0.016), CompSymm's 8% off, and check_hessian warned of
    unidentified parameters. The SEs now scale with y, as the unpatterned (1 + x1 || g)'s do."""
    kw = {"distribution": "gamma", "link": "reciprocal", "covariance_method": "jointhessian"}
    se = []
    for scale in (1.0, 1e6):
        with warnings.catch_warnings():
            warnings.simplefilter("error", pg.ConvergenceWarning)  # (check_hessian's warning)
            m = pg.fitglme(
                _gamma_slopes(scale),
                "y ~ x1 + (1 + x1|g)",
                covariance_pattern=pattern,
                check_hessian=True,
                **kw,
            )
        se.append(m.fixed_effects()["SE"].to_numpy() * scale)
    assert np.all(np.isfinite(se[1]))
    np.testing.assert_allclose(se[1], se[0], rtol=1e-4)


def _slope_without_variance() -> pd.DataFrame:
    """Poisson counts with random intercepts and x1 slopes, and no variance in the x2 slopes."""
    rng = np.random.default_rng(5)
    gi = np.repeat(np.arange(50), 18)
    x1, x2 = rng.normal(size=gi.size), rng.normal(size=gi.size)
    b0, b1 = rng.normal(0, 0.5, 50), rng.normal(0, 0.4, 50)
    y = rng.poisson(np.exp(0.3 + 0.3 * x1 - 0.2 * x2 + b0[gi] + b1[gi] * x1))
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": [f"g{i:02d}" for i in gi]})


def test_a_boolean_pattern_holds_only_its_blocks_on_the_boundary():
    """Blocks {(Intercept), x1} and {x2} with the x2 SD at 0: every interval of the term was NaN,
    while (1 + x1|g) + (0 + x2|g), the same model, has intervals for the free block; a block at
    the boundary is held alone now (as a Diagonal pattern's zero SDs are)."""
    d = _slope_without_variance()
    blocks = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = pg.fitglme(d, "y ~ x1 + x2 + (1 + x1 + x2|g)", distribution="poisson", covariance_pattern=blocks)
        b = pg.fitglme(d, "y ~ x1 + x2 + (1 + x1|g) + (0 + x2|g)", distribution="poisson")
    assert a.singular and a.log_likelihood == pytest.approx(b.log_likelihood, abs=1e-7)
    ta = a.covariance_parameters()[2][0]
    tb = pd.concat(b.covariance_parameters()[2][:2], ignore_index=True)
    for col in ("Estimate", "Lower", "Upper"):
        np.testing.assert_allclose(ta[col][:3], tb[col][:3], rtol=1e-3)
    assert np.isnan(ta["Lower"].iloc[3]) and ta["Estimate"].iloc[3] < 1e-4  # the held block
