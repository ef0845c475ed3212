"""``GeneralizedLinearMixedModel``: the fitted model with MATLAB's properties and methods.

A thin object over a :class:`~ppl_glmm.fitting.Workspace` (design, PyMC model, compiled functions;
shared with refits) and a frozen :class:`~ppl_glmm.results.FitResult`. Every method delegates to
one function in inference, simulate or fitting; nothing on the object changes after construction.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import inference
from .design import check_new_response
from .display import model_display
from .errors import InputError, InputTypeError
from .fit_methods import METHODS, FitSettings
from .fitting import Workspace, fit
from .results import FitRecord, FitResult
from .simulate import seed_from, simulate_fitted_rows, simulate_new_rows

__all__ = ["GeneralizedLinearMixedModel"]


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
        return self.formula_of(self._ws)

    @staticmethod
    def formula_of(ws: Workspace) -> str:
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
        """theta entries, plus 1 for an estimated dispersion or negative binomial's theta."""
        return self._ws.layout.n_theta + int(self.dispersion_estimated or self.nb_theta is not None)

    @property
    def dfe(self) -> int:
        return self.num_observations - self.num_coefficients

    @property
    def num_missing(self) -> int:
        return int(self._ws.design.missing.sum())

    @property
    def num_excluded(self) -> int:
        return int(self._ws.design.excluded.sum())

    @property
    def observation_info(self) -> pd.DataFrame:
        """Per input row: Weights, Excluded, Missing, Subset, BinomSize (MATLAB ObservationInfo)."""
        d = self._ws.design
        n_total = d.subset.size
        w = np.ones(n_total)
        size = np.ones(n_total)
        w[d.subset] = d.weights
        size[d.subset] = d.binomial_size
        return pd.DataFrame(
            {
                "Weights": w,
                "Excluded": d.excluded,
                "Missing": d.missing,
                "Subset": d.subset,
                "BinomSize": size,
            }
        )

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

    def covariance_parameters(self, alpha: float = 0.05, method: str = "wald"):
        """(psi, dispersion, stats): psi[r] = sigma^2 Lambda_r Lambda_r'; stats one table per term
        (Group, Name1, Name2, Type, Estimate, Lower, Upper) and the Error table.

        ``method='wald'`` (MATLAB's): Lower/Upper from a normal quantile on the natural scale (log SD,
        log((1+rho)/(1-rho)), log sigma). ``method='profile'`` (lme4's ``confint(method='profile')``):
        {v : 2 (logL_hat - max logL given v) <= chi2_{1,1-alpha}} for each SD, correlation, sigma
        and negative binomial's theta (docs/algorithms.md); not for pseudo-likelihood fits."""
        _check_alpha(alpha)
        method = _check_covariance_method(method)
        if method == "profile":
            inference.check_profile(self._fit)
        psis = self._ws.layout.covariances(self._result.theta, self._result.sigma)
        return psis, self.dispersion, self._covariance_tables(alpha, method)

    def _covariance_tables(self, alpha, method: str = "wald"):
        if method == "profile":
            return inference.profile_tables(self._fit, alpha)
        return inference.covariance_tables(self._fit, alpha)

    def random_effects(self) -> pd.DataFrame:
        """Conditional modes b-hat (Group, Level, Name, Estimate) in MATLAB's b order."""
        rows = []
        for term in self._ws.design.terms:
            for j, level in enumerate(term.levels):
                for k, name in enumerate(term.names):
                    rows.append((term.group, level, name, self._result.b[term.offset + j * term.q_r + k]))
        return pd.DataFrame(rows, columns=["Group", "Level", "Name", "Estimate"])

    def fitted(self, conditional: bool = True) -> np.ndarray:
        """Fitted means g^-1(eta) for every input row (NaN for unused rows); proportions for binomial."""
        d = self._ws.design
        eta = self._result.eta if conditional else d.X @ self._result.beta + d.offset
        mu = self._ws.dist.clip_mean(self._ws.link.inverse_np(eta))
        return self._full_length(mu)

    def response(self) -> np.ndarray:
        """Response for every input row on MATLAB's scale (proportions for binomial), NaN if unused."""
        return self._full_length(self._result.y)

    def design_matrix(self, kind: str = "fixed"):
        """'fixed': X (used rows); 'random': sparse Z (used rows), columns in b order."""
        kind = str(kind).lower()
        if kind == "fixed":
            return self._ws.design.X.copy()
        if kind == "random":
            return sp.csr_matrix(self._ws.design.Z())
        raise InputError("kind: use 'fixed' or 'random'")

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
        """
        newdata, rng = _random_args(args, newdata, rng)
        seed = seed_from(rng)
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
        y = self._check_new_response(ynew)
        result = fit(self._ws, self.fit_method, y, warm=self._result, settings=self._settings)
        return GeneralizedLinearMixedModel(self._ws, result, self._settings)

    def _check_new_response(self, ynew) -> np.ndarray:
        d, dist = self._ws.design, self._ws.dist
        try:
            y = np.asarray(ynew, dtype=float).reshape(-1)
        except (TypeError, ValueError) as err:
            raise InputTypeError(f"ynew: expected a numeric vector, got {type(ynew).__name__}") from err
        n_total, n = d.subset.size, d.n
        if y.size == n_total:
            y = y[d.subset]
        elif y.size != n:
            rows = f"{n_total} values" + (
                f" (one per row of the data) or {n} (one per row used)" if n != n_total else ""
            )
            raise InputError(f"ynew: expected {rows}, got {y.size}")
        dist.check_response(y, d.weights, d.binomial_size, "ynew")
        check_new_response(d, dist, self._ws.link, y, "ynew")
        return y

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
        noncentered: bool = True,
    ):
        """Sample the Bayesian version of this model's PyMC model by NUTS (same design and likelihood).

        Parameters
        ----------
        priors : dict, optional
            Overrides of the default priors: ``{'beta' | coefficient name | 'sd_<group>' |
            'corr_<group>' | 'sigma': pm.<Distribution>.dist(...)}`` (docs/bayes.md).
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
        noncentered : bool
            Sample the random effects as u ~ N(0, I) scaled by the Cholesky factor (default, as
            bambi), or directly as b ~ N(0, Psi) (False: the centred form).

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

    def __str__(self) -> str:
        return model_display(self)

    def __repr__(self) -> str:
        return (
            f"<GeneralizedLinearMixedModel {self.distribution}/{self.link} {self.fit_method}: {self.formula}>"
        )


def _random_args(args: tuple, newdata, rng):
    """(newdata, rng) from ``random``'s positional arguments: a DataFrame is newdata, else rng."""
    if len(args) > 2:
        raise InputTypeError(f"random: takes at most 2 positional arguments (newdata, rng), got {len(args)}")
    for a in args:
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


def _check_covariance_method(method) -> str:
    if not isinstance(method, str):
        raise InputTypeError(f"method: expected 'wald' or 'profile', got {type(method).__name__}")
    m = method.lower()
    if m not in ("wald", "profile"):
        raise InputError(f"method: use 'wald' (MATLAB's intervals) or 'profile' (likelihood), got {method!r}")
    return m


def _check_alpha(alpha) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"alpha: expected a number in (0, 1), got {alpha!r}")
    if not 0 < alpha < 1:
        raise InputError(f"alpha: must be a number in (0, 1), got {alpha!r}")
