"""``fitglme``: validate every argument, build the design, fit by the chosen method (the PyMC model
is built on first use; see ``fitting.Workspace``)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping

import pandas as pd

from .covariance_patterns import check_bayes_patterns, check_pattern_input, parse_patterns
from .design import build_design, check_random_effects_count
from .errors import GLMMWarning, InputError, InputTypeError, warn
from .families import check_custom_link, get_distribution, get_link, link_warning, unit_link_warning
from .fit_methods import METHODS, align_mu_start, check_mu_start, get_fit_method, make_settings
from .fitting import Workspace, fit
from .formula import parse_formula
from .model import GeneralizedLinearMixedModel

__all__ = ["fitglme", "fitglme_bayes"]

CODINGS = ("reference", "effects", "full")


@functools.cache
def _keywords(fn) -> tuple[str, ...]:
    """``fn``'s own keyword arguments (those an unknown option may misspell)."""
    return tuple(p for p in inspect.signature(fn).parameters if p not in ("data", "formula", "options"))


def _choice(value, allowed, arg: str) -> str:
    if not isinstance(value, str):
        raise InputTypeError(f"{arg}: expected one of {', '.join(allowed)}, got {value!r}")
    key = value.strip().lower().replace("_", "").replace(" ", "")
    for a in allowed:
        if key == a.replace("_", ""):
            return a
    raise InputError(f"{arg}: unknown value '{value}'; use one of {', '.join(allowed)}")


