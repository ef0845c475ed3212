"""Bootstrap intervals in the layout of the model's own tables, for ``coef_ci(method='bootstrap')``
and ``covariance_parameters(method='bootstrap')``: the default-statistic bootstrap's intervals
(:meth:`BootstrapResult.ci`) put in place of the Wald bounds."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputError
from .result import BootstrapResult, _check_alpha, _check_method
from .runner import check_model, parametric_bootstrap
from .statistics import default_parameters, default_values

__all__ = [
    "bootstrap_coefficient_intervals",
    "bootstrap_covariance_intervals",
    "covariance_tables_from",
    "default_bootstrap",
]


def default_bootstrap(
    model,
    nsim: int,
    result: BootstrapResult | None,
    **run,
) -> BootstrapResult:
    """``result`` when it is a default-statistic bootstrap of ``model`` (checked by its estimates),
    else a new run of ``nsim`` replicates with the run arguments ``run``."""
    check_model(model)
    if result is None:
        return parametric_bootstrap(model, nsim, **run)
    names = [p.column for p in default_parameters(model)]
    if (
        not isinstance(result, BootstrapResult)
        or result.kind != "bootstrap"
        or result.statistics != names
        or not np.allclose(
            result.estimates.to_numpy(), default_values(model), rtol=1e-12, atol=0, equal_nan=True
        )
    ):
        raise InputError(
            "result: not a default-statistic parametric_bootstrap of this model; pass result=None to run one"
        )
    return result


def _bootstrap_ci(model, nsim, alpha, method, result, converged_only, run: dict) -> pd.DataFrame:
    """The checked arguments' bootstrap intervals (``BootstrapResult.ci``), indexed by statistic name:
    ``result`` reused when given, else a new default-statistic run with the run arguments ``run``."""
    alpha = _check_alpha(alpha)
    method = _check_method(method)
    boot = default_bootstrap(model, nsim, result, **run)
    return boot.ci(alpha, method, converged_only=converged_only).set_index("Name")


def bootstrap_coefficient_intervals(
    model,
    nsim: int = 1000,
    alpha: float = 0.05,
    *,
    method: str = "percentile",
    result: BootstrapResult | None = None,
    converged_only: bool = False,
    rng=None,
    n_jobs: int = 1,
    backend: str | None = None,
    client=None,
    batch_size: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """``model.fixed_effects(alpha=alpha)`` with Lower and Upper replaced by the bootstrap interval
    of each coefficient (``BootstrapResult.ci``'s ``method``). ``result``: an earlier
    default-statistic :func:`parametric_bootstrap` of this model to reuse (nsim and the run
    arguments are then ignored)."""
    ci = _bootstrap_ci(
        model,
        nsim,
        alpha,
        method,
        result,
        converged_only,
        {
            "rng": rng,
            "n_jobs": n_jobs,
            "backend": backend,
            "client": client,
            "batch_size": batch_size,
            "progress": progress,
        },
    )
    table = model.fixed_effects(alpha=_check_alpha(alpha))
    table["Lower"] = ci.loc[table["Name"], "Lower"].to_numpy()
    table["Upper"] = ci.loc[table["Name"], "Upper"].to_numpy()
    return table


def bootstrap_covariance_intervals(
    model,
    nsim: int = 1000,
    alpha: float = 0.05,
    *,
    method: str = "percentile",
    result: BootstrapResult | None = None,
    converged_only: bool = False,
    rng=None,
    n_jobs: int = 1,
    backend: str | None = None,
    client=None,
    batch_size: int | None = None,
    progress: bool = True,
) -> list[pd.DataFrame]:
    """``covariance_parameters()[2]``'s tables (one per random-effects term: Group, Name1, Name2,
    Type, Estimate, Lower, Upper; then the Error table: Group, Name, Estimate, Lower, Upper) with
    bootstrap intervals for every std, corr, sqrt(Dispersion) and negative binomial theta. A
    dispersion fixed at 1 keeps Lower = Upper = 1. ``result``: as in
    :func:`bootstrap_coefficient_intervals`."""
    ci = _bootstrap_ci(
        model,
        nsim,
        alpha,
        method,
        result,
        converged_only,
        {
            "rng": rng,
            "n_jobs": n_jobs,
            "backend": backend,
            "client": client,
            "batch_size": batch_size,
            "progress": progress,
        },
    )
    return covariance_tables_from(model, ci)


def covariance_tables_from(model, ci: pd.DataFrame) -> list[pd.DataFrame]:
    """The covariance-parameter tables of ``model`` with Estimate/Lower/Upper from ``ci`` (indexed
    by the default statistic's column names)."""
    params = default_parameters(model)
    n_terms = len(model._ws.design.terms)
    rows: list[list[dict]] = [[] for _ in range(n_terms + 1)]
    for p in params:
        if p.kind in ("std", "corr"):
            rows[p.table].append(
                {
                    "Group": p.group,
                    "Name1": p.name1,
                    "Name2": p.name2,
                    "Type": p.kind,
                    "Estimate": ci.at[p.column, "Estimate"],
                    "Lower": ci.at[p.column, "Lower"],
                    "Upper": ci.at[p.column, "Upper"],
                }
            )
    error = rows[n_terms]
    by_kind = {p.kind: p for p in params}
    if "dispersion" in by_kind:
        c = by_kind["dispersion"].column
        error.append(
            {
                "Group": "Error",
                "Name": "sqrt(Dispersion)",
                "Estimate": ci.at[c, "Estimate"],
                "Lower": ci.at[c, "Lower"],
                "Upper": ci.at[c, "Upper"],
            }
        )
    else:  # sigma fixed at 1 (binomial, Poisson, negative binomial)
        error.append(
            {"Group": "Error", "Name": "sqrt(Dispersion)", "Estimate": 1.0, "Lower": 1.0, "Upper": 1.0}
        )
    if "ancillary" in by_kind:
        p = by_kind["ancillary"]
        error.append(
            {
                "Group": "Error",
                "Name": p.name1,
                "Estimate": ci.at[p.column, "Estimate"],
                "Lower": ci.at[p.column, "Lower"],
                "Upper": ci.at[p.column, "Upper"],
            }
        )
    tables = [pd.DataFrame(r) for r in rows]
    for table, pattern in zip(tables, model._ws.patterns.terms):  # as covariance_parameters titles them
        table.attrs["title"] = f"Covariance Type: {pattern.type_name}"
    return tables
