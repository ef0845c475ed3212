"""Simulation-based inference (issue 10): parametric bootstrap, simulated LRT, backends, storage.

The mfr model (fixture ``mfr_model``) refits in ~15 ms, cbpp in ~20-40 ms, so the runs here are
small (8-30 replicates). Worker processes (loky, a Dask LocalCluster) take 10-60 s to start (imports
and compilation): those tests are marked slow.
"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ppl_glmm
from ppl_glmm.bootstrap import (
    BootstrapResult,
    bootstrap_coefficient_intervals,
    bootstrap_covariance_intervals,
    check_nested,
    parametric_bootstrap,
    simulated_lrt,
)
from ppl_glmm.bootstrap.statistics import replicate_seed
from ppl_glmm.errors import ConvergenceWarning, FitError, GLMMWarning, InputError, InputTypeError
from ppl_glmm.model import GeneralizedLinearMixedModel

ROOT = Path(__file__).resolve().parents[1]
MFR_FORMULA = "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)"
MFR_NAMES = [
    "(Intercept)",
    "newprocess",
    "time_dev",
    "temp_dev",
    "supplier_C",
    "supplier_B",
    "factory: std((Intercept))",
    "logLik",
]


@pytest.fixture(scope="module")
def mfr_boot(mfr_model):
    return parametric_bootstrap(mfr_model, 30, rng=2024, progress=False)


@pytest.fixture(scope="module")
def cbpp():
    d = pd.read_csv(ROOT / "tests" / "reference" / "data" / "cbpp.csv")
    d["period"] = d["period"].astype(str)
    d["obs"] = np.arange(len(d))
    return d


def _fit_cbpp(data, formula, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GLMMWarning)
        return ppl_glmm.fitglme(data, formula, distribution="binomial", binomial_size="size", **kw)


@pytest.fixture(scope="module")
def cbpp_herd(cbpp):
    return _fit_cbpp(cbpp, "incidence ~ period + (1|herd)")


@pytest.fixture(scope="module")
def cbpp_obs(cbpp):
    return _fit_cbpp(cbpp, "incidence ~ period + (1|herd) + (1|obs)")


# ------------------------------------------------------------------------------ bootstrap


def test_replicate_table_layout_and_estimates(mfr_model, mfr_boot):
    r = mfr_boot
    assert r.statistics == MFR_NAMES
    assert list(r.replicates.columns) == [
        "replicate",
        "seed",
        *MFR_NAMES,
        "converged",
        "singular",
        "quadrature_edge",
    ]
    assert r.n_quadrature_edge == 0  # (a Laplace fit)
    assert r.replicates["replicate"].tolist() == list(range(30))
    assert r.nsim == 30 and r.n_failed == 0 and r.entropy == 2024 and r.spawn_key == ()
    # the seeds are the SeedSequence children's first words
    assert r.replicates["seed"].tolist() == [replicate_seed(2024, (), i) for i in range(30)]
    assert r.n_not_converged == int((~r.replicates["converged"]).sum())
    # t0 is the fitted model's statistic
    fe = mfr_model.fixed_effects()
    np.testing.assert_array_equal(r.estimates.iloc[:6].to_numpy(), fe["Estimate"].to_numpy())
    cov = mfr_model.covariance_parameters()[2][0]
    assert r.estimates["factory: std((Intercept))"] == cov["Estimate"].iloc[0]
    assert r.estimates["logLik"] == mfr_model.log_likelihood
    # replicate 0 is random(rng=seed_0) refitted
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GLMMWarning)
        refit0 = mfr_model.refit(mfr_model.random(rng=replicate_seed(2024, (), 0)))
    np.testing.assert_array_equal(r.replicates.loc[0, MFR_NAMES[:6]].to_numpy(float), refit0._result.beta)
    assert r.replicates.loc[0, "logLik"] == refit0.log_likelihood


def test_percentile_intervals_contain_the_ml_estimate(mfr_boot):
    ci = mfr_boot.ci(0.05, "percentile")
    assert ci["Name"].tolist() == MFR_NAMES
    params = ci[ci["Name"] != "logLik"]
    assert np.all(params["Lower"] < params["Estimate"]) and np.all(params["Estimate"] < params["Upper"])
    v = mfr_boot.values()
    q = np.quantile(v.to_numpy(), [0.025, 0.975], axis=0)
    np.testing.assert_array_equal(ci["Lower"].to_numpy(), q[0])
    np.testing.assert_array_equal(ci["Upper"].to_numpy(), q[1])


def test_interval_methods_follow_their_formulas(mfr_boot):
    v = mfr_boot.values().to_numpy()
    t0 = mfr_boot.estimates.to_numpy()
    alpha = 0.1
    q_lo, q_hi = np.quantile(v, [alpha / 2, 1 - alpha / 2], axis=0)
    basic = mfr_boot.ci(alpha, "basic")
    np.testing.assert_allclose(basic["Lower"], 2 * t0 - q_hi, rtol=1e-14)
    np.testing.assert_allclose(basic["Upper"], 2 * t0 - q_lo, rtol=1e-14)
    bias, se = v.mean(axis=0) - t0, v.std(axis=0, ddof=1)
    np.testing.assert_allclose(mfr_boot.bias(), bias, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(mfr_boot.se(), se, rtol=1e-12)
    normal = mfr_boot.ci(alpha, "normal")
    z = 1.6448536269514722
    np.testing.assert_allclose(normal["Lower"], t0 - bias - z * se, rtol=1e-12)
    np.testing.assert_allclose(normal["Upper"], t0 - bias + z * se, rtol=1e-12)
    shortest = mfr_boot.ci(alpha, "shortest")
    m = math.ceil((1 - alpha) * 30)  # 27 of the 30 sorted replicates
    for k in range(v.shape[1]):
        x = np.sort(v[:, k])
        widths = x[m - 1 :] - x[: 30 - m + 1]
        j = int(np.argmin(widths))
        assert (shortest["Lower"][k], shortest["Upper"][k]) == (x[j], x[j + m - 1])
        assert np.sum((x >= x[j]) & (x <= x[j + m - 1])) >= m
    assert np.all(shortest["Upper"] - shortest["Lower"] <= widths.max())


def test_intervals_in_the_model_table_layouts(mfr_model, mfr_boot):
    ci = mfr_boot.ci(0.05).set_index("Name")
    fe = bootstrap_coefficient_intervals(mfr_model, alpha=0.05, result=mfr_boot)
    wald = mfr_model.fixed_effects()
    assert list(fe.columns) == list(wald.columns)
    pd.testing.assert_frame_equal(fe.drop(columns=["Lower", "Upper"]), wald.drop(columns=["Lower", "Upper"]))
    np.testing.assert_array_equal(fe["Lower"], ci.loc[wald["Name"], "Lower"])
    np.testing.assert_array_equal(fe["Upper"], ci.loc[wald["Name"], "Upper"])
    tables = bootstrap_covariance_intervals(mfr_model, alpha=0.05, result=mfr_boot)
    wald_tables = mfr_model.covariance_parameters()[2]
    assert len(tables) == len(wald_tables) == 2
    for ours, theirs in zip(tables, wald_tables):
        assert list(ours.columns) == list(theirs.columns)
        cols = [c for c in theirs.columns if c not in ("Lower", "Upper")]
        pd.testing.assert_frame_equal(ours[cols], theirs[cols])
    row = tables[0].iloc[0]
    assert (row["Lower"], row["Upper"]) == tuple(ci.loc["factory: std((Intercept))", ["Lower", "Upper"]])
    assert tables[1][["Lower", "Upper"]].to_numpy().tolist() == [[1.0, 1.0]]  # Poisson: fixed at 1
    # a result from another statistic or model is refused
    other = parametric_bootstrap(mfr_model, 2, rng=1, statistic=lambda m: m.log_likelihood, progress=False)
    with pytest.raises(InputError, match="not a default-statistic"):
        bootstrap_coefficient_intervals(mfr_model, result=other)


def test_same_replicates_whatever_the_start_and_order(mfr_model, mfr_boot):
    """Replicate i depends on i alone: a run of replicates 10..19 equals rows 10..19 of the full
    run, and merging it with runs of 0..9 and 20..29 gives the full table."""
    part = parametric_bootstrap(mfr_model, 10, rng=np.random.SeedSequence(2024), start=10, progress=False)
    pd.testing.assert_frame_equal(part.replicates, mfr_boot.replicates.iloc[10:20].reset_index(drop=True))
    first = parametric_bootstrap(mfr_model, 10, rng=2024, progress=False)
    last = parametric_bootstrap(mfr_model, 10, rng=first.seed_sequence, start=20, progress=False)
    merged = BootstrapResult.merge(last, part, first)
    pd.testing.assert_frame_equal(merged.replicates, mfr_boot.replicates)
    assert merged.next_replicate == 30
    with pytest.raises(InputError, match="share replicate indexes"):
        first.merge(first)
    with pytest.raises(InputError, match="different seeds"):
        first.merge(parametric_bootstrap(mfr_model, 1, rng=5, start=10, progress=False))


def test_a_generator_or_no_seed_is_recorded_and_reproducible(mfr_model):
    a = parametric_bootstrap(mfr_model, 2, rng=np.random.default_rng(3), progress=False)
    b = parametric_bootstrap(mfr_model, 2, rng=np.random.default_rng(3), progress=False)
    pd.testing.assert_frame_equal(a.replicates, b.replicates)
    c = parametric_bootstrap(mfr_model, 2, progress=False)
    d = parametric_bootstrap(mfr_model, 2, rng=c.seed_sequence, progress=False)
    pd.testing.assert_frame_equal(c.replicates, d.replicates)


def test_user_statistics(mfr_model):
    r = parametric_bootstrap(
        mfr_model, 3, rng=1, progress=False, statistic=lambda m: {"b1": m.fixed_effects()["Estimate"][1]}
    )
    assert r.statistics == ["b1"] and r.estimates["b1"] == mfr_model.fixed_effects()["Estimate"][1]
    series = parametric_bootstrap(
        mfr_model,
        3,
        rng=1,
        progress=False,
        statistic=lambda m: pd.Series({"b1": m.fixed_effects()["Estimate"][1]}),
    )
    pd.testing.assert_frame_equal(series.replicates, r.replicates)
    arr = parametric_bootstrap(mfr_model, 3, rng=1, progress=False, statistic=lambda m: m._result.beta[:2])
    assert arr.statistics == ["stat_0", "stat_1"]
    np.testing.assert_array_equal(arr.replicates["stat_1"], r.replicates["b1"])
    scalar = parametric_bootstrap(mfr_model, 3, rng=1, progress=False, statistic=lambda m: m.log_likelihood)
    assert scalar.statistics == ["statistic"]
    with pytest.raises(InputError, match="reserved"):
        parametric_bootstrap(mfr_model, 3, progress=False, statistic=lambda m: {"seed": 1.0})
    with pytest.raises(InputTypeError, match="real number"):
        parametric_bootstrap(mfr_model, 3, progress=False, statistic=lambda m: {"a": "x"})


def test_the_model_is_not_changed(mfr_model, mfr_boot):
    before = (mfr_model.fixed_effects(), mfr_model.log_likelihood, mfr_model.response())
    parametric_bootstrap(mfr_model, 2, rng=9, progress=False)
    after = (mfr_model.fixed_effects(), mfr_model.log_likelihood, mfr_model.response())
    pd.testing.assert_frame_equal(before[0], after[0])
    assert before[1] == after[1]
    np.testing.assert_array_equal(before[2], after[2])


# ------------------------------------------------------------------------------ failures


def _fail_on_call(monkeypatch, calls_to_fail: set[int]):
    """Make GeneralizedLinearMixedModel.refit raise FitError on the given calls (0-based)."""
    original = GeneralizedLinearMixedModel.refit
    count = {"n": 0}

    def refit(self, ynew):
        k = count["n"]
        count["n"] += 1
        if k in calls_to_fail:
            raise FitError("boom")
        return original(self, ynew)

    monkeypatch.setattr(GeneralizedLinearMixedModel, "refit", refit)


def test_a_failed_refit_is_counted_reported_and_warned(mfr_model, monkeypatch):
    _fail_on_call(monkeypatch, {2})
    with pytest.warns(GLMMWarning, match=r"1 of 6 replicates failed .*replicate 2: FitError: boom"):
        r = parametric_bootstrap(mfr_model, 6, rng=7, progress=False)
    assert r.n_failed == 1 and r.nsim == 6 and len(r.replicates) == 5
    assert r.replicates["replicate"].tolist() == [0, 1, 3, 4, 5]
    f = r.failures.iloc[0]
    assert (f["replicate"], f["seed"], f["spawn_key"], f["error"]) == (
        2,
        replicate_seed(7, (), 2),
        "(2,)",
        "FitError: boom",
    )
    # the summaries use the 5 successful replicates
    np.testing.assert_allclose(r.se(), r.values().std(ddof=1).to_numpy())


def test_a_statistic_that_raises_for_one_replicate_is_a_failure(mfr_model):
    calls = {"n": 0}

    def stat(m):
        calls["n"] += 1
        if calls["n"] == 4:  # call 1 is the fitted model, calls 2.. the replicates 0..
            raise ZeroDivisionError("replicate 2 is odd")
        return {"ll": m.log_likelihood}

    with pytest.warns(GLMMWarning, match="1 of 5 replicates failed"):
        r = parametric_bootstrap(mfr_model, 5, rng=3, statistic=stat, progress=False)
    assert r.failures[["replicate", "error"]].values.tolist() == [
        [2, "ZeroDivisionError: replicate 2 is odd"]
    ]


def test_a_failed_lrt_replicate_is_left_out_of_the_p_value(cbpp_herd, cbpp_obs, monkeypatch):
    _fail_on_call(monkeypatch, {1})  # replicate 0's refit of the big model
    with pytest.warns(GLMMWarning, match="1 of 4 replicates failed"):
        t = simulated_lrt(cbpp_herd, cbpp_obs, 4, rng=1, progress=False)
    assert (t.n_failed, t.n_used, t.failures["replicate"].tolist()) == (1, 3, [0])
    assert t.p_sim == (1 + t.exceed) / 4


def test_non_converged_replicates_are_counted_and_warned(mfr_model, monkeypatch):
    from ppl_glmm.bootstrap import statistics

    real = statistics.run_one

    def run_one(models, task, index):
        row = real(models, task, index)
        return statistics.Row(row.replicate, row.seed, row.values, index != 1, row.singular, row.error)

    monkeypatch.setattr(statistics, "run_one", run_one)
    with pytest.warns(ConvergenceWarning, match="1 of 3 replicates did not converge"):
        r = parametric_bootstrap(mfr_model, 3, rng=1, progress=False)
    assert r.n_not_converged == 1
    assert r.values(converged_only=True).index.tolist() == [0, 2]


# ------------------------------------------------------------------------------ storage


def test_save_load_round_trip(mfr_model, tmp_path, monkeypatch):
    _fail_on_call(monkeypatch, {1})
    with pytest.warns(GLMMWarning):
        r = parametric_bootstrap(mfr_model, 4, rng=2**100 + 5, progress=False)
    path = r.save(tmp_path / "boot.parquet")
    back = BootstrapResult.load(path)
    pd.testing.assert_frame_equal(back.replicates, r.replicates)
    pd.testing.assert_frame_equal(back.failures, r.failures)
    pd.testing.assert_series_equal(back.estimates, r.estimates)
    assert (back.entropy, back.spawn_key, back.kind, back.info) == (2**100 + 5, (), "bootstrap", r.info)
    pd.testing.assert_frame_equal(back.ci(method="basic"), r.ci(method="basic"))
    pd.read_parquet(path)  # an ordinary Parquet file
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(InputError, match=r"not written by BootstrapResult\.save"):
        BootstrapResult.load(tmp_path / "other.parquet")


# ------------------------------------------------------------------------------ simulated LRT


def test_simulated_lrt_of_a_clear_variance_is_small(cbpp_herd, cbpp_obs):
    """cbpp: an observation-level variance on top of (1|herd) (overdispersion), LR = 9.41: no
    replicate under H0 (var(obs) = 0) reaches it."""
    t = simulated_lrt(cbpp_herd, cbpp_obs, 19, rng=11, progress=False)
    assert t.LR == pytest.approx(2 * (cbpp_obs.log_likelihood - cbpp_herd.log_likelihood), abs=0)
    assert t.LR == pytest.approx(9.41425, abs=1e-4)
    assert t.df == 1 and t.p_chisq == pytest.approx(0.0021534, rel=1e-3)
    assert (t.exceed, t.n_used, t.p_sim) == (0, 19, 0.05)
    lr_star = t.replicates.replicates["LR"].to_numpy()
    assert np.all(lr_star < t.LR) and np.all(lr_star > -1e-6)  # LR* >= 0 up to the fits' precision
    np.testing.assert_allclose(
        lr_star, 2 * (t.replicates.replicates["logLik_big"] - t.replicates.replicates["logLik_small"]), rtol=0
    )
    frame = t.to_frame()
    assert frame.columns.tolist() == [
        "LRStat",
        "deltaDF",
        "pValue",
        "pSim",
        "NSim",
        "NUsed",
        "NFailed",
        "NNotConverged",
    ]
    assert frame.iloc[0]["pSim"] == 0.05 and "simulated p = 0.05" in str(t)


def test_simulated_lrt_p_value_formula():
    from ppl_glmm.bootstrap.lrt import simulated_p_value

    assert simulated_p_value(2.0, np.array([1.0, 2.0, 3.0, np.nan, 2.0 - 1e-7])) == (4 / 5, 3, 4)
    assert simulated_p_value(0.0, np.zeros(9)) == (1.0, 9, 9)


@pytest.mark.slow
def test_simulated_lrt_p_values_are_roughly_uniform_under_the_null(mfr_model):
    """20 data sets simulated from the model without temp_dev; on each, a simulated LRT (19
    replicates) of temp_dev. The p-values (on the grid 1/20, ..., 1) should look uniform: mean
    within 0.5 +/- 0.15 (about 2.3 standard errors) and at most 6 of 20 below 0.1 (expected 2)."""
    data = ppl_glmm.datasets.load_mfr()
    kw = {"distribution": "Poisson", "dummy_var_coding": "effects"}
    small = ppl_glmm.fitglme(data, "defects ~ 1 + newprocess + time_dev + supplier + (1|factory)", **kw)
    big = ppl_glmm.fitglme(data, MFR_FORMULA, **kw)
    p = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GLMMWarning)
        for k in range(20):
            y = small.random(rng=1000 + k)
            p.append(simulated_lrt(small.refit(y), big.refit(y), 19, rng=k, progress=False).p_sim)
    p = np.array(p)
    assert abs(p.mean() - 0.5) < 0.15, p
    assert np.sum(p <= 0.1) <= 6, p
    assert 0.2 <= np.mean(p > 0.5) <= 0.8, p


@pytest.mark.filterwarnings("ignore::ppl_glmm.errors.SingularFitWarning")
def test_nesting_checks(mfr_model, cbpp, cbpp_herd, cbpp_obs):
    data = ppl_glmm.datasets.load_mfr()
    kw = {"distribution": "Poisson", "dummy_var_coding": "effects"}
    assert check_nested(cbpp_herd, cbpp_obs) == 1
    with pytest.raises(InputError, match="different rows"):
        check_nested(
            ppl_glmm.fitglme(data, MFR_FORMULA.replace(" + temp_dev", ""), exclude=[0], **kw), mfr_model
        )
    with pytest.raises(InputError, match="different responses"):
        check_nested(
            mfr_model.refit(mfr_model.random(rng=1)),
            ppl_glmm.fitglme(data, MFR_FORMULA + " + (1|supplier)", **kw),
        )
    with pytest.raises(InputError, match="distributions or links"):
        check_nested(
            ppl_glmm.fitglme(data, MFR_FORMULA.replace(" + temp_dev", ""), distribution="normal"), mfr_model
        )
    with pytest.raises(InputError, match="big must have more"):
        check_nested(mfr_model, ppl_glmm.fitglme(data, MFR_FORMULA.replace(" + temp_dev", ""), **kw))
    with pytest.raises(InputError, match="fixed effects are not nested"):
        small = ppl_glmm.fitglme(data, MFR_FORMULA.replace("time_dev", "I(time_dev**2)"), **kw)
        check_nested(small, ppl_glmm.fitglme(data, MFR_FORMULA + " + (1|supplier)", **kw))
    with pytest.raises(InputError, match="not in big's terms"):
        check_nested(_fit_cbpp(cbpp, "incidence ~ period + (0 + size|herd)"), cbpp_obs)
    with pytest.raises(InputError, match="small has a random-effects term on 'obs'"):
        check_nested(
            _fit_cbpp(cbpp, "incidence ~ 1 + (1|obs)"), _fit_cbpp(cbpp, "incidence ~ period + (1|herd)")
        )
    with pytest.raises(InputError, match="pseudo-likelihoods"):
        check_nested(
            _fit_cbpp(cbpp, "incidence ~ period + (1|herd)", fit_method="MPL"),
            _fit_cbpp(cbpp, "incidence ~ period + (1|herd) + (1|obs)", fit_method="MPL"),
        )
    with pytest.raises(InputError, match="different fit methods"):
        check_nested(
            _fit_cbpp(cbpp, "incidence ~ period + (1|herd)", fit_method="ApproximateLaplace"), cbpp_obs
        )
    with pytest.raises(InputTypeError, match="big: expected a fitted"):
        check_nested(cbpp_herd, "model")
    # quadrature with different numbers of nodes: their likelihoods differ by more than the test
    # measures (an added noise covariate gave LR 4.26 at n_agq 1 against 25, 0.008 at 25 against 25)
    with pytest.raises(InputError) as err:
        check_nested(
            _fit_cbpp(cbpp, "incidence ~ period + (1|herd)", fit_method="quadrature", n_agq=1),
            _fit_cbpp(cbpp, "incidence ~ period + size + (1|herd)", fit_method="quadrature", n_agq=25),
        )
    assert str(err.value).startswith("small, big: the models are fitted by quadrature with different numbers")


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"nsim": 0}, InputError, "nsim: must be at least 1"),
        ({"nsim": 2.5}, InputTypeError, "nsim: expected a positive integer"),
        ({"nsim": True}, InputTypeError, "nsim"),
        ({"backend": "spark"}, InputError, "unknown backend 'spark'"),
        ({"n_jobs": 0}, InputError, "n_jobs: must be at least 1"),
        ({"n_jobs": 2, "backend": "serial"}, InputError, "needs backend='loky'"),
        ({"client": object()}, InputError, "client: a Dask client is used only with backend='dask'"),
        ({"client": object(), "backend": "loky"}, InputError, "only with backend='dask'"),
        ({"statistic": 3}, InputTypeError, "statistic: expected a callable"),
        ({"rng": -1}, InputError, "non-negative"),
        ({"rng": "seed"}, InputTypeError, "rng: expected"),
        ({"batch_size": 0}, InputError, "batch_size"),
        ({"start": -1}, InputError, "start"),
        ({"progress": "yes"}, InputTypeError, "progress"),
    ],
)
def test_bad_input_is_refused_before_any_work(mfr_model, monkeypatch, kwargs, error, match):
    def no_refit(self, ynew):
        raise AssertionError("refit called before the input was checked")

    monkeypatch.setattr(GeneralizedLinearMixedModel, "refit", no_refit)
    args = {"nsim": 5, "progress": False, **kwargs}
    with pytest.raises(error, match=match):
        parametric_bootstrap(mfr_model, **args)
    if "statistic" not in args:
        with pytest.raises(error, match=match):
            simulated_lrt(mfr_model, mfr_model, **args)


def test_other_refusals(mfr_model, mfr_boot, monkeypatch):
    with pytest.raises(InputTypeError, match="model: expected a fitted GeneralizedLinearMixedModel"):
        parametric_bootstrap("model", 5)
    with pytest.raises(InputError, match="unknown interval 'bca'"):
        mfr_boot.ci(method="bca")
    with pytest.raises(InputError, match="alpha"):
        mfr_boot.ci(alpha=1.5)
    with pytest.raises(InputError, match="big must have more"):
        simulated_lrt(mfr_model, mfr_model, 5, progress=False)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "distributed" else real(name, *a)
    )
    with pytest.raises(ImportError, match=r"pip install 'ppl_glmm\[parallel\]'"):
        parametric_bootstrap(mfr_model, 5, backend="dask", progress=False)


def test_import_loads_no_parallel_engine():
    code = (
        "import sys, ppl_glmm, ppl_glmm.bootstrap\n"
        "f = ppl_glmm.parametric_bootstrap\n"
        "print(sorted(m for m in ('loky', 'dask', 'distributed', 'tqdm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert ppl_glmm.parametric_bootstrap is parametric_bootstrap
    assert ppl_glmm.simulated_lrt is simulated_lrt and ppl_glmm.BootstrapResult is BootstrapResult


# ------------------------------------------------------------------------------ backends


@pytest.mark.slow
def test_serial_loky_and_dask_give_identical_replicates(mfr_model, cbpp_herd, cbpp_obs):
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("loky")
    serial = parametric_bootstrap(mfr_model, 8, rng=42, progress=False)
    lrt_serial = simulated_lrt(cbpp_herd, cbpp_obs, 4, rng=5, progress=False)
    loky = parametric_bootstrap(mfr_model, 8, rng=42, n_jobs=2, batch_size=3, progress=False)
    pd.testing.assert_frame_equal(loky.replicates, serial.replicates)
    loky1 = parametric_bootstrap(mfr_model, 8, rng=42, n_jobs=2, batch_size=1, progress=False)
    pd.testing.assert_frame_equal(loky1.replicates, serial.replicates)
    lrt_loky = simulated_lrt(cbpp_herd, cbpp_obs, 4, rng=5, n_jobs=2, progress=False)
    pd.testing.assert_frame_equal(lrt_loky.replicates.replicates, lrt_serial.replicates.replicates)
    with (
        distributed.LocalCluster(
            processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        dask = parametric_bootstrap(
            mfr_model, 8, rng=42, backend="dask", client=client, batch_size=5, progress=False
        )
        pd.testing.assert_frame_equal(dask.replicates, serial.replicates)
        lrt_dask = simulated_lrt(cbpp_herd, cbpp_obs, 4, rng=5, backend="dask", client=client, progress=False)
        pd.testing.assert_frame_equal(lrt_dask.replicates.replicates, lrt_serial.replicates.replicates)
        # the default client is used when client is left out
        again = parametric_bootstrap(mfr_model, 3, rng=42, backend="dask", progress=False)
        pd.testing.assert_frame_equal(again.replicates, serial.replicates.iloc[:3])


# ------------------------------------------------------------------------------ quoted benchmark


SPEED_ROWS = {
    "`bootMer`, serial": ("lme4", "bootMer"),
    '`bootMer`, `parallel = "multicore"`, 2 processes': ("lme4", "bootMer_multicore"),
    "`parametric_bootstrap`, serial": ("ppl_glmm", "serial"),
    "`n_jobs=2` (loky), workers running": ("ppl_glmm", "loky_warm"),
    "`n_jobs=2` (loky), workers started by the call": ("ppl_glmm", "loky_cold"),
}


def test_docs_speed_table_is_bootstrap_json():
    """docs/bootstrap.md's speed table is benchmarks/results/bootstrap.json's: seconds, seconds per
    replicate and the ratio to bootMer's serial time per replicate, row by row."""
    import json

    from test_docs import _check, _numbers, _table_row

    r = json.loads((ROOT / "benchmarks" / "results" / "bootstrap.json").read_text())
    boot = r["lme4"]["bootMer"]["per_replicate"]
    page = ROOT / "docs" / "bootstrap.md"
    for label, (side, key) in SPEED_ROWS.items():
        row = r[side][key]
        _check(
            _numbers(_table_row(page, label).replace(",", "")),
            [row["seconds"], row["per_replicate"], row["per_replicate"] / boot],
            f"docs/bootstrap.md row {label!r}",
        )


