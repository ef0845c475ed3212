"""Running NUTS on the Bayesian model (PyMC's sampler or nutpie), warmed by the ML fit.

``init='ml'`` (PyMC sampler): the chains start at independent draws from the Laplace approximation
``N(x_ML, Sigma)`` in the sampler's unconstrained coordinates, where ``x_ML`` is the ML estimate
with the conditional modes (mapped by :func:`~ppl_glmm.bayes.model.point_from_ml`) and
``Sigma = (-nabla^2 log p(x | y))^-1`` at ``x_ML``: the Laplace covariance of the posterior, by
central differences of the model's exact gradient. Sigma is also the mass matrix's anchor: dense up
to ``DENSE_MAX`` coordinates, every adaptation window's estimate shrunk towards it by
max(``INITIAL_WEIGHT``, d) pseudo-draws (:mod:`.mass_matrix`); its diagonal beyond, adapted by
PyMC. nutpie takes the
ML point as its start and adapts its own mass matrix.

Every run returns an ArviZ DataTree with posterior, sample_stats, observed_data and constant_data;
the caller adds log_likelihood (:mod:`.pointwise`).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import FitError
from .model import BayesGraph, transformed_point

__all__ = ["SamplerSettings", "laplace_covariance", "sample_nuts"]

DENSE_MAX = 200  # a dense mass matrix (mass_matrix.LaplaceAnchoredAdapt) up to this many coordinates
HESSIAN_MAX = 2000  # no finite-difference Hessian beyond this many coordinates (start points only)
# pseudo-draws of trust in the Laplace mass matrix in every adaptation window: max(this, d). With
# PyMC's plain dense adaptation (the Laplace matrix forgotten after the first window) a
# 165-coordinate Poisson (1 + x|g) model at 300 tuning steps gave posterior SDs 35% below the ML
# SEs; its diagonal adaptation gave min bulk ESS 93 of 800 draws there, and 47 on a 45-coordinate
# centred gamma model (the intercept moves with every random effect). Anchored with weight
# max(50, d): min ESS 750-890 and 690-880, SDs within 5% of the SEs (docs/bayes.md)
INITIAL_WEIGHT = 50


@dataclass(frozen=True)
class SamplerSettings:
    draws: int
    tune: int
    chains: int
    cores: int | None
    sampler: str  # 'pymc' or 'nutpie'
    init: str  # 'ml' or 'auto'
    target_accept: float
    seed: int
    progress: bool


def _fd_hessian(fn, x: np.ndarray) -> np.ndarray:
    """Hessian of log p by central differences of its exact gradient (2 d gradient evaluations)."""
    d = x.size
    H = np.empty((d, d))
    for j in range(d):
        h = 1e-5 * max(1.0, abs(x[j]))
        e = np.zeros(d)
        e[j] = h
        H[:, j] = (np.asarray(fn(x + e)[1]) - np.asarray(fn(x - e)[1])) / (2 * h)
    return 0.5 * (H + H.T)


def laplace_covariance(fn, x: np.ndarray) -> np.ndarray:
    """(-H)^-1 at x; eigenvalues of -H are taken in absolute value and floored, so the result is a
    valid covariance even away from the posterior mode."""
    lam, V = np.linalg.eigh(-_fd_hessian(fn, x))
    lam = np.abs(lam)
    lam = np.maximum(lam, 1e-8 * max(float(lam.max()), 1e-300))
    S = (V / lam) @ V.T
    return 0.5 * (S + S.T)


def _backward_function(model):
    """Unconstrained value variables -> constrained free variables (PyMC's transforms, one compile)."""
    from ..backend import COMPILE_LOCK, import_pytensor

    pytensor = import_pytensor()
    outs = model.replace_rvs_by_values(model.free_RVs)
    with COMPILE_LOCK:
        fn = pytensor.function(model.value_vars, outs, mode="FAST_COMPILE", on_unused_input="ignore")
    return lambda point: dict(
        zip([rv.name for rv in model.free_RVs], fn(*[point[v.name] for v in model.value_vars]))
    )


def _ml_warm_step(graph: BayesGraph, ml_point: dict, settings: SamplerSettings):
    """(NUTS step with the Laplace mass matrix, per-chain initial values) for init='ml'."""
    import pymc as pm
    from pymc.blocking import DictToArrayBijection
    from pymc.step_methods.hmc import integration
    from pymc.step_methods.hmc.quadpotential import QuadPotentialDiagAdapt

    from ..backend import COMPILE_LOCK

    model = graph.model
    start_t = transformed_point(model, ml_point)
    with model:
        with COMPILE_LOCK:  # (it compiles the log posterior and its gradient)
            step = pm.NUTS(target_accept=settings.target_accept, initial_point=start_t)
    fn = step._logp_dlogp_func
    fn.set_extra_values({})
    fn._pytensor_function.trust_input = True  # the sampler passes float64 vectors of the right size
    q0 = DictToArrayBijection.map({v.name: start_t[v.name] for v in step.vars})
    x0 = np.asarray(q0.data, dtype=float)
    d = x0.size
    if not np.isfinite(fn(x0)[0]):
        raise FitError("init='ml': the log posterior is not finite at the ML estimates; use init='auto'")
    rng = np.random.default_rng(settings.seed)
    if d > HESSIAN_MAX:
        return step, [ml_point] * settings.chains
    S = laplace_covariance(fn, x0)
    if d <= DENSE_MAX:  # PyMC calls the dense adaptation experimental; sample_nuts silences that warning
        from .mass_matrix import LaplaceAnchoredAdapt

        pot = LaplaceAnchoredAdapt(d, x0, S, max(INITIAL_WEIGHT, d))
    else:
        pot = QuadPotentialDiagAdapt(d, x0, np.diag(S).copy(), INITIAL_WEIGHT)
    step.potential = pot
    step.integrator = integration.CpuLeapfrogIntegrator(pot, fn)
    # independent starting points from the Laplace approximation, kept where log p is finite
    backward = _backward_function(model)
    Lc = np.linalg.cholesky(S + 1e-12 * np.eye(d))
    starts = []
    for _ in range(settings.chains):
        for _attempt in range(20):
            x = x0 + Lc @ rng.standard_normal(d)
            if np.isfinite(fn(x)[0]):
                break
        else:
            x = x0
        point = DictToArrayBijection.rmap(type(q0)(x, q0.point_map_info))
        starts.append(backward(point))
    return step, starts


def sample_nuts(graph: BayesGraph, settings: SamplerSettings, ml_point: dict | None, jitter: bool = True):
    """Sample the posterior; return (DataTree without log_likelihood, seconds of sampling).
    ``jitter=False``: PyMC's ``init='auto'`` starts every chain at the model's initial point
    (``adapt_diag``), not at it plus U(-1, 1) noise (``jitter+adapt_diag``)."""
    import pymc as pm

    from ..backend import import_pytensor

    import_pytensor()  # the sampler's generated source kept in one directory
    model = graph.model
    kwargs = dict(
        draws=settings.draws,
        tune=settings.tune,
        chains=settings.chains,
        cores=settings.cores,
        random_seed=settings.seed,
        progressbar=settings.progress,
        quiet=not settings.progress,
        compute_convergence_checks=False,
        model=model,
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="QuadPotentialFullAdapt is an experimental feature")
        if settings.sampler == "nutpie":
            idata = pm.sample(
                nuts_sampler="nutpie",
                initvals=ml_point if settings.init == "ml" else None,
                nuts_sampler_kwargs={"target_accept": settings.target_accept},
                **kwargs,
            )
        elif settings.init == "ml":
            step, starts = _ml_warm_step(graph, ml_point, settings)
            idata = pm.sample(nuts_sampler="pymc", step=step, initvals=starts, **kwargs)
        else:
            init = "jitter+adapt_diag" if jitter else "adapt_diag"
            idata = pm.sample(nuts_sampler="pymc", target_accept=settings.target_accept, init=init, **kwargs)
    return idata, time.perf_counter() - t0
