"""Running replicates: argument checks, seeds, and the serial, loky and Dask backends.

* ``serial``: replicates in order in this process.
* ``loky``: ``n_jobs`` worker processes (loky's reusable executor, kept for 5 minutes between
  runs). Each batch carries the pickled models (a few tens of kB for the mfr model) and a token (the
  SHA-1 of the pickle); a worker unpickles a token's models once and keeps them (at most 4 model
  sets), so it builds the PyMC model and loads the compiled functions once, then only refits. BLAS
  is pinned to one thread per worker (OMP/OpenBLAS/MKL environment variables when the workers start,
  and threadpoolctl).
* ``dask``: the pickled models are scattered to every worker once (``broadcast=True``), batches are
  submitted with ``client.submit`` and gathered as they complete (``as_completed``); each worker
  process unpickles (and compiles) once, through the same token cache. Dask's nanny starts workers
  with one BLAS thread by default.

Each row of the results is a few numbers: memory stays flat in ``nsim`` (no fitted model is kept).
"""

from __future__ import annotations

import hashlib
import numbers
import pickle
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError, InputTypeError
from .statistics import (
    RESERVED,
    Row,
    Task,
    default_batch_size,
    default_parameters,
    default_values,
    run_batch,
    statistic_vector,
)

__all__ = ["BACKENDS", "Plan", "check_model", "make_plan", "parametric_bootstrap", "run_replicates"]

BACKENDS = ("serial", "loky", "dask")
PARALLEL_EXTRA = "pip install 'ppl_glmm[parallel]'"
_SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}


@dataclass(frozen=True)
class Plan:
    """A run's checked arguments: the replicates ``start .. start + nsim - 1`` of the seed
    ``(entropy, spawn_key)`` on ``backend``."""

    nsim: int
    start: int
    entropy: int
    spawn_key: tuple[int, ...]
    backend: str
    n_jobs: int
    client: Any
    batch_size: int | None
    progress: bool

    @property
    def indexes(self) -> range:
        return range(self.start, self.start + self.nsim)

    def batches(self, workers: int) -> list[range]:
        size = self.batch_size or default_batch_size(self.nsim, workers)
        idx = self.indexes
        return [idx[k : k + size] for k in range(0, len(idx), size)]


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def seed_entropy(rng) -> tuple[int, tuple[int, ...]]:
    """(entropy, spawn_key) of the run's root ``SeedSequence`` from ``rng``: None (fresh entropy,
    recorded in the result), a non-negative integer, a ``numpy.random.SeedSequence`` (its entropy and
    spawn key) or a numpy Generator (one 63-bit draw from it)."""
    if rng is None:
        return int(np.random.SeedSequence().entropy), ()
    if isinstance(rng, np.random.SeedSequence):
        if rng.entropy is None:  # pragma: no cover - numpy always fills it
            raise InputError("rng: the SeedSequence has no entropy")
        return int(rng.entropy), tuple(int(k) for k in rng.spawn_key)
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(0, 2**63 - 1)), ()
    if _is_int(rng):
        if rng < 0:
            raise InputError(f"rng: a seed must be a non-negative integer, got {rng}")
        return int(rng), ()
    raise InputTypeError(
        "rng: expected None, a non-negative integer seed, a numpy SeedSequence or Generator, "
        f"got {type(rng).__name__}"
    )


def make_plan(
    nsim,
    *,
    rng=None,
    n_jobs=1,
    backend=None,
    client=None,
    batch_size=None,
    progress=True,
    start=0,
) -> Plan:
    """Check a run's arguments (before any work) and resolve the backend: None means 'serial' for
    ``n_jobs == 1`` and 'loky' otherwise; 'dask' needs a ``client`` (or a default client)."""
    if not _is_int(nsim):
        raise InputTypeError(f"nsim: expected a positive integer, got {nsim!r}")
    if nsim < 1:
        raise InputError(f"nsim: must be at least 1, got {nsim}")
    if not _is_int(n_jobs):
        raise InputTypeError(f"n_jobs: expected a positive integer, got {n_jobs!r}")
    if n_jobs < 1:
        raise InputError(f"n_jobs: must be at least 1 (the number of worker processes), got {n_jobs}")
    if backend is None:
        if client is not None:
            raise InputError("client: a Dask client is used only with backend='dask'; pass backend='dask'")
        backend = "serial" if n_jobs == 1 else "loky"
    if not isinstance(backend, str) or backend.strip().lower() not in BACKENDS:
        raise InputError(f"backend: unknown backend {backend!r}; use one of {', '.join(map(repr, BACKENDS))}")
    backend = backend.strip().lower()
    if client is not None and backend != "dask":
        raise InputError(
            f"client: a Dask client is used only with backend='dask', not backend={backend!r}; "
            "pass backend='dask' or leave client out"
        )
    if backend == "serial" and n_jobs != 1:
        raise InputError(
            f"n_jobs: backend='serial' runs in this process; n_jobs={n_jobs} needs backend='loky'"
        )
    if batch_size is not None:
        if not _is_int(batch_size):
            raise InputTypeError(f"batch_size: expected a positive integer or None, got {batch_size!r}")
        if batch_size < 1:
            raise InputError(f"batch_size: must be at least 1, got {batch_size}")
    if not isinstance(progress, (bool, np.bool_)):
        raise InputTypeError(f"progress: expected True or False, got {progress!r}")
    if not _is_int(start) or start < 0:
        raise InputError(f"start: the first replicate's index must be a non-negative integer, got {start!r}")
    if backend == "loky":
        _require("loky", "backend='loky'")
    if backend == "dask":
        _require("distributed", "backend='dask'")
        if client is None:
            from distributed import default_client

            try:
                client = default_client()
            except ValueError:
                raise InputError(
                    "client: backend='dask' needs a dask.distributed Client (client=Client(...)); "
                    "none was given and no default client exists"
                ) from None
        elif not hasattr(client, "submit") or not hasattr(client, "scatter"):
            raise InputTypeError(f"client: expected a dask.distributed Client, got {type(client).__name__}")
    entropy, spawn_key = seed_entropy(rng)
    return Plan(
        int(nsim), int(start), entropy, spawn_key, backend, int(n_jobs), client, batch_size, bool(progress)
    )


