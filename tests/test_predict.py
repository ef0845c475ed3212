"""predict (MATLAB predict) and fitted: intervals against a dense [x z] sigma^2 V [x z]', new levels,
simultaneous bounds, MATLAB's offset rule, and refused inputs.

The dense reference writes MATLAB's sigma^2 V from the data and the estimates (normal model, so
C = w and the CI is linear in se: half-width = crit * se). Tolerance 1e-8 relative: the same
quantity by another route (measured ~1e-14).
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.linalg as sl
from reference_cases import REF
from scipy import stats

import ppl_glmm
from ppl_glmm.errors import InputError, InputTypeError

REL = 1e-8


@pytest.fixture(scope="module")
def sleep(fitted):
    return fitted("sleepstudy_lmm")


def dense_v(m):
    d = m._ws.design
    X, Z = d.X, d.Z().toarray()
    C = d.weights.astype(float)
    s2 = m.dispersion
    psis = m._ws.layout.covariances(m._result.theta, m._result.sigma)
    D = sl.block_diag(*[np.kron(np.eye(t.n_levels), P) for t, P in zip(d.terms, psis)]) / s2
    Vinv = np.block([[X.T * C @ X, X.T * C @ Z], [Z.T * C @ X, Z.T * C @ Z + np.linalg.inv(D)]])
    return s2 * np.linalg.inv(Vinv)


def half_width(ci):
    return (ci[:, 1] - ci[:, 0]) / 2


def test_fitted_rows_variance_matches_dense(sleep):
    d = sleep._ws.design
    V = dense_v(sleep)
    XZ = np.hstack([d.X, d.Z().toarray()])
    se = np.sqrt(np.einsum("ij,jk,ik->i", XZ, V, XZ))
    y, ci = sleep.predict(alpha=0.1)
    crit = stats.t.ppf(0.95, sleep.dfe)
    np.testing.assert_allclose(half_width(ci), crit * se, rtol=REL)
    np.testing.assert_allclose(y, sleep.fitted(), rtol=1e-12)  # no offsets: predict() = fitted()
    np.testing.assert_allclose(ci.mean(axis=1), y, rtol=1e-12)  # identity link: symmetric
    # marginal: x' Cov(beta) x
    ym, cim = sleep.predict(conditional=False)
    sem = np.sqrt(np.einsum("ip,pq,iq->i", d.X, sleep.coefficient_covariance, d.X))
    np.testing.assert_allclose(half_width(cim), stats.t.ppf(0.975, sleep.dfe) * sem, rtol=REL)
    np.testing.assert_allclose(ym, sleep.fitted(conditional=False), rtol=1e-12)


def test_newdata_with_known_and_new_levels(sleep):
    new = pd.DataFrame({"Days": [0.0, 4.5, 9.0, 2.0], "Subject": [308, 999, 372, 999]})
    before = new.copy()
    y, ci = sleep.predict(new)
    pd.testing.assert_frame_equal(new, before)  # not mutated
    d = sleep._ws.design
    term = d.terms[0]
    q = d.q
    Xn = np.column_stack([np.ones(4), new.Days])
    Zn = np.zeros((4, q))
    for i, (days, subj) in enumerate(zip(new.Days, new.Subject)):
        if str(subj) in term.levels:
            j = term.levels.index(str(subj))
            Zn[i, 2 * j : 2 * j + 2] = [1.0, days]
    b, beta = sleep._result.b, sleep._result.beta
    np.testing.assert_allclose(y, Xn @ beta + Zn @ b, rtol=1e-12)
    V = dense_v(sleep)
    XZ = np.hstack([Xn, Zn])
    se = np.sqrt(np.einsum("ij,jk,ik->i", XZ, V, XZ))
    np.testing.assert_allclose(half_width(ci), stats.t.ppf(0.975, sleep.dfe) * se, rtol=REL)
    # a new level contributes no random effect: its conditional CI is the marginal one
    ym, cim = sleep.predict(new, conditional=False)
    np.testing.assert_allclose(y[[1, 3]], ym[[1, 3]], rtol=1e-12)
    np.testing.assert_allclose(ci[[1, 3]], cim[[1, 3]], rtol=1e-10)
    assert np.all(np.abs(y[[0, 2]] - ym[[0, 2]]) > 1)  # known levels do get their b-hat


def test_simultaneous_bounds_are_scheffe(sleep):
    new = pd.DataFrame({"Days": [1.0, 5.0], "Subject": [308, 309]})
    _, pw = sleep.predict(new)
    _, sim = sleep.predict(new, simultaneous=True)
    k = 2 + sleep.num_random_effects
    ratio = np.sqrt(k * stats.f.ppf(0.95, k, sleep.dfe)) / stats.t.ppf(0.975, sleep.dfe)
    np.testing.assert_allclose(half_width(sim) / half_width(pw), ratio, rtol=1e-9)
    assert np.all(half_width(sim) > half_width(pw))
    _, pwm = sleep.predict(new, conditional=False, dfmethod="none")
    _, simm = sleep.predict(new, conditional=False, simultaneous=True, dfmethod="none")
    ratio_m = np.sqrt(stats.chi2.ppf(0.95, 2)) / stats.norm.ppf(0.975)  # k = rank(X) = 2, DF = inf
    np.testing.assert_allclose(half_width(simm) / half_width(pwm), ratio_m, rtol=1e-9)


def test_binomial_intervals_are_mapped_and_ordered(fitted):
    m = fitted("cbpp_binomial")
    y, ci = m.predict()
    assert np.all((ci[:, 0] <= y) & (y <= ci[:, 1]) & (ci[:, 0] > 0) & (ci[:, 1] < 1))
    eta = np.log(y / (1 - y))
    lo = np.log(ci[:, 0] / (1 - ci[:, 0]))
    hi = np.log(ci[:, 1] / (1 - ci[:, 1]))
    np.testing.assert_allclose(eta - lo, hi - eta, rtol=1e-7)  # symmetric on the logit scale


def test_decreasing_link_keeps_lower_below_upper():
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(8), 10)
    x = rng.uniform(size=80)
    mu = 1.0 / (1.0 + 0.5 * x + rng.normal(0, 0.1, 8)[g])
    y = rng.gamma(5.0, mu / 5.0)
    d = pd.DataFrame({"y": y, "x": x, "g": g})
    m = ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution="gamma", link="reciprocal")
    yp, ci = m.predict()
    assert np.all(ci[:, 0] < yp) and np.all(yp < ci[:, 1])


def test_reciprocal_link_interval_crossing_its_pole():
    """gamma/reciprocal at a new row where eta-hat > 0 but eta-hat - crit se < 0: the valid means are
    [1/(eta-hat + crit se), inf) (was [eps, 1/(eta-hat + crit se)], which left out mu-hat)."""
    d = pd.read_csv(REF / "data" / "gamma_inverse.csv")
    m = ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution="gamma", link="reciprocal")
    new = pd.DataFrame({"x": [-4.9, 0.0], "g": ["new", "new"]})
    y, ci = m.predict(new, conditional=False)
    x = np.array([[1.0, -4.9], [1.0, 0.0]])
    eta = x @ m.coefficients["Estimate"].to_numpy()
    se = np.sqrt(np.einsum("ip,pq,iq->i", x, m.coefficient_covariance, x))
    crit = stats.t.ppf(0.975, m.num_observations - 2)
    assert eta[0] - crit * se[0] < 0 < eta[0]
    np.testing.assert_allclose(y, 1 / eta, rtol=1e-12)
    np.testing.assert_allclose(ci[0], [1 / (eta[0] + crit * se[0]), np.inf], rtol=1e-12)
    np.testing.assert_allclose(ci[1], np.sort(1 / (eta[1] + [crit * se[1], -crit * se[1]])), rtol=1e-12)
    with pytest.warns(
        ppl_glmm.GLMMWarning, match="1 of 1 predicted linear predictors are outside the domain"
    ):
        y_out, ci_out = m.predict(pd.DataFrame({"x": [-40.0], "g": ["new"]}), conditional=False)
    assert np.isnan(y_out).all() and np.isnan(ci_out).all()


def test_identity_link_predictions_outside_the_family_range_are_nan():
    """Poisson/identity at a new row whose eta-hat < 0: the mean was clipped to 2.2e-16 with the
    interval [2.2e-16, 2.2e-16], silently, where a power link's gave NaN with a warning. Binomial
    on the identity link above 1 returned 1.0 the same way."""
    rng = np.random.default_rng(0)
    g, x = np.repeat(np.arange(15), 12), rng.uniform(0, 2, 180)
    d = pd.DataFrame({"g": g.astype(str), "x": x, "y": rng.poisson(2 + 0.5 * x + rng.uniform(0, 1, 15)[g])})
    m = ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution="poisson", link="identity")
    beta = m.coefficients["Estimate"].to_numpy()
    new = pd.DataFrame({"x": [-40.0, 1.0], "g": ["new", "new"]})
    with pytest.warns(ppl_glmm.GLMMWarning, match=r"1 of 2 .* means outside the poisson family's range"):
        y, ci = m.predict(new, conditional=False)
    assert np.isnan(y[0]) and np.isnan(ci[0]).all()
    assert y[1] == pytest.approx(beta[0] + beta[1], rel=1e-12)
    assert ci[1, 0] < y[1] < ci[1, 1]


def test_inverse_gaussian_canonical_simultaneous_intervals_hold_their_predictions():
    """power(-2): eta^(-1/2) of a negative lower end was NaN (37 of 400 Scheffe upper bounds)."""
    d = pd.read_csv(REF / "data" / "invgauss_canonical.csv")
    m = ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution="inverse_gaussian")
    y, ci = m.predict(simultaneous=True)
    assert not np.isnan(ci).any()
    assert np.all((ci[:, 0] <= y) & (y <= ci[:, 1]))
    open_above = np.isinf(ci[:, 1])
    assert open_above.sum() >= 30  # rows whose eta interval reaches below 0
    # their lower bound is g^-1 of the eta interval's upper end
    eta = y[open_above] ** -2.0
    upper_eta = ci[open_above, 0] ** -2.0
    assert np.all(upper_eta > eta)


def test_offset_rule(fitted):
    """fitted uses the fitting offset; predict adds only the formula's offset(...) terms plus its
    own ``offset`` argument (default 0)."""
    m = fitted("poisson_two_offsets")  # y ~ x + offset(log(exposure)) + (1|g), offset=log(area)
    data = pd.read_csv(REF / "data" / "poisson_two_offsets.csv")
    y, ci = m.predict()
    np.testing.assert_allclose(y, m.fitted() / data["area"].to_numpy(), rtol=1e-10)
    y2, ci2 = m.predict(offset=np.log(data["area"].to_numpy()))
    np.testing.assert_allclose(y2, m.fitted(), rtol=1e-10)
    np.testing.assert_allclose(ci2, ci * data["area"].to_numpy()[:, None], rtol=1e-10)
    # newdata: the formula's offset is evaluated on newdata; offset may be a column name
    new = data.iloc[:3].copy()
    y3, _ = m.predict(new)
    np.testing.assert_allclose(y3, y[:3], rtol=1e-10)
    new["la"] = np.log(new["area"])
    y4, _ = m.predict(new, offset="la")
    np.testing.assert_allclose(y4, m.fitted()[:3], rtol=1e-10)


def test_unused_rows_are_nan():
    d = pd.read_csv(REF / "data" / "sleepstudy.csv")
    d.loc[3, "Reaction"] = np.nan
    m = ppl_glmm.fitglme(d, "Reaction ~ Days + (Days|Subject)", exclude=[0, 1])
    y, ci = m.predict()
    assert y.shape == (180,) and ci.shape == (180, 2)
    assert np.isnan(y[[0, 1, 3]]).all() and np.isnan(ci[[0, 1, 3]]).all()
    np.testing.assert_allclose(y, m.fitted(), rtol=1e-12, equal_nan=True)
    assert np.isfinite(ci[2]).all()


def test_refused_newdata(sleep, fitted):
    with pytest.raises(InputTypeError, match="newdata: expected a pandas DataFrame"):
        sleep.predict({"Days": [1.0], "Subject": [308]})
    with pytest.raises(InputError, match="column 'Days' is missing"):
        sleep.predict(pd.DataFrame({"Subject": [308]}))
    with pytest.raises(InputTypeError, match="column 'Days' is numeric"):
        sleep.predict(pd.DataFrame({"Days": ["1"], "Subject": [308]}))
    with pytest.raises(InputTypeError, match="column 'Days' is numeric"):
        sleep.predict(pd.DataFrame({"Days": [True], "Subject": [308]}))
    cbpp = fitted("cbpp_binomial")
    new = pd.DataFrame({"period": ["5"], "herd": [1], "incidence": [0], "size": [1]})
    with pytest.raises(InputError, match=r"period.*not seen in the fit"):
        cbpp.predict(new)
    with pytest.raises(InputTypeError, match="conditional"):
        sleep.predict(conditional="yes")
    with pytest.raises(InputTypeError, match="simultaneous"):
        sleep.predict(simultaneous=1)
    with pytest.raises(InputError, match="alpha"):
        sleep.predict(alpha=0)
    with pytest.raises(InputError, match="dfmethod"):
        sleep.predict(dfmethod="satterthwaite")
    with pytest.raises(InputError, match="offset: expected 180 values"):
        sleep.predict(offset=np.zeros(7))
    with pytest.raises(InputError, match="offset"):
        sleep.predict(pd.DataFrame({"Days": [1.0], "Subject": [308]}), offset=[0.0, 1.0])
    # new rows must give every value: the message does not offer NaN as "missing" there
    new_rows = pd.DataFrame({"Days": [1.0, 2.0], "Subject": [308, 309]}, index=[10, 11])
    with pytest.raises(InputError) as err:
        sleep.predict(new_rows, offset=[0.0, np.inf])
    assert str(err.value) == "offset: infinite values in row 11; give finite values"


def _slopes_data(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(12), 15)
    x = rng.normal(2.0, 1.5, g.size)
    f = rng.choice(["lo", "mid", "hi"], g.size)
    b0, b1 = rng.normal(0, 0.5, 12), rng.normal(0, 0.2, 12)
    mu = np.exp(0.2 + 0.1 * x + b0[g] + b1[g] * x + 0.4 * (f == "hi"))
    return pd.DataFrame({"y": rng.poisson(mu), "x": x, "f": f, "g": [f"g{i}" for i in g]})


@pytest.fixture(scope="module")
def slopes():
    return ppl_glmm.fitglme(_slopes_data(), "y ~ x + (1 + x | g)", distribution="poisson")


def test_new_rows_are_predicted_alone_as_together(slopes):
    """One row, or rows whose x is 0 or constant, are routine new data: their random-term columns
    are the fitted term's, evaluated, not a new term checked for rank (which refused them)."""
    new = pd.DataFrame({"x": [0.0, 0.0, 1.5, 1.5, 3.0], "g": ["g0", "g5", "g0", "g99", "g7"]})
    together, ci = slopes.predict(new)
    for rows in ([0], [0, 1], [2, 3], [4]):
        alone, ci_alone = slopes.predict(new.iloc[rows])
        np.testing.assert_allclose(alone, together[rows], rtol=1e-12)
        np.testing.assert_allclose(ci_alone, ci[rows], rtol=1e-12)
    draws = slopes.random(new.iloc[[0]], rng=1)
    assert draws.shape == (1,) and draws[0] >= 0


