"""Profile-likelihood confidence intervals for the covariance parameters (lme4's
``confint(method = "profile")``).

For a canonical parameter v (an SD or a correlation of a random-effects term, the residual SD
sigma, negative binomial's theta) the profile deviance is

    d(v) = 2 (f(v) - f_hat),     f(v) = min { f(beta, psi) : psi has v at this parameter }

with f the fit's objective (the negative Laplace, quadrature or restricted log-likelihood, as
minimised by the fit) and f_hat its minimum. The (1 - alpha) interval is {v : d(v) <= c},
c = chi2_{1, 1-alpha} (equivalently |zeta(v)| <= z_{1-alpha/2} with the signed root
zeta(v) = sign(v - v_hat) sqrt(d(v)), which lme4 interpolates by a spline over a grid). Here each
end point solves zeta(v) = -/+ z_{1-alpha/2} by safeguarded Newton (bisection inside the bracket
when a step leaves it), every evaluation an exact constrained re-optimisation whose slope
d'(v) = 2 df/dv comes free by the envelope theorem (the partial derivative of f in the fixed
parameter at the constrained minimum), so zeta'(v) = d'(v) / (2 zeta(v)).

Each f(v) is a BFGS minimisation over the other parameters with the exact gradient of the engine's
objective, chained through the closed-form map from the natural parameters to the optimiser
vector (:func:`~.covariance_parameters.optimizer_vector`, differentiated by central differences),
preconditioned by the Hessian at the estimate and warm-started from the nearest point already
profiled. The other parameters are optimised in coordinates that keep the boundaries inside the
domain, so a profile never stalls there:

* an SD as a *signed* value s (z = log|s|): the objective is even and smooth in s, so an SD that
  goes to 0 (or starts there, in a singular fit) is an ordinary interior point;
* a correlation as rho = c + h sin(t) on its range (lo, 1), c = (1 + lo)/2, h = (1 - lo)/2 (lo = -1,
  or -1/(q - 1) for a compound-symmetry term of q coefficients): the ends are reached at t = +-pi/2,
  where the objective is stationary in t. From three coefficients on, not every combination of
  correlations in [-1, 1] is a correlation matrix: such points have f = inf (the line search steps
  back), and a start whose other correlations do not fit with the fixed value shrinks them towards 0
  until they do;
* beta, log sigma and log theta as they are.

Boundaries of the profiled parameter: an SD's lower end is d(0), evaluated at SD = 0 exactly with
the correlations that involve that coefficient fixed at 0 (they are not identifiable there); when
d(0) <= c the lower limit is 0 (lme4 reports 0 too). A singular fit (SD estimated at 0) has lower
limit 0 and its upper end is found from the curvature of f at 0. A correlation whose profile does
not reach c before an end of its range gets that end as its limit. Upper ends of SDs (and both ends
of sigma and theta) expand geometrically from the Wald guess until d exceeds c; if it never does
(d(v) flat, at most ``_MAX_EXPANSIONS`` doublings, or sigma / theta beyond a factor
e^``_MAX_LOG_RATIO`` from the estimate), the limit is inf (0 for a lower end of sigma or theta) with
a warning. Where a sub-fit finds no point at which the objective is defined (a quadrature node
outside the link's domain at every start tried), the profile cannot be evaluated there: that end is
NaN, with a warning.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import scipy.optimize as so

from ..errors import GLMMWarning, InputError, warn
from ..fit_methods import METHODS
from ..results import FitRecord
from .covariance_parameters import (
    _dispersion_estimated,
    beta_is_inner,
    covariance_tables,
    natural_estimates,
    optimizer_vector,
)
from .distributions import norm_ppf

__all__ = ["check_profile", "profile_deviance", "profile_tables"]

# BFGS stop: max gradient in standard-error units, so f is within ~g^2/2 = 5e-11 of its minimum
# (d within 1e-10); a tighter test only makes the line search fight f's rounding noise
_GTOL = 1e-5
_ZETA_TOL = 1e-9  # an end point solves zeta(v) = +-z_{1-alpha/2} to this (d to ~4e-9)
_ROOT_RTOL = 1e-12  # or its bracket is this narrow (relative)
_MAX_EXPANSIONS = 40  # outward steps (doubling the distance) before an end is declared unbounded
_MAX_ITERATIONS = 100
_RHO_EDGE = 1e-10  # a correlation's profile is evaluated this far (relative) inside its range's ends
_MAX_LOG_RATIO = 50.0  # sigma or theta further than e^50 from the estimate: the end is unbounded
_MAX_LOG_STEP = 5.0  # the first step of sigma or theta, on the log scale, at most this


class _Undefined(Exception):
    """The profile at a value could not be evaluated: no start gave a finite objective."""


def check_profile(fit: FitRecord) -> None:
    """Refuse a fit whose objective is not a likelihood of the data (pseudo-likelihood)."""
    method = METHODS[fit.result.fit_method]
    if method.pseudo:
        raise InputError(
            f"method: 'profile' is not available for a {method.display} fit, which maximises the "
            "likelihood of pseudo-data that change with the estimates, not a likelihood of the data, so "
            "it has no profile likelihood. "
            "Use method='wald', or refit with fit_method='laplace' (or 'reml' for a normal response)"
        )


class _Profiler:
    """Sub-fits of the fit's objective with one natural parameter held fixed."""

    def __init__(self, fit: FitRecord):
        self.fit = fit
        self.problem = fit.problem()
        z0 = natural_estimates(fit)
        self.P = z0.size
        self.kinds = self._kinds(fit)
        self.corr_lower = self._corr_lower(fit)
        self.rows, self.involved = _table_rows(fit)
        self.w_hat = np.array([self._w_from_z(i, z) for i, z in enumerate(z0)])
        self.f_hat = min(self.value_grad(self.w_hat, [])[0], -fit.result.log_likelihood)
        self.H = self._hessian()
        self.solutions: dict[int, list[tuple[float, np.ndarray]]] = {}

    # ---- coordinates ----------------------------------------------------------------------
    @staticmethod
    def _kinds(fit: FitRecord) -> list[str]:
        """'beta', 'std', 'corr' or 'log' per natural parameter (the term tables' rows in order)."""
        k0 = 0 if beta_is_inner(fit) else fit.p
        kinds = ["beta"] * k0
        for table in covariance_tables(fit, None)[:-1]:
            kinds += list(table["Type"])
        if fit.result.ancillary is not None:
            kinds.append("log")
        if len(kinds) != natural_estimates(fit).size:  # pragma: no cover - layout invariant
            raise AssertionError("profile: the table rows do not match the natural parameters")
        return kinds

    def _corr_lower(self, fit: FitRecord) -> np.ndarray:
        """Per natural parameter the lower end of a correlation's range (-1; -1/(q - 1) for a
        compound-symmetry term), NaN for the others."""
        lo = np.full(self.P, np.nan)
        k = self.kinds.count("beta")
        for t in fit.ws.patterns.terms:
            for i, j in t.rows:
                if i != j:
                    lo[k] = t.corr_lower
                k += 1
        return lo

    def rho_of_t(self, i: int, t: float) -> float:
        """rho = c + h sin(t) of correlation parameter i."""
        lo = self.corr_lower[i]
        return 0.5 * (1 + lo) + 0.5 * (1 - lo) * math.sin(t)

    def corr_edges(self, i: int) -> tuple[float, float]:
        """Where correlation i's profile is evaluated for the ends of its range."""
        lo = self.corr_lower[i]
        return lo + _RHO_EDGE * (1 - lo), 1 - _RHO_EDGE * (1 - lo)

    def _units(self) -> np.ndarray:
        """Finite-difference units of w: beta's and the SDs' (link-scale units) from the workspace
        for a link with units (``Workspace.fd_units``), 1 otherwise and for logs and angles."""
        units = np.ones(self.P)
        fd = self.problem.fd_units
        if fd is not None:
            k0 = self.kinds.count("beta")
            units[:k0] = fd[:k0]
            link_unit = self.fit.ws.fd_unit[0]
            units[[i for i, kind in enumerate(self.kinds) if kind == "std"]] = link_unit
        return units

    def _w_from_z(self, i: int, z: float) -> float:
        kind = self.kinds[i]
        if kind == "std":
            return math.exp(z) if np.isfinite(z) else 0.0
        if kind == "corr":  # z = log((rho - lo)/(1 - rho)) = log((1 + sin t)/(1 - sin t))
            return math.asin(math.tanh(z / 2))
        return float(z)

    def _z(self, w: np.ndarray) -> np.ndarray:
        z = np.empty(self.P)
        for i, (kind, v) in enumerate(zip(self.kinds, w)):
            if kind == "std":
                z[i] = math.log(abs(v)) if v != 0 else -np.inf
            elif kind == "corr":  # rho - lo = h (1 + sin t), 1 - rho = h (1 - sin t)
                s = min(max(math.sin(v), -1.0), 1.0)
                z[i] = math.log((1 + s) / (1 - s)) if abs(s) < 1 else math.copysign(np.inf, s)
            else:
                z[i] = v
        return z

    def _x(self, z: np.ndarray) -> np.ndarray | None:
        """The optimiser vector at natural parameters z, or None where a term's correlations form
        no correlation matrix (from three coefficients on, not every combination of correlations
        in [-1, 1] is positive semi-definite)."""
        try:
            return optimizer_vector(self.fit, z)
        except np.linalg.LinAlgError:
            return None

    def value_grad(self, w: np.ndarray, free: list[int]) -> tuple[float, np.ndarray]:
        """f at w and its gradient in the coordinates ``free`` of w (chain rule through z and x);
        f = inf outside the parameter space."""
        z = self._z(w)
        x = self._x(z)
        gw = np.zeros(len(free))
        if x is None:
            return np.inf, gw
        f, g = self.problem.value_and_grad(x)
        if not np.isfinite(f):
            return np.inf, gw
        for a, i in enumerate(free):
            if self.kinds[i] == "beta":  # x = [beta, ...]: beta enters x as itself
                gw[a] = g[i]
                continue
            if not np.isfinite(z[i]):
                continue  # s = 0 or rho = +-1: the objective is stationary there in w (even / sin)
            h = 1e-6 * max(1.0, abs(z[i]))
            zp, zm = z.copy(), z.copy()
            zp[i] += h
            zm[i] -= h
            xp, xm = self._x(zp), self._x(zm)
            if xp is not None and xm is not None:
                gz = float(g @ (xp - xm)) / (2 * h)
            elif xp is not None or xm is not None:  # on the edge of the parameter space: one-sided
                gz = float(g @ (xp - x)) / h if xp is not None else float(g @ (x - xm)) / h
            else:  # pragma: no cover - x itself is inside
                gz = 0.0
            kind = self.kinds[i]
            if kind == "std":  # z = log|s|
                gw[a] = gz / w[i]
            elif kind == "corr":  # z = log((1 + sin t)/(1 - sin t)), dz/dt = 2 / cos t
                c = math.cos(w[i])
                gw[a] = 2 * gz / c if abs(c) > 1e-12 else 0.0
            else:
                gw[a] = gz
        return float(f), gw

    def _hessian(self) -> np.ndarray:
        """Hessian of f in w at the estimate (central differences of the exact gradient)."""
        free = list(range(self.P))
        H = np.zeros((self.P, self.P))
        units = self._units()
        for j in range(self.P):
            h = 1e-4 * max(units[j], abs(self.w_hat[j]))
            wp, wm = self.w_hat.copy(), self.w_hat.copy()
            wp[j] += h
            wm[j] -= h
            H[:, j] = (self.value_grad(wp, free)[1] - self.value_grad(wm, free)[1]) / (2 * h)
        return 0.5 * (H + H.T)

    def standard_error(self, i: int) -> float:
        """Wald standard error of w_i (nan when the Hessian is not positive definite)."""
        w_eig, V = np.linalg.eigh(self.H)
        if np.any(w_eig <= 0):
            return np.nan
        return float(np.sqrt((V[i] ** 2 / w_eig).sum()))

    def _fixed_with(self, k: int, v: float) -> list[int]:
        """Parameters fixed with parameter k at value v: itself, and at an SD of 0 the correlations
        involving that coefficient (fixed at 0)."""
        if self.kinds[k] != "std" or v != 0:
            return [k]
        return [k, *self.involved.get(k, [])]

    # ---- one profile point ----------------------------------------------------------------
    def w_value(self, k: int, v: float) -> float:
        """w of parameter k at canonical value v (SD, correlation, or sigma / theta)."""
        kind = self.kinds[k]
        if kind == "std":
            return v
        if kind == "corr":
            lo = self.corr_lower[k]
            return math.asin(min(max((2 * v - 1 - lo) / (1 - lo), -1.0), 1.0))
        return math.log(v)

    def profile(self, k: int, v: float) -> tuple[float, float]:
        """(d(v), d'(v)) with parameter k fixed at canonical value v. By the envelope theorem d'(v)
        is twice the partial derivative of f in parameter k at the constrained minimum (nan at an
        SD of 0, where z = -inf).

        The sub-fit starts from the minimiser at the nearest point profiled; where the estimate's
        other parameters (with v in place) are already lower, or the nearest start's sub-fit found
        no defined point, it is run from there too and the lower minimum kept: a negative binomial
        near its Poisson limit has a second minimum in log theta, where the nearest start led (d = 0.47
        at the estimate itself), and a quadrature fit's warm start can leave the link's domain."""
        fixed = self._fixed_with(k, v)
        free = [i for i in range(self.P) if i not in fixed]
        w, f = self._minimise(k, v, self._start(k, v), fixed, free)
        if self._start(k, v) is not self.w_hat and free:
            w_est = self._prepared(k, v, self.w_hat, fixed, free)
            if not np.isfinite(f) or self.value_grad(w_est, [])[0] < f:
                w2, f2 = self._minimise(k, v, self.w_hat, fixed, free)
                if f2 < f or not np.isfinite(f):
                    w, f = w2, f2
        f, gk = self.value_grad(w, [k])
        self.solutions.setdefault(k, []).append((v, w.copy()))
        kind = self.kinds[k]
        if kind == "std":
            slope = gk[0] if v != 0 else np.nan
        elif kind == "corr":  # dt/drho = 1 / (h cos t) = 1 / sqrt(h^2 - (rho - c)^2)
            lo = self.corr_lower[k]
            h, c = 0.5 * (1 - lo), 0.5 * (1 + lo)
            r2 = h * h - (v - c) ** 2
            slope = gk[0] / math.sqrt(r2) if r2 > 0 else np.nan
        else:
            slope = gk[0] / v
        return 2.0 * (f - self.f_hat), 2.0 * slope

    def _prepared(self, k: int, v: float, start: np.ndarray, fixed: list[int], free: list[int]) -> np.ndarray:
        """``start`` with parameter k at v, the parameters fixed with it at 0, and the others moved
        where a sub-fit can start from them."""
        w = start.copy()
        w[k] = self.w_value(k, v)
        for i in fixed[1:]:
            w[i] = 0.0
        for i in free:  # a signed SD at exactly 0 would be a stationary point BFGS never leaves
            if self.kinds[i] == "std" and w[i] == 0.0:
                w[i] = 1e-3 * _scale(self.H[i, i])
        # with v in place, the other correlations of a term of three or more coefficients may form
        # no correlation matrix: shrink them towards 0 (where any single |v| < 1 is valid) until they do
        corr_free = [i for i in free if self.kinds[i] == "corr"]
        for _ in range(60):
            if not corr_free or self._x(self._z(w)) is not None:
                break
            w[corr_free] *= 0.5
        return w

    def _minimise(
        self, k: int, v: float, start: np.ndarray, fixed: list[int], free: list[int]
    ) -> tuple[np.ndarray, float]:
        """The sub-fit from ``start``: (its minimiser, f there)."""
        w = self._prepared(k, v, start, fixed, free)
        if free:
            S = _preconditioner(self.H[np.ix_(free, free)])
            w0 = w[free].copy()

            def fun(u):
                ww = w.copy()
                ww[free] = w0 + S @ u
                f, g = self.value_grad(ww, free)
                return f, S.T @ g

            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # trial steps may overflow
                res = so.minimize(
                    fun, np.zeros(len(free)), jac=True, method="BFGS", options={"gtol": _GTOL, "maxiter": 500}
                )
            w[free] = w0 + S @ res.x
            return w, float(res.fun)  # (f at w: BFGS's last evaluation)
        return w, self.value_grad(w, [])[0]

    def _start(self, k: int, v: float) -> np.ndarray:
        """The minimiser at the profiled point nearest v (the estimate before any)."""
        best, dist = self.w_hat, np.inf
        for vv, ww in self.solutions.get(k, []):
            if abs(vv - v) < dist:
                best, dist = ww, abs(vv - v)
        return best


