"""The ML fit as an ArviZ DataTree, so ArviZ treats it like a posterior.

posterior: ``draws`` draws (one chain) from the asymptotic normal distribution of the ML estimates
under the Hessian of the negative Laplace log-likelihood, taken on the natural scale of the Wald
intervals (beta, log SDs, ``log((1 + rho)/(1 - rho))``, log sigma or log theta) and mapped back, so
SDs, sigma and theta stay positive and correlations inside (-1, 1)::

    (beta, z) ~ N((beta_hat, z_hat), H^-1),   sd = exp(z_sd),  rho = tanh(z_rho / 2),
    sigma (or negative binomial's nb_theta) = exp(z_last)

For ApproximateLaplace beta is not an outer parameter: beta ~ N(beta_hat, coefficient_covariance),
independent of z. At a boundary (singular) fit the Hessian in log SD does not exist: the parameters
of each term on the boundary are held at their estimates, and the others drawn from the inverse
Hessian of the free parameters (``natural_covariance``), with a warning.

posterior_predictive: one response per draw from ``random()`` (new random effects, then y | b, at
the ML estimates) on the observed variable's scale (counts for binomial, Poisson and negative
binomial); observed_data: the response.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from ..display import fit_method_label
from ..errors import SingularFitWarning, quiet, warn
from ..inference import beta_is_inner, held_terms, natural_estimates
from ..names import ModelNames
from ..simulate import seed_from

__all__ = ["MAX_PREDICTIVE_VALUES", "ml_draws", "ml_inference_data"]

MAX_PREDICTIVE_VALUES = 50_000_000  # 400 MB of simulated responses


def ml_draws(model, draws: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draws (draws, ...) of beta and the covariance parameters from the ML asymptotic normal."""
    ws, res = model._ws, model._result
    layout = ws.layout
    names = ModelNames.from_design(ws.design, ws.dist)
    p = len(res.beta)
    inner_beta = beta_is_inner(model._fit)
    z0 = natural_estimates(model._fit)
    cov = model._natural_cov
    beta_cov = model.coefficient_covariance
    if cov is None:
        warn(
            "to_inference_data: the Hessian of the covariance parameters is singular, so they have no "
            "asymptotic normal distribution; they are held at their estimates",
            SingularFitWarning,
        )
        beta = rng.multivariate_normal(res.beta, beta_cov, size=draws, method="eigh")
        z = np.tile(z0[0 if inner_beta else p :], (draws, 1))
    else:
        if np.isnan(cov).any():
            groups = ", ".join(t.group for t, held in zip(ws.design.terms, held_terms(model._fit)) if held)
            warn(
                f"to_inference_data: the random-effects term(s) of {groups} are on the boundary (a "
                "variance at zero or a correlation at its bound), so their covariance parameters have "
                "no asymptotic normal distribution; they are held at their estimates",
                SingularFitWarning,
            )
        if inner_beta:
            beta = rng.multivariate_normal(res.beta, beta_cov, size=draws, method="eigh")
            z = _normal_draws(z0, cov, draws, rng)
        else:
            zz = _normal_draws(z0, cov, draws, rng)
            beta, z = zz[:, :p], zz[:, p:]
    out = {"beta": beta}
    for tn, sl in zip(names.terms, layout.slices()):
        canon = np.array([layout.from_natural(row[sl], tn.q) for row in z])
        diag, pairs = [], []
        k = 0
        for j in range(tn.q):
            for i in range(j, tn.q):
                (diag if i == j else pairs).append(k)
                k += 1
        out[tn.sd] = canon[:, diag]
        if tn.q > 1:
            out[tn.corr] = canon[:, pairs]
    if names.ancillary is not None:  # log sigma or log theta is the last natural parameter
        out[names.ancillary] = np.exp(z[:, -1]) if cov is not None else np.full(draws, res.ancillary)
    return out


def _normal_draws(z0: np.ndarray, cov: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Draws of N(z0, cov); the parameters a singular fit holds at their estimates (NaN rows of
    ``cov``: :func:`~ppl_glmm.inference.natural_covariance`) stay at them."""
    free = ~np.isnan(np.diag(cov))
    z = np.tile(z0, (draws, 1))
    z[:, free] = rng.multivariate_normal(z0[free], cov[np.ix_(free, free)], size=draws, method="eigh")
    return z


def ml_inference_data(model, draws: int = 2000, rng=None, predictive: bool = True, chains: int = 1):
    """DataTree of an ML fit: posterior (asymptotic normal), posterior_predictive, observed_data.
    ``chains`` x ``draws`` independent draws (several 'chains' only to match a posterior's layout)."""
    import arviz as az

    from .fit import _int

    draws = _int(draws, "draws", 1)
    chains = _int(chains, "chains", 1)
    if not isinstance(predictive, bool):
        from ..errors import InputTypeError

        raise InputTypeError(f"predictive: expected True or False, got {predictive!r}")
    from ..covariance_patterns import check_bayes_patterns

    check_bayes_patterns(model._ws.patterns)  # draws use the full covariance's natural parameters
    gen = np.random.default_rng(seed_from(rng))
    ws = model._ws
    d = ws.design
    if predictive and chains * draws * d.n > MAX_PREDICTIVE_VALUES:
        from ..errors import InputError

        size = chains * draws * d.n
        raise InputError(
            f"predictive: the posterior_predictive group would hold {size:,} values "
            f"({size * 8 / 1e9:.1f} GB); pass predictive=False, or fewer draws"
        )
    names = ModelNames.from_design(d, ws.dist)
    total = chains * draws
    post = {k: v.reshape(chains, draws, *v.shape[1:]) for k, v in ml_draws(model, total, gen).items()}
    dims = {"beta": ["coef"], names.response: ["obs"]}
    for tn in names.terms:
        dims[tn.sd] = [tn.coef_dim]
        if tn.q > 1:
            dims[tn.corr] = [tn.pair_dim]
    coords = names.coords()
    groups = {
        "posterior": post,
        "observed_data": {
            names.response: ws.dist.observed_value(model._result.y, d.weights, d.binomial_size)
        },
    }
    if predictive:
        used = d.subset
        sims = np.empty((total, d.n))
        for k in range(total):
            with quiet() if k else nullcontext():  # random's warnings once, not once per draw
                y = model.random(rng=gen)[used]
            sims[k] = ws.dist.observed_value(y, d.weights, d.binomial_size)
        if ws.dist.counts:
            sims = sims.astype(np.int64)
        groups["posterior_predictive"] = {names.response: sims.reshape(chains, draws, d.n)}
    dt = az.from_dict(groups, dims=dims, coords=coords)
    dt.attrs.update(
        {
            "ppl_glmm_fit": f"ML ({fit_method_label(model)})",
            "formula": model.formula,
            "distribution": ws.dist.name,
            "link": ws.link.name,
        }
    )
    return dt