def test_a_stateful_transform_in_a_random_term_keeps_the_fits_mean_and_sd():
    """(1 + scale(x) | g) on new rows scales x by the fit's mean and SD (as lme4's predict), not the
    new rows' own: the fit's rows given back as new data predict their fitted values."""
    df = _slopes_data()
    m = ppl_glmm.fitglme(df, "y ~ x + (1 + scale(x) | g)", distribution="poisson")
    mu = m.fitted()
    np.testing.assert_allclose(m.predict(df.iloc[:12])[0], mu[:12], rtol=1e-12)
    np.testing.assert_allclose(m.predict(df.iloc[[5]])[0], mu[[5]], rtol=1e-12)


@pytest.mark.parametrize("formula", ["y ~ x + f + (1 | g)", "y ~ x + (1 + f | g)"])
def test_new_rows_holding_some_levels_of_a_factor_under_effects_coding(formula):
    df = _slopes_data()
    m = ppl_glmm.fitglme(df, formula, distribution="poisson", dummy_var_coding="effects")
    new = df.iloc[:20]
    together = m.predict(new)[0]
    some = np.flatnonzero(new.f != "hi")
    np.testing.assert_allclose(m.predict(new.iloc[some])[0], together[some], rtol=1e-12)
    np.testing.assert_allclose(m.predict(new.iloc[[0]])[0], together[[0]], rtol=1e-12)