def _scale(h: float) -> float:
    """A length scale 1/sqrt(curvature), 1 when the curvature is not positive."""
    return 1.0 / math.sqrt(h) if h > 0 and np.isfinite(h) else 1.0


def _preconditioner(H: np.ndarray) -> np.ndarray:
    """S with S S' = |H|^-1 (eigenvalues made positive): BFGS then works in standard-error units."""
    w, V = np.linalg.eigh(0.5 * (H + H.T))
    w = np.maximum(np.abs(w), 1e-8 * max(1e-300, float(np.max(np.abs(w)))))
    return V / np.sqrt(w)


def _end_point(
    h: Callable[[float], tuple[float, float]],
    v_hat: float,
    side: float,
    first: float,
    grow: Callable[[float], float],
    limit: float | None,
    outer: float | None = None,
) -> tuple[float, bool]:
    """The root of h(v) = zeta(v) - target on the ``side`` (+1 or -1) of v_hat: safeguarded Newton
    with h's exact derivative, inside a bracket once one is known.

    From ``first`` (a Wald guess): while zeta has not passed the target, Newton's step outward, at
    most ``grow(v)``; then Newton steps kept inside the bracket (bisection when they leave it).
    ``limit`` (None: unbounded) is the end of the parameter's range: if zeta is still short of the
    target there, the limit is returned. ``outer`` is a point already known to be past the target.
    Returns (v, found); found is False when zeta never passed the target in ``_MAX_EXPANSIONS``
    outward steps."""
    inner, v, expansions = v_hat, first, 0
    for _ in range(_MAX_ITERATIONS):
        if limit is not None and (v - limit) * side >= 0:
            v = limit
        hv, dh = h(v)
        if abs(hv) < _ZETA_TOL:
            return v, True
        if side * hv > 0:
            outer = v
        elif v == limit:
            return limit, True
        else:
            inner = v
        newton = v - hv / dh if np.isfinite(dh) and dh != 0 else np.nan
        if outer is None:
            expansions += 1
            if expansions > _MAX_EXPANSIONS:
                return v, False
            far = grow(v)
            ok = np.isfinite(newton) and 0 < (newton - v) * side <= (far - v) * side
            v = newton if ok else far
        else:
            lo, hi = sorted((inner, outer))
            if hi - lo <= _ROOT_RTOL * max(abs(lo), abs(hi)):
                return 0.5 * (lo + hi), True
            v = newton if np.isfinite(newton) and lo < newton < hi else 0.5 * (lo + hi)
    return v, True  # pragma: no cover - Newton in a bracket converges long before


