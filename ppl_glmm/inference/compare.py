"""Likelihood-ratio comparison of two fitted models (MATLAB ``compare``).

For models A (``this``) and B (``alt``) with log-likelihoods L_A, L_B (Laplace, quadrature,
restricted or pseudo-likelihood: the fits' own) and parameter counts DF = p + covariance
parameters (+1 for an estimated dispersion; the k of ``model_criterion``):

* ``LRStat = 2 (L_B - L_A)``, ``deltaDF = DF_B - DF_A``, ``pValue = P(chi2_deltaDF > LRStat)``
  (NaN when deltaDF <= 0: the models cannot be nested).
* MATLAB's swap: if ``DF_B < DF_A`` and ``L_B <= L_A`` the models (and their names) are swapped
  with a warning; then ``L_B < L_A`` is an error (a shortfall within ``1e-7 max(1, |L_A|)``,
  the optimiser's precision, is accepted).

Always refused (an LRT is meaningless otherwise): fits to different rows, responses, prior weights
or binomial sizes, or of different distribution or link; a restricted (REML/REMPL) fit against an
unrestricted one; two restricted fits whose fixed-effects column spaces differ (a restricted
likelihood is that of residual contrasts, which change with X).

``check_nesting=True`` adds MATLAB's checks: the same fit method, not REMPL; span(X_A) within
span(X_B) and span(Z_A) within span(Z_B); and offsets whose difference o_A - o_B lies in span(X_B)
(equal offsets, or an offset of A that B takes as a predictor). Two pseudo-likelihood fits (MPL,
REMPL) other than normal/identity are compared with a warning whatever ``check_nesting`` says
(MATLAB warns under CheckNesting only; its documentation forbids the test): the LRT then compares
the pseudo-likelihoods of two different pseudo responses.

Column-space checks: X (dense, full column rank) by least squares, a column being in the span when
its residual is <= 1e-6 of its norm. Z is never formed densely: a random term of A is in span(Z_B)
when a term of B has a grouping that refines A's (every level of B's lies within one level of A's)
and A's term columns lie in the span of B's term columns (a sufficient condition, exact); columns
of A's terms that fail it are tested one at a time by sparse least squares (``lsqr``) on the
column-equilibrated Z_B, with the same 1e-6 relative residual.

Boundary note: when the random-effects columns differ (as (grouping, column) pairs), a variance
is tested at the boundary of its space and the chi-square p-value is conservative (Self and Liang
1987). With the same columns (a correlation, a covariance pattern or an estimated dispersion
tested) the null is an interior point: no note. When the fixed effects are the same and B has
exactly one more random-effects dimension than A (one added variance, with its covariances,
deltaDF = d), the null distribution is the 50:50 mixture of chi2_{d-1} and chi2_d (Stram and Lee
1994; chi2_0 is a point mass at 0), whose p-value ``0.5 P(chi2_{d-1} > LR) + 0.5 P(chi2_d > LR)``
is returned in ``attrs['pValue_mixture']`` (NaN otherwise). ``attrs['note']`` holds the note ('' if none).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.linalg import lsqr

from ..design.random import z_matrix
from ..errors import GLMMWarning, InputError, warn
from ..fit_methods import METHODS
from ..results import FitRecord
from .distributions import chi2_sf

__all__ = ["ComparedModel", "columns_in_span", "compare_models", "random_in_span"]

SPAN_TOL = 1e-6
LL_TOL = 1e-7


@dataclass(frozen=True)
class ComparedModel:
    """One side of a comparison: the fit, its display name, DF (= k) and information criteria."""

    name: str
    fit: FitRecord
    df: int
    aic: float
    bic: float

    @property
    def loglik(self) -> float:
        return float(self.fit.result.log_likelihood)


def columns_in_span(A: np.ndarray, B: np.ndarray, tol: float = SPAN_TOL) -> bool:
    """Every column of A lies in span(B): least-squares residual <= tol x the column's norm."""
    if A.shape[1] == 0:
        return True
    coef = np.linalg.lstsq(B, A, rcond=None)[0]
    resid = np.linalg.norm(A - B @ coef, axis=0)
    return bool(np.all(resid <= tol * np.maximum(np.linalg.norm(A, axis=0), np.finfo(float).tiny)))


