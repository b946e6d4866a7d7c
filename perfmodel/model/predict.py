"""One scenario in, one prediction out (with intervals); sweeps over configurations; the
step of one configuration as a timeline."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd

from ..ui import UserError
from . import scenario as SC
from . import timeline as TL
from .keys import current_key
from .throughput import STRATEGY_CODE, evaluate, message_s, messages, pull_s

INTERVAL_KEYS = ("throughput_samples_per_s", "efficiency", "step_time_s", "time_to_target_s")
KEYS = ("throughput_samples_per_s", "throughput_flops", "peak_throughput_flops", "efficiency",
        "speedup", "step_time_s", "steps_to_target", "time_to_target_s")
BREAKDOWN = ("compute_s", "comm_s", "overlap_s", "update_s", "ps_s", "straggler_s", "io_s")


def predict(s: dict) -> dict[str, Any]:
    """The prediction of a validated scenario: nominal values, breakdown and intervals (the
    range over every corner of the uncertain inputs)."""
    cfg = SC.configuration(s)
    runs = [evaluate(SC.to_inputs(s, v), **cfg) for v in SC.corners(s)]
    nominal = runs[0]

    def val(d, k):
        x = float(np.asarray(d[k]).reshape(-1)[0])
        return None if np.isnan(x) else x

    out: dict[str, Any] = {k: val(nominal, k) for k in KEYS}
    out["breakdown"] = {k: val(nominal, k) for k in BREAKDOWN}
    out["interval"] = {}
    for k in KEYS + BREAKDOWN:
        xs = [val(r, k) for r in runs]
        xs = [x for x in xs if x is not None]
        out["interval"][k] = [min(xs), max(xs)] if xs else None
    out["configuration"] = cfg
    c = s["cluster"]
    out["node_peak_fraction"] = out["throughput_flops"] / (cfg["workers"]
                                                           * c["device_peak_flops"].nominal)
    if s["workload"]["dataset_samples"]:
        out["epoch_time_s"] = s["workload"]["dataset_samples"] / out["throughput_samples_per_s"]
    out["assumptions"] = assumptions(s)
    return out


def assumptions(s: dict) -> list[str]:
    """What a prediction of ``s`` assumes that the scenario does not state: nothing is assumed
    silently."""
    c, out = s["cluster"], []
    half = c["device_half_batch"]
    if c["node_profile"] is None and c["device_rate_shape"] is None and not half.high > 0:
        out.append("node rate: the same at every local batch (no node_profile, "
                   "device_rate_shape or device_half_batch): at small batches a device runs "
                   "slower, so strong scaling is optimistic; give a measured shape "
                   "(perfmodel node --sweep) or an interval")
    if c["node_profile"] is None and c["devices_per_node"] > 1 \
            and c["busy_rate_fraction"].low >= 1:
        out.append("compute beside others: a device runs as fast beside the node's other "
                   "devices as alone (cluster.busy_rate_fraction = 1)")
    if c["overlap"] and not c["overlap_slowdown"].high > 0:
        out.append("overlap: hidden communication costs the compute nothing "
                   "(cluster.overlap_slowdown = 0)")
    return out


def parse_vary(text: str) -> tuple[str, str, np.ndarray]:
    """``section.key=a:b`` (all integers a..b), ``a:b:n`` (n log-spaced integers) or
    ``x,y,z`` (a list; strategies by name)."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise UserError(f"--vary {text!r}: expected section.key=a:b, a:b:n or x,y,z")
    path, spec = text.split("=", 1)
    sec, key = path.strip().split(".", 1)
    allowed = {"training": ("workers", "groups", "param_servers", "batch_per_worker",
                            "global_batch", "strategy")}
    if key not in allowed.get(sec, ()):
        raise UserError(f"--vary {path}: only training.{{{', '.join(allowed['training'])}}} "
                        "can be varied")
    try:
        if key == "strategy":
            vals = [v.strip() for v in spec.split(",")]
            bad = [v for v in vals if v not in STRATEGY_CODE]
            if bad:
                raise UserError(f"--vary {path}: {bad[0]!r} is not a strategy")
            return sec, key, np.array([STRATEGY_CODE[v] for v in vals])
        if ":" in spec:
            parts = [int(p) for p in spec.split(":")]
            if len(parts) == 2:
                arr = np.arange(parts[0], parts[1] + 1)
            elif len(parts) == 3:
                arr = np.unique(np.round(np.geomspace(parts[0], parts[1], parts[2])).astype(int))
            else:
                raise ValueError
        else:
            arr = np.array([int(v) for v in spec.split(",")])
    except ValueError:
        raise UserError(f"--vary {text!r}: expected integers as a:b, a:b:n or x,y,z") from None
    if arr.size == 0 or arr.min() < (0 if key == "param_servers" else 1):
        raise UserError(f"--vary {text!r}: values out of range")
    return sec, key, arr


