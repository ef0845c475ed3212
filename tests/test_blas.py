"""ppl_glmm.blas: one controller per process, and the limit holds inside the block only."""

from threadpoolctl import threadpool_info

from ppl_glmm import blas


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_the_limit_holds_in_the_block_and_the_controller_is_made_once():
    before = _blas_threads()
    assert before, "no BLAS library loaded"
    with blas.blas_limit(1):
        assert _blas_threads() == [1] * len(before)
        controller = blas._controller
    assert _blas_threads() == before
    with blas.blas_limit(None):
        assert _blas_threads() == before
    assert blas._controller is controller is not None
