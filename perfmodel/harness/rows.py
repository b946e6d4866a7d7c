"""Turn the ranks' traces of a harness run into rows of the project's results schema.

Two kinds: rows worker 0 streams while it trains (:class:`Progress`: its iterations, held-out
evaluations and noise-scale terms, written at each evaluation so that a killed run keeps them)
and rows written at the end (:func:`run_rows`: throughput, phases, staleness, the target, the
hyper-parameters and every other rank's iterations).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..model.convergence import b_simple
from ..results import Repeats, make_row
from .config import HarnessConfig
from .train import Trace

PHASES = ("io_s", "compute_s", "straggle_s", "wait_s", "comm_s", "ps_s", "iteration_s")
PEAK_QUANTILE = 0.05


def common_fields(cfg: HarnessConfig, layout: dict) -> dict:
    return dict(subject=layout.get("subject", cfg.net), batch=cfg.batch,
                image_size=cfg.image_size, implementation="numba+mpi4py",
                strategy=cfg.strategy, groups=layout["groups"], param_servers=layout["servers"],
                straggler=str(cfg.straggler))


def iteration_rows(cfg: HarnessConfig, rank: int, iterations: list[dict], common: dict,
                   base: dict) -> list[dict]:
    """Loss and phase rows of every ``trace_every``-th iteration (and every warm-up one)."""
    rows = []
    for it in iterations:
        if it["step"] % cfg.trace_every and not it["warmup"]:
            continue
        kw = dict(common, rank=rank, step=it["step"], elapsed_s=it["elapsed_s"],
                  stat="single")
        rows.append(make_row(base, what="loss", metric="loss", value=it["loss"], unit="1",
                             **kw))
        for ph in PHASES:
            rows.append(make_row(base, what="iteration", phase=ph[:-2], metric="time",
                                 value=it[ph], unit="s", **kw))
    return rows


class Progress:
    """Worker 0's rows since the last call: iterations, evaluations, noise per interval."""

    def __init__(self, cfg: HarnessConfig, layout: dict, base: dict) -> None:
        self.cfg, self.base = cfg, base
        self.common = common_fields(cfg, layout)
        self.iterations = self.evals = self.noise = 0

    def rows(self, tr: Trace) -> list[dict]:
        cfg, base, common = self.cfg, self.base, self.common
        rows = iteration_rows(cfg, tr.rank, tr.iterations[self.iterations:], common, base)
        self.iterations = len(tr.iterations)
        for ev in tr.evals[self.evals:]:
            kw = dict(common, rank=tr.rank, step=ev["step"], elapsed_s=ev["elapsed_s"],
                      stat="single", repeats=cfg.eval_samples)
            for metric in ("val_loss", "val_accuracy", "val_loss_smoothed", "train_loss"):
                if not np.isnan(ev[metric]):
                    rows.append(make_row(base, what="eval", metric=metric, value=ev[metric],
                                         unit="1", **kw))
            rows.append(make_row(base, what="eval", metric="updates", value=ev["updates"],
                                 unit="updates", **kw))
            done = [n for n in tr.noise[self.noise:] if n["step"] <= ev["step"]]
            if done:
                g2 = [n["grad_sq"] for n in done]
                trace = [n["trace"] for n in done]
                nkw = dict(kw, repeats=len(done))
                del nkw["stat"]
                rows += [make_row(base, what="noise", metric="grad_sq", stat="mean",
                                  value=float(np.mean(g2)), unit="1", **nkw),
                         make_row(base, what="noise", metric="trace_sigma", stat="mean",
                                  value=float(np.mean(trace)), unit="1", **nkw),
                         make_row(base, what="noise", metric="b_simple", stat="fit",
                                  value=b_simple(g2, trace), unit="samples", **nkw)]
                self.noise += len(done)
        self.evals = len(tr.evals)
        return rows


