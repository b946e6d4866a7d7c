"""Statistics shared by the judges, the planner and the report: rank agreement and medians.

Pure numpy; nothing of the package below or above it."""

from __future__ import annotations

import numpy as np


def kendall_tau(a, b) -> float:
    """Kendall's tau-a of two rankings (ties count as neither concordant nor discordant)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    n = len(a)
    if n < 2:
        return float("nan")
    s = 0.0
    for i in range(n):
        s += np.sum(np.sign(a[i] - a[i + 1:]) * np.sign(b[i] - b[i + 1:]))
    return float(s / (n * (n - 1) / 2))


def median_abs(errors) -> float:
    """Median of |error| (NaN for no errors)."""
    e = np.abs(np.asarray(errors, float))
    return float(np.median(e)) if e.size else float("nan")
