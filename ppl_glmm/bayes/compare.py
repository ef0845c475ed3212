"""ML and Bayesian fits of the same model, side by side.

For every fixed effect, random-effect SD and correlation, and sqrt(Dispersion) (or negative
binomial's theta):

* ML: the estimate, its standard error and confidence interval. Fixed effects use MATLAB's
  t-based intervals (DF = N - p); covariance parameters the Wald interval on the natural scale, with
  the delta-method SE ``se(sd) = sd se(log sd)``, ``se(rho) = (1 - rho^2) / 2 se(z)`` (and
  ``sigma se(log sigma)``, ``theta se(log theta)``);
* Bayes: posterior mean, median, sd, equal-tailed interval, R-hat and bulk ESS;
* ``Diff_in_SE = (posterior mean - ML estimate) / ML SE``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..display import fit_method_label
from ..errors import InputError, InputTypeError
from ..inference import beta_is_inner, covariance_tables
from ..names import ModelNames
from .summary import summarize

__all__ = ["compare_fits", "plot_compare"]


def _check_pair(ml, bayes) -> ModelNames:
    from ..model import GeneralizedLinearMixedModel
    from .results import BayesianGLMM

    if not isinstance(ml, GeneralizedLinearMixedModel):
        raise InputTypeError(
            f"ml: expected a GeneralizedLinearMixedModel (from fitglme), got {type(ml).__name__}"
        )
    if not isinstance(bayes, BayesianGLMM):
        raise InputTypeError(f"bayes: expected a BayesianGLMM (from fit_bayes), got {type(bayes).__name__}")
    from ..covariance_patterns import check_bayes_patterns

    try:  # the Bayesian model's covariances are unstructured: a restricted ML fit is another model
        check_bayes_patterns(ml._ws.patterns)
    except InputError as err:
        raise InputError(f"ml: {err}") from None
    if ml._quasi_dispersion:
        raise InputError(
            f"ml: a {ml.distribution} fit with an estimated dispersion (dispersion_flag=True, "
            f"Dispersion = {ml.dispersion:.4g}) is a quasi-likelihood fit; the Bayesian model has no "
            "dispersion, so the two are not one model. Compare a fit without dispersion_flag"
        )
    d_ml, d_b = ml._ws.design, bayes._spec.design
    same = (
        ml.formula == bayes.formula
        and ml.distribution == bayes.distribution
        and ml.link == bayes.link
        and d_ml.n == d_b.n
        and np.array_equal(d_ml.subset, d_b.subset)
        and np.allclose(ml._result.y, d_b.y)
        and np.allclose(d_ml.weights, d_b.weights)
        and d_ml.X.shape == d_b.X.shape
        and np.array_equal(d_ml.X, d_b.X)  # the same coding: coefficients that mean the same
        and np.allclose(d_ml.offset, d_b.offset)
        and np.array_equal(d_ml.binomial_size, d_b.binomial_size)
    )
    if not same:
        raise InputError(
            "bayes: the two fits are not of the same model and data (formula, distribution, link, rows, "
            "response, weights, fixed-effects coding, offset and binomial sizes must agree); fit the "
            "Bayesian model with ml.fit_bayes()"
        )
    return bayes.names


def _ml_rows(ml, names: ModelNames, ci_prob: float) -> list[dict]:
    alpha = 1 - ci_prob
    fe = ml.fixed_effects(alpha=alpha)
    rows = [
        {
            "Parameter": f"beta[{r.Name}]",
            "Group": "Fixed",
            "Name": r.Name,
            "Type": "fixed",
            "ML_Estimate": r.Estimate,
            "ML_SE": r.SE,
            "ML_Lower": r.Lower,
            "ML_Upper": r.Upper,
        }
        for r in fe.itertuples()
    ]
    cov = ml._natural_cov
    z_se = np.sqrt(np.maximum(np.diag(cov), 0)) if cov is not None else None
    k0 = 0 if beta_is_inner(ml._fit) else len(ml.coefficient_names)
    tables = covariance_tables(ml._fit, alpha) if cov is not None else covariance_tables(ml._fit, None)
    layout = ml._ws.layout
    for tn, sl, table in zip(names.terms, layout.slices(), tables[:-1]):
        for k, r in enumerate(table.itertuples()):
            se = np.nan
            if z_se is not None:
                s = z_se[k0 + sl.start + k]
                se = r.Estimate * s if r.Type == "std" else (1 - r.Estimate**2) / 2 * s
            param = f"{tn.sd}[{r.Name1}]" if r.Type == "std" else f"{tn.corr}[{r.Name1}, {r.Name2}]"
            rows.append(
                {
                    "Parameter": param,
                    "Group": tn.group,
                    "Name": r.Name1 if r.Type == "std" else f"{r.Name1}, {r.Name2}",
                    "Type": r.Type,
                    "ML_Estimate": r.Estimate,
                    "ML_SE": se,
                    "ML_Lower": r.Lower,
                    "ML_Upper": r.Upper,
                }
            )
    anc = ml._ws.dist.ancillary
    if names.ancillary is not None:  # the Error table's sqrt(Dispersion) or theta row
        err = tables[-1].set_index("Name").loc[anc.label]
        se = err["Estimate"] * z_se[-1] if z_se is not None else np.nan
        rows.append(
            {
                "Parameter": names.ancillary,
                "Group": "Error",
                "Name": anc.label,
                "Type": "std" if names.has_dispersion else "theta",  # as covariance_parameters
                "ML_Estimate": err["Estimate"],
                "ML_SE": se,
                "ML_Lower": err["Lower"],
                "ML_Upper": err["Upper"],
            }
        )
    return rows


def compare_fits(ml, bayes, ci_prob: float = 0.95) -> pd.DataFrame:
    """One row per fixed effect, SD, correlation and sqrt(Dispersion) (or negative binomial's theta):
    the ML estimate, SE and CI beside the posterior mean, median, sd and equal-tailed interval, R-hat,
    bulk ESS, and the difference of the posterior mean from the ML estimate in ML standard errors.
    The ML_ columns are the frequentist fit by its own fit method (REML, MPL, quadrature, ...),
    which ``attrs["ml_fit_method"]`` names."""
    if isinstance(ci_prob, bool) or not isinstance(ci_prob, (int, float)) or not 0 < ci_prob < 1:
        raise InputError(f"ci_prob: must be a number in (0, 1), got {ci_prob!r}")
    names = _check_pair(ml, bayes)
    rows = pd.DataFrame(_ml_rows(ml, names, ci_prob))
    post = summarize(bayes.idata, names.parameter_vars(), ci_prob).set_index("Parameter")
    cols = {"Mean": "Post_Mean", "Median": "Post_Median", "SD": "Post_SD", "Lower": "Post_Lower"}
    cols |= {"Upper": "Post_Upper", "Rhat": "Rhat", "ESS_bulk": "ESS_bulk"}
    post = post[list(cols)].rename(columns=cols)
    out = rows.join(post, on="Parameter")
    out["Diff_in_SE"] = (out["Post_Mean"] - out["ML_Estimate"]) / out["ML_SE"]
    out.attrs["ml_fit_method"] = fit_method_label(ml)  # what the ML_ columns hold: REML, MPL, ...
    return out


def plot_compare(ml, bayes, *, ci_prob: float = 0.95, rng=0):
    """Forest plot of both fits (arviz-plots, matplotlib): for every parameter the ML asymptotic-normal
    interval (as many draws as the posterior has) and the posterior interval, one colour per fit, with
    50% and ``ci_prob`` intervals. Returns the matplotlib Figure."""
    names = _check_pair(ml, bayes)
    try:
        import arviz_plots as azp
        import matplotlib  # noqa: F401
    except ImportError as err:
        raise InputError('plot_compare needs matplotlib: pip install "ppl_glmm[plot]"') from err
    from .ml_idata import ml_inference_data

    post = bayes.idata["posterior"]
    ml_dt = ml_inference_data(ml, post.sizes["draw"], rng, predictive=False, chains=post.sizes["chain"])
    pc = azp.plot_forest(
        {f"{fit_method_label(ml)} fit": ml_dt, "Bayes (NUTS)": bayes.idata},
        var_names=names.parameter_vars(),
        combined=True,
        ci_probs=[0.5, ci_prob],
        backend="matplotlib",
    )
    pc.add_legend("model")
    return pc.viz["chart"].item() if "chart" in pc.viz else pc.viz["figure"].item()