TRAINING_AXES = ("workers", "groups", "param_servers", "batch_per_worker", "global_batch",
                 "strategy")


def split_varies(varies: list[str]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(the training axes, evaluated at once; the other keys with their values as --set
    texts, each value a scenario of its own)."""
    grid, other = [], []
    for text in varies:
        if "=" not in text or "." not in text.split("=", 1)[0]:
            raise UserError(f"--vary {text!r}: expected section.key=SPEC")
        path, spec = text.split("=", 1)
        sec, key = path.strip().split(".", 1)
        key = current_key(sec, key, "--vary")
        text = f"{sec}.{key}={spec}"
        if sec == "training" and key in TRAINING_AXES:
            grid.append(text)
            continue
        if sec not in SC.SCHEMA or key not in SC.SCHEMA[sec]:
            raise UserError(f"--vary {path}: not a key of the scenario (see docs/scenario.md)")
        typ = SC.SCHEMA[sec][key][0]
        vals = [v.strip() for v in spec.split(",") if v.strip()]
        if typ in ("num", "int") and ":" in spec and "," not in spec:
            parts = spec.split(":")
            try:
                lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2]) if len(parts) > 2 \
                    else 5
            except (ValueError, IndexError):
                raise UserError(f"--vary {text!r}: expected a:b:n (n log-spaced values) or "
                                "x,y,z") from None
            if not 0 < lo <= hi or n < 1:
                raise UserError(f"--vary {text!r}: a:b:n needs 0 < a <= b and n >= 1")
            arr = np.geomspace(lo, hi, n)
            vals = [str(int(round(v))) if typ == "int" else repr(float(v)) for v in arr]
        if not vals:
            raise UserError(f"--vary {text!r}: no values")
        quote = typ == "str"
        other.append((f"{sec}.{key}", [f'{sec}.{key}="{v}"' if quote and not v.startswith('"')
                                       else f"{sec}.{key}={v}" for v in vals]))
    return grid, other


def sweep(s: dict, varies: list[str], reload=None, intervals: bool = False) -> pd.DataFrame:
    """Every combination of the varied values. The training axes (workers, groups, servers,
    batch, strategy) are evaluated at once, vectorized; any other key of the scenario
    (``cluster.link_bandwidth_Bps``, ``training.gradient_dtype``, ``cluster.messages``...) makes
    a scenario per value, ``reload(sets)`` loading it. With ``intervals``, each prediction's
    range over every corner of the uncertain inputs (the cost: one evaluation per corner).
    Combinations that break the scenario's rules are dropped."""
    grid, other = split_varies(varies)
    if other and reload is None:
        raise UserError("--vary of a key outside training needs the scenario to reload")
    frames, dropped = [], 0
    for combo in itertools.product(*[vals for _, vals in other]):
        s2 = reload(list(combo)) if other else s
        df = _sweep_training(s2, grid, intervals)
        dropped += df.attrs["dropped"]
        for (key, _), text in zip(other, combo):
            df.insert(0, key, text.split("=", 1)[1].strip('"'))
        frames.append(df)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    out.attrs["dropped"] = dropped
    return out


def _sweep_training(s: dict, varies: list[str], intervals: bool = False) -> pd.DataFrame:
    """Every combination of the varied training values, evaluated at once (vectorized).
    Combinations that break the scenario's rules (groups that do not divide the workers, more
    ranks than the cluster, a strategy without its servers) are dropped."""
    cfg = SC.configuration(s)
    t = s["training"]
    base = dict(strategy=STRATEGY_CODE[cfg["strategy"]], workers=cfg["workers"],
                groups=cfg["groups"], param_servers=cfg["servers"],
                batch_per_worker=t["batch_per_worker"], global_batch=t["global_batch"])
    axes = {}
    for v in varies:
        _, key, arr = parse_vary(v)
        axes[key] = arr
    names = list(axes)
    grids = np.meshgrid(*axes.values(), indexing="ij") if axes else []
    cols = {k: np.asarray(base[k]) if base[k] is not None else None for k in base}
    for k, g in zip(names, grids):
        cols[k] = g.reshape(-1)
    size = grids[0].size if grids else 1
    full = {k: (np.broadcast_to(v, (size,)) if v is not None else None) for k, v in cols.items()}
    w, g, ps, strat = (full[k].astype(float) if k != "strategy" else full[k]
                       for k in ("workers", "groups", "param_servers", "strategy"))
    g = np.where(strat == 0, 1, np.where(strat == 1, w, g))
    ps = np.where(strat == 0, 0, ps)
    if full["global_batch"] is not None and "batch_per_worker" not in names:
        per_group = w / g
        b = full["global_batch"] / per_group
        ok_b = np.isclose(b, np.round(b)) & (b >= 1)
    else:
        b = full["batch_per_worker"].astype(float)
        ok_b = b >= 1
    devices = s["cluster"]["nodes"] * s["cluster"]["devices_per_node"]
    ok = ok_b & (g <= w) & (np.mod(w, g) == 0) & (w + ps <= devices) \
        & ((strat == 0) | (ps >= 1))
    inp = SC.to_inputs(s)
    res = evaluate(inp, strat[ok], w[ok], g[ok], ps[ok], b[ok])
    df = pd.DataFrame({"strategy": np.array(list(STRATEGY_CODE))[strat[ok]],
                       "workers": w[ok].astype(int), "groups": g[ok].astype(int),
                       "param_servers": ps[ok].astype(int), "batch_per_worker": b[ok]})
    for k in KEYS + BREAKDOWN + ("peak_step_time_s",):
        df[k] = res[k]
    if intervals:  # the range over every corner of the uncertain inputs, key by key
        lo = {k: np.asarray(res[k], float).copy() for k in INTERVAL_KEYS}
        hi = {k: v.copy() for k, v in lo.items()}
        for values in SC.corners(s)[1:]:
            r = evaluate(SC.to_inputs(s, values), strat[ok], w[ok], g[ok], ps[ok], b[ok])
            for k in INTERVAL_KEYS:
                np.fmin(lo[k], r[k], out=lo[k])
                np.fmax(hi[k], r[k], out=hi[k])
        for k in INTERVAL_KEYS:
            df.insert(df.columns.get_loc(k) + 1, f"{k}_low", lo[k])
            df.insert(df.columns.get_loc(k) + 2, f"{k}_high", hi[k])
    df.attrs["dropped"] = int((~ok).sum())
    return df


def step_timeline(s: dict) -> dict:
    """The scenario configuration's step as a timeline (nominal inputs): compute, then each
    in-group message's ready, start and end times, and the exposed part; ``pull_s``: the
    pull of all the weights before the forward (``training.ps_pull = "step-start"``)."""
    inp = SC.to_inputs(s)
    cfg = SC.configuration(s)
    res = evaluate(inp, cfg["strategy"], cfg["workers"], cfg["groups"], cfg["servers"],
                   cfg["batch"])
    t_c = float(res["compute_s"])
    n = cfg["workers"] / (cfg["workers"] if cfg["strategy"] == "async" else cfg["groups"])
    servers = cfg["strategy"] != "sync" and cfg["servers"] >= 1  # root's round trip rides along
    sync_servers = cfg["servers"] if cfg["strategy"] == "sync" and cfg["servers"] >= 1 \
        else None  # synchronous servers: every worker pushes and pulls

    def cost(q, x):
        return message_s(inp, q, x, servers, sync_servers)

    if inp.messages == "horovod":  # its buffers follow the cycles: the recurrence records them
        rows: list = []
        _, total = TL.horovod(np.array([t_c]), cost, np.array([n]), inp.wire_blob_bytes,
                              inp.blob_ready, inp.overlap, inp.cycle_s, inp.fusion_bytes,
                              rows=rows)
        comm = float(total[0])
    else:
        nb, ready = messages(inp)
        costs = [float(cost(np.array([n]), float(b))[0]) for b in nb]
        rows = TL.schedule(t_c, costs, nb, ready, inp.overlap)
        comm = float(sum(costs))
    return dict(compute_s=t_c, group_size=n, messages=inp.messages, overlap=inp.overlap,
                servers=servers, overlap_s=float(res["overlap_s"]),
                exposed_s=max(0.0, (rows[-1]["end_s"] if rows else t_c) - t_c),
                pull_s=(float(pull_s(inp, n, cfg["servers"])) if sync_servers is not None
                        and inp.ps_pull == "step-start" else 0.0),
                communication_s=comm, schedule=rows)