def fitglme(
    data: pd.DataFrame,
    formula: str,
    *,
    distribution: str = "normal",
    link: str | None = None,
    fit_method: str = "laplace",
    dummy_var_coding: str = "reference",
    binomial_size=None,
    weights=None,
    offset=None,
    exclude=None,
    covariance_pattern=None,
    **options,
) -> GeneralizedLinearMixedModel:
    """Fit a generalized linear mixed-effects model (MATLAB ``fitglme``).

    Parameters
    ----------
    data : pandas.DataFrame
        One row per observation; never modified.
    formula : str
        ``'y ~ fixed + (expr | group) + ...'`` in Wilkinson/lme4 notation. Functions are numpy's
        (``np.log(x)``); names with spaces go in backticks, also as grouping variables
        (``(1 | `g id`)``). ``offset(expr)`` adds ``expr`` to the linear predictor with
        coefficient 1, as in lme4 (inside ``offset()`` bare ``log``/``exp``/``sqrt`` are accepted
        too), and adds to the ``offset`` argument.
    distribution : {'normal', 'binomial', 'poisson', 'gamma', 'inverse_gaussian', 'negative_binomial'}
        Conditional distribution of y given the random effects (case-insensitive; MATLAB's
        'InverseGaussian' and 'Gaussian' are accepted).
    link : str, float or custom link, optional
        'identity', 'log', 'logit', 'probit', 'comploglog', 'loglog', 'reciprocal'; a number P for
        the power link mu^P (0 is log); or a custom link (:func:`ppl_glmm.custom_link`, or a
        mapping with 'inverse' built from PyTensor ops and 'link'). Default: canonical (gamma -1,
        inverse Gaussian -2, as MATLAB).
    fit_method : str
        A registered fit method (``ppl_glmm.fit_methods.METHODS``): 'laplace' (lme4 nAGQ=1,
        default), 'approximatelaplace' (nAGQ=0), 'reml' (normal only; lmer REML=TRUE), MATLAB's
        pseudo-likelihood 'mpl' and 'rempl' (iterated linear mixed models of pseudo-data), and the
        others documented in docs/api.md.
    dummy_var_coding : {'reference', 'effects', 'full'}
    binomial_size, weights, offset : array or column name, optional
        Trials per row (the response then holds success counts), prior weights, offset.
    exclude : bool mask or integer positions, optional
        Rows to leave out.
    covariance_pattern : str, boolean matrix, or a list of them, optional
        MATLAB's ``CovariancePattern``: the structure of each random-effects term's covariance Psi_r,
        one entry per term in formula order (after ``||`` and ``/`` are expanded), or one value
        for every term. 'FullCholesky' (default; 'Isotropic' for a one-column term), 'Full' (the
        same fit, reported as 'Full'), 'Diagonal', 'Isotropic' (Psi = s^2 I), 'CompSymm' (one
        variance, one common correlation), or a square symmetric boolean matrix (True where Psi may
        be non-zero; True diagonal) that is block diagonal after a permutation. Case-insensitive.
        Pass a matrix as a numpy array (a list of lists of booleans is read as one matrix).
    **options
        ``covariance_method``: 'conditional' (default) or 'jointhessian' (Laplace and quadrature); the
        options of the fit method (``FitSettings``). Pseudo-likelihood ('mpl', 'rempl'):
        ``dispersion_flag`` (estimate sigma^2 for binomial and Poisson; default False),
        ``pl_iterations`` (maximum iterations, 100), ``pl_tolerance`` (relative change of eta,
        1e-8), ``mu_start`` (starting means, one per row used). Laplace and ApproximateLaplace:
        ``init_pl_iterations`` (start from that many MPL iterations instead of the GLM fit;
        default 0), ``mu_start``. Every method: ``check_hessian`` (MATLAB's CheckHessian; default
        False): warn (ConvergenceWarning, also in ``model.warnings``) when the Hessian of the
        objective at the optimum -- for 'mpl'/'rempl' the final pseudo-data LME's -- is not
        positive definite; ``verbose`` (MATLAB's Verbose: 0/False, 1/True or 2): print the
        optimizer's progress per iteration to stdout (2 adds the inner iterations and, for
        pseudo-likelihood, each LME fit's iterations); it changes nothing in the fit.

    Returns
    -------
    GeneralizedLinearMixedModel

    Raises
    ------
    InputError
        (a ``ValueError``) before any fitting work, for a bad argument or data the model cannot be
        estimated from, naming the column, the rows (by ``data.index``) and the fix: non-finite
        values (also made by a transform such as ``np.log(0)``), a constant response, a grouping
        factor with one level, a normal model with as many random effects as observations in a
        term or fitting the response exactly, separation (a fixed effect whose ML estimate is
        infinite), duplicate column names, R syntax (``^``, ``log(x)``, ``cbind``).
    InputTypeError
        (a ``TypeError``) for an argument of the wrong type.
    """
    ws, method_key, opts = _prepare(
        data,
        formula,
        distribution=distribution,
        link=link,
        fit_method=fit_method,
        dummy_var_coding=dummy_var_coding,
        binomial_size=binomial_size,
        weights=weights,
        offset=offset,
        exclude=exclude,
        options=options,
        covariance_pattern=covariance_pattern,
        keywords=_keywords(fitglme),
    )
    result = fit(ws, method_key, ws.design.y, settings=opts)
    model = GeneralizedLinearMixedModel(ws, result, opts)
    model._judge_group_separation(ws.design.group_separation)
    return model


