"""Covariance patterns (MATLAB ``CovariancePattern``): structured random-effects covariances.

A pattern of term r maps its own parameters ``v_r`` (what the optimiser moves) to the full relative
Cholesky entries ``theta_r`` the engine and the PyMC model use (lower triangle of Lambda_r, column
major, ``Psi_r = sigma^2 Lambda_r Lambda_r'``), with an exact Jacobian ``J_r = d theta_r / d v_r``,
so the engine's exact gradient in theta becomes ``g_v = J' g_theta``:

* ``FullCholesky`` and ``Full``: ``theta_r = v_r`` (every symmetric PSD Psi; only the reported
  type differs, as in MATLAB).
* ``Diagonal``: ``v_r`` = the diagonal of Lambda_r (``theta = M v`` with a 0/1 selection M).
* ``Isotropic``: one ``v``; every diagonal entry of Lambda_r equals it (``Psi = sigma^2 v^2 I``).
* a boolean pattern (True where Psi may be non-zero): ``v_r`` = the entries of Lambda_r at the
  allowed lower-triangle positions. The pattern's graph must be a disjoint union of cliques
  (block diagonal after a permutation): then the Cholesky factor of any Psi with that pattern has
  no fill -- eliminating a coefficient only links coefficients of its own clique, already linked --
  so Lambda_r has exactly the pattern's zeros and the map is linear (a selection). Other graphs
  (a chain 1-2-3 with 1 and 3 unlinked) would need Lambda_r entries that are non-linear in Psi's.
* ``CompSymm``: ``Psi = s^2 [(1 - rho) I + rho 11']``, rho in (lo, 1), lo = -1/(q - 1).
  ``v = (a, z)`` with ``a = s / sigma`` and ``rho = c + h tanh(z)``, c = (1 + lo)/2, h = (1 - lo)/2,
  ``theta = a vech(L(rho))``, ``L L' = R(rho) = (1 - rho) I + rho 11'``. Jacobian:
  ``d theta / d a = vech(L)`` and ``d theta / d z = a h (1 - tanh^2 z) vech(dL)``,
  ``dL = L Phi(L^-1 (11' - I) L^-T)`` (Phi: lower triangle with half the diagonal; the
  derivative of the Cholesky factor).

Every map is even in a sign (theta and -theta, a column of Lambda_r and its negation, give the same
Psi), so the parameters are optimised without bounds and made canonical afterwards.

Natural parameters (Wald intervals; MATLAB ``covarianceParameters``), one per reported row: log SD
for a ``std`` row; ``log((1 + rho)/(1 - rho))`` for a correlation, and for CompSymm's common
correlation ``log((rho - lo)/(1 - rho))`` (its own range; the same for q = 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.special import expit

from .errors import InputError, InputTypeError

__all__ = [
    "PATTERN_NAMES",
    "CovariancePatterns",
    "TermPattern",
    "check_bayes_patterns",
    "check_pattern_input",
    "parse_patterns",
]

PATTERN_NAMES = ("FullCholesky", "Full", "Diagonal", "Isotropic", "CompSymm")
_KEYS = {n.lower(): n for n in PATTERN_NAMES}
_RHO_EDGE = 1e-12  # how close a recovered CompSymm correlation may come to its bounds


def _vech_index(q: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the column-major lower triangle: theta's order."""
    cols, rows = np.triu_indices(q)
    return rows, cols


def _lambda(theta_r: np.ndarray, q: int) -> np.ndarray:
    L = np.zeros((q, q))
    rows, cols = _vech_index(q)
    L[rows, cols] = theta_r
    return L


def _tanh_inside(v: float) -> float:
    """tanh(v) kept 1e-9 inside (-1, 1): tanh rounds to +-1 for |v| > 19, which put CompSymm's
    correlation exactly on its bound -1/(q - 1), where R is singular and its Cholesky factor fails
    (a refit of a fit at the bound raised LinAlgError)."""
    return float(np.clip(np.tanh(v), -1.0 + 1e-9, 1.0 - 1e-9))


def _vech(L: np.ndarray) -> np.ndarray:
    rows, cols = _vech_index(L.shape[0])
    return L[rows, cols]