def _require(module: str, what: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ImportError(f"{what} needs the '{module}' package: {PARALLEL_EXTRA}")


def check_model(model, arg: str = "model") -> None:
    from ..model import GeneralizedLinearMixedModel

    if not isinstance(model, GeneralizedLinearMixedModel):
        raise InputTypeError(
            f"{arg}: expected a fitted GeneralizedLinearMixedModel (from fitglme), got {type(model).__name__}"
        )


def check_simulable(model, arg: str = "model") -> None:
    """Refuse a binomial or Poisson fit with an estimated dispersion (pseudo-likelihood with
    ``dispersion_flag=True``): a quasi-likelihood dispersion has no distribution to draw from, so
    its replicates had none, their refits estimated it near 1, and the bootstrap SEs were too small
    by sqrt(dispersion) (an interval for sqrt(Dispersion) of [0.87, 1.11] around 1.56)."""
    if model._quasi_dispersion:
        raise InputError(
            f"{arg}: a {model.distribution} fit with an estimated dispersion (dispersion_flag=True, "
            f"Dispersion = {model.dispersion:.4g}) has no distribution to simulate replicates from: "
            "they would carry no overdispersion. Use the Wald intervals, or bootstrap a fit without "
            "dispersion_flag"
        )


# ---------------------------------------------------------------------------------- backends


def run_replicates(models: tuple, task: Task, plan: Plan) -> list[Row]:
    """Every replicate of ``plan``, sorted by index, whatever the backend."""
    with _progress_bar(plan.nsim, plan.progress) as bar:
        if plan.backend == "serial":
            rows = []
            for i in plan.indexes:
                rows.extend(run_batch(models, task, [i]))
                bar.update(1)
        elif plan.backend == "loky":
            rows = _run_loky(models, task, plan, bar)
        else:
            rows = _run_dask(models, task, plan, bar)
    rows.sort(key=lambda r: r.replicate)
    return rows


def _payload(models: tuple) -> tuple[str, bytes]:
    data = pickle.dumps(models, protocol=pickle.HIGHEST_PROTOCOL)
    return hashlib.sha1(data).hexdigest(), data


def _run_loky(models: tuple, task: Task, plan: Plan, bar) -> list[Row]:
    from concurrent.futures import as_completed

    from loky import get_reusable_executor

    token, data = _payload(models)
    executor = get_reusable_executor(max_workers=plan.n_jobs, timeout=300, env=dict(_SINGLE_THREAD_ENV))
    futures = [executor.submit(_worker_batch, token, data, task, b) for b in plan.batches(plan.n_jobs)]
    rows: list[Row] = []
    try:
        for fut in as_completed(futures):
            batch = fut.result()
            rows.extend(batch)
            bar.update(len(batch))
    finally:
        for fut in futures:
            fut.cancel()
    return rows


def _run_dask(models: tuple, task: Task, plan: Plan, bar) -> list[Row]:
    from distributed import as_completed

    client = plan.client
    token, data = _payload(models)
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    [remote] = client.scatter([data], broadcast=True, hash=False)
    futures = [
        client.submit(_worker_batch, token, remote, task, b, pure=False) for b in plan.batches(workers)
    ]
    rows: list[Row] = []
    try:
        for fut in as_completed(futures):
            batch = fut.result()
            rows.extend(batch)
            bar.update(len(batch))
            fut.release()
    finally:
        client.cancel([*futures, remote])
    return rows


# worker side: token -> unpickled models, kept per process (at most 4 model sets)
_MODELS: OrderedDict[str, tuple] = OrderedDict()
_MODELS_LOCK = threading.Lock()
_MAX_CACHED = 4


def _worker_models(token: str, data: bytes) -> tuple:
    with _MODELS_LOCK:
        models = _MODELS.get(token)
        if models is None:
            _pin_blas()
            models = pickle.loads(data)
            _MODELS[token] = models
            while len(_MODELS) > _MAX_CACHED:
                _MODELS.popitem(last=False)
        else:
            _MODELS.move_to_end(token)
    return models


def _pin_blas() -> None:
    """One BLAS thread in a worker process (loky sets the environment variables at start-up too)."""
    import os

    if all(os.environ.get(k) == "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")):
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")


