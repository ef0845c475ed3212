"""MATLAB display layout, criteria, coefficient table arithmetic, covariance parameters, flags."""

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st

import ppl_glmm
from ppl_glmm import SingularFitWarning


def test_display_layout_matches_matlab(mfr_model):
    text = str(mfr_model)
    lines = text.splitlines()
    assert lines[0] == "Generalized linear mixed-effects model fit by ML"
    assert "    Number of observations             100" in lines
    assert "    Fixed effects coefficients           6" in lines
    assert "    Random effects coefficients         20" in lines
    assert "    Covariance parameters                1" in lines
    assert "    Distribution                    Poisson" in lines
    assert "    Link                            Log   " in lines
    assert "    FitMethod                       Laplace" in lines
    assert "    defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1 | factory)" in lines
    assert "    AIC       BIC       LogLikelihood    Deviance" in lines
    assert "Group: factory (20 Levels)" in lines
    assert "    Name1                  Name2                  Type           Estimate" in lines
    assert "    {'sqrt(Dispersion)'}        1       " in lines
    i = lines.index("Fixed effects coefficients (95% CIs):")
    header = lines[i + 1].split()
    assert header == ["Name", "Estimate", "SE", "tStat", "DF", "pValue", "Lower", "Upper"]
    assert lines[i + 2].startswith("    {'(Intercept)'}")
    assert lines[i + 3].startswith("    {'newprocess' }")
    row = lines[i + 2].split()
    c = mfr_model.coefficients.iloc[0]
    assert row[1:] == [f"{c[k]:.5g}" for k in ["Estimate", "SE", "tStat", "DF", "pValue", "Lower", "Upper"]]
    crit = mfr_model.model_criterion.iloc[0]
    vals = lines[lines.index("    AIC       BIC       LogLikelihood    Deviance") + 1].split()
    assert vals == [f"{crit[k]:.5g}" for k in ["AIC", "BIC", "LogLikelihood", "Deviance"]]


def test_model_criterion_definitions(mfr_model):
    crit = mfr_model.model_criterion.iloc[0]
    L, k, n = mfr_model.log_likelihood, 7, 100  # p = 6 plus one covariance parameter
    assert crit["AIC"] == pytest.approx(-2 * L + 2 * k)
    assert crit["BIC"] == pytest.approx(-2 * L + k * np.log(n))
    assert crit["Deviance"] == pytest.approx(-2 * L)
    assert mfr_model.num_covariance_parameters == 1 and not mfr_model.dispersion_estimated


def test_coefficient_table_uses_t_with_n_minus_p_df(mfr_model):
    t = mfr_model.coefficients
    assert list(t.columns) == ["Name", "Estimate", "SE", "tStat", "DF", "pValue", "Lower", "Upper"]
    assert (t["DF"] == 94).all() and mfr_model.dfe == 94
    np.testing.assert_allclose(t["SE"], np.sqrt(np.diag(mfr_model.coefficient_covariance)))
    np.testing.assert_allclose(t["tStat"], t["Estimate"] / t["SE"])
    np.testing.assert_allclose(t["pValue"], 2 * st.t.sf(np.abs(t["tStat"]), 94))
    q = st.t.ppf(0.975, 94)
    np.testing.assert_allclose(t["Upper"] - t["Estimate"], q * t["SE"])
    t90 = mfr_model.fixed_effects(alpha=0.1)
    np.testing.assert_allclose(t90["Upper"] - t90["Estimate"], st.t.ppf(0.95, 94) * t90["SE"])


def test_covariance_parameters_for_a_correlated_block(fitted):
    m = fitted("sleepstudy_lmm")
    psi, dispersion, stats = m.covariance_parameters()
    assert psi[0].shape == (2, 2) and dispersion == pytest.approx(m.dispersion)
    table = stats[0]
    assert list(table.columns) == ["Group", "Name1", "Name2", "Type", "Estimate", "Lower", "Upper"]
    assert list(table["Type"]) == ["std", "corr", "std"]
    np.testing.assert_allclose(
        table["Estimate"],
        [np.sqrt(psi[0][0, 0]), psi[0][1, 0] / np.sqrt(psi[0][0, 0] * psi[0][1, 1]), np.sqrt(psi[0][1, 1])],
    )
    assert (table["Lower"] < table["Estimate"]).all() and (table["Estimate"] < table["Upper"]).all()
    assert table["Lower"].iloc[1] > -1 and table["Upper"].iloc[1] < 1
    err = stats[-1].iloc[0]
    assert err["Group"] == "Error" and err["Name"] == "sqrt(Dispersion)"
    assert err["Estimate"] == pytest.approx(np.sqrt(m.dispersion))
    assert err["Lower"] < err["Estimate"] < err["Upper"]
    # Wald on log(sd): the interval is symmetric on the log scale
    lo, est, hi = table.loc[0, ["Lower", "Estimate", "Upper"]]
    assert np.log(est) - np.log(lo) == pytest.approx(np.log(hi) - np.log(est))


