"""Where a measured step's time goes: ``perfmodel node --parts``.

From one :class:`~perfmodel.measure.node.StepMeasurement`: each convolution's passes per phase
(im2col, the GEMM, layout: NCHW to and from the GEMM's layout, the bias, col2im), the other
layers summed by kind, the step's time outside every layer (the loss, Python between layers,
the timers), and the measured cost of waking the Numba thread pool for one parallel region.
Times are medians over the timed steps, in ms; a GEMM's rate is the phase's ledger FLOP (2 per
multiply-add, the bias included) over the GEMM's time alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..measure import node as N
from ..ui import table

PARTS = ("im2col", "gemm", "layout")
PHASES = ("forward", "backward_data", "backward_weight")


def _outside_s(m: N.StepMeasurement) -> float:
    """Median over the timed steps of step time minus the sum of every timed layer phase."""
    n = len(m.step_s.samples)
    reps = [r for r in m.layer_s.values() if len(r.samples) == n]
    return float(np.median([m.step_s.samples[i] - sum(r.samples[i] for r in reps)
                            for i in range(n)]))


def parts_summary(m: N.StepMeasurement, wakeup_s: float) -> dict[str, Any]:
    """Machine-readable parts: ``conv`` rows {layer, phase, <part>_s..., phase_s, other_s (the
    phase's time outside its parts: Python, scratch buffers)}, ``fused`` {layer: the layer
    whose time includes its work}, ``kinds``
    {kind: seconds of all its layers' phases}, ``outside_layers_s`` and ``pool_wakeup_s``."""
    conv = []
    convs = {layer for layer, _, _ in m.parts_s}
    for r in m.ledger:
        if r.name not in convs:
            continue
        for ph in PHASES:
            got = {part: m.parts_s[(r.name, ph, part)].median for part in PARTS
                   if (r.name, ph, part) in m.parts_s}
            if not got:
                continue
            rep = m.layer_s.get((r.name, ph))
            total = rep.median if rep else 0.0
            other = 0.0  # per step, the phase less its parts; then the median over the steps
            if rep:
                parts = [m.parts_s[(r.name, ph, p)].samples for p in PARTS
                         if (r.name, ph, p) in m.parts_s]
                other = float(np.median([t - sum(p[i] for p in parts)
                                         for i, t in enumerate(rep.samples)]))
            conv.append(dict(layer=r.name, phase=ph, phase_s=total, other_s=other,
                             flop=m.phase_flop(r.name, ph),
                             **{f"{p}_s": got.get(p, 0.0) for p in PARTS}))
    kinds: dict[str, float] = {}
    for r in m.ledger:
        if r.name in convs or r.name in m.fused:  # a fused layer's time is in its host's
            continue
        reps = [rep.median for (name, _), rep in m.layer_s.items() if name == r.name]
        if reps:  # the loss is timed apart from the ledger's layers: outside_layers_s
            kinds[r.kind] = kinds.get(r.kind, 0.0) + sum(reps)
    if ("update", "update") in m.layer_s:
        kinds["update"] = m.layer_s[("update", "update")].median
    return dict(conv=conv, kinds=kinds, fused=dict(m.fused), outside_layers_s=_outside_s(m),
                step_s=m.step_s.median, pool_wakeup_s=wakeup_s)


def parts_table(m: N.StepMeasurement, best: dict[str, float], wakeup_s: float) -> str:
    """The text of ``--parts``: convolutions by phase and pass, then the rest of the step."""
    d = parts_summary(m, wakeup_s)
    sgemm = best["sgemm"]
    rows = []
    for c in d["conv"]:
        rate = c["flop"] / c["gemm_s"] if c["gemm_s"] > 0 else 0.0
        rows.append([c["layer"], c["phase"].replace("backward_", "bwd "),
                     f"{c['phase_s'] * 1e3:.1f}", f"{c['im2col_s'] * 1e3:.1f}",
                     f"{c['gemm_s'] * 1e3:.1f}", f"{rate / 1e9:.0f}" if rate else "-",
                     f"{100 * rate / sgemm:.0f}%" if rate else "-",
                     f"{c['layout_s'] * 1e3:.1f}", f"{c['other_s'] * 1e3:.1f}"])
    lines = [f"where the time goes (median of the timed steps; step {d['step_s'] * 1e3:.1f} ms)",
             table(["layer", "phase", "ms", "im2col", "GEMM", "GEMM GFLOP/s", "% sgemm",
                    "layout+bias", "other"], rows)]
    conv_s = sum(c["phase_s"] for c in d["conv"])
    rest = [["convolutions", f"{conv_s * 1e3:.1f}"]]
    rest += [[k, f"{v * 1e3:.1f}"] for k, v in sorted(d["kinds"].items(), key=lambda kv: -kv[1])]
    rest.append(["outside the layers (loss, Python, timers)",
                 f"{d['outside_layers_s'] * 1e3:.1f}"])
    lines += ["", table(["part of the step", "ms"], rest)]
    if d["fused"]:
        lines.append("(done inside another layer, timed there: " + ", ".join(
            f"{f} in {host}" for f, host in d["fused"].items()) + ")")
    lines += [
              f"(thread pool: {wakeup_s * 1e6:.0f} us to wake it for one parallel region "
              f"after 2 ms idle, median of 50; sgemm peak {sgemm / 1e9:.1f} GFLOP/s)"]
    return "\n".join(lines)