def profile_deviance(fit: FitRecord, parameter: int, values) -> np.ndarray:
    """d(v) at each of ``values`` for natural parameter ``parameter`` (an index into
    :func:`~.covariance_parameters.natural_estimates`; not beta), values on the canonical scale."""
    check_profile(fit)
    with fit.blas_limit():
        prof = _Profiler(fit)
        return np.array([prof.profile(parameter, float(v))[0] for v in np.atleast_1d(values)])


def _table_rows(fit: FitRecord) -> tuple[list[tuple[int, int, int]], dict[int, list[int]]]:
    """(table, row, natural index) of every term-table row, and for each SD's natural index the
    natural indices of the correlations that involve its coefficient (Name1 or Name2)."""
    k0 = 0 if beta_is_inner(fit) else fit.p
    rows, involved, idx = [], {}, k0
    for t, table in enumerate(covariance_tables(fit, None)[:-1]):
        index = {r: idx + r for r in range(len(table))}
        rows += [(t, r, index[r]) for r in range(len(table))]
        idx += len(table)
        types, n1, n2 = list(table["Type"]), list(table["Name1"]), list(table["Name2"])
        for r in range(len(table)):
            if types[r] == "std":
                involved[index[r]] = [
                    index[c] for c in range(len(table)) if types[c] == "corr" and n1[r] in (n1[c], n2[c])
                ]
    return rows, involved


