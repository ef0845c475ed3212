"""A Bayesian fit of a model's design: validate every setting, resolve the priors, build the Bayesian
PyMC model, warm NUTS with the ML fit, sample, check the diagnostics."""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib.util import find_spec

import numpy as np

from ..errors import InputError, InputTypeError
from ..names import ModelNames
from .model import build_bayes_model, point_from_ml
from .pointwise import pointwise_log_likelihood
from .priors import resolve_priors
from .results import BayesianGLMM, ModelSpec
from .sampling import SamplerSettings, sample_nuts
from .summary import diagnostics_table, summarize, warn_diagnostics

__all__ = ["TUNE_AFTER_ML", "TUNE_DEFAULT", "check_noncentered", "check_settings", "fit_bayes"]

TUNE_DEFAULT = 1000
TUNE_AFTER_ML = 300  # tuning steps after an ML warm start (measurements: docs/bayes.md)
SAMPLERS = ("pymc", "nutpie")
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


def check_noncentered(value) -> bool:
    if not isinstance(value, bool):
        raise InputTypeError(f"noncentered: expected True or False, got {value!r}")
    return value


def fit_bayes(
    ws, ml_model, formula: str, *, priors: Mapping | None, noncentered: bool = True, **settings
) -> BayesianGLMM:
    """Sample the Bayesian model of workspace ``ws``; ``ml_model`` (the ML fit, or None) warms NUTS."""
    st = check_settings(**settings)
    check_noncentered(noncentered)
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
    centered = (not noncentered,) * len(names.terms)
    spec = ModelSpec(design.detached(), ws.dist, ws.link, names, prior_set, formula, centered)
    graph = build_bayes_model(design, ws.dist, ws.link, names, prior_set, centered)
    ml_point = None
    if st.init == "ml":
        r = ml_model._result
        ml_point = point_from_ml(graph, ws.layout, r.beta, r.theta, r.ancillary, r.u)
    idata, seconds = sample_nuts(graph, st, ml_point)
    from ..pymc_model import observation_function

    idata["log_likelihood"] = pointwise_log_likelihood(
        idata, design, ws.dist, names, observation_function(ws.graph)
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
    msgs = warn_diagnostics(table, stacklevel=4)
    return BayesianGLMM(spec, idata, st, seconds, msgs, graph, summary=summary, diagnostics=table)
