"""Bad priors and sampler settings are refused before any work, naming the argument and the fix."""

import numpy as np
import pymc as pm
import pytest

import ppl_glmm
from ppl_glmm import InputError, InputTypeError
from ppl_glmm.datasets import load_mfr

MFR = "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)"


@pytest.fixture
def no_sampling(monkeypatch):
    """Any attempt to sample fails the test: refusals must come first."""

    def boom(*args, **kwargs):
        raise AssertionError("sampling started before the input was refused")

    monkeypatch.setattr(pm, "sample", boom)


@pytest.mark.parametrize(
    ("priors", "error", "match"),
    [
        ({"beta": pm.Flat.dist()}, InputError, r"priors\['beta'\]: improper flat priors"),
        ({"sd_factory": pm.HalfFlat.dist()}, InputError, r"priors\['sd_factory'\]: improper flat priors"),
        ({"slope": pm.Normal.dist(0, 1)}, InputError, r"priors: unknown parameter 'slope'.*'sd_factory'"),
        ({"corr_factory": pm.LKJCorr.dist(n=2, eta=2)}, InputError, "one coefficient has no correlation"),
        ({"sigma": pm.HalfNormal.dist(1)}, InputError, "unknown parameter 'sigma'"),  # Poisson: no sigma
        ({"beta": pm.Normal.dist(0, 1, shape=4)}, InputError, r"shape \(4,\) does not fit the 6"),
        ({"newprocess": pm.Normal.dist(0, 1, shape=2)}, InputError, r"shape \(2,\).*give a scalar"),
        ({"sd_factory": pm.Normal.dist(0, 1)}, InputError, "prior on positive values"),
        # negative values the old check (the log-density at -1 only) let through: SD draws < 0
        ({"sd_factory": pm.Uniform.dist(-0.5, 2)}, InputError, "prior on positive values"),
        ({"sd_factory": pm.TruncatedNormal.dist(0, 1, lower=-0.5)}, InputError, "prior on positive values"),
        ({"sd_factory": pm.Uniform.dist(-3, -2)}, InputError, "prior on positive values"),
        (
            {"newprocess": pm.Normal.dist(0, 1), "beta[newprocess]": pm.Normal.dist(0, 5)},
            InputError,
            r"^priors: 'newprocess' and 'beta\[newprocess\]' name the same parameter; give one of them$",
        ),
        ({"beta": 2.5}, InputTypeError, r"expected a PyMC distribution made with .dist\(\)"),
        ({"beta": pm.math.exp(pm.Normal.dist(0, 1))}, InputTypeError, "got an expression"),
        ([("beta", pm.Normal.dist(0, 1))], InputTypeError, "priors: expected a dict"),
        (
            {"beta": pm.Normal.dist(0, 1, shape=6), "newprocess": pm.Normal.dist(0, 1)},
            InputError,
            "cannot be combined with per-coefficient priors",
        ),
    ],
)
def test_bad_priors_are_refused(mfr_model, no_sampling, priors, error, match):
    with pytest.raises(error, match=match):
        mfr_model.fit_bayes(priors=priors, progress=False)


def test_priors_on_positive_values_are_accepted(mfr_model, monkeypatch):
    from ppl_glmm.bayes.priors import _check_positive

    for d in (
        pm.HalfNormal.dist(1),
        pm.Exponential.dist(1),
        pm.Gamma.dist(2, 1),
        pm.InverseGamma.dist(3, 1),
        pm.LogNormal.dist(0, 1),
        pm.HalfCauchy.dist(1),
        pm.Uniform.dist(0, 10),
        pm.TruncatedNormal.dist(0, 1, lower=0),
        pm.HalfNormal.dist(1, shape=(2,)),
    ):
        _check_positive("sd_g", d)


def test_one_distribution_object_may_be_the_prior_of_two_coefficients(mfr_model):
    """The docs say priors are cloned: {'x': d, 'z': d} ended in PyMC's bare 'too many values to
    unpack' (both coefficients' nodes shared d's random generator)."""
    import numpy as np

    from ppl_glmm.bayes.model import build_bayes_model
    from ppl_glmm.bayes.priors import resolve_priors
    from ppl_glmm.names import ModelNames

    ws = mfr_model._ws
    names = ModelNames.from_design(ws.design, ws.dist)
    one = pm.Normal.dist(0, 1)
    priors = resolve_priors(ws.design, ws.dist, ws.link, names, {"newprocess": one, "time_dev": one})
    model = build_bayes_model(ws.design, ws.dist, ws.link, names, priors).model
    assert {"beta_newprocess", "beta_time_dev"} <= set(model.named_vars)
    assert np.isfinite(model.compile_logp()(model.initial_point()))
    assert one.owner is not None and not one.name  # the user's object is untouched


