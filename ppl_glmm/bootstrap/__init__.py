"""Simulation-based inference on a fitted model: the parametric bootstrap and the simulated
likelihood-ratio test, serially, in worker processes (loky) or on a Dask cluster.

* :func:`parametric_bootstrap` -- simulate responses from the fitted model (``random``), refit
  (``refit``), keep a statistic of each refit: a :class:`BootstrapResult` (intervals, bias, SE,
  failures, Parquet save/load/merge).
* :func:`simulated_lrt` -- simulate from the smaller of two nested models, refit both, and compare the
  observed likelihood ratio with the simulated ones: a :class:`SimulatedLRT`.
* :func:`bootstrap_coefficient_intervals`, :func:`bootstrap_covariance_intervals` -- the bootstrap's
  intervals in the layout of ``fixed_effects()`` and ``covariance_parameters()[2]``.

Replicate ``i`` depends only on the ``i``-th child of one ``numpy.random.SeedSequence`` (the
user's seed), so every backend, number of workers and batch size gives the same replicates. Nothing
here imports loky, dask or tqdm before a run asks for them (docs/bootstrap.md).
"""

from .intervals import bootstrap_coefficient_intervals, bootstrap_covariance_intervals
from .lrt import SimulatedLRT, check_nested, simulated_lrt
from .result import CI_METHODS, BootstrapResult
from .runner import BACKENDS, parametric_bootstrap

__all__ = [
    "BACKENDS",
    "CI_METHODS",
    "BootstrapResult",
    "SimulatedLRT",
    "bootstrap_coefficient_intervals",
    "bootstrap_covariance_intervals",
    "check_nested",
    "parametric_bootstrap",
    "simulated_lrt",
]
