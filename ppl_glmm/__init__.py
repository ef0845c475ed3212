"""ppl_glmm: generalized linear mixed-effects models, MATLAB ``fitglme`` in Python, on PyMC.

Pipeline: formula -> design (X, sparse Z blocks) -> PyMC model (the single source of the likelihood)
-> Laplace engine (PIRLS + exact-gradient BFGS) -> fitted model (MATLAB properties and methods)
-> Bayesian fit of the same model (NUTS) and comparison (``ppl_glmm.bayes``, imported on first use).
"""

from .api import fitglme, fitglme_bayes
from .errors import (
    ConvergenceWarning,
    FitError,
    GLMMError,
    GLMMWarning,
    InputError,
    InputTypeError,
    SamplingWarning,
    SingularFitWarning,
)
from .model import GeneralizedLinearMixedModel

__all__ = [
    "BayesianGLMM",
    "ConvergenceWarning",
    "FitError",
    "GLMMError",
    "GLMMWarning",
    "GeneralizedLinearMixedModel",
    "InputError",
    "InputTypeError",
    "SamplingWarning",
    "SingularFitWarning",
    "compare_fits",
    "datasets",
    "fitglme",
    "fitglme_bayes",
    "plot_compare",
]
__version__ = "0.1.0"

_LAZY = {"BayesianGLMM", "compare_fits", "plot_compare"}


def __getattr__(name: str):
    """The Bayesian part (ArviZ, plotting) and ``datasets`` are imported on first use, not with
    ``import ppl_glmm``."""
    if name == "datasets":
        import importlib

        return importlib.import_module(".datasets", __name__)
    if name in _LAZY:
        from . import bayes

        return getattr(bayes, name)
    raise AttributeError(f"module 'ppl_glmm' has no attribute {name!r}")
