"""``perfmodel reproduce``: the paper's figures beside the model's, with the bookkeeping of
what was fitted and what was held out.

Inputs are hardware specifications and single-node figures (the presets, every number with its
source). Fitted parameters (at most three) are tuned here, each on one named figure, and that
figure is then *not* counted as reproduced; every other figure is a held-out prediction.

Fitted:
1. ``cluster.straggler_scale`` (mean extra delay per node and step, exponential): on the HEP
   peak 11.73 PFLOP/s.
2. ``cluster.node_half_batch`` (how a KNL node's rate falls at small local batch): on the
   synchronous strong-scaling maximum of 320x at 512 nodes, taken to be the climate panel (b).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import scenario as SC
from .model.throughput import evaluate
from .predict import predict

STRONG_NODES = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048])
STRONG_GLOBAL_BATCH = 2048


@dataclass
class Figure:
    key: str
    what: str
    published: float
    unit: str
    status: str          # fitted / held out / derived from a fitted figure
    tolerance: float     # relative, for held-out figures
    predicted: float = float("nan")
    note: str = ""

    @property
    def error(self) -> float:
        """predicted / published - 1; NaN for a figure the model computes from assumed
        inputs (its interval is the result, not its distance to the published value)."""
        if self.status.startswith("from assumed"):
            return float("nan")
        return self.predicted / self.published - 1.0

    @property
    def passed(self) -> bool | None:
        if self.status != "held out":
            return None
        return abs(self.error) <= self.tolerance


def _bisect(f: Callable[[float], float], target: float, lo: float, hi: float,
            increasing: bool, iters: int = 60) -> float:
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if (f(mid) < target) == increasing:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _with(s: dict, **kv) -> dict:
    s = copy.deepcopy(s)
    for path, v in kv.items():
        sec, key = path.split("__")
        s[sec][key] = SC.Interval(v, v, v) if isinstance(v, float) else v
    return s


def strong_scaling(s: dict, nodes=STRONG_NODES, global_batch=STRONG_GLOBAL_BATCH
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Synchronous strong scaling at a fixed global batch: (nodes, speedup over one node
    running the whole batch)."""
    inp = SC.to_inputs(s)
    n = np.asarray(nodes, float)
    r = evaluate(inp, "sync", n, 1, 0, global_batch / n)
    one = evaluate(inp, "sync", 1, 1, 0, global_batch)
    return n, r["peak_throughput_flops"] / one["peak_throughput_flops"]


def weak_scaling(s: dict, strategy: str, nodes, groups: int = 8, servers: int = 14,
                 batch: int = 8) -> np.ndarray:
    """Efficiency (sustained, over ideal) of weak scaling at ``batch`` per node."""
    inp = SC.to_inputs(s)
    n = np.asarray(nodes, float)
    r = evaluate(inp, strategy, n, np.where(strategy == "sync", 1, groups),
                 0 if strategy == "sync" else servers, batch)
    return r["throughput_flops"] / (n * inp.rate(batch))