def offset_in_span(small: np.ndarray, big: np.ndarray, X: np.ndarray, tol: float = SPAN_TOL) -> bool:
    """The smaller model's linear predictor X_s b_s + o_s is one of the larger's, X b + o, for every
    b_s (given span(X_s) within span(X)) when o_s - o lies in span(X): e.g. an offset log(t)
    against a model with log(t) as a predictor (which tests its coefficient 1)."""
    small, big = np.asarray(small, dtype=float), np.asarray(big, dtype=float)
    d = small - big
    if not np.any(d):
        return True
    # the residual is measured against the offsets' size (a difference of rounding, log(2 t)
    # against log(t) + log(2), is no difference), not only against the difference's own
    size = max(np.linalg.norm(small), np.linalg.norm(big), np.linalg.norm(d))
    return columns_in_span(d[:, None], X, tol * size / np.linalg.norm(d))


def _refines(big, small) -> bool:
    """Every level of ``big``'s grouping lies within one level of ``small``'s."""
    pairs = np.unique(big.codes.astype(np.int64) * small.n_levels + small.codes)
    return pairs.size == np.unique(big.codes).size


def random_in_span(small_terms, big_terms, n: int, tol: float = SPAN_TOL) -> bool:
    """span(Z_small) within span(Z_big), without forming either densely (module docstring)."""
    remaining = [
        t
        for t in small_terms
        if not any(_refines(u, t) and columns_in_span(t.T, u.T, tol) for u in big_terms)
    ]
    if not remaining:
        return True
    if not big_terms:
        return False
    Zb = z_matrix(tuple(big_terms), n).tocsc()
    norms = np.sqrt(np.asarray(Zb.multiply(Zb).sum(axis=0))).ravel()
    Zb = Zb @ sp.diags(1.0 / np.where(norms > 0, norms, 1.0))
    Zs = z_matrix(tuple(small_terms), n).tocsc()
    limit = max(2 * Zb.shape[1], 200)
    for t in remaining:
        for j in range(t.offset, t.offset + t.size):
            v = Zs[:, j].toarray().ravel()
            vnorm = np.linalg.norm(v)
            if vnorm == 0:
                continue
            x = lsqr(Zb, v, atol=1e-14, btol=1e-14, iter_lim=limit)[0]
            if np.linalg.norm(v - Zb @ x) > tol * vnorm:
                return False
    return True


def _same_link(a, b) -> bool:
    """The same link function: built-in links by name and power links by exponent (their names round
    it to 6 digits); custom links by the user's callables, so the same functions given again or
    brought back by pickle are one link (the compiled NumPy inverse is new each time)."""
    if a.name != b.name or a.power != b.power or a.builtin != b.builtin:
        return False
    return a.builtin or (a.inverse_pt is b.inverse_pt and a.link_np is b.link_np)


def _link_label(link) -> str:
    if link.power is not None:
        return f"power({link.power!r})"
    return link.name if link.builtin else f"custom link {link.name!r} of {link.inverse_pt!r}"


