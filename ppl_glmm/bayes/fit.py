"""A Bayesian fit of a model's design: validate every setting, resolve the priors, build the Bayesian
PyMC model, warm NUTS with the ML fit, sample, check the diagnostics."""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib.util import find_spec

import numpy as np

from ..errors import GLMMWarning, InputError, InputTypeError, warn
from ..fitting import boundary_terms
from ..names import ModelNames
from .model import build_bayes_model, point_from_ml
from .pointwise import pointwise_log_likelihood
from .priors import resolve_priors
from .results import BayesianGLMM, ModelSpec
from .sampling import SamplerSettings, sample_nuts
from .summary import diagnostics_table, summarize, warn_diagnostics

__all__ = [
    "TUNE_AFTER_ML",
    "TUNE_DEFAULT",
    "check_noncentered",
    "check_settings",
    "choose_centering",
    "fit_bayes",
    "retained_prior_variance",
]

TUNE_DEFAULT = 1000
TUNE_AFTER_ML = 300  # tuning steps after an ML warm start (measurements: docs/bayes.md)
SAMPLERS = ("pymc", "nutpie")
CENTER_BELOW = 0.5  # noncentered='auto': centre a term whose rho_r is below this
SINGULAR_LAMBDA = 1e-4  # a |diag Lambda_r| below this: a singular term, never centred
INITS = ("ml", "auto")


