"""The outer optimiser's start: fits that ended at the wrong point because of where they started.

* A link whose scale has units (identity, reciprocal, power): the random effects' SDs start from
  the data's spread on the link scale, so a fit is equivariant under a change of the response's
  units (the default 1 / rms start left a gamma model on y ~ 1e6 at its start, where the
  likelihood is flat, 21 log-likelihood units below the optimum, reported as converged).
* Negative binomial: theta starts from moments about the level means, and a fit that still ends
  near the Poisson limit (theta > 1e6, where the likelihood hardly depends on it) is fitted
  again from the moment estimate at its conditional means.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from reference_cases import inverse_gaussian_data

import ppl_glmm
from ppl_glmm import fitting
from ppl_glmm.families import LINKS, power_link

_DATA = Path(__file__).parent / "reference" / "data"


def _gamma_data(seed: int = 7, n: int = 300, G: int = 30) -> tuple[pd.DataFrame, np.ndarray]:
    """y ~ Gamma(shape 5, mean 5 + 0.5 x + b_g), b_g ~ N(0, 1): a response in units of ~5."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, G, n)
    x = rng.normal(size=n)
    mu = np.clip(5 + 0.5 * x + rng.normal(0, 1, G)[g], 0.5, None)
    y = rng.gamma(5, mu / 5)
    return pd.DataFrame({"x": x, "g": g.astype(str)}), y


def _sd(m) -> float:
    return float(np.sqrt(m.covariance_parameters()[0][0][0, 0]))


@pytest.mark.parametrize(
    "distribution,link,power,c",
    [
        ("gamma", "identity", 1.0, 1e6),
        ("gamma", "identity", 1.0, 1e-6),
        ("gamma", "reciprocal", -1.0, 1e6),
        ("inverse_gaussian", -2, -2.0, 1e3),
        ("inverse_gaussian", "identity", 1.0, 1e6),
    ],
)
def test_fit_is_equivariant_under_the_responses_units(distribution, link, power, c):
    """y -> c y: logLik - N log c and SD / c^power (the link-scale SD) are unchanged, and the path is
    the same. Before the link-scale start, gamma/identity at c = 1e6 stopped at its start (SD 0.51 c,
    logLik 21.18 lower); measured now: equal to 9 digits, evaluations equal."""
    X, y = _gamma_data()
    base = ppl_glmm.fitglme(X.assign(y=y), "y ~ x + (1|g)", distribution=distribution, link=link)
    scaled = ppl_glmm.fitglme(X.assign(y=c * y), "y ~ x + (1|g)", distribution=distribution, link=link)
    assert base.converged and scaled.converged
    n = len(y)
    # tolerance: the objective's rounding grows with |logLik| (~4766 at c = 1e6 against ~622)
    assert scaled.log_likelihood + n * np.log(c) == pytest.approx(base.log_likelihood, abs=1e-7)
    assert _sd(scaled) / c**power == pytest.approx(_sd(base), rel=1e-5)
    np.testing.assert_allclose(
        scaled.coefficients["Estimate"] / c**power, base.coefficients["Estimate"], rtol=1e-5
    )
    assert scaled.dispersion == pytest.approx(
        base.dispersion * c ** (0 if distribution == "gamma" else -1), rel=1e-5
    )


