"""Blocks of work on a few threads, each running torch and BLAS single-threaded.

Scoring a test set is many small, independent pieces (a k x k Cholesky, an assignment problem, a few
comparisons per block of profiles). Multi-threaded torch and BLAS calls on such small pieces spend
their time waking and spinning threads, and numpy's OpenBLAS threads and torch's OpenMP threads fight
for the same cores. Running whole blocks side by side on single-threaded workers uses the cores
instead. Results come back in submission order, so sums over them are deterministic.
"""

import collections
import contextlib
from concurrent.futures import ThreadPoolExecutor

import torch


@contextlib.contextmanager
def _single_threaded_blas():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def ordered_map(fn, items, workers=None, ahead=2):
    """Yield ``fn(*item)`` for each tuple of ``items`` in order, computed on ``workers`` threads (default:
    torch's thread count) with single-threaded torch and BLAS, at most ``ahead`` x ``workers`` items
    in flight (memory stays bounded by the block size)."""
    workers = workers or torch.get_num_threads()
    if workers <= 1:
        for item in items:
            yield fn(*item)
        return
    outer = torch.get_num_threads()
    pending = collections.deque()
    try:
        with _single_threaded_blas(), ThreadPoolExecutor(workers, initializer=torch.set_num_threads,
                                                         initargs=(1,)) as pool:
            for item in items:
                pending.append(pool.submit(fn, *item))
                while len(pending) > ahead * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
    finally:
        torch.set_num_threads(outer)
