"""Posterior summaries and MCMC diagnostics from an ArviZ DataTree.

Per scalar entry of a variable: mean, median, sd, the equal-tailed interval
``[q_{(1-p)/2}, q_{(1+p)/2}]``, rank-normalised split R-hat, bulk and tail ESS and the Monte Carlo
standard error of the mean (ArviZ's definitions, Vehtari et al. 2021). Diagnostics: divergent
transitions (must be 0), max R-hat (<= 1.01), min bulk and tail ESS (>= 400), min E-BFMI per chain
(>= 0.3), transitions that hit the maximum tree depth (0).
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd

from ..errors import SamplingWarning, warn

__all__ = ["THRESHOLDS", "diagnostics_table", "summarize", "warn_diagnostics"]

THRESHOLDS = {"rhat": 1.01, "ess": 400.0, "ebfmi": 0.3}


def _labels(da) -> list[tuple[tuple, str]]:
    """(index into the non-sample dims, 'coord, coord') for every scalar entry of a variable."""
    dims = [d for d in da.dims if d not in ("chain", "draw")]
    coords = [list(da.coords[d].values) if d in da.coords else list(range(da.sizes[d])) for d in dims]
    out = []
    for idx in itertools.product(*[range(len(c)) for c in coords]):
        out.append((idx, ", ".join(str(c[i]) for c, i in zip(coords, idx))))
    return out


def summarize(idata, var_names: list[str], ci_prob: float = 0.95) -> pd.DataFrame:
    """One row per scalar entry: Parameter, Variable, Label, Mean, Median, SD, Lower, Upper, Rhat,
    ESS_bulk, ESS_tail, MCSE."""
    import arviz as az

    post = idata["posterior"]
    lo_q, hi_q = (1 - ci_prob) / 2, (1 + ci_prob) / 2
    n_chain = post.sizes.get("chain", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rhat = az.rhat(idata, var_names=var_names) if n_chain > 1 else None
        ess_b = az.ess(idata, var_names=var_names, method="bulk")
        ess_t = az.ess(idata, var_names=var_names, method="tail")
        mcse = az.mcse(idata, var_names=var_names, method="mean")
    rows = []
    for v in var_names:
        da = post[v]
        x = np.asarray(da.transpose("chain", "draw", ...).values, dtype=float)
        flat = x.reshape(-1, *x.shape[2:])
        mean, med, sd = flat.mean(axis=0), np.median(flat, axis=0), flat.std(axis=0, ddof=1)
        lo, hi = np.quantile(flat, [lo_q, hi_q], axis=0)
        r = np.asarray(rhat[v].values) if rhat is not None else np.full(mean.shape, np.nan)
        eb, et, mc = (np.asarray(t[v].values) for t in (ess_b, ess_t, mcse))
        for idx, label in _labels(da):
            rows.append(
                {
                    "Parameter": f"{v}[{label}]" if label else v,
                    "Variable": v,
                    "Label": label,
                    "Mean": mean[idx],
                    "Median": med[idx],
                    "SD": sd[idx],
                    "Lower": lo[idx],
                    "Upper": hi[idx],
                    "Rhat": r[idx],
                    "ESS_bulk": eb[idx],
                    "ESS_tail": et[idx],
                    "MCSE": mc[idx],
                }
            )
    return pd.DataFrame(rows)


def _stat(stats, *names):
    for n in names:
        if n in stats:
            return np.asarray(stats[n].values)
    return None


def diagnostics_table(idata, summ: pd.DataFrame) -> pd.DataFrame:
    """Check, Value, Threshold, OK, Message: the sampler's health at a glance (R-hat and ESS from
    ``summ``, a :func:`summarize` table)."""
    import arviz as az

    stats = idata["sample_stats"]
    rows = []
    div = _stat(stats, "diverging")
    n_div = int(np.sum(div)) if div is not None else 0
    total = int(div.size) if div is not None else 0
    rows.append(
        ("divergences", n_div, 0, n_div == 0, f"{n_div} of {total} transitions after tuning diverged")
    )
    rmax = float(np.nanmax(summ["Rhat"])) if summ["Rhat"].notna().any() else np.nan
    rows.append(
        (
            "max R-hat",
            rmax,
            THRESHOLDS["rhat"],
            bool(np.isnan(rmax) or rmax <= THRESHOLDS["rhat"]),
            "the chains disagree: run longer or reparametrise" if rmax > THRESHOLDS["rhat"] else "",
        )
    )
    for kind in ("bulk", "tail"):
        e = float(np.nanmin(summ[f"ESS_{kind}"]))
        rows.append(
            (
                f"min ESS ({kind})",
                e,
                THRESHOLDS["ess"],
                e >= THRESHOLDS["ess"],
                "too few effective draws: increase draws" if e < THRESHOLDS["ess"] else "",
            )
        )
    energy = _stat(stats, "energy")
    if energy is not None and energy.shape[-1] > 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            b = np.asarray(az.bfmi(idata)["energy"].values)  # one value per chain
        bmin = float(np.min(b))
        rows.append(
            (
                "min E-BFMI",
                bmin,
                THRESHOLDS["ebfmi"],
                bmin >= THRESHOLDS["ebfmi"],
                "low energy fraction of missing information: the posterior has heavy tails or a funnel"
                if bmin < THRESHOLDS["ebfmi"]
                else "",
            )
        )
    depth = _stat(stats, "reached_max_treedepth", "maxdepth_reached")
    n_depth = int(np.sum(depth)) if depth is not None else 0
    rows.append(
        (
            "max tree depth",
            n_depth,
            0,
            n_depth == 0,
            f"{n_depth} transitions hit the maximum tree depth: sampling is inefficient" if n_depth else "",
        )
    )
    return pd.DataFrame(rows, columns=["Check", "Value", "Threshold", "OK", "Message"])


def warn_diagnostics(table: pd.DataFrame) -> tuple[str, ...]:
    """Issue a SamplingWarning per failed check; return the messages."""
    msgs = []
    for _, row in table.iterrows():
        if not row["OK"]:
            value = row["Value"]
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            msg = f"{row['Check']} = {shown} (threshold {row['Threshold']}): {row['Message']}"
            msgs.append(msg)
            warn(msg, SamplingWarning)
    return tuple(msgs)
