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


def test_overlapping_blocks_in_two_threads_restore_the_original_limit():
    """Block A (thread 1) enters, block B (thread 2) enters, A leaves, B leaves: threadpoolctl's
    limiter restored what it saw on entry, so B left BLAS at one thread for the rest of the
    process (concurrent refits did this)."""
    import threading

    before = _blas_threads()
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    inside = {}

    def block_a():
        with blas.blas_limit(1):
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def block_b():
        a_in.wait(5)
        with blas.blas_limit(1):
            b_in.set()
            a_out.wait(5)
            inside["b_after_a_left"] = _blas_threads()

    threads = [threading.Thread(target=block_a), threading.Thread(target=block_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert inside["b_after_a_left"] == [1] * len(before)  # B still limited after A left
    assert _blas_threads() == before


def test_concurrent_refits_leave_blas_as_they_found_it(mfr_model):
    """Refits in two threads each limit BLAS to one thread: the process's BLAS stayed at one thread
    after them (every later NumPy product in the user's process ran single-threaded)."""
    from concurrent.futures import ThreadPoolExecutor

    before = _blas_threads()
    responses = [mfr_model.random(rng=s) for s in range(8)]
    with ThreadPoolExecutor(2) as pool:
        fits = list(pool.map(mfr_model.refit, responses))
    assert all(f.converged for f in fits)
    assert _blas_threads() == before
