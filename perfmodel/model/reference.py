"""The scenario reference: every key of :data:`perfmodel.model.scenario.SCHEMA` with its unit,
what it counts (per node, per device, per run) and what it means. ``docs/scenario.md`` is
rendered from here (:func:`markdown`; a test keeps the two in step) and ``perfmodel init``
writes a commented scenario from it (:func:`template`)."""

from __future__ import annotations

from typing import Any

from . import units
from .scenario import REQ, SCHEMA

#: (section, key) -> (unit, per, meaning). ``per``: node, device, run, sample, message, link
DOC: dict[tuple[str, str], tuple[str, str, str]] = {
    ("cluster", "name"): ("", "run", "a label for the cluster"),
    ("cluster", "nodes"): ("nodes", "run", "nodes of the machine (servers on their own nodes "
                                           "come from them too)"),
    ("cluster", "devices_per_node"): ("devices", "node", "workers a node holds: GPUs, or 1 "
                                                          "for a CPU node of one rank"),
    ("cluster", "device_peak_flops"): ("FLOP/s", "device", "a device's peak, for the fraction "
                                                         "of peak (2 FLOP per multiply-add)"),
    ("cluster", "device_flops"): ("FLOP/s", "device", "a device's sustained training rate at "
                                                    "device_batch"),
    ("cluster", "device_samples_per_s"): ("samples/s", "device", "the same rate in samples/s "
                                        "of the workload (the ledger turns it into FLOP/s)"),
    ("cluster", "node_profile"): ("path", "device", "a perfmodel node results file: the "
                                  "measured rate against batch (instead of device_flops)"),
    ("cluster", "device_batch"): ("samples", "device", "the local batch the rate was measured "
                                                     "at"),
    ("cluster", "device_half_batch"): ("samples", "device", "rate ~ b / (b + half): how the "
                                     "rate falls at small batch (0: flat, which predict says)"),
    ("cluster", "link_latency_s"): ("s", "link", "one message's latency between nodes"),
    ("cluster", "link_bandwidth_Bps"): ("bytes/s", "node", "a node's injection bandwidth, "
                                        "all its NICs together"),
    ("cluster", "link_profile"): ("path", "node", "perfmodel.harness.micro results: the "
                                  "ping-pong's latency and bandwidth"),
    ("cluster", "intra_latency_s"): ("s", "link", "latency between devices of one node"),
    ("cluster", "intra_bandwidth_Bps"): ("bytes/s", "device", "bandwidth between devices of "
                                         "one node (NVLink, PCIe), each way"),
    ("cluster", "allreduce"): ("", "run", "the allreduce algorithm: ring, "
                               "recursive-doubling, rabenseifner, reduce-bcast, tree, "
                               "two-tree, auto (MPICH's choice), nccl (NCCL's choice)"),
    ("cluster", "messages"): ("", "run", "how gradients are sent: fused, per-blob, bucketed "
                              "(DDP), horovod (cycles and fusion buffer)"),
    ("cluster", "overlap"): ("", "run", "messages start as their gradients are ready"),
    ("cluster", "bucket_bytes"): ("bytes", "message", "DDP's bucket size"),
    ("cluster", "cycle_s"): ("s", "run", "Horovod's cycle time"),
    ("cluster", "fusion_bytes"): ("bytes", "message", "Horovod's fusion buffer"),
    ("cluster", "update_bandwidth_Bps"): ("bytes/s", "device", "memory rate of the optimizer "
                                          "step (5 passes over the weights; 0: free)"),
    ("cluster", "reduce_bandwidth_Bps"): ("bytes/s", "device", "memory rate of the "
                                          "reductions inside collectives (0: free)"),
    ("cluster", "ps_apply_bandwidth_Bps"): ("bytes/s", "node", "a parameter server's rate "
                                            "applying an update (0: free)"),
    ("cluster", "straggler"): ("", "run", "per-node noise: none, exponential, normal, "
                               "lognormal, detour (OS noise)"),
    ("cluster", "straggler_scale"): ("s or 1", "node", "the noise's scale: s for exponential "
                                     "and detour, relative for normal and lognormal"),
    ("cluster", "straggler_rate_hz"): ("1/s", "node", "detours per second (detour)"),
    ("cluster", "device_rate_shape"): ("[batch, rate]", "device", "a measured rate-vs-batch "
                                     "shape relative to device_batch; [batch, A, B] when it "
                                     "reads two ways"),
    ("cluster", "compute_fraction"): ("1", "node", "share of a node's compute left to "
                                      "training at scale (cores given to communication)"),
    ("cluster", "bisection_Bps"): ("bytes/s", "run", "the machine's global bisection "
                                   "bandwidth (0: no taper)"),
    ("cluster", "group_nodes"): ("nodes", "run", "nodes with full bandwidth among them "
                                 "(dragonfly group, fat-tree pod or leaf)"),
    ("cluster", "taper"): ("1", "run", "fat-tree oversubscription t:1 above group_nodes"),
    ("cluster", "nics_per_node"): ("NICs", "node", "with nic_bandwidth_Bps, the node's links"),
    ("cluster", "nic_bandwidth_Bps"): ("bytes/s", "NIC", "one NIC's line rate (instead of "
                                       "link_bandwidth_Bps)"),
    ("cluster", "transport"): ("", "run", "rdma, tcp or grpc: sets wire_efficiency's "
                               "default"),
    ("cluster", "wire_efficiency"): ("1", "link", "share of line rate a message reaches "
                                     "(default by transport)"),
    ("cluster", "host_staging_Bps"): ("bytes/s", "device", "copies through host memory "
                                      "without GPUDirect RDMA (0: none)"),
    ("cluster", "message_overhead_s"): ("s", "message", "a library's fixed cost per message"),
    ("cluster", "busy_rate_fraction"): ("1", "device", "a device's rate beside its node's "
                                        "other busy devices over its rate alone"),
    ("cluster", "overlap_slowdown"): ("s per s", "device", "compute lost per second of "
                                      "communication hidden behind it"),
    ("cluster", "placement"): ("", "run", "spread or contiguous (a ring crosses a taper only "
                               "at group boundaries)"),
    ("cluster", "fabric_slowdown"): ("1", "run", "communication time x this past one group "
                                     "(other jobs' traffic)"),
    ("cluster", "flow_cap_Bps"): ("bytes/s", "flow", "a cloud's cap on one TCP flow (0: "
                                  "none)"),
    ("cluster", "flows_per_node"): ("flows", "node", "TCP flows a node's collectives use"),
    ("cluster", "ps_merge_bandwidth_Bps"): ("bytes/s", "server", "a synchronous parameter "
                                            "server merging one push of its share (sum and "
                                            "update; 0: free)"),
    ("io", "bytes_per_sample"): ("bytes", "sample", "what a sample reads (0: I/O not "
                                                    "modelled)"),
    ("io", "fs_bandwidth_Bps"): ("bytes/s", "run", "the shared file system's aggregate read "
                                 "bandwidth"),
    ("io", "node_read_Bps"): ("bytes/s", "node", "one node's read bandwidth from it (0: no "
                              "limit)"),
    ("io", "staging"): ("", "run", "none (read every step) or node-local (staged once)"),
    ("io", "local_read_Bps"): ("bytes/s", "node", "node-local read bandwidth"),
    ("io", "prefetch"): ("", "run", "the next batch is read during the step"),
    ("io", "node_prep_samples_per_s"): ("samples/s", "node", "samples a node's host CPUs "
                                        "decode and augment per second for all its devices "
                                        "(0: not modelled)"),
    ("workload", "net"): ("", "run", "hep, climate or a zoo network (resnet50, resnet101, "
                          "vgg16, inception_v3, deeplabv3_resnet50, cosmoflow)"),
    ("workload", "image_size"): ("pixels", "sample", "input height (and width when square)"),
    ("workload", "image_width"): ("pixels", "sample", "input width when not square"),
    ("workload", "filters"): ("channels", "run", "the HEP net's conv width"),
    ("workload", "params"): ("parameters", "run", "a workload given by its parameter count"),
    ("workload", "flop_per_sample"): ("FLOP", "sample", "with params: a training step's FLOP "
                                      "per sample (forward + backward)"),
    ("workload", "layers"): ("path", "run", "a CSV layer table: layer, params, "
                             "forward_flop per sample, forward order (perfmodel ledger)"),
    ("workload", "dataset_samples"): ("samples", "run", "the data set's size (epochs)"),
    ("training", "strategy"): ("", "run", "sync, async or hybrid (sync with param_servers: "
                               "synchronous parameter servers)"),
    ("training", "workers"): ("devices", "run", "devices that train"),
    ("training", "groups"): ("groups", "run", "synchronous groups (hybrid)"),
    ("training", "param_servers"): ("servers", "run", "parameter servers"),
    ("training", "batch_per_worker"): ("samples", "device", "the local batch (weak scaling)"),
    ("training", "global_batch"): ("samples", "run", "one synchronous group's batch (strong "
                                   "scaling)"),
    ("training", "gradient_dtype"): ("", "run", "fp32, fp16 or bf16 gradients on the wire"),
    ("training", "servers_colocated"): ("", "run", "synchronous servers on the worker nodes, "
                                        "sharing their links"),
    ("training", "ps_placement"): ("", "run", "how servers hold the parameters: even (split "
                                   "tensors: MXNet, BytePS), round-robin or greedy (whole "
                                   "variables: TensorFlow); unset: even for sync, "
                                   "round-robin for async and hybrid"),
    ("training", "ps_pull"): ("", "run", "synchronous servers: with-push (each variable's pull "
                              "follows its push during backward: MXNet, BytePS) or "
                              "step-start (all weights read before the forward: "
                              "TensorFlow); unset: with-push"),
    ("convergence", "target_loss"): ("loss", "run", "the loss to reach"),
    ("convergence", "s_min"): ("updates", "run", "updates to the target at an infinite batch"),
    ("convergence", "b_noise"): ("samples", "run", "the gradient noise scale"),
    ("convergence", "gamma"): ("1", "run", "cost of a mis-tuned effective momentum"),
    ("convergence", "kappa"): ("1/update", "run", "extra updates per unit of staleness"),
    ("convergence", "ref_momentum"): ("1", "run", "the momentum s_min and b_noise were "
                                      "measured at"),
    ("convergence", "momentum"): ("1", "run", "the run's explicit momentum"),
    ("convergence", "retune_momentum"): ("", "run", "lower the momentum for asynchrony"),
    ("convergence", "profile"): ("path", "run", "a perfmodel converge folder to fit them from"),
    ("convergence", "source"): ("", "run", "where the convergence parameters come from"),
}