def hyper_rows(cfg: HarnessConfig, layout: dict, base: dict, difficulty: float) -> list[dict]:
    """The run's optimization settings, one row each (what='hyper')."""
    common = common_fields(cfg, layout)
    vals = [("lr", cfg.lr, "1"), ("momentum", cfg.momentum, "1"),
            ("weight_decay", cfg.weight_decay, "1"), ("dropout", cfg.dropout, "1"),
            ("warmup_steps", cfg.warmup, "steps"), ("lr_warmup_steps", cfg.lr_warmup, "steps"),
            ("update_batch", cfg.batch * layout["per_group"], "samples"),
            ("global_batch", cfg.batch * layout["workers"], "samples"),
            ("eval_every", cfg.eval_every, "steps"), ("eval_samples", cfg.eval_samples,
                                                      "samples"),
            ("smooth", cfg.smooth, "1"), ("target_loss", cfg.target_loss, "1"),
            ("max_steps", cfg.step_cap, "steps"), ("difficulty", difficulty, "1"),
            ("seed", cfg.seed, "1")]
    return [make_row(base, what="hyper", metric=m, value=float(v), unit=u, stat="single",
                     **common) for m, v, u in vals]


def target_rows(cfg: HarnessConfig, lead: Trace, layout: dict, base: dict) -> list[dict]:
    """Updates, samples, steps and seconds to the target (stat 'reached' or 'censored').

    Seconds count training only (evaluation pauses excluded) from the first timed step, plus
    the untimed warm-up steps at the run's median step time (their measured time holds the JIT
    load); updates and samples count the warm-up's too."""
    t = lead.target
    if not t:
        return []
    timed = [it["iteration_s"] for it in lead.iterations if not it["warmup"]]
    warm_s = cfg.warmup * (float(np.median(timed)) if timed else 0.0)
    stat = "reached" if t["reached"] else "censored"
    common = dict(common_fields(cfg, layout), rank=lead.rank, stat=stat)
    batch = cfg.batch * layout["per_group"]
    return [make_row(base, what="target", metric="updates", value=float(t["updates"]),
                     unit="updates", **common),
            make_row(base, what="target", metric="samples", value=float(t["updates"] * batch),
                     unit="samples", **common),
            make_row(base, what="target", metric="steps", value=float(t["steps"]),
                     unit="steps", **common),
            make_row(base, what="target", metric="time", value=t["elapsed_s"] + warm_s,
                     unit="s", **common)]


def run_rows(cfg: HarnessConfig, traces: list[Trace], layout: dict, base: dict,
             train_flop_per_sample: float, streamed: int = 0, difficulty: float = 0.0
             ) -> list[dict]:
    """Whole-run rows (throughput sustained and peak, phase medians, staleness, update
    counts, target, hyper-parameters) and per-iteration rows (phases and loss per worker);
    worker 0's first ``streamed`` iterations were written already (:class:`Progress`)."""
    common = common_fields(cfg, layout)
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
    steps = min(len(its) for its in timed)
    for stat, r in (("sustained", rate), ("peak", peak)):
        rows.append(make_row(base, what="run", metric="sample_rate", value=r,
                             unit="samples/s", stat=stat, repeats=steps,
                             flop=flop * cfg.batch, **common))
        rows.append(make_row(base, what="run", metric="flop_rate", value=r * flop,
                             unit="FLOP/s", stat=stat, repeats=steps,
                             flop=flop * cfg.batch, **common))
    for ph in PHASES:
        vals = [it[ph] for its in timed for it in its]
        rep = Repeats(vals)
        rows.append(make_row(base, what="run", phase=ph[:-2], metric="time", value=rep.median,
                             unit="s", min=rep.min, max=rep.max, repeats=len(vals), **common))
    rows.append(make_row(base, what="run", phase="io_total", metric="time", stat="max",
                         value=max(t.io_wait_s for t in workers), unit="s", **common))
    rows += hyper_rows(cfg, layout, base, difficulty)
    rows += target_rows(cfg, workers[0], layout, base)
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
            for k, n in sorted(Counter(st).items()):
                rows.append(make_row(base, what="staleness", metric="fraction",
                                     phase=f"tau={k}", value=n / len(st), unit="1",
                                     stat="single", repeats=len(st), **common))
        rows.append(make_row(base, what="ps", metric="updates_pushed", stat="sum",
                             value=float(sum(t.pushed for t in workers)), unit="1", **common))
        rows.append(make_row(base, what="ps", metric="updates_applied", stat="sum",
                             value=float(sum(t.applied for t in servers)), unit="1", **common))
        rows.append(make_row(base, what="ps", metric="busy_time", stat="max",
                             value=max(t.busy_s for t in servers), unit="s", **common))
    for t in workers:
        its = t.iterations[streamed:] if t is workers[0] else t.iterations
        rows += iteration_rows(cfg, t.rank, its, common, base)
    return rows
