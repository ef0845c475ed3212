"""Unknown keyword arguments, answered with the spelling the caller meant.

Analysts porting MATLAB code write its name-value names (``DFMethod``, ``Alpha``, ``FitMethod``);
ppl_glmm spells them in snake_case (``dfmethod``, ``alpha``, ``fit_method``). A name is matched to
an accepted keyword when the two agree ignoring case and underscores (MATLAB's spelling), else by
:func:`difflib.get_close_matches` (a typo), so the error says which keyword to write instead of
Python's bare "unexpected keyword argument".
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Iterable

from .errors import InputTypeError

__all__ = ["check_method_keywords", "checked_keywords", "hint", "suggest", "unknown_message"]


def _folded(name: str) -> str:
    return name.replace("_", "").lower()


def suggest(name: str, accepted: Iterable[str]) -> str | None:
    """The accepted keyword meant by ``name``: the same letters ignoring case and underscores
    (MATLAB's spelling), else a close match (a typo), else None."""
    accepted = sorted(accepted)
    same = [a for a in accepted if _folded(a) == _folded(name)]
    if same:
        return same[0]
    close = difflib.get_close_matches(name.lower(), accepted, n=1, cutoff=0.7)
    return close[0] if close else None


def hint(name: str, accepted: Iterable[str]) -> str:
    """``'; write alpha= (...)'`` for MATLAB's spelling of an accepted keyword, ``'; did you mean
    alpha=?'`` for a typo of one, else ``''``: the tail of an unknown-keyword message."""
    guess = suggest(name, accepted)
    if guess is None:
        return ""
    if _folded(guess) == _folded(name):
        return f"; write {guess}= (ppl_glmm's keywords are snake_case: docs/matlab-to-python.md)"
    return f"; did you mean {guess}=?"


def unknown_message(name: str, accepted: Iterable[str], noun: str = "keyword argument") -> str:
    """``unknown <noun> name`` with :func:`hint`'s fix, or the accepted keywords where none is meant."""
    accepted = sorted(accepted)
    tail = hint(name, accepted) or (f"; accepted: {', '.join(accepted)}" if accepted else "; it takes none")
    return f"unknown {noun} {name}{tail}"


def checked_keywords(fn: Callable) -> Callable:
    """``fn`` raising :class:`InputTypeError` (a ``TypeError``) with :func:`unknown_message` for an
    unknown keyword argument, before any work. A function taking ``**kwargs`` checks its own."""
    sig = inspect.signature(fn)
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return fn
    accepted = frozenset(n for n, p in sig.parameters.items() if p.kind in kinds and n != "self")

    @functools.wraps(fn)
    def checked(*args, **kwargs):
        if not accepted.issuperset(kwargs):
            unknown = next(k for k in kwargs if k not in accepted)
            raise InputTypeError(f"{fn.__name__}: {unknown_message(unknown, accepted)}")
        return fn(*args, **kwargs)

    return checked


def check_method_keywords(cls: type) -> type:
    """Class decorator: every public method of ``cls`` (not properties) gets :func:`checked_keywords`."""
    for name, attr in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(attr):
            setattr(cls, name, checked_keywords(attr))
    return cls
