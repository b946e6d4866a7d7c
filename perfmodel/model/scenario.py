"""Scenario files (TOML): validation with clear errors, presets, and conversion to model inputs.

Sections and keys (units in the names; defaults in :data:`SCHEMA`):

* ``[cluster]``: ``nodes``, ``devices_per_node``, ``device_peak_flops``, ``device_flops`` (sustained
  training rate at ``device_batch``) or ``node_profile`` (a ``perfmodel node`` results file:
  the rate-vs-batch curve), ``device_half_batch`` (rate ~ b/(b + half): how the rate falls at small
  local batch), ``link_latency_s``, ``link_bandwidth_Bps``, ``intra_latency_s``,
  ``intra_bandwidth_Bps``, ``allreduce``, ``messages`` (fused, per-blob, bucketed: see
  horovod: see :mod:`perfmodel.model.timeline`; default bucketed when ``overlap``, else
  fused), ``overlap`` (a workload given as bare params is then spread evenly over backward
  in 64 blobs), ``bucket_bytes`` (default
  DDP's 25 MiB), ``cycle_s`` and ``fusion_bytes`` (Horovod's cycle, 1 ms, and fusion buffer,
  128 MiB), ``update_bandwidth_Bps`` (the optimizer step's memory rate; 0: free),
  ``reduce_bandwidth_Bps``,
  ``ps_apply_bandwidth_Bps``, ``straggler`` (none, exponential, normal, lognormal, detour) and
  ``straggler_scale`` (detour: one detour's duration, with ``straggler_rate_hz`` detours per
  second per node; unset, both take a published OS-noise measurement, about 1.04 kHz x
  5.2 us: :func:`perfmodel.model.stragglers.detour_default`); ``device_rate_shape``, a list
  of ``[batch, rate relative to the rate at device_batch]`` pairs (a measured rate-vs-batch
  shape, interpolated in log2 batch; it replaces ``device_half_batch``), or ``[batch, rate A,
  rate B]`` rows when the measurement reads two ways (every prediction takes both, as an
  interval; A is nominal); ``compute_fraction`` (the share of a node's compute left to
  training when several workers run: cores given to communication progress);
  ``bisection_Bps`` (the machine's global bisection bandwidth) and ``group_nodes`` (nodes
  with full bandwidth among them: a dragonfly group, a fat-tree pod or leaf switch) for the
  network's taper, or ``taper`` (a fat-tree oversubscribed t:1 above ``group_nodes``).
* ``[io]``: ``bytes_per_sample``, ``fs_bandwidth_Bps`` (the shared file system's aggregate
  read bandwidth), ``node_read_Bps`` (one node's, 0: no limit), ``staging`` (none: read from
  the file system every step; node-local: staged once, then read at ``local_read_Bps``),
  ``prefetch`` (default true: the next batch is read during the step).
* ``[workload]``: ``net`` (hep, climate, or a common network of :mod:`kernels.zoo`: resnet50,
  resnet101, vgg16, inception_v3) with ``image_size`` / ``image_width``; or ``layers``, a CSV
  layer table (``layer``, ``params``, ``forward_flop`` per sample, forward order); or
  explicit ``params`` and ``flop_per_sample`` (one blob); ``dataset_samples``.
* ``[training]``: ``strategy`` (sync, async, hybrid), ``workers``, ``groups``,
  ``param_servers``, and ``batch_per_worker`` (weak scaling) or ``global_batch`` (strong
  scaling: the batch of one synchronous group).
* ``[convergence]`` (:mod:`perfmodel.model.convergence`): ``target_loss``, ``s_min``
  (updates at an infinite batch), ``b_noise`` (samples), ``gamma`` (cost of a mis-tuned
  effective momentum), ``kappa`` (extra updates per unit of staleness), ``ref_momentum`` (the
  momentum they were measured at), ``momentum`` (the run's explicit momentum; default
  ``ref_momentum``), ``retune_momentum`` (lower it for asynchrony, default true), or
  ``profile``: a ``perfmodel converge`` folder (or its calibration CSV) to fit them from, with
  their standard errors as intervals.

A float may carry its uncertainty: ``x``, ``[low, high]`` (nominal: the midpoint) or
``{nominal = x, low = a, high = b}``. Predictions evaluate every corner of the uncertain
inputs and report the range as the interval. Unknown keys are errors naming the key.
"""

