"""What one replicate computes: the seed, the simulation and refits, and the statistic's numbers.

Replicate ``i`` of a run seeded by ``(entropy, spawn_key)`` uses the child
``SeedSequence(entropy, spawn_key=(*spawn_key, i))``: its first 64-bit word seeds ``random`` (the
simulated response) and nothing else is random (every refit warm-starts from the fitted model,
never from an earlier replicate). So a replicate's numbers depend on ``i`` alone, whatever process,
batch or order runs it.

The default statistic of a refitted model, in this column order:

* the fixed effects, named by ``coefficient_names``;
* per random-effects term, the entries of ``covariance_parameters()`` tables in their row order:
  ``"<group>: std(<Name1>)"`` and ``"<group>: corr(<Name1>, <Name2>)"``;
* ``"Error: sqrt(Dispersion)"`` when the dispersion is estimated, and negative binomial's
  ``"Error: theta"``;
* ``"logLik"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, InputTypeError, quiet

__all__ = [
    "RESERVED",
    "Parameter",
    "Row",
    "Task",
    "default_parameters",
    "replicate_seed",
    "run_batch",
    "statistic_vector",
]

# columns of the replicate table that are not statistics
RESERVED = ("replicate", "seed", "converged", "singular", "quadrature_edge")
LRT_NAMES = ("LR", "logLik_small", "logLik_big")


@dataclass(frozen=True)
class Parameter:
    """One column of the default statistic and where it sits in the model's tables: ``kind`` is
    'beta', 'std', 'corr', 'dispersion', 'ancillary' or 'logLik'; ``table`` the index of its
    ``covariance_parameters()`` table (None for beta and logLik)."""

    column: str
    kind: str
    table: int | None = None
    group: str = ""
    name1: str = ""
    name2: str = ""


@dataclass(frozen=True)
class Row:
    """One replicate's outcome: its statistic values (None when it failed) and flags."""

    replicate: int
    seed: int
    values: np.ndarray | None
    converged: bool
    singular: bool
    error: str | None = None
    quadrature_edge: bool = False  # a refit's quadrature was undefined at points it evaluated


@dataclass(frozen=True)
class Task:
    """What every replicate of a run does (sent once per batch to the workers).

    ``kind`` 'bootstrap': simulate from ``models[0]``, refit it, keep ``statistic(refit)`` (the
    default statistic when None); 'lrt': simulate from ``models[0]`` (the smaller model), refit both
    models, keep (LR, logLik_small, logLik_big)."""

    kind: str
    names: tuple[str, ...]
    entropy: int
    spawn_key: tuple[int, ...]
    statistic: Callable | None = None


def replicate_seed(entropy: int, spawn_key: tuple[int, ...], index: int) -> int:
    """The seed ``random`` gets for replicate ``index``: the first 64-bit word of the child
    ``SeedSequence(entropy, spawn_key=(*spawn_key, index))``."""
    child = np.random.SeedSequence(entropy, spawn_key=(*spawn_key, index))
    return int(child.generate_state(1, np.uint64)[0])


def default_parameters(model) -> list[Parameter]:
    """The default statistic's columns for ``model`` (see the module docstring)."""
    ws = model._ws
    out = [Parameter(name, "beta") for name in model.coefficient_names]
    for t, (term, pattern) in enumerate(zip(ws.design.terms, ws.patterns.terms)):
        for i, j in pattern.rows:  # the rows of covariance_parameters' table (the pattern's)
            n1, n2 = term.names[i], term.names[j]
            if i == j:
                out.append(Parameter(f"{term.group}: std({n1})", "std", t, term.group, n1, n2))
            else:
                out.append(Parameter(f"{term.group}: corr({n1}, {n2})", "corr", t, term.group, n1, n2))
    error_table = len(ws.design.terms)
    if model.dispersion_estimated:
        out.append(
            Parameter("Error: sqrt(Dispersion)", "dispersion", error_table, "Error", "sqrt(Dispersion)")
        )
    anc = ws.dist.ancillary
    if anc is not None and not anc.scales_random_effects:  # negative binomial's theta
        out.append(Parameter(f"Error: {anc.label}", "ancillary", error_table, "Error", anc.label))
    out.append(Parameter("logLik", "logLik"))
    return _unique(out)


