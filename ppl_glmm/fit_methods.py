"""The registry of fit methods: one record per ``fit_method=`` value.

A fit method is either an *objective* for the outer optimiser (an engine problem with
``value_and_grad``: Laplace, ApproximateLaplace, adaptive quadrature) or a *driver* of its own
(pseudo-likelihood, which iterates linear mixed-model fits of pseudo-data). Adding a method is one
module plus one entry in :data:`METHODS`; ``fitglme`` validates ``fit_method`` and the method's
options against this table, and :func:`ppl_glmm.fitting.fit` dispatches on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputError, InputTypeError
from .keywords import hint

__all__ = ["METHODS", "FitMethod", "FitSettings", "get_fit_method"]


@dataclass(frozen=True)
class FitSettings:
    """Options of a fit that the fit methods read (MATLAB's name-value arguments, snake_case).

    ``mu_start`` (an n-vector) is not part of equality or hashing: two settings that differ only
    there build the same engine problem. Nor is ``verbose`` (0, 1 or 2: progress printed per
    iteration), which changes nothing in a fit; ``check_hessian`` (MATLAB's CheckHessian) adds a
    warning to the fit's record when the Hessian at the optimum is not positive definite. Neither
    is part of :meth:`problem_key`.
    """

    covariance_method: str = "conditional"
    dispersion_flag: bool = False
    pl_iterations: int = 100
    pl_tolerance: float = 1e-8
    init_pl_iterations: int = 0
    n_agq: int = 1
    mu_start: np.ndarray | None = field(default=None, compare=False, hash=False, repr=False)
    check_hessian: bool = False
    verbose: int = field(default=0, compare=False, hash=False)

    def problem_key(self, method: str) -> tuple:
        """What distinguishes one engine problem template from another for ``method``."""
        return (method, self.n_agq) if method == "quadrature" else (method,)


@dataclass(frozen=True)
class FitMethod:
    """One fit method.

    ``problem(X, re, obs, settings)`` builds the engine problem the outer optimiser maximises
    (objective methods); ``driver(ws, y, warm, settings)`` runs the whole fit and returns a
    :class:`~ppl_glmm.results.FitResult` (driver methods). ``inner_beta``: beta is found in the
    inner step, not by the outer optimiser. ``restricted``: the criterion is restricted
    (REML-type), so BIC uses N - p observations (MATLAB). ``families``: the distributions the
    method accepts (None: all). ``options``: the :class:`FitSettings` fields the method reads.
    ``check(design, dist, settings)`` refuses (with an InputError) a model the method cannot fit,
    right after the design is built and before any fitting work.
    """

    name: str
    display: str
    summary: str
    problem: Callable[..., Any] | None = None
    driver: Callable[..., Any] | None = None
    inner_beta: bool = False
    restricted: bool = False
    pseudo: bool = False
    families: tuple[str, ...] | None = None
    options: tuple[str, ...] = ()
    check: Callable[..., None] | None = None
    # the problem also takes ``nodes=`` (l and l_e only, orders=1) and ``kernels=`` (the fit runs on
    # Numba: its own Numba kernels cost no extra start-up)
    node_function: bool = False


def _laplace_problem(inner_beta: bool):
    """The Laplace problem; for the linear mixed model's ML (normal, identity link, beta outer) the
    one with sigma profiled out."""

    def make(X, re, obs, settings: FitSettings):
        from .engine.laplace import LaplaceProblem
        from .engine.lmm import LinearMLProblem

        if not inner_beta and obs.key.startswith("normal-identity-"):
            return LinearMLProblem(X, re, obs)
        return LaplaceProblem(X, re, obs, inner_beta=inner_beta)

    return make


def _reml_problem(X, re, obs, settings: FitSettings):
    """The linear mixed model's one-solve REML problem for the identity link (its likelihood
    graph's key starts with the family and link), the general Laplace-approximated one otherwise."""
    from .engine.reml import LinearREMLProblem, REMLProblem

    linear = obs.key.startswith("normal-identity-")
    return (LinearREMLProblem if linear else REMLProblem)(X, re, obs)


def _pl_driver(restricted: bool):
    def run(ws, y, warm, settings: FitSettings):
        from .pseudo import fit_pseudo

        return fit_pseudo(ws, y, warm, settings, restricted=restricted)

    return run


_PL_OPTIONS = ("dispersion_flag", "pl_iterations", "pl_tolerance", "mu_start")
PL_FAMILIES = ("normal", "binomial", "poisson", "gamma", "inverse_gaussian")  # MATLAB's


def _quadrature_problem(X, re, obs, settings: FitSettings, nodes=None, kernels=False):
    from .engine.quadrature import QuadratureProblem

    return QuadratureProblem(X, re, obs, settings.n_agq, nodes=nodes, kernels=kernels)


def _check_quadrature(design, dist, settings: FitSettings) -> None:
    """lme4's restriction: nAGQ > 1 needs a single random-effects term with one column."""
    terms = design.terms
    if len(terms) != 1 or terms[0].q_r != 1:
        found = ", ".join(f"{t.spec} ({t.q_r} column{'s' if t.q_r > 1 else ''})" for t in terms)
        raise InputError(
            "fit_method: 'quadrature' needs exactly one random-effects term with one column, such as "
            f"(1 | g) or (0 + x | g); this model has {len(terms)} term{'s' if len(terms) > 1 else ''}: "
            f"{found}. Use fit_method='laplace' for this model"
        )


METHODS: dict[str, FitMethod] = {
    "laplace": FitMethod(
        "laplace",
        "Laplace",
        "Laplace approximation of the marginal likelihood (lme4 nAGQ = 1)",
        problem=_laplace_problem(False),
        options=("init_pl_iterations", "mu_start"),
    ),
    "approximatelaplace": FitMethod(
        "approximatelaplace",
        "ApproximateLaplace",
        "Laplace with beta in the inner step (lme4 nAGQ = 0)",
        problem=_laplace_problem(True),
        inner_beta=True,
        options=("init_pl_iterations", "mu_start"),
    ),
    "reml": FitMethod(
        "reml",
        "REML",
        "restricted maximum likelihood of the linear mixed model (lmer REML = TRUE)",
        problem=_reml_problem,
        inner_beta=True,
        restricted=True,
        families=("normal",),
    ),
    "mpl": FitMethod(
        "mpl",
        "MPL",
        "maximum pseudo-likelihood: ML fits of linear mixed models of pseudo-data (MATLAB's default)",
        driver=_pl_driver(False),
        inner_beta=True,
        pseudo=True,
        families=PL_FAMILIES,
        options=_PL_OPTIONS,
    ),
    "rempl": FitMethod(
        "rempl",
        "REMPL",
        "restricted maximum pseudo-likelihood: REML fits of linear mixed models of pseudo-data",
        driver=_pl_driver(True),
        inner_beta=True,
        restricted=True,
        pseudo=True,
        families=PL_FAMILIES,
        options=_PL_OPTIONS,
    ),
    "quadrature": FitMethod(
        "quadrature",
        "Quadrature",
        "adaptive Gauss-Hermite quadrature with n_agq nodes, one scalar random-effects term "
        "(lme4 nAGQ = n_agq)",
        problem=_quadrature_problem,
        options=("n_agq",),
        check=_check_quadrature,
        node_function=True,
    ),
}
_ALIASES = {"approximate_laplace": "approximatelaplace"}


def get_fit_method(value: Any) -> FitMethod:
    """The registered method for a user's ``fit_method`` (case-, space- and underscore-insensitive)."""
    if not isinstance(value, str):
        raise InputTypeError(f"fit_method: expected one of {', '.join(METHODS)}, got {value!r}")
    key = value.strip().lower().replace(" ", "").replace("-", "")
    key = _ALIASES.get(key, key.replace("_", ""))
    if key not in METHODS:
        raise InputError(f"fit_method: unknown value '{value}'; use one of {', '.join(METHODS)}")
    return METHODS[key]


_COVARIANCE_METHODS = ("conditional", "jointhessian")
_EVERY_METHOD = ("covariance_method", "check_hessian", "verbose")  # options every fit method reads
MAX_AGQ = 100  # nodes per level: lme4's GHrule takes up to 100


def _positive_int(value: Any, arg: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputTypeError(f"{arg}: expected an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise InputError(f"{arg}: must be >= {minimum}, got {value}")
    return int(value)


def _flag(v, arg: str) -> bool:
    """A logical option: True/False (Python's or NumPy's) or, as MATLAB's logicals, 1/0."""
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, int | np.integer) and v in (0, 1):
        return bool(v)
    raise InputTypeError(f"{arg}: expected True or False (or 1/0), got {v!r}")


def make_settings(
    method: FitMethod, options: dict[str, Any], n: int | None = None, keywords: tuple[str, ...] = ()
) -> FitSettings:
    """Validate the fit options of ``fitglme`` for ``method`` (before any work).

    An option the chosen method does not read is refused (naming the methods that do), rather
    than silently ignored; ``covariance_method``, ``check_hessian`` and ``verbose`` apply to every
    method. ``n`` (rows used) is
    checked against ``mu_start`` when known; see :func:`check_mu_start` for the later check.
    ``keywords``: the caller's own keyword arguments, named where an unknown option misspells one
    (MATLAB's ``Distribution`` for ``distribution``)."""
    known = {f for f in FitSettings.__dataclass_fields__}
    unknown = set(options) - known
    if unknown:
        first = sorted(unknown)[0]
        fix = hint(first, known | set(keywords))
        if fix:
            raise InputError(f"unknown option {first}{fix}")
        raise InputError(
            f"unknown option(s) {', '.join(sorted(unknown))}; supported: {', '.join(sorted(known))}"
        )
    for opt in options:
        if opt == "dispersion_flag" and _flag(options[opt], opt) is False:
            continue  # MATLAB ignores it outside PL: False is what every other method does
        if opt not in _EVERY_METHOD and opt not in method.options:
            users = [m.name for m in METHODS.values() if opt in m.options]
            raise InputError(
                f"{opt}: applies to fit_method={' or '.join(repr(u) for u in users)}, "
                f"not '{method.name}'; leave it out or change fit_method"
            )
    out: dict[str, Any] = {}
    if "covariance_method" in options:
        v = options["covariance_method"]
        key = v.lower().replace("_", "").replace(" ", "") if isinstance(v, str) else None
        if key not in _COVARIANCE_METHODS:
            raise InputError(
                f"covariance_method: unknown value {v!r}; use one of {', '.join(_COVARIANCE_METHODS)}"
            )
        if key == "jointhessian" and method.name not in ("laplace", "quadrature"):
            raise InputError("covariance_method: 'jointhessian' needs fit_method='laplace' or 'quadrature'")
        out["covariance_method"] = key
    if "check_hessian" in options:
        out["check_hessian"] = _flag(options["check_hessian"], "check_hessian")
    if "verbose" in options:
        v = options["verbose"]
        if not isinstance(v, bool | np.bool_ | int | np.integer):
            raise InputTypeError(f"verbose: expected 0, 1, 2, False or True, got {v!r}")
        if int(v) not in (0, 1, 2):
            raise InputError(
                f"verbose: use 0 (silent), 1 (a line per iteration) or 2 (also inner iterations), got {v}"
            )
        out["verbose"] = int(v)
    if "dispersion_flag" in options:
        out["dispersion_flag"] = _flag(options["dispersion_flag"], "dispersion_flag")
    if "pl_iterations" in options:
        out["pl_iterations"] = _positive_int(options["pl_iterations"], "pl_iterations")
    if "init_pl_iterations" in options:
        out["init_pl_iterations"] = _positive_int(options["init_pl_iterations"], "init_pl_iterations", 0)
    if "n_agq" in options:
        out["n_agq"] = _positive_int(options["n_agq"], "n_agq")
        if out["n_agq"] > MAX_AGQ:
            raise InputError(
                f"n_agq: at most {MAX_AGQ} quadrature nodes (as lme4), got {out['n_agq']}; "
                "9 to 25 are usually plenty"
            )
    if "pl_tolerance" in options:
        v = options["pl_tolerance"]
        if isinstance(v, bool) or not isinstance(v, int | float | np.floating | np.integer):
            raise InputTypeError(f"pl_tolerance: expected a positive number, got {v!r}")
        if not (np.isfinite(v) and v > 0):
            raise InputError(f"pl_tolerance: must be a positive finite number, got {v}")
        out["pl_tolerance"] = float(v)
    if options.get("mu_start") is not None:  # (an explicit None: the default start)
        v = options["mu_start"]
        from .design.checks import as_vector, real_values, vector_input

        v = vector_input(v, "mu_start")
        mu = np.array(as_vector(real_values(v, "mu_start", "a numeric vector"), "mu_start"), dtype=float)
        if n is not None and mu.size != n:
            raise InputError(f"mu_start: expected {n} values (one per row used), got {mu.size}")
        if not np.all(np.isfinite(mu)):
            raise InputError("mu_start: contains NaN or infinite values")
        mu.setflags(write=False)
        out["mu_start"] = mu
    return FitSettings(**out)


def align_mu_start(settings: FitSettings, given, design) -> FitSettings:
    """``settings`` with a ``mu_start`` given as a pandas Series of one value per row used matched
    to those rows by label, as weights and offsets are (it was read by position); a Series whose
    labels are not those rows' is refused (:func:`.design.checks.aligned`)."""
    from .design.checks import vector_input

    given = vector_input(given, "mu_start")
    if not isinstance(given, pd.Series) or len(given) != design.n:
        return settings
    by_label = design.per_row(given, "mu_start")
    if by_label is given:
        return settings
    from .design.checks import real_values

    mu = np.array(real_values(by_label, "mu_start", "a numeric vector"), dtype=float).reshape(-1)
    mu.setflags(write=False)
    return replace(settings, mu_start=mu)


def check_mu_start(settings: FitSettings, n: int, dist=None, link=None) -> None:
    """The options that depend on the data (known once the design is built): ``mu_start`` has one
    value per row used, inside the family's open range of means (``dist.mean_range``) and the
    link's domain (g(mu) finite: a negative mean under a log link);
    pseudo-likelihood starts (``init_pl_iterations``) exist for MATLAB's families only."""
    mu = settings.mu_start
    if mu is not None and mu.size != n:
        raise InputError(f"mu_start: expected {n} values (one per row used), got {mu.size}")
    if dist is None:
        return
    if mu is not None:
        lo, hi = dist.mean_range
        bad = np.flatnonzero((mu <= lo) | (mu >= hi))
        if bad.size:
            raise InputError(
                f"mu_start: {dist.name} means must lie in ({lo:g}, {hi:g}); {bad.size} value(s) do not "
                f"(first: position {bad[0]}, value {mu[bad[0]]:g}). Pass means inside the range, "
                "or leave mu_start out for MATLAB's start"
            )
        if link is not None:
            with np.errstate(all="ignore"):
                bad = np.flatnonzero(~np.isfinite(link.link_np(mu)))
            if bad.size:
                raise InputError(
                    f"mu_start: the {link.name} link is not defined at {bad.size} value(s) "
                    f"(first: position {bad[0]}, value {mu[bad[0]]:g}). Pass means in the link's "
                    "domain, or leave mu_start out for MATLAB's start"
                )
    if settings.init_pl_iterations and dist.name not in PL_FAMILIES:
        raise InputError(
            f"init_pl_iterations: pseudo-likelihood starts exist for {', '.join(PL_FAMILIES)}, "
            f"not '{dist.name}'; leave it out (start from the GLM fit)"
        )