def _canonical_lambda(theta_r: np.ndarray, q: int) -> np.ndarray:
    """theta_r with every Lambda column whose diagonal is negative negated."""
    L = _lambda(theta_r, q)
    L = L * np.where(np.diag(L) < 0, -1.0, 1.0)[None, :]
    return _vech(L)


@dataclass(frozen=True)
class TermPattern:
    """The covariance pattern of one random-effects term with ``q`` coefficients.

    ``kind``: one of :data:`PATTERN_NAMES` or ``'Pattern'`` (a boolean matrix, in ``mask``)."""

    kind: str
    q: int
    mask: tuple[tuple[bool, ...], ...] | None = None

    # ---- structure ---------------------------------------------------------------------------
    @property
    def type_name(self) -> str:
        """MATLAB's "Covariance Type" of the term."""
        return self.kind

    @property
    def is_default(self) -> bool:
        """MATLAB's default for the term: FullCholesky, or Isotropic for one coefficient."""
        return self.kind == ("Isotropic" if self.q == 1 else "FullCholesky")

    @property
    def n_theta(self) -> int:
        return self.q * (self.q + 1) // 2

    @cached_property
    def rows(self) -> tuple[tuple[int, int], ...]:
        """The (i, j) entries of Psi reported by ``covariance_parameters`` (i == j: std, else corr),
        in column-major lower-triangle order; one natural (and one optimiser) parameter each."""
        q = self.q
        if self.kind in ("Isotropic",) or q == 1:
            return ((0, 0),)
        if self.kind == "CompSymm":
            return ((0, 0), (1, 0))
        if self.kind == "Diagonal":
            return tuple((i, i) for i in range(q))
        rows, cols = _vech_index(q)
        allowed = np.ones((q, q), bool) if self.mask is None else np.array(self.mask)
        return tuple((int(i), int(j)) for i, j in zip(rows, cols) if allowed[i, j])

    @property
    def n_params(self) -> int:
        return len(self.rows)

    @property
    def is_identity(self) -> bool:
        """True when v_r = theta_r (every PSD Psi is allowed)."""
        return (self.n_params == self.n_theta and self.kind != "CompSymm") or self.q == 1

    @property
    def linear(self) -> bool:
        return self.kind != "CompSymm" or self.q == 1

    @cached_property
    def matrix(self) -> np.ndarray:
        """M with theta_r = M v_r (linear patterns): a 0/1 matrix, n_theta x n_params."""
        rows, cols = _vech_index(self.q)
        pos = {(int(i), int(j)): k for k, (i, j) in enumerate(zip(rows, cols))}
        M = np.zeros((self.n_theta, self.n_params))
        if self.kind == "Isotropic" and self.q > 1:
            for i in range(self.q):
                M[pos[(i, i)], 0] = 1.0
        else:
            for k, ij in enumerate(self.rows):
                M[pos[ij], k] = 1.0
        return M

    # ---- CompSymm ----------------------------------------------------------------------------
    @property
    def _rho_bounds(self) -> tuple[float, float]:
        lo = -1.0 / (self.q - 1)
        return (1 + lo) / 2, (1 - lo) / 2  # centre c, half-width h

    @property
    def corr_lower(self) -> float:
        """Lower end of the correlation's range: -1, or -1/(q-1) for CompSymm."""
        return -1.0 / (self.q - 1) if self.kind == "CompSymm" and self.q > 1 else -1.0

    def _cs_factor(self, rho: float) -> tuple[np.ndarray, np.ndarray]:
        """L = chol(R(rho)) and dL/d rho."""
        q = self.q
        R = (1 - rho) * np.eye(q) + rho * np.ones((q, q))
        L = np.linalg.cholesky(R)
        Li = np.linalg.inv(L)
        X = Li @ (np.ones((q, q)) - np.eye(q)) @ Li.T
        Phi = np.tril(X) - 0.5 * np.diag(np.diag(X))
        return L, L @ Phi

    # ---- the map v -> theta ------------------------------------------------------------------
    def theta(self, v: np.ndarray) -> np.ndarray:
        if self.linear:
            return self.matrix @ v
        c, h = self._rho_bounds
        L, _ = self._cs_factor(c + h * _tanh_inside(v[1]))
        return v[0] * _vech(L)

    def jacobian(self, v: np.ndarray) -> np.ndarray:
        if self.linear:
            return self.matrix
        c, h = self._rho_bounds
        t = _tanh_inside(v[1])
        L, dL = self._cs_factor(c + h * t)
        return np.column_stack([_vech(L), v[0] * h * (1 - t * t) * _vech(dL)])

    def params_from_theta(self, theta_r: np.ndarray) -> np.ndarray:
        """The v whose theta is closest to ``theta_r`` in Psi (exact when theta_r is in the map's
        image): linear patterns average the entries each parameter sets, after the signs are made
        canonical; CompSymm takes the mean variance and the mean correlation of Lambda Lambda'."""
        th = _canonical_lambda(np.asarray(theta_r, float), self.q)
        if self.linear:
            M = self.matrix
            return (M.T @ th) / M.sum(axis=0)
        L = _lambda(th, self.q)
        A = L @ L.T
        s2 = float(np.mean(np.diag(A)))
        if s2 <= 0:
            return np.array([0.0, 0.0])
        off = A[~np.eye(self.q, dtype=bool)]
        c, h = self._rho_bounds
        rho = float(np.mean(off)) / s2
        t = np.clip((rho - c) / h, -1 + _RHO_EDGE, 1 - _RHO_EDGE)
        return np.array([np.sqrt(s2), np.arctanh(t)])

    def canonical(self, v: np.ndarray) -> np.ndarray:
        """v with the sign convention of lme4: non-negative Lambda diagonal (non-negative a)."""
        if self.linear:
            return self.params_from_theta(self.theta(v))
        return np.array([abs(v[0]), v[1]])

    # ---- reported rows and natural parameters ------------------------------------------------
    def canonical_rows(self, psi: np.ndarray) -> np.ndarray:
        """SD (``i == j``) or correlation of each reported row, from Psi."""
        sd = np.sqrt(np.maximum(np.diag(psi), 0.0))
        out = []
        for i, j in self.rows:
            if i == j:
                out.append(sd[i])
            else:
                den = sd[i] * sd[j]
                out.append(psi[i, j] / den if den > 0 else 0.0)
        return np.array(out)

    def natural(self, psi: np.ndarray) -> np.ndarray:
        """Natural parameters of Psi (module docstring), one per reported row."""
        lo = self.corr_lower
        out = []
        for (i, j), c in zip(self.rows, self.canonical_rows(psi)):
            if i == j:
                out.append(np.log(c) if c > 0 else -np.inf)
            else:
                rho = np.clip(c, lo + 1e-15, 1 - 1e-15)
                out.append(np.log((rho - lo) / (1 - rho)))
        return np.array(out)

    def from_natural_rows(self, z: np.ndarray) -> np.ndarray:
        """SD or correlation of each row from natural parameters: exp, or (lo + e^z)/(1 + e^z)."""
        lo = self.corr_lower
        return np.array(
            [np.exp(zk) if i == j else lo + (1 - lo) * expit(zk) for (i, j), zk in zip(self.rows, z)]
        )

    def from_natural_rows_at(self, k: int, z: np.ndarray) -> np.ndarray:
        """Row k's SD or correlation at each natural value in ``z`` (interval end-points)."""
        i, j = self.rows[k]
        if i == j:
            return np.exp(z)
        lo = self.corr_lower
        return lo + (1 - lo) * expit(z)  # (lo + e^z)/(1 + e^z), which was inf/inf for a large z

    def psi_from_natural(self, z: np.ndarray) -> np.ndarray:
        """Psi (response units) from natural parameters; unlisted correlations are 0."""
        vals = self.from_natural_rows(z)
        q = self.q
        if self.kind == "Isotropic" or q == 1:
            return vals[0] ** 2 * np.eye(q)
        if self.kind == "CompSymm":
            s, rho = vals
            return s**2 * ((1 - rho) * np.eye(q) + rho * np.ones((q, q)))
        sd, R = np.zeros(q), np.eye(q)
        for (i, j), c in zip(self.rows, vals):
            if i == j:
                sd[i] = c
            else:
                R[i, j] = R[j, i] = c
        return sd[:, None] * R * sd[None, :]


