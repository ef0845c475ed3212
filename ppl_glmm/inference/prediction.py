"""Predictions with confidence intervals (MATLAB ``predict``).

For each prediction row with fixed-effects row x and random-effects row z (MATLAB's b order):

    eta-hat = x'beta-hat (+ z'b-hat if conditional),    mu-hat = g^-1(eta-hat + offset)  (clipped)

The interval is built on eta and mapped through g^-1, then sorted so Lower <= Upper:

    [g^-1(eta-hat + offset - crit se), g^-1(eta-hat + offset + crit se)]

(:func:`mean_interval`: for a power or reciprocal link only the part of the eta interval above 0,
the link's domain, is mapped, its end at 0 giving g^-1(0+), +inf for a negative power; outside
the domain the prediction is NaN, with a warning), where
    se^2 = Var(x'beta-hat + z'(b-hat - b)) from the joint covariance (conditional; :mod:`.joint`),
           or x' Cov(beta-hat) x (marginal, Cov by the fit's covariance method)
    crit = t_{1-alpha/2, DF} (pointwise) or sqrt(k F_{1-alpha}(k, DF)) (Scheffe, simultaneous)
           with k = rank(X) + q (conditional) or rank(X) (marginal), DF = N - rank(X) or inf.

Offsets (MATLAB's rule): the ``offset`` argument defaults to zeros for the prediction rows -- the
offset given to ``fitglme`` is *not* reused, also without new data -- while the formula's own
``offset(...)`` terms are part of the model and are evaluated on the rows predicted (the data, or
``newdata``). Grouping levels of ``newdata`` are matched to the fitted levels by name; a new level
contributes no random effect (its entries of z are 0, and so is their part of the variance);
a warning where a grouping column of ``newdata`` holds another type than the fitted data's and some
of its levels match no fitted level (``_warn_retyped_levels``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import GLMMWarning, InputError, InputTypeError, warn
from ..results import FitRecord
from .distributions import f_ppf, t_ppf

__all__ = ["mean_interval", "predict", "prediction_rows"]


def _positive_domain(link, dist) -> float | None:
    """The exponent p of a power link (-1 for the reciprocal) whose linear predictor must be
    positive for a valid mean; None for links defined on the whole line. A power link needs
    eta > 0 (eta^(1/p) is NaN, or not monotone, below 0); the reciprocal link too, except for a
    distribution whose means may be negative (normal), where 1/eta is valid on both sides of 0."""
    if not link.builtin:
        return None
    if link.name == "reciprocal":
        return -1.0 if dist.mean_range[0] >= 0 else None
    return link.power


def mean_interval(link, dist, eta: np.ndarray, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mu-hat, [Lower, Upper]): g^-1 of eta and of the valid part of [eta - half, eta + half].

    g^-1 is monotone on its domain, so the interval is the image of its ends, sorted and clipped
    to the distribution's mean range; mu-hat is NaN where g^-1(eta) itself is outside that range (an
    identity link's eta < 0 for counts). A power link (and the reciprocal link for positive means)
    is defined for eta > 0 only: the ends are taken on [max(eta - half, 0), eta + half], and the
    end at 0 maps to g^-1(0+) (+inf for p < 0, 0 for p > 0); mu-hat and the interval are NaN where
    eta, or the whole interval, is outside the domain. The reciprocal link of a normal model maps
    an interval around 0 to (-inf, inf) (its two branches meet at infinity)."""
    inverse, clip = link.inverse_np, dist.clip_mean
    a, b = eta - half, eta + half
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        p = _positive_domain(link, dist)
        if p is None:
            raw = inverse(eta)
            lo, hi = dist.mean_range  # (an identity link's eta < 0 for a count: no mean, not eps)
            ypred = np.where((raw >= lo) & (raw <= hi), clip(raw), np.nan)
            ci = np.sort(np.column_stack([clip(inverse(a)), clip(inverse(b))]), axis=1)
            if link.builtin and link.name == "reciprocal":  # normal: the pole inside the interval
                ci[(a < 0) & (b > 0)] = [-np.inf, np.inf]
            return ypred, ci
        at_zero = np.inf if p < 0 else 0.0
        ypred = np.where(eta > 0, clip(inverse(np.where(eta > 0, eta, 1.0))), np.nan)
        ends = [
            np.where(a > 0, inverse(np.where(a > 0, a, 1.0)), at_zero),
            inverse(np.where(b > 0, b, 1.0)),
        ]
        ci = np.sort(np.column_stack([clip(e) for e in ends]), axis=1)
        ci[(b <= 0) | np.isnan(a) | np.isnan(b)] = np.nan  # (NaN compares False above)
    return ypred, ci


