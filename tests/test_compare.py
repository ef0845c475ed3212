"""``compare``: likelihood-ratio tests against lme4's ``anova(m0, m1)``, MATLAB's swap rule, the
refusals and nesting checks, and the boundary note.

Reference: tests/reference/compare_reference.json, written by make_reference_compare.R (lme4 at
tight settings). Tolerances: the fits agree with lme4 to ~1e-8 in logLik, so logLik, AIC, BIC and
LRStat are compared to 1e-6 absolute, and pValue to 1e-6 relative (the p-values span 1e-10 to 0.9).
"""

import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from reference_cases import REF, _cbpp, _data, _mfr
from scipy import stats

import ppl_glmm
from ppl_glmm.bootstrap import check_nested
from ppl_glmm.errors import GLMMWarning, InputError, InputTypeError
from ppl_glmm.inference.compare import columns_in_span, random_in_span

R = json.loads((REF / "compare_reference.json").read_text())["compare"]
MFR_FIXED = "defects ~ 1 + newprocess + time_dev + temp_dev"


def _sleep():
    return _data("sleepstudy.csv")


FORMULAS = {
    "cbpp0": (_cbpp, "incidence ~ 1 + (1|herd)", {"distribution": "binomial", "binomial_size": "size"}),
    "cbpp1": (_cbpp, "incidence ~ period + (1|herd)", {"distribution": "binomial", "binomial_size": "size"}),
    "sleep_int": (_sleep, "Reaction ~ Days + (1|Subject)", {}),
    "sleep_full": (_sleep, "Reaction ~ Days + (Days|Subject)", {}),
    "sleep_nodays": (_sleep, "Reaction ~ 1 + (Days|Subject)", {}),
    "mfr0": (_mfr, MFR_FIXED + " + (1|factory)", {"distribution": "poisson"}),
    "mfr1": (
        _mfr,
        MFR_FIXED + " + supplier + (1|factory)",
        {"distribution": "poisson", "dummy_var_coding": "effects"},
    ),
}


@pytest.fixture(scope="module")
def model():
    cache = {}

    def get(name):
        if name not in cache:
            loader, formula, kw = FORMULAS[name]
            cache[name] = ppl_glmm.fitglme(loader(), formula, **kw)
        return cache[name]

    return get


