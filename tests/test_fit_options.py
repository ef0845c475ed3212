"""The ``check_hessian`` and ``verbose`` fit options (MATLAB's CheckHessian and Verbose)."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from reference_cases import _data, gamma_reciprocal_data

import ppl_glmm
from ppl_glmm import ConvergenceWarning, InputError, InputTypeError
from ppl_glmm.datasets import load_mfr
from ppl_glmm.fit_methods import METHODS, FitSettings, make_settings

MFR = "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)"
MFR_ARGS = {"distribution": "Poisson", "link": "log", "fit_method": "Laplace", "dummy_var_coding": "effects"}
CBPP = "incidence ~ period + (1|herd)"
CBPP_TWICE = "incidence ~ period + (1|herd) + (1|herd2)"  # the same grouping twice: not identified


@pytest.fixture(scope="module")
def cbpp():
    data = _data("cbpp.csv")
    data["herd2"] = data["herd"]
    return data


def _fit_cbpp(cbpp, formula=CBPP, **options):
    return ppl_glmm.fitglme(cbpp, formula, distribution="binomial", binomial_size="size", **options)


def _rows(out: str, stage: str) -> list[list[str]]:
    """The fields of the progress lines of one stage ('bfgs', 'newton', 'pl')."""
    return [line.split() for line in out.splitlines() if line.split()[:1] == [stage]]


def _same_fit(a, b) -> None:
    """Bit-for-bit the same estimates and optimiser record."""
    ra, rb = a._fit.result, b._fit.result
    for name in ("beta", "theta", "x", "u", "b", "eta", "cov_beta"):
        np.testing.assert_array_equal(getattr(ra, name), getattr(rb, name), err_msg=name)
    assert ra.log_likelihood == rb.log_likelihood and ra.sigma == rb.sigma
    oa, ob = ra.optimization, rb.optimization
    assert (oa.n_iterations, oa.n_evaluations, oa.newton_steps) == (
        ob.n_iterations,
        ob.n_evaluations,
        ob.newton_steps,
    )


# ---- verbose ---------------------------------------------------------------------------------


def test_verbose_prints_one_line_per_iteration_and_changes_nothing(mfr_model, capsys):
    capsys.readouterr()
    model = ppl_glmm.fitglme(load_mfr(), MFR, verbose=1, **MFR_ARGS)
    out = capsys.readouterr().out
    opt = model.optimization
    bfgs = _rows(out, "bfgs")
    assert [int(r[1]) for r in bfgs] == list(range(1, opt.n_iterations + 1))
    assert len(_rows(out, "newton")) == opt.newton_steps
    assert all(len(r) == 5 for r in bfgs)  # stage, iteration, objective, max|grad|, max|step|
    objectives = [float(r[2]) for r in bfgs]
    assert objectives == sorted(objectives, reverse=True)  # BFGS's line search decreases it
    # the objective is -logLik: the summary line shows the fit's, to 12 digits
    assert "-logLik" in out.splitlines()[0]
    final = re.search(r"converged: objective (\S+),", out)
    assert float(final.group(1)) == pytest.approx(-model.log_likelihood, rel=1e-11)
    if opt.newton_steps == 0:
        assert objectives[-1] == pytest.approx(-model.log_likelihood, rel=1e-11)
    _same_fit(model, mfr_model)


def test_verbose_2_shows_the_inner_iterations_of_each_evaluation(mfr_model, capsys):
    capsys.readouterr()
    model = ppl_glmm.fitglme(load_mfr(), MFR, verbose=2, **MFR_ARGS)
    out = capsys.readouterr().out
    bfgs = _rows(out, "bfgs")
    assert len(bfgs) == model.optimization.n_iterations
    for r in bfgs:
        n_evals, inner = int(r[5]), [int(v) for v in r[6:]]
        assert n_evals == len(inner) >= 1 and all(k >= 1 for k in inner)  # PIRLS takes >= 1 step
    assert sum(int(r[5]) for r in bfgs) <= model.optimization.n_evaluations
    _same_fit(model, mfr_model)


def test_verbose_0_prints_nothing(capsys, cbpp):
    capsys.readouterr()
    _fit_cbpp(cbpp, verbose=0)
    _fit_cbpp(cbpp, verbose=False, fit_method="mpl")
    assert capsys.readouterr().out == ""


def test_verbose_pseudo_likelihood_prints_pl_iterations(cbpp, capsys):
    quiet = _fit_cbpp(cbpp, fit_method="mpl")
    capsys.readouterr()
    model = _fit_cbpp(cbpp, fit_method="mpl", verbose=1)
    out1 = capsys.readouterr().out
    pl = _rows(out1, "pl")
    assert [int(r[1]) for r in pl] == list(range(1, model.optimization.n_iterations + 1))
    assert float(pl[-1][2]) == pytest.approx(-model.log_likelihood, rel=1e-11)  # the final LME's
    assert float(pl[-1][3]) <= 1e-8 * max(1.0, np.max(np.abs(model._fit.result.eta)))  # converged
    assert _rows(out1, "bfgs") == []  # the LME fits' lines only with verbose=2
    _same_fit(model, quiet)

    model2 = _fit_cbpp(cbpp, fit_method="mpl", verbose=2)
    out2 = capsys.readouterr().out
    assert len(_rows(out2, "pl")) == model2.optimization.n_iterations
    headers = [line for line in out2.splitlines() if re.match(r"\s+PL iteration \d+, LME", line)]
    assert len(headers) == model2.optimization.n_iterations
    assert len(_rows(out2, "bfgs")) >= model2.optimization.n_iterations
    _same_fit(model2, quiet)


def test_refit_keeps_verbose(cbpp, capsys):
    model = _fit_cbpp(cbpp, verbose=1)
    capsys.readouterr()
    new = model.refit(model.random(rng=4))
    assert len(_rows(capsys.readouterr().out, "bfgs")) == new.optimization.n_iterations


# ---- check_hessian ---------------------------------------------------------------------------


def test_check_hessian_is_quiet_at_a_positive_definite_optimum(mfr_model):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails
        model = ppl_glmm.fitglme(load_mfr(), MFR, check_hessian=True, **MFR_ARGS)
    assert model.warnings == ()
    _same_fit(model, mfr_model)


@pytest.mark.parametrize("fit_method", ["laplace", "approximatelaplace", "mpl"])
def test_check_hessian_warns_when_a_direction_is_flat(cbpp, fit_method):
    """(1|herd) + (1|herd2) with herd2 a copy of herd: the likelihood depends on theta_1^2 +
    theta_2^2 only, so the Hessian is singular along the circle through the optimum."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quiet = _fit_cbpp(cbpp, CBPP_TWICE, fit_method=fit_method)
    assert not any("Hessian" in w for w in quiet.warnings)  # the check is off by default
    with pytest.warns(ConvergenceWarning, match="not positive definite") as record:
        model = _fit_cbpp(cbpp, CBPP_TWICE, fit_method=fit_method, check_hessian=True)
    message = next(str(w.message) for w in record if "Hessian" in str(w.message))
    assert "Lambda[herd: (Intercept), (Intercept)]" in message
    assert "Lambda[herd2: (Intercept), (Intercept)]" in message
    assert re.search(r"smallest eigenvalue (\S+)", message)
    assert message in model.warnings and f"Warning: {message}" in str(model)
    assert ("pseudo-data LME" in message) == (fit_method == "mpl")
    _same_fit(model, quiet)
    # independent check that the direction is flat: rotating (theta_1, theta_2) keeps the objective
    if fit_method == "approximatelaplace":
        problem = model._problem()
        t = model._fit.result.x
        r = np.hypot(*t)
        rotated = r * np.array([np.cos(0.3), np.sin(0.3)])
        assert problem.value(rotated) == pytest.approx(problem.value(t), abs=1e-8)