def profile_tables(fit: FitRecord, alpha: float = 0.05) -> list[pd.DataFrame]:
    """MATLAB ``covarianceParameters`` stats with profile-likelihood Lower/Upper (module docstring):
    the Wald tables' rows and columns, one table per term, then the Error table."""
    check_profile(fit)
    with fit.blas_limit():
        return _profile_tables(fit, alpha)


def _profile_tables(fit: FitRecord, alpha: float) -> list[pd.DataFrame]:
    tables = [t.copy() for t in covariance_tables(fit, None)]
    prof = _Profiler(fit)
    zcrit = norm_ppf(1 - alpha / 2)
    for t, r, k in prof.rows:
        table = tables[t]
        label = f"{table.at[r, 'Group']} {_label(table.loc[r])}"
        table.at[r, "Lower"], table.at[r, "Upper"] = _interval(prof, k, zcrit, label)
    if fit.result.ancillary is not None:  # log sigma, or negative binomial's log theta: the last
        err = tables[-1]
        r = 0 if _dispersion_estimated(fit) else 1  # the sqrt(Dispersion) row, or theta's
        err.at[r, "Lower"], err.at[r, "Upper"] = _interval(prof, prof.P - 1, zcrit, str(err.at[r, "Name"]))
    return tables


def _label(row: pd.Series) -> str:
    if row["Type"] == "std":
        return f"std({row['Name1']})"
    return f"corr({row['Name1']}, {row['Name2']})"