def test_refused_new_rows_and_flags(slopes):
    new = pd.DataFrame({"x": [0.5, 1.0], "g": ["g0", "g1"]})
    with pytest.raises(InputError, match=r"^newdata: duplicate column names 'x'; rename them"):
        slopes.predict(pd.concat([new, new[["x"]]], axis=1))
    with pytest.raises(InputError, match=r"^newdata: has no rows; pass at least one row to evaluate$"):
        slopes.predict(new.iloc[:0])
    with pytest.raises(InputError, match=r"^newdata: has no rows"):
        slopes.random(new.iloc[:0])
    with pytest.raises(
        InputError,
        match=r"^offset: expected a vector \(one value per row\), got an array of shape \(1, 2, 2\)$",
    ):
        slopes.predict(new, offset=np.zeros((1, 2, 2)))
    with pytest.raises(InputError, match=r"^offset: expected a vector .* shape \(90, 2\)$"):
        slopes.predict(offset=np.zeros((90, 2)))
    shifted = slopes.predict(new, offset=[[0.5], [0.5]])[0]  # a column vector is a vector
    np.testing.assert_allclose(shifted, slopes.predict(new)[0] * np.exp(0.5), rtol=1e-12)
    with pytest.raises(InputTypeError, match=r"^conditional: expected True or False, got 'no'$"):
        slopes.fitted("no")
    with pytest.raises(InputTypeError, match=r"^conditional: expected True or False, got None$"):
        slopes.fitted(None)
    bad = _slopes_data().assign(x=lambda d: d.x.where(d.index != 3, -1.0))
    m = ppl_glmm.fitglme(
        _slopes_data().assign(x=lambda d: d.x.abs() + 0.1),
        "y ~ x + (1 + np.log(x) | g)",
        distribution="poisson",
    )
    with pytest.raises(
        InputError, match=r"^newdata: column of random term .* 'np.log\(x\)' has non-finite values"
    ):
        m.predict(bad.iloc[:5])