def test_a_named_model_variable_is_refused_as_a_prior(mfr_model, no_sampling):
    with pm.Model():
        named = pm.Normal("b0", 0, 1)
    with pytest.raises(InputError, match="'b0' is a model variable"):
        mfr_model.fit_bayes(priors={"newprocess": named}, progress=False)


def test_correlation_priors_need_lkj_of_the_right_size(fitted, no_sampling):
    m = fitted("binary_slope")
    with pytest.raises(InputError, match=r"LKJCorr has n=3 but the term has 2 coefficients"):
        m.fit_bayes(priors={"corr_subject": pm.LKJCorr.dist(n=3, eta=2)}, progress=False)
    with pytest.raises(InputError, match="correlations take an LKJ prior"):
        m.fit_bayes(priors={"corr_subject": pm.Uniform.dist(-1, 1)}, progress=False)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"draws": 0}, InputError, "draws: must be >= 1"),
        ({"draws": 10.5}, InputTypeError, "draws: expected an integer"),
        ({"chains": True}, InputTypeError, "chains: expected an integer"),
        ({"tune": -1}, InputError, "tune: must be >= 0"),
        ({"cores": 0}, InputError, "cores: must be >= 1"),
        ({"sampler": "stan"}, InputError, "sampler: use one of 'pymc', 'nutpie'"),
        ({"init": "map"}, InputError, "init: use one of 'ml', 'auto'"),
        ({"target_accept": 1.0}, InputError, r"target_accept: must be in \(0, 1\)"),
        ({"target_accept": "high"}, InputTypeError, "target_accept: expected a number"),
        ({"rng": -3}, InputError, "rng: a seed must be a non-negative integer"),
        ({"progress": "yes"}, InputTypeError, "progress: expected True or False"),
        ({"noncentered": "yes"}, InputTypeError, "noncentered: expected 'auto', True or False"),
    ],
)
def test_bad_sampler_settings_are_refused(mfr_model, no_sampling, kwargs, error, match):
    with pytest.raises(error, match=match):
        mfr_model.fit_bayes(**kwargs)


def test_fitglme_bayes_refuses_settings_before_fitting_anything(monkeypatch):
    from ppl_glmm import api

    def boom(*args, **kwargs):
        raise AssertionError("the ML fit started before the input was refused")

    monkeypatch.setattr(api, "fit", boom)
    with pytest.raises(InputError, match="draws"):
        ppl_glmm.fitglme_bayes(load_mfr(), MFR, distribution="poisson", draws=-5)


def test_nutpie_missing_is_reported_with_the_install_command(mfr_model, monkeypatch, no_sampling):
    from ppl_glmm.bayes import fit as bayes_fit

    monkeypatch.setattr(bayes_fit, "find_spec", lambda name: None)
    with pytest.raises(InputError, match=r'pip install "ppl_glmm\[nutpie\]"'):
        mfr_model.fit_bayes(sampler="nutpie")


def test_errors_are_value_and_type_errors_and_share_a_base():
    assert issubclass(InputError, ValueError) and issubclass(InputTypeError, TypeError)
    assert issubclass(InputError, ppl_glmm.GLMMError) and issubclass(InputTypeError, ppl_glmm.GLMMError)
    assert issubclass(ppl_glmm.SamplingWarning, ppl_glmm.GLMMWarning)
    assert issubclass(ppl_glmm.ConvergenceWarning, ppl_glmm.GLMMWarning)


def test_ci_prob_and_to_inference_data_arguments_are_checked(mfr_model):
    with pytest.raises(InputError, match="draws: must be >= 1"):
        mfr_model.to_inference_data(draws=0)
    with pytest.raises(InputTypeError, match="predictive: expected True or False"):
        mfr_model.to_inference_data(draws=10, predictive=1)
    data = np.zeros(3)
    with pytest.raises(InputTypeError, match="ml: expected a GeneralizedLinearMixedModel"):
        ppl_glmm.compare_fits(data, mfr_model)


def test_a_huge_ml_posterior_predictive_is_refused(mfr_model, monkeypatch):
    from ppl_glmm.bayes import ml_idata

    monkeypatch.setattr(ml_idata, "MAX_PREDICTIVE_VALUES", 1000)
    with pytest.raises(
        InputError, match=r"predictive: the posterior_predictive group would hold 2,000 values"
    ):
        mfr_model.to_inference_data(draws=20)
    assert mfr_model.to_inference_data(draws=20, predictive=False)["posterior"]["beta"].shape == (1, 20, 6)
