"""``perfmodel node --framework torch``: a framework's own training step, per layer and at a
sweep of batches, on the CPU or a GPU (:mod:`perfmodel.measure.framework`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..measure import framework as FW
from ..measure import peers
from ..provenance import run_base
from ..results import ResultsWriter, make_row
from ..ui import ProgressBar, UserError, default_output, table, text_stream


def default_sweep(batch: int) -> list[int]:
    """Powers of two from batch / 8 (at least 1) up to ``batch``, and ``batch`` itself."""
    out, b = {batch}, max(1, batch // 8)
    while b < batch:
        out.add(b)
        b *= 2
    return sorted(out)


def validate(args: argparse.Namespace) -> None:
    if args.framework not in FW.FRAMEWORKS:
        raise UserError(f"--framework={args.framework!r} is not supported (allowed: "
                        f"{', '.join(FW.FRAMEWORKS)})")
    if not FW.torch_available():
        raise UserError(f"--framework torch needs PyTorch, which is not installed: "
                        f"{peers.INSTALL_HINT}")
    if args.busy_ranks > 1 or args.peer:
        raise UserError("--framework measures the framework alone (no --busy-ranks, no --peer)")
    if args.device == "cuda":
        import torch  # optional peer (the peers extra), imported only when measured

        if not torch.cuda.is_available():
            raise UserError("--device=cuda: torch sees no CUDA device here (allowed: cpu, or "
                            "cuda on a machine with an NVIDIA GPU and a CUDA build of torch)")
    if args.input is not None and args.model is None:
        raise UserError("--input applies to --model only")


def _shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        dims = tuple(int(t) for t in text.split(","))
    except ValueError:
        dims = ()
    if not dims or min(dims) < 1:
        raise UserError(f"--input={text!r} must be C,H,W of one sample, e.g. 3,224,224")
    return dims


def run(args: argparse.Namespace) -> int:
    validate(args)
    import torch  # optional peer (the peers extra), imported only when measured

    torch.set_num_threads(args.threads)
    if args.tf32 is not None:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = (
            args.tf32 == "on")
    s = FW.subject(None if args.model else args.net, args.model, args.image_size,
                   _shape(args.input))
    args.repeats = args.repeats or (2 if args.quick else 5)
    batches = sorted(set(args.sweep or default_sweep(args.batch)) | {args.batch})
    impl = f"torch-{args.device}"
    base = run_base(args.threads)
    base["versions"] = f"{base['versions']};{FW.device_info(args.device, args.threads)}"
    if args.device == "cuda":
        base["cpu_model"] = f"{base['cpu_model']} (host)"
    label = s.name.replace(":", "-").replace("/", "-")
    out = Path(args.output or default_output("node", label))
    writer = ResultsWriter(out, append=args.append)
    bar = ProgressBar(1 + args.repeats * (len(batches) + 1), f"node {label} ({impl})",
                      enabled=False if args.no_progress else None)

    peak = FW.matmul_peak_flops(args.device, 1024 if args.quick else 2048)
    writer.add([make_row(base, what="peak", subject="matmul", metric="flop_rate", value=peak,
                         unit="FLOP/s", stat="max", implementation=impl,
                         note="torch FP32 matmul, TF32 off")])
    bar("peak")
    common = dict(subject=s.name, image_size=s.image_size, implementation=impl)
    sweep = []
    for b in batches:
        st = FW.measure_step(s, b, args.device, args.repeats, args.warmup, progress=bar)
        flop = s.step_flop(b)
        kw = dict(common, what="step", phase="step", batch=b, flop=flop,
                  repeats=len(st.samples))
        writer.add([make_row(base, metric="time", value=st.median, unit="s", min=st.min,
                             max=st.max, **kw),
                    make_row(base, metric="sample_rate", value=b / st.median,
                             unit="samples/s", min=b / st.max, max=b / st.min, **kw),
                    make_row(base, metric="flop_rate", value=flop / st.median, unit="FLOP/s",
                             min=flop / st.max, max=flop / st.min, **kw)])
        sweep.append((b, st, flop))

    layers, limit = FW.measure_layers(s, args.batch, args.device, args.repeats, args.warmup)
    bar("layers")
    s.note = limit
    note = "; ".join(t for t in ("per-layer steps with in-place off (hooks)", limit) if t)
    for name, kind, _, fwd, bwd in s.rows:
        for phase, f in (("forward", fwd), ("backward", bwd)):
            rep = layers.get((name, phase))
            if rep is None:
                continue
            flop = f * args.batch
            kw = dict(common, what="layer", layer=name, phase=phase, batch=args.batch,
                      flop=flop, repeats=len(rep.samples), note=note)
            rows = [make_row(base, metric="time", value=rep.median, unit="s", min=rep.min,
                             max=rep.max, **kw)]
            if flop:
                rows.append(make_row(base, metric="flop_rate", value=flop / rep.median,
                                     unit="FLOP/s", min=flop / rep.max, max=flop / rep.min,
                                     **kw))
            writer.add(rows)
    main = next(st for b, st, _ in sweep if b == args.batch)
    print(_summary(args, s, impl, peak, sweep, layers, main, out), file=text_stream(args.json))
    if args.json:
        print(json.dumps(_json(args, s, impl, peak, sweep, layers, main, out), indent=2))
    return 0


def _summary(args, s: FW.Subject, impl: str, peak: float, sweep, layers, main, out) -> str:
    lines = [f"perfmodel node --framework torch: {s.name} at {s.image_size}x{s.image_size}, "
             f"batch {args.batch}, {impl}, {args.threads} thread(s), {args.repeats} timed "
             f"steps (median)",
             f"FP32 matmul peak (torch, TF32 off): {peak / 1e9:.1f} GFLOP/s; FLOP from the "
             f"ledger, 2 per multiply-add", ""]
    rows = []
    for name, kind, _, fwd, bwd in s.rows:
        f, b = layers.get((name, "forward")), layers.get((name, "backward"))
        if f is None and b is None:
            continue
        t = (f.median if f else 0.0) + (b.median if b else 0.0)
        flop = (fwd + bwd) * args.batch
        rows.append([name, kind, f"{f.median * 1e3:.2f}" if f else "-",
                     f"{b.median * 1e3:.2f}" if b else "-",
                     f"{flop / t / 1e9:.1f}" if flop and t else "-",
                     f"{100 * flop / t / peak:.0f}%" if flop and t else "-"])
    if len(rows) > 40 and not args.all_layers:  # the heaviest, in forward order
        keep = sorted(range(len(rows)), key=lambda i: -(float(rows[i][2].replace("-", "0"))
                                                        + float(rows[i][3].replace("-", "0"))))
        keep = sorted(keep[:20])
        shown = len(rows)
        rows = [rows[i] for i in keep]
        lines.append(f"the 20 slowest of {shown} layers (--all-layers: every one; the CSV has "
                     "them all)")
    lines.append(table(["layer", "kind", "fwd ms", "bwd ms", "GFLOP/s", "% peak"], rows))
    timed = sum(v.median for v in layers.values())
    lines.append(f"(layer times from separate hooked steps sum to {timed:.3f} s; the step "
                 f"without hooks, loss and update included, takes {main.median:.3f} s)")
    lines.append("")
    lines.append(table(["batch", "step s", "samples/s", "GFLOP/s", "% peak"],
                       [[b, f"{st.median:.4f}", f"{b / st.median:,.1f}",
                         f"{flop / st.median / 1e9:.1f}",
                         f"{100 * flop / st.median / peak:.0f}%"] for b, st, flop in sweep]))
    if s.note:
        lines.append(s.note)
    if s.uncounted:
        lines.append(f"counted as 0 FLOP (not understood): {', '.join(s.uncounted[:6])}"
                     + (" ..." if len(s.uncounted) > 6 else ""))
    lines.append(f"\nresults: {out}  (a scenario's cluster.node_profile can name it; its "
                 f"workload.net = \"{s.name}\")")
    return "\n".join(lines)


def _json(args, s: FW.Subject, impl, peak, sweep, layers, main, out) -> dict:
    per_layer = []
    for name, kind, _, fwd, bwd in s.rows:
        f, b = layers.get((name, "forward")), layers.get((name, "backward"))
        per_layer.append({"layer": name, "kind": kind,
                          "forward_flop": fwd * args.batch, "backward_flop": bwd * args.batch,
                          "forward_s": f.median if f else None,
                          "backward_s": b.median if b else None})
    return {
        "net": s.name, "framework": "torch", "device": args.device, "implementation": impl,
        "image_size": s.image_size, "batch": args.batch, "threads": args.threads,
        "peak_matmul_flops": peak, "step_time_s": main.median,
        "samples_per_s": args.batch / main.median,
        "step_flops": s.step_flop(args.batch) / main.median,
        "layer_flop_total": sum(r["forward_flop"] + r["backward_flop"] for r in per_layer),
        "ledger_train_flop": s.train_flop_per_sample * args.batch,
        "layers": per_layer,
        "rate_vs_batch": [{"batch": b, "samples_per_s": b / st.median,
                           "flops": flop / st.median} for b, st, flop in sweep],
        "uncounted": s.uncounted, "note": s.note,
        "results_file": str(out),
    }

