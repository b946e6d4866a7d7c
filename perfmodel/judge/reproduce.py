"""``perfmodel reproduce``: the paper's figures beside the model's, each as an interval, with
the bookkeeping of what was fitted, what was held out and what cannot be scored.

Inputs are hardware specifications and single-node figures (the presets, every number with its
source). Uncertain inputs are intervals in the presets (MPI latency, the share of a KNL's cores
left to training next to MLSL's endpoint servers, ...); every figure is computed at the
nominal inputs and at every corner of those intervals, and reported as nominal and [low, high].

A held-out figure is **reproduced** when (1) the published value lies inside the model's
interval, (2) the interval is no wider than +-15% of the nominal for throughputs or +-20% for
speedups, ratios and knees, and (3) the nominal value meets the figure's tolerance.

Fitted (at most three; each figure it was fitted on does not count):

1. ``cluster.straggler_scale`` (mean extra delay per node and step, exponential): on the HEP
   peak 11.73 PFLOP/s.

No longer fitted: how a KNL's rate falls at small local batch (it was ``device_half_batch``,
fitted on the 320x of strong scaling). It is now Intel Caffe's measured batch curve on one
Xeon Phi 7250 (``cluster.device_rate_shape`` in the Cori presets, reference "Further inputs"),
so the 320x is a held-out figure. The curve is read two ways, the whole timed loop and its
conv and FC layers alone, and every figure takes both (a corner of its interval).

Not scored: statements whose node range is not public (climate weak scaling "almost ideal",
hybrid "slightly better" than sync) are shown as curves; figures blocked by an input that is not
public name that input. Speedups over one node are the peak divided by the node's stated rate:
the same figure as the peak, shown, not counted twice.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..model import scenario as SC
from ..model.stragglers import detour_default
from ..model.throughput import evaluate

STRONG_NODES = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048])
STRONG_GLOBAL_BATCH = 2048
#: interval half-widths a reproduced figure may have, relative to its nominal value
WIDTH = {"throughput": 0.15, "ratio": 0.20}
SCORED = "held out"


@dataclass
class Figure:
    key: str
    what: str
    published: float
    unit: str
    status: str          # fitted / held out / derived / not scored: ... / blocked: ...
    tolerance: float     # relative, for held-out figures
    predicted: float = float("nan")
    note: str = ""
    low: float = float("nan")
    high: float = float("nan")
    kind: str = "ratio"  # throughput or ratio (speedups, ratios, knees): the width allowed

    @property
    def error(self) -> float:
        """predicted / published - 1; NaN where the model has no single value to compare."""
        if self.status.startswith("blocked") or not math.isfinite(self.predicted):
            return float("nan")
        return self.predicted / self.published - 1.0

    @property
    def inside(self) -> bool | None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return None
        eps = 1e-9 * abs(self.published)
        return self.low - eps <= self.published <= self.high + eps

    @property
    def half_width(self) -> float:
        """The interval's largest distance from the nominal, relative to it."""
        if not math.isfinite(self.low) or not self.predicted:
            return float("nan")
        return max(self.high / self.predicted - 1.0, 1.0 - self.low / self.predicted)

    @property
    def narrow(self) -> bool | None:
        hw = self.half_width
        return None if not math.isfinite(hw) else hw <= WIDTH[self.kind] + 1e-12

    @property
    def within_tolerance(self) -> bool | None:
        if not math.isfinite(self.error):
            return None
        return abs(self.error) <= self.tolerance + 1e-12

    @property
    def passed(self) -> bool | None:
        """Reproduced (held-out figures only): inside, narrow enough, nominal within tolerance."""
        if self.status != SCORED:
            return None
        return bool(self.inside and self.narrow and self.within_tolerance)


def _bisect(f: Callable[[float], float], target: float, lo: float, hi: float,
            increasing: bool, iters: int = 60) -> float:
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if (f(mid) < target) == increasing:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def with_values(s: dict, **kv) -> dict:
    s = copy.deepcopy(s)
    for path, v in kv.items():
        sec, key = path.split("__")
        s[sec][key] = SC.Interval(v, v, v) if isinstance(v, float) else v
    return s