@dataclass(frozen=True)
class CovariancePatterns:
    """The patterns of all terms, in the design's term order; the map ``v -> theta`` the engine
    applies (:meth:`theta`, :meth:`jacobian`, :meth:`canonical`)."""

    terms: tuple[TermPattern, ...]

    @classmethod
    def default(cls, sizes: tuple[int, ...]) -> CovariancePatterns:
        """MATLAB's default: FullCholesky, Isotropic for a scalar term."""
        return cls(tuple(TermPattern("Isotropic" if q == 1 else "FullCholesky", q) for q in sizes))

    @property
    def is_identity(self) -> bool:
        """True when the optimiser's parameters are theta itself (no term restricts Psi)."""
        return all(t.is_identity for t in self.terms)

    @property
    def n_params(self) -> int:
        return sum(t.n_params for t in self.terms)

    @property
    def type_names(self) -> tuple[str, ...]:
        return tuple(t.type_name for t in self.terms)

    def param_slices(self) -> list[slice]:
        out, start = [], 0
        for t in self.terms:
            out.append(slice(start, start + t.n_params))
            start += t.n_params
        return out

    def theta_slices(self) -> list[slice]:
        out, start = [], 0
        for t in self.terms:
            out.append(slice(start, start + t.n_theta))
            start += t.n_theta
        return out

    def theta(self, v: np.ndarray) -> np.ndarray:
        parts = [t.theta(v[s]) for t, s in zip(self.terms, self.param_slices())]
        return np.concatenate(parts) if parts else np.zeros(0)

    def param_units(self, unit: float) -> np.ndarray:
        """The scale of each parameter in v, for finite-difference steps: ``unit`` (theta's) for
        every parameter of a linear pattern and for CompSymm's a, 1 for CompSymm's correlation z."""
        parts = [
            np.full(t.n_params, unit) if t.linear else np.array([unit] + [1.0] * (t.n_params - 1))
            for t in self.terms
        ]
        return np.concatenate(parts) if parts else np.zeros(0)

    def jacobian(self, v: np.ndarray) -> np.ndarray:
        """d theta / d v: block diagonal, n_theta x n_params."""
        J = np.zeros((sum(t.n_theta for t in self.terms), self.n_params))
        for t, sv, st in zip(self.terms, self.param_slices(), self.theta_slices()):
            J[st, sv] = t.jacobian(v[sv])
        return J

    def params_from_theta(self, theta: np.ndarray) -> np.ndarray:
        parts = [t.params_from_theta(theta[s]) for t, s in zip(self.terms, self.theta_slices())]
        return np.concatenate(parts) if parts else np.zeros(0)

    def canonical(self, v: np.ndarray) -> np.ndarray:
        parts = [t.canonical(v[s]) for t, s in zip(self.terms, self.param_slices())]
        return np.concatenate(parts) if parts else np.zeros(0)

    @property
    def engine_map(self) -> CovariancePatterns | None:
        """What the engine problems apply: None when the parameters are theta (no overhead)."""
        return None if self.is_identity else self


