"""``perfmodel validate``: the model's predictions against harness measurements.

Nothing here is fitted to the harness runs. The model's inputs are other measurements:

* the node's rate vs local batch from ``perfmodel node`` (same net, image size and threads
  per rank as the run; samples/s, so that t_compute is exactly the measured step time, less
  the SGD update's measured time when a parameter server applies the update), measured with
  as many ranks of the node busy as the run has workers (``perfmodel node --busy-ranks``):
  two ranks on the node slow each other's compute; a run whose busy profile is missing is
  predicted from the profile alone and says so (``profile_ranks``);
* alpha and bandwidth fitted on the ping-pong of ``perfmodel.harness.micro`` (fitted on the
  ping-pong, not on the runs), and the triad bandwidth for the servers' updates;
* the injected straggler delay, which the run states (exponential or constant).

Accuracy is the relative error of samples/s, predicted over measured, per run: sustained (the
run's mean rate, predicted from the node's mean step) and peak (the best 5% of iterations,
predicted from the node's fastest step and the best-case straggler wait; on a shared, noisy
machine the best case is the reproducible one). Functional runs (more ranks x threads than
cores) are shown apart and left out of the medians.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

import kernels

from ..model.throughput import Inputs, NodeRate, evaluate
from ..results import make_row
from ..ui import UserError


@dataclass
class Link:
    alpha_s: float
    bandwidth_Bps: float


def _net(subject: str, image_size: int):
    if subject.startswith("hep"):  # hep[-fFILTERS][-dDROPOUT], as kernels.hep_net names it
        kw: dict = {}
        for part in subject.split("-")[1:]:
            if part[0] == "f":
                kw["filters"] = int(part[1:])
            elif part[0] == "d":
                kw["dropout"] = float(part[1:])
        return kernels.hep_net(image_size=image_size, **kw)
    return kernels.NETS[subject](image_size=image_size)


def node_rates(node: pd.DataFrame, best: bool = False, without_update: bool = False
               ) -> dict[tuple[str, int, int, int], NodeRate]:
    """(subject, image_size, threads, busy ranks) -> samples/s vs batch from the *mean* step time (the
    harness's sustained rate is a mean over its run too) or, with ``best``, the fastest step
    (for peak rates); ``without_update``: less the SGD update's time, for workers whose
    update a parameter server applies. FLOP/s are filled in later."""
    steps = node[(node.what == "step") & (node.metric == "time") & (node.stat == "mean")
                 & (node.implementation == "numba")]
    upd = node[(node.what == "layer") & (node.layer == "update") & (node.metric == "time")
               & (node.implementation == "numba")]
    out = {}
    for (subj, size, thr, ranks), g in steps.groupby(["subject", "image_size", "threads",
                                                      "ranks"]):
        g = g.groupby("batch")["min" if best else "value"].median()
        if without_update:
            u = upd[(upd.subject == subj) & (upd.image_size == size) & (upd.threads == thr)
                    & (upd.ranks == ranks)]
            u = u.groupby("batch")["value"].median().reindex(g.index).fillna(0.0)
            g = g - u
        g = g.index.to_series() / g  # samples/s
        out[(subj, int(size), int(thr), int(ranks))] = NodeRate(
            ref_flops=float(g.iloc[-1]), ref_batch=float(g.index[-1]),
            batches=g.index.to_numpy(float), flops=g.to_numpy(float))
    return out


def link_from(micro: pd.DataFrame) -> Link:
    h = micro[micro.what == "hockney"]
    if h.empty:
        raise UserError("no ping-pong fit in the results: run perfmodel scale --micro (or "
                        "perfmodel.harness.micro)")
    lat = h[h.metric == "latency"]["value"].median()
    bw = h[h.metric == "bandwidth"]["value"].median()
    return Link(float(lat), float(bw))


def _straggler(spec: str) -> tuple[str, float, float] | None:
    """(model distribution, scale, mean delay) of an injected straggler spec."""
    if not spec:
        return "none", 0.0, 0.0
    kind, *vals = spec.split(":")
    v = [float(x) for x in vals]
    if kind == "exponential":  # the whole maximum of the delays: absolute, no overhead
        return "exponential", v[0], 0.0
    if kind == "constant":
        return "none", 0.0, v[0]
    return None


def compare(runs: pd.DataFrame, node: pd.DataFrame, link: Link) -> pd.DataFrame:
    """One row per harness run: configuration, measured and predicted samples/s, error."""
    rates = profile_rates(node)
    apply_bw = apply_bandwidth(node)
    keys = ["strategy", "ranks", "groups", "param_servers", "threads", "batch", "subject",
            "image_size", "straggler", "functional"]
    rate_rows = runs[(runs.what == "run") & (runs.metric == "sample_rate")]
    # repeated runs of one configuration (rounds spread over time) count once, at the median
    agg = rate_rows.groupby(keys + ["stat"], as_index=False).agg(
        value=("value", "median"), run_id=("run_id", "first"), repeats=("run_id", "count"))
    meas = agg[agg.stat == "sustained"]
    peaks = agg[agg.stat == "peak"].set_index("run_id")["value"]
    rows = []
    for _, r in meas.iterrows():
        pred, pred_peak, note = predict_run(r, rates, link, apply_bw)
        rows.append(dict(run_id=r.run_id, repeats=int(r.repeats), strategy=r.strategy,
                         profile_ranks=profile_ranks(r, rates),
                         ranks=int(r.ranks),
                         workers=int(r.ranks) - int(r.param_servers), groups=int(r.groups),
                         param_servers=int(r.param_servers), threads=int(r.threads),
                         batch=int(r.batch), subject=r.subject, image_size=int(r.image_size),
                         straggler=r.straggler, functional=bool(r.functional),
                         measured=float(r.value), predicted=pred,
                         error=pred / float(r.value) - 1 if not note else float("nan"),
                         measured_peak=float(peaks.get(r.run_id, float("nan"))),
                         predicted_peak=pred_peak,
                         peak_error=(pred_peak / float(peaks.get(r.run_id, float("nan"))) - 1
                                     if not note else float("nan")),
                         note=note))
    return pd.DataFrame(rows)


def profile_ranks(r, rates: dict) -> int:
    """Which profile predicts run ``r``: the one measured with as many ranks busy as the run
    has workers computing at once, else the one measured alone (1)."""
    workers = int(r.ranks) - int(r.param_servers)
    key = (r.subject, int(r.image_size), int(r.threads), workers)
    return workers if workers > 1 and key in rates[False][0] else 1


def predict_run(r, rates: dict, link: Link, apply_bw: float) -> tuple[float, float, str]:
    """(sustained, peak samples/s, note) the model predicts for one harness run ``r`` (a row
    with strategy, ranks, groups, param_servers, threads, batch, subject, image_size,
    straggler); the note says why there is no prediction."""
    key = (r.subject, int(r.image_size), int(r.threads), profile_ranks(r, rates))
    strag = _straggler(r.straggler)
    if key not in rates[False][0]:
        return float("nan"), float("nan"), f"no node profile for {key[:3]}"
    if strag is None:
        return float("nan"), float("nan"), f"straggler {r.straggler} not modelled"
    net = _net(r.subject, int(r.image_size))
    flop = float(net.ledger(1).train_flop)
    blobs = np.array([4.0 * w.size for _, l in net.named_layers() for _, w, _ in l.params()])
    dist, scale, mean = strag
    workers = int(r.ranks) - int(r.param_servers)
    mean_rates, best_rates = rates[int(r.param_servers) > 0]
    out = []
    for prof in (mean_rates[key], best_rates[key]):
        rate = NodeRate(ref_flops=prof.ref_flops * flop, ref_batch=prof.ref_batch,
                        batches=prof.batches, flops=prof.flops * flop)
        inp = Inputs(rate=rate, flop_per_sample=flop, blob_bytes=blobs,
                     link_latency_s=link.alpha_s, link_bandwidth_Bps=link.bandwidth_Bps,
                     allreduce="auto", straggler=dist, straggler_scale=scale,
                     step_overhead_s=mean, straggler_absolute=True,
                     ps_apply_bandwidth_Bps=apply_bw)
        out.append(evaluate(inp, r.strategy, workers, int(r.groups), int(r.param_servers),
                            int(r.batch)))
    return (float(out[0]["throughput_samples_per_s"]),
            float(out[1]["peak_throughput_flops"]) / flop, "")


def profile_rates(node: pd.DataFrame) -> dict:
    """{servers?: (mean-step rates, best-step rates)} for :func:`predict_run`."""
    return {ps: (node_rates(node, without_update=ps),
                 node_rates(node, best=True, without_update=ps)) for ps in (False, True)}


def apply_bandwidth(node: pd.DataFrame) -> float:
    triad = node[node.what == "bandwidth"]["value"]
    return float(triad.median()) if len(triad) else 0.0


def error_rows(df: pd.DataFrame, base: dict) -> list[dict]:
    out = []
    for _, r in df.iterrows():
        kw = dict(subject=r.subject, batch=r.batch, image_size=r.image_size,
                  strategy=r.strategy, groups=r.groups, param_servers=r.param_servers,
                  straggler=r.straggler, threads=r.threads, ranks=r.ranks,
                  functional=r.functional, stat="sustained")
        out.append(make_row(base, what="prediction", metric="sample_rate", value=r.predicted,
                            unit="samples/s", implementation="model", **kw))
        out.append(make_row(base, what="error", metric="rel_error", value=r.error, unit="1",
                            implementation="model/harness", **kw))
        kw["stat"] = "peak"
        out.append(make_row(base, what="prediction", metric="sample_rate",
                            value=r.predicted_peak, unit="samples/s", implementation="model",
                            **kw))
        out.append(make_row(base, what="error", metric="rel_error", value=r.peak_error,
                            unit="1", implementation="model/harness", **kw))
    return out


def time_to_target(runs: pd.DataFrame, target: float, alpha: float = 0.1) -> pd.DataFrame:
    """Per harness run: wall-clock seconds until the training loss, smoothed (EMA with
    ``alpha`` over each worker's iterations, averaged over workers at equal step), first
    reaches ``target``; NaN when it never does."""
    loss = runs[(runs.what == "loss") & (runs.step >= 0)]
    out = []
    for _, g in loss.groupby("run_id"):
        g = g.sort_values("step")
        ema = g.groupby("rank")["value"].transform(lambda v: v.ewm(alpha=alpha).mean())
        g = g.assign(ema=ema)
        by_step = g.groupby("step").agg(ema=("ema", "mean"), elapsed=("elapsed_s", "max"))
        hit = by_step[by_step.ema <= target]
        first = g.iloc[0]
        out.append(dict(strategy=first.strategy, workers=int(first.ranks - first.param_servers),
                        groups=int(first.groups), param_servers=int(first.param_servers),
                        straggler=first.straggler, functional=bool(first.functional),
                        steps=int(by_step.index.max()) + 1,
                        final_loss=float(by_step.ema.iloc[-1]),
                        time_to_target_s=float(hit.elapsed.iloc[0]) if len(hit) else np.nan,
                        steps_to_target=int(hit.index[0]) if len(hit) else -1))
    return pd.DataFrame(out)