# ---- option checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "text"),
    [
        ({"verbose": 3}, InputError, "verbose"),
        ({"verbose": -1}, InputError, "verbose"),
        ({"verbose": "iter"}, InputTypeError, "verbose"),
        ({"verbose": 1.0}, InputTypeError, "verbose"),
        ({"check_hessian": "yes"}, InputTypeError, "check_hessian"),
        ({"check_hessian": 2}, InputTypeError, "check_hessian"),  # (1 and 0 are MATLAB logicals)
    ],
)
def test_bad_values_are_refused_before_any_work(cbpp, options, error, text):
    with pytest.raises(error, match=text):
        _fit_cbpp(cbpp.iloc[:0], **options)  # no rows: any work would fail differently


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_accepts_both_options_and_they_select_no_template(method):
    s = make_settings(METHODS[method], {"verbose": True, "check_hessian": True})
    assert (s.verbose, s.check_hessian) == (1, True)
    assert s.problem_key(method) == FitSettings().problem_key(method)
    assert make_settings(METHODS[method], {"verbose": 2}) == FitSettings()  # verbose changes no fit
    assert make_settings(METHODS[method], {"check_hessian": True}) != FitSettings()


# ---- mu_start: the link's domain, divergence, an explicit None --------------------------------


@pytest.mark.parametrize("method", ["mpl", "rempl"])
def test_pseudo_likelihood_that_diverges_from_mu_start_raises_a_fit_error_naming_it(method):
    """A constant mu_start of 0.05 (inside gamma's range) sends the PL iterations' linear predictor
    away (eta changing by ~1e31): a FitError naming mu_start, not the likelihood's internal support
    error (which the engine documents a fit never raises), nor a model."""
    d = gamma_reciprocal_data()
    with pytest.raises(ppl_glmm.FitError, match="diverged from the given mu_start"):
        ppl_glmm.fitglme(
            d, "y ~ x + (1|g)", distribution="gamma", fit_method=method, mu_start=np.full(200, 0.05)
        )


