"""``perfmodel node --device cuda``: the paper's nets on the Numba CUDA kernels, with the GPU's
FMA-chain peak and triad bandwidth (:mod:`perfmodel.measure.gpu`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import kernels
from kernels import cuda as kc

from ..measure import gpu
from ..provenance import run_base
from ..results import ResultsWriter, make_row
from ..ui import ProgressBar, UserError, default_output, table, text_stream

IMPL = "numba-cuda"


def run(args: argparse.Namespace) -> int:
    if not kc.available():
        raise UserError("--device=cuda: Numba sees no CUDA device here (allowed: cpu; or "
                        "cuda on a machine with an NVIDIA GPU and its driver, or with "
                        "NUMBA_ENABLE_CUDASIM=1 for a functional run on the simulator)")
    if args.net not in kernels.NETS:
        raise UserError(f"--net={args.net!r} --device=cuda: the Numba CUDA kernels run the "
                        f"paper's nets (allowed: {', '.join(kernels.NETS)}; other nets through "
                        "--framework torch)")
    if args.filters is not None and args.net != "hep":
        raise UserError(f"--filters={args.filters} applies to the HEP net only "
                        f"(--net={args.net!r})")
    if args.busy_ranks > 1 or args.peer:
        raise UserError("--device=cuda measures the GPU alone (no --busy-ranks, no --peer)")
    repeats = args.repeats or (2 if args.quick else 5)
    batches = sorted(set(args.sweep or [1, 2, 4, 8, 16]) | {args.batch})
    base = run_base(1)
    base["versions"] = f"{base['versions']};{gpu.device_versions()}"
    out = Path(args.output or default_output("node", f"{args.net}-cuda"))
    writer = ResultsWriter(out, append=args.append)
    bar = ProgressBar(2 + repeats * len(batches), f"node {args.net} ({IMPL})",
                      enabled=False if args.no_progress else None)
    peak, peak_flop = gpu.fma_peak()
    bw, bw_bytes = gpu.triad_bandwidth()
    writer.add([make_row(base, what="peak", subject="fma", metric="flop_rate", value=peak.max,
                         unit="FLOP/s", stat="max", min=peak.min, max=peak.max,
                         repeats=len(peak.samples), flop=peak_flop, implementation=IMPL),
                make_row(base, what="bandwidth", subject="triad", metric="bandwidth",
                         value=bw.max, unit="B/s", stat="max", min=bw.min, max=bw.max,
                         repeats=len(bw.samples), bytes=bw_bytes, implementation=IMPL)])
    bar("peak")
    sweep = []
    for b in batches:
        m = gpu.measure_step(args.net, b, args.image_size, args.filters, repeats, args.warmup,
                             progress=bar)
        writer.add(m.rows(base, implementation=IMPL))
        sweep.append(m)
    main = next(m for m in sweep if m.batch == args.batch)
    sim = " (simulator: functional, not a figure)" if kc.simulated() else ""
    rows = []
    for r in main.ledger:
        f = main.layer_s.get((r.name, "forward"))
        bk = main.layer_s.get((r.name, "backward"))
        if f is None:
            continue
        t = f.median + (bk.median if bk else 0.0)
        rows.append([r.name, f"{f.median * 1e3:.3f}", f"{bk.median * 1e3:.3f}" if bk else "-",
                     f"{r.train_flop / t / 1e9:.1f}" if r.train_flop else "-",
                     f"{100 * r.train_flop / t / peak.max:.1f}%" if r.train_flop else "-"])
    text = text_stream(args.json)
    print(f"perfmodel node --device cuda: {main.net} at {main.image_size}x{main.image_size}, "
          f"batch {main.batch}, {IMPL}{sim}\nFMA-chain peak {peak.max / 1e9:.1f} GFLOP/s, "
          f"triad {bw.max / 1e9:.1f} GB/s\n", file=text)
    print(table(["layer", "fwd ms", "bwd ms", "GFLOP/s", "% peak"], rows), file=text)
    print(file=text)
    print(table(["batch", "step s", "samples/s", "GFLOP/s"],
                [[m.batch, f"{m.step_s.median:.4f}", f"{m.samples_per_s:,.1f}",
                  f"{m.flop_rate / 1e9:.1f}"] for m in sweep]), file=text)
    print(f"\nresults: {out}", file=text)
    if args.json:
        print(json.dumps({
            "net": main.net, "device": "cuda", "implementation": IMPL,
            "simulator": kc.simulated(), "image_size": main.image_size, "batch": main.batch,
            "peak_fma_flops": peak.max, "triad_bandwidth_Bps": bw.max,
            "step_time_s": main.step_s.median, "samples_per_s": main.samples_per_s,
            "step_flops": main.flop_rate,
            "conv_peak_fraction": {r.name: r.train_flop / sum(
                main.layer_s[k].median for k in main.layer_s if k[0] == r.name) / peak.max
                for r in main.ledger if r.kind == "conv"},
            "rate_vs_batch": [{"batch": m.batch, "samples_per_s": m.samples_per_s,
                               "flops": m.flop_rate} for m in sweep],
            "results_file": str(out)}, indent=2))
    return 0
