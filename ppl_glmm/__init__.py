"""ppl_glmm: generalized linear mixed-effects models, MATLAB ``fitglme`` in Python, on PyMC.

Pipeline: formula -> design (X, sparse Z blocks) -> PyMC model (the single source of the likelihood)
-> Laplace engine (PIRLS + exact-gradient BFGS) -> fitted model (MATLAB properties and methods).
"""

from .api import fitglme
from .fitting import ConvergenceWarning, SingularFitWarning
from .model import GeneralizedLinearMixedModel

__all__ = ["ConvergenceWarning", "GeneralizedLinearMixedModel", "SingularFitWarning", "fitglme"]
__version__ = "0.1.0"