def _unique(params: list[Parameter]) -> list[Parameter]:
    """Suffix ' #2', ' #3', ... to repeated columns (two terms on one grouping variable naming the
    same coefficient)."""
    seen: dict[str, int] = {}
    out = []
    for p in params:
        k = seen.get(p.column, 0) + 1
        seen[p.column] = k
        out.append(p if k == 1 else Parameter(f"{p.column} #{k}", p.kind, p.table, p.group, p.name1, p.name2))
    return out


def default_values(model) -> np.ndarray:
    """The default statistic of ``model``, in :func:`default_parameters`' order."""
    ws, res = model._ws, model._result
    parts = [np.asarray(res.beta, dtype=float)]
    for psi, pattern in zip(ws.layout.covariances(res.theta, res.sigma), ws.patterns.terms):
        parts.append(np.asarray(pattern.canonical_rows(psi), dtype=float))
    extra = []
    if model.dispersion_estimated:
        extra.append(res.sigma)
    anc = ws.dist.ancillary
    if anc is not None and not anc.scales_random_effects:
        extra.append(res.ancillary)
    extra.append(res.log_likelihood)
    parts.append(np.asarray(extra, dtype=float))
    return np.concatenate(parts)


def statistic_vector(output, names: tuple[str, ...] | None = None) -> tuple[tuple[str, ...], np.ndarray]:
    """(names, values) of a statistic's output: a mapping or pandas Series (its keys name the
    values), a number (named 'statistic') or a 1-d array of numbers (named 'stat_0', 'stat_1', ...).
    With ``names`` (the original model's), the output must have exactly these names."""
    import pandas as pd

    if isinstance(output, pd.Series):
        keys, vals = [str(k) for k in output.index], list(output.to_numpy())
    elif isinstance(output, Mapping):
        keys, vals = [str(k) for k in output], list(output.values())
    else:
        arr = np.asarray(output)
        if arr.ndim == 0:
            keys, vals = ["statistic"], [arr.item()]
        elif arr.ndim == 1:
            keys, vals = [f"stat_{k}" for k in range(arr.size)], list(arr)
        else:
            raise InputTypeError(
                f"statistic: must return a number, a 1-d array, a dict or a pandas Series of numbers; "
                f"got an array of shape {arr.shape}"
            )
    try:
        values = np.array([float(v) for v in vals], dtype=float)
    except (TypeError, ValueError) as err:
        raise InputTypeError(f"statistic: every value must be a real number ({err})") from None
    if len(set(keys)) != len(keys):
        raise InputError(f"statistic: names must be unique, got {keys}")
    if names is not None and tuple(keys) != tuple(names):
        raise InputError(f"statistic: returned names {keys}, the fitted model's were {list(names)}")
    return tuple(keys), values


def evaluate(task: Task, fits: tuple) -> np.ndarray:
    """The replicate's statistic values from its refitted models."""
    if task.kind == "lrt":
        small, big = fits
        ls, lb = small.log_likelihood, big.log_likelihood
        return np.array([2.0 * (lb - ls), ls, lb])
    if task.statistic is None:
        return default_values(fits[0])
    return statistic_vector(task.statistic(fits[0]), task.names)[1]


def run_one(models: tuple, task: Task, index: int) -> Row:
    """Simulate from ``models[0]`` with replicate ``index``'s seed, refit every model to the draw and
    evaluate the statistic. An exception (in ``random``, ``refit`` or the statistic) makes a failed
    row that carries its message; the fits' convergence and singular-fit warnings become flags."""
    seed = replicate_seed(task.entropy, task.spawn_key, index)
    try:
        with quiet():  # (thread-local: replicates run in threads too)
            y = models[0].random(rng=seed)
            fits = tuple(m.refit(y) for m in models)
            values = evaluate(task, fits)
    except Exception as err:  # a replicate's failure is data, reported with its seed
        return Row(index, seed, None, False, False, f"{type(err).__name__}: {err}")
    converged = all(bool(f.converged) for f in fits)
    singular = any(bool(f.singular) for f in fits)
    edge = any(f._result.quadrature_edge for f in fits)
    return Row(index, seed, values, converged, singular, quadrature_edge=edge)


def run_batch(models: tuple, task: Task, indexes) -> list[Row]:
    """Replicates ``indexes`` in order, one :class:`Row` each."""
    return [run_one(models, task, int(i)) for i in indexes]


def default_batch_size(nsim: int, workers: int) -> int:
    """About four batches per worker (so a slow batch does not leave the others idle), at most 64
    replicates each (so the progress bar moves)."""
    return max(1, min(64, math.ceil(nsim / (4 * max(1, workers)))))
