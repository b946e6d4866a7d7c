"""The machine's measured FP32 peak (two ways) and memory bandwidth, for the roofline.

* FMA micro-kernel: each thread runs 8 dependent FMAs on each element of an L1-resident array;
  the element loop vectorizes (AVX2/AVX-512) and the independent elements hide FMA latency,
  so one load and one store feed 8 FMAs: compute-bound. 2 FLOP per FMA.
* sgemm: numpy's BLAS (OpenBLAS) on square float32 matrices, 2*n^3 FLOP.
* Triad bandwidth: a[i] = b[i] + s*c[i] over arrays far larger than the caches, 12 bytes per
  element (no write-allocate counted), Numba-parallel.

Each is repeated and the best repetition is reported (``stat=max`` for rates): a peak is the
most the machine showed, and the other repetitions are kept as min/max.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
from numba import njit, prange

from ..results import Repeats

FMA_CHAIN = 8
# run-time arguments, not literals, so the compiler cannot fold the FMA chain
_X, _Y = np.float32(0.9999999), np.float32(1e-7)


@njit(fastmath=True, cache=True)
def _fma_chain(n, acc, x, y):  # pragma: no cover - JIT
    for _ in range(n):
        for j in range(acc.size):
            v = acc[j]
            v = v * x + y
            v = v * x + y
            v = v * x + y
            v = v * x + y
            v = v * x + y
            v = v * x + y
            v = v * x + y
            v = v * x + y
            acc[j] = v


#: seconds of FMA loop before the timed repetitions: on the dev VM the first ~1.5 s of two busy
#: threads ran at one core's rate (88 GFLOP/s, then 155-162), as if an idle vCPU had to be
#: scheduled back onto a core of its own
FMA_WARMUP_S = 2.0
#: elements per thread that the FMA loop works on: 1 KiB, L1-resident
FMA_ELEMENTS = 256
#: distance between two threads' arrays, in elements (16 KiB): with the arrays side by side
#: the 2-thread loop read 132-140 GFLOP/s here, 4 KiB or more apart 151-161 (same process)
FMA_STRIDE = 4096


@njit(parallel=True, fastmath=True, cache=True)
def _fma_threads(n, acc, x, y):  # pragma: no cover - JIT
    for t in prange(acc.shape[0]):
        _fma_chain(n, acc[t, :FMA_ELEMENTS], x, y)
    return acc.sum()


@njit(parallel=True, cache=True)
def _triad(a, b, c, s):  # pragma: no cover - JIT
    for i in prange(a.size):
        a[i] = b[i] + s * c[i]


def _repeat(fn: Callable[[], float], repeats: int) -> Repeats:
    fn()  # warm-up (and JIT)
    return Repeats([fn() for _ in range(repeats)])


def fma_peak(threads: int, repeats: int = 5, seconds: float = 0.3,
             warmup_s: float = FMA_WARMUP_S) -> tuple[Repeats, float]:
    """FP32 FLOP/s of the FMA micro-kernel on ``threads`` threads, after ``warmup_s`` seconds of
    untimed loops; returns (rates, FLOP per timed call of ~``seconds``)."""
    m = FMA_ELEMENTS
    acc = np.ones((threads, FMA_STRIDE), np.float32)
    _fma_threads(1, acc, _X, _Y)
    t0 = time.perf_counter()
    _fma_threads(2000, acc, _X, _Y)
    per_iter = (time.perf_counter() - t0) / 2000
    n = max(1000, int(seconds / max(per_iter, 1e-9)))
    flop = 2.0 * FMA_CHAIN * m * n * threads

    def run() -> float:
        t = time.perf_counter()
        _fma_threads(n, acc, _X, _Y)
        return flop / (time.perf_counter() - t)

    until = time.perf_counter() + warmup_s
    while time.perf_counter() < until:
        run()
    return _repeat(run, repeats), flop


def sgemm_peak(size: int = 2048, repeats: int = 5) -> tuple[Repeats, float]:
    """FP32 FLOP/s of numpy's BLAS sgemm on (size x size) matrices; returns (rates, FLOP)."""
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    c = np.empty_like(a)
    flop = 2.0 * size**3

    def run() -> float:
        t = time.perf_counter()
        np.dot(a, b, out=c)
        return flop / (time.perf_counter() - t)

    return _repeat(run, repeats), flop


def triad_bandwidth(n_elems: int = 1 << 25, repeats: int = 5) -> tuple[Repeats, float]:
    """Memory bandwidth in B/s of a Numba-parallel triad; returns (rates, bytes per call)."""
    a = np.zeros(n_elems, np.float32)
    b = np.ones(n_elems, np.float32)
    c = np.ones(n_elems, np.float32)
    nbytes = 12.0 * n_elems

    def run() -> float:
        t = time.perf_counter()
        _triad(a, b, c, np.float32(3.0))
        return nbytes / (time.perf_counter() - t)

    return _repeat(run, repeats), nbytes