def _matched_z(fitted_terms, new_terms, m: int, q: int) -> sp.csr_matrix:
    """Z (m x q) of the new rows in the fit's b order: a level of ``newdata`` is matched to the
    fitted level of the same name (of an interaction, the same name of each part); rows of a new
    level get no entries for that term."""
    rows, cols, vals = [], [], []
    for ft, nt in zip(fitted_terms, new_terms):
        fitted = ft.level_parts if ft.level_parts is not None else ft.levels
        new = nt.level_parts if nt.level_parts is not None else nt.levels
        index = {lev: j for j, lev in enumerate(fitted)}
        j_of_new = np.array([index.get(lev, -1) for lev in new], dtype=np.int64)
        j = j_of_new[nt.codes] if nt.codes.size else np.zeros(0, np.int64)
        known = np.flatnonzero(j >= 0)
        for k in range(ft.q_r):
            rows.append(known)
            cols.append(ft.offset + j[known] * ft.q_r + k)
            vals.append(nt.T[known, k])
    if not rows:
        return sp.csr_matrix((m, q))
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m, q))


def prediction_rows(fit: FitRecord, newdata: pd.DataFrame | None, offset):
    """(X, Z or None for the fitted rows, offset, used-rows mask or None): the prediction rows.

    Without newdata: the fit's used rows, ``offset`` (one value per row of the data, or per used
    row; default 0) plus the formula's offset terms on those rows. With newdata: X and the matched
    Z from ``newdata`` (validated), ``offset`` (array or column name; default 0) plus the formula's
    offset terms on newdata."""
    from ..design import new_data_design
    from ..design.checks import as_vector, evaluate_offsets, real_values
    from ..design.fixed import as_frame

    d = fit.design
    if newdata is None:
        n_total, n = d.subset.size, d.n
        if offset is None:
            off = np.zeros(n)
        else:
            if isinstance(offset, str):
                raise InputTypeError("offset: a column name needs newdata; pass the offset values instead")
            offset = d.per_row(offset, "offset")  # (a Series by label: its InputError stands)
            off = as_vector(real_values(offset, "offset", "a numeric vector"), "offset")
            if off.size == n_total:
                off = off[d.subset]
            elif off.size == 1:
                off = np.full(n, float(off[0]))
            elif off.size != n:
                raise InputError(
                    f"offset: expected {n_total} values (one per row of the data)"
                    + (f" or {n} (one per row used)" if n != n_total else "")
                    + f", got {off.size}"
                )
            if not np.all(np.isfinite(off)):
                raise InputError("offset: contains NaN or infinite values")
        if d.formula.offsets:
            off = off + evaluate_offsets(d.formula.offsets, as_frame(d.fixed.frame), pd.RangeIndex(n))
        return d.X, None, off, d.subset
    nd = new_data_design(d, newdata, offset=offset)
    Z = _matched_z(d.terms, nd.terms, nd.n, d.q)
    if d.data is not None:
        _warn_retyped_levels(d.terms, nd.terms, d.data, newdata)
    return nd.X, Z, nd.offset, None


_KINDS = {"integer": "numbers", "floating": "numbers", "mixed-integer-float": "numbers", "decimal": "numbers"}
_KINDS |= {
    "boolean": "logical values",
    "string": "text",
    "bytes": "text",
    "datetime64": "dates",
    "datetime": "dates",
}
_KINDS |= {"mixed": "mixed values", "mixed-integer": "mixed values"}


