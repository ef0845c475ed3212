"""``GeneralizedLinearMixedModel``: the fitted model with MATLAB's properties and methods.

A thin object over a :class:`~ppl_glmm.fitting.Workspace` (design, PyMC model, compiled functions;
shared with refits) and a frozen :class:`~ppl_glmm.results.FitResult`. Every method delegates to
one function in inference, simulate or fitting; nothing on the object changes after construction.
"""

from __future__ import annotations

import functools
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import inference
from .design import check_new_response, judge_group_separation
from .design.checks import as_vector
from .display import model_display, model_html
from .errors import FitError, GLMMWarning, InputError, InputTypeError, warn
from .fit_methods import METHODS, FitSettings
from .fitting import Workspace, fit
from .keywords import check_method_keywords, hint
from .results import FitRecord, FitResult
from .simulate import seed_from, simulate_fitted_rows, simulate_new_rows

__all__ = ["GeneralizedLinearMixedModel"]


def _blas_limited(method):
    """Run a method under the model's BLAS thread limit (``FitRecord.blas_limit``): one thread for
    a small dense factor, where thread wake-ups cost more than the work."""

    @functools.wraps(method)
    def limited(self, *args, **kwargs):
        with self._fit.blas_limit():
            return method(self, *args, **kwargs)

    return limited


