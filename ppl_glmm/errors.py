"""The library's exceptions and warnings: one base class each, so callers can catch all of ppl_glmm's.

* :class:`GLMMError` is the base of every exception raised on purpose; :class:`InputError` (also a
  ``ValueError``) and :class:`InputTypeError` (also a ``TypeError``) reject bad arguments before any
  work is done, and name the argument and the fix; :class:`FitError` reports a fit that cannot proceed.
* :class:`LikelihoodSupportError` is raised inside a compiled likelihood function when a parameter
  leaves its support (e.g. a negative Poisson mean on an identity link); the engine catches it and
  steps back, so users see it only from their own calls of such a function.
* :class:`GLMMWarning` is the base of every warning: :class:`ConvergenceWarning` (the optimiser
  stopped early), :class:`SingularFitWarning` (a variance estimated at zero) and
  :class:`SamplingWarning` (an MCMC diagnostic failed: divergences, R-hat, ESS, E-BFMI).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "ConvergenceWarning",
    "FitError",
    "GLMMError",
    "GLMMWarning",
    "InputError",
    "InputTypeError",
    "LikelihoodSupportError",
    "SamplingWarning",
    "SingularFitWarning",
    "quiet",
    "warn",
]

_PACKAGE = (str(Path(__file__).resolve().parent) + "/",)


_QUIET = threading.local()


def warn(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` attributed to the first caller outside ppl_glmm (the user's line), however
    deep in the package it is issued (``skip_file_prefixes``, Python 3.12): no stacklevel to count.
    Nothing inside :func:`quiet` in this thread."""
    if getattr(_QUIET, "on", False):
        return
    warnings.warn(message, category, skip_file_prefixes=_PACKAGE)


@contextmanager
def quiet() -> Iterator[None]:
    """This thread's ppl_glmm warnings are not issued inside the block. Unlike
    ``warnings.catch_warnings``, which replaces the process's filter list on entry and exit (two
    threads' blocks interleaved left an 'ignore' filter behind for good), it touches nothing that
    another thread reads."""
    before = getattr(_QUIET, "on", False)
    _QUIET.on = True
    try:
        yield
    finally:
        _QUIET.on = before


class GLMMError(Exception):
    """Base class of the exceptions ppl_glmm raises."""


class InputError(GLMMError, ValueError):
    """An argument has a bad value; the message names the argument and the fix."""


class InputTypeError(GLMMError, TypeError):
    """An argument has the wrong type; the message names the argument and the type expected."""


class FitError(GLMMError, RuntimeError):
    """A fit or a sampler run cannot proceed."""


class LikelihoodSupportError(GLMMError, ValueError):
    """A compiled likelihood was evaluated at a parameter outside its support (PyMC's parameter
    checks, e.g. mu >= 0, recompiled to raise this class: it carries no import of PyMC)."""


class GLMMWarning(UserWarning):
    """Base class of the warnings ppl_glmm issues."""


class ConvergenceWarning(GLMMWarning):
    """The optimiser stopped without meeting its convergence tests."""


class SingularFitWarning(GLMMWarning):
    """A random-effects covariance is on the boundary (a variance at zero, or a correlation at its
    bound)."""


class SamplingWarning(GLMMWarning):
    """An MCMC convergence diagnostic failed (divergences, R-hat, ESS or E-BFMI)."""
