"""BLAS thread limits, through one ``threadpoolctl`` controller per process.

Small dense products and solves run fastest on one BLAS thread (thread wake-ups dominate a
200 x 200 solve, and a busy machine makes them slower still), so the engine limits BLAS to one
thread below :data:`THREADS_ABOVE_DENSE` and leaves it alone above. Making a controller scans
every loaded library (~20 ms here), so it is made once, on first use, under a lock.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

__all__ = ["THREADS_ABOVE_DENSE", "blas_limit"]

THREADS_ABOVE_DENSE = 1500  # order of the dense part of a fit's factorisation

_LOCK = threading.Lock()
_controller = None


def _get_controller():
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        with _LOCK:
            if _controller is None:
                _controller = ThreadpoolController()
    return _controller


_active = 0  # blocks inside a limit, in every thread
_limits = None  # the threadpoolctl limiter of the outermost block (it restores the original)


@contextmanager
def blas_limit(limit: int | None):
    """Context limiting BLAS to ``limit`` threads (None: no limit) for its block.

    BLAS's thread count is process-wide, so the blocks of all threads share one limit: the first
    block to enter sets it and the last to leave restores the original (threadpoolctl's own
    limiter restores what it saw on entry, so two overlapping blocks left BLAS at one thread for
    good: the second saved the first's limit)."""
    global _active, _limits
    if limit is None:
        yield
        return
    controller = _get_controller()
    with _LOCK:
        if _active == 0:
            _release_openblas()
            _limits = controller.limit(limits=limit, user_api="blas")
            _release_openblas()
        _active += 1
    try:
        yield
    finally:
        with _LOCK:
            _active -= 1
            if _active == 0:
                _release_openblas()
                _limits.restore_original_limits()
                _release_openblas()
                _limits = None


def _release_openblas() -> None:
    """threadpoolctl >= 3.8 lets only one thread, the first to set it, change OpenBLAS's
    process-wide pool (the others silently do nothing) until that thread lets go; the block that
    restores the limit may run in another thread than the one that set it, so each change is
    made with the control free (threadpoolctl < 3.8 has no such control)."""
    import threadpoolctl

    clear = getattr(getattr(threadpoolctl, "OpenBLASController", None), "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)
