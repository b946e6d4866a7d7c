"""Turn the ranks' traces of a harness run into rows of the project's results schema."""

from __future__ import annotations

import numpy as np

from ..results import Repeats, make_row
from .config import HarnessConfig
from .train import Trace

PHASES = ("io_s", "compute_s", "straggle_s", "wait_s", "comm_s", "ps_s", "iteration_s")
PEAK_QUANTILE = 0.05


def run_rows(cfg: HarnessConfig, traces: list[Trace], layout: dict, base: dict,
             train_flop_per_sample: float) -> list[dict]:
    """Whole-run rows (throughput sustained and peak, phase medians, staleness, update
    counts) and per-iteration rows (phases and loss per worker)."""
    common = dict(subject=layout.get("subject", cfg.net), batch=cfg.batch, image_size=cfg.image_size,
                  implementation="numba+mpi4py", strategy=cfg.strategy,
                  groups=layout["groups"], param_servers=layout["servers"],
                  straggler=str(cfg.straggler))
    workers = [t for t in traces if t.role == "worker"]
    servers = [t for t in traces if t.role == "server"]
    rows = []
    wall = max(t.wall_s for t in workers)
    timed = [[it for it in t.iterations if not it["warmup"]] for t in workers]
    samples = sum(len(it) for it in timed) * cfg.batch
    rate = samples / wall if wall > 0 else float("nan")
    peak = sum(cfg.batch / np.quantile([i["iteration_s"] for i in its], PEAK_QUANTILE)
               for its in timed if its)
    flop = train_flop_per_sample
    for stat, r in (("sustained", rate), ("peak", peak)):
        rows.append(make_row(base, what="run", metric="sample_rate", value=r,
                             unit="samples/s", stat=stat, repeats=cfg.steps,
                             flop=flop * cfg.batch, **common))
        rows.append(make_row(base, what="run", metric="flop_rate", value=r * flop,
                             unit="FLOP/s", stat=stat, repeats=cfg.steps,
                             flop=flop * cfg.batch, **common))
    for ph in PHASES:
        vals = [it[ph] for its in timed for it in its]
        rep = Repeats(vals)
        rows.append(make_row(base, what="run", phase=ph[:-2], metric="time", value=rep.median,
                             unit="s", min=rep.min, max=rep.max, repeats=len(vals), **common))
    rows.append(make_row(base, what="run", phase="io_total", metric="time", stat="max",
                         value=max(t.io_wait_s for t in workers), unit="s", **common))
    if servers:
        st = [s for t in servers for s in t.staleness]
        if st:
            rep = Repeats([float(v) for v in st])
            rows.append(make_row(base, what="staleness", metric="updates", value=rep.median,
                                 unit="updates", min=rep.min, max=rep.max, repeats=len(st),
                                 **common))
            rows.append(make_row(base, what="staleness", metric="updates", stat="mean",
                                 value=float(np.mean(st)), unit="updates", repeats=len(st),
                                 **common))
        rows.append(make_row(base, what="ps", metric="updates_pushed", stat="sum",
                             value=float(sum(t.pushed for t in workers)), unit="1", **common))
        rows.append(make_row(base, what="ps", metric="updates_applied", stat="sum",
                             value=float(sum(t.applied for t in servers)), unit="1", **common))
        rows.append(make_row(base, what="ps", metric="busy_time", stat="max",
                             value=max(t.busy_s for t in servers), unit="s", **common))
    for t in workers:
        for it in t.iterations:
            kw = dict(common, rank=t.rank, step=it["step"], elapsed_s=it["elapsed_s"],
                      stat="single")
            rows.append(make_row(base, what="loss", metric="loss", value=it["loss"], unit="1",
                                 **kw))
            for ph in PHASES:
                rows.append(make_row(base, what="iteration", phase=ph[:-2], metric="time",
                                     value=it[ph], unit="s", **kw))
    return rows