# ---- input ----------------------------------------------------------------------------------
_HELP = (
    "use 'FullCholesky', 'Full', 'Diagonal', 'Isotropic', 'CompSymm' or a square symmetric boolean "
    "matrix, one per random-effects term (a list), or one value for every term"
)


def _is_matrix_like(v) -> bool:
    if isinstance(v, np.ndarray):
        return True
    return isinstance(v, list | tuple) and len(v) > 0 and all(isinstance(r, list | tuple) for r in v)


def check_pattern_input(value) -> None:
    """Type checks of ``covariance_pattern`` that need no design (run before any work)."""
    if value is None:
        return
    items = value if isinstance(value, list | tuple) and not _is_matrix_like(value) else [value]
    if isinstance(value, list | tuple) and not items:
        raise InputError(f"covariance_pattern: empty list; {_HELP}")
    listed = len(items) > 1 or items[0] is not value
    for k, v in enumerate(items):
        if isinstance(v, str):
            if v.strip().lower() not in _KEYS:
                raise InputError(f"covariance_pattern: unknown pattern '{v}'; {_HELP}")
        elif _is_matrix_like(v):
            _as_mask(v, None, f" (entry {k + 1} of the list)" if listed else "")
        else:
            shown = repr(v) if np.ndim(v) == 0 else f"a {type(v).__name__}"
            raise InputTypeError(
                f"covariance_pattern: expected a string or a boolean matrix, got {shown}; {_HELP}"
            )