def reproduce() -> tuple[list[Figure], dict]:
    hep, _ = SC.load("cori-knl-hep")
    clim, _ = SC.load("cori-knl-climate")
    fitted = {}

    # 1. straggler scale on the HEP peak
    def hep_peak(scale: float) -> float:
        return predict(_with(hep, cluster__straggler_scale=scale))["peak_throughput_flops"]

    scale = _bisect(hep_peak, 11.73e15, 0.0, 0.1, increasing=False)
    fitted["cluster.straggler_scale"] = (scale, "s", "HEP peak 11.73 PFLOP/s")
    hep = _with(hep, cluster__straggler_scale=scale)
    clim = _with(clim, cluster__straggler_scale=scale)

    # 2. the KNL rate's fall at small batch on the climate strong-scaling maximum 320x at 512
    def clim_320(half: float) -> float:
        _, sp = strong_scaling(_with(clim, cluster__node_half_batch=half), [512])
        return float(sp[0])

    half = _bisect(clim_320, 320.0, 0.0, 1000.0, increasing=False)
    fitted["cluster.node_half_batch"] = (half, "samples",
                                         "climate sync strong scaling: 320x at 512 nodes")
    hep_s = _with(hep, cluster__node_half_batch=half)
    clim_s = _with(clim, cluster__node_half_batch=half)

    ph, pc = predict(hep), predict(clim)
    figs = [
        Figure("hep_peak", "HEP peak throughput", 11.73, "PFLOP/s", "fitted", 0.05,
               ph["peak_throughput_flops"] / 1e15),
        Figure("hep_speedup", "HEP speedup over one node (peak / 1.90 TF)", 6173, "x",
               "derived from a fitted figure", 0.10, ph["speedup"]),
        Figure("hep_sustained", "HEP sustained throughput", 11.41, "PFLOP/s", "held out", 0.05,
               ph["throughput_flops"] / 1e15),
        Figure("climate_peak", "climate peak throughput", 15.07, "PFLOP/s", "held out", 0.05,
               pc["peak_throughput_flops"] / 1e15),
        Figure("climate_speedup", "climate speedup over one node", 7205, "x", "held out", 0.10,
               pc["speedup"]),
        Figure("climate_sustained", "climate sustained throughput", 13.27, "PFLOP/s",
               "held out", 0.05, pc["throughput_flops"] / 1e15,
               "the paper's sustained rate includes I/O, which the model leaves out"),
    ]
    n, sp_c = strong_scaling(clim_s)
    i512 = list(n).index(512)
    figs.append(Figure("climate_strong_512", "climate sync strong scaling at 512 nodes "
                       "(batch 2048)", 320, "x", "fitted", 0.10, float(sp_c[i512])))
    figs.append(Figure("climate_strong_stop", "climate sync strong scaling: gain from 512 to "
                       "1024 nodes ('stops scaling beyond')", 1.0, "x", "held out", 0.10,
                       float(sp_c[i512 + 1] / sp_c[i512]),
                       "the second half of the statement whose first half (320x) is fitted"))
    n, sp_h = strong_scaling(hep_s)
    knee = _knee(n, sp_h)
    figs.append(Figure("hep_strong_knee", "HEP sync strong scaling stops scaling past "
                       "(nodes)", 256, "nodes", "held out", 0.0, knee,
                       "knee: the last node count whose doubling still gains >= 10%"))
    big = np.array([1024, 2048, 4096, 8192])
    eff_sync = weak_scaling(clim, "sync", big)
    eff_hyb = weak_scaling(clim, "hybrid", big)
    figs.append(Figure("climate_weak_eff", "climate weak scaling efficiency at 8192 nodes, "
                       "sync ('almost ideal')", 1.0, "", "held out", 0.10, float(eff_sync[-1])))
    figs.append(Figure("hybrid_over_sync_weak", "hybrid over sync weak-scaling throughput at "
                       "8192 nodes (> 1: 'slightly better')", 1.0, "", "held out", 0.10,
                       float(eff_hyb[-1] / eff_sync[-1]),
                       "pass needs > 1 as well as within 10%"))
    ttt = time_to_target(hep_s)
    figs.append(Figure("hep_time_to_target", "best hybrid reaches loss 0.05 sooner than best "
                       "sync", 1.66, "x", "from assumed intervals", 0.0, ttt["ratio"],
                       f"over the preset's convergence assumption intervals (b_noise, gamma, "
                       f"kappa; {ttt['corners']} corners): [{ttt['ratio_low']:.2f}, "
                       f"{ttt['ratio_high']:.2f}]x, 1.66x "
                       f"{'inside' if ttt['ratio_low'] <= 1.66 <= ttt['ratio_high'] else 'outside'}"
                       f"; best sync {ttt['best_sync_workers']} workers, best hybrid "
                       f"{ttt['best_hybrid_groups']} groups (nominal)"))
    extra = {"fitted": fitted, "strong_nodes": n.tolist(), "strong_speedup_hep": sp_h.tolist(),
             "strong_speedup_climate": sp_c.tolist(), "weak_nodes": big.tolist(),
             "weak_eff_sync": eff_sync.tolist(), "weak_eff_hybrid": eff_hyb.tolist(),
             "time_to_target": ttt}
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
    if fig.key == "hybrid_over_sync_weak":
        return fig.predicted > 1.0 and abs(fig.error) <= fig.tolerance
    if fig.key == "hep_strong_knee":
        return fig.predicted == fig.published
    return fig.passed