def test_the_optimisation_record_is_read_only(slopes):
    import copy
    import pickle

    for record in (
        slopes.optimization,
        pickle.loads(pickle.dumps(slopes)).optimization,
        copy.deepcopy(slopes).optimization,
    ):
        with pytest.raises(ValueError, match="read-only"):
            record.x[0] = 0.0
    np.testing.assert_array_equal(slopes.optimization.x, pickle.loads(pickle.dumps(slopes)).optimization.x)


def test_mean_interval_is_nan_where_the_eta_interval_is_not_a_number():
    """A NaN half-width gave [1, inf) under the reciprocal link (NaN compares False with 0)."""
    from ppl_glmm.families import LINKS, get_distribution, power_link
    from ppl_glmm.inference.prediction import mean_interval

    gamma = get_distribution("gamma")
    for link in (LINKS["reciprocal"], power_link(-2), power_link(0.5), LINKS["log"]):
        y, ci = mean_interval(link, gamma, np.array([0.5, np.nan]), np.array([np.nan, 0.1]))
        assert np.isnan(ci).all(), link.name
        assert np.isfinite(y[0]) and np.isnan(y[1])


def test_interaction_levels_are_matched_by_their_parts_not_their_joined_names():
    """(1|a:b) names its levels 'a:b'; ('1:2', '3') and ('1', '2:3') are both '1:2:3'. Fitted
    together they were two levels of one name (predict gave a row the other's effect); now refused.
    A new combination whose joined name equals a fitted one's is a new level."""
    rng = np.random.default_rng(0)
    a = np.array(["1:2", "1"] * 60 + ["5"] * 60)
    b = np.array(["3", "2:3"] * 60 + ["7", "8"] * 30)
    d = pd.DataFrame({"a": a, "b": b, "x": rng.normal(size=a.size)})
    effect = {("1:2", "3"): 1.5, ("1", "2:3"): -1.5, ("5", "7"): 0.0, ("5", "8"): 0.3}
    d["y"] = 0.2 * d.x + np.array([effect[k] for k in zip(a, b)]) + rng.normal(0, 0.3, a.size)
    with pytest.raises(
        ppl_glmm.InputError,
        match=r"\{'a': '1', 'b': '2:3'\} and \{'a': '1:2', 'b': '3'\} are both named '1:2:3'",
    ):
        ppl_glmm.fitglme(d, "y ~ x + (1|a:b)")
    fit_rows = d[d.a != "1"]
    m = ppl_glmm.fitglme(fit_rows, "y ~ x + (1|a:b)")
    assert "1:2:3" in list(m.random_effects()["Level"])
    new = pd.DataFrame({"a": ["1", "1:2"], "b": ["2:3", "3"], "x": [0.0, 0.0]})
    conditional, _ = m.predict(new)
    marginal, _ = m.predict(new, conditional=False)
    assert conditional[0] == pytest.approx(marginal[0], abs=1e-12)  # a new level: no random effect
    np.testing.assert_allclose(conditional[1], m.predict(fit_rows.iloc[:1].assign(x=0.0))[0][0], rtol=1e-12)
    assert abs(conditional[1] - marginal[1]) > 0.1