from __future__ import annotations

import itertools
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from kernels.zoo import ZOO

from ..results import ResultsError, read_results
from ..ui import UserError
from . import collectives, stragglers, transport
from .convergence import Convergence, fit, target_table
from .interval import Interval, number, pairs
from .keys import apply_renames, current_key
from .profiles import (busy_fraction_from_profile, link_from_profile, node_rate,
                       peak_from_profile)
from .throughput import PS_PLACEMENTS, STRATEGIES, Inputs
from .workload import layer_table, spread_blobs, workload_blob_ready, workload_ledger

REQ = object()  # marks a required key
ZOO_NAMES = tuple(ZOO)
#: section -> key -> (type, default). 'num' may carry an interval.
SCHEMA: dict[str, dict[str, tuple[str, Any]]] = {
    "cluster": {
        "name": ("str", ""), "nodes": ("int", REQ), "devices_per_node": ("int", 1),
        "device_peak_flops": ("num", None), "device_flops": ("num", None),
        "device_samples_per_s": ("num", None),
        "node_profile": ("str", None), "device_batch": ("int", 8), "device_half_batch": ("num", 0.0),
        "link_latency_s": ("num", None), "link_bandwidth_Bps": ("num", None),
        "link_profile": ("str", None),
        "intra_latency_s": ("num", None), "intra_bandwidth_Bps": ("num", None),
        "allreduce": ("str", "auto"), "messages": ("str", None), "overlap": ("bool", False),
        "bucket_bytes": ("num", float(25 * 2**20)), "cycle_s": ("num", 1e-3),
        "fusion_bytes": ("num", float(128 * 2**20)), "update_bandwidth_Bps": ("num", 0.0),
        "reduce_bandwidth_Bps": ("num", 0.0), "ps_apply_bandwidth_Bps": ("num", 0.0),
        "straggler": ("str", "none"), "straggler_scale": ("num", None),
        "straggler_rate_hz": ("num", None),
        "device_rate_shape": ("pairs", None), "compute_fraction": ("num", 1.0),
        "bisection_Bps": ("num", 0.0), "group_nodes": ("int", 0), "taper": ("num", 1.0),
        "nics_per_node": ("int", 1), "nic_bandwidth_Bps": ("num", None),
        "transport": ("str", "rdma"), "wire_efficiency": ("num", None),
        "host_staging_Bps": ("num", 0.0), "message_overhead_s": ("num", 0.0),
        "busy_rate_fraction": ("num", None), "overlap_slowdown": ("num", 0.0),
        "placement": ("str", "spread"), "fabric_slowdown": ("num", 1.0),
        "flow_cap_Bps": ("num", 0.0), "flows_per_node": ("num", 1.0),
        "ps_merge_bandwidth_Bps": ("num", 0.0),
    },
    "io": {
        "bytes_per_sample": ("num", 0.0), "fs_bandwidth_Bps": ("num", 0.0),
        "node_read_Bps": ("num", 0.0), "staging": ("str", "none"),
        "local_read_Bps": ("num", 0.0), "prefetch": ("bool", True),
        "node_prep_samples_per_s": ("num", 0.0),
    },
    "workload": {
        "net": ("str", None), "image_size": ("int", None), "image_width": ("int", None),
        "filters": ("int", None), "params": ("int", None), "flop_per_sample": ("num", None),
        "layers": ("str", None), "dataset_samples": ("int", 0),
    },
    "training": {
        "strategy": ("str", REQ), "workers": ("int", REQ), "groups": ("int", 1),
        "param_servers": ("int", 0), "batch_per_worker": ("int", None),
        "global_batch": ("int", None), "gradient_dtype": ("str", "fp32"),
        "servers_colocated": ("bool", False), "ps_placement": ("str", None),
        "ps_pull": ("str", None),
    },
    "convergence": {
        "target_loss": ("num", None), "s_min": ("num", 0.0), "b_noise": ("num", 0.0),
        "gamma": ("num", 0.0), "kappa": ("num", 0.0), "ref_momentum": ("num", 0.9),
        "momentum": ("num", None), "retune_momentum": ("bool", True), "profile": ("str", None),
        "source": ("str", ""),
    },
}
CHOICES = {("cluster", "allreduce"): collectives.ALGORITHMS,
           ("cluster", "messages"): ("fused", "per-blob", "bucketed", "horovod"),
           ("cluster", "straggler"): stragglers.DISTRIBUTIONS,
           ("training", "strategy"): STRATEGIES,
           ("io", "staging"): ("none", "node-local"),
           ("cluster", "transport"): transport.TRANSPORTS,
           ("cluster", "placement"): ("spread", "contiguous"),
           ("training", "gradient_dtype"): tuple(transport.GRADIENT_BYTES),
           ("training", "ps_placement"): PS_PLACEMENTS,
           ("training", "ps_pull"): ("with-push", "step-start"),
           ("workload", "net"): ("hep", "climate", *ZOO_NAMES)}
