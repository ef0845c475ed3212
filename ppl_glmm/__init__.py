"""ppl_glmm: generalized linear mixed-effects models, MATLAB ``fitglme`` in Python, on PyMC.

Pipeline: formula -> design (X, sparse Z blocks) -> PyMC model (the single source of the likelihood)
-> Laplace engine (PIRLS + exact-gradient BFGS) -> fitted model (MATLAB properties and methods)
-> Bayesian fit of the same model (NUTS) and comparison (``ppl_glmm.bayes``); simulation-based
inference on a fit (parametric bootstrap, simulated LRT; serial, loky or Dask: ``ppl_glmm.bootstrap``).

``import ppl_glmm`` loads only the exceptions: everything else (pandas, formulae, SciPy, PyMC,
PyTensor's backend, ArviZ) is imported on first use of the name that needs it, so a script or a
command line that does not fit pays nothing for them (docs/algorithms.md, "Start-up").
"""

from typing import TYPE_CHECKING

from .errors import (
    ConvergenceWarning,
    FitError,
    GLMMError,
    GLMMWarning,
    InputError,
    InputTypeError,
    LikelihoodSupportError,
    SamplingWarning,
    SingularFitWarning,
)

if TYPE_CHECKING:  # pragma: no cover - static analysis sees the lazy names as ordinary imports
    from . import datasets
    from .api import fitglme, fitglme_bayes
    from .bayes import BayesianGLMM, compare_fits, plot_compare
    from .bootstrap import BootstrapResult, SimulatedLRT, parametric_bootstrap, simulated_lrt
    from .families import custom_link
    from .model import GeneralizedLinearMixedModel

__all__ = [
    "BayesianGLMM",
    "BootstrapResult",
    "ConvergenceWarning",
    "FitError",
    "GLMMError",
    "GLMMWarning",
    "GeneralizedLinearMixedModel",
    "InputError",
    "InputTypeError",
    "LikelihoodSupportError",
    "SamplingWarning",
    "SimulatedLRT",
    "SingularFitWarning",
    "compare_fits",
    "custom_link",
    "datasets",
    "fitglme",
    "fitglme_bayes",
    "parametric_bootstrap",
    "plot_compare",
    "simulated_lrt",
]
__version__ = "0.1.0"

# public name -> the submodule that defines it, imported on first access (PEP 562)
_LAZY = {
    "fitglme": "api",
    "fitglme_bayes": "api",
    "GeneralizedLinearMixedModel": "model",
    "BayesianGLMM": "bayes",
    "compare_fits": "bayes",
    "plot_compare": "bayes",
    "parametric_bootstrap": "bootstrap",
    "simulated_lrt": "bootstrap",
    "BootstrapResult": "bootstrap",
    "SimulatedLRT": "bootstrap",
    "custom_link": "families",
}


def __getattr__(name: str):
    """Import the submodule behind a public name on first access and keep the name here."""
    import importlib

    from .gc_pause import gc_paused

    if name in ("datasets", "bootstrap"):
        with gc_paused():  # the dependencies' import: see ppl_glmm.gc_pause
            return importlib.import_module(f".{name}", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ppl_glmm' has no attribute {name!r}")
    with gc_paused():
        value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later accesses skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted((set(globals()) - {"TYPE_CHECKING"}) | set(__all__))
