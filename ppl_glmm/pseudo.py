"""Pseudo-likelihood fits (MATLAB 'MPL' and 'REMPL'): linear mixed models of pseudo-data, iterated.

Algorithm (MATLAB ``fitglme``; docs/algorithms.md, "Pseudo-likelihood"):

1. ``mu = mu_start`` (the user's, or y + 1/4 for Poisson, (n y + 1/2)/(n + 1) for binomial, y
   otherwise), clipped to the family's range; ``eta = g(mu)``.
2. Repeat: from the current eta, the working response and weights

       z = eta - offset + l'(eta) / W_F,     W_F = w mu_eta(eta)^2 / (sigma^2 v(mu)),
       W = sigma^2 W_F = w mu_eta(eta)^2 / v(mu)

   (l' = d log p(y | eta) / d eta from the PyMC model's compiled observation function, v the
   variance function, mu_eta = d mu / d eta, w the prior weight times the binomial size). Fit the
   linear mixed model ``z = X beta + Z b + e``, ``e ~ N(0, sigma^2 W^-1)``, ``b ~ N(0, sigma^2 D)``
   -- by ML (MPL) or REML (REMPL), sigma fixed at 1 for binomial/Poisson without
   ``dispersion_flag`` -- warm-started from the previous iteration; ``eta_new = X beta + Z b +
   offset``. Stop when ``max|eta_new - eta| <= max(tol max|eta|, tol)``.
3. Report the final LME: beta, b, theta, sigma, its conditional Cov(beta) (with W), and its
   maximised (restricted) log-likelihood. The normal log-density with variance sigma^2 / W
   includes 1/2 sum log W, MATLAB's Jacobian term, so this is MATLAB's ``loglikHatPseudoData``.

Why ``l'/W_F`` is MATLAB's ``g'(mu)(y - mu)``: for an exponential-dispersion family the score in
mu is ``d log p / d mu = w (y - mu) / (sigma^2 v(mu))``, so ``l'(eta) = w (y - mu) mu_eta /
(sigma^2 v(mu))`` and ``l' / W_F = (y - mu) / mu_eta = g'(mu)(y - mu)``. Where mu is clipped,
both are evaluated at ``g(mu_clipped)``, as MATLAB evaluates g' at the clipped mu.

The pseudo-data LME is a normal-identity model built as a PyMC model (the workspace's design with
``Normal(mu, sigma / sqrt(W))``), whose compiled observation function is cached per process: PL
iterations and refits compile nothing. Its ML objective is the ApproximateLaplace one (beta in the
inner step), exact for a linear mixed model; REML is :class:`~ppl_glmm.engine.reml.REMLProblem`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from . import monitor
from .backend import engine_mode
from .blas import THREADS_ABOVE_DENSE, blas_limit
from .engine.laplace import InnerMode, LaplaceProblem, PirlsFailure, _invalid_parameter_errors
from .engine.optimize import (
    OptimizationSummary,
    canonical_theta,
    hessian,
    initial_inverse_hessian,
    minimize,
)
from .engine.reml import LinearInner, REMLProblem
from .errors import FitError
from .families import DISTRIBUTIONS, LINKS, mean_range_check
from .fit_methods import FitSettings
from .fitting import (
    Workspace,
    _inverse_or_none,
    conditional_cov_beta,
    make_result,
    off_the_boundary,
    restart_off_the_boundary,
)
from .pymc_model import LazyModel, ObservationFunction, build_pymc_model, observation_function
from .results import FitResult

__all__ = ["PLState", "fit_pseudo", "lme_problem", "pl_iterations", "working_response"]

_NORMAL, _IDENTITY = DISTRIBUTIONS["normal"], LINKS["identity"]
_POLISH_TOL = 1e-9  # Newton decrement of the pseudo-data LME after polishing
_POLISH_STEPS = 6


def _lme_observation(ws: Workspace) -> ObservationFunction:
    """The normal/identity observation function of the pseudo-data LME's PyMC model (the
    workspace's design with a normal response); the model is built only if that function is
    neither compiled in this process nor stored on disk."""

    def build():
        design = replace(ws.design, y=np.zeros(ws.design.n), binomial_size=np.ones(ws.design.n))
        return build_pymc_model(design, _NORMAL, _IDENTITY, ws.layout)

    source = ws.__dict__.get("_lme_model")
    if source is None:
        with ws.lock:
            source = ws.__dict__.setdefault("_lme_model", LazyModel(_NORMAL, _IDENTITY, build))
    return observation_function(source, engine_mode(ws.design.n))


class _MLProblem(LinearInner, LaplaceProblem):
    """ML of the pseudo-data LME: ApproximateLaplace's objective, exact for a linear model."""

    def __init__(self, X, re, obs):
        super().__init__(X, re, obs, inner_beta=True)