POSITIVE = {"flows_per_node", "nics_per_node", "nic_bandwidth_Bps", "wire_efficiency", "busy_rate_fraction",
            "fabric_slowdown", "nodes", "devices_per_node", "bucket_bytes", "cycle_s", "fusion_bytes", "device_peak_flops", "device_flops", "device_samples_per_s", "device_batch",
            "link_bandwidth_Bps", "intra_bandwidth_Bps", "workers", "groups",
            "batch_per_worker", "global_batch", "params", "flop_per_sample", "image_size",
            "image_width", "filters"}


def validate(raw: dict, source: str = "scenario") -> dict[str, dict[str, Any]]:
    """Check types, ranges and consistency; fill defaults. Raises UserError naming the field."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: not a table of sections")
    apply_renames(raw, source)
    for sec in raw:
        if sec not in SCHEMA:
            raise UserError(f"{source}: unknown section [{sec}] (allowed: "
                            f"{', '.join(SCHEMA)})")
    out: dict[str, dict[str, Any]] = {}
    for sec, keys in SCHEMA.items():
        given = raw.get(sec, {})
        if not isinstance(given, dict):
            raise UserError(f"{source}: [{sec}] must be a table, got {given!r}")
        for k in given:
            if k not in keys:
                raise UserError(f"{source}: unknown key {sec}.{k} (allowed: "
                                f"{', '.join(keys)})")
        vals: dict[str, Any] = {}
        for k, (typ, default) in keys.items():
            where = f"{source}: {sec}.{k}"
            if k not in given:
                if default is REQ:
                    raise UserError(f"{where} is required")
                vals[k] = Interval(default, default, default) if typ == "num" and \
                    default is not None else default
                continue
            v = given[k]
            if typ == "int":
                if isinstance(v, bool) or not isinstance(v, int):
                    raise UserError(f"{where}: expected an integer, got {v!r}")
            elif typ == "str":
                if not isinstance(v, str):
                    raise UserError(f"{where}: expected a string, got {v!r}")
                if (sec, k) in PATH_KEYS and not v.strip():
                    raise UserError(f"{where}: expected a file's path, got an empty string")
                allowed = CHOICES.get((sec, k))
                if allowed and v not in allowed:
                    raise UserError(f"{where}={v!r} is not allowed (allowed: "
                                    f"{', '.join(allowed)})")
            elif typ == "bool":
                if not isinstance(v, bool):
                    raise UserError(f"{where}: expected true or false, got {v!r}")
            elif typ == "pairs":
                v = pairs(where, v)
            elif typ == "num":
                v = number(where, v)
            if k in POSITIVE:
                lo = v.low if isinstance(v, Interval) else v
                if not lo > 0:
                    raise UserError(f"{where}={v if not isinstance(v, Interval) else lo} is "
                                    "out of range (allowed > 0)")
            elif isinstance(v, Interval) and v.low < 0:
                raise UserError(f"{where}={v.low} is out of range (allowed >= 0)")
            elif typ == "int" and isinstance(v, int) and v < 0:
                raise UserError(f"{where}={v} is out of range (allowed >= 0)")
            vals[k] = v
        out[sec] = vals
    shape = out["cluster"]["device_rate_shape"]
    # derived: which reading of a two-reading shape (0: the first, nominal; 1: the second)
    out["cluster"]["node_rate_reading"] = Interval(
        0.0, 0.0, 1.0 if shape is not None and len(shape[0]) == 3 else 0.0)
    _check_consistency(out, source)
    return out


def _straggler_defaults(c: dict, source: str) -> None:
    """Fill straggler_scale and straggler_rate_hz: 0 unless given, except for ``detour``,
    whose unset values take the published measurement of :func:`stragglers.detour_default`."""
    rate_hz, detour_s = stragglers.detour_default()
    detour = c["straggler"] == "detour"
    for key, default in (("straggler_rate_hz", rate_hz), ("straggler_scale", detour_s)):
        if c[key] is None:
            v = default if detour else 0.0
            c[key] = Interval(v, v, v)
    if not detour:
        return
    if not c["straggler_rate_hz"].low > 0:
        raise UserError(f"{source}: cluster.straggler_rate_hz={c['straggler_rate_hz'].low:g} is "
                        "out of range for straggler='detour' (allowed > 0 detours per second "
                        f"per node; unset: {rate_hz:.4g}, osnoise's published measurement)")
    busy = c["straggler_rate_hz"].high * c["straggler_scale"].high
    if not busy < 1:
        raise UserError(f"{source}: cluster.straggler='detour' with straggler_rate_hz="
                        f"{c['straggler_rate_hz'].high:g} and straggler_scale="
                        f"{c['straggler_scale'].high:g} s spends {busy:.0%} of the time in "
                        "detours (allowed < 100%; straggler_scale is one detour's duration, "
                        f"unset: {detour_s:.3g} s)")


def _check_consistency(s: dict, source: str) -> None:
    c, w, t = s["cluster"], s["workload"], s["training"]
    given = [k for k in ("device_flops", "device_samples_per_s", "node_profile") if c[k] is not None]
    if len(given) != 1:
        raise UserError(f"{source}: cluster needs exactly one of device_flops, "
                        "device_samples_per_s and node_profile (given: "
                        f"{', '.join(given) or 'none'})")
    if c["link_profile"] is not None:
        if c["link_latency_s"] is not None or c["link_bandwidth_Bps"] is not None:
            raise UserError(f"{source}: cluster takes link_profile or link_latency_s and "
                            "link_bandwidth_Bps, not both")
        c["link_latency_s"], c["link_bandwidth_Bps"] = link_from_profile(c["link_profile"])
    if c["nic_bandwidth_Bps"] is not None:
        if c["link_bandwidth_Bps"] is not None:
            raise UserError(f"{source}: cluster takes link_bandwidth_Bps (per node) or "
                            "nic_bandwidth_Bps (per NIC, times nics_per_node), not both")
        nic, k = c["nic_bandwidth_Bps"], c["nics_per_node"]
        c["link_bandwidth_Bps"] = Interval(nic.nominal * k, nic.low * k, nic.high * k)
    if c["busy_rate_fraction"] is None:  # a profile measured with ranks busy says it; else 1
        f = busy_fraction_from_profile(c["node_profile"], c["device_batch"]) \
            if c["node_profile"] is not None else 1.0
        c["busy_rate_fraction"] = Interval(f, f, f)
    transport.fill_defaults(c, source)
    for k in ("link_latency_s", "link_bandwidth_Bps"):
        if c[k] is None:
            raise UserError(f"{source}: cluster.{k} is required (or cluster.link_profile)")
    if c["device_peak_flops"] is None:
        if c["node_profile"] is None:
            raise UserError(f"{source}: cluster.device_peak_flops is required (or a "
                            "node_profile that measured it)")
        c["device_peak_flops"] = peak_from_profile(c["node_profile"])
    _straggler_defaults(c, source)
    if c["messages"] is None:  # overlapping as the libraries do it: DDP-style buckets
        c["messages"] = "bucketed" if c["overlap"] else "fused"
    if c["taper"].low < 1:
        raise UserError(f"{source}: cluster.taper={c['taper'].low:g} is out of range (allowed "
                        ">= 1: a fat-tree oversubscribed taper:1; 1 is non-blocking)")
    if not 0 < c["compute_fraction"].low <= c["compute_fraction"].high <= 1:
        raise UserError(f"{source}: cluster.compute_fraction={c['compute_fraction'].high:g} "
                        "is out of range (allowed 0 < f <= 1)")
    if c["device_rate_shape"] is not None and c["node_profile"] is not None:
        raise UserError(f"{source}: cluster takes device_rate_shape with device_flops, not with "
                        "node_profile (the profile is a measured curve already)")
    io = s["io"]
    if io["bytes_per_sample"].high > 0:
        need = ["fs_bandwidth_Bps"] + (["local_read_Bps"] if io["staging"] == "node-local"
                                       else [])
        for k in need:
            if not io[k].low > 0:
                raise UserError(f"{source}: io.bytes_per_sample > 0 with staging="
                                f"{io['staging']!r} needs io.{k} > 0")
    if s["convergence"]["profile"] is not None:
        _convergence_from_profile(s["convergence"], source)
    for k in ("ref_momentum", "momentum"):
        v = s["convergence"][k]
        if v is not None and not v.high < 1:
            raise UserError(f"{source}: convergence.{k}={v.high} is out of range (allowed "
                            "0 <= m < 1)")
    if w["filters"] is not None and w["net"] != "hep":
        raise UserError(f"{source}: workload.filters applies to the HEP net only")
    if w["filters"] is not None and w["filters"] > 4096:
        raise UserError(f"{source}: workload.filters={w['filters']} is out of range (allowed "
                        "1..4096: the ledger builds the net)")
    if c["devices_per_node"] > 1 and (c["intra_latency_s"] is None
                                      or c["intra_bandwidth_Bps"] is None):
        raise UserError(f"{source}: cluster.devices_per_node={c['devices_per_node']} needs "
                        "intra_latency_s and intra_bandwidth_Bps")
    given = [k for k in ("net", "layers") if w[k] is not None] + (
        ["params"] if w["params"] is not None else [])
    if len(given) > 1:
        raise UserError(f"{source}: workload takes one of net, layers and params "
                        f"(given: {', '.join(given)})")
    if w["layers"] is not None:
        layer_table(w["layers"], source)  # a bad table is an error now, naming the row
    elif w["net"] is None and (w["params"] is None or w["flop_per_sample"] is None):
        raise UserError(f"{source}: workload needs net, or both params and flop_per_sample")
    if w["net"] is not None and w["params"] is not None:
        raise UserError(f"{source}: workload takes net or params, not both")
    strat, workers, groups, ps = t["strategy"], t["workers"], t["groups"], t["param_servers"]
    devices = c["nodes"] * c["devices_per_node"]
    colocated = t["servers_colocated"]
    if colocated and not (strat == "sync" and ps >= 1):
        raise UserError(f"{source}: training.servers_colocated = true is for synchronous "
                        "training with parameter servers (strategy='sync', param_servers "
                        ">= 1)")
    if t["ps_pull"] is not None and not (strat == "sync" and ps >= 1):
        raise UserError(f"{source}: training.ps_pull = {t['ps_pull']!r} is for synchronous "
                        "training with parameter servers (strategy='sync', param_servers >= 1)")
    if t["ps_placement"] is not None and ps < 1:
        raise UserError(f"{source}: training.ps_placement = {t['ps_placement']!r} needs "
                        "parameter servers (training.param_servers >= 1)")
    if workers + (0 if colocated else ps) > devices:
        raise UserError(f"{source}: training.workers + training.param_servers = "
                        f"{workers + ps} exceeds the {devices} devices of the cluster")
    if not colocated and ps >= c["nodes"] * c["devices_per_node"]:
        raise UserError(f"{source}: training.param_servers={ps} must be fewer than the "
                        f"cluster's {devices} devices")
    if groups > workers:
        raise UserError(f"{source}: training.groups={groups} exceeds training.workers="
                        f"{workers}")
    if workers % groups:
        raise UserError(f"{source}: training.groups={groups} does not divide "
                        f"training.workers={workers} into equal groups")
    if strat == "sync" and groups != 1:
        raise UserError(f"{source}: training.strategy='sync' takes groups=1 (got groups="
                        f"{groups}; param_servers >= 1 makes it synchronous through "
                        "parameter servers)")
    if strat in ("async", "hybrid") and ps < 1:
        raise UserError(f"{source}: training.strategy={strat!r} needs param_servers >= 1")
    if strat == "async" and groups not in (1, workers):
        raise UserError(f"{source}: training.strategy='async' makes every worker its own "
                        f"group (groups={groups} given)")
    if (t["batch_per_worker"] is None) == (t["global_batch"] is None):
        raise UserError(f"{source}: training needs exactly one of batch_per_worker and "
                        "global_batch")
    if t["global_batch"] is not None:
        per_group = workers // (workers if strat == "async" else groups)
        if t["global_batch"] % per_group:
            raise UserError(f"{source}: training.global_batch={t['global_batch']} does not "
                            f"divide over the {per_group} workers of a group")
    if w["net"] is not None:
        workload_ledger(w)  # the net must build at this size: errors name the field
    if c["device_samples_per_s"] is not None:  # a device's rate in samples/s, through the ledger
        flop, _ = workload_ledger(w)
        r = c["device_samples_per_s"]
        c["device_flops"] = Interval(r.nominal * flop, r.low * flop, r.high * flop)


def _convergence_from_profile(conv: dict, source: str) -> None:
    """Fill s_min, b_noise, gamma, kappa (nominal +- one standard error) and the target from
    the calibration runs of a ``perfmodel converge`` folder or CSV."""
    p = Path(conv["profile"])
    path = p / "calibration.csv" if p.is_dir() else p
    try:
        table = target_table(read_results(path))
    except ResultsError as e:
        raise UserError(f"{source}: convergence.profile: {e}") from None
    m = fit(table)
    for k in ("s_min", "b_noise", "gamma", "kappa"):
        v, se = getattr(m, k), getattr(m, k + "_se")
        se = se if se == se else 0.0
        conv[k] = Interval(v, max(v - se, 0.0), v + se)
    conv["ref_momentum"] = Interval(m.ref_momentum, m.ref_momentum, m.ref_momentum)
    tl = m.source["target_loss"]
    if conv["target_loss"] is not None and conv["target_loss"].nominal != tl:
        raise UserError(f"{source}: convergence.target_loss={conv['target_loss'].nominal:g} "
                        f"but the profile's runs went to {tl:g}")
    conv["target_loss"] = Interval(tl, tl, tl)
    conv["source"] = f"fitted on {path}: runs {', '.join(m.source['s_min, b_noise'])}"


def load(name_or_path: str, overrides: list[str] | None = None,
         unset: list[str] | None = None) -> tuple[dict, str]:
    """Read a scenario file or a preset by name, remove the ``unset`` keys
    (``section.key``), apply ``section.key=value`` overrides and validate. Returns (validated
    scenario, source label)."""
    raw, source = read_raw(name_or_path)
    for u in unset or []:
        _apply_unset(raw, u)
    for o in overrides or []:
        _apply_override(raw, o)
    return validate(raw, source), source


def _apply_unset(raw: dict, text: str) -> None:
    sec, _, key = text.strip().partition(".")
    key = current_key(sec, key, "--unset")
    if not key or sec not in SCHEMA or key not in SCHEMA[sec]:
        raise UserError(f"--unset {text!r}: expected section.key of the schema (e.g. "
                        "training.batch_per_worker)")
    if isinstance(raw.get(sec), dict):
        raw[sec].pop(key, None)


def load_for_plan(name_or_path: str, overrides: list[str] | None = None,
                  unset: list[str] | None = None) -> tuple[dict, str]:
    """Like :func:`load`, but the planner chooses the training configuration itself, so the
    scenario's [training] is replaced by a trivial one (sync, one worker) before validation."""
    raw, source = read_raw(name_or_path)
    for u in unset or []:
        _apply_unset(raw, u)
    for o in overrides or []:
        _apply_override(raw, o)
    user = raw.get("training", {}) if isinstance(raw.get("training"), dict) else {}
    raw["training"] = {"strategy": "sync", "workers": 1, "batch_per_worker": 1,
                       **{k: user[k] for k in ("gradient_dtype",) if k in user}}
    s = validate(raw, source)
    b = user.get("batch_per_worker")
    s["plan_hints"] = {"batch_per_worker": b if isinstance(b, int) and b >= 1 else None}
    return s, source


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("perfmodel.model.presets").iterdir()
                  if p.name.endswith(".toml"))


