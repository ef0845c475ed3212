"""Fitting: the workspace shared by a model and its refits, and one maximum-likelihood fit.

A :class:`Workspace` is built once per ``fitglme`` call: the design, the PyMC model, the compiled
observation function and the engine's problem. ``refit`` reuses it: it swaps the observed
``pm.Data`` container, reads it back into the engine and re-optimises; nothing is recompiled.

The PyMC model is built on first use. An ML fit needs only the compiled derivatives of its
observation log-likelihood, which are cached per (distribution, link) in the process and on disk
(``pymc_model.observation_function``); a fit whose function is cached therefore skips building the
model (~25 ms, and importing PyMC in a new process). Until the model is built, the observed values
a fit loads are kept and put into its ``pm.Data`` container when it is built, so the container
always holds the last fitted response.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import replace
from functools import cached_property

import numpy as np

from . import monitor
from .backend import engine_mode
from .blas import THREADS_ABOVE_DENSE, blas_limit
from .covariance import ThetaLayout
from .covariance_patterns import CovariancePatterns
from .design import Design
from .engine.laplace import InnerMode, LaplaceProblem, PirlsFailure, _invalid_parameter_errors, beta_precision
from .engine.optimize import (
    SINGULAR_TOL,
    OptimizationSummary,
    glm_start,
    hessian,
    initial_inverse_hessian,
    minimize,
)
from .engine.structure import REStructure
from .errors import ConvergenceWarning, FitError, GLMMWarning, SingularFitWarning, warn
from .families import Distribution, Link, mean_range_check
from .fit_methods import METHODS, FitSettings
from .pymc_model import Y_DTYPE, GLMMGraph, build_pymc_model, observation_function
from .results import FitResult

__all__ = [
    "Workspace",
    "boundary_terms",
    "boundary_unit",
    "fit",
    "make_result",
    "off_the_boundary",
    "restart_off_the_boundary",
]


class Workspace:
    """Design, PyMC model and compiled functions shared by a model and all its refits.

    Thread safety: everything a fit mutates lives in a per-call :class:`LaplaceProblem` clone
    (:meth:`new_problem`). The few shared steps -- building the PyMC model, the problem template
    and the samplers on first use, and swapping the observed ``pm.Data`` container and reading it
    back -- run under one lock per workspace; the optimisation itself runs outside it. The lock is
    held for about 25 us per refit (measured on the mfr model; cloning the problem costs 6 us), so
    refits in several threads run concurrently and give the same results as serial calls.

    Pickling keeps the design, distribution, link and warm-start matrices; the PyMC model and the
    compiled functions are rebuilt (or loaded from PyTensor's disk cache) on first use.
    """

    def __init__(
        self,
        design: Design,
        dist: Distribution,
        link: Link,
        graph: GLMMGraph | None = None,
        patterns: CovariancePatterns | None = None,
    ):
        self.design = design
        self.dist = dist
        self.link = link
        self.layout = ThetaLayout(tuple(t.q_r for t in design.terms))
        # the covariance pattern of each term (MATLAB's default: FullCholesky, Isotropic if scalar);
        # every engine problem of this workspace optimises over the patterns' parameters
        self.patterns = patterns or CovariancePatterns.default(self.layout.sizes)
        self._graph = graph
        self._observed: np.ndarray | None = None  # the last fit's k while the model is unbuilt
        self._templates: dict[tuple, LaplaceProblem] = {}  # FitSettings.problem_key -> template
        self.hess_inv_start: dict[str, np.ndarray | None] = {}  # fit_method -> warm-start matrix
        self.sampler = None
        self.newdata_samplers: dict = {}  # design fingerprint -> sampler
        # (beta's, theta's) units for a link whose scale has units, from the first fit's start
        # (_start, _link_scale): finite-difference steps (fd_units) and the singular tolerance
        # (make_result); None: unit 1
        self.fd_unit: tuple[float, float] | None = None
        self.lock = threading.RLock()

    @classmethod
    def build(
        cls, design: Design, dist: Distribution, link: Link, patterns: CovariancePatterns | None = None
    ) -> Workspace:
        return cls(design, dist, link, patterns=patterns)

    @property
    def graph(self) -> GLMMGraph:
        """The model's PyMC model, built on first use; its observed container then holds the last
        fitted response."""
        if self._graph is None:
            with self.lock:
                if self._graph is None:
                    graph = build_pymc_model(self.design, self.dist, self.link, self.layout)
                    if self._observed is not None:
                        graph.set_observed(self._observed)
                    self._graph = graph
        return self._graph

    def __getstate__(self) -> dict:
        keep = ("design", "dist", "link", "hess_inv_start", "patterns", "fd_unit")
        return {k: self.__dict__[k] for k in keep}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["design"], state["dist"], state["link"], patterns=state.get("patterns"))
        self.hess_inv_start = dict(state["hess_inv_start"])
        self.fd_unit = state.get("fd_unit")

    def fd_units(self, problem: LaplaceProblem) -> np.ndarray | None:
        """Units of ``problem``'s outer parameters for finite-difference steps
        (``step * max(unit, |x|)``, ``engine.optimize.fd_steps``): beta and theta in the link
        scale's units for a link with units (a gamma/reciprocal model of y ~ 1e6 has eta ~ 1e-6,
        where steps of 1e-5 gave NaN intervals and joint-Hessian SEs 300 times too large), and so
        is a covariance pattern's every parameter but CompSymm's correlation (a unit of 1 for them
        gave a Diagonal term's joint-Hessian SE as NaN on y x 1e6); log sigma 1. None: all 1."""
        if self.fd_unit is None:
            return None
        u_beta, u_theta = self.fd_unit
        k = 0 if problem.inner_beta else problem.p
        if self.patterns.is_identity:
            cov = np.full(problem.n_cov, u_theta)
        else:
            cov = self.patterns.param_units(u_theta)
        units = [np.full(k, u_beta), cov, np.ones(int(problem.has_phi))]
        return np.concatenate(units)

    def _template(self, fit_method: str, settings: FitSettings) -> LaplaceProblem:
        def build() -> LaplaceProblem:
            method = METHODS[fit_method]
            mode = engine_mode(self.design.n)  # one backend for both functions (one start-up)
            obs = observation_function(self, mode)
            extra = {}
            if method.node_function:  # (quadrature: its Numba kernels only where Numba is loaded anyway)
                extra = {"nodes": observation_function(self, mode, orders=1), "kernels": mode is None}
            problem = method.problem(self.design.X, self.re, obs, settings, **extra)
            problem.set_pattern(self.patterns.engine_map)
            problem.in_range = mean_range_check(self.dist, self.link)
            return problem

        return self.template(settings.problem_key(fit_method), build)

    def template(self, key: tuple, build: Callable[[], LaplaceProblem]) -> LaplaceProblem:
        """The problem template stored under ``key``, made by ``build()`` on first use (under the
        lock). Callers clone it: a template is never fitted."""
        if key not in self._templates:
            with self.lock:
                if key not in self._templates:
                    self._templates[key] = build()
        return self._templates[key]

    @cached_property
    def re(self) -> REStructure:
        """The engine's random-effects structure (shared by every problem of this design)."""
        return REStructure.from_terms(self.design.terms, self.design.n)

    def start_cov(self, scale: float = 1.0) -> np.ndarray:
        """The covariance parameters' start: each Lambda_r diagonal at ``scale`` / rms of its column
        (see ``ThetaLayout.start``), mapped to the patterns' parameters."""
        theta = scale * self.layout.start([np.sqrt(np.mean(t.T**2, axis=0)) for t in self.design.terms])
        return theta if self.patterns.is_identity else self.patterns.params_from_theta(theta)

    def cov_from_theta(self, theta: np.ndarray) -> np.ndarray:
        """The patterns' parameters (the outer vector's covariance block) for theta."""
        return theta if self.patterns.is_identity else self.patterns.params_from_theta(theta)

    def new_problem(
        self, fit_method: str, k: np.ndarray, *, swap: bool, settings: FitSettings | None = None
    ) -> LaplaceProblem:
        """A per-call problem loaded with observed values ``k`` (the observed container's scale).

        ``swap=True`` (fits and refits) sets the PyMC model's observed ``pm.Data`` container to k and
        reads the engine's data back from the containers (if the model is not built yet, k is kept
        for its container and loaded directly: the same values); ``swap=False`` (read-only methods
        such as standard errors) loads k without touching the model."""
        problem = self._template(fit_method, settings or FitSettings()).clone()
        problem.fd_units = self.fd_units(problem)
        if swap:
            with self.lock:
                if self._graph is not None:
                    self._graph.set_observed(k)
                    self.load_containers(problem)
                    return problem
                self._observed = np.array(k, dtype=Y_DTYPE)
                k = self._observed
        d = self.design
        trials = np.rint(d.weights * d.binomial_size) if self.dist.name == "binomial" else np.ones(d.n)
        problem.set_data(k, d.weights, trials, d.offset)
        return problem

    def load_containers(self, problem: LaplaceProblem) -> None:
        """Engine data <- the PyMC model's pm.Data containers."""
        c = self.graph.containers
        trials = c["trials"].get_value() if "trials" in c else np.ones(self.design.n)
        problem.set_data(c["y"].get_value(), c["weights"].get_value(), trials, c["offset"].get_value())


def _start(ws: Workspace, problem: LaplaceProblem, y: np.ndarray, settings: FitSettings) -> np.ndarray:
    """The outer optimiser's start: ``init_pl_iterations`` pseudo-likelihood iterations (MATLAB's
    start) when asked for; else the GLM fit (from least squares of g(mu_start) on X) for beta, each
    random-effect SD at 1/rms of its column (times the data's level SD on the link scale for a link
    with units: :func:`_link_scale`), sigma or theta from moments about the level means (the
    family's ``ancillary_start``)."""
    if settings.init_pl_iterations:
        try:
            x_pl = _pl_start(ws, problem, y, settings)
        except (PirlsFailure, *_invalid_parameter_errors(), np.linalg.LinAlgError):
            x_pl = None  # the PL steps left the link's domain: the GLM start below
        if x_pl is not None:
            warm = problem.u_start.copy(), problem.beta_start.copy()
            # PL steps that diverge (max|delta eta| 20 -> 27 on a gamma of shape 0.25) leave a
            # start 1e17 log-likelihood units out, where BFGS met its scale-free tests 2,130 units
            # below the optimum: the PL start is taken where it beats the GLM start
            x_glm = _start(ws, problem, y, replace(settings, init_pl_iterations=0))
            glm_warm = problem.u_start.copy(), problem.beta_start.copy()
            f_glm = problem.value_and_grad(x_glm)[0]
            problem.u_start, problem.beta_start = warm
            try:
                f_pl = problem.value_and_grad(x_pl)[0]
            except PirlsFailure:
                f_pl = np.inf
            if np.isfinite(f_pl) and f_pl <= f_glm:
                problem.u_start, problem.beta_start = warm
                return x_pl
            problem.u_start, problem.beta_start = glm_warm
            return x_glm
    d = ws.design
    mu0 = settings.mu_start if settings.mu_start is not None else ws.dist.mu_start(y, d.binomial_size)
    with np.errstate(all="ignore"):
        z = ws.link.link_np(mu0) - d.offset
    z = np.where(np.isfinite(z), z, 0.0)
    beta_ls = np.linalg.lstsq(d.X, z, rcond=None)[0]
    with np.errstate(all="ignore"):
        mu_ls = ws.link.inverse_np(d.X @ beta_ls + d.offset)
    lo, hi = ws.dist.mean_range
    if not np.all(np.isfinite(mu_ls) & (mu_ls > lo) & (mu_ls < hi)):
        # a link with a restricted domain (reciprocal, power) left the range: start from the
        # linear predictor of the mean response, g(mean mu0), on every row
        with np.errstate(all="ignore"):
            target = float(ws.link.link_np(np.mean(mu0)))
        z = np.full(d.n, target) - d.offset
        beta_ls = np.linalg.lstsq(d.X, z, rcond=None)[0]
        beta_ls = _shift_into_domain(ws, beta_ls, target)
    beta0 = glm_start(problem, beta_ls)
    parts = [] if problem.inner_beta else [beta0]
    phi0 = None
    if problem.has_phi:  # sigma or theta from moments at the GLM means
        with np.errstate(all="ignore"):
            eta0 = d.X @ beta0 + d.offset
            mu = ws.dist.clip_mean(ws.link.inverse_np(eta0))
            if getattr(problem, "profile_phi", None) is None:
                mu = _within_level_means(ws, y, eta0, mu)  # (a profiled phi is replaced below)
            value = ws.dist.ancillary_start(y, mu, d.weights)
        # sigma is clipped to 1e+-100 only (an inverse Gaussian's scales as y^-1/2: 1e-10 for
        # y x 1e20, where 1e-8 left the fit 48 logLik units low); theta to 1e+-8
        lim = 1e100 if ws.dist.has_dispersion else 1e8
        phi0 = np.log(min(max(value, 1.0 / lim), lim)) if np.isfinite(value) else 0.0
    problem.beta_start = beta0
    problem.beta_glm = beta0

    def start_at(scale: float | None) -> np.ndarray:
        cov = ws.start_cov(1.0 if scale is None else scale)
        return np.concatenate([*parts, cov, *([[phi0]] if phi0 is not None else [])])

    scale = u_beta = _link_scale(ws, y, beta0)
    if scale is not None:
        if phi0 is not None and problem.phi_scales_re:
            scale /= np.exp(phi0)  # theta is relative to sigma
        # the data's scale is the start of a built-in link where its objective is finite (then the
        # start, and so the fit, is equivariant under the response's units: comparing it with the
        # default start, which has none, picked by units between two local optima of an inverse
        # Gaussian on its canonical link); for a custom link it must beat the default start (a
        # moment estimate from working residuals can be absurd where d mu/d eta underflows: a
        # custom cloglog started its SD at 4e45). value_and_grad remembers the points, so BFGS's
        # first evaluation is free
        # (where neither start's objective is finite, e.g. quadrature nodes out of range at both,
        # the data's scale is kept and shrunk below: the default start could stay infinite)
        f_scale = problem.value_and_grad(start_at(scale))[0]
        if not (
            (ws.link.builtin and math.isfinite(f_scale))
            or f_scale <= problem.value_and_grad(start_at(None))[0]
        ):
            # the default start won; should the fit end on the boundary from there, the data's
            # scale is probed too (restart_off_the_boundary)
            problem.scale_start = start_at(scale)
            scale = None
    if scale is not None:
        with ws.lock:
            if ws.fd_unit is None:  # the first fit's (refits keep it: the same data's scale)
                ws.fd_unit = (u_beta, scale)
        problem.fd_units = ws.fd_units(problem)
    elif (
        u_beta is None
        and phi0 is not None
        and problem.phi_scales_re
        and ws.dist.name != "normal"
        and abs(phi0) > np.log(100.0)  # (sigma in [0.01, 100]: the two starts differ by < 100x)
    ):
        # a scale-free link of a gamma or inverse Gaussian model: theta = SD / sigma while the SD
        # is unit-free and an inverse Gaussian's sigma is not (y^-1/2); theta ~ 1/rms started the SD
        # at sigma / rms, 1e-6 for y x 1e12, where the fit ended at SD 0 (logL 52 units low) and
        # reported convergence. SD / rms on the link scale is the start when it is the better one;
        # it costs one more evaluation, spent only where sigma is far from 1 (a gamma sigma, a
        # coefficient of variation, rarely is).
        relative = float(np.exp(-phi0))
        if problem.value_and_grad(start_at(relative))[0] < problem.value_and_grad(start_at(None))[0]:
            scale = relative
    x0 = start_at(scale)
    profile = getattr(problem, "profile_phi", None)
    if profile is not None:  # sigma in closed form (the LMM, engine.lmm): the optimiser's first point
        try:
            x0[-1] = profile(x0[:-1])
        except PirlsFailure:
            pass
    # SDs of 1/rms on the linear-predictor scale can be far too wide for a link with a restricted
    # range (Poisson with identity: means of ~0.4); shrink them until the inner step succeeds.
    k = 0 if problem.inner_beta else problem.p
    for _ in range(4):
        if np.isfinite(problem.value_and_grad(x0)[0]):  # remembered: BFGS starts by evaluating x0
            break
        x0[k : k + problem.n_cov] = ws.cov_from_theta(0.1 * problem.unpack(x0)[1])
    problem.u_start = np.zeros(problem.re.q)
    return x0


def _shift_into_domain(ws: Workspace, beta: np.ndarray, target: float) -> np.ndarray:
    """beta with its intercept raised until every mean is in range, for a link whose domain is the
    half-line of eta with the sign of target = g(mean response) (reciprocal, power, identity of a
    positive mean): eta_i = x_i'beta + offset_i must satisfy s eta_i >= |target| / 2, s = sign(target).
    An offset outside the span of X leaves rows out of range after least squares (a gamma model
    with a reciprocal link and an offset in (-1, 1) failed at its start). Unchanged where X spans
    no constant or no shift helps."""
    d = ws.design
    lo, hi = ws.dist.mean_range
    with np.errstate(all="ignore"):
        ones = np.linalg.lstsq(d.X, np.ones(d.n), rcond=None)[0]
        if not (np.isfinite(target) and target != 0.0 and np.allclose(d.X @ ones, 1.0)):
            return beta
        s = np.sign(target)
        eta = d.X @ beta + d.offset
        shift = max(0.0, 0.5 * abs(target) - float(np.min(s * eta)))
        moved = beta + s * shift * ones
        mu = ws.link.inverse_np(d.X @ moved + d.offset)
    return moved if np.all(np.isfinite(mu) & (mu > lo) & (mu < hi)) else beta


def _link_scale(ws: Workspace, y: np.ndarray, beta0: np.ndarray) -> float | None:
    """The SD of the first random-effects term's level effects on the link scale, for a link whose
    scale has units (identity, reciprocal, power; custom links), where the default start of SDs
    1 / rms of their columns ignores the data's scale (a gamma model with an identity link on a
    response of ~1e6 started its SD ~1e6 times too small, where the likelihood is flat, and stayed
    there). None (the default start) for a scale-free link (log, logit, probit, ...) and for the
    linear mixed model, whose theta is relative to a sigma in the response's units.

    One-way method of moments on the working residuals r_i = g'(mu_i) (y_i - mu_i) at the GLM fit
    (the delta method): with level means rbar_j of n_j rows and the pooled within-level variance
    s_w^2, sigma_b^2 = var_j(rbar_j) - mean_j(s_w^2 / n_j), at least a tenth of var_j(rbar_j)."""
    if ws.link.scale_free or (ws.dist.name == "normal" and ws.link.name == "identity"):
        return None
    d = ws.design
    codes, J = d.terms[0].codes, d.terms[0].n_levels
    with np.errstate(all="ignore"):  # overflow here means no usable estimate (None), not a warning
        eta = d.X @ beta0 + d.offset
        mu = ws.dist.clip_mean(ws.link.inverse_np(eta))
        r = (y - mu) / ws.link.mu_eta(eta)
        ok = np.isfinite(r)
        n_j = np.bincount(codes[ok], minlength=J).astype(float)
        used = n_j > 0
        if used.sum() < 2:
            return None
        means = np.bincount(codes[ok], weights=r[ok], minlength=J) / np.maximum(n_j, 1.0)
        rbar = means[used]
        within = r[ok] - means[codes[ok]]
        df = ok.sum() - used.sum()
        s2w = float(within @ within) / df if df > 0 else 0.0
        between = float(np.var(rbar, ddof=1))
        var_b = max(between - s2w * float(np.mean(1.0 / n_j[used])), 0.1 * between)
        sd = float(np.sqrt(var_b))
    return sd if np.isfinite(sd) and sd > 0 else None


def _within_level_means(ws: Workspace, y: np.ndarray, eta: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """The GLM means shifted, on the link scale, to each level's mean response (first random-effects
    term): eta_i + g(ybar_j) - g(mubar_j), weighted means over level j's rows. The dispersion's moment
    start then sees the residual variation within levels, not the random effects' too (which made
    it several times too large). Unshifted where a shifted mean is out of range."""
    d = ws.design
    codes = d.terms[0].codes
    J = d.terms[0].n_levels
    w = d.weights
    sw = np.bincount(codes, weights=w, minlength=J)
    with np.errstate(all="ignore"):
        ybar = np.bincount(codes, weights=w * y, minlength=J) / sw
        mubar = np.bincount(codes, weights=w * mu, minlength=J) / sw
        shift = ws.link.link_np(ybar) - ws.link.link_np(mubar)
        shifted = ws.link.inverse_np(eta + shift[codes])
    lo, hi = ws.dist.mean_range
    ok = np.isfinite(shifted) & (shifted > lo) & (shifted < hi)
    return np.where(ok, shifted, mu)


def _pl_start(ws: Workspace, problem: LaplaceProblem, y: np.ndarray, settings: FitSettings) -> np.ndarray:
    """x0, u and beta from ``settings.init_pl_iterations`` MPL iterations (converged or not)."""
    from .pseudo import pl_iterations

    state = pl_iterations(
        ws,
        problem,
        y,
        settings,
        restricted=False,
        sigma_estimated=problem.has_phi,
        max_iterations=settings.init_pl_iterations,
    )
    _, theta, phi = state.lme.unpack(state.summary.x)
    problem.u_start = state.mode.u.copy()
    problem.beta_start = state.mode.beta.copy()
    parts = [] if problem.inner_beta else [state.mode.beta]
    parts.append(ws.cov_from_theta(theta))
    if problem.has_phi:
        parts.append([phi])
    return np.concatenate(parts)


def _warm_start_hessian(ws: Workspace, fit_method: str, warm: FitResult, settings: FitSettings) -> None:
    """The inverse Hessian at the fit being refitted (its own response), which preconditions BFGS in
    every refit of the workspace. Computed at the first refit, not by ``fitglme``: a fit that is
    never refitted does not pay its 2P gradient evaluations."""
    d = ws.design
    k = ws.dist.observed_value(warm.y, d.weights, d.binomial_size)
    problem = ws.new_problem(fit_method, k, swap=False, settings=settings)
    problem.u_start = problem.re.to_internal(warm.u)
    problem.beta_start = warm.beta.copy()
    hinv = _inverse_or_none(hessian(problem, warm.x))
    with ws.lock:
        ws.hess_inv_start.setdefault(fit_method, hinv)


def _optimise(
    ws: Workspace,
    problem: LaplaceProblem,
    fit_method: str,
    y: np.ndarray,
    warm: FitResult | None,
    settings: FitSettings,
):
    """From the warm start (a refit) or the GLM start; if the inner step fails on the way, once
    more from the GLM start. PirlsFailure from both is left to the caller."""
    if warm is not None:
        if fit_method not in ws.hess_inv_start:
            _warm_start_hessian(ws, fit_method, warm, settings)
        x0 = warm.x.copy()
        problem.u_start = problem.re.to_internal(warm.u)
        problem.beta_start = warm.beta.copy()
        problem.beta_glm = warm.beta.copy()
        hinv = ws.hess_inv_start.get(fit_method)
    else:
        x0 = _start(ws, problem, y, settings)
        hinv = initial_inverse_hessian(problem, x0)
    method = METHODS[fit_method]
    report = monitor.progress(settings, method.display, problem, restricted=method.restricted)
    try:
        summary, mode = minimize(problem, x0, hess_inv0=hinv, callback=report)
    except PirlsFailure:
        x0 = _start(ws, problem, y, replace(settings, init_pl_iterations=0))
        summary, mode = minimize(problem, x0, callback=report)
    summary, mode = _restart_from_limit(ws, problem, y, summary, mode, report)
    if warm is not None:
        summary, mode = _refit_at_limit(ws, problem, y, settings, summary, mode, report)
    # a fit ending on the boundary may sit at a saddle (a zero variance's gradient is 0 by symmetry)
    summary, mode = restart_off_the_boundary(ws, problem, summary, mode, report)
    if report is not None:
        report.finish(summary)
    return summary, mode


def restart_off_the_boundary(ws: Workspace, problem: LaplaceProblem, summary, mode, report, fresh=None):
    """A fit that ends with a random-effects term on the boundary tries four points, the others
    where the fit ended: that term's covariance parameters where a fresh fit starts them
    (:func:`off_the_boundary`; ``fresh()`` gives that start, by default the workspace's), and its
    zero diagonal entries of theta alone at 1, 0.1 and 0.01 times their fresh start (a correlation
    at +-1 keeps its SDs). If one is better, it fits again from the best one and keeps the better of
    the two fits.

    At a zero variance the objective is even in that theta entry, so its gradient is 0 there: a
    refit warm-started from a singular fit stayed at zero (reporting convergence) where a fresh fit
    of the same response found a variance and a higher likelihood (8 of 20 simulated responses of a
    singular normal model); so did MPL once one iteration's LME was at zero, and a fresh inverse
    Gaussian (log link) fit ended at a zero variance 2.8 logLik units below the optimum, a saddle
    (the objective, not concave in theta there, rose off zero). The four probes cost four
    evaluations where the boundary is the better point; a compound-symmetry term at its correlation
    bound, where a fit from the fresh start ended 0.17 logLik units lower, keeps its first fit."""
    evals0 = problem.n_evals
    fresh_default = fresh is None
    if fresh is None:
        unit = boundary_unit(ws)
        k = 0 if problem.inner_beta else problem.p

        def fresh() -> np.ndarray:  # the covariance parameters a fresh fit starts from
            x = np.array(summary.x, dtype=float)
            x[k : k + problem.n_cov] = ws.start_cov(unit)
            return x

    tol = 1e-9 * max(1.0, abs(summary.objective))
    start, best = None, summary.objective
    if not boundary_terms(ws, problem.unpack(summary.x)[1], _re_sigma(problem, summary.x)).any():
        return summary, mode
    probes = [(1.0, False)] + [(scale, True) for scale in (1.0, 0.1, 0.01)]
    for scale, entries in probes:
        x = off_the_boundary(ws, problem, summary.x, fresh, scale=scale, entries=entries)
        problem.u_start, problem.beta_start = mode.u.copy(), mode.beta.copy()
        f = problem.value_and_grad(x)[0]
        if f < best - tol:
            start, best = x, f
    rejected = getattr(problem, "scale_start", None)
    if start is None and rejected is not None and fresh_default:
        # the whole start at the link's scale, which lost to the default start at the beginning
        # (a custom link's; a built-in link takes it whenever finite): a start far too narrow for
        # the link's units can run to a zero variance well below the optimum (an inverse Gaussian
        # on its canonical link with y x 0.1 ended 6.8 logLik units low that way), where no probe
        # near that end is better (their beta and phi are the boundary fit's)
        start = rejected
    if start is not None:
        problem.u_start, problem.beta_start = mode.u.copy(), mode.beta.copy()
        try:
            again, mode2 = minimize(
                problem, start, hess_inv0=initial_inverse_hessian(problem, start), callback=report
            )
        except PirlsFailure:
            again = None
        if again is not None and again.objective < summary.objective - tol:
            return replace(
                again,
                n_evaluations=summary.n_evaluations + problem.n_evals - evals0,
                message=again.message + "; fitted again from a fresh start of the term on the boundary",
            ), mode2
    problem.mode_and_gradient(summary.x)  # the warm start back at the first fit's mode
    return replace(summary, n_evaluations=summary.n_evaluations + problem.n_evals - evals0), mode


def _restart_from_limit(ws: Workspace, problem: LaplaceProblem, y: np.ndarray, summary, mode, report):
    """Fit again from the family's ``ancillary_restart`` when phi ended where the likelihood does
    not depend on it (negative binomial at its Poisson limit); the better of the two fits."""
    restart = ws.dist.ancillary_restart
    if restart is None or not problem.has_phi:
        return summary, mode
    with np.errstate(all="ignore"):
        mu = ws.dist.clip_mean(ws.link.inverse_np(mode.eta))
    phi = restart(y, mu, ws.design.weights, float(summary.x[-1]))
    if phi is None:
        return summary, mode
    x0 = summary.x.copy()
    x0[-1] = phi
    problem.u_start, problem.beta_start = mode.u.copy(), mode.beta.copy()
    try:
        again, mode2 = minimize(problem, x0, hess_inv0=initial_inverse_hessian(problem, x0), callback=report)
    except PirlsFailure:
        return summary, mode
    if not again.objective < summary.objective:
        return summary, mode
    n = summary.n_evaluations + again.n_evaluations
    return replace(
        again,
        n_evaluations=n,
        message=again.message
        + "; fitted again from the family's restart for phi (the first fit ended at its limit)",
    ), mode2


def _refit_at_limit(ws: Workspace, problem: LaplaceProblem, y, settings: FitSettings, summary, mode, report):
    """A refit that ends with phi beyond the family's ``ancillary_limit`` (negative binomial at its
    Poisson limit) is fitted again from a fresh start, and the better fit kept. Warm-started from a
    fit at theta = 1e16, where the gradient in log theta is ~mu^2/theta, a refit stays there: on an
    overdispersed response it reported theta 1e16 and converged, 0.08 log-likelihood units below
    the fresh fit's theta = 104 (the moment check of :func:`_restart_from_limit`, made at the stuck
    fit's means, whose random effects absorbed the overdispersion, saw none)."""
    limit = ws.dist.ancillary_limit
    if limit is None or not problem.has_phi or not summary.x[-1] > limit:
        return summary, mode
    evals0 = problem.n_evals
    try:
        x0 = _start(ws, problem, y, settings)
        again, mode2 = minimize(problem, x0, hess_inv0=initial_inverse_hessian(problem, x0), callback=report)
        again, mode2 = _restart_from_limit(ws, problem, y, again, mode2, report)
    except PirlsFailure:
        again = None
    n = summary.n_evaluations + problem.n_evals - evals0
    if again is not None and again.objective < summary.objective - 1e-9 * max(1.0, abs(summary.objective)):
        message = again.message + "; fitted again from a fresh start (the refit ended at its limit for phi)"
        return replace(again, n_evaluations=n, message=message), mode2
    problem.mode_and_gradient(summary.x)  # the warm start back at the first fit's mode
    return replace(summary, n_evaluations=n), mode


def fit(
    ws: Workspace,
    fit_method: str,
    y: np.ndarray,
    warm: FitResult | None = None,
    settings: FitSettings | None = None,
) -> FitResult:
    """Fit by ``fit_method`` (a key of the registry) to response ``y`` (MATLAB scale, used rows).

    Driver methods (pseudo-likelihood) run their own iteration; objective methods maximise their
    engine problem's log-likelihood with the outer optimiser."""
    settings = settings or FitSettings()
    method = METHODS[fit_method]
    if method.driver is not None:
        return method.driver(ws, y, warm, settings)
    d = ws.design
    k = ws.dist.observed_value(y, d.weights, d.binomial_size)
    problem = ws.new_problem(fit_method, k, swap=True, settings=settings)
    dense = problem.re.dense_order + (problem.p if problem.inner_beta else 0)
    limit = None if dense > THREADS_ABOVE_DENSE else 1
    with blas_limit(limit):
        try:
            summary, mode = _optimise(ws, problem, fit_method, y, warm, settings)
        except PirlsFailure as err:
            raise FitError(
                f"fit_method='{fit_method}': the conditional modes of the random effects cannot be "
                f"found ({err}). {_extreme_response_hint(y)}The model is probably not identifiable "
                "from these data: check for a predictor that separates the outcomes, a random-effects "
                "term with about one observation per level, or a link that puts the means outside "
                "their range"
            ) from err
        except np.linalg.LinAlgError as err:  # (NumPy's own error, on non-finite values)
            raise FitError(
                f"fit_method='{fit_method}': the optimiser's linear algebra failed ({err}), usually "
                "on values that are not finite. If the response's values are extreme (beyond ~1e+-100, where "
                "squares overflow), rescale it; else check the data for the causes of a fit that "
                "cannot start (a link that puts the means outside their range)"
            ) from err
        cov_beta = conditional_cov_beta(problem, mode)
    result = make_result(ws, fit_method, problem, summary, mode, y, cov_beta)
    if settings.check_hessian:
        with blas_limit(limit):
            result = monitor.check_hessian(ws, problem, result)
    return result


def _extreme_response_hint(y: np.ndarray) -> str:
    """A sentence for a failed fit whose response has values beyond ~1e+-100 (squares overflow)."""
    a = np.abs(np.asarray(y, dtype=float))
    a = a[np.isfinite(a) & (a > 0)]
    if a.size and (a.max() > 1e100 or a.min() < 1e-100):
        return f"The response reaches {a.max() if a.max() > 1e100 else a.min():.3g}: rescale it. "
    return ""


def off_the_boundary(
    ws: Workspace, problem: LaplaceProblem, x0: np.ndarray, fresh, scale: float = 1.0, entries: bool = False
) -> np.ndarray:
    """A warm start ``x0`` with the covariance parameters of each random-effects term on the
    boundary (:func:`boundary_terms`) replaced by those of ``fresh()``, the start a fresh fit takes.

    At a diagonal theta_jj = 0 the objective is even in theta_jj, so its gradient there is 0 and an
    optimiser started on the boundary never leaves it: a refit of a singular fit stayed at a zero
    variance (and reported convergence) where a fresh fit of the same response found one, with a
    higher likelihood. ``fresh`` is called only when a term is on the boundary; ``scale`` multiplies
    the fresh start's parameters of those terms; ``entries``: replace only their zero diagonal
    entries of theta."""
    x0 = np.array(x0, dtype=float)
    _, theta, _ = problem.unpack(x0)
    sigma = _re_sigma(problem, x0)
    held = boundary_terms(ws, theta, sigma)
    if not held.any():
        return x0
    _, theta_fresh, _ = problem.unpack(fresh())
    theta = np.array(theta, dtype=float)
    if entries:  # only the zero diagonal entries (a correlation at +-1 keeps the term's SDs)
        unit = boundary_unit(ws, sigma)
        zero = (np.abs(theta) < SINGULAR_TOL * unit) & ws.layout.is_diagonal()
        theta[zero] = scale * theta_fresh[zero]
    else:
        for r, sl in enumerate(ws.layout.slices()):
            if held[r]:
                theta[sl] = scale * theta_fresh[sl]
    k = 0 if problem.inner_beta else problem.p
    x0[k : k + problem.n_cov] = ws.cov_from_theta(theta)
    return x0


def boundary_unit(ws, sigma: float = 1.0) -> float:
    """theta's unit for the boundary tolerance: the link scale's (``fd_unit``, relative to the
    start's sigma), or 1 for a scale-free link, where a gamma or inverse Gaussian model divides it
    by its fitted ``sigma``: theta is SD / sigma (b = sigma Lambda u) while the SD on the link scale
    is unit-free and sigma is not (an inverse Gaussian's scales as y^-1/2: the same data in units
    1e8 times smaller were flagged singular at the same SD, 0.446), so the rule is lme4's for a
    GLMM, whose theta is the SD: SD < 1e-4. The normal family keeps lme4's LMM rule, theta = SD /
    sigma < 1e-4."""
    if ws.fd_unit is not None:
        return ws.fd_unit[1]
    if ws.dist.has_dispersion and ws.dist.name != "normal" and sigma > 0:
        return 1.0 / sigma
    return 1.0


def _re_sigma(problem: LaplaceProblem, x: np.ndarray) -> float:
    """sigma in b = sigma Lambda u at the outer point ``x`` (1 where phi does not scale b)."""
    phi = problem.unpack(x)[2]
    return float(np.exp(phi)) if problem.has_phi and problem.phi_scales_re else 1.0


def boundary_terms(ws, theta: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Which random-effects terms are on the boundary (singular): a diagonal entry of their
    Lambda_r below lme4's tolerance, in theta's units (:func:`boundary_unit`; theta ~2e-6 is not a
    boundary for a gamma/identity model of y ~ 1e-6: its start scale is ~2e-6)."""
    small = (np.abs(theta) < SINGULAR_TOL * boundary_unit(ws, sigma)) & ws.layout.is_diagonal()
    held = np.array([bool(small[sl].any()) for sl in ws.layout.slices()], dtype=bool)
    return held | _compound_symmetry_at_bound(ws, theta)


CS_BOUND_TOL = 1e-6  # a CompSymm correlation this close to an end of its range (relative) is on it


def _compound_symmetry_at_bound(ws, theta: np.ndarray) -> np.ndarray:
    """CompSymm terms whose correlation is at an end of (-1/(q - 1), 1) to ``CS_BOUND_TOL`` of the
    range. Its optimiser parameter z (rho = c + h tanh z) flattens the objective towards the end, so
    BFGS stops at z ~ 8 (1 - rho ~ 2e-7), where Lambda's smallest diagonal (~2e-4) is still above
    lme4's tolerance: the term was not flagged singular and its Wald interval was computed."""
    out = np.zeros(len(ws.layout.sizes), dtype=bool)
    terms = ws.patterns.terms
    if not any(t.kind == "CompSymm" and t.q > 1 for t in terms):
        return out
    for r, (t, psi) in enumerate(zip(terms, ws.layout.covariances(theta, 1.0))):
        if t.kind == "CompSymm" and t.q > 1 and psi[0, 0] > 0:
            rho = psi[1, 0] / psi[0, 0]
            lo = t.corr_lower
            out[r] = min(rho - lo, 1 - rho) < CS_BOUND_TOL * (1 - lo)
    return out


def make_result(
    ws: Workspace,
    fit_method: str,
    problem: LaplaceProblem,
    summary: OptimizationSummary,
    mode: InnerMode,
    y: np.ndarray,
    cov_beta: np.ndarray,
    *,
    eta: np.ndarray | None = None,
    working: tuple[np.ndarray, np.ndarray] | None = None,
    not_converged: str | None = None,
) -> FitResult:
    """The frozen record of a fit at ``summary.x`` / ``mode``, warning when the
    fit did not converge (``not_converged``: the message; default the outer optimiser's) or is
    singular. ``eta`` defaults to the mode's."""
    beta_opt, theta, phi = problem.unpack(summary.x)
    beta = mode.beta if problem.inner_beta else beta_opt
    ancillary = float(np.exp(phi)) if problem.has_phi else None
    sigma = float(np.exp(phi)) if problem.phi_scales_re else 1.0  # NB's theta is not a scale
    lambdas = ws.layout.lambdas(theta)
    u = problem.re.to_original(mode.u)
    b = _b_from_u(ws, u, lambdas, sigma)
    singular = bool(boundary_terms(ws, theta, sigma).any())
    msgs = []
    if not summary.converged:
        msgs.append(
            not_converged
            or f"Model failed to converge: Newton decrement sqrt(g'H^-1 g) = {summary.newton_decrement:.3g} "
            f"(max|gradient| = {summary.max_gradient:.3g}; {summary.message})"
        )
        warn(msgs[-1], ConvergenceWarning)
    if singular:
        msgs.append(
            "boundary (singular) fit: a random-effects covariance matrix is singular (a variance at "
            "zero, or a correlation at its bound)" + _quadrature_edge_note(problem, summary, singular)
        )
        warn(msgs[-1], SingularFitWarning)
    elif note := _quadrature_edge_note(problem, summary, singular):
        msgs.append(note)
        warn(msgs[-1], GLMMWarning)
    return FitResult(
        fit_method=fit_method,
        beta=np.asarray(beta, dtype=float).copy(),
        theta=theta.copy(),
        sigma=sigma,
        u=u,
        b=b,
        eta=(mode.eta if eta is None else eta).copy(),
        log_likelihood=-summary.objective,
        cov_beta=cov_beta,
        x=summary.x.copy(),
        optimization=summary,
        singular=singular,
        warnings=tuple(msgs),
        y=np.asarray(y, dtype=float).copy(),
        ancillary=ancillary,
        working=working,
        quadrature_edge=bool(getattr(problem, "node_failures", 0)),
    )


def _quadrature_edge_note(problem: LaplaceProblem, summary: OptimizationSummary, singular: bool) -> str:
    """What a converged quadrature fit that evaluated points where nodes put means outside the
    family's range (``node_failures``) says: its optimum is that of the region where the quadrature
    is defined, which need not hold the maximum likelihood (an unconverged fit says so in its own
    message). An inverse Gaussian (canonical power -2 link) fit ended singular at SD 1e-8, 4.2 logLik
    units below the exact marginal likelihood at the Laplace estimates (SD 0.034); with 5 nodes
    another ended at SD 0.008, 2.4 units below the quadrature at the Laplace estimates (SD 0.144):
    larger SDs put nodes at eta <= 0. ``singular``: the tail of the singular-fit message; else a
    message of its own ('' where nothing is to be said)."""
    failures = getattr(problem, "node_failures", 0)
    if not failures or not summary.converged:
        return ""
    outside = "nodes outside the family's range (the quadrature is not defined there, although the model is)"
    laplace = "compare with fit_method='laplace', which is defined wherever the model is"
    if singular:
        return (
            f"; {failures} point(s) evaluated had quadrature {outside}: the variance may be at zero "
            f"only because larger ones could not be evaluated; {laplace}"
        )
    return (
        f"quadrature: {failures} point(s) evaluated had {outside}: the optimum found is that of the "
        f"region where the quadrature is defined, which need not hold the maximum likelihood; {laplace}"
    )


def _inverse_or_none(H: np.ndarray) -> np.ndarray | None:
    try:
        np.linalg.cholesky(H)
    except np.linalg.LinAlgError:
        return None
    Hi = np.linalg.inv(H)
    return 0.5 * (Hi + Hi.T)


def _b_from_u(ws: Workspace, u: np.ndarray, lambdas: list[np.ndarray], sigma: float) -> np.ndarray:
    """b = sigma * blockdiag(Lambda_r) u, level-major within each term."""
    out, start = [], 0
    for term, L in zip(ws.design.terms, lambdas):
        ur = u[start : start + term.size].reshape(term.n_levels, term.q_r)
        out.append((sigma * ur @ L.T).ravel())
        start += term.size
    return np.concatenate(out) if out else np.zeros(0)


def conditional_cov_beta(problem: LaplaceProblem, mode) -> np.ndarray:
    """MATLAB 'Conditional': (X'CX - X'CA H^-1 A'CX)^-1, inflating the diagonal if not PD; formed
    as T S~^-1 T' from the precision S~ of beta~ = T^-1 beta (``optimize.beta_basis``: built with X
    itself, the complement lost digits where a column's mean dwarfs its spread, SEs 4.6e-4 off at
    x + 1e6 in a pseudo-likelihood fit)."""
    from .engine.optimize import beta_basis

    T = beta_basis(problem.X)
    S = beta_precision(problem, mode, T)
    jitter = 0.0
    for _ in range(20):
        try:
            L = np.linalg.cholesky(S + jitter * np.eye(S.shape[0]))
            break
        except np.linalg.LinAlgError:
            jitter = max(jitter * 10, 1e-10 * float(np.max(np.abs(np.diag(S)))))
    else:  # pragma: no cover
        return np.full_like(S, np.nan)
    Li = np.linalg.inv(L) @ T.T
    return Li.T @ Li
