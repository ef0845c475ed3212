"""The cyclic garbage collector paused while ppl_glmm loads its dependencies.

A fit's first call imports pandas, formulae, SciPy and PyTensor and unpickles a compiled function:
some 1,400 modules and 150,000 container objects. The collector walks them again and again as
they age: the seed script made 362 passes (0.42 s of collector time, 3 of the passes over every
object alive), for a few objects of garbage. Those imports run inside :func:`gc_paused`, and the
script now makes 16 (0.22 s): the first pass after a paused block walks what the block created,
once, and what the pause deferred is collected then. With the single thread-pool controller of
:mod:`ppl_glmm.blas`, the seed script's own time fell by about 0.1 s (``docs/algorithms.md``,
"Start-up").

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