def test_missing_values_in_newdata_name_the_columns_and_rows(sleep):
    new = pd.read_csv(REF / "data" / "sleepstudy.csv").head(6).astype({"Subject": str})
    new.index = [f"r{i}" for i in range(6)]
    new.loc["r2", "Days"] = np.nan
    new.loc["r4", "Subject"] = None
    with pytest.raises(
        InputError, match=r"newdata: missing values in column\(s\) '.*' of the model, in rows r2, r4"
    ):
        sleep.predict(new)
    with pytest.raises(InputError, match=r"'Days'.*in rows r2, r4"):
        sleep.random(new, rng=0)


def _logical_grouping_data() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(6), 10)
    x = rng.normal(size=60)
    d = pd.DataFrame({"x": x, "g": [f"g{i}" for i in g], "z": g % 2 == 0})
    d["y"] = 1 + x + rng.normal(size=6)[g] + 3 * d["z"] + rng.normal(size=60)
    return d


@pytest.mark.parametrize("formula", ["y ~ x + (1|z)", "y ~ x + (1|z:g)"])
def test_predict_matches_logical_grouping_levels_by_name(formula):
    """A bool grouping column's fitted levels are 'false'/'true'; newdata's True/False (bool,
    boolean or object) did not match them, so every row was a new level and predict(data) gave
    the marginal prediction silently (1.6 from fitted() here)."""
    d = _logical_grouping_data()
    m = ppl_glmm.fitglme(d, formula)
    for z in (d["z"], d["z"].astype("boolean"), d["z"].astype(object)):
        np.testing.assert_allclose(m.predict(d.assign(z=z))[0], m.fitted(), rtol=1e-12)


