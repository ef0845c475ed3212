"""Wald F tests of linear hypotheses (MATLAB ``coefTest``) and per-term marginal F tests (``anova``).

``coef_test``: H0: H beta + K b = c. H (M x p) and K (M x q) are first reduced to full row rank r:
with the SVD [H K] = U s V' and U_r the left singular vectors of the r singular values above
max(M, p + q) eps s_max, the system is consistent exactly when c = U_r U_r' c (else it is refused),
and the reduced hypothesis is U_r'[H K] x = U_r'c. Then

    F = d' Sigma^-1 d / r,   d = H_r beta-hat + K_r b-hat - c_r,   p = P(F_{r, DF2} > F),

with Sigma = H_r Cov(beta-hat) H_r' without K (Cov(beta-hat) by the fit's covariance method), or
the joint covariance Cov(H_r beta-hat + K_r (b-hat - b)) of :mod:`.joint` with K (MATLAB's
REContrast). DF1 = r, DF2 = N - rank(X) ('residual'; X has full column rank, so N - p) or inf
('none').

``anova``: for each fixed-effects term (including the intercept), L selects the term's columns of X:
``F = beta_T' Cov(beta-hat)_TT^-1 beta_T / r_T`` (type III / marginal), DF1 = r_T (the number of
columns), DF2 as above. A one-column term gives F = tStat^2 and the coefficient table's p-value.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..design.checks import real_values
from ..errors import InputError, InputTypeError
from ..results import FitRecord
from .distributions import f_sf

__all__ = ["CoefTestResult", "anova_table", "check_hypothesis", "coef_test", "fixed_terms"]


class CoefTestResult(NamedTuple):
    """``coef_test``'s result; unpacks as ``pValue, F, DF1, DF2`` (MATLAB's outputs)."""

    pValue: float
    F: float
    DF1: int
    DF2: float


def _numeric_matrix(value, arg: str, shape_hint: str) -> np.ndarray:
    if isinstance(value, (pd.DataFrame, pd.Series)):
        value = value.to_numpy()
    if sp.issparse(value):
        value = value.toarray()
    if isinstance(value, (str, bytes)):
        raise InputTypeError(f"{arg}: expected a numeric matrix ({shape_hint}), got a string")
    arr = np.array(real_values(value, arg, f"a numeric matrix ({shape_hint})"))  # (a copy)
    if arr.dtype == object:  # pragma: no cover - dtype=float never gives object
        raise InputTypeError(f"{arg}: expected a numeric matrix ({shape_hint})")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{arg}: contains NaN or infinite values")
    return arr


def check_hypothesis(H, c, K, p: int, q: int, default_H: np.ndarray):
    """Validated (H (M x p), c (M,), K (M x q) or None); raises before any work."""
    if H is None:
        Hm = default_H
    else:
        Hm = _numeric_matrix(H, "H", f"M x {p}, one row per linear combination of the {p} fixed effects")
        if Hm.ndim == 1:
            Hm = Hm[None, :]
        if Hm.ndim != 2 or Hm.shape[1] != p or Hm.shape[0] == 0:
            raise InputError(
                f"H: expected an M x {p} matrix (one column per fixed effect), got shape {Hm.shape}"
            )
    M = Hm.shape[0]
    if c is None:
        cv = np.zeros(M)
    else:
        cv = _numeric_matrix(c, "c", f"a vector of length {M}, one value per row of H")
        if cv.ndim == 0:
            cv = np.full(M, float(cv))
        cv = cv.reshape(-1) if cv.ndim == 2 and 1 in cv.shape else cv
        if cv.ndim != 1 or cv.size != M:
            raise InputError(f"c: expected {M} values (one per row of H), got shape {np.shape(c)}")
    Km = None
    if K is not None:
        Km = _numeric_matrix(K, "K", f"M x {q}, one column per random effect in b's order")
        if Km.ndim == 1:
            Km = Km[None, :]
        if Km.ndim != 2 or Km.shape != (M, q):
            raise InputError(
                f"K: expected an {M} x {q} matrix (as many rows as H, one column per random effect), "
                f"got shape {Km.shape}"
            )
    return Hm, cv, Km


def reduce_rank(L: np.ndarray, c: np.ndarray, arg: str) -> tuple[np.ndarray, np.ndarray]:
    """(U_r' L, U_r' c): the hypothesis L x = c at full row rank; refuses an inconsistent one."""
    U, s, _ = np.linalg.svd(L, full_matrices=False)
    tol = max(L.shape) * np.finfo(float).eps * (s[0] if s.size else 0.0)
    r = int(np.sum(s > tol))
    if r == 0:
        raise InputError(f"{arg}: has rank 0 (every row is zero); give at least one non-zero row")
    Ur = U[:, :r]
    resid = c - Ur @ (Ur.T @ c)
    if np.linalg.norm(resid) > 1e-10 * max(1.0, float(np.linalg.norm(c))):
        raise InputError(
            f"{arg}: the hypothesis is inconsistent: the rows are linearly dependent (rank {r} < "
            f"{L.shape[0]} rows) but c does not satisfy the same dependence, so no coefficients "
            "satisfy it; remove the redundant rows or correct c"
        )
    return Ur.T @ L, Ur.T @ c


def coef_test(
    fit: FitRecord, cov_beta: np.ndarray, joint_factory, Hm: np.ndarray, c: np.ndarray, K, df2: float
) -> CoefTestResult:
    """Wald F test of H beta + K b = c (module docstring); ``joint_factory()`` gives the joint
    covariance (called only when K is given)."""
    p = Hm.shape[1]
    # each row of [H, K] and its c scaled to a largest |entry| of 1: F is invariant to the rows'
    # scale, and a row of 1e-200 or 1e160 made the covariance singular or its F 0
    scale = np.max(np.abs(Hm if K is None else np.hstack([Hm, K])), axis=1)
    scale = np.where(scale > 0, scale, 1.0)
    Hm, c = Hm / scale[:, None], c / scale
    K = None if K is None else K / scale[:, None]
    if K is None:
        Hr, cr = reduce_rank(Hm, c, "H")
        d = Hr @ fit.result.beta - cr
        Sigma = Hr @ cov_beta @ Hr.T
    else:
        Lr, cr = reduce_rank(np.hstack([Hm, K]), c, "[H, K]")
        Hr, Kr = Lr[:, :p], Lr[:, p:]
        d = Hr @ fit.result.beta + Kr @ fit.result.b - cr
        Sigma = joint_factory().contrast_covariance(Hr, Kr)
    r = d.size
    F = float(d @ np.linalg.solve(Sigma, d)) / r
    return CoefTestResult(float(f_sf(F, r, df2)), F, r, float(df2))


_CALL = re.compile(r"^C\(\s*([^,()]+?)\s*(?:,.*)?\)$")


def _term_name(name: str) -> str:
    """formulae's term name -> the formula's: ``Intercept`` -> ``(Intercept)``, ``C(s, Effects)``
    -> ``s`` (per factor of an interaction)."""
    if name == "Intercept":
        return "(Intercept)"
    parts = []
    for part in name.split(":"):
        m = _CALL.match(part.strip())
        parts.append(m.group(1) if m else part)
    return ":".join(parts)


def fixed_terms(fit: FitRecord) -> list[tuple[str, slice]]:
    """(term name, columns of X) for each fixed-effects term, in X's column order."""
    mm = fit.design.fixed.model_matrices()
    return [(_term_name(k), sl) for k, sl in mm.slices.items()]


def anova_table(fit: FitRecord, cov_beta: np.ndarray, df2: float) -> pd.DataFrame:
    """Term, FStat, DF1, DF2, pValue: the marginal F test of each fixed-effects term."""
    beta = fit.result.beta
    rows = []
    for name, sl in fixed_terms(fit):
        b = beta[sl]
        V = cov_beta[sl, sl]
        r = b.size
        F = float(b @ np.linalg.solve(V, b)) / r
        rows.append((name, F, r, float(df2), float(f_sf(F, r, df2))))
    return pd.DataFrame(rows, columns=["Term", "FStat", "DF1", "DF2", "pValue"])
