"""Bayesian fits of the same PyMC model, ArviZ output for ML and Bayesian fits, and their comparison.

Imported lazily by ``ppl_glmm`` (a maximum-likelihood fit never loads it). Pipeline: priors ->
Bayesian PyMC model (the ML model's data and likelihood, a NUTS-friendly parametrisation) -> NUTS
(PyMC or nutpie, warmed by the ML fit) -> ``BayesianGLMM`` -> ``compare_fits`` / ``plot_compare``.
"""

from .compare import compare_fits, plot_compare
from .results import BayesianGLMM

__all__ = ["BayesianGLMM", "compare_fits", "plot_compare"]