#: keys that name files: in a scenario file, a relative path is taken from the file's folder
PATH_KEYS = (("cluster", "node_profile"), ("cluster", "link_profile"), ("workload", "layers"),
             ("convergence", "profile"))


def read_raw(name_or_path: str) -> tuple[dict, str]:
    """The TOML of a scenario file or a preset, and its label. In a file, relative paths
    (:data:`PATH_KEYS`) are made relative to the file's folder; a preset's stay relative to
    the working directory (the repository's results/)."""
    p = Path(name_or_path)
    if not p.exists():
        pre = resources.files("perfmodel.model.presets") / f"{name_or_path}.toml"
        if not pre.is_file():
            raise UserError(f"{name_or_path!r} is neither a scenario file nor a preset "
                            f"(presets: {', '.join(preset_names())})")
        text, source = pre.read_text(), f"preset {name_or_path}"
    else:
        try:
            text, source = p.read_text(), str(p)
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"{p}: cannot read ({e})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{source}: not valid TOML ({e})") from None
    if p.exists():
        for sec, key in PATH_KEYS:
            v = raw.get(sec, {}).get(key) if isinstance(raw.get(sec), dict) else None
            if isinstance(v, str) and v and not Path(v).is_absolute():
                raw[sec][key] = str(p.parent / v)
    return raw, source