class _REMLProblem(LinearInner, REMLProblem):
    """REML of the pseudo-data LME."""


def _lme_template(ws: Workspace, restricted: bool, sigma_estimated: bool) -> LaplaceProblem:
    def build() -> LaplaceProblem:
        obs = _lme_observation(ws)
        problem = (_REMLProblem if restricted else _MLProblem)(ws.design.X, ws.re, obs)
        problem.has_phi = problem.phi_scales_re = sigma_estimated  # sigma fixed at 1: no phi in x
        problem.set_pattern(ws.patterns.engine_map)
        return problem

    return ws.template(("pseudo-lme", restricted, sigma_estimated), build)


def _set_lme_data(problem: LaplaceProblem, z: np.ndarray, W: np.ndarray) -> None:
    """Load pseudo-data (offset 0: z excludes it), keeping the warm start of u."""
    u = problem.u_start
    problem.set_data(z, W, np.ones(z.size), np.zeros(z.size))
    problem.u_start = u


def lme_problem(ws: Workspace, result: FitResult) -> LaplaceProblem:
    """The final pseudo-data LME of a pseudo-likelihood fit, loaded with its (z, W) (for inference)."""
    from .fit_methods import METHODS

    restricted = METHODS[result.fit_method].restricted
    problem = _lme_template(ws, restricted, result.ancillary is not None).clone()
    _set_lme_data(problem, *result.working)
    problem.u_start = problem.re.to_internal(result.u)
    problem.beta_start = result.beta.copy()
    return problem


def _effective_weights(ws: Workspace, family: LaplaceProblem) -> np.ndarray:
    """MATLAB's w: the prior weight, times the binomial size for binomial (the trials, w n)."""
    return family.trials.astype(float) if ws.dist.name == "binomial" else family.w