def _worker_batch(token: str, data: bytes, task: Task, indexes: Iterable[int]) -> list[Row]:
    return run_batch(_worker_models(token, data), task, indexes)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def _progress_bar(total: int, enabled: bool):
    """A tqdm bar (tqdm.auto: a widget in notebooks) when asked for and tqdm is installed."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, unit="replicate", desc="replicates")


# ---------------------------------------------------------------------------------- bootstrap


def parametric_bootstrap(
    model,
    nsim: int,
    *,
    statistic: Callable | None = None,
    rng=None,
    n_jobs: int = 1,
    backend: str | None = None,
    client=None,
    batch_size: int | None = None,
    progress: bool = True,
    start: int = 0,
):
    """Parametric bootstrap of a fitted model: ``nsim`` times, simulate a response from the fit
    (``model.random``: new random effects b ~ N(0, Psi-hat), then y | b), refit (``model.refit``)
    and keep a statistic of the refit.

    Parameters
    ----------
    model : GeneralizedLinearMixedModel
        The fitted model (not changed).
    nsim : int
        Number of replicates (>= 1).
    statistic : callable, optional
        ``statistic(refitted_model)`` -> a number, a 1-d array, a dict or a pandas Series of
        numbers (the same names for every replicate). Default: the fixed effects, the SDs and
        correlations (named like ``covariance_parameters()`` rows: ``"factory: std((Intercept))"``),
        ``"Error: sqrt(Dispersion)"`` when estimated, negative binomial's theta, and ``"logLik"``.
        With loky or Dask it must be picklable by cloudpickle (a lambda is).
    rng : None, int, numpy SeedSequence or Generator
        The run's seed. Replicate i uses the child ``SeedSequence(entropy, spawn_key=(*spawn_key, i))``
        only, so the same seed gives the same replicates with any backend, n_jobs or batch size.
        None draws fresh entropy (kept in the result: ``result.seed_sequence``).
    n_jobs : int
        Worker processes for the loky backend (>= 1).
    backend : {'serial', 'loky', 'dask'}, optional
        Default: 'serial' when n_jobs == 1, else 'loky'. 'dask' runs on ``client``'s workers.
    client : dask.distributed.Client, optional
        The cluster for backend='dask' (default: the current default client).
    batch_size : int, optional
        Replicates per task for loky/Dask (default: about 4 batches per worker, at most 64 each).
    progress : bool
        A tqdm progress bar (when tqdm is installed).
    start : int
        Index of the first replicate: continue an earlier run with ``rng=earlier.seed_sequence``,
        ``start=earlier.next_replicate``, then ``earlier.merge(later)``.

    Returns
    -------
    BootstrapResult
        The replicates' statistics, failures (with their seeds and messages) and flags; intervals by
        ``ci``, ``bias()``, ``se()``; ``save``/``load`` in Parquet.

    A replicate whose simulation, refit or statistic raises is recorded as failed (never dropped
    silently); a warning summarises failed and non-converged replicates.
    """
    check_model(model)
    check_simulable(model)
    if statistic is not None and not callable(statistic):
        raise InputTypeError(
            f"statistic: expected a callable statistic(model), got {type(statistic).__name__}"
        )
    plan = make_plan(
        nsim,
        rng=rng,
        n_jobs=n_jobs,
        backend=backend,
        client=client,
        batch_size=batch_size,
        progress=progress,
        start=start,
    )
    if statistic is None:
        names = tuple(p.column for p in default_parameters(model))
        estimates = default_values(model)
    else:
        names, estimates = statistic_vector(statistic(model))
    clash = sorted(set(names) & set(RESERVED))
    if clash:
        raise InputError(f"statistic: the names {clash} are reserved for the replicate table; rename them")
    task = Task("bootstrap", names, plan.entropy, plan.spawn_key, statistic)
    rows = run_replicates((model,), task, plan)
    from .result import BootstrapResult

    info = {"formula": model.formula, "statistic": "default" if statistic is None else _name_of(statistic)}
    result = BootstrapResult._from_rows(rows, names, estimates, plan, kind="bootstrap", info=info)
    result.warn_problems()
    return result


def _name_of(f: Callable) -> str:
    return getattr(f, "__qualname__", None) or type(f).__name__