def test_covariance_parameter_interval_width_matches_profile_curvature(fitted):
    """For a scalar SD the Wald SE of log(sd) equals 1/sqrt(curvature) of the profile deviance."""
    m = fitted("cbpp_binomial")
    _, _, stats = m.covariance_parameters(alpha=0.05)
    est, hi = stats[0].loc[0, ["Estimate", "Upper"]]
    se_log = (np.log(hi) - np.log(est)) / st.norm.ppf(0.975)
    problem = m._problem()
    from scipy.optimize import minimize

    def prof(log_sd):
        b = minimize(
            lambda beta: problem.value(np.r_[beta, np.exp(log_sd)]), m._result.beta, method="BFGS"
        ).fun
        return b

    h = 0.02
    curv = (prof(np.log(est) + h) - 2 * prof(np.log(est)) + prof(np.log(est) - h)) / h**2
    assert se_log == pytest.approx(1 / np.sqrt(curv), rel=0.02)


def test_poisson_error_row_is_fixed_at_one(mfr_model):
    err = mfr_model.covariance_parameters()[2][-1].iloc[0]
    assert (err["Estimate"], err["Lower"], err["Upper"]) == (1.0, 1.0, 1.0)


def test_alpha_is_validated(mfr_model):
    with pytest.raises(ValueError, match="alpha"):
        mfr_model.covariance_parameters(alpha=1.5)


def test_singular_fit_is_flagged_and_warned():
    # every group has the same responses: the between-group variance is exactly zero
    data = pd.DataFrame({"g": np.repeat(np.arange(8), 5), "y": np.tile([0, 1, 2, 4, 3], 8)})
    with pytest.warns(SingularFitWarning, match="singular"):
        m = ppl_glmm.fitglme(data, "y ~ 1 + (1|g)", distribution="poisson")
    assert m.singular
    assert m.covariance_parameters(alpha=0.05)[2][0]["Estimate"].iloc[0] < 1e-4
    assert "Warning: boundary (singular) fit" in str(m)
    assert m.log_likelihood == pytest.approx(st.poisson.logpmf(data["y"], data["y"].mean()).sum(), abs=1e-6)


def test_repr_and_properties(mfr_model):
    assert "poisson/log laplace" in repr(mfr_model)
    assert mfr_model.num_observations == 100 and mfr_model.num_coefficients == 6
    assert mfr_model.response_name == "defects"
    assert mfr_model.converged and mfr_model.optimization.n_evaluations > 0


def test_singular_fit_has_no_wald_intervals_for_the_boundary_term():
    data = pd.DataFrame({"g": np.repeat(np.arange(8), 5), "y": np.tile([0, 1, 2, 4, 3], 8)})
    with pytest.warns(SingularFitWarning):
        m = ppl_glmm.fitglme(data, "y ~ 1 + (1|g)", distribution="poisson")
    with pytest.warns(UserWarning, match=r"term\(s\) of g are on the boundary"):
        stats = m.covariance_parameters()[2]
    assert stats[0][["Lower", "Upper"]].isna().all().all()


def _singular_two_term_data() -> pd.DataFrame:
    """48 rows, crossed g (8 levels) and h (6): y depends on h only, and g's SD is fitted as 0."""
    rng = np.random.default_rng(0)
    g, h, x = np.repeat(np.arange(8), 6), np.tile(np.arange(6), 8), rng.normal(size=48)
    y = 1 + 0.5 * x + rng.normal(0, 0.6, 6)[h] + rng.normal(0, 1, 48)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g], "h": [f"h{i}" for i in h]})


