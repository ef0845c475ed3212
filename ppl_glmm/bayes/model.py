"""The Bayesian PyMC model: the ML model's data and likelihood graph, with priors and a NUTS-friendly
parametrisation of the same random effects.

::

    beta ~ priors (see priors.py)                         fixed effects, dims coef
    sd_L ~ positive prior, dims L_coef                    random-effect SDs (q = 1)
    chol_L ~ LKJCholeskyCov(eta, sd_dist)                 Cholesky factor of Psi_L (q >= 2); sd_L and
                                                          corr_L are its SDs and correlations
    non-centred term:  u_L ~ N(0, I), dims (L_level, L_coef);  b_L = u_L chol_L' (u_L * sd_L, q = 1)
    centred term:      b_L ~ MvNormal(0, chol = chol_L)       (Normal(0, sd_L), q = 1)
    sigma ~ positive prior                                normal, gamma, inverse Gaussian
    nb_theta ~ positive prior                             negative binomial
    eta, y | eta: pymc_model.model_data / linear_predictor / observation, as in the ML model

With ``chol_L = s Lambda_L D`` (s = sigma for a family with a dispersion, else 1; D flips the signs
of Lambda's columns so its diagonal is positive) and ``u_L = u_ML D`` (``b_L = u_ML D chol_L'`` for a
centred term) both models give the same eta, so the same log-likelihood (sigma and nb_theta enter the
likelihood as they are). SDs are positive and the Cholesky diagonal is positive, so the sign symmetry
of the ML theta does not reach the posterior.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..names import ModelNames, safe_name
from ..pymc_model import linear_predictor, model_data, observation
from .priors import PriorSet

__all__ = ["BayesGraph", "build_bayes_model", "point_from_ml", "transformed_point"]

SD_FLOOR = 0.05  # a zero ML SD starts the sampler at this fraction of its prior scale


@dataclass
class BayesGraph:
    model: Any  # pm.Model
    names: ModelNames
    priors: PriorSet
    y: Any
    beta_vars: dict[str, tuple[int, ...]]  # free variable -> coefficient indices it holds
    centered: tuple[bool, ...]  # per term: b_L sampled directly (True) or as u_L (False)


def _beta_var_names(names: ModelNames, priors: PriorSet) -> dict[str, tuple[int, ...]]:
    if not priors.beta_own:
        return {"beta": tuple(range(len(names.coef)))}
    out: dict[str, tuple[int, ...]] = {}
    if priors.beta_shared:
        out["beta_rest"] = priors.beta_shared
    for j in sorted(priors.beta_own):
        base = f"beta_{safe_name(names.coef[j])}"
        name, k = base, 1
        while name in out:
            k += 1
            name = f"{base}_{k}"
        out[name] = (j,)
    return out


def build_bayes_model(
    design, dist, link, names: ModelNames, priors: PriorSet, centered: tuple[bool, ...] | None = None
) -> BayesGraph:
    """The Bayesian PyMC model; ``centered[r]`` samples term r's random effects directly."""
    import pymc as pm
    import pytensor.tensor as pt

    centered = tuple(centered) if centered is not None else (False,) * len(names.terms)

    beta_vars = _beta_var_names(names, priors)
    p = len(names.coef)
    coords = names.coords()
    if priors.beta_own and priors.beta_shared:
        coords["coef_rest"] = [names.coef[j] for j in priors.beta_shared]
    with pm.Model(coords=coords) as model:
        containers = model_data(design, dist, names)
        if not priors.beta_own:
            beta = model.register_rv(priors.beta.dist((p,)), "beta", dims=("coef",))
        else:
            beta = pt.zeros(p)
            for name, idx in beta_vars.items():
                if name == "beta_rest":
                    v = model.register_rv(priors.beta.dist((len(idx),)), name, dims=("coef_rest",))
                    beta = pt.set_subtensor(beta[np.array(idx)], v)
                else:
                    v = model.register_rv(priors.beta_own[idx[0]].dist(()), name)
                    beta = pt.set_subtensor(beta[idx[0]], v)
            beta = pm.Deterministic("beta", beta, dims="coef")
        bs = []
        for tn, sd_prior, eta, cen in zip(names.terms, priors.sd, priors.lkj_eta, centered):
            sd_dist = sd_prior.dist((tn.q,))
            dims = (tn.level_dim, tn.coef_dim)
            if tn.q == 1:
                sd = model.register_rv(sd_dist, tn.sd, dims=(tn.coef_dim,))
                if cen:
                    bs.append(pm.Normal(tn.b, 0.0, sd, dims=dims))
                else:
                    u = pm.Normal(tn.u, 0.0, 1.0, dims=dims)
                    bs.append(pm.Deterministic(tn.b, u * sd, dims=dims))
                continue
            chol, corr, sds = pm.LKJCholeskyCov(
                f"chol_{tn.label}", eta=eta, n=tn.q, sd_dist=sd_dist, compute_corr=True, store_in_trace=False
            )
            pm.Deterministic(tn.sd, sds, dims=tn.coef_dim)
            rows, cols = tn.pair_index()
            pm.Deterministic(tn.corr, corr[rows, cols], dims=tn.pair_dim)
            if cen:
                bs.append(pm.MvNormal(tn.b, mu=np.zeros(tn.q), chol=chol, dims=dims))
            else:
                u = pm.Normal(tn.u, 0.0, 1.0, dims=dims)
                bs.append(pm.Deterministic(tn.b, pt.dot(u, chol.T), dims=dims))
        anc = None
        if names.ancillary is not None:  # sigma or nb_theta: the likelihood's ancillary parameter
            anc = model.register_rv(priors.ancillary.dist(()), names.ancillary)
        eta = linear_predictor(design, containers, beta, bs)
        y, _ = observation(names, dist, link, containers, eta, anc)
    return BayesGraph(model, names, priors, y, beta_vars, centered)