# ---------------------------------------------------------------- the facade's bootstrap methods


def test_covariance_parameters_and_coef_ci_by_bootstrap_use_the_same_replicates(mfr_model, mfr_boot):
    """method='bootstrap' runs parametric_bootstrap with the given seed: the intervals equal those
    of mfr_boot (same model, nsim and seed), and the random-effects intervals of coef_ci stay
    MATLAB's (SEPred-based)."""
    _, _, tables = mfr_model.covariance_parameters(method="bootstrap", nsim=30, rng=2024)
    ci = mfr_boot.ci(0.05).set_index("Name")
    assert tables[0]["Lower"].iloc[0] == ci.loc["factory: std((Intercept))", "Lower"]
    assert tables[0]["Upper"].iloc[0] == ci.loc["factory: std((Intercept))", "Upper"]
    fe, re = mfr_model.coef_ci(method="bootstrap", nsim=30, rng=2024, ci="basic")
    basic = mfr_boot.ci(0.05, "basic").set_index("Name")
    np.testing.assert_array_equal(fe, basic.loc[mfr_model.coefficient_names, ["Lower", "Upper"]].to_numpy())
    np.testing.assert_array_equal(re, mfr_model.coef_ci()[1])
    # an earlier run is reused as is
    _, _, again = mfr_model.covariance_parameters(method="bootstrap", result=mfr_boot)
    pd.testing.assert_frame_equal(again[0], tables[0])


