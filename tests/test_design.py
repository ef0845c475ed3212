"""Design: coding and names, level order, sparse Z layout, missing rows, argument checks."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import ppl_glmm
from ppl_glmm.datasets import load_mfr

MFR = "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)"


def _fit(data=None, formula=MFR, **kw):
    kw.setdefault("distribution", "poisson")
    return ppl_glmm.fitglme(load_mfr() if data is None else data, formula, **kw)


def test_effects_coding_names_and_columns():
    m = _fit(dummy_var_coding="effects")
    assert m.coefficient_names[-2:] == ["supplier_C", "supplier_B"]
    X = m.design_matrix("fixed")
    sup = load_mfr()["supplier"].astype(str).to_numpy()
    np.testing.assert_array_equal(X[sup == "A", 4:], -1.0)  # last level coded -1
    assert np.all(X[sup == "C", 4:] == [1.0, 0.0]) and np.all(X[sup == "B", 4:] == [0.0, 1.0])


def test_reference_coding_uses_first_level_of_categorical_order():
    m = _fit()
    assert m.coefficient_names[-2:] == ["supplier_B", "supplier_A"]  # categories C, B, A: C is baseline
    data = load_mfr()
    data["supplier"] = data["supplier"].astype(str)  # plain strings: sorted levels, A baseline
    assert _fit(data).coefficient_names[-2:] == ["supplier_B", "supplier_C"]


def test_full_coding_needs_no_intercept():
    with pytest.raises(ValueError, match="rank deficient"):
        _fit(dummy_var_coding="full")
    m = _fit(formula="defects ~ 0 + newprocess + supplier + (1|factory)", dummy_var_coding="full")
    assert m.coefficient_names == ["newprocess", "supplier_C", "supplier_B", "supplier_A"]


def test_interaction_names():
    m = _fit(
        formula="defects ~ newprocess*time_dev + supplier:temp_dev + (1|factory)", dummy_var_coding="effects"
    )
    assert m.coefficient_names == [
        "(Intercept)",
        "newprocess",
        "time_dev",
        "newprocess:time_dev",
        "supplier_C:temp_dev",
        "supplier_B:temp_dev",
        "supplier_A:temp_dev",
    ]
    m = _fit(formula="defects ~ supplier*temp_dev + (1|factory)")
    assert m.coefficient_names == [
        "(Intercept)",
        "supplier_B",
        "supplier_A",
        "temp_dev",
        "supplier_B:temp_dev",
        "supplier_A:temp_dev",
    ]


def test_z_is_sparse_and_level_major_for_a_correlated_slope():
    rng = np.random.default_rng(0)
    n = 60
    data = pd.DataFrame({"g": np.repeat(["b", "a", "c"], 20), "x": rng.normal(size=n)})
    data["y"] = rng.normal(size=n) + data["x"]
    m = ppl_glmm.fitglme(data, "y ~ x + (1 + x|g)")
    Z = m.design_matrix("random")
    assert sp.issparse(Z) and Z.shape == (n, 6)
    levels = ["a", "b", "c"]
    expected = np.zeros((n, 6))
    for i, (g, x) in enumerate(zip(data["g"], data["x"])):
        j = levels.index(g)
        expected[i, 2 * j : 2 * j + 2] = [1.0, x]
    np.testing.assert_allclose(Z.toarray(), expected)
    assert list(m.random_effects()["Level"][:2]) == ["a", "a"]
    assert list(m.random_effects()["Name"][:2]) == ["(Intercept)", "x"]


def test_grouping_variables_are_categorical_whatever_their_dtype():
    data = load_mfr()
    data["factory"] = data["factory"].astype(float) * 10  # numeric codes still group
    m = _fit(data)
    assert m.num_random_effects == 20
    assert m.random_effects()["Level"].iloc[0] == "10"


def test_interaction_grouping_drops_unused_combinations():
    data = load_mfr()
    data["half"] = np.where(data.index % 2 == 0, "x", "y")
    m = _fit(data, "defects ~ newprocess + (1|factory:half)")
    used = data.groupby(["factory", "half"]).ngroups
    assert m.num_random_effects == used


def test_missing_values_are_counted_not_silently_dropped():
    data = load_mfr()
    data.loc[[0, 10, 20], "temp_dev"] = np.nan
    data.loc[30, "supplier"] = np.nan
    m = _fit(data)
    assert m.num_observations == 96 and m.num_missing == 4
    info = m.observation_info
    assert info["Missing"].sum() == 4 and info["Subset"].sum() == 96
    assert np.isnan(m.fitted()[[0, 10, 20, 30]]).all()


def test_exclude_by_mask_and_positions():
    mask = np.zeros(100, dtype=bool)
    mask[:5] = True
    assert _fit(exclude=mask).num_observations == 95
    assert _fit(exclude=[0, 1]).num_excluded == 2
    with pytest.raises(ValueError, match="exclude"):
        _fit(exclude=[200])
    with pytest.raises(
        ValueError, match=r"^exclude: row position 0 is given 95 times; .* np.asarray\(mask, dtype=bool\)\)$"
    ):
        _fit(exclude=mask.astype(int))  # a 0/1 mask of integers is not positions {0, 1}


def test_caller_dataframe_is_not_modified():
    data = load_mfr()
    data.loc[3, "time_dev"] = np.nan
    before = data.copy(deep=True)
    _fit(data, dummy_var_coding="effects")
    pd.testing.assert_frame_equal(data, before)


def test_vector_arguments_accept_column_names_or_arrays():
    data = load_mfr()
    data["logt"] = np.log(data["time"])
    a = _fit(data, offset="logt")
    b = _fit(data, offset=data["logt"].to_numpy())
    assert a.log_likelihood == pytest.approx(b.log_likelihood, abs=1e-10)


def test_option_values_are_case_insensitive():
    a = _fit(distribution="Poisson", link="LOG", fit_method="Laplace", dummy_var_coding="Effects")
    b = _fit(distribution="poisson", link="log", fit_method="laplace", dummy_var_coding="effects")
    assert a.log_likelihood == b.log_likelihood
    assert (a.distribution, a.link, a.fit_method) == ("poisson", "log", "laplace")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"distribution": "weibull"}, "distribution: unknown 'weibull'"),
        (
            {"distribution": "gamma"},
            r"response 'defects': gamma responses must be > 0, and are not in rows 7, 11, 42, 51",
        ),
        ({"link": "cauchit"}, "link: unknown 'cauchit'"),
        ({"fit_method": "quasi"}, "fit_method: unknown value 'quasi'; use one of laplace, "),
        ({"fit_method": "REML"}, "fit_method: 'reml' applies to distribution normal, not 'poisson'"),
        ({"dispersion_flag": True}, "dispersion_flag: applies to fit_method='mpl' or 'rempl'"),
        ({"n_agq": 0}, "n_agq: applies to fit_method="),
        ({"dummy_var_coding": "helmert"}, "dummy_var_coding: unknown"),
        ({"optimizer": "fminsearch"}, "unknown option"),
        ({"weights": np.ones(3)}, "weights: expected 100 values"),
        ({"weights": -np.ones(100)}, "weights: prior weights must be positive"),
        ({"weights": np.full(100, 1.5)}, "weights: poisson prior weights must be positive integers"),
        ({"offset": "nope"}, "offset: column 'nope' not found"),
        ({"binomial_size": 3}, "binomial_size: only valid"),
        ({"covariance_method": "sandwich"}, "covariance_method: unknown"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _fit(**kwargs)


def test_matlab_spellings_a_laplace_fit_accepts():
    """dispersion_flag=False is what a Laplace fit does (MATLAB ignores the flag there); spaces in
    covariance_method are ignored as documented."""
    base = _fit()
    same = _fit(dispersion_flag=False, covariance_method="Joint Hessian")
    assert same.log_likelihood == base.log_likelihood
    joint = _fit(covariance_method="jointhessian")
    np.testing.assert_array_equal(same.coefficient_covariance, joint.coefficient_covariance)


def test_bad_formula_and_data_errors():
    with pytest.raises(TypeError, match="data: expected a pandas DataFrame"):
        ppl_glmm.fitglme(load_mfr().to_numpy(), MFR, distribution="poisson")
    with pytest.raises(ValueError, match="response 'nope'"):
        _fit(formula="nope ~ 1 + (1|factory)")
    with pytest.raises(ValueError, match="grouping variable 'plant'"):
        _fit(formula="defects ~ 1 + (1|plant)")
    with pytest.raises(ValueError, match="no random-effects term"):
        _fit(formula="defects ~ 1 + newprocess")
    with pytest.raises(ValueError, match="binomial_size"):
        _fit(distribution="binomial")  # counts without binomial_size
    with pytest.raises(ValueError, match="must be >= 0"):
        data = load_mfr()
        data.loc[0, "defects"] = -1
        _fit(data)
    with pytest.raises(ValueError, match="no rows left"):
        _fit(exclude=np.ones(100, dtype=bool))


def test_bad_link_for_distribution_warns():
    with pytest.warns(UserWarning, match="identity"):
        _fit(link="identity")


@pytest.mark.parametrize("dist", ["poisson", "binomial"])
def test_integer_prior_weights_equal_duplicated_rows(dist):
    """MATLAB weights: Poisson(w mu) for w y, Bin(w n, mu) for w n y; a row with weight 2 and a
    duplicated row give the same likelihood in mu up to a constant, hence the same estimates."""
    from reference_cases import _cbpp

    data = _cbpp() if dist == "binomial" else load_mfr()
    formula = "incidence ~ period + (1|herd)" if dist == "binomial" else MFR
    kw = {"binomial_size": "size"} if dist == "binomial" else {}
    doubled = pd.concat([data, data.iloc[::4]], ignore_index=True)
    w = np.ones(len(data))
    w[::4] = 2
    a = ppl_glmm.fitglme(doubled, formula, distribution=dist, **kw)
    b = ppl_glmm.fitglme(data, formula, distribution=dist, weights=w, **kw)
    np.testing.assert_allclose(a.coefficients["Estimate"], b.coefficients["Estimate"], rtol=1e-4, atol=1e-6)
    sd = [m.covariance_parameters()[2][0]["Estimate"].iloc[0] for m in (a, b)]
    assert sd[0] == pytest.approx(sd[1], rel=1e-4)


def test_numeric_column_made_categorical_with_C_follows_the_coding():
    m = _fit(formula="defects ~ C(newprocess) + (1|factory)", dummy_var_coding="effects")
    assert m.coefficient_names == ["(Intercept)", "newprocess_0"]
    X = m.design_matrix("fixed")
    np.testing.assert_array_equal(np.unique(X[:, 1]), [-1.0, 1.0])
    m = _fit(formula="defects ~ C(newprocess) + (1|factory)")
    assert m.coefficient_names == ["(Intercept)", "newprocess_1"]


@pytest.mark.parametrize(
    "values, dtype",
    [
        (["b", "a", "c", "a"], None),  # pandas' default string dtype
        (["b", "a", "c", "a"], object),
        (["b", "a", "c", "a"], "string"),  # pandas' nullable string dtype keeps its dtype
        (["é", "e", "Z", "z"], None),  # code-point order, as Python's sort
        ([3, 1, 2, 1], None),
        ([3, 1, 2, 1], object),  # Python ints: their own dtype
        ([3.5, 1.0, 2.0, 1.0], None),
    ],
)
def test_levels_are_sorted_and_codes_recover_the_values(values, dtype):
    from ppl_glmm.design import _ordered_categories

    s = pd.Series(values, dtype=dtype)
    cat = _ordered_categories(s)
    assert cat.ordered
    assert list(cat.categories) == sorted(set(values))
    assert list(np.asarray(cat)) == values
    # the categories pandas' factorize gives (text: NumPy's sort, ~4x faster on a few hundred rows);
    # object strings get the dtype a list of them is given (str)
    codes, uniques = pd.factorize(s, sort=True)
    expected = pd.Index(uniques.tolist()) if uniques.dtype == object else uniques
    assert cat.categories.dtype == expected.dtype
    np.testing.assert_array_equal(cat.codes, codes)


@pytest.mark.parametrize("dtype", [None, object, "string"])
def test_long_text_columns_get_the_levels_and_codes_of_short_ones(dtype):
    """A text column over _SORT_MAX_ROWS is factorized (NumPy's sort of Python strings took 137 ms
    on 100,000 rows against factorize's 2 ms): the same categories, dtype and codes as the sort
    gives a short column of the same values."""
    from ppl_glmm.design import _SORT_MAX_ROWS, _ordered_categories

    rng = np.random.default_rng(0)
    levels = ["b", "a", "é", "Z", "z", "", "a b", "10", "9"]
    long = pd.Series(rng.choice(levels, 3 * _SORT_MAX_ROWS), dtype=dtype)
    short = long.iloc[:_SORT_MAX_ROWS]
    assert set(short) == set(levels)
    a, b = _ordered_categories(long), _ordered_categories(short)
    assert list(a.categories) == list(b.categories) == sorted(levels)
    assert a.categories.dtype == b.categories.dtype and a.ordered
    np.testing.assert_array_equal(a.codes[:_SORT_MAX_ROWS], b.codes)
    assert list(np.asarray(a)) == list(long)


def test_levels_python_cannot_order_fall_back_to_factorize():
    """Values Python's sort refuses (ints and strings; a fit's design makes such a column text
    first) are ordered by pandas' factorize: numbers, then strings."""
    from ppl_glmm.design import _ordered_categories

    cat = _ordered_categories(pd.Series([2, "a", 1, "a"], dtype=object))
    assert list(cat.categories) == [1, 2, "a"]
    assert list(np.asarray(cat)) == [2, "a", 1, "a"]


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ x + (1|g)",
        "y ~ 1 + x + k + (1|g)",
        "y ~ 0 + x + k + (1|g)",
        "y ~ s + x + (1|g)",
        "y ~ x + s + t + (1|g)",
        "y ~ t + (1|g)",
        "y ~ 1 + (1|g)",
    ],
)
@pytest.mark.parametrize("coding", ["reference", "effects"])
def test_main_effects_design_equals_formulae(formula, coding):
    """A right-hand side of main effects (numeric columns, text factors) is built without formulae:
    the same X, names and order as formulae's, and new data still evaluate through formulae."""
    from ppl_glmm.design.fixed import _main_effects

    rng = np.random.default_rng(3)
    n = 60
    data = pd.DataFrame(
        {
            "y": rng.poisson(3, n),
            "x": rng.normal(size=n),
            "k": rng.integers(0, 5, n),  # an integer column: numeric, one column
            "s": rng.choice(["b", "a", "c"], n),
            "t": pd.Categorical(rng.choice(["lo", "hi", "mid"], n), categories=["mid", "lo", "hi"]),
            "g": np.repeat(np.arange(12), 5).astype(str),
        }
    )
    m = ppl_glmm.fitglme(data, formula, distribution="poisson", dummy_var_coding=coding)
    fixed = m._ws.design.fixed
    simple = _main_effects(fixed.rhs, fixed.frame, m._ws.design.encoder)
    if coding == "effects" and any(v in formula for v in ("s", "t")):
        assert simple is None  # other codings go to formulae
        return
    assert simple is not None and fixed.matrices is None  # the direct path was taken
    assert fixed.frame._frame is None  # nor was pandas' DataFrame of the used rows built
    dm = ppl_glmm.design.fixed.formulae.design_matrices(
        fixed.rhs,
        ppl_glmm.design.fixed.as_frame(fixed.frame),
        na_action="error",
        extra_namespace=ppl_glmm.design.fixed.Encoder.namespace,
    )
    X = np.asarray(dm.common.design_matrix, dtype=float)
    labels = [lab for term in dm.common.terms.values() for lab in term.labels]
    names = tuple(ppl_glmm.design.fixed.coefficient_name(lab) for lab in labels)
    assert fixed.names == names
    np.testing.assert_array_equal(fixed.X, X)
    # predictions on new rows go through formulae's object, built from the fitted rows on demand
    new = data.iloc[[5, 0, 17]].reset_index(drop=True)
    at_rows = m.predict(conditional=False)[0][[5, 0, 17]]
    np.testing.assert_allclose(m.predict(new, conditional=False)[0], at_rows)