def point_from_ml(
    graph: BayesGraph,
    layout,
    beta: np.ndarray,
    theta: np.ndarray,
    ancillary: float | None,
    u: np.ndarray,
    boundary: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The Bayesian model's free variables (constrained) at an ML parameter point.

    ``ancillary`` is the family's sigma or negative binomial's theta (ignored by families without
    one). ``chol_L = s Lambda_L D`` with s = sigma for a family with a dispersion (else 1) and D =
    sign(diag Lambda_L); ``u_L = u_L D`` (u in MATLAB's b order, level-major within each term). In
    a term on the boundary (``boundary``: the ML fit's singular flag per term; None: every term), a
    diagonal entry below ``SD_FLOOR`` times its prior scale is raised to it, so that the point is
    interior; a term off the boundary keeps its ML SDs however small (raising an inverse Gaussian
    term's SD from 0.0195 to 0.0258 moved every b by 32% and put a linear predictor at eta < 0,
    where the canonical link has no mean: the start failed).
    """
    names, priors = graph.names, graph.priors
    point: dict[str, np.ndarray] = {}
    for name, idx in graph.beta_vars.items():
        vals = np.asarray(beta, dtype=float)[np.array(idx)]
        point[name] = vals if name in ("beta", "beta_rest") else np.asarray(vals[0])
    scale = float(ancillary) if names.has_dispersion else 1.0
    start = 0
    lambdas = layout.lambdas(theta)
    held = np.ones(len(lambdas), dtype=bool) if boundary is None else np.asarray(boundary, dtype=bool)
    for tn, Lam, sd_prior, cen, on_boundary in zip(names.terms, lambdas, priors.sd, graph.centered, held):
        q, n_lev = tn.q, len(tn.levels)
        ur = np.asarray(u[start : start + n_lev * q], dtype=float).reshape(n_lev, q)
        start += n_lev * q
        D = np.where(np.diag(Lam) < 0, -1.0, 1.0)
        L = scale * Lam * D[None, :]
        floor = SD_FLOOR * _prior_scale(sd_prior, q)
        diag = np.diag(L).copy()
        small = (diag < floor) & on_boundary
        L[np.diag_indices(q)] = np.where(small, floor, diag)
        if cen:
            point[tn.b] = (ur * D[None, :]) @ L.T
        else:
            point[tn.u] = ur * D[None, :]
        if q == 1:
            point[tn.sd] = np.array([L[0, 0]])
        else:
            point[f"chol_{tn.label}"] = L[np.tril_indices(q)]
    if names.ancillary is not None:
        point[names.ancillary] = np.asarray(float(ancillary))
    return point


def _prior_scale(prior, q: int) -> np.ndarray:
    if prior.user is None and "sigma" in prior.params:
        return np.broadcast_to(np.asarray(prior.params["sigma"], dtype=float), (q,)).copy()
    return np.ones(q)


def transformed_point(model, point: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The sampler's (unconstrained) coordinates of a constrained point of a ``pm.Model``, by PyMC's
    own transforms."""
    from pymc.initial_point import make_initial_point_fn

    fn = make_initial_point_fn(model=model, overrides=point, jitter_rvs=set(), return_transformed=True)
    return fn(0)