def test_compare_with_nsim_adds_the_simulated_p_value(cbpp_herd, cbpp_obs):
    """compare(nsim=N) simulates from the smaller model whichever way round it is called (MATLAB's
    swap), and reports simulated_lrt's p-value beside the chi-square one."""
    small, big = cbpp_herd, cbpp_obs
    direct = simulated_lrt(small, big, 9, rng=5, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GLMMWarning)  # the swap warning, failures
        t1 = small.compare(big, nsim=9, rng=5, progress=False)
        t2 = big.compare(small, nsim=9, rng=5, progress=False)
    for t in (t1, t2):
        assert list(t.columns)[-1] == "pValueSim"
        assert math.isnan(t["pValueSim"].iloc[0])
        assert t["pValueSim"].iloc[1] == direct.p_sim
        assert t.attrs["simulated_lrt"].LR == pytest.approx(direct.LR, abs=1e-12)
    assert "pValueSim" not in small.compare(big).columns


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m: m.covariance_parameters(nsim=10), "nsim: applies to method='bootstrap' only"),
        (lambda m: m.covariance_parameters(method="profile", rng=1), "rng: applies to method='bootstrap'"),
        (
            lambda m: m.covariance_parameters(method="bootstrap", nsim=10, seed=1),
            "seed: unknown option; the bootstrap.s options",
        ),
        (lambda m: m.coef_ci(method="bootstraps"), "method: use 'wald'"),
        (lambda m: m.coef_ci(nsim=5), "nsim: applies to method='bootstrap' only"),
        (lambda m: m.compare(m, rng=1), "rng: applies to a simulated test; pass nsim"),
        (lambda m: m.compare(m, nsim=0), "nsim"),
        (lambda m: m.compare(m, nsim=5, backend="spark"), "backend"),
    ],
)
def test_bootstrap_arguments_of_the_methods_are_checked_first(mfr_model, call, match, monkeypatch):
    import ppl_glmm.bootstrap.runner as runner

    monkeypatch.setattr(runner, "run_replicates", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(InputError, match=match):
        call(mfr_model)


@pytest.mark.parametrize("call", ["bootstrap", "coef_ci", "covariance_parameters"])
def test_a_quasi_likelihood_dispersion_is_not_bootstrapped(cbpp, call):
    """MPL with dispersion_flag=True: the replicates were drawn without the dispersion, so the
    bootstrap SEs were too small by sqrt(dispersion) and the sqrt(Dispersion) interval excluded its
    estimate. Refused before any work, naming the model and the way out."""
    m = _fit_cbpp(cbpp, "incidence ~ period + (1|herd)", fit_method="mpl", dispersion_flag=True)
    assert m.dispersion_estimated and m.dispersion > 1
    run = {
        "bootstrap": lambda: ppl_glmm.parametric_bootstrap(m, 5, rng=1, progress=False),
        "coef_ci": lambda: m.coef_ci(method="bootstrap", nsim=5, rng=1),
        "covariance_parameters": lambda: m.covariance_parameters(method="bootstrap", nsim=5, rng=1),
    }[call]
    with pytest.raises(InputError) as err:
        run()
    assert "fit with an estimated dispersion (dispersion_flag=True" in str(err.value)
    assert "Use the Wald intervals, or bootstrap a fit without dispersion_flag" in str(err.value)


@pytest.mark.parametrize("pattern", ["Diagonal", "CompSymm"])
def test_bootstrap_covariance_tables_have_the_patterns_rows(pattern):
    """The replicates recorded every std and corr of the full matrix: a Diagonal 3 x 3 term gave 6
    rows (three correlations fixed at 0) against the Wald table's 3, CompSymm 6 against 2."""
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(12), 10)
    x, x2 = rng.normal(size=120), rng.normal(size=120)
    y = rng.gamma(4, np.exp(1 + 0.3 * x + rng.normal(0, 0.4, 12)[g]) / 4)
    d = pd.DataFrame({"g": g.astype(str), "x": x, "x2": x2, "y": y})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = ppl_glmm.fitglme(
            d, "y ~ x + (1 + x + x2|g)", distribution="gamma", link="log", covariance_pattern=pattern
        )
        wald = m.covariance_parameters()[2][0]
        boot = m.covariance_parameters(method="bootstrap", nsim=4, rng=1, progress=False)[2][0]
    cols = ["Name1", "Name2", "Type"]
    assert boot[cols].values.tolist() == wald[cols].values.tolist()
    assert len(wald) == (3 if pattern == "Diagonal" else 2)
    assert boot.attrs["title"] == wald.attrs["title"] == f"Covariance Type: {pattern}"  # (was dropped)
    np.testing.assert_allclose(boot["Estimate"], wald["Estimate"], rtol=1e-12)