def _apply_override(raw: dict, text: str) -> None:
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise UserError(f"--set {text!r}: expected section.key=value")
    path, value = text.split("=", 1)
    sec, key = path.strip().split(".", 1)
    key = current_key(sec, key, "--set")
    try:
        v = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        v = value.strip()
    raw.setdefault(sec, {})[key] = v


UNCERTAIN = [("cluster", "device_flops"), ("cluster", "link_latency_s"),
             ("cluster", "link_bandwidth_Bps"), ("cluster", "straggler_scale"),
             ("cluster", "straggler_rate_hz"), ("cluster", "node_rate_reading"),
             ("cluster", "device_half_batch"), ("cluster", "compute_fraction"),
             ("cluster", "bisection_Bps"), ("cluster", "taper"),
             ("cluster", "update_bandwidth_Bps"), ("cluster", "wire_efficiency"),
             ("cluster", "host_staging_Bps"), ("cluster", "message_overhead_s"),
             ("cluster", "busy_rate_fraction"), ("cluster", "overlap_slowdown"),
             ("cluster", "fabric_slowdown"), ("cluster", "flow_cap_Bps"),
             ("cluster", "flows_per_node"), ("cluster", "ps_merge_bandwidth_Bps"),
             ("io", "bytes_per_sample"),
             ("io", "fs_bandwidth_Bps"), ("io", "local_read_Bps"),
             ("io", "node_prep_samples_per_s"), ("convergence", "b_noise"),
             ("convergence", "s_min"), ("convergence", "gamma"), ("convergence", "kappa")]


