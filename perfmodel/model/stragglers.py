"""Stragglers: how long a synchronous step waits for the slowest of n nodes.

Per-node step time = compute * (1 + relative noise) + additive delay. Distributions:

* ``none``:        every node takes the same time.
* ``exponential``: additive delay X ~ Exp(mean ``scale``) seconds per step (OS jitter,
                   I/O hiccups). Max of n: mean = scale * H_n; quantile q: -scale ln(1-q^(1/n)).
* ``normal``:      relative noise, compute * (1 + cv Z). Max of n: Blom's approximation of the
                   expected maximum of n standard normals, Phi^-1((n-0.375)/(n+0.25)).
* ``lognormal``:   relative, compute * exp(sigma Z - sigma^2/2) (mean 1).
* ``detour``:      OS noise as noise measurements report it (FTQ, selfish detour, osnoise):
                   detours of ``scale`` seconds arriving at ``rate_hz`` per node (default
                   :func:`detour_default`, a published measurement), so a step of compute
                   t suffers N ~ Poisson(rate_hz t) of them. Max of n: E[max] =
                   sum_k (1 - F(k)^n), quantile q: the least k with F(k) >= q^(1/n) (exact
                   Poisson CDF; a normal approximation, Blom's, when rate_hz t > 200). The
                   wait grows with the compute time as well as with n.

:func:`wait_s` gives the mean wait (what a run sustains) and the wait of the best iterations
(the paper's "peak": the quantile ``PEAK_QUANTILE`` of the maximum). Across asynchronous groups
nobody waits for another group: a group waits only for its own members.
"""

from __future__ import annotations

import numpy as np

DISTRIBUTIONS = ("none", "exponential", "normal", "lognormal", "detour")
#: the best iterations of a run, as a quantile of the per-step maximum delay
PEAK_QUANTILE = 0.05

#: Published OS-noise measurement behind the ``detour`` default: the Linux kernel's osnoise
#: tracer, ``rtla osnoise top -P F:1 -c 0-3 -r 900000 -d 1M -q`` on a stock Fedora 34 machine
#: (example of rtla-osnoise-top(1), Documentation/tools/rtla/rtla-osnoise-top.rst in the kernel
#: tree, by D. Bristot de Oliveira). Per CPU: runtime, total noise (both us) and the counts of
#: interference by source (HW, NMI, IRQ, softirq, thread).
OSNOISE_EXAMPLE = (
    (53100000, 304896, (549, 0, 53111, 1590, 13)),
    (53100000, 338339, (399, 0, 53130, 1448, 31)),
    (53100000, 290842, (855, 0, 53110, 1406, 12)),
    (53100000, 204935, (290, 0, 53156, 1460, 12)),
)


def detour_default() -> tuple[float, float]:
    """(detours per second, mean detour in s) of :data:`OSNOISE_EXAMPLE`, pooled over its CPUs:
    every interference counted is a detour, and the noise time is their sum. One CPU's noise,
    taken as the node's; a node whose cores meet at barriers inside the step sees more, and a
    kernel tuned for HPC (tickless, core specialization) less. About 1.04 kHz x 5.2 us (0.54%)."""
    runtime_s = sum(r for r, _, _ in OSNOISE_EXAMPLE) * 1e-6
    noise_s = sum(n for _, n, _ in OSNOISE_EXAMPLE) * 1e-6
    count = sum(sum(c) for _, _, c in OSNOISE_EXAMPLE)
    return count / runtime_s, noise_s / count


def norm_ppf(u) -> np.ndarray:
    """Inverse standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9)."""
    u = np.clip(np.asarray(u, dtype=float), 1e-300, 1 - 1e-16)
    a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
         1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00]
    b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
         6.680131188771972e+01, -1.328068155288572e+01]
    c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
         -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00]
    d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
         3.754408661907416e+00]
    lo, hi = 0.02425, 1 - 0.02425
    out = np.empty_like(u)
    m = u < lo
    q = np.sqrt(-2 * np.log(u[m]))
    out[m] = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / \
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    m = (u >= lo) & (u <= hi)
    q = u[m] - 0.5
    r = q * q
    out[m] = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / \
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    m = u > hi
    q = np.sqrt(-2 * np.log1p(-u[m]))
    out[m] = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / \
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    return out


def _harmonic(n: np.ndarray) -> np.ndarray:
    n = np.asarray(n, dtype=float)
    exact = np.cumsum(1.0 / np.arange(1, 65))
    small = exact[np.clip(n.astype(int), 1, 64) - 1]
    big = np.log(n) + 0.5772156649015329 + 1 / (2 * n) - 1 / (12 * n**2)
    return np.where(n <= 64, small, big)