def _int(value, arg: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputTypeError(f"{arg}: expected an integer >= {minimum}, got {value!r}")
    value = int(value)
    if value < minimum:
        raise InputError(f"{arg}: must be >= {minimum}, got {value}")
    return value


def _available_cpus() -> int:
    """CPUs this process may use (PyMC's own default assumes half are hyper-threads)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def _choice(value, allowed: tuple[str, ...], arg: str) -> str:
    if not isinstance(value, str) or value.strip().lower() not in allowed:
        raise InputError(f"{arg}: use one of {', '.join(repr(a) for a in allowed)}, got {value!r}")
    return value.strip().lower()


def check_settings(
    *, draws, tune, chains, cores, sampler, init, target_accept, rng, progress
) -> SamplerSettings:
    """Every sampler argument checked (before any work), with the defaults resolved."""
    from ..simulate import seed_from

    draws = _int(draws, "draws", 1)
    chains = _int(chains, "chains", 1)
    cores = _available_cpus() if cores is None else _int(cores, "cores", 1)
    sampler = _choice(sampler, SAMPLERS, "sampler")
    init = _choice(init, INITS, "init")
    if sampler == "nutpie" and find_spec("nutpie") is None:
        raise InputError(
            "sampler: 'nutpie' is not installed; install the extra with pip install \"ppl_glmm[nutpie]\" "
            "or use sampler='pymc'"
        )
    tune = (TUNE_AFTER_ML if init == "ml" else TUNE_DEFAULT) if tune is None else _int(tune, "tune", 0)
    if isinstance(target_accept, bool) or not isinstance(target_accept, (int, float)):
        raise InputTypeError(f"target_accept: expected a number in (0, 1), got {target_accept!r}")
    if not 0 < float(target_accept) < 1:
        raise InputError(f"target_accept: must be in (0, 1), got {target_accept}")
    if not isinstance(progress, bool):
        raise InputTypeError(f"progress: expected True or False, got {progress!r}")
    try:
        seed = seed_from(rng)
    except ValueError as err:
        raise InputError(str(err)) from err
    return SamplerSettings(draws, tune, chains, cores, sampler, init, float(target_accept), seed, progress)


def check_noncentered(value) -> bool | str:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if not isinstance(value, bool):
        raise InputTypeError(f"noncentered: expected 'auto', True or False, got {value!r}")
    return value


def retained_prior_variance(ml_model) -> list[float]:
    """Per random-effects term r, the share of its prior variance that the data leave in the random
    effects at the ML fit, in the least informed direction:

        rho_r = mean_j lambda_max(Psi_r^-1/2 C_j Psi_r^-1/2),    Psi_r = s^2 Lambda_r Lambda_r',
        C_j = Cov(b_j | y, beta-hat, theta-hat) (lme4's condVar, :meth:`cond_var`)

    rho_r near 1: the data say little about each level (the posterior of b_j is its prior), near 0:
    they pin each level down. inf when the ML fit is singular in that term (Psi_r not invertible)."""
    res, ws = ml_model._result, ml_model._ws
    out = []
    for L, C in zip(ws.layout.lambdas(res.theta), ml_model.cond_var()):
        if np.min(np.abs(np.diag(L))) < SINGULAR_LAMBDA:
            out.append(float("inf"))
            continue
        # Psi^-1/2 C Psi^-1/2 is similar to (s L)^-1 C (s L)^-T: the same eigenvalues
        Li = np.linalg.inv(res.sigma * L)
        out.append(float(np.mean([np.linalg.eigvalsh(Li @ c @ Li.T)[-1] for c in C])))
    return out


def choose_centering(noncentered: bool | str, ml_model, n_terms: int) -> tuple[bool, ...]:
    """Per term: sample b directly (True, centred) or through u (False, non-centred).

    ``'auto'``: centred where the data dominate the prior, rho_r < ``CENTER_BELOW`` (see
    :func:`retained_prior_variance`). For a normal level mean with prior variance tau^2 and data
    variance v, rho = v / (v + tau^2); 1/2 is where the data's precision equals the prior's, the
    classical crossover between the two parametrisations (Papaspiliopoulos, Roberts and Skold 2007).
    Without an ML fit (``init='auto'``) every term is non-centred."""
    if noncentered != "auto":
        return (not noncentered,) * n_terms
    if ml_model is None:
        return (False,) * n_terms
    return tuple(rho < CENTER_BELOW for rho in retained_prior_variance(ml_model))


def warn_no_dispersion(dist_name: str) -> None:
    """The Bayesian model of a binomial or Poisson response has no dispersion parameter: an ML fit
    asked for one (``dispersion_flag=True``, a quasi-likelihood scale) is sampled without it."""
    warn(
        f"dispersion_flag: the Bayesian model of a {dist_name} response has no dispersion "
        f"parameter, so it is sampled without one (the {dist_name} model itself); compare_fits "
        "refuses the pair. For overdispersed counts use distribution='negative_binomial'",
        GLMMWarning,
    )


def fit_bayes(
    ws, ml_model, formula: str, *, priors: Mapping | None, noncentered: bool | str = "auto", **settings
) -> BayesianGLMM:
    """Sample the Bayesian model of workspace ``ws``; ``ml_model`` (the ML fit, or None) warms NUTS."""
    st = check_settings(**settings)
    noncentered = check_noncentered(noncentered)
    if ml_model is not None and ml_model._quasi_dispersion:
        warn_no_dispersion(ws.dist.name)
    from ..covariance_patterns import check_bayes_patterns

    check_bayes_patterns(ws.patterns)
    if st.init == "ml" and ml_model is None:  # pragma: no cover - the public entry points fit ML first
        raise InputError("init: 'ml' needs an ML fit; use init='auto'")
    design = ws.design
    if ml_model is not None:  # a refitted model's response, not the data's (the workspace is shared)
        from dataclasses import replace

        design = replace(design, y=ml_model._result.y)
    names = ModelNames.from_design(design, ws.dist)
    prior_set = resolve_priors(design, ws.dist, ws.link, names, priors)
    centered = choose_centering(noncentered, ml_model, len(names.terms))
    spec = ModelSpec(design.detached(), ws.dist, ws.link, names, prior_set, formula, centered)
    graph = build_bayes_model(design, ws.dist, ws.link, names, prior_set, centered)
    ml_point = None
    if st.init == "ml":
        r = ml_model._result
        # b = sigma Lambda u; a binomial/Poisson PL fit with dispersion_flag has sigma != 1 and a
        # Bayesian model without it, so its SDs start at sigma Lambda (theta scaled), not Lambda
        theta = r.theta if ws.dist.has_dispersion else r.sigma * np.asarray(r.theta, dtype=float)
        boundary = np.zeros(len(names.terms), dtype=bool)
        if r.singular:
            boundary = boundary_terms(ws, r.theta, r.sigma)
        ml_point = point_from_ml(graph, ws.layout, r.beta, theta, r.ancillary, r.u, boundary=boundary)
    # a link that can put a mean outside the family's range (power, reciprocal or identity for
    # positive means): PyMC's jittered start (U(-1, 1) added to every coordinate) put some rows
    # there, and every retry failed
    from ..families import mean_range_check

    idata, seconds = sample_nuts(graph, st, ml_point, jitter=mean_range_check(ws.dist, ws.link) is None)
    from ..pymc_model import observation_function

    idata["log_likelihood"] = pointwise_log_likelihood(
        idata, design, ws.dist, names, observation_function(ws)
    )
    idata.attrs.update(
        {
            "ppl_glmm_fit": "NUTS",
            "formula": formula,
            "distribution": ws.dist.name,
            "link": ws.link.name,
            "sampler": st.sampler,
            "init": st.init,
            "centered_terms": ", ".join(t.label for t, c in zip(names.terms, centered) if c),
        }
    )
    summary = summarize(idata, names.summary_vars())
    table = diagnostics_table(idata, summary)
    msgs = warn_diagnostics(table)
    return BayesianGLMM(spec, idata, st, seconds, msgs, graph, summary=summary, diagnostics=table)
