"""Pointwise log-likelihood of posterior draws (ArviZ's ``log_likelihood`` group, for ``az.loo``).

For draw s, ``log p(y_i | eta_i^(s), phi^(s))`` with

    eta^(s) = X beta^(s) + offset + Z b^(s)

evaluated by the engine's compiled observation function -- the derivative function compiled from
the PyMC model's own observation graph (``pymc_model.observation_function``), which the ML fit has
already compiled or loaded. It is elementwise in (eta, y, weights, trials, phi), so all draws of a
chunk go through one call on the tiled data. ``phi`` is log sigma (normal, gamma, inverse Gaussian)
or log nb_theta (negative binomial). The numbers equal ``pm.compute_log_likelihood`` on the
Bayesian model (the same observation graph; tested to 1e-11), which compiles a new function of the
whole model for this (about 1 s of a small fit) and calls it once per draw.
"""

from __future__ import annotations

import numpy as np

from ..names import OBS_DIM

__all__ = ["pointwise_log_likelihood"]

CHUNK_VALUES = 2_000_000  # draws x rows per call of the observation function (memory bound)


def _eta(design, names, post: dict[str, np.ndarray], X: np.ndarray, Z) -> np.ndarray:
    """eta for S draws, shape (S, n), from beta (S, p) and each term's b (S, levels, q) stacked
    level-major within each term as the ML fit's b (the columns of ``design.Z()``)."""
    eta = post["beta"] @ X.T
    if np.any(design.offset != 0):
        eta = eta + design.offset
    if names.terms:
        b = np.concatenate([post[tn.b].reshape(len(post["beta"]), -1) for tn in names.terms], axis=1)
        eta = eta + (Z @ b.T).T
    return eta


def pointwise_log_likelihood(idata, design, dist, names, obs_fn):
    """The ``log_likelihood`` Dataset of ``idata``'s posterior (dims chain, draw, obs).

    ``design`` carries the response the model was sampled with; ``obs_fn`` is the engine's
    :class:`~ppl_glmm.pymc_model.ObservationFunction` of the same distribution and link."""
    import xarray as xr

    post = idata["posterior"]
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    n = design.n
    var_names = ["beta", *(tn.b for tn in names.terms)]
    if names.ancillary is not None:
        var_names.append(names.ancillary)
    flat = {
        v: np.asarray(post[v].values, dtype=float).reshape(chains * draws, *post[v].shape[2:])
        for v in var_names
    }
    k = dist.observed_value(design.y, design.weights, design.binomial_size)
    trials = np.rint(design.weights * design.binomial_size) if dist.name == "binomial" else np.ones(n)
    y_dtype = np.dtype(obs_fn.y_dtype)
    X = np.asarray(design.X, dtype=float)
    Z = design.Z()
    total = chains * draws
    out = np.empty((total, n))
    step = max(1, CHUNK_VALUES // max(n, 1))
    for s0 in range(0, total, step):
        s1 = min(total, s0 + step)
        chunk = {v: a[s0:s1] for v, a in flat.items()}
        m = s1 - s0
        eta = _eta(design, names, chunk, X, Z).ravel()
        if names.ancillary is not None:
            phi = np.repeat(np.log(chunk[names.ancillary].reshape(m)), n)
        else:
            phi = np.zeros(m * n)
        values = obs_fn(
            eta,
            np.tile(k, m).astype(y_dtype, copy=False),
            np.tile(np.asarray(design.weights, dtype=float), m),
            np.tile(trials, m).astype(np.dtype(obs_fn.trials_dtype), copy=False),
            phi,
        )[0]
        out[s0:s1] = np.asarray(values).reshape(m, n)
    coords = {"chain": post["chain"].values, "draw": post["draw"].values}
    obs_coord = (
        idata["observed_data"][names.response].coords.get(OBS_DIM) if "observed_data" in idata else None
    )
    if obs_coord is not None:
        coords[OBS_DIM] = obs_coord.values
    da = xr.DataArray(out.reshape(chains, draws, n), dims=("chain", "draw", OBS_DIM), coords=coords)
    return xr.Dataset({names.response: da})