def _normal_max(n) -> tuple[np.ndarray, np.ndarray]:
    """(expected maximum, PEAK_QUANTILE quantile of the maximum) of n standard normals: Blom's
    approximation, Phi^-1((n - 0.375) / (n + 0.25)), and Phi^-1(q^(1/n)); 0 for n = 1."""
    n = np.asarray(n, float)
    return (np.where(n > 1, norm_ppf((n - 0.375) / (n + 0.25)), 0.0),
            np.where(n > 1, norm_ppf(PEAK_QUANTILE ** (1.0 / n)), 0.0))


def poisson_max(lam: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(E[max], PEAK_QUANTILE quantile of the max) of n independent Poisson(lam) counts."""
    lam, n = (np.array(a, dtype=float) for a in np.broadcast_arrays(  # own contiguous copies
        np.asarray(lam, float), np.asarray(n, float)))
    mean, best = np.empty(lam.shape), np.empty(lam.shape)
    big = lam > 200
    sd = np.sqrt(np.maximum(lam, 1e-300))
    e_n, q_n = _normal_max(n)
    mean[big] = lam[big] + sd[big] * e_n[big]
    best[big] = np.maximum(lam[big] + sd[big] * q_n[big], 0.0)
    idx = np.flatnonzero(~big.reshape(-1))
    # by expected count, in slices, so each sums only as far as its own largest count needs
    idx = idx[np.argsort(lam.reshape(-1)[idx], kind="stable")]
    for part in np.array_split(idx, max(1, min(32, len(idx) // 4096))):
        if len(part) == 0:
            continue
        lm, nn = lam.reshape(-1)[part], n.reshape(-1)[part]
        kmax = int(np.ceil(lm.max() + 12 * np.sqrt(lm.max()) + 40))
        pmf = np.exp(-lm)
        cdf = pmf.copy()
        target = PEAK_QUANTILE ** (1.0 / nn)
        m = np.zeros(lm.shape)
        b = np.full(lm.shape, float(kmax))
        open_ = np.ones(lm.shape, bool)
        for k in range(kmax + 1):
            if k:
                pmf = pmf * lm / k
                cdf = np.minimum(cdf + pmf, 1.0)
            tail = 1.0 - cdf ** nn  # P(max > k)
            m += tail
            hit = open_ & (cdf >= target)
            b[hit], open_[hit] = k, False
            if not open_.any() and tail.max() < 1e-12:
                break
        mean.reshape(-1)[part], best.reshape(-1)[part] = m, b
    return mean, best


def wait_s(distribution: str, n, compute_s, scale: float, absolute: bool = False,
           rate_hz: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(mean wait, wait of the best iterations) in seconds beyond ``compute_s`` for a step
    that waits for the slowest of ``n`` nodes, relative to one node's mean (which the measured
    node rate already contains: one node waits for nobody). ``absolute``: the delays are not
    in the node rate (injected ones), so the whole maximum counts (exponential and detour).
    ``scale``: mean delay in s (exponential), coefficient of variation (normal), sigma
    (lognormal) or one detour's duration in s (detour, arriving at ``rate_hz`` per node).

    The peak wait of a distribution with a discrete maximum (detour) can sit below one
    node's mean: a best iteration then waits less than the node rate assumes, and counts 0."""
    n = np.maximum(np.asarray(n, dtype=float), 1.0)
    compute_s = np.asarray(compute_s, dtype=float)
    if distribution == "detour":
        n = np.maximum(np.asarray(n, dtype=float), 1.0)
        lam = rate_hz * np.asarray(compute_s, dtype=float)
        n, lam = np.broadcast_arrays(n, lam)
        mean_n, best_n = poisson_max(lam, n)
        base = 0.0 if absolute else lam  # one node's mean is in the measured node rate
        return scale * (mean_n - base), scale * np.maximum(best_n - base, 0.0)
    if distribution == "none" or scale == 0:
        z = np.zeros(np.broadcast(n, compute_s).shape)
        return z, z
    if distribution == "exponential":
        # relative to one node's mean delay, which the measured node rate already contains
        base = 0.0 if absolute else scale
        mean = scale * _harmonic(n) - base
        best = np.maximum(-scale * np.log1p(-PEAK_QUANTILE ** (1.0 / n)) - base, 0.0)
        return mean + 0 * compute_s, best + 0 * compute_s
    e_n, q_n = _normal_max(n)
    if distribution == "normal":
        return compute_s * scale * e_n, compute_s * scale * np.maximum(q_n, 0)
    if distribution == "lognormal":
        f = lambda z: np.exp(scale * z - scale**2 / 2) - 1  # noqa: E731
        return compute_s * np.maximum(f(e_n), 0), compute_s * np.maximum(f(q_n), 0)
    raise ValueError(f"straggler distribution={distribution!r} is not known (allowed: "
                     f"{', '.join(DISTRIBUTIONS)})")