@pytest.mark.parametrize("method,c", [("approximatelaplace", 1e12), ("laplace", 1e20), ("laplace", 1e-12)])
def test_an_inverse_gaussian_log_link_fit_is_equivariant_under_the_responses_units(method, c):
    """y -> c y on a log link: the intercept moves by log c, logLik by -N log c, the rest stays.
    theta = SD / sigma started at 1/rms, i.e. the SD at sigma / rms (sigma ~ c^-1/2): at c = 1e12
    the approximate Laplace fit ended at SD 0, 51.6 logLik units low, and at c = 1e20 (sigma
    clipped at 1e-8) the Laplace fit at SD 0.048, 48.6 low, both reported as converged. The SDs now
    start at 1/rms on the link scale (when that start is the better one) and sigma at its moment
    estimate clipped to 1e+-100."""
    d = inverse_gaussian_data(3, 30, 10, (0.5, 0.3), 0.5, 5.0)
    y = d["y"].to_numpy()
    fits = [
        ppl_glmm.fitglme(
            d.assign(y=k * y),
            "y ~ x + (1|g)",
            distribution="inverse_gaussian",
            link="log",
            fit_method=method,
        )
        for k in (1.0, c)
    ]
    base, scaled = fits
    assert scaled.converged and not scaled.singular
    assert scaled.log_likelihood + len(y) * np.log(c) == pytest.approx(base.log_likelihood, abs=1e-7)
    shift = np.array([np.log(c), 0.0])
    estimates = scaled.coefficients["Estimate"] - shift
    np.testing.assert_allclose(estimates, base.coefficients["Estimate"], atol=1e-6)
    assert _sd(scaled) == pytest.approx(_sd(base), rel=1e-6)  # the link-scale SD
    assert scaled.dispersion == pytest.approx(base.dispersion / c, rel=1e-5)  # Var = sigma^2 mu^3


def test_the_singular_flag_does_not_depend_on_the_responses_units():
    """Inverse Gaussian, log link: y -> 1e-8 y leaves the link-scale SD (0.446) unchanged and
    multiplies sigma by 1e4, so theta = SD / sigma fell below lme4's 1e-4 and the fit was flagged
    singular, its SD interval NaN. The tolerance is on the SD itself for a gamma or inverse
    Gaussian model with a scale-free link (lme4's GLMM rule: glmer's theta is the SD)."""
    d = inverse_gaussian_data(3, 30, 10, (0.5, 0.3), 0.5, 5.0)
    fits = []
    for c in (1.0, 1e-8):
        scaled = d.assign(y=c * d["y"])
        fits.append(ppl_glmm.fitglme(scaled, "y ~ x + (1|g)", distribution="inverse_gaussian", link="log"))
    tables = [m.covariance_parameters()[2][0] for m in fits]
    assert [m.singular for m in fits] == [False, False]
    assert np.sqrt(fits[1].dispersion) > 1e3  # theta = SD / sigma < 1e-4 at c = 1e-8
    for col in ("Estimate", "Lower", "Upper"):
        assert tables[1][col].iloc[0] == pytest.approx(tables[0][col].iloc[0], rel=1e-5)


@pytest.mark.parametrize("link,power,c", [("identity", 1.0, 1e-6), ("reciprocal", -1.0, 1e6)])
def test_intervals_and_joint_hessian_ses_are_equivariant(link, power, c):
    """Finite-difference steps, the singular flag and the profile's steps are in the link scale's
    units: at eta ~1e-6 (gamma/reciprocal, y ~ 5e6) steps of 1e-5 gave a NaN Wald interval for the
    SD, joint-Hessian SEs 330 times too large, a profile interval 1.4% off, and theta ~2e-6 was
    flagged singular against lme4's absolute 1e-4. Measured now: equal to 7 digits (profile 1e-6)."""
    X, y = _gamma_data()

    def fits(scale):
        d = X.assign(y=scale * y)
        m = ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution="gamma", link=link)
        j = ppl_glmm.fitglme(
            d, "y ~ x + (1|g)", distribution="gamma", link=link, covariance_method="jointhessian"
        )
        return m, j

    (m1, j1), (mc, jc) = fits(1.0), fits(c)
    assert not mc.singular
    for method, rel in (("wald", 1e-6), ("profile", 1e-5)):
        t1, tc = m1.covariance_parameters(method=method)[2][0], mc.covariance_parameters(method=method)[2][0]
        for col in ("Estimate", "Lower", "Upper"):
            assert float(tc[col].iloc[0]) / c**power == pytest.approx(float(t1[col].iloc[0]), rel=rel)
    np.testing.assert_allclose(jc.coefficients["SE"] / c**power, j1.coefficients["SE"], rtol=1e-6)