def _check_comparable(a: ComparedModel, b: ComparedModel) -> None:
    """The refusals that apply whatever ``check_nesting`` says."""
    da, db = a.fit.design, b.fit.design
    wa, wb = a.fit.ws, b.fit.ws
    if da.subset.size != db.subset.size or not np.array_equal(da.subset, db.subset):
        raise InputError(
            f"alt: the models were fitted to different rows ({da.n} of {da.subset.size} input rows "
            f"against {db.n} of {db.subset.size}); a likelihood-ratio test needs the same observations: "
            "fit both to the same data with the same exclude and missing rows"
        )
    if wa.dist.name != wb.dist.name:
        raise InputError(
            f"alt: the models have different distributions ({wa.dist.name} and {wb.dist.name}); "
            "their likelihoods are not comparable by a likelihood-ratio test"
        )
    if not _same_link(wa.link, wb.link):
        raise InputError(
            f"alt: the models have different links ({_link_label(wa.link)} and "
            f"{_link_label(wb.link)}); a likelihood-ratio test needs the same distribution and link"
        )
    if not np.array_equal(da.binomial_size, db.binomial_size):
        raise InputError(
            "alt: the models have different binomial sizes; fit both with the same binomial_size"
        )
    wa_, wb_ = da.weights, db.weights
    if np.max(np.abs(wa_ - wb_)) > np.sqrt(np.finfo(float).eps) * max(1.0, float(np.max(np.abs(wa_)))):
        raise InputError("alt: the models have different prior weights; fit both with the same weights")
    if not np.array_equal(a.fit.result.y, b.fit.result.y):
        raise InputError(
            "alt: the models were fitted to different responses; a likelihood-ratio test compares "
            "two models of the same response"
        )
    ra = _refuse_mixed(
        a,
        b,
        "restricted",
        "a restricted fit",
        "an unrestricted one",
        "the restricted log-likelihood is that of residual contrasts, not of the data",
    )
    if ra and not _same_fixed(a.fit, b.fit):
        raise InputError(
            f"alt: both models are fitted by {a.fit.result.fit_method} but their fixed effects differ; "
            "restricted log-likelihoods are of residual contrasts that depend on the fixed-effects "
            "design, so they are not comparable across fixed effects. Refit both by maximum "
            "likelihood (fit_method='laplace', or 'mpl' instead of 'rempl') to test fixed effects"
        )
    if ra and (shift := _coding_shift(a.fit.design.X, b.fit.design.X)) > LL_TOL:
        raise InputError(
            f"alt: both models are fitted by {a.fit.result.fit_method} with the same fixed effects "
            f"coded differently (X_alt = X A, log|det A| = {shift:.4g}); a restricted log-likelihood "
            "changes by log|det A| with the coding (lme4's does too), so the two are not comparable: "
            "fit both with the same formula terms, dummy_var_coding and scaling of the predictors"
        )
    _refuse_mixed(
        a,
        b,
        "pseudo",
        "a pseudo-likelihood fit",
        "a likelihood fit",
        "the pseudo-likelihood is that of the final pseudo data, not of the response",
    )


def _refuse_mixed(a, b, kind: str, with_it: str, without_it: str, why: str) -> bool:
    """Refuse a pair where one fit method has the registry flag ``kind`` (restricted, pseudo) and
    the other has not; return the flag (the same for both)."""
    fa, fb = getattr(METHODS[a.fit.result.fit_method], kind), getattr(METHODS[b.fit.result.fit_method], kind)
    if fa != fb:
        raise InputError(
            f"alt: {with_it} ({(a if fa else b).fit.result.fit_method}) cannot be compared with "
            f"{without_it} ({(b if fa else a).fit.result.fit_method}): {why}; refit both with the same "
            "fit_method (e.g. 'laplace')"
        )
    return fa


def _coding_shift(Xa: np.ndarray, Xb: np.ndarray) -> float:
    """|log|det A|| for Xb = Xa A (same column space): what a restricted log-likelihood moves by
    between the two codings (0 for the same X, a column permutation or sign changes)."""
    A = np.linalg.lstsq(Xa, Xb, rcond=None)[0]
    return abs(float(np.linalg.slogdet(A)[1]))


def _same_fixed(a: FitRecord, b: FitRecord) -> bool:
    Xa, Xb = a.design.X, b.design.X
    return Xa.shape[1] == Xb.shape[1] and columns_in_span(Xa, Xb) and columns_in_span(Xb, Xa)