def corners(s: dict) -> list[dict[tuple[str, str], float]]:
    """Value sets for the nominal case and for every corner of the uncertain inputs."""
    nominal = {k: (s[k[0]][k[1]].nominal if isinstance(s[k[0]][k[1]], Interval) else None)
               for k in UNCERTAIN}
    unc = [k for k in UNCERTAIN if isinstance(s[k[0]][k[1]], Interval)
           and s[k[0]][k[1]].uncertain]
    out = [nominal]
    for combo in itertools.product((0, 1), repeat=len(unc)):
        d = dict(nominal)
        for k, hi in zip(unc, combo):
            iv = s[k[0]][k[1]]
            d[k] = iv.high if hi else iv.low
        out.append(d)
    return out


def to_inputs(s: dict, values: dict[tuple[str, str], float] | None = None) -> Inputs:
    c = s["cluster"]
    values = values or corners(s)[0]
    flop_per_sample, blobs = workload_ledger(s["workload"])

    def get(sec, key):
        v = values.get((sec, key))
        if v is not None:
            return v
        x = s[sec][key]
        return x.nominal if isinstance(x, Interval) else x

    ready = workload_blob_ready(s["workload"])
    if ready is None and c["overlap"]:  # bare params: spread them evenly over backward
        blobs, ready = spread_blobs(float(blobs.sum()))
    rate = node_rate(c, get("cluster", "device_flops") or 0.0, s["workload"],
                      get("cluster", "node_rate_reading"))
    if c["node_profile"] is None and c["device_rate_shape"] is None:
        rate.half_batch = get("cluster", "device_half_batch")
    io = s["io"]
    return Inputs(
        rate=rate, flop_per_sample=flop_per_sample, blob_bytes=blobs,
        link_latency_s=get("cluster", "link_latency_s"),
        link_bandwidth_Bps=get("cluster", "link_bandwidth_Bps"),
        allreduce=c["allreduce"], messages=c["messages"], overlap=c["overlap"],
        blob_ready=ready,
        bucket_bytes=float(get("cluster", "bucket_bytes")),
        cycle_s=float(get("cluster", "cycle_s")), fusion_bytes=float(get("cluster", "fusion_bytes")),
        update_bandwidth_Bps=get("cluster", "update_bandwidth_Bps"),
        reduce_bandwidth_Bps=get("cluster", "reduce_bandwidth_Bps"),
        devices_per_node=c["devices_per_node"],
        intra_latency_s=get("cluster", "intra_latency_s") or 0.0,
        intra_bandwidth_Bps=get("cluster", "intra_bandwidth_Bps") or 1.0,
        straggler=c["straggler"], straggler_scale=get("cluster", "straggler_scale"),
        straggler_rate_hz=get("cluster", "straggler_rate_hz"),
        ps_apply_bandwidth_Bps=get("cluster", "ps_apply_bandwidth_Bps"),
        compute_fraction=get("cluster", "compute_fraction"), nodes=c["nodes"],
        bisection_Bps=get("cluster", "bisection_Bps"), group_nodes=c["group_nodes"],
        taper=get("cluster", "taper"),
        gradient_bytes=transport.GRADIENT_BYTES[s["training"]["gradient_dtype"]],
        wire_efficiency=get("cluster", "wire_efficiency"),
        host_staging_Bps=get("cluster", "host_staging_Bps"),
        message_overhead_s=get("cluster", "message_overhead_s"),
        busy_rate_fraction=get("cluster", "busy_rate_fraction"),
        overlap_slowdown=get("cluster", "overlap_slowdown"),
        placement=c["placement"], servers_colocated=s["training"]["servers_colocated"],
        ps_placement=s["training"]["ps_placement"] or "",
        ps_pull=s["training"]["ps_pull"] or "with-push",
        fabric_slowdown=get("cluster", "fabric_slowdown"),
        flow_cap_Bps=get("cluster", "flow_cap_Bps"),
        flows_per_node=get("cluster", "flows_per_node"),
        ps_merge_bandwidth_Bps=get("cluster", "ps_merge_bandwidth_Bps"),
        io_bytes_per_sample=get("io", "bytes_per_sample"),
        io_fs_Bps=get("io", "fs_bandwidth_Bps"), io_node_Bps=get("io", "node_read_Bps"),
        io_staging=io["staging"], io_local_Bps=get("io", "local_read_Bps"),
        io_prefetch=io["prefetch"], io_prep_Sps=get("io", "node_prep_samples_per_s"),
        dataset_bytes=s["workload"]["dataset_samples"] * get("io", "bytes_per_sample"),
        convergence=convergence_model(s, get))