def over_corners(s: dict, f: Callable[[dict, dict], float]) -> tuple[float, float, float]:
    """(nominal, low, high) of ``f(s, values)`` over the nominal inputs and every corner of
    the scenario's uncertain inputs."""
    xs = [float(f(s, v)) for v in SC.corners(s)]
    return xs[0], min(xs), max(xs)


def strong_scaling(s: dict, nodes=STRONG_NODES, global_batch=STRONG_GLOBAL_BATCH,
                   values: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Synchronous strong scaling at a fixed global batch: (nodes, peak speedup over one node's
    rate at its reference batch, the paper's convention for "speedup over single node
    performance", as in 6173x = 11.73 PF / 1.90 TF)."""
    inp = SC.to_inputs(s, values)
    n = np.asarray(nodes, float)
    r = evaluate(inp, "sync", n, 1, 0, global_batch / n)
    return n, r["speedup"]


def weak_scaling(s: dict, strategy: str, nodes, groups: int = 8, servers: int = 14,
                 batch: int = 8, values: dict | None = None) -> np.ndarray:
    """Efficiency (sustained, over ideal) of weak scaling at ``batch`` per node."""
    inp = SC.to_inputs(s, values)
    n = np.asarray(nodes, float)
    r = evaluate(inp, strategy, n, np.where(strategy == "sync", 1, groups),
                 0 if strategy == "sync" else servers, batch)
    return r["throughput_flops"] / (n * inp.rate(batch))


def _at(s: dict, values: dict) -> dict:
    cfg = SC.configuration(s)
    r = evaluate(SC.to_inputs(s, values), **cfg)
    return {k: float(np.asarray(v).reshape(-1)[0]) for k, v in r.items()}


def reproduce(overrides: list[str] | None = None) -> tuple[list[Figure], dict]:
    """The figures and the bookkeeping; ``overrides`` (``section.key=value``) apply to both
    Cori presets before the fit, which then runs under them."""
    hep, _ = SC.load("cori-knl-hep", overrides)
    clim, _ = SC.load("cori-knl-climate", overrides)
    fitted = {}

    # the one fitted parameter: the straggler scale on the HEP peak
    def hep_peak(scale: float) -> float:  # the nominal inputs only: no corner needed here
        s = with_values(hep, cluster__straggler_scale=scale)
        return _at(s, SC.corners(s)[0])["peak_throughput_flops"]

    scale = _bisect(hep_peak, 11.73e15, 0.0, 0.1, increasing=False)
    fitted["cluster.straggler_scale"] = (scale, "s", "HEP peak 11.73 PFLOP/s")
    hep = with_values(hep, cluster__straggler_scale=scale)
    clim = with_values(clim, cluster__straggler_scale=scale)

    # what published OS noise would make the same run wait, against what the fit absorbs
    rate_hz, detour_s = detour_default()
    noisy = with_values(hep, cluster__straggler="detour", cluster__straggler_rate_hz=rate_hz,
                  cluster__straggler_scale=detour_s)
    wait_fit_s = _at(hep, SC.corners(hep)[0])["straggler_s"]
    wait_os_s = _at(noisy, SC.corners(noisy)[0])["straggler_s"]

    def fig(key, what, pub, unit, status, tol, s, f, kind, scale_=1.0, note=""):
        nom, lo, hi = (x * scale_ for x in over_corners(s, f))
        return Figure(key, what, pub, unit, status, tol, nom, note, lo, hi, kind)

    peak = lambda s, v: _at(s, v)["peak_throughput_flops"]  # noqa: E731
    sust = lambda s, v: _at(s, v)["throughput_flops"]  # noqa: E731
    speed = lambda s, v: _at(s, v)["speedup"]  # noqa: E731
    figs = [
        fig("hep_peak", "HEP peak throughput", 11.73, "PFLOP/s", "fitted", 0.05, hep, peak,
            "throughput", 1e-15),
        fig("hep_speedup", "HEP speedup over one node (peak / 1.90 TF)", 6173, "x",
            "derived: the HEP peak / 1.90 TF", 0.10, hep, speed, "ratio"),
        fig("hep_sustained", "HEP sustained throughput", 11.41, "PFLOP/s", SCORED, 0.05, hep,
            sust, "throughput", 1e-15,
            "input not public: the per-node noise distribution on Cori, whose shape sets the "
            "gap between the best and the mean iterations (exponential assumed); published OS "
            f"noise (osnoise, the detour default) makes a step wait {wait_os_s * 1e3:.2f} ms, "
            f"the fitted delay {wait_fit_s * 1e3:.0f} ms"),
        fig("climate_peak", "climate peak throughput", 15.07, "PFLOP/s", SCORED, 0.05, clim,
            peak, "throughput", 1e-15),
        fig("climate_speedup", "climate speedup over one node (peak / 2.09 TF)", 7205, "x",
            "derived: the climate peak / 2.09 TF", 0.10, clim, speed, "ratio"),
        fig("climate_sustained", "climate sustained throughput", 13.27, "PFLOP/s", SCORED, 0.05,
            clim, sust, "throughput", 1e-15,
            "the model's sustained and peak differ by the straggler wait alone; the paper's "
            "gap (12%) is 6x HEP's (2.7%): the mechanism (I/O, checkpoints, ...) is not "
            "public"),
    ]
    strong = lambda s, n: (lambda _s, v: float(np.asarray(  # noqa: E731
        strong_scaling(_s, [n], values=v)[1])[0]))
    figs.append(fig("climate_strong_512", "climate sync strong scaling at 512 nodes "
                    "(batch 2048)", 320, "x", SCORED, 0.10, clim, strong(clim, 512), "ratio",
                    note="assumes panel (b) is climate; speedup over one node's batch-8 rate; "
                         "input not public: the paper's build's rate at batch 4 (the Intel "
                         "Caffe prototype's curve stands in, read two ways: 0.77 or 0.73 of "
                         "the batch-8 rate)"))
    stop = lambda s, v: float(np.divide(*strong_scaling(s, [1024, 512], values=v)[1]))  # noqa
    figs.append(fig("climate_strong_stop", "climate sync strong scaling: gain from 512 to "
                    "1024 nodes ('stops scaling beyond')", 1.0, "x", SCORED, 0.10, clim, stop,
                    "ratio", note="input not public: the strong-scaling data points; no "
                                  "sourced mechanism here stops scaling at 512"))
    knee = lambda s, v: _knee(*strong_scaling(s, values=v))  # noqa: E731
    figs.append(fig("hep_strong_knee", "HEP sync strong scaling stops scaling past (nodes)",
                    256, "nodes", SCORED, 0.0, hep, knee, "ratio",
                    note="knee: the last node count whose doubling still gains >= 10%; "
                         "assumes panel (a) is HEP; input not public: the data points (a "
                         "knee at 256 needs ~3x the step's compute in fixed costs per step)"))
    n, sp_h = strong_scaling(hep)
    _, sp_c = strong_scaling(clim)
    big = np.array([64, 256, 1024, 2048, 4096, 8192])
    eff_sync = weak_scaling(clim, "sync", big)
    eff_hyb = weak_scaling(clim, "hybrid", big)
    figs.append(Figure("climate_weak_eff", "climate weak scaling efficiency at 8192 nodes, "
                       "sync ('almost ideal')", 1.0, "", "not scored: node range not public",
                       0.10, float(eff_sync[-1]),
                       "a statement without its node range: the curve is shown, not scored"))
    figs.append(Figure("hybrid_over_sync_weak", "hybrid over sync weak-scaling throughput at "
                       "8192 nodes (> 1: 'slightly better')", 1.0, "",
                       "not scored: node range not public", 0.10,
                       float(eff_hyb[-1] / eff_sync[-1]),
                       "a statement without its node range: the curve is shown, not scored"))
    ttt = time_to_target(hep)
    figs.append(Figure("hep_time_to_target", "best hybrid reaches loss 0.05 sooner than best "
                       "sync", 1.66, "x", "blocked: convergence inputs not public", 0.0,
                       ttt["ratio"],
                       f"the paper's loss curves, batches and hyper-parameters are not public; "
                       f"over the preset's assumption intervals (b_noise, gamma, kappa; "
                       f"{ttt['corners']} corners): [{ttt['ratio_low']:.2f}, "
                       f"{ttt['ratio_high']:.2f}]x, 1.66x "
                       f"{'inside' if ttt['ratio_low'] <= 1.66 <= ttt['ratio_high'] else 'outside'}"
                       f"; best sync {ttt['best_sync_workers']} workers, best hybrid "
                       f"{ttt['best_hybrid_groups']} groups (nominal)",
                       ttt["ratio_low"], ttt["ratio_high"]))
    uncertain = sorted({f"{sec}.{key}".replace("node_rate_reading",
                                               "device_rate_shape (both readings)")
                        for sec, key in SC.UNCERTAIN for sc in (hep, clim)
                        if isinstance(sc[sec][key], SC.Interval) and sc[sec][key].uncertain
                        and sec != "convergence"})
    extra = {"fitted": fitted, "uncertain_inputs": uncertain, "strong_nodes": n.tolist(),
             "strong_speedup_hep": sp_h.tolist(), "strong_speedup_climate": sp_c.tolist(),
             "weak_nodes": big.tolist(), "weak_eff_sync": eff_sync.tolist(),
             "weak_eff_hybrid": eff_hyb.tolist(), "time_to_target": ttt}
    return figs, extra


#: group counts of the time-to-target curve at the paper's scale (1 = sync on every node)
TTT_GROUPS = (1, 2, 3, 4, 6, 9, 12, 16, 24, 32, 48, 64)


def _ttt_curve(s: dict, values: dict | None, groups) -> tuple[np.ndarray, np.ndarray, int]:
    """Time to target (s) at each group count on the preset's nodes, the local batch held
    (sync for G = 1 on every node; hybrid with the preset's servers otherwise), and the best
    sync time over worker counts up to the whole machine with the workers that give it."""
    inp = SC.to_inputs(s, values)
    cfg = SC.configuration(s)
    total = cfg["workers"] + cfg["servers"]
    g = np.asarray(groups, float)
    w = np.where(g == 1, total, np.floor((total - cfg["servers"]) / g) * g)
    code = np.where(g == 1, 0, 2)
    t = evaluate(inp, code, w, g, np.where(g == 1, 0, cfg["servers"]),
                 cfg["batch"])["time_to_target_s"]
    ws = np.unique(np.round(np.geomspace(1, total, 200)))
    ts = evaluate(inp, 0, ws, 1, 0, cfg["batch"])["time_to_target_s"]
    i = int(np.nanargmin(ts))
    return t, np.array([ts[i]]), int(ws[i])


def time_to_target(s: dict, groups=TTT_GROUPS) -> dict:
    """Best sync over best hybrid time to the preset's target loss, nominal and its range over
    every corner of the preset's uncertain inputs (the convergence assumptions among them),
    and the curve of time to target against groups at the preset's scale.

    Sync picks its worker count (past the critical batch, more workers buy few updates); hybrid
    uses every node and picks its group count (more groups: smaller update batches and more
    updates per step time, but staleness G - 1 costs updates, kappa, and mistuned momentum,
    gamma). S_min scales both alike and cancels in the ratio."""
    corners = SC.corners(s)
    curves, ratios, best = [], [], None
    for k, vals in enumerate(corners):
        t, sync_best, ws = _ttt_curve(s, vals, groups)
        hyb = t[1:]
        j = int(np.nanargmin(hyb))
        ratios.append(float(sync_best[0] / hyb[j]))
        curves.append(t)
        if k == 0:
            best = dict(best_sync_workers=ws, best_sync_s=float(sync_best[0]),
                        best_hybrid_groups=int(groups[1:][j]), best_hybrid_s=float(hyb[j]))
    c = np.array(curves)
    return dict(ratio=ratios[0], ratio_low=float(min(ratios)), ratio_high=float(max(ratios)),
                corners=len(corners) - 1, groups=list(groups), time_s=c[0].tolist(),
                time_low_s=np.nanmin(c, axis=0).tolist(),
                time_high_s=np.nanmax(c, axis=0).tolist(), **best)


def _knee(n: np.ndarray, sp: np.ndarray) -> float:
    gains = sp[1:] / sp[:-1]
    for i, g in enumerate(gains):
        if g < 1.10:
            return float(n[i])
    return float(n[-1])


def passed(fig: Figure) -> bool | None:
    """Reproduced (True/False) for a scored held-out figure; None for any other."""
    return fig.passed


def scored(figs: list[Figure]) -> list[Figure]:
    return [f for f in figs if f.status == SCORED]