def _check_nesting(a: ComparedModel, b: ComparedModel) -> None:
    """MATLAB's CheckNesting: A (the smaller model) nested in B."""
    ma, mb = a.fit.result.fit_method, b.fit.result.fit_method
    if ma != mb:
        raise InputError(
            f"check_nesting: the models are fitted by different methods ({ma} and {mb}); refit them "
            "with the same fit_method"
        )
    if ma == "quadrature" and a.fit.settings.n_agq != b.fit.settings.n_agq:
        raise InputError(
            f"check_nesting: the models are fitted by quadrature with different numbers of nodes "
            f"(n_agq = {a.fit.settings.n_agq} and {b.fit.settings.n_agq}); refit them with the same n_agq"
        )
    if ma == "rempl":
        raise InputError(
            "check_nesting: models fitted by REMPL cannot be compared by a likelihood-ratio test "
            "(MATLAB); refit with fit_method='laplace' (or 'mpl')"
        )
    if not columns_in_span(a.fit.design.X, b.fit.design.X):
        raise InputError(
            f"check_nesting: the fixed-effects design of {a.name} is not within the column space of "
            f"{b.name}'s, so the models are not nested"
        )
    if not offset_in_span(a.fit.design.offset, b.fit.design.offset, b.fit.design.X):
        raise InputError(
            f"check_nesting: {a.name}'s offset differs from {b.name}'s by more than a combination of "
            f"{b.name}'s fixed effects, so the models are not nested; fit both with the same offset "
            "(or give the larger model the offset's variable as a predictor)"
        )
    if not random_in_span(a.fit.design.terms, b.fit.design.terms, a.fit.n):
        raise InputError(
            f"check_nesting: the random-effects design of {a.name} is not within the column space of "
            f"{b.name}'s, so the models are not nested"
        )


def _on_pseudo_data(a: ComparedModel) -> bool:
    """A pseudo-likelihood fit (MPL, REMPL) whose pseudo data are not the response itself (they
    are for the normal family with the identity link, where MPL is ML and REMPL is REML)."""
    ws = a.fit.ws
    return METHODS[a.fit.result.fit_method].pseudo and not (
        ws.dist.name == "normal" and ws.link.name == "identity"
    )


def _boundary(a: ComparedModel, b: ComparedModel, lr: float, ddf: float) -> tuple[str, float]:
    """The boundary note and the chi-square mixture p-value (module docstring)."""
    da, db = a.fit.design, b.fit.design
    if _random_columns(da.terms) == _random_columns(db.terms):
        # the same random-effects columns: what differs (a correlation, a covariance pattern, an
        # estimated dispersion) is tested at an interior point, where the chi-square holds
        return "", float("nan")
    tied = _tied_added_columns(a, b)
    if tied:
        return (
            f"The larger model's covariance pattern ties the variance of {', '.join(tied)} to other "
            "columns' (Isotropic or CompSymm), so the smaller model is not the larger one with "
            "variances set to zero: the models may not be nested, and neither the chi-square "
            "p-value nor a chi-square mixture applies; compare patterns that give each added "
            "column its own variance (FullCholesky, Diagonal)."
        ), float("nan")
    note = (
        "The models differ in their random effects: a variance tested at zero lies on the boundary "
        "of its parameter space, so the chi-square p-value is conservative (too large; Self and "
        "Liang 1987)."
    )
    dims_a, dims_b = sum(t.q_r for t in da.terms), sum(t.q_r for t in db.terms)
    if dims_b == dims_a + 1 and ddf >= 1 and _same_fixed(a.fit, b.fit):
        d = int(ddf)
        low = (1.0 if lr <= 0 else 0.0) if d == 1 else float(chi2_sf(max(lr, 0.0), d - 1))
        mix = 0.5 * low + 0.5 * float(chi2_sf(max(lr, 0.0), d))
        note += (
            f" With one random-effects dimension added, the null distribution is the 50:50 mixture of "
            f"chi2_{d - 1} and chi2_{d}: p = {mix:.4g} (attrs['pValue_mixture'])."
        )
        return note, mix
    return note, float("nan")