def convergence_model(s: dict, get=None):
    """The scenario's convergence model (None without target_loss and s_min > 0)."""
    conv = s["convergence"]
    if get is None:
        def get(sec, key):
            x = s[sec][key]
            return x.nominal if isinstance(x, Interval) else x
    if conv["target_loss"] is None or not get("convergence", "s_min") > 0:
        return None
    ref = get("convergence", "ref_momentum")
    mom = conv["momentum"]
    return Convergence(s_min=get("convergence", "s_min"), b_noise=get("convergence", "b_noise"),
                       ref_momentum=ref, gamma=get("convergence", "gamma"),
                       kappa=get("convergence", "kappa"),
                       source={"momentum": None if mom is None else mom.nominal,
                               "retune": conv["retune_momentum"]})


def configuration(s: dict) -> dict[str, Any]:
    """(strategy, workers, groups, param_servers, local batch) of the scenario's training."""
    t = s["training"]
    groups = t["workers"] if t["strategy"] == "async" else t["groups"]
    if t["batch_per_worker"] is not None:
        b = t["batch_per_worker"]
    else:
        b = t["global_batch"] // (t["workers"] // groups)
    return dict(strategy=t["strategy"], workers=t["workers"], groups=groups,
                servers=t["param_servers"], batch=b)