def _prepare(
    data,
    formula,
    *,
    distribution,
    link,
    fit_method,
    dummy_var_coding,
    binomial_size,
    weights,
    offset,
    exclude,
    options,
    covariance_pattern=None,
    bayes: bool = False,
    keywords: tuple[str, ...] = (),
) -> tuple[Workspace, str, dict]:
    """Validate every argument, build the design and the workspace (no fitting; the PyMC model is
    built on first use)."""
    check_pattern_input(covariance_pattern)
    method = get_fit_method(fit_method)
    method_key = method.name
    opts = make_settings(method, options, keywords=keywords)
    coding = _choice(dummy_var_coding, CODINGS, "dummy_var_coding")
    dist = get_distribution(distribution)
    if method.families is not None and dist.name not in method.families:
        usable = [m.name for m in METHODS.values() if m.families is None or dist.name in m.families]
        hint = " (the restricted fit of other distributions is 'rempl')" if "rempl" in usable else ""
        raise InputError(
            f"fit_method: '{method.name}' applies to distribution {' or '.join(method.families)}, "
            f"not '{dist.name}'; use one of {', '.join(repr(u) for u in usable)}{hint}"
        )
    lnk = get_link(link, dist)
    message = link_warning(dist, lnk)
    if message is not None:
        warn(message, GLMMWarning)
    parsed = parse_formula(formula)
    if not parsed.random:
        raise InputError("formula: no random-effects term such as '(1 | group)'; a GLMM needs at least one")
    design = build_design(
        data,
        parsed,
        dist,
        coding=coding,
        binomial_size=binomial_size,
        weights=weights,
        offset=offset,
        exclude=exclude,
        link=lnk,
    )
    check_custom_link(lnk, dist, design.y, design.binomial_size)
    message = unit_link_warning(dist, lnk, design.y, design.weights)
    if message is not None:
        warn(message, GLMMWarning)
    opts = align_mu_start(opts, options.get("mu_start"), design)
    check_mu_start(opts, design.n, dist, lnk)
    if method.check is not None:
        method.check(design, dist, opts)
    patterns = parse_patterns(covariance_pattern, design.terms)
    check_random_effects_count(design, patterns)
    if bayes:
        check_bayes_patterns(patterns)
    return Workspace.build(design, dist, lnk, patterns), method_key, opts


def fitglme_bayes(
    data: pd.DataFrame,
    formula: str,
    *,
    distribution: str = "normal",
    link: str | None = None,
    fit_method: str = "laplace",
    dummy_var_coding: str = "reference",
    binomial_size=None,
    weights=None,
    offset=None,
    exclude=None,
    priors: Mapping | None = None,
    draws: int = 1000,
    tune: int | None = None,
    chains: int = 4,
    cores: int | None = None,
    sampler: str = "pymc",
    init: str = "ml",
    target_accept: float = 0.9,
    rng=None,
    progress: bool = True,
    noncentered: bool | str = "auto",
    covariance_pattern=None,
    **options,
):
    """Fit the same model as :func:`fitglme` by NUTS: the Bayesian version of its PyMC model.

    Takes every :func:`fitglme` argument, plus the sampler's (see
    :meth:`GeneralizedLinearMixedModel.fit_bayes`). With ``init='ml'`` (default) the ML fit is made
    first (by ``fit_method``) and warms NUTS; with ``init='auto'`` no ML fit is made and PyMC's own
    initialisation is used. Returns a :class:`~ppl_glmm.bayes.BayesianGLMM`.
    """
    from .bayes.fit import check_noncentered, check_settings, fit_bayes

    sampler_args = dict(
        draws=draws,
        tune=tune,
        chains=chains,
        cores=cores,
        sampler=sampler,
        init=init,
        target_accept=target_accept,
        rng=rng,
        progress=progress,
    )
    st = check_settings(**sampler_args)  # refuse bad sampler settings before any work
    noncentered = check_noncentered(noncentered)
    sampler_args["rng"] = st.seed  # draw the seed once: a Generator passed as rng advances once
    ws, method_key, opts = _prepare(
        data,
        formula,
        distribution=distribution,
        link=link,
        fit_method=fit_method,
        dummy_var_coding=dummy_var_coding,
        binomial_size=binomial_size,
        weights=weights,
        offset=offset,
        exclude=exclude,
        options=options,
        covariance_pattern=covariance_pattern,
        bayes=True,
        keywords=_keywords(fitglme_bayes),
    )
    if st.init == "ml":
        glme = GeneralizedLinearMixedModel(ws, fit(ws, method_key, ws.design.y, settings=opts), opts)
        glme._judge_group_separation(ws.design.group_separation)
        return glme.fit_bayes(priors=priors, noncentered=noncentered, **sampler_args)
    if opts.dispersion_flag and not ws.dist.has_dispersion:  # (no ML fit here to say so)
        from .bayes.fit import warn_no_dispersion

        warn_no_dispersion(ws.dist.name)
    formula_text = GeneralizedLinearMixedModel._formula_of(ws)
    return fit_bayes(ws, None, formula_text, priors=priors, noncentered=noncentered, **sampler_args)