@pytest.mark.parametrize("fit_method", ["laplace", "reml", "mpl"])
def test_singular_fit_keeps_the_other_terms_intervals(fit_method):
    """A term at SD 0 is held at its estimate: the other term's and sqrt(Dispersion)'s Wald intervals
    are those of the model without it (whose likelihood surface is the same), not NaN."""
    d = _singular_two_term_data()
    with pytest.warns(SingularFitWarning):
        m = ppl_glmm.fitglme(d, "y ~ x + (1|g) + (1|h)", fit_method=fit_method)
    alone = ppl_glmm.fitglme(d, "y ~ x + (1|h)", fit_method=fit_method)
    with pytest.warns(UserWarning, match=r"term\(s\) of g are on the boundary.*hold them at their estimates"):
        g_table, h_table, error = m.covariance_parameters()[2]
    h_alone, error_alone = alone.covariance_parameters()[2]
    assert g_table[["Lower", "Upper"]].isna().all().all()
    cols = ["Estimate", "Lower", "Upper"]
    np.testing.assert_allclose(h_table[cols].to_numpy(), h_alone[cols].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(error[cols].to_numpy(), error_alone[cols].to_numpy(), rtol=1e-6)
    assert np.isfinite(h_table[["Lower", "Upper"]].to_numpy()).all()


def test_returned_tables_are_copies(mfr_model):
    t = mfr_model.coefficients
    t.loc[0, "Estimate"] = 999.0
    mfr_model.coefficient_covariance[0, 0] = -1.0
    assert mfr_model.coefficients.loc[0, "Estimate"] != 999.0
    assert mfr_model.coefficient_covariance[0, 0] > 0


def test_convergence_failure_is_flagged_and_warned(monkeypatch):
    """An optimiser stopped early (1 BFGS iteration, no Newton finish) leaves a large Newton decrement:
    warned, flagged, displayed."""
    import ppl_glmm.engine.optimize as opt
    from ppl_glmm import ConvergenceWarning
    from ppl_glmm.datasets import load_mfr

    real = opt.so.minimize

    def one_step(*args, **kwargs):
        kwargs["options"] = {**kwargs.get("options", {}), "maxiter": 1}
        return real(*args, **kwargs)

    monkeypatch.setattr(opt.so, "minimize", one_step)
    monkeypatch.setattr(opt, "_POLISH_STEPS", 0)
    with pytest.warns(ConvergenceWarning, match="failed to converge"):
        m = ppl_glmm.fitglme(
            load_mfr(), "defects ~ 1 + newprocess + time_dev + (1|factory)", distribution="poisson"
        )
    assert not m.converged and m.optimization.newton_decrement > opt.CONVERGED_TOL
    assert "Warning: Model failed to converge" in str(m)


def test_display_prints_integer_values_in_full():
    """MATLAB's format short g prints an integer-valued double in full: DF = 123458 was 1.2346e+05."""
    from ppl_glmm.display import format_table

    table = pd.DataFrame({"Name": ["x", "y"], "DF": [123458.0, 98.0], "Estimate": [0.123456789, 123456.5]})
    lines = format_table(table)
    assert "123458" in lines[1] and "1.2346e+05" not in lines[1]
    assert "0.12346" in lines[1] and "1.2346e+05" in lines[2] and lines[2].rstrip().endswith("1.2346e+05")


def test_covariance_intervals_of_a_nearly_singular_term_are_nan_not_an_error():
    """(1 + c || g) with a 3-level c: the (0 + c | g) block's Psi has an eigenvalue of 1e-8 but no
    Lambda diagonal below the boundary tolerance, and a finite-difference step of the Hessian left
    the positive definite matrices: covariance_parameters() raised LinAlgError."""
    rng = np.random.default_rng(1)
    n = 240
    g, h = rng.integers(0, 12, n), rng.integers(0, 6, n)
    x, x2, c = rng.normal(size=n), rng.normal(size=n), rng.choice(["a", "b", "c"], n)
    eta = 0.3 + 0.5 * x - 0.2 * x2 + rng.normal(0, 0.5, 12)[g] + rng.normal(0, 0.3, 12)[g] * x
    eta = eta + rng.normal(0, 0.4, 6)[h]
    d = pd.DataFrame({"g": [f"G{i}" for i in g], "x": x, "c": c, "y": 2 + eta + rng.normal(0, 0.7, n)})
    m = ppl_glmm.fitglme(d, "y ~ x + (1 + c || g)")
    assert not m.singular
    with pytest.warns(UserWarning, match="confidence intervals unavailable"):
        tables = m.covariance_parameters()[2]
    assert all(t[["Lower", "Upper"]].isna().all().all() for t in tables[:-1])


def test_singular_warning_also_names_a_correlation_at_its_bound():
    """A (1 + x|g) fit at correlation 1 with both SDs clearly positive is singular too; the warning
    said 'a random-effects variance is estimated as zero', which the table beside it contradicted."""
    rng = np.random.default_rng(1)
    n = 240
    g, x = rng.integers(0, 12, n), rng.normal(size=n)
    d = pd.DataFrame({"g": [f"G{i}" for i in g], "x": x})
    d["y"] = 1 + 0.5 * x + rng.normal(0, 0.5, 12)[g] + rng.normal(0, 0.5, n)
    with pytest.warns(SingularFitWarning) as caught:
        m = ppl_glmm.fitglme(d, "y ~ x + (1 + x | g)")
    psi = m.covariance_parameters()[0][0]
    sds = np.sqrt(np.diag(psi))
    assert sds.min() > 0.01 and abs(psi[0, 1] / (sds[0] * sds[1])) == pytest.approx(1.0, abs=1e-3)
    assert str(caught[0].message) == (
        "boundary (singular) fit: a random-effects covariance matrix is singular (a variance at zero, "
        "or a correlation at its bound)"
    )


def test_a_diagonal_term_holds_only_its_zero_sds():
    """Under a Diagonal pattern the SDs are independent parameters: a slope SD at 0 is held, the
    intercept SD keeps its interval, which equals that of the model without the slope term (the
    whole term was held, so its non-zero SD had NaN bounds)."""
    rng = np.random.default_rng(1)
    g, x = np.repeat(np.arange(12), 10), rng.normal(size=120)
    y = 1 + 0.5 * x + rng.normal(0, 0.6, 12)[g] + rng.normal(size=120)
    d = pd.DataFrame({"g": g.astype(str), "x": x, "y": y})
    with pytest.warns(SingularFitWarning):
        m = ppl_glmm.fitglme(d, "y ~ x + (1 + x|g)", covariance_pattern="Diagonal")
    with pytest.warns(UserWarning, match=r"term\(s\) of g are on the boundary"):
        term, error = m.covariance_parameters()[2]
    alone, error_alone = ppl_glmm.fitglme(d, "y ~ x + (1|g)").covariance_parameters()[2]
    cols = ["Estimate", "Lower", "Upper"]
    np.testing.assert_allclose(term[cols].to_numpy()[:1], alone[cols].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(error[cols].to_numpy(), error_alone[cols].to_numpy(), rtol=1e-6)
    assert term[["Lower", "Upper"]].iloc[1].isna().all()


def test_display_wraps_a_long_formula_at_spaces():
    """MATLAB wraps the formula line to the window; a 100-character formula was one line."""
    rng = np.random.default_rng(3)
    names = [f"covariate_number_{k}" for k in range(5)]
    d = pd.DataFrame(rng.normal(size=(60, 5)), columns=names)
    d["g"] = np.repeat(list("abcdef"), 10)
    d["y"] = rng.normal(size=60) + np.repeat(rng.normal(scale=2.0, size=6), 10)
    m = ppl_glmm.fitglme(d, "y ~ " + " + ".join(names) + " + (1|g)")
    lines = str(m).splitlines()
    i = lines.index("Formula:")
    block = lines[i + 1 : lines.index("", i)]
    assert len(block) == 2 and all(len(line) <= 80 for line in block)
    assert block[0].startswith("    y ~ 1 + covariate_number_0") and block[1].startswith("      ")
    assert " ".join(part.strip() for part in block) == m.formula


def test_display_formula_wrap_keeps_backticked_names_whole():
    from ppl_glmm.display import _wrap_formula

    f = "y ~ 1 + x + `a rather long predictor name` + `another long name with spaces` + z2 + (1 | `g id`)"
    lines = _wrap_formula(f)
    assert len(lines) == 2 and all(len(line) <= 80 for line in lines)
    assert all(line.count("`") % 2 == 0 for line in lines)
    assert " ".join(line.strip() for line in lines) == f


def test_numbers_are_shown_as_matlabs_short_g():
    """5 significant digits, integers in full, and NaN/Inf/-Inf in MATLAB's spelling (Inf printed
    as Python's 'inf')."""
    from ppl_glmm.display import _num

    assert [_num(v) for v in (0.123456, 1.23456e-7, 123458.0, -3.0, float("nan"))] == [
        "0.12346",
        "1.2346e-07",
        "123458",
        "-3",
        "NaN",
    ]
    assert (_num(float("inf")), _num(-np.inf)) == ("Inf", "-Inf")


def test_the_wald_covariance_of_the_covariance_parameters_is_computed_once(fitted, monkeypatch):
    """covariance_parameters() differenced the gradient 2P times on every call (0.5-0.9 s at
    100,000 rows); the model keeps the result, read-only, and a second call evaluates nothing."""
    import copy

    from ppl_glmm import inference

    m = copy.deepcopy(fitted("cbpp_binomial"))
    first = m.covariance_parameters()[2]
    calls = []
    monkeypatch.setattr(inference, "natural_covariance", lambda fit: calls.append(fit) or None)
    again = m.covariance_parameters(alpha=0.1)[2]
    assert calls == [] and not m._natural_cov.flags.writeable
    assert (again[0]["Upper"] - again[0]["Lower"]).iloc[0] < (first[0]["Upper"] - first[0]["Lower"]).iloc[0]


def _shifted_data(seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n, G = 200, 20
    g = rng.integers(0, G, n)
    x = rng.normal(size=n)
    f = rng.choice(list("abc"), n)
    eta = (
        0.3 + 0.5 * x + pd.Series(f).map({"a": 0, "b": 0.4, "c": -0.3}).to_numpy() + rng.normal(0, 0.6, G)[g]
    )
    d = pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "f": f, "g": [f"G{v:02d}" for v in g]})
    d["nt"] = rng.integers(1, 8, n)
    d["yb"] = rng.binomial(d["nt"], 1 / (1 + np.exp(-eta)))
    return d


@pytest.mark.parametrize("shift,scale", [(1e4, 1.0), (0.0, 1e5), (5e4, 1e4)])
def test_hessian_based_intervals_do_not_depend_on_a_covariates_location_or_units(shift, scale):
    """Inference-invariance hunt: with x + 1e4 the SD's Wald interval was [0.3147, 0.3232] (true
    [0.1972, 0.5157]: 45 times too narrow), with x x 1e5 NaN, and 'jointhessian' gave SE(x) 1.66e-5
    against 0.0905 (t = 28,060): the finite-difference steps in beta ignored the columns' scales.
    They are now taken in a basis where X's columns are orthogonal with rms 1."""
    d = _shifted_data()
    moved = d.assign(x=d.x * scale + shift)
    kw = {"distribution": "poisson"}
    a = ppl_glmm.fitglme(d, "y ~ 1 + x + f + (1|g)", **kw).covariance_parameters()[2][0]
    b = ppl_glmm.fitglme(moved, "y ~ 1 + x + f + (1|g)", **kw).covariance_parameters()[2][0]
    np.testing.assert_allclose(
        b[["Estimate", "Lower", "Upper"]], a[["Estimate", "Lower", "Upper"]], rtol=1e-6
    )
    kw = {"distribution": "binomial", "binomial_size": "nt", "covariance_method": "jointhessian"}
    a = ppl_glmm.fitglme(d, "yb ~ 1 + x + f + (1|g)", **kw).coefficients
    b = ppl_glmm.fitglme(moved, "yb ~ 1 + x + f + (1|g)", **kw).coefficients
    assert b.SE[1] * scale == pytest.approx(a.SE[1], rel=1e-6)
    np.testing.assert_allclose(b.tStat[1:], a.tStat[1:], rtol=1e-6)


def test_check_hessian_is_not_fooled_by_a_shifted_covariate():
    d = _shifted_data().assign(x=lambda t: t.x + 1e6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ppl_glmm.ConvergenceWarning)
        m = ppl_glmm.fitglme(d, "y ~ 1 + x + f + (1|g)", distribution="poisson", check_hessian=True)
    assert m.converged