def working_response(
    ws: Workspace, family: LaplaceProblem, eta: np.ndarray, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """(z, W): ``z = eta - offset + l'(eta_c) / W_F(eta_c)``, ``W = w mu_eta(eta_c)^2 / v(mu_c)``.

    ``mu_c = clip(g^-1(eta))``, ``eta_c = g(mu_c)`` (= eta unless clipped); ``W_F = W / sigma^2``
    with sigma the family's own (1 for families without a dispersion); ``l'`` from the family's
    compiled observation function (``family.obs``) at ``phi = log sigma``."""
    dist, link = ws.dist, ws.link
    with np.errstate(over="ignore", under="ignore"):
        mu_raw = link.inverse_np(eta)
        mu = dist.clip_mean(mu_raw)
        eta_c = np.where(mu == mu_raw, eta, link.link_np(mu))
        mu_eta = link.mu_eta(eta_c)
    sigma_f = sigma if dist.has_dispersion else 1.0
    phi = np.full(eta.size, np.log(sigma_f))
    d1 = family.obs(eta_c, family.y, family.w, family.trials, phi, family.terms)[1]
    W = _effective_weights(ws, family) * mu_eta**2 / dist.variance(mu)
    z = eta - family.offset + d1 * sigma_f**2 / W
    return z, W


@dataclass
class PLState:
    """The outcome of pseudo-likelihood iterations: the final LME and how the loop ended."""

    lme: LaplaceProblem
    summary: OptimizationSummary  # the final LME fit
    mode: InnerMode
    z: np.ndarray
    W: np.ndarray
    eta: np.ndarray  # X beta + Z b + offset from the final LME
    iterations: int
    converged: bool  # max|eta_new - eta_old| <= max(tol max|eta_old|, tol)
    delta: float  # the last max|eta_new - eta_old|
    evaluations: int
    lme_hess_inv: np.ndarray | None


# a last max|delta eta| above this times (1 + max|start eta|), or not finite: the iterations diverged
DIVERGED_DELTA = 1e6


def means_outside_range(ws: Workspace, eta: np.ndarray) -> int:
    """The number of rows whose mean g^-1(eta) lies outside the family's range ``[lo, hi]``
    (:class:`~ppl_glmm.families.MeanRange`): where the link's domain was left, not a mean that
    rounds to the range's edge; 0 for a link that cannot leave it."""
    check = mean_range_check(ws.dist, ws.link)
    return 0 if check is None else int(np.count_nonzero(check.outside(np.asarray(eta, dtype=float))))


def start_eta(ws: Workspace, y: np.ndarray, settings: FitSettings) -> np.ndarray:
    """eta = g(mu_start) with MATLAB's mu_start (or the user's, checked to lie in the link's
    domain), clipped to the family's range. Where MATLAB's mu_start = y is outside the link's
    domain (a normal response y <= 0 under a log link: g(y) is NaN, and the iterations could not
    start), those rows start at g(mean y) (or g(mean |y|), or g(1), the first that is defined)."""
    d = ws.design
    mu = settings.mu_start if settings.mu_start is not None else ws.dist.mu_start(y, d.binomial_size)
    mu = ws.dist.clip_mean(np.asarray(mu, dtype=float))
    with np.errstate(all="ignore"):
        eta = ws.link.link_np(mu)
        bad = ~np.isfinite(eta)
        if bad.any():
            for value in (np.mean(mu), np.mean(np.abs(mu)), 1.0):
                fill = float(ws.link.link_np(np.array(ws.dist.clip_mean(np.array(value)))))
                if np.isfinite(fill):
                    eta = np.where(bad, fill, eta)
                    break
    return eta


def _lme_start(ws: Workspace, lme: LaplaceProblem, z: np.ndarray, W: np.ndarray) -> np.ndarray:
    """theta = 1 / rms of each random-effects column; log sigma from the weighted LS residuals."""
    parts = [ws.start_cov()]
    if lme.has_phi:
        sw = np.sqrt(W)
        beta = np.linalg.lstsq(ws.design.X * sw[:, None], z * sw, rcond=None)[0]
        r = (z - ws.design.X @ beta) * sw
        parts.append([np.log(max(float(np.sqrt(np.mean(r * r))), 1e-8))])
        lme.beta_start = beta
    return np.concatenate(parts)


def _polish(
    lme: LaplaceProblem, summary: OptimizationSummary, hess_inv: np.ndarray | None
) -> tuple[OptimizationSummary, InnerMode, int]:
    """Newton steps ``x <- x - P g`` with P the LME's inverse Hessian, kept while the decrement
    ``sqrt(g'Pg)`` shrinks, down to ``_POLISH_TOL`` (at most ``_POLISH_STEPS`` steps with each
    matrix). Returns the summary, the mode and the number of evaluations.

    BFGS stops at a gradient of ~3e-6 standard errors, and a PL iteration whose gradient starts
    below that does not move theta at all; the PL fixed point's log-likelihood is first-order in
    theta (the pseudo-data follow eta), so these steps make it reproducible to ~1e-9. P is the
    inverse Hessian at the first iteration's optimum; where a step from it does not shrink the
    decrement (that optimum was far from here, e.g. at a zero variance: a decrement of 1e-6 and a
    log-likelihood 2e-6 off), P is computed once more here, for these steps only: kept for the
    later iterations as their BFGS preconditioner, a matrix from a point with two terms on the
    boundary made an inverse Gaussian MPL fit cycle at max|delta eta| ~2e-6 instead of converging."""
    x, steps, evals = summary.x, 0, 0
    if hess_inv is not None and x.size:
        g = lme.value_and_grad(x)[1]
        lam = float(np.sqrt(max(g @ hess_inv @ g, 0.0)))
        renewed = False
        while lam > _POLISH_TOL and steps < _POLISH_STEPS:
            x_new = canonical_theta(lme, x - hess_inv @ g)
            f_new, g_new = lme.value_and_grad(x_new)
            lam_new = float(np.sqrt(max(g_new @ hess_inv @ g_new, 0.0)))
            steps += 1
            evals += 1
            if not (np.isfinite(f_new) and lam_new < lam):
                here = None if renewed else _inverse_or_none(hessian(lme, x))
                if here is None:
                    break
                hess_inv, renewed = here, True  # (local: the caller keeps its own)
                steps = 0  # the renewed matrix gets its own _POLISH_STEPS
                evals += 2 * x.size + 1  # (the Hessian's gradient evaluations, and g again)
                g = lme.value_and_grad(x)[1]
                lam = float(np.sqrt(max(g @ hess_inv @ g, 0.0)))
                continue
            x, g, lam = x_new, g_new, lam_new
        summary = replace(summary, x=x, newton_decrement=min(lam, summary.newton_decrement))
    mode = lme.inner(*lme.unpack(x))
    return replace(summary, objective=mode.objective), mode, evals


def pl_iterations(
    ws: Workspace,
    family: LaplaceProblem,
    y: np.ndarray,
    settings: FitSettings,
    *,
    restricted: bool,
    sigma_estimated: bool,
    max_iterations: int,
    warm: FitResult | None = None,
    hess_inv: np.ndarray | None = None,
) -> PLState:
    """MATLAB's PL loop from ``start_eta`` (module docstring). The LME starts from ``warm`` (its
    x, u and beta) if given, else from :func:`_lme_start`; BFGS is preconditioned by ``hess_inv``,
    or by the inverse Hessian at the first LME optimum for the later iterations."""
    tol = settings.pl_tolerance
    lme = _lme_template(ws, restricted, sigma_estimated).clone()
    if settings.verbose:
        monitor.pl_header("REMPL" if restricted else "MPL", restricted)
    eta = start_eta(ws, y, settings)
    sigma = 1.0
    x = None
    evals = 0
    state = None
    for it in range(1, max_iterations + 1):
        z, W = working_response(ws, family, eta, sigma)
        _set_lme_data(lme, z, W)
        if x is None:
            if warm is not None:
                x = off_the_boundary(ws, lme, warm.x, lambda z=z, W=W: _lme_start(ws, lme, z, W))
                lme.u_start = lme.re.to_internal(warm.u)
                lme.beta_start = warm.beta.copy()
            else:
                x = _lme_start(ws, lme, z, W)
            if hess_inv is None:
                hess_inv = initial_inverse_hessian(lme, x)
        report = monitor.lme_progress(settings, it, lme, restricted=restricted)
        summary, mode = minimize(lme, x, hess_inv0=hess_inv, callback=report)
        # each iteration's LME is its ML (REML) fit: from a warm start at a zero variance the
        # gradient is 0 by symmetry, so a boundary optimum is checked against points off it
        summary, mode = restart_off_the_boundary(
            ws, lme, summary, mode, report, fresh=lambda z=z, W=W: _lme_start(ws, lme, z, W)
        )
        if report is not None:
            report.finish(summary)
        if it == 1 and warm is None:  # the first optimum's curvature preconditions the rest
            at_optimum = _inverse_or_none(hessian(lme, summary.x))
            hess_inv = hess_inv if at_optimum is None else at_optimum
        summary, mode, steps = _polish(lme, summary, hess_inv)
        evals += summary.n_evaluations + steps + 1
        x = summary.x
        sigma = float(np.exp(x[-1])) if lme.has_phi else 1.0
        eta_new = mode.eta + family.offset
        delta = float(np.max(np.abs(eta_new - eta)))
        converged = delta <= max(tol * float(np.max(np.abs(eta))), tol)
        eta = eta_new
        if settings.verbose:
            monitor.pl_line(it, summary.objective, delta, summary.n_iterations)
        state = PLState(lme, summary, mode, z, W, eta, it, converged, delta, evals, hess_inv)
        if converged:
            break
    return state


def fit_pseudo(
    ws: Workspace, y: np.ndarray, warm: FitResult | None, settings: FitSettings, *, restricted: bool
) -> FitResult:
    """A pseudo-likelihood fit (MPL, or REMPL if ``restricted``): the registry's driver."""
    fit_method = "rempl" if restricted else "mpl"
    t0 = time.perf_counter()
    d = ws.design
    k = ws.dist.observed_value(y, d.weights, d.binomial_size)
    family = ws.new_problem("laplace", k, swap=True)
    sigma_estimated = ws.dist.has_dispersion or settings.dispersion_flag
    with blas_limit(1 if ws.re.dense_order + family.p <= THREADS_ABOVE_DENSE else None):
        try:
            state = pl_iterations(
                ws,
                family,
                y,
                settings,
                restricted=restricted,
                sigma_estimated=sigma_estimated,
                max_iterations=settings.pl_iterations,
                warm=warm,
                hess_inv=ws.hess_inv_start.get(fit_method) if warm is not None else None,
            )
        except PirlsFailure as err:
            raise FitError(
                f"fit_method='{fit_method}': a pseudo-data linear mixed model cannot be fitted ({err}); "
                "check for a predictor that separates the outcomes or means at the edge of their range"
            ) from err
        except (*_invalid_parameter_errors(), np.linalg.LinAlgError) as err:
            # the iterations diverged: a pseudo-data fit put the linear predictor outside the link's
            # domain (e.g. eta <= 0 under a reciprocal link), where the likelihood is undefined
            start = "from the given mu_start" if settings.mu_start is not None else "from MATLAB's start"
            raise FitError(
                f"fit_method='{fit_method}': the pseudo-likelihood iterations diverged {start}: the "
                f"linear predictor left the link's domain ({err}). Start from means closer to the "
                "data (mu_start, or leave it out), or use fit_method='laplace'"
            ) from err
        if fit_method not in ws.hess_inv_start:
            with ws.lock:
                ws.hess_inv_start.setdefault(fit_method, state.lme_hess_inv)
        cov_beta = conditional_cov_beta(state.lme, state.mode)
    s = state.summary
    scale = 1.0 + float(np.max(np.abs(start_eta(ws, y, settings)), initial=0.0))
    if not state.converged and not (np.isfinite(state.delta) and state.delta < DIVERGED_DELTA * scale):
        # the iterations ran away (eta changing by ~1e31 per step): no estimate to return; the
        # threshold is relative to the start's eta (a link scale of 1e9 takes steps of 1e9)
        start = "from the given mu_start" if settings.mu_start is not None else "from MATLAB's start"
        raise FitError(
            f"fit_method='{fit_method}': the pseudo-likelihood iterations diverged {start} (the "
            f"last iteration changed eta by up to {state.delta:.3g}). Start from means closer to "
            "the data (mu_start), use a link that keeps every mean in range, or fit_method='laplace'"
        )
    outside = means_outside_range(ws, state.eta)
    if outside:
        # MATLAB's loop clips such means to the range and can settle there: a fixed point of the
        # clipped pseudo-data (a gamma fit on the reciprocal link with eta < 0 in some rows ended
        # "converged" with a dispersion of 1e31), not an estimate of this model
        raise FitError(
            f"fit_method='{fit_method}': the pseudo-likelihood iterations ended with the means of "
            f"{outside} row(s) outside the {ws.dist.name} family's range (the linear predictor left "
            f"the {ws.link.name} link's domain, where the pseudo-data clip them). Use a link that "
            "keeps every mean in range (such as 'log'), or fit_method='laplace'"
        )
    converged = state.converged and s.converged
    how = "converged" if state.converged else "did not converge"
    summary = replace(
        s,
        n_iterations=state.iterations,
        n_evaluations=state.evaluations,
        converged=converged,
        message=(
            f"pseudo-likelihood {how} in {state.iterations} iteration(s), last max|delta eta| = "
            f"{state.delta:.3g}; final LME: {s.message}"
        ),
        seconds=time.perf_counter() - t0,
    )
    not_converged = None
    if not state.converged:
        not_converged = (
            f"pseudo-likelihood did not converge in pl_iterations={settings.pl_iterations} iterations "
            f"(last max|delta eta| = {state.delta:.3g}, pl_tolerance={settings.pl_tolerance:g}); "
            "increase pl_iterations or pl_tolerance"
        )
    result = make_result(
        ws,
        fit_method,
        state.lme,
        summary,
        state.mode,
        y,
        cov_beta,
        eta=state.eta,
        working=(state.z, state.W),
        not_converged=not_converged,
    )
    if settings.check_hessian:  # MATLAB: the check of the final pseudo-data LME fit
        result = monitor.check_hessian(ws, state.lme, result, what="pseudo-data LME's objective")
    return result