@pytest.mark.parametrize("method", ["mpl", "rempl"])
def test_pseudo_likelihood_from_a_far_mu_start_reaches_the_default_fixed_point(method):
    """mu_start = 2: the pseudo-data LME's line search met trial points with sigma outside (0, inf),
    whose support error ended the fit (FitError); they are infeasible points now, and the
    iterations reach the fixed point of MATLAB's start."""
    d = gamma_reciprocal_data()
    far = ppl_glmm.fitglme(
        d, "y ~ x + (1|g)", distribution="gamma", fit_method=method, mu_start=np.full(200, 2.0)
    )
    default = ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution="gamma", fit_method=method)
    assert far.converged
    assert far.log_likelihood == pytest.approx(default.log_likelihood, abs=1e-5)  # pl_tolerance
    np.testing.assert_allclose(far.coefficients["Estimate"], default.coefficients["Estimate"], atol=1e-6)


def test_mu_start_outside_the_links_domain_is_refused_before_any_work():
    d = gamma_reciprocal_data().assign(y=lambda t: np.log(t.y))
    with pytest.raises(InputError, match=r"mu_start: the log link is not defined at 200 value\(s\)"):
        ppl_glmm.fitglme(
            d,
            "y ~ x + (1|g)",
            distribution="normal",
            link="log",
            fit_method="mpl",
            mu_start=np.full(200, -1.0),
        )


def test_an_explicit_mu_start_none_is_the_default_start():
    d = gamma_reciprocal_data()
    default = ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution="gamma", fit_method="mpl")
    explicit = ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution="gamma", fit_method="mpl", mu_start=None)
    assert explicit.log_likelihood == default.log_likelihood


def test_a_mu_start_series_is_matched_to_the_rows_by_label(cbpp):
    """A Series mu_start was read by position while weights, offsets and sizes are matched by
    label: the same means in another order started (and, after one PL iteration, ended) another
    fit. Now the reversed Series gives the array's fit; labels that are not the rows' are refused."""
    import pandas as pd

    frac = (cbpp["incidence"] + 0.5) / (cbpp["size"] + 1) * np.linspace(0.5, 1.5, len(cbpp))
    mu = np.clip(frac, 0.01, 0.99).to_numpy()
    kw = {"fit_method": "mpl", "pl_iterations": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        plain = _fit_cbpp(cbpp, mu_start=mu, **kw)
        reversed_series = _fit_cbpp(cbpp, mu_start=pd.Series(mu, index=cbpp.index)[::-1], **kw)
        by_position = _fit_cbpp(cbpp, mu_start=mu[::-1], **kw)
    np.testing.assert_array_equal(reversed_series.coefficients.Estimate, plain.coefficients.Estimate)
    assert np.max(np.abs(by_position.coefficients.Estimate - plain.coefficients.Estimate)) > 1e-3
    with pytest.raises(
        InputError, match=r"mu_start: the Series' index does not match .*has no value for row 0"
    ):
        _fit_cbpp(cbpp, mu_start=pd.Series(mu, index=cbpp.index + 100), **kw)


def test_mu_start_is_copied_at_fit_time(cbpp):
    """mu_start was kept as a read-only view of the caller's array: writing to that array after the
    fit changed every later MPL refit's start (12 iterations instead of 25, and a FitError for
    negative values), and what a pickle of the model carried."""
    import pandas as pd

    frac = np.clip((cbpp["incidence"] + 0.5) / (cbpp["size"] + 1), 0.01, 0.99).to_numpy()
    for given in (frac.copy(), pd.Series(frac.copy(), index=cbpp.index)):
        m = _fit_cbpp(cbpp, mu_start=given, fit_method="mpl")
        y = m.response()
        before = m.refit(y)
        if isinstance(given, pd.Series):
            given.iloc[:] = 0.999
        else:
            given[:] = 0.999
        assert not np.shares_memory(m._settings.mu_start, np.asarray(given))
        after = m.refit(y)
        assert after.log_likelihood == before.log_likelihood
        np.testing.assert_array_equal(m._settings.mu_start, frac)
