"""What this machine can do: memory bandwidth (the brute-force floor), threads, resident memory."""

from __future__ import annotations

import contextlib
import os
import time

import faiss
import numpy as np
import psutil
from threadpoolctl import threadpool_limits


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def measure_bandwidth(n_bytes: int = 512 << 20, repeats: int = 5) -> float:
    """Single-thread streaming read bandwidth in bytes/s: best of ``repeats`` over two kernels.

    A float32 buffer much larger than the last-level cache is read by ``a.sum()`` and by the BLAS
    ``sdot`` ``a @ a`` (each reads every byte once); the best time of either is the floor any
    scan of that many bytes can reach on one core.
    """
    with threads(1):
        a = np.ones(n_bytes // 4, np.float32)
        best = float("inf")
        for _ in range(repeats):
            for kernel in (a.sum, lambda: a @ a):
                t = time.perf_counter()
                kernel()
                best = min(best, time.perf_counter() - t)
    return a.nbytes / best


@contextlib.contextmanager
def threads(n: int):
    """Limit faiss (OpenMP) and numpy's BLAS to ``n`` threads inside the block."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        faiss.omp_set_num_threads(before)


def resident_mb() -> float:
    """Resident set size of this process in MiB."""
    return psutil.Process().memory_info().rss / 2**20