def _as_mask(v, term, entry: str = "") -> np.ndarray:
    where = f" for term {term.spec}" if term is not None else entry
    try:
        a = np.asarray(v)
    except (TypeError, ValueError) as err:  # ragged nested lists
        raise InputTypeError(
            f"covariance_pattern: a pattern matrix{where} must be a square boolean array; for one "
            "matrix per term pass a list of numpy arrays, e.g. [np.array(m1), np.array(m2)]"
        ) from err
    if a.dtype.kind in "US":
        raise InputTypeError(
            "covariance_pattern: a numpy array of names is read as one pattern matrix; pass the "
            "names as a list, e.g. ['Diagonal', 'Isotropic'] (one per term)"
        )
    if a.ndim == 3:
        raise InputError(
            f"covariance_pattern: nested lists of shape {a.shape} are read as one array; pass one "
            "numpy array per term in a list, e.g. [np.array(m1), np.array(m2)]"
        )
    if a.dtype != bool:
        if a.dtype.kind in "iuf" and a.size and np.all((a == 0) | (a == 1)):
            a = a.astype(bool)
        else:
            raise InputTypeError(
                f"covariance_pattern: a pattern matrix{where} must be boolean (True where Psi may be "
                f"non-zero), got dtype {a.dtype}"
            )
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] == 0:
        raise InputError(f"covariance_pattern: a pattern matrix{where} must be square, got shape {a.shape}")
    if not np.array_equal(a, a.T):
        raise InputError(f"covariance_pattern: the pattern matrix{where} is not symmetric")
    if not np.all(np.diag(a)):
        raise InputError(
            f"covariance_pattern: the pattern matrix{where} must be True on its diagonal (every "
            "coefficient has a variance)"
        )
    for i in range(a.shape[0]):
        for j in np.flatnonzero(a[i]):
            if not np.array_equal(a[i], a[j]):
                raise InputError(
                    f"covariance_pattern: the pattern matrix{where} links coefficients {i + 1} and "
                    f"{j + 1}, but they are linked to different others; supported patterns are block "
                    "diagonal after a permutation (groups of coefficients, all correlated within a "
                    "group, uncorrelated between groups)"
                )
    return a


def parse_patterns(value, terms) -> CovariancePatterns:
    """The per-term patterns for ``covariance_pattern`` (None: MATLAB's default) and the design's
    random terms (``terms[r].q_r``, ``terms[r].spec``), refusing bad input with an InputError."""
    sizes = tuple(t.q_r for t in terms)
    if value is None:
        return CovariancePatterns.default(sizes)
    check_pattern_input(value)
    if isinstance(value, list | tuple) and not _is_matrix_like(value):
        items = list(value)
        if len(items) != len(terms):
            listed = ", ".join(str(t.spec) for t in terms)
            raise InputError(
                f"covariance_pattern: {len(items)} pattern(s) for {len(terms)} random-effects term(s) "
                f"({listed}); give one per term, in this order, or a single value for all"
            )
    else:
        items = [value] * len(terms)
    out = []
    for v, term in zip(items, terms):
        q = term.q_r
        if isinstance(v, str):
            out.append(TermPattern(_KEYS[v.strip().lower()], q))
            continue
        a = _as_mask(v, term)
        if a.shape[0] != q:
            raise InputError(
                f"covariance_pattern: term {term.spec} has {q} coefficient(s) ({', '.join(term.names)}), "
                f"so its pattern matrix must be {q} x {q}, got {a.shape[0]} x {a.shape[1]}"
            )
        out.append(TermPattern("Pattern", q, tuple(tuple(bool(x) for x in row) for row in a)))
    return CovariancePatterns(tuple(out))


def check_bayes_patterns(patterns: CovariancePatterns) -> None:
    """The Bayesian model's priors are on full covariance matrices (an LKJ correlation and an SD per
    coefficient): a pattern that restricts Psi is refused rather than silently ignored."""
    if not patterns.is_identity:
        kinds = ", ".join(sorted({t.type_name for t in patterns.terms if not t.is_identity}))
        raise InputError(
            f"covariance_pattern: the Bayesian fit supports unstructured covariances only, not {kinds}; "
            "leave covariance_pattern out (or use 'FullCholesky') for fit_bayes, or write the structure "
            "in the formula where one exists, e.g. (1 + x || g) for a diagonal covariance"
        )
