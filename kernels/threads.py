"""Threads per process for the Numba kernels and the BLAS that runs the GEMMs.

``NUMBA_NUM_THREADS`` caps the Numba pool at start-up; :func:`set_num_threads` chooses, at run
time, how many of those threads Numba uses and how many OpenBLAS (numpy's BLAS) uses, so that
one number governs a process. MPI ranks each call it with cores // ranks.
"""

from __future__ import annotations

import os
import time

import numba
import numpy as np
from threadpoolctl import threadpool_limits

_blas_limiter = None

# Numba's OpenMP layer spin-waits between parallel regions and fights OpenBLAS's own spinning
# threads for the cores: a 128->128 conv on 28x28 ran at 58 GFLOP/s with it and 110 with the
# workqueue layer, which sleeps (measured here, 2 cores). Unless the user chose a layer.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"


def max_threads() -> int:
    """Threads the Numba pool was started with (``NUMBA_NUM_THREADS`` or the core count)."""
    return int(numba.config.NUMBA_NUM_THREADS)


def available_cores() -> int:
    """Cores this process may run on (its affinity mask), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def set_num_threads(n: int) -> int:
    """Use ``n`` threads in Numba kernels and in BLAS. Returns ``n``.

    Raises ValueError when ``n`` is below 1 or above the Numba pool size.
    """
    global _blas_limiter
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n > max_threads():
        raise ValueError(f"threads={n!r} is out of range (allowed 1..{max_threads()}, "
                         "the NUMBA_NUM_THREADS pool size)")
    numba.set_num_threads(n)
    _blas_limiter = threadpool_limits(limits=n, user_api="blas")
    return n


def threading_layer() -> str:
    """The Numba threading layer in use (after the first parallel call) or configured."""
    try:
        return str(numba.threading_layer())
    except ValueError:
        return str(numba.config.THREADING_LAYER)


def get_num_threads() -> int:
    """Threads Numba kernels use now."""
    return int(numba.get_num_threads())


@numba.njit(parallel=True, cache=True)
def _touch(out):  # pragma: no cover - JIT
    for i in numba.prange(out.size):
        out[i] += 1.0


def pool_wakeup_s(repeats: int = 50, idle_s: float = 0.002) -> float:
    """Median wall time in s of one near-empty parallel region (one add per thread) called
    after the pool has idled ``idle_s``: what a kernel pays to wake the Numba threads before
    any work, as after a GEMM or a Python-level gap inside a training step."""
    out = np.zeros(get_num_threads(), dtype=np.float64)
    _touch(out)  # compile or load from the cache
    times = []
    for _ in range(repeats):
        time.sleep(idle_s)
        t0 = time.perf_counter()
        _touch(out)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))