@pytest.mark.parametrize("pair", sorted(R))
def test_lrt_matches_lme4_anova(model, pair):
    ref = R[pair]
    small, big = model(ref["small"]), model(ref["big"])
    t = small.compare(big, check_nesting=True)
    assert list(t.columns) == ["Model", "DF", "AIC", "BIC", "LogLik", "LRStat", "deltaDF", "pValue"]
    assert list(t["Model"]) == ["GLME", "ALTGLME"]
    assert list(t["DF"]) == ref["npar"]
    np.testing.assert_allclose(t["LogLik"], ref["logLik"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(t["AIC"], ref["AIC"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(t["BIC"], ref["BIC"], rtol=0, atol=1e-6)
    assert t["LRStat"].iloc[1] == pytest.approx(ref["Chisq"], abs=1e-6)
    assert t["deltaDF"].iloc[1] == ref["Df"]
    assert t["pValue"].iloc[1] == pytest.approx(ref["p"], rel=1e-6)
    assert t[["LRStat", "deltaDF", "pValue"]].iloc[0].isna().all()  # blank in row 1 (MATLAB)
    # DF is the k of model_criterion: AIC = -2 LL + 2 DF
    np.testing.assert_allclose(t["AIC"], -2 * t["LogLik"] + 2 * t["DF"], rtol=1e-12)


def test_swap_rule_warns_and_orders_the_smaller_model_first(model):
    small, big = model("sleep_int"), model("sleep_full")
    with pytest.warns(GLMMWarning, match="swapped"):
        t = big.compare(small, names=("full", "intercept"))
    assert list(t["Model"]) == ["intercept", "full"]
    expected = small.compare(big, names=("intercept", "full"))
    pd.testing.assert_frame_equal(t, expected)


def test_names_and_models_unchanged(model):
    small, big = model("cbpp0"), model("cbpp1")
    ll = (small.log_likelihood, big.log_likelihood)
    beta = big.coefficients["Estimate"].to_numpy().copy()
    t = small.compare(big, names=["m0", "m1"])
    assert list(t["Model"]) == ["m0", "m1"]
    assert (small.log_likelihood, big.log_likelihood) == ll
    np.testing.assert_array_equal(big.coefficients["Estimate"], beta)


def test_boundary_note_and_mixture_p_value(model):
    """(1|Subject) -> (Days|Subject) adds one random-effects dimension (a variance and a
    covariance, deltaDF 2): the null distribution is 0.5 chi2_1 + 0.5 chi2_2 (Stram and Lee)."""
    t = model("sleep_int").compare(model("sleep_full"))
    lr = t["LRStat"].iloc[1]
    assert "boundary" in t.attrs["note"] and "conservative" in t.attrs["note"]
    assert t.attrs["pValue_mixture"] == pytest.approx(
        0.5 * stats.chi2.sf(lr, 1) + 0.5 * stats.chi2.sf(lr, 2), rel=1e-10
    )
    assert t.attrs["pValue_mixture"] < t["pValue"].iloc[1]
    fixed = model("sleep_nodays").compare(model("sleep_full"))  # fixed effect tested: no note
    assert fixed.attrs["note"] == "" and np.isnan(fixed.attrs["pValue_mixture"])


def test_one_added_variance_gives_the_chi2_0_chi2_1_mixture(model):
    two = ppl_glmm.fitglme(_sleep(), "Reaction ~ Days + (1|Subject) + (0 + Days|Subject)")
    t = model("sleep_int").compare(two, check_nesting=True)
    lr = t["LRStat"].iloc[1]
    assert t["deltaDF"].iloc[1] == 1
    assert t.attrs["pValue_mixture"] == pytest.approx(0.5 * stats.chi2.sf(lr, 1), rel=1e-10)


def test_loglik_of_the_alternative_must_not_be_smaller():
    d = _sleep()
    d["noise"] = np.random.default_rng(3).normal(size=len(d))
    a = ppl_glmm.fitglme(d, "Reaction ~ Days + (1|Subject)")
    b = ppl_glmm.fitglme(d, "Reaction ~ noise + (1|Subject)")  # same DF, smaller LL: no swap
    assert b.log_likelihood < a.log_likelihood
    with pytest.raises(InputError, match="cannot contain"):
        a.compare(b)


def test_check_nesting_refuses_non_nested_fixed_and_random(model):
    with pytest.raises(InputError, match="fixed-effects design of GLME is not within"):
        model("sleep_int").compare(model("sleep_nodays"), check_nesting=True)
    slope = ppl_glmm.fitglme(_sleep(), "Reaction ~ Days + (0 + Days|Subject)")
    a, b = model("sleep_int"), slope
    if b.log_likelihood < a.log_likelihood:
        a, b = b, a
    with pytest.raises(InputError, match="random-effects design of GLME is not within"):
        a.compare(b, check_nesting=True)
    # without check_nesting the same pair is compared (MATLAB); equal DF: no p-value
    t = a.compare(b)
    assert t["deltaDF"].iloc[1] == 0 and np.isnan(t["pValue"].iloc[1])


def test_refused_always_different_rows_response_weights_family_link(model):
    d = _sleep()
    base = model("sleep_int")
    fewer = ppl_glmm.fitglme(d, "Reaction ~ Days + (Days|Subject)", exclude=[0, 1])
    with pytest.raises(InputError, match="different rows"):
        base.compare(fewer)
    d2 = d.assign(R2=d["Reaction"] * 1.001)
    with pytest.raises(InputError, match="different responses"):
        base.compare(ppl_glmm.fitglme(d2, "R2 ~ Days + (Days|Subject)"))
    with pytest.raises(InputError, match="prior weights"):
        base.compare(
            ppl_glmm.fitglme(d.assign(w=1 + (d.index % 2)), "Reaction ~ Days + (Days|Subject)", weights="w")
        )
    cb = _cbpp()
    pois = ppl_glmm.fitglme(cb, "incidence ~ period + (1|herd)", distribution="poisson")
    with pytest.raises(InputError, match="different distributions"):
        model("cbpp0").compare(pois)
    probit = ppl_glmm.fitglme(
        cb, "incidence ~ period + (1|herd)", distribution="binomial", binomial_size="size", link="probit"
    )
    with pytest.raises(InputError, match="different links"):
        model("cbpp0").compare(probit)
    bigger = cb.assign(size=cb["size"] + 1)
    other = ppl_glmm.fitglme(
        bigger, "incidence ~ period + (1|herd)", distribution="binomial", binomial_size="size"
    )
    with pytest.raises(InputError, match="different binomial sizes"):
        model("cbpp0").compare(other)


def test_restricted_fits(model):
    d = _sleep()
    r_int = ppl_glmm.fitglme(d, "Reaction ~ Days + (1|Subject)", fit_method="reml")
    r_full = ppl_glmm.fitglme(d, "Reaction ~ Days + (Days|Subject)", fit_method="reml")
    r_nodays = ppl_glmm.fitglme(d, "Reaction ~ 1 + (Days|Subject)", fit_method="reml")
    # same fixed effects: the REML LRT of the random effects is valid
    t = r_int.compare(r_full, check_nesting=True)
    assert t["LRStat"].iloc[1] == pytest.approx(2 * (r_full.log_likelihood - r_int.log_likelihood), rel=1e-12)
    assert t["BIC"].iloc[0] == pytest.approx(r_int.model_criterion["BIC"].iloc[0], rel=1e-12)
    with pytest.raises(InputError, match="not comparable across fixed effects"):
        r_nodays.compare(r_full)
    with pytest.raises(InputError, match="restricted fit"):
        model("sleep_int").compare(r_full)


def test_restricted_fits_of_the_same_fixed_effects_coded_differently_are_refused():
    """The restricted log-likelihood moves by log|det A| when X becomes X A (lme4's too): the same
    REML model under effects and reference coding of a three-level factor is log 3 apart."""
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(12), 8)
    f = rng.choice(["a", "b", "c"], g.size)
    d = pd.DataFrame({"g": g, "f": f, "y": rng.normal(0, 1, 12)[g] + (f == "b") + rng.normal(size=g.size)})
    ref = ppl_glmm.fitglme(d, "y ~ f + (1|g)", fit_method="reml")
    eff = ppl_glmm.fitglme(d, "y ~ f + (1|g)", fit_method="reml", dummy_var_coding="effects")
    assert eff.log_likelihood - ref.log_likelihood == pytest.approx(-np.log(3), abs=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GLMMWarning)  # (f:g's variance may be estimated as zero)
        bigger = ppl_glmm.fitglme(d, "y ~ f + (1|g) + (1|f:g)", fit_method="reml")
    with pytest.raises(
        InputError,
        match=r"^alt: both models are fitted by reml with the same fixed effects coded differently "
        r"\(X_alt = X A, log\|det A\| = 1\.099\); .* scaling of the predictors$",
    ):
        eff.compare(bigger)
    t = ref.compare(bigger)  # the same coding: compared
    assert t["LRStat"].iloc[1] == pytest.approx(2 * (bigger.log_likelihood - ref.log_likelihood), rel=1e-12)


def test_a_pseudo_likelihood_is_not_compared_with_a_likelihood(model):
    cb = _cbpp()
    kw = {"distribution": "binomial", "binomial_size": "size"}
    mpl1 = ppl_glmm.fitglme(cb, "incidence ~ period + (1|herd)", fit_method="mpl", **kw)
    with pytest.raises(
        InputError,
        match=r"^alt: a pseudo-likelihood fit \(mpl\) cannot be compared with a likelihood fit \(laplace\)",
    ):
        model("cbpp0").compare(mpl1)
    q9 = ppl_glmm.fitglme(cb, "incidence ~ 1 + (1|herd)", fit_method="quadrature", n_agq=9, **kw)
    q5 = ppl_glmm.fitglme(cb, "incidence ~ period + (1|herd)", fit_method="quadrature", n_agq=5, **kw)
    q9.compare(q5)  # both approximate the marginal likelihood (lme4 compares them)
    with pytest.raises(
        InputError, match=r"^check_nesting: .* different numbers of nodes \(n_agq = 9 and 5\)"
    ):
        q9.compare(q5, check_nesting=True)


def test_no_boundary_note_where_the_null_is_interior(model):
    """A correlation (Full against Diagonal) or an estimated dispersion tested at 1 is not at a
    boundary: the chi-square holds, and there is no note."""
    d = _sleep()
    diag = ppl_glmm.fitglme(d, "Reaction ~ Days + (Days|Subject)", covariance_pattern="diagonal")
    split = ppl_glmm.fitglme(d, "Reaction ~ Days + (1|Subject) + (0 + Days|Subject)")
    for smaller in (diag, split):
        t = smaller.compare(model("sleep_full"))
        assert t["deltaDF"].iloc[1] == 1
        assert t.attrs["note"] == "" and np.isnan(t.attrs["pValue_mixture"])
    cb = _cbpp()
    kw = {"distribution": "binomial", "binomial_size": "size", "fit_method": "mpl"}
    fixed = ppl_glmm.fitglme(cb, "incidence ~ period + (1|herd)", **kw)
    free = ppl_glmm.fitglme(cb, "incidence ~ period + (1|herd)", dispersion_flag=True, **kw)
    t = fixed.compare(free)
    assert t["deltaDF"].iloc[1] == 1 and t.attrs["note"] == ""


def test_check_nesting_fit_methods_and_pseudo_likelihood(model):
    cb = _cbpp()
    kw = {"distribution": "binomial", "binomial_size": "size"}
    approx = ppl_glmm.fitglme(cb, "incidence ~ period + (1|herd)", fit_method="approximatelaplace", **kw)
    with pytest.raises(InputError, match="different methods"):
        model("cbpp0").compare(approx, check_nesting=True)
    model("cbpp0").compare(approx)  # allowed without check_nesting (MATLAB)
    mpl0 = ppl_glmm.fitglme(cb, "incidence ~ 1 + (1|herd)", fit_method="mpl", **kw)
    mpl1 = ppl_glmm.fitglme(cb, "incidence ~ period + (1|herd)", fit_method="mpl", **kw)
    # the chi-square test of two pseudo-likelihoods is unjustified: a warning with or without
    # check_nesting (MATLAB warns under CheckNesting only, and its documentation forbids the test)
    for nesting in (True, False):
        with pytest.warns(
            GLMMWarning, match="MPL, so the LRT compares the pseudo-likelihoods of two different"
        ):
            mpl0.compare(mpl1, check_nesting=nesting)
    rempl0 = ppl_glmm.fitglme(cb, "incidence ~ period + (1|herd)", fit_method="rempl", **kw)
    rempl1 = ppl_glmm.fitglme(cb, "incidence ~ period + (1|herd) + (1|period:herd)", fit_method="rempl", **kw)
    with pytest.warns(GLMMWarning, match="REMPL, so the LRT"):
        rempl0.compare(rempl1)  # same fixed effects: allowed
    with pytest.raises(InputError, match="REMPL"):
        rempl0.compare(rempl1, check_nesting=True)


def test_argument_types(model):
    m = model("cbpp0")
    with pytest.raises(InputTypeError, match="alt"):
        m.compare("ALTGLME")
    with pytest.raises(InputTypeError, match="check_nesting"):
        m.compare(model("cbpp1"), check_nesting="yes")
    with pytest.raises(InputTypeError, match="names"):
        m.compare(model("cbpp1"), names="m0")
    with pytest.raises(InputTypeError, match="names"):
        m.compare(model("cbpp1"), names=("m0", "m1", "m2"))


def _dense_in_span(A, B) -> bool:
    """Independent check: rank([B A]) == rank(B) (dense SVD; small designs only)."""
    return np.linalg.matrix_rank(np.hstack([B, A])) == np.linalg.matrix_rank(B)


def test_random_span_check_against_dense_ranks():
    """random_in_span (grouping shortcut, then sparse lsqr) against the rank of the dense [Z_big Z_small]."""
    d = _sleep()
    d["early"] = (d["Days"] < 5).astype(float)
    d["late"] = 1.0 - d["early"]
    d["pair"] = d["Subject"] // 2
    fits = {
        "int": "Reaction ~ Days + (1|Subject)",
        "full": "Reaction ~ Days + (Days|Subject)",
        "slope": "Reaction ~ Days + (0 + Days|Subject)",
        # the intercept of a subject is early + late: in the span, but only by combining terms
        "split": "Reaction ~ Days + (0 + early|Subject) + (0 + late|Subject)",
        "coarse": "Reaction ~ Days + (1|pair)",
    }
    designs = {k: ppl_glmm.fitglme(d, f)._fit.design for k, f in fits.items()}
    n = len(d)
    for a in designs:
        for b in designs:
            za, zb = designs[a], designs[b]
            expected = _dense_in_span(za.Z().toarray(), zb.Z().toarray())
            assert random_in_span(za.terms, zb.terms, n) == expected, (a, b)
    assert random_in_span(designs["int"].terms, designs["split"].terms, n)  # lsqr path
    assert random_in_span(designs["coarse"].terms, designs["int"].terms, n)  # refinement shortcut
    assert not random_in_span(designs["int"].terms, designs["coarse"].terms, n)
    assert sp.issparse(designs["int"].Z())


def test_fixed_span_check():
    rng = np.random.default_rng(0)
    B = rng.normal(size=(50, 3))
    assert columns_in_span(B @ rng.normal(size=(3, 2)), B)
    assert not columns_in_span(rng.normal(size=(50, 1)), B)


def _offset_models():
    rng = np.random.default_rng(3)
    g, x, t = rng.integers(0, 20, 300), rng.normal(size=300), rng.uniform(0.5, 3, 300)
    d = pd.DataFrame({"g": g.astype(str), "x": x, "lt": np.log(t)})
    d["y"] = rng.poisson(t * np.exp(0.2 + 0.3 * x + rng.normal(0, 0.4, 20)[g]))
    fit = lambda f, **kw: ppl_glmm.fitglme(d, f, distribution="poisson", **kw)  # noqa: E731
    with_offset, as_predictor = fit("y ~ x + (1|g)", offset="lt"), fit("y ~ x + lt + (1|g)")
    return with_offset, as_predictor, fit("y ~ 1 + (1|g)"), fit("y ~ x + (1|g)")


def test_offsets_nest_when_their_difference_is_in_the_larger_fixed_effects():
    """An offset log(t) against the model with log(t) as a predictor is nested (the test of its
    coefficient 1): compare's nesting check and the simulated test accept it. An offset against a
    model without it and without its variable is not nested: check_nesting refused nothing and
    gave a p-value of 1.7e-16 for such a pair, while the nsim path refused any two offsets."""
    with_offset, as_predictor, intercept_only, without = _offset_models()
    table = with_offset.compare(as_predictor, check_nesting=True)
    lr = 2 * (as_predictor.log_likelihood - with_offset.log_likelihood)
    assert table["LRStat"].iloc[1] == pytest.approx(lr, rel=1e-12)
    assert table["pValue"].iloc[1] == pytest.approx(stats.chi2.sf(lr, 1), rel=1e-12)
    sim = with_offset.compare(as_predictor, nsim=3, rng=0)
    assert np.isfinite(sim["pValueSim"].iloc[1])
    off_null = ppl_glmm.fitglme(with_offset.variables, "y ~ 1 + (1|g)", distribution="poisson", offset="lt")
    with pytest.raises(InputError, match="check_nesting: GLME's offset differs from ALTGLME's"):
        off_null.compare(without, check_nesting=True)
    # the simulated test's check (compare(nsim=...) calls it after the log-likelihoods' order)
    with pytest.raises(InputError, match="nsim: small's offset differs from big's"):
        check_nested(off_null, without, who="nsim")
    assert check_nested(intercept_only, without) == 1  # no offsets: nested
    assert check_nested(with_offset, as_predictor) == 1
    # offsets that differ by rounding only (log 2t against log t + log 2) are one offset
    d = with_offset.variables.assign(
        o1=lambda v: np.log(2 * np.exp(v["lt"])), o2=lambda v: v["lt"] + np.log(2)
    )
    assert np.any(d.o1 != d.o2)
    small = ppl_glmm.fitglme(d, "y ~ 1 + (1|g)", distribution="poisson", offset="o1")
    big = ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution="poisson", offset="o2")
    assert len(small.compare(big, check_nesting=True)) == 2 and check_nested(small, big) == 1


def _logit_inverse(eta):
    import pytensor.tensor as pt

    return pt.sigmoid(eta)


def _logit_inverse_again(eta):
    import pytensor.tensor as pt

    return 1.0 / (1.0 + pt.exp(-eta))


def _logit(mu):
    return np.log(mu) - np.log1p(-mu)


def test_custom_links_are_the_same_link_when_their_functions_are():
    """The same custom link given twice (each call compiles its own NumPy inverse) or brought back
    by pickle is one link: compare refused it as 'different links (mylogit and mylogit)'. Other
    functions under the same name, and power links whose names round to the same 6 digits, are
    still different links."""
    import pickle

    cb = _cbpp()
    kw = dict(distribution="binomial", binomial_size="size")

    def fit(formula, inverse=_logit_inverse, **extra):
        link = {"inverse": inverse, "link": _logit, "name": "mylogit"}
        return ppl_glmm.fitglme(cb, formula, link=link, **kw, **extra)

    small, big = fit("incidence ~ 1 + (1|herd)"), fit("incidence ~ period + (1|herd)")
    builtin = ppl_glmm.fitglme(cb, "incidence ~ 1 + (1|herd)", **kw).compare(
        ppl_glmm.fitglme(cb, "incidence ~ period + (1|herd)", **kw)
    )
    for a, b in [(small, big), (pickle.loads(pickle.dumps(small)), big)]:
        table = a.compare(b)
        np.testing.assert_allclose(table["LRStat"].iloc[1], builtin["LRStat"].iloc[1], rtol=1e-6)
        assert table["deltaDF"].iloc[1] == 3
    other = fit("incidence ~ period + (1|herd)", inverse=_logit_inverse_again)
    with pytest.raises(InputError, match=r"different links \(custom link 'mylogit' of"):
        small.compare(other)
    with pytest.warns(GLMMWarning, match="needs a positive linear predictor"):
        third = ppl_glmm.fitglme(cb, "incidence ~ 1 + (1|herd)", distribution="poisson", link=1 / 3)
    with pytest.warns(GLMMWarning, match="needs a positive linear predictor"):
        rounded = ppl_glmm.fitglme(cb, "incidence ~ period + (1|herd)", distribution="poisson", link=0.333333)
    assert third.link == rounded.link == "power(0.333333)"
    with pytest.raises(InputError, match=re.escape("links (power(0.3333333333333333) and power(0.333333))")):
        third.compare(rounded)


def _pseudo_counts() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(10), 20)
    x = rng.normal(size=g.size)
    f = rng.choice(["a", "b", "c"], size=g.size)
    eta = 0.2 + 0.4 * x + (f == "b") * 0.5 - (f == "c") * 0.3 + rng.normal(scale=0.6, size=10)[g]
    expo = rng.uniform(0.5, 2, g.size)
    return pd.DataFrame({"g": [f"g{i}" for i in g], "x": x, "f": f, "y": rng.poisson(expo * np.exp(eta))})


def test_pseudo_likelihoods_out_of_order_are_explained_not_blamed_on_convergence():
    """Two converged REMPL fits, the larger with the smaller pseudo-likelihood (-279.90 against
    -279.45: each is of its own final pseudo data). The error said to check convergence; it now
    says why the two need not be ordered and what to refit."""
    d = _pseudo_counts()
    kw = {"distribution": "poisson", "fit_method": "rempl"}
    small = ppl_glmm.fitglme(d, "y ~ x + f + (1|g)", **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ppl_glmm.SingularFitWarning)
        big = ppl_glmm.fitglme(d, "y ~ x + f + (1 + x|g)", **kw)
    assert big.log_likelihood < small.log_likelihood - 0.1
    with pytest.raises(
        InputError, match=r"pseudo-likelihoods of different pseudo responses .*fit_method='laplace'"
    ):
        small.compare(big)


def test_normal_identity_pseudo_likelihood_fits_compare_without_a_warning():
    """Normal/identity MPL is ML (its pseudo data are the response): no pseudo-data warning."""
    d = _pseudo_counts().assign(y=lambda t: np.log1p(t["y"]))
    a = ppl_glmm.fitglme(d, "y ~ x + (1|g)", fit_method="mpl")
    b = ppl_glmm.fitglme(d, "y ~ x + f + (1|g)", fit_method="mpl")
    ml = ppl_glmm.fitglme(d, "y ~ x + f + (1|g)")
    assert b.log_likelihood == pytest.approx(ml.log_likelihood, abs=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = a.compare(b, check_nesting=True)
    assert t["deltaDF"].iloc[1] == 2


def test_a_pattern_that_ties_the_added_variance_gets_no_mixture_p_value():
    """(1|g) against (1 + x|g) under CompSymm passed check_nesting and got the 50:50 mixture p-value
    of an added variance, but CompSymm ties x's variance to the intercept's: (1|g) is not the larger
    model with a variance at zero. The note and a warning say so; Diagonal keeps the mixture."""
    d = _pseudo_counts()
    rng = np.random.default_rng(8)
    slopes = rng.normal(0, 0.5, 10)  # a slope variance like the intercepts'
    d["y"] = rng.poisson(np.exp(np.log(d["y"] + 0.5) + slopes[d["g"].str[1:].astype(int)] * d["x"]))
    small = ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution="poisson")
    for pattern in ("CompSymm", "Isotropic"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ppl_glmm.SingularFitWarning)
            big = ppl_glmm.fitglme(d, "y ~ x + (1 + x|g)", distribution="poisson", covariance_pattern=pattern)
        with pytest.warns(GLMMWarning, match=r"ties the variance of g: x to other columns'"):
            t = small.compare(big, check_nesting=True)
        assert np.isnan(t.attrs["pValue_mixture"]) and "may not be nested" in t.attrs["note"]
    diag = ppl_glmm.fitglme(d, "y ~ x + (1 + x|g)", distribution="poisson", covariance_pattern="Diagonal")
    with warnings.catch_warnings():
        warnings.simplefilter("error", GLMMWarning)
        t = small.compare(diag, check_nesting=True)
    assert np.isfinite(t.attrs["pValue_mixture"]) and "50:50 mixture" in t.attrs["note"]
    # where the tied model fits worse, the refusal names the pattern, not convergence
    flat = _pseudo_counts()
    small = ppl_glmm.fitglme(flat, "y ~ x + (1|g)", distribution="poisson")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ppl_glmm.SingularFitWarning)
        big = ppl_glmm.fitglme(
            flat, "y ~ x + (1 + x|g)", distribution="poisson", covariance_pattern="CompSymm"
        )
    with pytest.raises(
        InputError, match=r"cannot contain GLME: its covariance pattern ties the variance of g: x"
    ):
        small.compare(big)