def _tied_added_columns(a: ComparedModel, b: ComparedModel) -> list[str]:
    """The random-effects columns of B that A lacks and whose variance B's pattern ties to its
    term's other columns (Isotropic, CompSymm with more than one column), as 'group: name'."""
    small = set(_random_columns(a.fit.design.terms))
    out = []
    for term, pattern in zip(b.fit.design.terms, b.fit.ws.patterns.terms):
        if pattern.kind in ("Isotropic", "CompSymm") and pattern.q > 1:
            out += [f"{term.group}: {n}" for n in term.names if (term.spec.group_vars, n) not in small]
    return out


def _random_columns(terms) -> list[tuple]:
    """The random-effects columns as (grouping, column name) pairs, whatever the terms' split
    (``(1 + x || g)`` has those of ``(1 + x | g)``)."""
    return sorted((t.spec.group_vars, name) for t in terms for name in t.names)


def compare_models(this: ComparedModel, alt: ComparedModel, check_nesting: bool = False) -> pd.DataFrame:
    """Model, DF, AIC, BIC, LogLik, LRStat, deltaDF, pValue (module docstring); row 1 is the
    smaller model after MATLAB's swap."""
    _check_comparable(this, alt)
    a, b = this, alt
    if b.df < a.df and b.loglik <= a.loglik:
        warn(
            f"compare: {b.name} has fewer parameters (DF {b.df} < {a.df}) and no larger log-likelihood, "
            f"so the models were swapped: {b.name} is the null model (row 1) and {a.name} the alternative",
            GLMMWarning,
        )
        a, b = b, a
    if check_nesting:  # (before the log-likelihoods: a model that is not nested is told so)
        _check_nesting(a, b)
    pseudo = _on_pseudo_data(a)
    tied = _tied_added_columns(a, b)
    if b.loglik < a.loglik - LL_TOL * max(1.0, abs(a.loglik)):
        if pseudo:
            why = (
                "the two are pseudo-likelihoods of different pseudo responses (each "
                f"{a.fit.result.fit_method} fit's final pseudo data), which need not be ordered as the "
                "models are; refit both with fit_method='laplace' for a likelihood-ratio test of the data"
            )
        elif tied:
            why = (
                f"its covariance pattern ties the variance of {', '.join(tied)} to other columns' "
                f"(Isotropic or CompSymm), so it does not contain {a.name}; compare patterns that give "
                "each added column its own variance (FullCholesky, Diagonal)"
            )
        else:
            why = "pass the larger model as alt, and check that both fits converged"
        raise InputError(
            f"alt: {b.name}'s log-likelihood ({b.loglik:.6f}) is smaller than {a.name}'s "
            f"({a.loglik:.6f}), so {b.name} cannot contain {a.name}: {why}"
        )
    if pseudo:
        warn(
            f"compare: the models are fitted by {a.fit.result.fit_method.upper()}, so the LRT compares "
            "the pseudo-likelihoods of two different pseudo responses (each fit's final pseudo data), "
            "and its chi-square p-value has no justification; refit with fit_method='laplace' for a "
            "likelihood-ratio test of the data",
            GLMMWarning,
        )
    lr = 2.0 * (b.loglik - a.loglik)
    ddf = float(b.df - a.df)
    pval = float(chi2_sf(max(lr, 0.0), ddf)) if ddf > 0 else float("nan")
    note, mix = _boundary(a, b, lr, ddf)
    if tied:
        warn(f"compare: {note}", GLMMWarning)
    out = pd.DataFrame(
        {
            "Model": [a.name, b.name],
            "DF": np.array([a.df, b.df], dtype=np.int64),
            "AIC": [a.aic, b.aic],
            "BIC": [a.bic, b.bic],
            "LogLik": [a.loglik, b.loglik],
            "LRStat": [np.nan, lr],
            "deltaDF": [np.nan, ddf],
            "pValue": [np.nan, pval],
        }
    )
    out.attrs["note"] = note
    out.attrs["pValue_mixture"] = mix
    return out
