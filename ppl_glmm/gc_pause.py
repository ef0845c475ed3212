"""The cyclic garbage collector paused while ppl_glmm loads its dependencies.

A fit's first call imports pandas, formulae, SciPy and PyTensor and unpickles a compiled function:
some 1,400 modules and 150,000 container objects. Each of the collector's full passes walks every
object alive, and an import of that size triggers dozens of passes: about 0.4 s of a new process's
first fit (``benchmarks/startup.py``), while the garbage they find is a few objects. Those
imports run inside :func:`gc_paused`; what the pause defers is collected at the next pass after it.

The pause nests and is shared by threads: the collector is enabled again when the last paused
block ends, and only if it was enabled when the first began (a program that disabled it keeps it
disabled).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused"]

_LOCK = threading.Lock()
_depth = 0
_restore = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic garbage collector for the block (see the module's docstring)."""
    global _depth, _restore
    with _LOCK:
        if _depth == 0:
            _restore = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _LOCK:
            _depth -= 1
            if _depth == 0 and _restore:
                gc.enable()
