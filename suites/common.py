"""Shared, seeded fixtures of the asv suites."""

from __future__ import annotations

import numpy as np

import kernels

SEED = 0
#: HEP as in the paper's single-node figure: full size, batch 8
HEP_BATCH = 8


def hep_batch(image_size: int = 224, batch: int = HEP_BATCH):
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((batch, 3, image_size, image_size), dtype=np.float32)
    y = rng.integers(0, 2, batch)
    return x, y


def best_of(fn, repeats: int = 3) -> float:
    """Smallest wall time in seconds of ``repeats`` calls (after one warm-up call)."""
    import time

    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def threads() -> int:
    return kernels.max_threads()