def _zoo_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    d = pd.DataFrame({"y": rng.normal(size=60), "x": rng.normal(size=60), "z": rng.normal(size=60)})
    d["g"], d["f"], d["xi"] = np.repeat(np.arange(6), 10), np.tile(list("abc"), 20), np.arange(60) % 7
    d["k"] = rng.poisson(2, 60)
    return d


@pytest.mark.parametrize("dtype", ["uint8", "UInt8", "int8", "uint16"])
def test_small_integer_columns_do_not_wrap_inside_formula_transforms(dtype):
    """I(xi - 3) of a uint8 column was 253, 254, 255 (the fit silently wrong, no warning); the same
    in offset(...) moved a Poisson logLik from -99.96 to -1442.87. Integer columns are widened."""
    d = _zoo_frame()
    small = d.assign(xi=d["xi"].astype(dtype))
    for formula, kw in [
        ("y ~ x + I(xi - 3) + (1|g)", {}),
        ("k ~ x + offset(0.1*(xi - 3)) + (1|g)", {"distribution": "poisson"}),
    ]:
        a, b = ppl_glmm.fitglme(d, formula, **kw), ppl_glmm.fitglme(small, formula, **kw)
        assert b.log_likelihood == pytest.approx(a.log_likelihood, abs=1e-10)
    assert str(small["xi"].dtype) == dtype  # the caller's frame keeps its dtype
    m = ppl_glmm.fitglme(d, "y ~ x + I(xi - 3) + (1|g)")
    np.testing.assert_allclose(m.predict(small.iloc[:5])[0], m.predict(d.iloc[:5])[0], rtol=1e-12)


