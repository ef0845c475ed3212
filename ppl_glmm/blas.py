"""BLAS thread limits, through one ``threadpoolctl`` controller per process.

Small dense products and solves run fastest on one BLAS thread (thread wake-ups dominate a
200 x 200 solve, and a busy machine makes them slower still), so the engine limits BLAS to one
thread below :data:`THREADS_ABOVE_DENSE` and leaves it alone above. Making a controller scans
every loaded library (~20 ms here), so it is made once, on first use, under a lock.
"""

from __future__ import annotations

import threading

__all__ = ["THREADS_ABOVE_DENSE", "blas_limit"]

THREADS_ABOVE_DENSE = 1500  # order of the dense part of a fit's factorisation

_LOCK = threading.Lock()
_controller = None


def blas_limit(limit: int | None):
    """Context limiting BLAS to ``limit`` threads (None: no limit) for its block."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        with _LOCK:
            if _controller is None:
                _controller = ThreadpoolController()
    return _controller.limit(limits=limit, user_api="blas")