def test_gamma_identity_on_a_large_scale_leaves_its_start():
    """The case reported: SD ~1e6 (not sigma x 1, the old start) and the logLik of the fit in the
    original units, shifted by -N log c."""
    X, y = _gamma_data()
    m = ppl_glmm.fitglme(X.assign(y=1e6 * y), "y ~ x + (1|g)", distribution="gamma", link="identity")
    assert _sd(m) == pytest.approx(1.02765e6, rel=1e-5)
    assert m.log_likelihood == pytest.approx(-621.552944091 - 300 * np.log(1e6), abs=1e-6)


def test_only_links_with_units_start_from_the_data():
    """Scale-free links keep the default start (their fits are unchanged by this start)."""
    assert all(LINKS[k].scale_free for k in ("log", "logit", "probit", "comploglog", "loglog"))
    assert not any(LINKS[k].scale_free for k in ("identity", "reciprocal"))
    assert not power_link(-2).scale_free and power_link(0).scale_free


def _nb_data(seed: int = 3) -> pd.DataFrame:
    """NB2 counts of ~3000 with theta 5000 and a level SD of 0.5 on the log scale."""
    rng = np.random.default_rng(seed)
    n = 300
    g = rng.integers(0, 30, n)
    x = rng.normal(size=n)
    y = rng.poisson(rng.gamma(5000.0, np.exp(8 + 0.3 * x + rng.normal(0, 0.5, 30)[g]) / 5000.0))
    return pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})


def test_negative_binomial_does_not_stop_at_the_poisson_limit():
    """The reported case: theta ran to 5e13 (PyMC's Poisson branch) and the fit reported
    convergence at the Poisson GLMM's logLik, -1920.537; glmmTMB's nbinom2 finds theta 3309 and
    logLik -1871.648 (the hunt's value, 3 decimals)."""
    d = _nb_data()
    nb = ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution="negative_binomial")
    poisson = ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution="poisson")
    assert nb.converged
    assert nb.nb_theta == pytest.approx(3309.3, rel=1e-3)
    assert nb.log_likelihood == pytest.approx(-1871.648, abs=1e-3)
    assert nb.log_likelihood > poisson.log_likelihood + 48.8  # 48.89 measured


def test_a_fit_ending_at_the_poisson_limit_is_fitted_again(monkeypatch):
    """With the old start (theta from moments about the marginal means: 3.5 here) the first BFGS
    step still lands at theta ~1e13; the restart from the conditional means' moment estimate
    reaches the optimum of the default start."""
    d = _nb_data()
    default = ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution="negative_binomial")
    monkeypatch.setattr(fitting, "_within_level_means", lambda ws, y, eta, mu: mu)
    old_start = ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution="negative_binomial")
    assert "fitted again" in old_start.optimization.message
    assert old_start.log_likelihood == pytest.approx(default.log_likelihood, abs=1e-7)
    assert old_start.nb_theta == pytest.approx(default.nb_theta, rel=1e-4)


def test_a_fresh_fit_that_ends_on_the_boundary_is_probed_off_it(monkeypatch):
    """A fit whose path reaches a zero variance stays there (its gradient is 0 by symmetry) and
    reported convergence: here forced by starting every variance at 0 on data with a large one."""
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(15), 12)
    x = rng.normal(size=g.size)
    d = pd.DataFrame(
        {"g": g.astype(str), "x": x, "y": rng.poisson(np.exp(1 + 0.3 * x + rng.normal(0, 0.7, 15)[g]))}
    )
    ref = ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution="poisson")
    start = fitting._start

    def at_zero(ws, problem, y, settings):
        x0 = start(ws, problem, y, settings)
        k = 0 if problem.inner_beta else problem.p
        x0[k : k + problem.n_cov] = 0.0
        return x0

    monkeypatch.setattr(fitting, "_start", at_zero)
    m = ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution="poisson")
    assert m.converged and not m.singular
    assert m.log_likelihood == pytest.approx(ref.log_likelihood, abs=1e-8)
    assert "fitted again from a fresh start of the term on the boundary" in m.optimization.message


