"""Infinite fixed-effects estimates: (quasi-)complete separation in binomial data, and its Poisson
analogue (a combination of columns that is <= 0 on every zero count and 0 elsewhere).

The ML estimate of beta in a binomial GLM with logit, probit, comploglog or loglog link is finite if
and only if no direction ``d != 0`` has ``x_i'd >= 0`` where every trial succeeded, ``x_i'd <= 0``
where every trial failed and ``x_i'd = 0`` where both occurred (Albert & Anderson 1984, Silvapulle
1981). Along such a direction the log-likelihood keeps increasing, so the estimate is at infinity;
random effects do not change this for the fixed-effects columns (their conditional modes are
penalised, beta is not). The same holds for a Poisson log-linear model with ``x_i'd <= 0`` on zero
counts and ``x_i'd = 0`` on positive counts.

The check (Konis 2007, R's detectseparation) is a linear programme: maximise the sum of
``s_i x_i'd`` over the constrained rows subject to those constraints and ``-1 <= d <= 1``; a positive
optimum proves separation and its ``d`` names the columns involved. The LP costs about 0.1 s at
n = 10,000, p = 10, so a fixed-effects GLM is first fitted by Newton's method: a converged Newton
iteration is a finite maximiser, which proves that no such direction exists (the log-likelihood is
strictly concave for a full-rank X), and the LP is then skipped. Under separation Newton's steps
never shrink (the likelihood approaches its supremum only at infinity), so the LP decides.

Separation by the random effects (a group with all successes) is not refused: the random effect is
shrunk. But when the fixed and random effects together predict *every* binary response exactly
(complete separation of ``[X Z]``), the likelihood increases without bound with the random-effects
variance; :func:`find_complete_separation_with_groups` checks this by an LP with ``p + q`` columns,
for data of up to 2,000 rows (where such designs arise; ~50 ms there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..blas import blas_limit

__all__ = ["Separation", "find_separation", "may_separate_completely"]

_NEWTON_ITER = 30
_STEP_TOL = 1e-8
_ETA_MAX = 30.0
_COMPLETE_MAX_ROWS = 2000


@dataclass(frozen=True)
class Separation:
    direction: np.ndarray  # (p,) the separating combination of the columns (columns scaled to max |x| = 1)
    rows: np.ndarray  # (n,) bool: rows whose response the combination predicts perfectly
    complete: bool  # every row is predicted perfectly (no row with x'd = 0)


def _newton_certifies(X: np.ndarray, k: np.ndarray, m: np.ndarray | None, kind: str) -> bool:
    """True when Newton's method (IRLS) converges to a finite GLM maximiser, so no separation exists.

    ``k``: successes (binomial) or counts (poisson); ``m``: trials (binomial)."""
    if kind == "binomial":
        mu = (k + 0.5) / (m + 1.0)
        eta = np.log(mu / (1.0 - mu))
    else:
        mu = k + 0.1
        eta = np.log(mu)
    Xt = np.ascontiguousarray(X.T)
    with np.errstate(all="ignore"):
        for it in range(_NEWTON_ITER):
            if kind == "binomial":
                w = m * mu * (1.0 - mu)
                resid = k - m * mu
            else:
                w = mu
                resid = k - mu
            # IRLS on the working response on the first step, plain Newton steps after it
            target = w * eta + resid if it == 0 else resid
            H = (Xt * w) @ X
            g = Xt @ target
            try:
                L = np.linalg.cholesky(H)
            except np.linalg.LinAlgError:
                return False
            step = np.linalg.solve(L.T, np.linalg.solve(L, g))
            if it == 0:
                beta = step
                new_eta = X @ beta
                delta = np.inf
            else:
                beta = beta + step
                new_eta = X @ beta
                delta = float(np.max(np.abs(new_eta - eta)))
            eta = new_eta
            if not np.all(np.isfinite(eta)) or np.max(np.abs(eta)) > _ETA_MAX:
                return False
            if delta < _STEP_TOL * (1.0 + float(np.max(np.abs(eta)))):
                return True
            mu = 1.0 / (1.0 + np.exp(-eta)) if kind == "binomial" else np.exp(eta)
    return False


def find_separation(
    X: np.ndarray, k: np.ndarray, m: np.ndarray | None, kind: str, *, certify: bool = True
) -> Separation | None:
    """The separating direction of the fixed-effects design ``X``, or None when every estimate is finite.

    ``kind`` is 'binomial' (``k`` successes out of ``m`` trials per row, weights folded in) or
    'poisson' (``k`` counts). ``certify=False`` skips the Newton shortcut (for tests of the LP)."""
    from scipy.optimize import linprog

    X = np.asarray(X, dtype=float)
    k = np.asarray(k, dtype=float)
    if kind == "binomial":
        sign = np.where(k >= m, 1.0, np.where(k <= 0, -1.0, 0.0))
    else:
        sign = np.where(k <= 0, -1.0, 0.0)
    free = sign != 0
    if not free.any():  # no all-success, all-failure or zero-count row: nothing to separate
        return None
    if certify:
        with blas_limit(1):  # small products: see ppl_glmm.blas
            if _newton_certifies(X, k, m, kind):
                return None
    scale = np.max(np.abs(X), axis=0)
    scale[scale == 0] = 1.0
    Xs = X / scale
    # identical rows give identical constraints (factor designs have few distinct rows)
    keyed = np.column_stack([Xs, sign])
    uniq, inverse, counts = np.unique(keyed, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    U, s = uniq[:, :-1], uniq[:, -1]
    ufree = s != 0
    St = U[ufree] * s[ufree, None]
    c = -(St * counts[ufree, None]).sum(axis=0)
    a_eq = U[~ufree] if (~ufree).any() else None
    b_eq = np.zeros(int((~ufree).sum())) if (~ufree).any() else None
    res = linprog(
        c,
        A_ub=-St,
        b_ub=np.zeros(St.shape[0]),
        A_eq=a_eq,
        b_eq=b_eq,
        bounds=[(-1.0, 1.0)] * X.shape[1],
        method="highs",
    )
    if res.status != 0 or -res.fun <= 1e-7 * max(1.0, float(free.sum())) ** 0.5:
        return None
    d = np.where(np.abs(res.x) > 1e-9, res.x, 0.0)
    margin = (Xs @ d) * sign
    rows = free & (margin > 1e-9)
    if not rows.any():
        return None
    return Separation(direction=d, rows=rows, complete=_complete(St, a_eq) if free.all() else False)


def _complete(St: np.ndarray, a_eq) -> bool:
    """Complete separation: some direction makes every constrained row strictly positive
    (maximise t subject to S X d >= t, t <= 1)."""
    from scipy.optimize import linprog

    if a_eq is not None:
        return False
    p = St.shape[1]
    res = linprog(
        np.r_[np.zeros(p), -1.0],
        A_ub=np.column_stack([-St, np.ones(St.shape[0])]),
        b_ub=np.zeros(St.shape[0]),
        bounds=[(-1.0, 1.0)] * p + [(None, 1.0)],
        method="highs",
    )
    return bool(res.status == 0 and -res.fun > 1e-9)


def may_separate_completely(k: np.ndarray, m: np.ndarray) -> bool:
    """Whether :func:`find_complete_separation_with_groups` has an LP to solve: no row has both
    outcomes (such a row cannot be predicted exactly), and there are at most 2,000 rows (the LP
    takes ~50 ms there; exact prediction of every row by the random effects is a small-data
    problem)."""
    return k.size <= _COMPLETE_MAX_ROWS and not np.any((k > 0) & (k < m))


def find_complete_separation_with_groups(X: np.ndarray, Z, k: np.ndarray, m: np.ndarray) -> np.ndarray | None:
    """Binomial rows predicted exactly by fixed and random effects together: a direction ``d`` with
    ``s_i [X Z]_i d > 0`` on every row (``s_i = +1`` all successes, ``-1`` all failures).

    Then every response is fitted exactly as the random-effects variances grow without bound (the
    Laplace likelihood has no finite maximum). Returns the Z part of the direction, or None.
    Only complete separation is refused: a group with all successes (quasi-separation by Z) is
    common and its random effect is shrunk as usual. A level holding a single trial (an
    observation-level effect on binary data) fits its one outcome exactly at any variance but
    gains nothing as it grows (P(y) tends to 1/2), so it does not count: its column is left out of
    the LP (lme4 and glmmTMB fit ``y ~ x + (1|obs)`` on 0/1 data, SD 0.10 on a 600-row case)."""
    import scipy.sparse as sp
    from scipy.optimize import linprog

    k = np.asarray(k, dtype=float)
    if not may_separate_completely(k, m):
        return None
    sign = np.where(k >= m, 1.0, -1.0)
    n, p = X.shape
    q = Z.shape[1]
    trials = np.asarray(abs(sp.csc_matrix(Z)).sign().T @ np.asarray(m, dtype=float)).ravel()
    keep = np.flatnonzero(trials >= 2)
    Z = sp.csc_matrix(Z)[:, keep]
    scale = np.max(np.abs(X), axis=0)
    scale[scale == 0] = 1.0
    A = sp.hstack([sp.csr_matrix(X / scale), sp.csr_matrix(Z)]).tocsr()
    A = sp.diags(sign) @ A
    # maximise t subject to A d >= t, t <= 1, -1 <= d <= 1
    a_ub = sp.hstack([-A, sp.csr_matrix(np.ones((n, 1)))]).tocsr()
    res = linprog(
        np.r_[np.zeros(p + keep.size), -1.0],
        A_ub=a_ub,
        b_ub=np.zeros(n),
        bounds=[(-1.0, 1.0)] * (p + keep.size) + [(None, 1.0)],
        method="highs",
    )
    if res.status != 0 or -res.fun <= 1e-9:
        return None
    direction = np.zeros(q)
    direction[keep] = res.x[p : p + keep.size]
    return direction