def test_quadrature_replicates_at_the_quadratures_edge_are_flagged_and_counted():
    """An inverse Gaussian quadrature fit (5 nodes) whose refits evaluate points where nodes leave
    the family's range: each refit said so in its own warning, which the bootstrap silences, and
    nothing in the result marked those replicates (59 of 60; two of them converged and not
    singular). The column quadrature_edge marks them, and a warning counts the converged ones."""
    from reference_cases import inverse_gaussian_data

    d = inverse_gaussian_data(5, 12, 8, (0.5, 0.3), 0.4, 4.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = ppl_glmm.fitglme(
            d, "y ~ 1 + x + (1|g)", distribution="inverse_gaussian", fit_method="quadrature", n_agq=5
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        b = parametric_bootstrap(q, 12, rng=3, progress=False)
    reps = b.replicates
    assert reps["quadrature_edge"].dtype == bool and b.n_quadrature_edge == int(reps["quadrature_edge"].sum())
    assert b.n_quadrature_edge >= 6  # (59 of 60 replicates in a longer run)
    # the flag is the refit's own: refitting a flagged replicate's draw gives a fit that says so
    i = int(np.flatnonzero(reps["quadrature_edge"].to_numpy())[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = q.refit(q.random(rng=int(reps["seed"].iloc[i])))
    assert again._result.quadrature_edge and any("outside the family's range" in w for w in again.warnings)
    edge_converged = int((reps["quadrature_edge"] & reps["converged"]).sum())
    messages = [str(w.message) for w in caught]
    assert any(
        f"{edge_converged} of 12 replicates converged with quadrature refits" in m for m in messages
    ) == (edge_converged > 0)


def test_summaries_count_the_values_they_leave_out(mfr_model, tmp_path):
    """A statistic that is +inf in some replicates: ci, se and bias keep the finite values only,
    which gave an interval [1, 1] and an SE of 0 without a word. They now warn with the count."""
    ll = mfr_model.log_likelihood
    b = parametric_bootstrap(
        mfr_model,
        8,
        rng=1,
        progress=False,
        statistic=lambda m: {"t": np.inf if m.log_likelihood > ll else 1.0},
    )
    n_inf = int(np.isinf(b.replicates["t"]).sum())
    assert 0 < n_inf < 8
    for call in (b.ci, b.se, b.bias):
        with pytest.warns(
            GLMMWarning, match=rf"values that are not finite .* 't' in {n_inf} of 8 replicates"
        ):
            call()
    # a file written before the quadrature_edge column existed loads with the column False
    import pyarrow.parquet as pq

    path = b.save(tmp_path / "b.parquet")
    table = pq.read_table(path)
    old = table.drop(["quadrature_edge"]).replace_schema_metadata(table.schema.metadata)
    pq.write_table(old, path)
    loaded = BootstrapResult.load(path)
    assert list(loaded.replicates.columns) == list(b.replicates.columns)
    assert not loaded.replicates["quadrature_edge"].any()


def test_run_arguments_with_a_reused_result_are_refused(mfr_model, mfr_boot):
    """With result=... the replicates are reused: nsim and the run's arguments did nothing, silently."""
    with pytest.raises(InputError, match=r"^nsim: not used with result=\.\.\. .*leave nsim out"):
        mfr_model.coef_ci(method="bootstrap", result=mfr_boot, nsim=50)
    with pytest.raises(InputError, match=r"^rng: not used with result=\.\.\."):
        mfr_model.covariance_parameters(method="bootstrap", result=mfr_boot, rng=3)
    _, lower_upper = mfr_model.coef_ci(method="bootstrap", result=mfr_boot, ci="basic")[:2]  # still fine
    assert np.all(np.isfinite(lower_upper))


def test_compare_with_nsim_names_its_own_argument(cbpp):
    """compare(alt, nsim=...) of two pseudo-likelihood fits: the refusal named simulated_lrt's
    arguments ('small, big: ...'), which the caller never passed."""
    kw = {"fit_method": "mpl"}
    a = _fit_cbpp(cbpp, "incidence ~ 1 + (1|herd)", **kw)
    b = _fit_cbpp(cbpp, "incidence ~ period + (1|herd)", **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GLMMWarning)
        with pytest.raises(InputError, match=r"^nsim: fit_method 'mpl' maximises pseudo-likelihoods"):
            a.compare(b, nsim=5, rng=1, progress=False)


def test_a_simulated_lrt_run_in_parts_merges_into_the_whole(cbpp_herd, cbpp_obs):
    """A run continued with start= could be merged as replicates only; its p-value had to be
    recomputed by hand from an internal function. SimulatedLRT.merge gives the whole run's test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GLMMWarning)
        whole = simulated_lrt(cbpp_herd, cbpp_obs, 7, rng=5, progress=False)
        first = simulated_lrt(cbpp_herd, cbpp_obs, 3, rng=5, progress=False)
        rest = simulated_lrt(cbpp_herd, cbpp_obs, 4, rng=5, progress=False, start=3)
    merged = first.merge(rest)
    assert (merged.p_sim, merged.exceed, merged.n_used, merged.nsim) == (
        whole.p_sim,
        whole.exceed,
        whole.n_used,
        whole.nsim,
    )
    pd.testing.assert_frame_equal(merged.replicates.replicates, whole.replicates.replicates)
    with pytest.raises(InputTypeError, match="merge: expected SimulatedLRT objects, got BootstrapResult"):
        first.merge(rest.replicates)
    other = simulated_lrt(cbpp_herd, cbpp_obs, 2, rng=5, progress=False, start=7)
    with pytest.raises(InputError, match="merge: the tests are of different models"):
        first.merge(replace(other, LR=other.LR + 1.0))


def test_replicates_do_not_depend_on_the_warnings_filter():
    """SciPy's line search computed inf - inf after an infinite trial value; NumPy's RuntimeWarning
    leaked from the refits, and under an 'error' filter (pytest -W error) 8 of 10 replicates of
    this inverse Gaussian quadrature fit became failures instead of singular fits."""
    from reference_cases import inverse_gaussian_data

    d = inverse_gaussian_data(5, 12, 8, (0.5, 0.3), 0.4, 4.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = ppl_glmm.fitglme(
            d, "y ~ 1 + x + (1|g)", distribution="inverse_gaussian", fit_method="quadrature", n_agq=5
        )
    runs = []
    for action in ("ignore", "error"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GLMMWarning)
            warnings.simplefilter(action, RuntimeWarning)
            runs.append(parametric_bootstrap(q, 6, rng=3, progress=False))
    assert runs[1].n_failed == runs[0].n_failed == 0
    pd.testing.assert_frame_equal(runs[1].replicates, runs[0].replicates)


def test_an_interval_from_one_replicate_is_nan_with_a_warning(cbpp_herd):
    """coef_ci(method='bootstrap', nsim=1) gave all-NaN intervals without a word (input audit)."""
    one = parametric_bootstrap(cbpp_herd, 1, rng=3, progress=False)
    with pytest.warns(GLMMWarning, match=r"ci: 6 statistic\(s\) .* fewer than 2 usable replicates"):
        table = one.ci()
    assert table["Lower"].isna().all() and table["Upper"].isna().all()
    assert np.isfinite(table["Estimate"]).all()