@pytest.mark.parametrize(
    "extra,formula,message",
    [
        ("x:z", "y ~ x*z + `x:z` + (1|g)", "formula: column 'x:z' has the name of the interaction of x, z"),
        ("(Intercept)", "y ~ x + `(Intercept)` + (1|g)", "both be named '(Intercept)'"),
        ("f_b", "y ~ x + f + f_b + (1|g)", "both be named 'f_b'"),
    ],
)
def test_columns_named_like_generated_terms_are_refused(extra, formula, message):
    """A column `x:z` silently replaced the product of x*z (4 coefficients instead of 5); a column
    '(Intercept)' or 'f_b' gave two coefficients of one name, and coef_test's default then tested
    the wrong columns."""
    d = _zoo_frame()
    d[extra] = np.random.default_rng(1).normal(size=60)
    with pytest.raises(ppl_glmm.InputError) as err:
        ppl_glmm.fitglme(d, formula)
    assert message in str(err.value) and "rename" in str(err.value)


@pytest.mark.parametrize(
    "column,values,message",
    [
        ("y", lambda d: d["y"] + 1j * d["x"], "data: column 'y' holds complex numbers; give real values"),
        ("g", lambda d: [[i % 6] for i in range(60)], "data: column 'g' holds list values such as [0]"),
        (
            "g",
            lambda d: [(i % 6, 1) for i in range(60)],
            "data: column 'g' holds tuple values such as (0, 1)",
        ),
        (
            "g",
            lambda d: [frozenset([i % 6]) for i in range(60)],
            "holds frozenset values such as frozenset({0})",
        ),
    ],
)
def test_complex_and_container_columns_are_refused(column, values, message):
    """A complex response was cut to its real part (only NumPy's ComplexWarning said so); lists,
    tuples and frozensets as group ids raised pandas' TypeError, NotImplementedError or ValueError."""
    d = _zoo_frame()
    d[column] = values(d)
    with pytest.raises(ppl_glmm.InputTypeError) as err:
        ppl_glmm.fitglme(d, "y ~ x + (1|g)")
    assert message in str(err.value)
    with pytest.raises(ppl_glmm.InputTypeError, match="weights: holds complex numbers"):
        ppl_glmm.fitglme(_zoo_frame(), "y ~ x + (1|g)", weights=np.ones(60) + 0j)


