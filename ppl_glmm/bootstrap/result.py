"""``BootstrapResult``: the replicates of a run, their intervals, and Parquet storage.

For a statistic with estimate t0 (the fitted model's value) and replicates T*_1..T*_R (the
successful replicates with a finite value; with ``converged_only=True`` only those whose refits
converged), Q(p) the p-quantile of the T* (numpy's default linear interpolation, Hyndman and Fan's
type 7), z = Phi^-1(1 - alpha/2), bias b = mean(T*) - t0 and se = sd(T*) (divisor R - 1):

* ``percentile``: [Q(alpha/2), Q(1 - alpha/2)];
* ``basic``:      [2 t0 - Q(1 - alpha/2), 2 t0 - Q(alpha/2)];
* ``normal``:     [t0 - b - z se, t0 - b + z se];
* ``shortest``:   the narrowest [T*_(j), T*_(j+m-1)] over j of the sorted replicates, with
  m = ceil((1 - alpha) R) replicates inside (the highest-density interval of the replicates).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConvergenceWarning, GLMMWarning, InputError, InputTypeError, warn
from .statistics import Row

__all__ = ["CI_METHODS", "BootstrapResult"]

CI_METHODS = ("percentile", "basic", "normal", "shortest")
_META_KEY = b"ppl_glmm.bootstrap"
_FORMAT_VERSION = 1
_FAILURE_COLUMNS = ["replicate", "seed", "spawn_key", "error"]


class BootstrapResult:
    """The replicates of a parametric bootstrap (or of a simulated LRT), with intervals.

    Attributes
    ----------
    replicates : pandas.DataFrame
        One row per successful replicate, sorted by index: ``replicate``, ``seed`` (the integer
        ``random`` got), one column per statistic, ``converged``, ``singular`` and
        ``quadrature_edge`` (of the refits: a quadrature refit evaluated points where nodes left
        the family's range, so its optimum is that of the region where the quadrature is defined).
    failures : pandas.DataFrame
        One row per failed replicate: ``replicate``, ``seed``, ``spawn_key`` (of its SeedSequence
        child, beside the run's ``entropy``) and ``error`` (the exception's type and message).
    estimates : pandas.Series
        The statistic of the fitted model (t0), indexed by statistic name.
    entropy, spawn_key
        The run's root ``SeedSequence`` (``seed_sequence``); replicate i used its i-th child.
    kind : str
        'bootstrap' or 'lrt'.
    info : dict
        What the run was: formulas, the statistic's name, the LRT's observed LR and DF.
    """

    def __init__(
        self,
        replicates: pd.DataFrame,
        failures: pd.DataFrame,
        estimates: pd.Series,
        *,
        entropy: int,
        spawn_key: tuple[int, ...] = (),
        kind: str = "bootstrap",
        info: dict | None = None,
    ):
        self.replicates = replicates
        self.failures = failures
        self.estimates = estimates
        self.entropy = int(entropy)
        self.spawn_key = tuple(int(k) for k in spawn_key)
        self.kind = kind
        self.info = dict(info or {})

    @classmethod
    def _from_rows(cls, rows: list[Row], names, estimates, plan, *, kind: str, info: dict) -> BootstrapResult:
        names = list(names)
        ok = [r for r in rows if r.values is not None]
        bad = [r for r in rows if r.values is None]
        values = np.array([r.values for r in ok], dtype=float).reshape(len(ok), len(names))
        reps = pd.DataFrame(values, columns=names)
        reps.insert(0, "seed", np.array([r.seed for r in ok], dtype=np.uint64))
        reps.insert(0, "replicate", np.array([r.replicate for r in ok], dtype=np.int64))
        reps["converged"] = np.array([r.converged for r in ok], dtype=bool)
        reps["singular"] = np.array([r.singular for r in ok], dtype=bool)
        reps["quadrature_edge"] = np.array([r.quadrature_edge for r in ok], dtype=bool)
        fails = pd.DataFrame(
            {
                "replicate": np.array([r.replicate for r in bad], dtype=np.int64),
                "seed": np.array([r.seed for r in bad], dtype=np.uint64),
                "spawn_key": [str((*plan.spawn_key, r.replicate)) for r in bad],
                "error": [r.error or "" for r in bad],
            }
        )
        est = pd.Series(np.asarray(estimates, dtype=float), index=names, name="Estimate")
        return cls(reps, fails, est, entropy=plan.entropy, spawn_key=plan.spawn_key, kind=kind, info=info)

    # ---- counts and seeds -------------------------------------------------------------------
    @property
    def statistics(self) -> list[str]:
        """The statistic names (columns of ``replicates`` besides replicate/seed/flags)."""
        return list(self.estimates.index)

    @property
    def nsim(self) -> int:
        """Replicates run: successful plus failed."""
        return len(self.replicates) + len(self.failures)

    @property
    def n_failed(self) -> int:
        return len(self.failures)

    @property
    def n_not_converged(self) -> int:
        """Successful replicates whose refit (either refit, for an LRT) did not converge."""
        return int((~self.replicates["converged"]).sum())

    @property
    def n_singular(self) -> int:
        return int(self.replicates["singular"].sum())

    @property
    def n_quadrature_edge(self) -> int:
        """Successful replicates whose quadrature refit evaluated points where nodes left the
        family's range."""
        return int(self.replicates["quadrature_edge"].sum())

    @property
    def seed_sequence(self) -> np.random.SeedSequence:
        """The run's root: replicate i used ``SeedSequence(entropy, spawn_key=(*spawn_key, i))``."""
        return np.random.SeedSequence(self.entropy, spawn_key=self.spawn_key)

    @property
    def next_replicate(self) -> int:
        """One past the highest replicate index run (the ``start`` that continues this run)."""
        idx = np.concatenate([self.replicates["replicate"].to_numpy(), self.failures["replicate"].to_numpy()])
        return int(idx.max()) + 1 if idx.size else 0

    # ---- summaries ----------------------------------------------------------------------------
    def values(self, converged_only: bool = False) -> pd.DataFrame:
        """The statistics of the successful replicates (index: replicate), optionally only those
        whose refits converged."""
        if not isinstance(converged_only, (bool, np.bool_)):
            raise InputTypeError(f"converged_only: expected True or False, got {converged_only!r}")
        reps = self.replicates
        if converged_only:
            reps = reps[reps["converged"]]
        return reps.set_index("replicate")[self.statistics]

    def _counted(self, converged_only: bool, what: str) -> pd.DataFrame:
        """:meth:`values`, with a warning naming the statistics whose values are not finite in some
        replicates: those are left out, which shifts the summary when they belong to the
        statistic's distribution (an estimate at infinity in 17 of 30 replicates gave an
        interval [1, 1] and an SE of 0, silently)."""
        v = self.values(converged_only)
        counts = (~np.isfinite(v.to_numpy(dtype=float))).sum(axis=0)
        if counts.any():
            bad = ", ".join(f"{name!r} in {c}" for name, c in zip(self.statistics, counts) if c)
            warn(
                f"{what}: values that are not finite (NaN or +-inf) are left out: {bad} of "
                f"{len(v)} replicates; the summary is of the finite values only",
                GLMMWarning,
            )
        return v

    def bias(self, converged_only: bool = False) -> pd.Series:
        """mean(T*) - t0 per statistic (NaN values of T* skipped)."""
        v = _nan_guard(self._counted(converged_only, "bias"))
        mean = pd.DataFrame(v).mean(axis=0).to_numpy()  # NaN skipped; no values: NaN, silently
        return pd.Series(mean - self.estimates.to_numpy(), index=self.statistics)

    def se(self, converged_only: bool = False) -> pd.Series:
        """Bootstrap standard error: sd(T*) with divisor R - 1 (NaN values skipped)."""
        v = _nan_guard(self._counted(converged_only, "se"))
        sd = pd.DataFrame(v).std(axis=0, ddof=1).to_numpy()
        return pd.Series(sd, index=self.statistics)

    def ci(
        self, alpha: float = 0.05, method: str = "percentile", *, converged_only: bool = False
    ) -> pd.DataFrame:
        """Name, Estimate (t0), Lower, Upper: the 100(1 - alpha)% bootstrap interval of each
        statistic by ``method`` ('percentile', 'basic', 'normal' or 'shortest'; formulas in the
        module docstring). Failed replicates and NaN values are left out; an interval from fewer
        than 2 values is NaN."""
        from ..inference.distributions import norm_ppf

        alpha = _check_alpha(alpha)
        method = _check_method(method)
        v = self._counted(converged_only, "ci")
        t0 = self.estimates.to_numpy()
        lower = np.full(len(t0), np.nan)
        upper = np.full(len(t0), np.nan)
        too_few = []
        for k, name in enumerate(self.statistics):
            x = v[name].to_numpy(dtype=float)
            x = np.sort(x[np.isfinite(x)])
            if x.size < 2:
                too_few.append(name)
                continue
            if method == "percentile":
                lower[k], upper[k] = np.quantile(x, [alpha / 2, 1 - alpha / 2])
            elif method == "basic":
                qlo, qhi = np.quantile(x, [alpha / 2, 1 - alpha / 2])
                lower[k], upper[k] = 2 * t0[k] - qhi, 2 * t0[k] - qlo
            elif method == "normal":
                z = float(norm_ppf(1 - alpha / 2))
                centre = t0[k] - (x.mean() - t0[k])
                half = z * x.std(ddof=1)
                lower[k], upper[k] = centre - half, centre + half
            else:
                m = min(x.size, max(1, math.ceil((1 - alpha) * x.size)))
                widths = x[m - 1 :] - x[: x.size - m + 1]
                j = int(np.argmin(widths))
                lower[k], upper[k] = x[j], x[j + m - 1]
        if too_few:
            names = ", ".join(too_few[:5]) + (", ..." if len(too_few) > 5 else "")
            warn(
                f"ci: {len(too_few)} statistic(s) ({names}) have fewer than 2 usable replicates, so "
                "their intervals are NaN; run more replicates (nsim)",
                GLMMWarning,
            )
        return pd.DataFrame({"Name": self.statistics, "Estimate": t0, "Lower": lower, "Upper": upper})

    def warn_problems(self) -> None:
        """One warning for failed replicates (with the first few messages), one for replicates
        that did not converge, and one for converged quadrature refits at the quadrature's edge."""
        if self.n_failed:
            head = self.failures.head(3)
            examples = "; ".join(f"replicate {r.replicate}: {r.error}" for r in head.itertuples())
            more = ", ..." if self.n_failed > 3 else ""
            warn(
                f"{self.n_failed} of {self.nsim} replicates failed and are left out of every summary "
                f"({examples}{more}); see result.failures for their seeds and messages",
                GLMMWarning,
            )
        if self.n_not_converged:
            warn(
                f"{self.n_not_converged} of {self.nsim} replicates did not converge (kept; "
                "ci/bias/se(converged_only=True) leave them out; result.replicates['converged'])",
                ConvergenceWarning,
            )
        edge = int((self.replicates["quadrature_edge"] & self.replicates["converged"]).sum())
        if edge:
            warn(
                f"{edge} of {self.nsim} replicates converged with quadrature refits that evaluated "
                "points where nodes left the family's range: their optimum is that of the region "
                "where the quadrature is defined, which need not hold the maximum likelihood (kept; "
                "result.replicates['quadrature_edge'] marks them)",
                GLMMWarning,
            )

    def __repr__(self) -> str:
        return (
            f"<BootstrapResult {self.kind}: {self.nsim} replicates ({self.n_failed} failed, "
            f"{self.n_not_converged} not converged, {self.n_singular} singular) of "
            f"{len(self.statistics)} statistics; seed entropy {self.entropy}>"
        )

    # ---- storage --------------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write the replicates to a Parquet file (pyarrow), with the failures, the estimates, the
        seed and ``info`` in the file's metadata; ``BootstrapResult.load(path)`` reads it back."""
        pa, pq = _pyarrow()
        path = Path(path)
        meta = {
            "version": _FORMAT_VERSION,
            "kind": self.kind,
            "entropy": str(self.entropy),
            "spawn_key": list(self.spawn_key),
            "nsim": self.nsim,
            "statistics": self.statistics,
            "estimates": [_json_float(v) for v in self.estimates.to_numpy()],
            "failures": {
                "replicate": [int(x) for x in self.failures["replicate"]],
                "seed": [str(int(x)) for x in self.failures["seed"]],
                "spawn_key": [str(x) for x in self.failures["spawn_key"]],
                "error": [str(x) for x in self.failures["error"]],
            },
            "info": self.info,
        }
        table = pa.Table.from_pandas(self.replicates, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY: json.dumps(meta)})
        pq.write_table(table, path)
        return path

    @classmethod
    def load(cls, path) -> BootstrapResult:
        """Read a file written by :meth:`save`."""
        _, pq = _pyarrow()
        table = pq.read_table(Path(path))
        raw = (table.schema.metadata or {}).get(_META_KEY)
        if raw is None:
            raise InputError(f"path: {path} was not written by BootstrapResult.save (no ppl_glmm metadata)")
        meta = json.loads(raw)
        if meta.get("version") != _FORMAT_VERSION:
            raise InputError(
                f"path: {path} has format version {meta.get('version')}, expected {_FORMAT_VERSION}"
            )
        reps = table.to_pandas()
        if "quadrature_edge" not in reps:  # (written before the flag existed)
            reps.insert(reps.columns.get_loc("singular") + 1, "quadrature_edge", False)
        f = meta["failures"]
        fails = pd.DataFrame(
            {
                "replicate": np.array(f["replicate"], dtype=np.int64),
                "seed": np.array([int(s) for s in f["seed"]], dtype=np.uint64),
                "spawn_key": list(f["spawn_key"]),
                "error": list(f["error"]),
            }
        )
        est = pd.Series(np.array(meta["estimates"], dtype=float), index=meta["statistics"], name="Estimate")
        return cls(
            reps,
            fails,
            est,
            entropy=int(meta["entropy"]),
            spawn_key=tuple(meta["spawn_key"]),
            kind=meta["kind"],
            info=meta.get("info", {}),
        )

    def merge(self, *others: BootstrapResult) -> BootstrapResult:
        """One result from runs of the same seed, statistic and fitted model over disjoint replicate
        indexes (a run continued with ``start=``); ``BootstrapResult.merge(a, b, ...)`` works too."""
        parts = [self, *others]
        for o in others:
            if not isinstance(o, BootstrapResult):
                raise InputTypeError(f"merge: expected BootstrapResult objects, got {type(o).__name__}")
            if o.kind != self.kind or o.statistics != self.statistics:
                raise InputError("merge: the results have different kinds or statistics")
            if not np.array_equal(o.estimates.to_numpy(), self.estimates.to_numpy(), equal_nan=True):
                raise InputError(
                    "merge: the results come from different fitted models (their estimates differ)"
                )
            if (o.entropy, o.spawn_key) != (self.entropy, self.spawn_key):
                raise InputError(
                    "merge: the results have different seeds; continue a run with "
                    "rng=result.seed_sequence and start=result.next_replicate"
                )
        reps = pd.concat([p.replicates for p in parts], ignore_index=True)
        fails = pd.concat([p.failures for p in parts], ignore_index=True)
        idx = np.concatenate([reps["replicate"].to_numpy(), fails["replicate"].to_numpy()])
        if np.unique(idx).size != idx.size:
            raise InputError("merge: the results share replicate indexes (the same replicates run twice)")
        reps = reps.sort_values("replicate", ignore_index=True)
        fails = fails.sort_values("replicate", ignore_index=True)
        return BootstrapResult(
            reps,
            fails,
            self.estimates.copy(),
            entropy=self.entropy,
            spawn_key=self.spawn_key,
            kind=self.kind,
            info=self.info,
        )


def _nan_guard(v: pd.DataFrame) -> np.ndarray:
    x = v.to_numpy(dtype=float, copy=True)
    x[~np.isfinite(x)] = np.nan
    return x


def _json_float(v: float):
    return float(v) if np.isfinite(v) else str(v)


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            "saving and loading a BootstrapResult needs pyarrow: pip install 'ppl_glmm[parallel]'"
        ) from None
    return pa, pq


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"alpha: expected a number in (0, 1), got {alpha!r}")
    if not 0 < alpha < 1:
        raise InputError(f"alpha: must be a number in (0, 1), got {alpha!r}")
    return float(alpha)


def _check_method(method, arg: str = "method") -> str:
    """The interval method's name, or an InputError naming ``arg`` (``ci`` where a model method
    passes it on)."""
    if not isinstance(method, str) or method.strip().lower() not in CI_METHODS:
        raise InputError(f"{arg}: unknown interval {method!r}; use one of {', '.join(map(repr, CI_METHODS))}")
    return method.strip().lower()