def _value_kind(s: pd.Series) -> str:
    """What a grouping column holds: numbers, text, logical values, dates (a categorical: its levels)."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = pd.Series(s.cat.categories)
    kind = pd.api.types.infer_dtype(s, skipna=True)
    return _KINDS.get(kind, kind)


def _warn_retyped_levels(fitted_terms, new_terms, data: pd.DataFrame, newdata: pd.DataFrame) -> None:
    """Warn where a grouping column of ``newdata`` holds another kind of value than the fitted
    data's (numbers for text, text for dates, ...) and some of its levels match no fitted level:
    those may be fitted levels written differently ("7" for "07"), which would silently get the
    marginal prediction."""
    warned = set()
    for ft, nt in zip(fitted_terms, new_terms):
        fitted = set(ft.level_parts if ft.level_parts is not None else ft.levels)
        new = nt.level_parts if nt.level_parts is not None else nt.levels
        unmatched = [lev for lev in new if lev not in fitted]
        if not unmatched:
            continue
        for v in ft.spec.group_vars:
            if v in warned or v not in data.columns or v not in newdata.columns:
                continue
            was, now = _value_kind(data[v]), _value_kind(newdata[v])
            if was == now:
                continue
            warned.add(v)
            shown = ", ".join(repr(lev) for lev in unmatched[:3]) + (", ..." if len(unmatched) > 3 else "")
            warn(
                f"predict: newdata column '{v}' holds {now} where the fitted data's holds {was}; "
                f"{len(unmatched)} of its {len(new)} levels ({shown}) match no fitted level, so their rows "
                "get no random effect (the marginal prediction). If they are fitted levels written "
                f"differently, give newdata['{v}'] the fitted data's type and spelling",
                GLMMWarning,
            )


def predict(
    fit: FitRecord,
    joint_factory,
    cov_beta: np.ndarray,
    newdata: pd.DataFrame | None,
    *,
    conditional: bool,
    alpha: float,
    simultaneous: bool,
    df: float,
    offset,
) -> tuple[np.ndarray, np.ndarray]:
    """(ypred, ypred_ci): see the module docstring; ``joint_factory()`` gives the joint covariance
    (called only for conditional intervals)."""
    X, Z, off, used = prediction_rows(fit, newdata, offset)
    res, ws = fit.result, fit.ws
    eta = X @ res.beta
    if conditional:
        joint = joint_factory()
        if Z is None:
            eta = eta + fit.design.Z() @ res.b
            var = joint.eta_variance_fitted()
        else:
            eta = eta + Z @ res.b
            var = joint.eta_variance_rows(X, Z)
    else:
        var = np.einsum("ip,pq,iq->i", X, cov_beta, X)
    se = np.sqrt(np.maximum(var, 0.0))
    rank_x = np.linalg.matrix_rank(fit.design.X)
    if simultaneous:
        k = rank_x + (fit.design.q if conditional else 0)
        crit = float(np.sqrt(k * f_ppf(1 - alpha, k, df)))
    else:
        crit = float(t_ppf(1 - alpha / 2, df))
    ypred, ci = mean_interval(ws.link, ws.dist, eta + off, crit * se)
    outside = np.isnan(ypred) & np.isfinite(eta + off)
    if outside.any():
        ci[outside] = np.nan
        lo, hi = ws.dist.mean_range
        warn(
            f"predict: {int(outside.sum())} of {outside.size} predicted linear predictors are outside "
            f"the domain of the '{ws.link.name}' link, or give means outside the {ws.dist.name} "
            f"family's range [{lo:g}, {hi:g}]: their predictions and intervals are NaN",
            GLMMWarning,
        )
    if used is not None:
        full = np.full(used.size, np.nan)
        full[used] = ypred
        full_ci = np.full((used.size, 2), np.nan)
        full_ci[used] = ci
        return full, full_ci
    return ypred, ci