def test_logical_columns_give_the_same_levels_whatever_their_dtype():
    """An object column of True/False gave coefficient t_True and levels 'False'/'True' where a bool
    column gave t_true, so predict refused the other representation of the same values."""
    d = _zoo_frame()
    t = pd.Series(np.tile([True, False, True], 20))
    forms = {
        "bool": t,
        "object": t.astype(object),
        "category": t.astype(object).astype("category"),
        "boolean": t.astype("boolean"),
    }
    fits = {k: ppl_glmm.fitglme(d.assign(t=v), "y ~ x + t + (1|g)") for k, v in forms.items()}
    for m in fits.values():
        assert m.coefficient_names == ["(Intercept)", "x", "t_true"]
        assert m.log_likelihood == pytest.approx(fits["bool"].log_likelihood, abs=1e-12)
    expected = fits["bool"].predict(d.assign(t=forms["bool"]).iloc[:4])[0]
    for m in fits.values():
        for v in forms.values():
            np.testing.assert_allclose(m.predict(d.assign(t=v).iloc[:4])[0], expected, rtol=1e-12)


def test_pd_na_in_a_list_of_weights_marks_the_row_missing():
    """NaN and None in a list of weights marked the row missing, pd.NA was refused as non-numeric
    (list(an Int64 series) holds pd.NA)."""
    d = _zoo_frame()
    fits = []
    for missing in (np.nan, None, pd.NA):
        w = [1.0] * 60
        w[5] = missing
        fits.append(ppl_glmm.fitglme(d, "y ~ x + (1|g)", weights=w))
    assert [m.num_missing for m in fits] == [1, 1, 1]
    assert fits[2].log_likelihood == pytest.approx(fits[0].log_likelihood, abs=1e-12)