def test_predict_matches_a_mixed_type_grouping_column_by_its_text():
    """A grouping column of ints and strings is fitted with its values' text as levels; newdata
    holding only the ints must match them ('1' is the fitted level of 1)."""
    d = _logical_grouping_data()
    d["h"] = [1 if int(v[1:]) < 3 else v for v in d["g"]]
    m = ppl_glmm.fitglme(d, "y ~ x + (1|h)")
    first = (d["h"] == 1).to_numpy()
    new = d[first].astype({"h": int})
    np.testing.assert_allclose(m.predict(new)[0], m.fitted()[first], rtol=1e-12)


def test_grouping_levels_written_as_another_type_warn_when_they_match_nothing(slopes):
    """Fitted levels 'g0'..'g11' as text, or dates: newdata holding numbers, or the dates as
    text, matched no level and every row got the marginal prediction silently. Now a warning
    names the column and the types; newdata of the fitted type with new levels, and numbers
    that do match (text digits), stay silent."""
    d = _slopes_data()
    d["day"] = pd.Timestamp("2020-01-01") + pd.to_timedelta(d["g"].str[1:].astype(int), unit="D")
    d["num"] = d["g"].str[1:].str.zfill(2)
    rows = [5, 77, 140]
    for col, retyped in (
        ("day", lambda s: s.dt.strftime("%Y-%m-%d")),
        ("num", lambda s: s.astype(int)),
    ):
        m = ppl_glmm.fitglme(d, f"y ~ x + (1|{col})", distribution="poisson")
        new = d.iloc[rows].assign(**{col: retyped(d[col].iloc[rows])})
        was, now = ("dates", "text") if col == "day" else ("text", "numbers")
        with pytest.warns(
            ppl_glmm.GLMMWarning,
            match=rf"newdata column '{col}' holds {now} where the fitted data's holds {was}; 3 of its 3",
        ):
            marginal = m.predict(new)[0]
        np.testing.assert_allclose(marginal, m.fitted(conditional=False)[rows], rtol=1e-12)
    d["k"] = d["g"].str[1:].astype(int)
    m = ppl_glmm.fitglme(d, "y ~ x + (1|k)", distribution="poisson")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(
            m.predict(d.iloc[rows].astype({"k": str}))[0], m.fitted()[rows], rtol=1e-12
        )
        m.predict(d.iloc[rows].assign(k=[100, 101, 3]))  # new levels of the fitted type