@check_method_keywords
class GeneralizedLinearMixedModel:
    """A fitted GLMM (Laplace or ApproximateLaplace ML, REML, pseudo-likelihood); see ``fitglme``."""

    def __init__(self, ws: Workspace, result: FitResult, settings: FitSettings):
        self._fit = FitRecord(ws, result, settings)

    # the record's parts, for the methods below (inference modules take the record itself)
    @property
    def _ws(self) -> Workspace:
        return self._fit.ws

    @property
    def _result(self) -> FitResult:
        return self._fit.result

    @property
    def _settings(self) -> FitSettings:
        return self._fit.settings

    # ---- basic properties ------------------------------------------------------------------
    @property
    def formula(self) -> str:
        return self._formula_of(self._ws)

    @staticmethod
    def _formula_of(ws: Workspace) -> str:
        """The model's formula with every random-effects block written out."""
        pf = ws.design.formula
        parts = [pf.fixed] + [f"offset({o})" for o in pf.offsets] + [str(t) for t in pf.random]
        return f"{pf.response} ~ " + " + ".join(parts)

    @property
    def response_name(self) -> str:
        return self._ws.design.formula.response

    @property
    def distribution(self) -> str:
        return self._ws.dist.name

    @property
    def link(self) -> str:
        return self._ws.link.name

    @property
    def fit_method(self) -> str:
        return self._result.fit_method

    @property
    def num_observations(self) -> int:
        return self._ws.design.n

    @property
    def num_coefficients(self) -> int:
        return len(self._result.beta)

    @property
    def num_estimated_coefficients(self) -> int:
        return self.num_coefficients

    @property
    def num_random_effects(self) -> int:
        return self._ws.design.q

    @property
    def num_covariance_parameters(self) -> int:
        """Covariance-pattern parameters (theta entries by default), plus 1 for an estimated
        dispersion or negative binomial's theta."""
        return self._ws.patterns.n_params + int(self.dispersion_estimated or self.nb_theta is not None)

    @property
    def dfe(self) -> int:
        return self.num_observations - self.num_coefficients

    @property
    def num_missing(self) -> int:
        return int(self._ws.design.missing.sum())

    @property
    def num_excluded(self) -> int:
        d = self._ws.design
        return int((d.excluded & ~d.missing).sum())

    @property
    def observation_info(self) -> pd.DataFrame:
        """Per input row: Weights, Excluded, Missing, Subset, BinomSize (MATLAB ObservationInfo).

        Weights are the prior weights as given, in every row (classreg keeps the weight vector
        whole; NaN where the weight itself was missing); Excluded is ``exclude`` as given (a row can
        be both Excluded and Missing); BinomSize is 1 in unused rows (MATLAB). The index is the
        input table's (MATLAB's row names are the ObservationNames)."""
        d = self._ws.design
        n_total = d.subset.size
        size = np.ones(n_total)
        size[d.subset] = d.binomial_size
        if d.input_weights is not None:
            w = d.input_weights.copy()
        else:  # a design built without the input table: unused rows show 1
            w = np.ones(n_total)
            w[d.subset] = d.weights
        return pd.DataFrame(
            {
                "Weights": w,
                "Excluded": d.excluded,
                "Missing": d.missing,
                "Subset": d.subset,
                "BinomSize": size,
            },
            index=d.data.index.copy() if d.data is not None else None,
        )

    @property
    def observation_names(self) -> list[str]:
        """The input table's index as strings, one per input row (MATLAB ObservationNames)."""
        data = self._ws.design.data
        if data is None:
            return [str(i) for i in range(self._ws.design.subset.size)]
        return [str(i) for i in data.index]

    @property
    def variables(self) -> pd.DataFrame:
        """A copy of the whole input table, every row and column (MATLAB Variables); the
        caller's DataFrame is never returned. A refitted model keeps its original's table (its new
        response is :meth:`response`)."""
        data = self._ws.design.data
        if data is None:
            raise FitError("variables: this model's design holds no input table")
        return data.copy(deep=True)

    @property
    def variable_names(self) -> list[str]:
        """The input table's column names (MATLAB VariableNames)."""
        data = self._ws.design.data
        return [str(c) for c in data.columns] if data is not None else list(self._ws.design.predictors)

    @property
    def num_variables(self) -> int:
        return len(self.variable_names)

    @property
    def predictor_names(self) -> list[str]:
        """The columns the right-hand side uses, grouping variables and ``offset()`` variables
        included (MATLAB: PredictorTypes 'mixed'), in the input table's column order."""
        d = self._ws.design
        used = set(d.predictors)
        if d.data is None:
            return list(d.predictors)
        return [str(c) for c in d.data.columns if c in used]

    @property
    def num_predictors(self) -> int:
        return len(self.predictor_names)

    # ---- estimates -------------------------------------------------------------------------
    @property
    def coefficient_names(self) -> list[str]:
        return list(self._ws.design.fixed.names)

    @property
    def coefficient_covariance(self) -> np.ndarray:
        """Cov(beta-hat) by the method chosen at fit time (default 'conditional')."""
        return self._cov_beta.copy()

    @cached_property
    def _cov_beta(self) -> np.ndarray:
        if self._settings.covariance_method == "jointhessian":
            return inference.joint_hessian_cov_beta(self._fit)
        return self._result.cov_beta

    @property
    def coefficients(self) -> pd.DataFrame:
        """Name, Estimate, SE, tStat, DF (= N - p), pValue, Lower, Upper (95%); a new table per call."""
        return self.fixed_effects(alpha=0.05)

    def fixed_effects(self, dfmethod: str = "residual", alpha: float = 0.05) -> pd.DataFrame:
        """MATLAB ``fixedEffects`` stats: Name, Estimate, SE, tStat, DF, pValue, Lower, Upper, with
        DF = N - p (``dfmethod='residual'``) or inf ('none')."""
        _check_alpha(alpha)
        df = inference.degrees_of_freedom(dfmethod, self.dfe)
        se = np.sqrt(np.diag(self._cov_beta))
        return inference.coefficient_table(self.coefficient_names, self._result.beta, se, df, alpha)

    @property
    def log_likelihood(self) -> float:
        return self._result.log_likelihood

    @property
    def model_criterion(self) -> pd.DataFrame:
        """AIC, BIC, LogLikelihood, Deviance; BIC uses N - p observations for REML/REMPL (MATLAB)."""
        k = self.num_coefficients + self.num_covariance_parameters
        n = self.num_observations - (self.num_coefficients if METHODS[self.fit_method].restricted else 0)
        return inference.model_criterion(self.log_likelihood, k, n)

    @property
    def dispersion(self) -> float:
        return self._result.sigma**2

    @property
    def dispersion_estimated(self) -> bool:
        """False exactly when sigma is fixed at 1 (MATLAB): binomial, Poisson and negative
        binomial, except binomial/Poisson fitted by pseudo-likelihood with ``dispersion_flag=True``
        (whose pseudo-data LME's sigma is then the ancillary parameter)."""
        if METHODS[self.fit_method].pseudo:
            return self._result.ancillary is not None
        return self._ws.dist.has_dispersion

    @property
    def _quasi_dispersion(self) -> bool:
        """A dispersion estimated for a family that has none (binomial or Poisson with
        ``dispersion_flag=True``): a quasi-likelihood scale, with no distribution to draw from."""
        return self.dispersion_estimated and not self._ws.dist.has_dispersion

    @property
    def nb_theta(self) -> float | None:
        """Negative binomial's theta (NB2 size: Var = mu + mu^2 / theta); None for other families."""
        return self._result.ancillary if self._ws.dist.name == "negative_binomial" else None

    @property
    def singular(self) -> bool:
        """True for a boundary fit (a random-effects variance at zero)."""
        return self._result.singular

    @property
    def converged(self) -> bool:
        return self._result.optimization.converged

    @property
    def optimization(self):
        """The optimiser's record: iterations, evaluations, gradient, time."""
        return self._result.optimization

    @property
    def warnings(self) -> tuple[str, ...]:
        return self._result.warnings

    @_blas_limited
    def covariance_parameters(self, alpha: float = 0.05, method: str = "wald", *, nsim=None, **bootstrap):
        """(psi, dispersion, stats): psi[r] = sigma^2 Lambda_r Lambda_r'; stats one table per term
        (Group, Name1, Name2, Type, Estimate, Lower, Upper) and the Error table.

        ``method='wald'`` (MATLAB's): Lower/Upper from a normal quantile on the natural scale (log SD,
        log((1+rho)/(1-rho)), log sigma). ``method='profile'`` (lme4's ``confint(method='profile')``):
        {v : 2 (logL_hat - max logL given v) <= chi2_{1,1-alpha}} for each SD, correlation, sigma
        and negative binomial's theta (docs/algorithms.md); not for pseudo-likelihood fits.
        ``method='bootstrap'``: intervals from a parametric bootstrap of ``nsim`` replicates
        (default 1000); ``bootstrap`` takes :func:`ppl_glmm.parametric_bootstrap`'s run arguments
        (``rng``, ``n_jobs``, ``backend``, ``client``, ``batch_size``, ``progress``), ``ci`` (the
        interval: 'percentile' default, 'basic', 'normal', 'shortest'), ``converged_only``, and
        ``result`` (an earlier default-statistic bootstrap of this model to reuse)."""
        _check_alpha(alpha)
        method = _check_covariance_method(method)
        _check_bootstrap_args(method, nsim, bootstrap, ("alpha", "method"))
        if method == "profile":
            inference.check_profile(self._fit)
        psis = self._ws.layout.covariances(self._result.theta, self._result.sigma)
        if method == "bootstrap":
            from .bootstrap import bootstrap_covariance_intervals

            opts = _bootstrap_options(nsim, bootstrap)
            return psis, self.dispersion, bootstrap_covariance_intervals(self, alpha=alpha, **opts)
        return psis, self.dispersion, self._covariance_tables(alpha, method)

    def _covariance_tables(self, alpha, method: str = "wald"):
        if method == "profile":
            return inference.profile_tables(self._fit, alpha)
        return inference.covariance_tables(self._fit, alpha, natural=lambda: self._natural_cov)

    @cached_property
    def _natural_cov(self) -> np.ndarray | None:
        """The Wald covariance of the natural parameters (:func:`inference.natural_covariance`:
        2P gradient evaluations, 0.5-0.9 s at 100,000 rows), computed once per model; read-only."""
        cov = inference.natural_covariance(self._fit)
        if cov is not None:
            cov.setflags(write=False)
        return cov

    @cached_property
    def _joint(self):
        """The joint [beta; b] covariance pieces at the mode (computed once, on first use; not
        pickled: it holds an engine problem, and is rebuilt on first use after unpickling)."""
        return inference.joint_covariance(self._fit)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_joint", None)
        state.pop("_natural_cov", None)  # (recomputed on first use, read-only again)
        return state

    @_blas_limited
    def random_effects(self, dfmethod: str = "residual", alpha: float = 0.05) -> pd.DataFrame:
        """MATLAB ``randomEffects`` stats: Group, Level, Name, Estimate, SEPred, tStat, DF, pValue,
        Lower, Upper, one row per random effect in MATLAB's b order (terms in formula order,
        level-major within a term).

        Estimate is the conditional mode b-hat; SEPred = sqrt(diag Cov(b-hat - b)) from the joint
        [beta; b] covariance sigma^2 V (it includes the uncertainty of beta-hat, not of the
        covariance parameters; lme4's ``condVar``, without beta's part, is :meth:`cond_var`);
        tStat = Estimate / SEPred; DF = N - p ('residual') or inf ('none'); Lower/Upper =
        Estimate -/+ t_{1-alpha/2, DF} SEPred."""
        _check_alpha(alpha)
        df = inference.degrees_of_freedom(dfmethod, self.dfe)
        return inference.random_effects_table(self._fit, self._joint, df, alpha)

    @_blas_limited
    def cond_var(self) -> list[np.ndarray]:
        """lme4's ``condVar``: per random-effects term (formula order, as ``covariance_parameters``'
        psi), an (n_levels x q_r x q_r) array of Cov(b_level | y, beta-hat, theta-hat) =
        sigma^2 Lambda H^-1 Lambda' blocks, levels in the order of :meth:`random_effects`. Unlike
        MATLAB's SEPred it treats beta-hat as known, so its diagonal is never larger than SEPred^2.
        (lme4 builds H with Fisher weights, equal to the observed information used here for
        canonical links.)"""
        return [v.copy() for v in self._joint.conditional_variances()]

    @_blas_limited
    def coef_ci(
        self,
        alpha: float = 0.05,
        dfmethod: str = "residual",
        *,
        method: str = "wald",
        nsim=None,
        **bootstrap,
    ) -> tuple[np.ndarray, np.ndarray]:
        """MATLAB ``coefCI``: (p x 2 fixed-effects intervals, q x 2 random-effects intervals), each
        row [Lower, Upper] as in :meth:`fixed_effects` and :meth:`random_effects`.
        ``method='bootstrap'``: the fixed-effects intervals from a parametric bootstrap of ``nsim``
        replicates (default 1000; ``bootstrap``: the run arguments of :meth:`covariance_parameters`),
        ``dfmethod`` then unused; the random-effects intervals stay MATLAB's (SEPred-based)."""
        _check_alpha(alpha)
        df = inference.degrees_of_freedom(dfmethod, self.dfe)
        if not isinstance(method, str) or method.lower() not in ("wald", "bootstrap"):
            raise InputError(f"method: use 'wald' (MATLAB's t intervals) or 'bootstrap', got {method!r}")
        method = method.lower()
        _check_bootstrap_args(method, nsim, bootstrap, ("alpha", "dfmethod", "method"))
        if method == "bootstrap":
            from .bootstrap import bootstrap_coefficient_intervals

            opts = _bootstrap_options(nsim, bootstrap)
            fe = bootstrap_coefficient_intervals(self, alpha=alpha, **opts)[["Lower", "Upper"]].to_numpy()
        else:
            fe = self.fixed_effects(dfmethod, alpha)[["Lower", "Upper"]].to_numpy()
        re = inference.random_effects_interval(self._fit, self._joint, df, alpha)
        # arrays of the caller's own (pandas' copy-on-write made to_numpy() views read-only)
        return np.array(fe, dtype=float), np.array(re, dtype=float)

    @_blas_limited
    def coef_test(self, H=None, c=None, dfmethod: str = "residual", K=None) -> inference.CoefTestResult:
        """MATLAB ``coefTest``: the Wald F test of H beta + K b = c; returns (pValue, F, DF1, DF2).

        ``H`` (M x p) defaults to every fixed effect but the intercept (all of them without an
        intercept column); ``c`` (M values) to 0; ``K`` (M x q, b in :meth:`random_effects`' order;
        MATLAB's REContrast) to none. [H, K] is reduced to full row rank r, and an inconsistent
        system is refused. F = d' Sigma^-1 d / r with d = H beta-hat + K b-hat - c and Sigma from
        Cov(beta-hat) (the fit's covariance method) or, with K, the joint [beta; b] covariance.
        DF1 = r, DF2 = N - rank(X) ('residual') or inf ('none')."""
        df = inference.degrees_of_freedom(dfmethod, self.dfe)
        names = self.coefficient_names
        keep = [j for j, n in enumerate(names) if n != "(Intercept)"]
        default = np.eye(len(names))[keep]
        if H is None and not keep:
            raise InputError("H: the model has only an intercept; give H to test it (e.g. H=[[1]])")
        Hm, cv, Km = inference.check_hypothesis(H, c, K, len(names), self.num_random_effects, default)
        return inference.coef_test(self._fit, self._cov_beta, lambda: self._joint, Hm, cv, Km, df)

    @_blas_limited
    def anova(self, dfmethod: str = "residual") -> pd.DataFrame:
        """MATLAB ``anova``: Term, FStat, DF1, DF2, pValue, one row per fixed-effects term
        (including '(Intercept)'), the marginal (type III) F test of the term's coefficients:
        F = b_T' Cov(beta-hat)_TT^-1 b_T / r_T, DF1 = r_T, DF2 = N - rank(X) or inf."""
        df = inference.degrees_of_freedom(dfmethod, self.dfe)
        return inference.anova_table(self._fit, self._cov_beta, df)

    def fitted(self, conditional: bool = True) -> np.ndarray:
        """Fitted means g^-1(eta) for every input row (NaN for unused rows); proportions for binomial."""
        _check_flag(conditional, "conditional")
        d = self._ws.design
        eta = self._result.eta if conditional else d.X @ self._result.beta + d.offset
        mu = self._ws.dist.clip_mean(self._ws.link.inverse_np(eta))
        return self._full_length(mu)

    def response(self) -> np.ndarray:
        """Response for every input row on MATLAB's scale (proportions for binomial), NaN if unused.
        MATLAB's second output, the binomial sizes, is :attr:`binomial_size`."""
        return self._full_length(self._result.y)

    @property
    def binomial_size(self) -> np.ndarray | None:
        """BinomialSize for every input row (NaN if unused), for a binomial model; None otherwise
        (MATLAB's ``[y, binomialsize] = response(glme)``)."""
        if self._ws.dist.name != "binomial":
            return None
        return self._full_length(self._ws.design.binomial_size)

    def residuals(self, conditional: bool = True, kind: str = "raw") -> np.ndarray:
        """Residuals for every input row (NaN if unused), MATLAB ``residuals``: 'raw' y - mu,
        'pearson' (y - mu) / (sigma sqrt(v(mu) / w_eff)), or 'deviance' sign(y - mu)
        sqrt(w_eff d(y, mu)) (lme4's); mu with b-hat (conditional) or b = 0. y and mu are
        proportions for binomial; w_eff = prior weight x BinomialSize for binomial."""
        _check_flag(conditional, "conditional")
        kind = inference.check_residual_kind(kind)
        return self._full_length(inference.residuals(self._fit, bool(conditional), kind))

    def design_matrix(self, kind: str = "fixed", groups=None):
        """MATLAB ``designMatrix``, one row per input row: 'fixed' gives X (ndarray, NaN rows for
        unused observations); 'random' gives Z (scipy.sparse CSR, zero rows for unused
        observations, columns in b order). With ``groups`` (random only: random-term indices,
        0-based in formula order, or grouping-variable names, or a list of them) it returns
        ``(Zsub, names)``: the columns of those terms, in the order given, and their group names."""
        key = kind.strip().lower() if isinstance(kind, str) else None
        if key not in ("fixed", "random"):
            raise InputError("kind: use 'fixed' or 'random'")
        d = self._ws.design
        if key == "fixed":
            if groups is not None:
                raise InputError("groups: selects random-effects terms; use it with kind='random'")
            out = np.full((d.subset.size, d.X.shape[1]), np.nan)
            out[d.subset] = d.X
            return out
        selected = None if groups is None else _selected_terms(d.terms, groups)
        rows = sp.csr_matrix(
            (np.ones(d.n), (np.flatnonzero(d.subset), np.arange(d.n))), shape=(d.subset.size, d.n)
        )
        Z = (rows @ d.Z()).tocsr()
        if selected is None:
            return Z
        cols = np.concatenate([np.arange(t.offset, t.offset + t.size) for t in selected])
        return Z[:, cols], [t.group for t in selected]

    # ---- goodness of fit ----------------------------------------------------------------------
    @property
    def sse(self) -> float:
        """MATLAB SSE: sum w_eff / v(F) (y - F)^2, F the conditional fitted values."""
        return inference.sums_of_squares(self._fit).sse

    @property
    def ssr(self) -> float:
        """MATLAB SSR: sum w_eff / v(F) (F - Fbar)^2, Fbar the weighted mean of F."""
        return inference.sums_of_squares(self._fit).ssr

    @property
    def sst(self) -> float:
        """MATLAB SST = SSE + SSR."""
        return inference.sums_of_squares(self._fit).sst

    @property
    def rsquared(self) -> inference.Rsquared:
        """MATLAB Rsquared: ``ordinary`` = 1 - SSE/SST, ``adjusted`` = 1 - (SSE/SST)(N - 1)/DFE."""
        return inference.rsquared(self._fit)

    # ---- model comparison --------------------------------------------------------------------
    def compare(
        self,
        alt: GeneralizedLinearMixedModel,
        check_nesting: bool = False,
        *,
        names=None,
        nsim=None,
        **simulation,
    ):
        """Likelihood-ratio test of this model against ``alt`` (MATLAB ``compare``): a DataFrame
        Model, DF, AIC, BIC, LogLik, LRStat, deltaDF, pValue, with LRStat = 2 (LL_alt - LL) and
        pValue = P(chi2_deltaDF > LRStat) in row 2. MATLAB's swap rule, refusals and nesting checks,
        and the boundary note in ``attrs``, are described in :mod:`ppl_glmm.inference.compare`.
        ``names``: the two model names (default 'GLME', 'ALTGLME').

        ``nsim``: also a simulated LRT (:func:`ppl_glmm.simulated_lrt`, as MATLAB's LME compare with
        'NSim'): ``nsim`` responses simulated from the smaller model, both refitted to each, and
        pSim = (1 + #{LR* >= LR}) / (N + 1) in a column ``pValueSim`` of row 2 (the chi-square
        pValue stays beside it); ``attrs['simulated_lrt']`` holds the whole result (failures
        included). ``simulation``: the run arguments (``rng``, ``n_jobs``, ``backend``,
        ``client``, ``batch_size``, ``progress``)."""
        if not isinstance(alt, GeneralizedLinearMixedModel):
            raise InputTypeError(
                f"alt: expected a fitted GeneralizedLinearMixedModel (from fitglme), got {type(alt).__name__}"
            )
        _check_flag(check_nesting, "check_nesting")
        run_options = {"rng", "n_jobs", "backend", "client", "batch_size", "progress"}
        unknown = sorted(set(simulation) - run_options)
        if unknown:
            fix = hint(unknown[0], run_options | {"check_nesting", "names", "nsim"})
            raise InputError(
                f"{unknown[0]}: unknown option of compare{fix}; the simulated test's options (with "
                "nsim=...) are rng, n_jobs, backend, client, batch_size and progress"
            )
        if nsim is None and simulation:
            raise InputError(f"{sorted(simulation)[0]}: applies to a simulated test; pass nsim=... as well")
        if names is None:
            names = ("GLME", "ALTGLME")
        elif (
            isinstance(names, str)
            or not isinstance(names, (list, tuple))
            or len(names) != 2
            or not all(isinstance(x, str) for x in names)
        ):
            raise InputTypeError(f"names: expected two strings, e.g. names=('m0', 'm1'), got {names!r}")
        elif names[0] == names[1]:
            raise InputError(f"names: the two models need different names, got {names!r}")
        if nsim is not None:
            from .bootstrap.runner import make_plan

            # the run arguments are checked before any work (rng when the run starts: a Generator
            # must be drawn from once only)
            make_plan(nsim, **{k: v for k, v in simulation.items() if k != "rng"})
        table = inference.compare_models(
            self._compared(names[0]), alt._compared(names[1]), bool(check_nesting)
        )
        if nsim is None:
            return table
        from .bootstrap import check_nested, simulated_lrt

        small, big = (self, alt) if table["Model"].iloc[0] == names[0] else (alt, self)
        check_nested(small, big, who="nsim")  # (simulated_lrt's own check names its arguments)
        sim = simulated_lrt(small, big, nsim, **simulation)
        attrs = dict(table.attrs)
        table["pValueSim"] = [np.nan, sim.p_sim]
        table.attrs = {**attrs, "simulated_lrt": sim}
        return table

    def _compared(self, name: str) -> inference.ComparedModel:
        crit = self.model_criterion
        return inference.ComparedModel(
            name=name,
            fit=self._fit,
            df=self.num_coefficients + self.num_covariance_parameters,
            aic=float(crit["AIC"].iloc[0]),
            bic=float(crit["BIC"].iloc[0]),
        )

    @_blas_limited
    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        *,
        conditional: bool = True,
        alpha: float = 0.05,
        simultaneous: bool = False,
        dfmethod: str = "residual",
        offset=None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """MATLAB ``predict``: (ypred, ypred_ci) with ypred the predicted means g^-1(eta + offset)
        and ypred_ci an (M x 2) [Lower, Upper] array of confidence intervals for them.

        Without ``newdata``: the rows of the data (NaN for unused rows, as :meth:`fitted`). The
        intervals are formed on eta -- pointwise t_{1-alpha/2, DF}, or Scheffe's simultaneous
        sqrt(k F_{1-alpha}(k, DF)) with k = rank(X) + q (conditional) or rank(X) -- with Var(eta)
        from the joint [beta; b] covariance (conditional) or x' Cov(beta-hat) x, and mapped
        through the inverse link (sorted so Lower <= Upper). ``offset`` defaults to zeros: the
        offset given to ``fitglme`` is not reused (MATLAB; :meth:`fitted` uses it), while the
        formula's ``offset(...)`` terms are evaluated on the rows predicted. With ``newdata``,
        ``offset`` may be an array or a column name; levels are matched by name and a new level
        contributes no random effect; columns must exist with the fitted dtypes and categorical
        predictors may use only levels seen in the fit."""
        _check_flag(conditional, "conditional")
        _check_flag(simultaneous, "simultaneous")
        _check_alpha(alpha)
        df = inference.degrees_of_freedom(dfmethod, self.dfe)
        return inference.predict(
            self._fit,
            lambda: self._joint,
            self._cov_beta,
            newdata,
            conditional=conditional,
            alpha=alpha,
            simultaneous=simultaneous,
            df=df,
            offset=offset,
        )

    def _full_length(self, v: np.ndarray) -> np.ndarray:
        d = self._ws.design
        out = np.full(d.subset.size, np.nan)
        out[d.subset] = v
        return out

    def _problem(self):
        """The engine problem loaded with this model's response (see ``FitRecord.problem``)."""
        return self._fit.problem()

    # ---- simulation and refitting ------------------------------------------------------------
    def random(
        self,
        *args,
        newdata: pd.DataFrame | None = None,
        rng=None,
        weights=None,
        binomial_size=None,
        offset=None,
    ) -> np.ndarray:
        """Simulate a response: new b ~ N(0, Psi-hat), then y | b (MATLAB ``random``).

        Call as ``random(rng=0)``, ``random(newdata)``, ``random(newdata, rng=0)`` or
        ``random(rng, newdata=tblnew)``: up to two positional arguments, a DataFrame being
        ``newdata`` and anything else ``rng`` (so ``random(tblnew, 0)`` and ``random(0, tblnew)``
        work too).

        Without ``newdata`` the result has one entry per input row (NaN for unused rows), on the
        response scale ``refit`` takes (proportions for binomial). ``rng`` is a seed or a numpy
        Generator; the same seed gives the same draw. With ``newdata`` every level in it gets a new
        draw and ``weights``, ``binomial_size`` and ``offset`` (arrays or column names) default to
        1, 1 and 0 (MATLAB), plus the formula's ``offset(...)`` terms evaluated on ``newdata``; a
        new sampler is compiled for the new rows.

        A binomial or Poisson fit with an estimated dispersion (``dispersion_flag=True``) warns: its
        draws come from the family's distribution, without the overdispersion.
        """
        newdata, rng = _random_args(args, newdata, rng)
        seed = seed_from(rng)
        if self._quasi_dispersion:
            warn(
                f"random: this {self.distribution} fit estimated a dispersion (dispersion_flag=True, "
                f"Dispersion = {self.dispersion:.4g}), but y | b is drawn from the {self.distribution} "
                "distribution, which has none: the draws carry no overdispersion (a quasi-likelihood "
                "scale has no distribution to draw from), and refits of them estimate a dispersion near 1",
                GLMMWarning,
            )
        values = self._parameter_values()
        if newdata is None:
            if weights is not None or binomial_size is not None or offset is not None:
                raise InputError(
                    "newdata: weights, binomial_size and offset apply only to new rows; pass newdata=..., "
                    "or leave them out to simulate the fitted rows"
                )
            return self._full_length(simulate_fitted_rows(self._ws, values, seed))
        return simulate_new_rows(
            self._ws, newdata, values, seed, weights=weights, binomial_size=binomial_size, offset=offset
        )

    def _parameter_values(self) -> dict[str, np.ndarray]:
        res, ws = self._result, self._ws
        values = {"beta": res.beta}
        # b = sigma Lambda u: a family without sigma in its PyMC model (binomial/Poisson fitted by
        # pseudo-likelihood with dispersion_flag) takes sigma into Lambda
        scale = 1.0 if ws.dist.has_dispersion else res.sigma
        for r, sl in enumerate(ws.layout.slices()):
            values[f"theta_{r}"] = scale * res.theta[sl]
        if ws.dist.has_ancillary:
            values[ws.dist.ancillary.name] = np.asarray(res.ancillary)
        return values

    def refit(self, ynew) -> GeneralizedLinearMixedModel:
        """Refit to a new response (same length as the data, or as the rows used), re-using every
        compiled function; returns a new model and leaves this one unchanged."""
        y, separation = self._check_new_response(ynew)
        result = fit(self._ws, self.fit_method, y, warm=self._result, settings=self._settings)
        model = GeneralizedLinearMixedModel(self._ws, result, self._settings)
        model._judge_group_separation(separation)
        return model

    def _judge_group_separation(self, message: str | None) -> None:
        """Refuse or warn about a fit of data that fixed and random effects separate completely
        (:func:`.design.judge_group_separation`, on the conditional means of the rows used)."""
        if message is not None:
            eta = self._result.eta
            judge_group_separation(message, self._result.y, self._ws.link.inverse_np(eta))

    def _check_new_response(self, ynew) -> tuple[np.ndarray, str | None]:
        d, dist = self._ws.design, self._ws.dist
        ynew = d.per_row(ynew, "ynew")
        raw = None if ynew is None or isinstance(ynew, (str, bytes, dict)) else np.asarray(ynew)
        if (
            raw is None
            or raw.dtype.kind in "USV"
            or (raw.dtype.kind == "O" and any(isinstance(v, (str, bytes)) for v in raw.reshape(-1)))
        ):
            if raw is None or raw.ndim == 0:
                raise InputTypeError(f"ynew: expected a numeric vector, got {type(ynew).__name__}")
            raise InputTypeError(
                f"ynew: expected a numeric vector, got text values ({type(ynew).__name__}); convert "
                "them, e.g. with pd.to_numeric"
            )
        if np.iscomplexobj(raw):
            raise InputTypeError("ynew: holds complex numbers; give real values")
        try:
            y = as_vector(np.asarray(raw, dtype=float), "ynew")
        except (TypeError, ValueError) as err:
            if isinstance(err, InputError):
                raise
            raise InputTypeError(f"ynew: expected a numeric vector, got {type(ynew).__name__}") from err
        n_total, n = d.subset.size, d.n
        if y.size == n_total:
            y = y[d.subset]
        elif y.size != n:
            rows = f"{n_total} values" + (
                f" (one per row of the data) or {n} (one per row used)" if n != n_total else ""
            )
            raise InputError(f"ynew: expected {rows}, got {y.size}")
        dist.check_response(y, d.weights, d.binomial_size, "ynew", d.used_index())
        return y, check_new_response(d, dist, self._ws.link, y, "ynew")

    # ---- Bayesian fit of the same model and ArviZ output ------------------------------------
    def fit_bayes(
        self,
        priors=None,
        *,
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
    ):
        """Sample the Bayesian version of this model's PyMC model by NUTS (same design and likelihood).

        Parameters
        ----------
        priors : dict, optional
            Overrides of the default priors: ``{'beta' | coefficient name | 'sd_<group>' |
            'corr_<group>' | 'sigma' | 'nb_theta': pm.<Distribution>.dist(...)}`` (docs/bayes.md).
        draws, chains : int
            Draws kept per chain, number of chains.
        tune : int, optional
            Tuning steps per chain; default 300 after an ML warm start, 1000 with ``init='auto'``.
        cores : int, optional
            Chains run in parallel; default: every CPU this process may use.
        sampler : {'pymc', 'nutpie'}
            PyMC's NUTS, or nutpie's (the ``nutpie`` extra).
        init : {'ml', 'auto'}
            'ml': start at draws from the Laplace approximation around this ML fit, with its
            covariance as the initial mass matrix; 'auto': PyMC's / nutpie's default.
        target_accept : float
            NUTS target acceptance rate.
        rng : int or numpy Generator, optional
            Seed: the same seed gives the same draws.
        progress : bool
            Show progress bars.
        noncentered : {'auto', True, False}
            True: sample the random effects as u ~ N(0, I) scaled by the Cholesky factor (bambi's
            form); False: directly as b ~ N(0, Psi) (the centred form). 'auto' (default): per term,
            centred where this ML fit shows the data dominate the prior (less than half of the
            prior variance of b left, lme4's condVar against Psi), else non-centred (docs/bayes.md).

        Returns
        -------
        ppl_glmm.bayes.BayesianGLMM
        """
        from .bayes.fit import fit_bayes

        return fit_bayes(
            self._ws,
            self,
            self.formula,
            priors=priors,
            noncentered=noncentered,
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

    def to_inference_data(self, draws: int = 2000, rng=None, *, chains: int = 1, predictive: bool = True):
        """This ML fit as an ArviZ DataTree: posterior draws from the asymptotic normal of (beta,
        covariance parameters) under the Laplace Hessian, responses from ``random()`` as
        posterior_predictive (unless ``predictive=False``), and observed_data. Names and coords are
        those of :meth:`fit_bayes`'s posterior, so ArviZ treats both fits alike; give ``chains`` and
        ``draws`` of the posterior to plot both in one ArviZ call (the draws are independent either
        way). The predictive group holds chains x draws x N values: more than 50 million is refused
        (pass ``predictive=False``)."""
        from .bayes.ml_idata import ml_inference_data

        return ml_inference_data(self, draws=draws, rng=rng, predictive=predictive, chains=chains)

    # ---- plots and display --------------------------------------------------------------------
    def plot_residuals(self, kind: str = "histogram", residual_type: str = "raw", ax=None):
        """MATLAB ``plotResiduals``: plot the conditional residuals and return the matplotlib Axes.
        ``kind``: 'histogram', 'caseorder', 'fitted', 'lagged', 'probability' or 'symmetry';
        ``residual_type``: 'raw' or 'pearson' (see :mod:`ppl_glmm.plots`)."""
        from .plots import plot_residuals

        return plot_residuals(self, kind=kind, residual_type=residual_type, ax=ax)

    def plot_random_effects(self, *, alpha: float = 0.05, dfmethod: str = "residual", axes=None):
        """Caterpillar plot of the conditional modes with ``Estimate -/+ t SEPred`` intervals, one
        panel per term and coefficient, levels sorted by estimate; returns the list of Axes (see
        :func:`ppl_glmm.plots.plot_random_effects`)."""
        from .plots import plot_random_effects

        return plot_random_effects(self, alpha=alpha, dfmethod=dfmethod, axes=axes)

    def _repr_html_(self) -> str:
        """Jupyter's rich display: the content of ``str(model)`` as HTML tables."""
        return model_html(self)

    def __str__(self) -> str:
        return model_display(self)

    def __repr__(self) -> str:
        return (
            f"<GeneralizedLinearMixedModel {self.distribution}/{self.link} {self.fit_method}: {self.formula}>"
        )


def _random_args(args: tuple, newdata, rng):
    """(newdata, rng) from ``random``'s positional arguments: a DataFrame is newdata, None the
    default of either, anything else rng."""
    if len(args) > 2:
        raise InputTypeError(f"random: takes at most 2 positional arguments (newdata, rng), got {len(args)}")
    for a in args:
        if a is None:  # the default of both (random(None, rng=5): no newdata)
            continue
        if isinstance(a, pd.Series):  # (a row taken as data.iloc[0] is a Series, not a seed)
            raise InputTypeError(
                "newdata: expected a pandas DataFrame, got a Series (one row as data.iloc[0]); pass "
                "a one-row DataFrame, e.g. data.iloc[[0]]"
            )
        if isinstance(a, pd.DataFrame):
            if newdata is not None:
                raise InputTypeError("random: newdata given twice (positionally and by name)")
            newdata = a
        else:
            if rng is not None:
                raise InputTypeError("random: rng given twice (positionally and by name)")
            rng = a
    if newdata is not None and not isinstance(newdata, pd.DataFrame):
        raise InputTypeError(f"newdata: expected a pandas DataFrame, got {type(newdata).__name__}")
    return newdata, rng


def _check_flag(value, arg: str) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise InputTypeError(f"{arg}: expected True or False, got {value!r}")


def _selected_terms(terms, groups) -> list:
    """The random terms ``groups`` names: 0-based term indices and/or grouping-variable names (a
    name selects every term with that grouping), in the order given."""
    items = [groups] if isinstance(groups, (str, int, np.integer)) else groups
    try:
        items = list(items)
    except TypeError:
        raise InputTypeError(
            f"groups: expected term indices (0-based) or grouping-variable names, got {groups!r}"
        ) from None
    names = [t.group for t in terms]
    if not items:
        raise InputError("groups: select at least one random-effects term")
    out = []
    for g in items:
        if isinstance(g, (bool, np.bool_)) or not isinstance(g, (str, int, np.integer)):
            raise InputTypeError(f"groups: expected term indices or grouping-variable names, got {g!r}")
        if isinstance(g, str):
            hits = [t for t in terms if t.group == g]
            if not hits:
                raise InputError(
                    f"groups: no random-effects term is grouped by {g!r}; the groups are {names}"
                )
            out.extend(hits)
        else:
            if not 0 <= int(g) < len(terms):
                raise InputError(
                    f"groups: term index {int(g)} is out of range; use 0..{len(terms) - 1} (the terms are "
                    f"grouped by {names}, in formula order)"
                )
            out.append(terms[int(g)])
    if len({id(t) for t in out}) != len(out):
        raise InputError("groups: a random-effects term is selected twice")
    return out


def _check_covariance_method(method) -> str:
    if not isinstance(method, str):
        raise InputTypeError(
            f"method: expected 'wald', 'profile' or 'bootstrap', got {type(method).__name__}"
        )
    m = method.lower()
    if m not in ("wald", "profile", "bootstrap"):
        raise InputError(
            f"method: use 'wald' (MATLAB's intervals), 'profile' (likelihood) or 'bootstrap', got {method!r}"
        )
    return m


_BOOTSTRAP_OPTIONS = (
    "rng",
    "n_jobs",
    "backend",
    "client",
    "batch_size",
    "progress",
    "ci",
    "converged_only",
    "result",
)


def _check_bootstrap_args(method: str, nsim, options: dict, keywords: tuple[str, ...]) -> None:
    """Bootstrap run arguments only with method='bootstrap', and only known ones (an unknown name
    is reported as unknown whatever the method, with the fix where it misspells one of them or of
    the method's own ``keywords``)."""
    unknown = sorted(set(options) - set(_BOOTSTRAP_OPTIONS))
    if unknown:
        fix = hint(unknown[0], {"nsim", *_BOOTSTRAP_OPTIONS, *keywords})
        raise InputError(
            f"{unknown[0]}: unknown option{fix}; the bootstrap's options (with method='bootstrap') are "
            f"nsim, {', '.join(_BOOTSTRAP_OPTIONS)}"
        )
    if method != "bootstrap":
        given = ["nsim"] * (nsim is not None) + sorted(options)
        if given:
            raise InputError(f"{given[0]}: applies to method='bootstrap' only")
        return
    if options.get("result") is not None:
        run = ["nsim"] * (nsim is not None) + sorted(set(options) - {"result", "ci", "converged_only"})
        if run:
            raise InputError(
                f"{run[0]}: not used with result=... (its replicates are reused, not run again); "
                f"leave {run[0]} out, or pass result=None for a new run"
            )
    if "ci" in options:
        from .bootstrap.result import _check_method

        _check_method(options["ci"], "ci")
    if "converged_only" in options:
        _check_flag(options["converged_only"], "converged_only")


def _bootstrap_options(nsim, options: dict) -> dict:
    opts = dict(options)
    if "ci" in opts:
        opts["method"] = opts.pop("ci")
    opts.setdefault("progress", False)
    return {"nsim": 1000 if nsim is None else nsim, **opts}


def _check_alpha(alpha) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"alpha: expected a number in (0, 1), got {alpha!r}")
    if not 0 < alpha < 1:
        raise InputError(f"alpha: must be a number in (0, 1), got {alpha!r}")