def _interval(prof: _Profiler, k: int, zcrit: float, label: str) -> tuple[float, float]:
    """(lower, upper) of natural parameter k's profile interval on the canonical scale: the roots
    of zeta(v) = -+ zcrit (see :func:`_end_point`)."""
    kind = prof.kinds[k]
    w_hat = float(prof.w_hat[k])
    se = prof.standard_error(k)
    has_se = bool(np.isfinite(se) and se > 0)
    v_hat = w_hat if kind == "std" else (prof.rho_of_t(k, w_hat) if kind == "corr" else math.exp(w_hat))
    cache: dict[float, tuple[float, float]] = {}

    def zeta(v: float) -> tuple[float, float]:
        """zeta(v) = sign(v - v_hat) sqrt(d(v)) and zeta'(v) = d'(v) / (2 zeta)."""
        if v not in cache:
            d, slope = prof.profile(k, v)
            if not np.isfinite(d):  # no start gave a defined objective: not a bracket, a failure
                raise _Undefined(v)
            z = math.copysign(math.sqrt(max(d, 0.0)), v - v_hat)
            cache[v] = (z, slope / (2 * z) if z != 0 else np.nan)
        return cache[v]

    def h(target: float):
        return lambda v: (zeta(v)[0] - target, zeta(v)[1])

    def away(v: float) -> float:  # twice as far from the estimate
        return v_hat + 2 * (v - v_hat)

    if kind == "std":
        # lower end: d(0) first, at SD = 0 exactly; the limit is 0 when d(0) <= c
        def lower_end() -> float:
            if v_hat == 0.0 or zeta(0.0)[0] >= -zcrit:
                return 0.0
            guess = v_hat * math.exp(-zcrit * se / v_hat) if has_se else 0.5 * v_hat
            return _end_point(h(-zcrit), v_hat, -1.0, guess, lambda v: 0.5 * v, None, outer=0.0)[0]

        def upper_end() -> float:
            step = zcrit * se if has_se else _guess_sd(prof, k, zcrit, v_hat)
            # Wald's guess on the log scale, or on the SD scale for an SD near 0 (relative SE > 1)
            first = v_hat * math.exp(step / v_hat) if step < v_hat else v_hat + step
            upper, found = _end_point(h(zcrit), v_hat, 1.0, first, away, None)
            if not found:
                _warn_unbounded(label, upper, "upper")
                return np.inf
            return upper

        return _defined(lower_end, label, "lower"), _defined(upper_end, label, "upper")
    if kind == "corr":
        step = zcrit * se if has_se else 0.5
        edges = prof.corr_edges(k)
        ends = []
        for side, edge, bound in ((-1.0, edges[0], prof.corr_lower[k]), (1.0, edges[1], 1.0)):

            def corr_end(side=side, edge=edge, bound=bound) -> float:
                t = min(max(w_hat + side * step, -math.pi / 2), math.pi / 2)
                first = min(max(prof.rho_of_t(k, t), edges[0]), edges[1])
                v, _ = _end_point(h(side * zcrit), v_hat, side, first, away, edge)
                return bound if (v - edge) * side >= 0 else v

            ends.append(_defined(corr_end, label, "lower" if side < 0 else "upper"))
        return ends[0], ends[1]
    # sigma or negative binomial's theta: geometric steps on the log scale, at most e^_MAX_LOG_RATIO
    # from the estimate (theta at its Poisson limit has a Wald SE of thousands on the log scale)
    step = min(zcrit * se, _MAX_LOG_STEP) if has_se else 0.5

    def grow(v: float) -> float:
        r = 2 * math.log(v / v_hat)
        return v if abs(r) > _MAX_LOG_RATIO else v_hat * math.exp(r)

    ends = []
    for side in (-1.0, 1.0):

        def log_end(side=side) -> float:
            first = v_hat * math.exp(side * step)
            v, found = _end_point(h(side * zcrit), v_hat, side, first, grow, None)
            if not found:
                _warn_unbounded(label, v, "lower" if side < 0 else "upper")
                return 0.0 if side < 0 else np.inf
            return v

        ends.append(_defined(log_end, label, "lower" if side < 0 else "upper"))
    return ends[0], ends[1]