def test_new_rows_variance_reads_the_selected_inverse_and_solves_only_unseen_pairs():
    """Var(eta) of new rows was one solve with H per row (15 s for 100,000 rows of a crossed model
    fitted in 6 s). It now reads a'H^-1 a from the selected inverse, with solves only for pairs of
    levels never seen together; equal to the dense a'H^-1 a + r'S^-1 r to rounding, for rows of
    seen and unseen level pairs, new levels and a random slope."""
    rng = np.random.default_rng(4)
    n = 1500  # q = 2 x 150 + 12 random effects: H is factored sparse (not all dense)
    a, b = rng.integers(0, 150, n), rng.integers(0, 12, n)
    keep = (a + b) % 5 != 0  # some (a, b) pairs never occur together in the fit
    x = rng.normal(size=n)
    y = rng.poisson(np.exp(0.2 + 0.3 * x + rng.normal(0, 0.4, 150)[a] + rng.normal(0, 0.3, 12)[b]))
    d = pd.DataFrame({"y": y, "x": x, "a": [f"a{i}" for i in a], "b": [f"b{i}" for i in b]})[keep]
    m = ppl_glmm.fitglme(d, "y ~ x + (1 + x|a) + (1|b)", distribution="poisson")
    new = pd.DataFrame(
        {
            "x": rng.normal(size=60),
            "a": [f"a{i}" for i in rng.integers(0, 153, 60)],  # a150..a152: new levels
            "b": [f"b{i}" for i in rng.integers(0, 12, 60)],
        }
    )
    from ppl_glmm.inference.prediction import prediction_rows

    X, Z, _, _ = prediction_rows(m._fit, new, None)
    J = m._joint
    A = J._to_u(Z).toarray()
    dense = np.einsum("iq,qi->i", A, J.mode.hfac.solve(A.T))
    R = X - A @ J.G
    expected = dense + np.einsum("ip,pq,iq->i", R, J.S_inv, R)
    solved = []
    original = type(J)._hinv_entries

    def counted(self, r, c):
        solved.append(r.size)
        return original(self, r, c)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(J), "_hinv_entries", counted)
        np.testing.assert_allclose(J.eta_variance_rows(X, Z), expected, rtol=1e-10)
    assert J.mode.hfac.sym.s > 0 and sum(solved) > 0  # pairs outside the pattern were solved for
    pairs = set(zip(d["a"], d["b"]))
    assert any((r.a, r.b) not in pairs and r.a in set(d["a"]) for r in new.itertuples())  # (unseen pairs)
