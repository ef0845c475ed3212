"""Tail probabilities and quantiles of t, F, chi-square and normal, from ``scipy.special``.

These are the functions ``scipy.stats`` calls (scipy 1.18), without importing ``scipy.stats``
(~0.3 s at start-up, no other use on a fit's path). Degrees of freedom may be ``inf``
(MATLAB's DFMethod 'none'): t becomes the normal and F(d1, inf) becomes chi-square(d1) / d1.
"""

from __future__ import annotations

import numpy as np
import scipy.special as sc

__all__ = ["chi2_sf", "f_ppf", "f_sf", "norm_ppf", "t_ppf", "t_sf"]


def t_sf(x, df):
    """P(T_df > x); the normal tail for df = inf."""
    x = np.asarray(x, dtype=float)
    df = np.asarray(df, dtype=float)
    return np.where(np.isinf(df), sc.ndtr(-x), sc.stdtr(np.where(np.isinf(df), 1.0, df), -x))[()]


def t_ppf(q, df):
    """The q-quantile of t_df (-inf at q = 0; the normal quantile for df = inf)."""
    q = np.asarray(q, dtype=float)
    df = np.asarray(df, dtype=float)
    finite = sc.stdtrit(np.where(np.isinf(df), 1.0, df), q)
    out = np.where(np.isinf(df), sc.ndtri(q), finite)
    return np.where((q == 0) & (df > 0), -np.inf, out)[()]


def norm_ppf(q):
    return sc.ndtri(q)


def chi2_sf(x, df):
    """P(chi2_df > x)."""
    return sc.chdtrc(df, x)


def f_sf(x, d1, d2):
    """P(F_{d1, d2} > x); d2 = inf gives P(chi2_d1 > d1 x)."""
    x = np.asarray(x, dtype=float)
    d2 = np.asarray(d2, dtype=float)
    inf = np.isinf(d2)
    return np.where(inf, sc.chdtrc(d1, d1 * x), sc.fdtrc(d1, np.where(inf, 1.0, d2), x))[()]


def f_ppf(q, d1, d2):
    """The q-quantile of F_{d1, d2}; d2 = inf gives chi2_d1 quantile / d1."""
    d2 = np.asarray(d2, dtype=float)
    inf = np.isinf(d2)
    return np.where(inf, sc.chdtri(d1, 1 - q) / d1, sc.fdtri(d1, np.where(inf, 1.0, d2), q))[()]