def _default(sec: str, key: str) -> str:
    typ, d = SCHEMA[sec][key]
    if d is REQ:
        return "required"
    if d is None:
        return "unset"
    if typ == "bool":
        return "true" if d else "false"
    if typ == "str":
        return f'"{d}"'
    return f"{d:g}" if isinstance(d, float) else str(d)


def markdown() -> str:
    """docs/scenario.md: every key, its unit, what it counts and its default."""
    out = ["# Scenario reference", "",
           "Generated from `perfmodel/model/reference.py` and the schema "
           "(`perfmodel/model/scenario.py`); a test keeps them in step. A number may carry "
           "its unit (`\"200 Gb/s\"`, `\"2 us\"`) or an interval (`[low, high]`, "
           "`{nominal, low, high}`). `perfmodel init FILE` writes a scenario with every key "
           "below as a comment.", ""]
    for sec, keys in SCHEMA.items():
        out += [f"## [{sec}]", "", "| key | unit | per | default | meaning |",
                "|---|---|---|---|---|"]
        for key in keys:
            unit, per, meaning = DOC[(sec, key)]
            out.append(f"| `{key}` | {unit} | {per} | {_default(sec, key)} | {meaning} |")
        out.append("")
    return "\n".join(out)


def template(raw: dict[str, dict[str, Any]] | None = None, source: str = "") -> str:
    """A commented scenario: every key with its unit, scope and default; the values of
    ``raw`` (a preset's TOML) set, the other keys commented out."""
    raw = raw or {}
    lines = ["# A perfmodel scenario (perfmodel predict THIS_FILE). Every key is listed with its",
             "# unit, what it counts and its default; uncomment and set what you know.",
             "# Numbers may carry units (\"200 Gb/s\", \"2 us\") or intervals ([low, high]).",
             "# Reference: docs/scenario.md." + (f" Started from {source}." if source else "")]
    for sec, keys in SCHEMA.items():
        lines += ["", f"[{sec}]"]
        given = raw.get(sec, {})
        for key in keys:
            unit, per, meaning = DOC[(sec, key)]
            note = f"# {unit + ', ' if unit else ''}per {per}; default {_default(sec, key)}: " \
                   f"{meaning}"
            if key in given:
                lines.append(f"{key} = {_toml(given[key], key)}   {note}")
            else:
                lines.append(f"# {key} =   {note}")
    return "\n".join(lines) + "\n"


def _toml(v: Any, key: str = "") -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x, key) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml(x, key)}" for k, x in v.items()) + "}"
    if isinstance(v, float) and v and units.family(key) in UNIT_TEXT:
        return f'"{quantity(key, v)}"'
    return repr(v) if isinstance(v, int) else f"{v:.6g}"


UNIT_TEXT = {"_Bps": "B/s", "_flops": "FLOP/s", "_s": "s"}


def quantity(key: str, value: float) -> str:
    """``value`` in the unit of ``key`` with a readable prefix: 1e11 B/s -> '100 GB/s',
    2e-6 s -> '2 us'."""
    fam = units.family(key)
    unit = UNIT_TEXT[fam]
    steps = ((1e-9, "n"), (1e-6, "u"), (1e-3, "m"), (1.0, "")) if fam == "_s" else \
        ((1.0, ""), (1e3, "k"), (1e6, "M"), (1e9, "G"), (1e12, "T"), (1e15, "P"))
    scale, prefix = steps[0]
    for s, p in steps:
        if abs(value) >= s:
            scale, prefix = s, p
    return f"{value / scale:.6g} {prefix}{unit}"