def test_observation_info_keeps_the_index_and_exclude_as_given():
    """observation_info had a 0..n-1 index (observation_names and variables use the data's), and a
    row both excluded and missing showed Excluded=False."""
    data = load_mfr()
    data.index = [f"obs{i}" for i in range(len(data))]
    data.loc["obs3", "temp_dev"] = np.nan
    m = _fit(data, exclude=np.array([3, 7]))
    info = m.observation_info
    assert list(info.index) == m.observation_names == list(data.index)
    assert info.loc["obs3", ["Excluded", "Missing", "Subset"]].tolist() == [True, True, False]
    assert info.loc["obs7", ["Excluded", "Missing", "Subset"]].tolist() == [True, False, False]
    assert m.num_excluded == 1 and m.num_missing == 1 and m.num_observations == 98
    assert (info["Subset"] == ~(info["Excluded"] | info["Missing"])).all()


@pytest.mark.parametrize("coding", ["effects", "full"])
def test_an_interaction_without_its_main_effects_builds_under_every_coding(coding):
    """formulae adds a term for full rank here and deep-copies its evaluation environment, which
    held this package's modules (its caller's frame): under effects or full coding 'y ~ f:h'
    failed with "cannot pickle 'module' object". The environment is now the formula namespace
    alone; the column space, and so the fit, is reference coding's."""
    rng = np.random.default_rng(1)
    n = 240
    d = pd.DataFrame(
        {
            "f": rng.choice(["a", "b", "c"], n),
            "h": rng.choice(["u", "v"], n),
            "g": rng.integers(0, 12, n).astype(str),
            "x": rng.normal(size=n),
        }
    )
    d["y"] = rng.poisson(np.exp(0.3 + 0.4 * (d["f"] == "b") - 0.3 * (d["h"] == "v") + 0.2 * d["x"]))
    formula = "y ~ 0 + f:h + (1|g)" if coding == "full" else "y ~ f:h + (1|g)"
    ref = ppl_glmm.fitglme(d, formula, distribution="poisson")
    coded = ppl_glmm.fitglme(d, formula, distribution="poisson", dummy_var_coding=coding)
    assert coded.log_likelihood == pytest.approx(ref.log_likelihood, abs=1e-8)
    np.testing.assert_allclose(coded.fitted(), ref.fitted(), rtol=1e-6)
    slope = ppl_glmm.fitglme(d, "y ~ x + (1 + f:h|g)", distribution="poisson", dummy_var_coding="effects")
    assert np.isfinite(slope.log_likelihood) and slope.num_random_effects == 12 * 6


def test_a_categorical_with_an_unused_category_fits_without_a_pandas_warning():
    """Its unused level is dropped (as R's droplevels) by rebuilding the column; pandas 3.1 warned
    (Pandas4Warning) that the way it was rebuilt will raise in a future version."""
    import warnings

    d = load_mfr()
    d["supplier"] = d["supplier"].cat.add_categories(["Z"])  # (its order: C, B, A, then Z)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = ppl_glmm.fitglme(d, "defects ~ supplier + (1|factory)", distribution="poisson")
    plain = ppl_glmm.fitglme(load_mfr(), "defects ~ supplier + (1|factory)", distribution="poisson")
    assert m.coefficient_names == plain.coefficient_names
    assert m.log_likelihood == pytest.approx(plain.log_likelihood, abs=1e-10)