def test_inverse_gaussian_log_link_saddle_at_zero_variance_is_not_reported_converged():
    """Inverse Gaussian data, log link: the fit ended at theta = 0 (logLik -122.17, converged,
    singular), a saddle: the objective rises off zero to -119.34 at R's Laplace optimum (the
    log-density is not concave in eta where mu > 2y). Probed off the boundary it leaves zero; the
    Laplace surface there has non-global conditional modes, which the fit flags as not converged."""
    rng = np.random.default_rng(201)
    g = rng.integers(0, 20, 200)
    x = rng.uniform(-1, 1, 200)
    b = rng.normal(0, 0.8, 20)
    y = rng.wald(np.exp(0.5 + 0.4 * x + b[g]), 0.15)
    with pytest.warns(ppl_glmm.ConvergenceWarning):
        m = ppl_glmm.fitglme(
            pd.DataFrame({"y": y, "x": x, "g": g}),
            "y ~ x + (1|g)",
            distribution="inverse_gaussian",
            link="log",
        )
    assert not m.singular and not m.converged
    assert m.log_likelihood > -119.35


def test_negative_binomial_theta_interval_at_the_poisson_limit_is_quietly_unbounded():
    """Poisson data fitted as NB2: theta runs towards infinity, and its Wald interval exp(+-z se)
    overflowed with a NumPy RuntimeWarning; the interval is [~0, inf], without the warning."""
    import warnings

    rng = np.random.default_rng(11)
    g = rng.integers(0, 25, 500)
    x = rng.uniform(-1, 1, 500)
    y = rng.poisson(np.exp(1.0 + 0.3 * x + rng.normal(0, 0.5, 25)[g]))
    m = ppl_glmm.fitglme(
        pd.DataFrame({"y": y, "x": x, "g": g}), "y ~ x + (1|g)", distribution="negative_binomial"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        table = m.covariance_parameters()[2][1].set_index("Name")
    theta = table.loc[m._ws.dist.ancillary.label]
    assert (
        theta["Estimate"] > 1e3 and theta["Lower"] < theta["Estimate"] and theta["Upper"] > theta["Estimate"]
    )


@pytest.mark.parametrize("c", [1e11, 1e14, 1e100, 1e-12])
def test_a_linear_mixed_model_is_equivariant_at_any_scale(c):
    """The GLM start of a normal model (sigma at 1) on a response of ~3e13 never met the inner stop
    rule: its Newton decrement's rounding (~1e-16 |Q|, |Q| ~ 1e27) stayed above 1e-13 and 1e-6, and
    fitglme raised 'PIRLS did not converge in 60 iterations' (sleepstudy x 1e11 and beyond)."""
    d = pd.read_csv(_DATA / "sleepstudy.csv").astype({"Subject": str})
    formula = "Reaction ~ Days + (Days|Subject)"
    base = ppl_glmm.fitglme(d, formula)
    scaled = ppl_glmm.fitglme(d.assign(Reaction=c * d["Reaction"]), formula)
    assert scaled.converged
    assert scaled.log_likelihood + len(d) * np.log(c) == pytest.approx(base.log_likelihood, abs=1e-8)
    np.testing.assert_allclose(scaled.coefficients["Estimate"] / c, base.coefficients["Estimate"], rtol=1e-9)


def _wald_data(seed: int) -> pd.DataFrame:
    """Inverse Gaussian responses with mean exp(0.3 + 0.5 x + b_g), shape 5 (200 rows, 20 levels)."""
    r = np.random.default_rng(seed)
    g = r.integers(0, 20, 200)
    x = r.normal(size=200)
    b = r.normal(scale=0.5, size=20)
    return pd.DataFrame(
        {"x": x, "g": [f"G{v:02d}" for v in g], "y": r.wald(np.exp(0.3 + 0.5 * x + b[g]), 5.0)}
    )


@pytest.mark.parametrize(
    "method,seed", [("laplace", 3), ("laplace", 2), ("approximatelaplace", 0), ("approximatelaplace", 2)]
)
def test_inverse_gaussian_canonical_link_is_equivariant(method, seed):
    """Found by the invariance hunt. Laplace, y x 0.1 (eta = mu^-2 x 100): the link scale's start
    lost to the default one, 100 times too narrow, and the fit went to a zero variance 6.76 logLik
    units below the optimum, reported converged; a built-in link now starts at the data's scale.
    ApproximateLaplace raised FitError at c = 1 (its inner step fell back to beta = 0, outside the
    power link's domain) and now falls back to the GLM's beta."""
    d = _wald_data(seed)
    fits = {
        c: ppl_glmm.fitglme(
            d.assign(y=c * d.y), "y ~ x + (1|g)", distribution="inverse_gaussian", fit_method=method
        )
        for c in (1.0, 0.1, 1e-3, 1e3)
    }
    base = fits[1.0].log_likelihood
    for c, m in fits.items():
        assert m.converged
        assert m.log_likelihood + len(d) * np.log(c) == pytest.approx(base, abs=1e-6), c
        np.testing.assert_allclose(
            m.coefficients["Estimate"] * c**2, fits[1.0].coefficients["Estimate"], rtol=1e-5
        )


def test_a_custom_link_whose_scale_start_lost_is_refitted_from_it_at_the_boundary():
    """The inverse Gaussian's canonical link written as a custom link, y x 0.1: the data's scale must
    beat the default start for a custom link, and loses here; the fit from the default start ends at
    a zero variance (-216.38 in the objective) and is fitted again from the scale start (-223.14),
    the same fit as at the data's own units."""
    import pytensor.tensor as pt

    d = _wald_data(3)
    link = ppl_glmm.custom_link(lambda e: 1.0 / pt.sqrt(e), lambda m: m**-2.0, "invsq")
    fits = [
        ppl_glmm.fitglme(d.assign(y=c * d.y), "y ~ x + (1|g)", distribution="inverse_gaussian", link=link)
        for c in (1.0, 0.1)
    ]
    assert fits[1].converged
    assert fits[1].log_likelihood + len(d) * np.log(0.1) == pytest.approx(fits[0].log_likelihood, abs=1e-6)
    sd = [m.covariance_parameters()[2][0]["Estimate"].iloc[0] for m in fits]
    assert sd[1] * 0.1**2 == pytest.approx(sd[0], rel=1e-4)


def test_where_both_starts_are_infinite_the_data_scale_is_kept_and_shrunk():
    """Regression hunt: a gamma quadrature fit on the power(-2) link whose nodes leave the range at
    both starts took the unit-free default start, which stayed infinite at y x 1e3 after its four
    shrinks, and returned logLik -inf; the data's scale, shrunk, gives the same fit in any units."""
    r = np.random.default_rng(983160)
    n, G = 169, 12
    g = r.integers(0, G, n)
    r.integers(0, 6, n)
    x = r.uniform(0, 1, n)
    eta = np.maximum(0.25 + 0.025 * x + r.normal(0, 0.1, G)[g], 0.05)
    d = pd.DataFrame({"y": r.gamma(4.0, eta**-0.5 / 4.0), "x": x, "g": [f"g{i}" for i in g]})
    kw = {"distribution": "gamma", "link": -2, "fit_method": "quadrature", "n_agq": 5}
    with pytest.warns(ppl_glmm.ConvergenceWarning):
        fits = [ppl_glmm.fitglme(d.assign(y=c * d.y), "y ~ x + (1|g)", **kw) for c in (1.0, 1e3)]
    assert np.isfinite(fits[1].log_likelihood)
    assert fits[1].log_likelihood + n * np.log(1e3) == pytest.approx(fits[0].log_likelihood, abs=1e-6)
