"""What a scenario takes from measurements: the node's rate against batch (a ``perfmodel node``
profile, a stated rate with a measured shape, or a stated rate alone), the link's latency and
bandwidth from ping-pong fits, and the node's peak. Reads results files (the schema) only."""

from __future__ import annotations

import numpy as np

from ..results import ResultsError, read_results
from ..ui import UserError
from .interval import Interval
from .throughput import NodeRate
from .workload import net_ledger


def read_profile(field: str, path: str):
    """A results file that a scenario names (``cluster.FIELD``); a bad one is a UserError."""
    try:
        return read_results(path)
    except ResultsError as e:
        raise UserError(f"cluster.{field}: {e} (measure it: make localhost)") from None


def busy_fraction_from_profile(path: str, batch: int) -> float:
    """A rank's step rate with every rank of the node busy over its rate alone, at ``batch``
    (or the largest batch both were measured at), from a profile that holds both kinds of
    rows (``perfmodel node`` with and without ``--busy-ranks``); 1 when it holds one kind."""
    df = read_profile("node_profile", path)
    steps = df[(df.what == "step") & (df.metric == "flop_rate") & (df.implementation == "numba")]
    alone = steps[steps.ranks == 1].groupby("batch").value.median()
    busy = steps[steps.ranks > 1].groupby("batch").value.median()
    both = alone.index.intersection(busy.index)
    if both.empty:
        return 1.0
    b = batch if batch in both else both.max()
    return float(min(busy.loc[b] / alone.loc[b], 1.0))


#: what a node profile's rate is taken from, first found first: the Numba kernels, then a
#: framework's own step (perfmodel node --framework); a peer's layouts (torch-nchw,
#: torch-channels-last) are comparisons, never the node's rate
PROFILE_IMPLEMENTATIONS = ("numba", "numba-cuda", "torch-cuda", "torch-cpu")


def profile_implementation(rows) -> str:
    """The implementation whose step rates a profile gives the model (PROFILE_IMPLEMENTATIONS
    order); '' when it has none of them."""
    found = set(rows.implementation)
    return next((i for i in PROFILE_IMPLEMENTATIONS if i in found), "")


def link_from_profile(path: str) -> tuple[Interval, Interval]:
    """Alpha and bandwidth from the Hockney fits of ``perfmodel.harness.micro`` runs: the
    median as nominal, the range over runs as the interval."""
    df = read_profile("link_profile", path)
    h = df[df.what == "hockney"]
    lat, bw = h[h.metric == "latency"]["value"], h[h.metric == "bandwidth"]["value"]
    if lat.empty or bw.empty:
        raise UserError(f"cluster.link_profile: {path} holds no ping-pong fit (run "
                        "perfmodel.harness.micro or perfmodel scale --micro)")
    return (Interval(float(lat.median()), float(lat.min()), float(lat.max())),
            Interval(float(bw.median()), float(bw.min()), float(bw.max())))


def peak_from_profile(path: str) -> Interval:
    df = read_profile("node_profile", path)
    p = df[df.what == "peak"]["value"]
    if p.empty:
        raise UserError(f"cluster.node_profile: {path} holds no peak measurement")
    return Interval(float(p.max()), float(p.max()), float(p.max()))


def node_rate(c: dict, flops: float, w: dict | None = None,
               reading: float = 0.0) -> NodeRate:
    if c["node_profile"] is not None:
        df = read_profile("node_profile", c["node_profile"])
        rows = df[(df.what == "step") & (df.metric == "flop_rate") & (df.ranks == 1)]
        rows = rows[rows.implementation == profile_implementation(rows)]  # the rate alone
        if w is not None and w["net"] is not None:  # the profile of this workload's net
            _, _, name, _ = net_ledger(w["net"], w["image_size"], w["image_width"],
                                     w["filters"])
            rows = rows[rows.subject == name]
            if w["image_size"] is not None:
                rows = rows[rows.image_size == w["image_size"]]
        steps = rows.groupby("batch")["value"].median()
        if len(steps) < 1:
            raise UserError(f"cluster.node_profile: {c['node_profile']} holds no step rates "
                            "of this workload's net and size (run perfmodel node)")
        b = steps.index.to_numpy(float)
        ref = c["device_batch"] if c["device_batch"] in steps.index else b[-1]
        return NodeRate(ref_flops=float(steps.loc[ref]), ref_batch=float(ref), batches=b,
                        flops=steps.to_numpy(float))
    if c["device_rate_shape"] is not None:  # a measured shape around the stated rate
        cols = [np.array(x, float) for x in zip(*c["device_rate_shape"])]
        b, r = cols[0], cols[min(1 + round(reading), len(cols) - 1)]
        at_ref = np.interp(np.log2(c["device_batch"]), np.log2(b), r)
        return NodeRate(ref_flops=flops, ref_batch=float(c["device_batch"]), batches=b,
                        flops=flops * r / at_ref)
    return NodeRate(ref_flops=flops, ref_batch=float(c["device_batch"]),
                    half_batch=c["device_half_batch"].nominal if isinstance(
                        c["device_half_batch"], Interval) else 0.0)