def _defined(end: Callable[[], float], label: str, which: str) -> float:
    """``end()``, or NaN with a warning where the profile could not be evaluated on the way."""
    try:
        return end()
    except _Undefined as err:
        warn(
            f"covariance_parameters(method='profile'): the profile of {label} could not be evaluated "
            f"at {err.args[0]:.4g} (no start of the other parameters gave a defined objective there, "
            f"e.g. quadrature nodes outside the link's domain); its {which} limit is reported as NaN",
            GLMMWarning,
        )
        return np.nan


def _guess_sd(prof: _Profiler, k: int, zcrit: float, v_hat: float) -> float:
    """A first step for an SD without a Wald standard error (a singular fit): where the quadratic
    f(s) = f_hat + H s^2 / 2 (even in s) reaches d = zcrit^2."""
    h = prof.H[k, k]
    if h > 0 and np.isfinite(h):
        return zcrit / math.sqrt(h)
    return max(v_hat, 1.0)


def _warn_unbounded(label: str, v: float, end: str) -> None:
    warn(
        f"covariance_parameters(method='profile'): the profile deviance of {label} stays below the "
        f"cutoff up to {v:.4g}; its {end} limit is reported as {'inf' if end == 'upper' else 0}. The "
        "likelihood is flat in this parameter: the data hardly inform it",
        GLMMWarning,
    )
