"""``perfmodel node``: its arguments, validation, the measurement loop, the table and the
results file."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from pathlib import Path

import kernels
from kernels.threads import available_cores, pool_wakeup_s
from kernels.zoo import ZOO

from ..measure import node as N
from ..measure import peers
from . import node_cuda, node_framework
from .node_parts import parts_summary, parts_table
from ..provenance import run_base
from ..results import Repeats, ResultsWriter, make_row
from ..ui import (ProgressBar, UserError, default_output, positive_int, table,
                  text_stream)


def _batch_list(text: str) -> list[int]:
    try:
        out = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--sweep={text!r} must be comma-separated integers, e.g. 1,2,4,8") from None
    if not out or out[0] < 1:
        raise argparse.ArgumentTypeError(f"--sweep={text!r}: batches must be >= 1")
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--net", default="hep", help=f"network: {', '.join(kernels.NETS)} (default "
                   f"hep); with --framework also the zoo's: {', '.join(ZOO)}")
    p.add_argument("--framework", choices=["torch"], default=None,
                   help="time the framework's own training step instead of the Numba kernels "
                        "(the peers extra): per layer (hooks) and at a sweep of batches")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="where the step runs (default cpu): cuda runs the HEP net on the "
                        "Numba CUDA kernels, or with --framework the framework's step on the GPU")
    p.add_argument("--tf32", choices=["on", "off"], default=None,
                   help="with --framework torch on cuda: TF32 for matmuls and cuDNN (default: "
                        "torch's own; the setting is recorded either way)")
    p.add_argument("--model", default=None, metavar="PACKAGE.MODULE:FUNCTION",
                   help="with --framework: a callable returning your torch.nn.Module, "
                        "instead of --net (FLOP from perfmodel ledger's tracer)")
    p.add_argument("--input", default=None, metavar="C,H,W",
                   help="with --model: one sample's shape (default 3,S,S with S the "
                        "--image-size or 224)")
    p.add_argument("--all-layers", action="store_true",
                   help="with --framework: print every layer, not the 20 slowest of a big net")
    p.add_argument("--batch", type=positive_int("batch"), default=8,
                   help="local batch measured layer by layer (default 8, as in the paper)")
    p.add_argument("--threads", type=positive_int("threads"), default=None,
                   help=f"threads per process (default: all {available_cores()} cores)")
    p.add_argument("--image-size", type=positive_int("image-size"), default=None,
                   help="scaled variant: input height=width in pixels (default: published size)")
    p.add_argument("--filters", type=positive_int("filters"), default=None,
                   help="HEP only: conv width of a scaled variant (default 128)")
    p.add_argument("--dropout", type=float, default=None,
                   help="HEP only: dropout probability (default: the published 0.5; 0 as the "
                        "convergence runs train, which also names the subject hep...-d0)")
    p.add_argument("--sweep", type=_batch_list, default=None,
                   help="batches for the rate-vs-batch curve (default 1,2,4,8,16; "
                        "--quick: 1,2,4,8)")
    p.add_argument("--repeats", type=positive_int("repeats"), default=None,
                   help="timed steps per batch (default 5; --quick: 2)")
    p.add_argument("--warmup", type=positive_int("warmup"), default=1,
                   help="untimed steps before timing (default 1)")
    p.add_argument("--busy-ranks", type=positive_int("busy-ranks"), default=1,
                   help="time each step with this many ranks of the node busy: the measured "
                        "rank and ranks-1 companions training the same net and batch on the "
                        "other cores (threads each), the rate a harness rank sees beside the "
                        "others; rows carry ranks=N (default 1: alone)")
    p.add_argument("--peer", choices=["torch"], default=None,
                   help="also measure PyTorch (NCHW and channels-last) and report ratios")
    p.add_argument("--parts", action="store_true",
                   help="also print where the step's time goes: each convolution's im2col, "
                        "GEMM and layout passes per phase, the element-wise layers by kind, "
                        "the time outside the layers, and the thread pool's wake-up cost "
                        "(the CSV and --json always carry the parts)")
    p.add_argument("--quick", action="store_true",
                   help="CI-sized run: HEP at 64x64 (NERSC's small variant), fewer repeats")
    p.add_argument("--output", "-o", default=None,
                   help="results CSV (default results/node-NET-TIME.csv)")
    p.add_argument("--append", action="store_true", help="keep the rows already in --output "
                   "(e.g. a profile alone and one with --busy-ranks in one file)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _validate(args: argparse.Namespace) -> None:
    if args.framework is None:
        for flag, value in (("--model", args.model), ("--input", args.input)):
            if value is not None:
                raise UserError(f"{flag} applies to --framework torch only")
    if args.net not in kernels.NETS:
        raise UserError(f"--net={args.net!r} is not a known network (allowed: "
                        f"{', '.join(kernels.NETS)})")
    cores = available_cores()
    if args.threads is None:
        args.threads = min(cores, kernels.max_threads())
    if args.threads > cores:
        raise UserError(f"--threads={args.threads} exceeds the {cores} cores available; a "
                        f"timed run must not oversubscribe (allowed 1..{cores})")
    if args.busy_ranks * args.threads > cores:
        raise UserError(f"--busy-ranks={args.busy_ranks} x --threads={args.threads} exceeds "
                        f"the {cores} cores available (allowed ranks x threads <= {cores})")
    if args.busy_ranks > 1 and args.peer:
        raise UserError("--busy-ranks measures the numba kernels only (no --peer)")
    if args.threads > kernels.max_threads():
        raise UserError(f"--threads={args.threads} exceeds NUMBA_NUM_THREADS="
                        f"{kernels.max_threads()} (allowed 1..{kernels.max_threads()})")
    if args.peer == "torch" and not peers.torch_available():
        raise UserError(f"--peer torch needs PyTorch, which is not installed: {peers.INSTALL_HINT}")
    if args.quick:
        args.image_size = args.image_size or (64 if args.net == "hep" else 64)
        args.repeats = args.repeats or 2
        args.sweep = args.sweep or [1, 2, 4, 8]
    args.repeats = args.repeats or 5
    args.sweep = args.sweep if args.sweep is not None else [1, 2, 4, 8, 16]
    try:
        N.build_net(args.net, args.image_size, filters=args.filters, dropout=args.dropout)
    except ValueError as e:
        field = (("--filters", args.filters) if "filters" in str(e) else
                 ("--dropout", args.dropout) if "dropout" in str(e) else
                 ("--image-size", args.image_size))
        raise UserError(f"{field[0]}={field[1]}: {e}") from None


def _run_framework(args: argparse.Namespace) -> int:
    """``--framework``: the framework's step (:mod:`.node_framework`), threads checked as for
    the kernels, on the pinned cores."""
    if args.model is None and args.net not in ZOO and args.net != "hep":
        raise UserError(f"--net={args.net!r} is not measured through a framework (allowed: "
                        f"{', '.join([*ZOO, 'hep'])}; or --model package.module:function)")
    cores = available_cores()
    args.threads = args.threads or cores
    if args.threads > cores:
        raise UserError(f"--threads={args.threads} exceeds the {cores} cores available; a "
                        f"timed run must not oversubscribe (allowed 1..{cores})")
    if args.quick:
        args.image_size = args.image_size or 64
    node_framework.validate(args)
    with _pinned(args.threads):
        return node_framework.run(args)


@contextlib.contextmanager
def _pinned(threads: int):
    """With fewer threads than cores, keep the process on ``threads`` cores while it measures,
    as the harness pins its ranks (an unpinned process migrates and measured up to 20% off a
    pinned rank); the affinity is restored afterwards, for whatever runs next in-process."""
    cores = os.sched_getaffinity(0)
    if threads < len(cores):
        os.sched_setaffinity(0, set(sorted(cores)[:threads]))
    try:
        yield
    finally:
        os.sched_setaffinity(0, cores)


def run_node(args: argparse.Namespace) -> int:
    if args.framework:
        return _run_framework(args)
    if args.device == "cuda":
        for flag, value in (("--model", args.model), ("--input", args.input)):
            if value is not None:
                raise UserError(f"{flag} applies to --framework torch only")
        if args.quick:
            args.image_size = args.image_size or 64
        return node_cuda.run(args)
    _validate(args)
    args.cores = sorted(os.sched_getaffinity(0))  # before pinning: the companions' cores too
    args.base = run_base(args.threads, ranks=args.busy_ranks)  # the node's cores, not the pin
    with _pinned(args.threads):
        return _run_node(args)


def _run_node(args: argparse.Namespace) -> int:
    kernels.set_num_threads(args.threads)
    out = Path(args.output or default_output("node", args.net))
    writer = ResultsWriter(out, append=args.append)
    base = args.base
    spec = dict(name=args.net, image_size=args.image_size, filters=args.filters,
                dropout=args.dropout)
    batches = sorted(set(args.sweep) | {args.batch})
    n_steps = 2 + sum(args.repeats for _ in batches) + (2 if args.peer else 0)
    bar = ProgressBar(n_steps, f"node {args.net}", enabled=None if not args.no_progress
                      else False)

    peak_rows, best = N.peak_rows(base, args.threads, quick=args.quick)
    writer.add(peak_rows)
    bar("peak")

    main: N.StepMeasurement | None = None
    sweep = []
    for b in batches:
        net = N.build_net(args.net, args.image_size, filters=args.filters,
                          dropout=args.dropout)
        probe = N.fma_probe(args.threads, args.quick) if b == args.batch else None
        with contextlib.ExitStack() as busy:
            if args.busy_ranks > 1:  # companions on the other cores, the same net and batch
                busy.enter_context(N.BusyNode(spec, b, args.busy_ranks, args.threads,
                                                 args.cores))
            m = N.measure_step(net, b, repeats=args.repeats, warmup=args.warmup,
                               progress=bar, probe=probe)
        writer.add(m.rows(base))
        sweep.append(m)
        if b == args.batch:
            main, main_net = m, net

    # the peak again after the steps: on a shared machine the cores available can change
    # during a run, and "% of peak" should be taken against the most the machine showed
    peak_rows, after = N.peak_rows(base, args.threads, quick=args.quick)
    writer.add(peak_rows)
    best = {k: max(v, after.get(k, v)) for k, v in best.items()}
    bar("peak")

    peer = {}
    if args.peer == "torch":
        peer = _measure_peer(args, main_net, main, base, writer)
        bar("torch")

    wakeup_s = pool_wakeup_s()
    writer.add([make_row(base, what="wakeup", subject="numba_pool", metric="time",
                         value=wakeup_s, unit="s", implementation="numba")])
    text = _summary(args, main, sweep, best, peer, out)
    if args.parts:
        text += "\n\n" + parts_table(main, best, wakeup_s)
    print(text, file=text_stream(args.json))
    if args.json:
        summary = _json_summary(args, main, sweep, best, peer, out)
        summary["parts"] = parts_summary(main, wakeup_s)
        print(json.dumps(summary, indent=2))
    return 0


def _measure_peer(args, net, main: N.StepMeasurement, base, writer) -> dict:
    """Torch step times in both layouts, taken in rounds with ours (ours, torch-nchw,
    torch-channels-last, ``args.repeats`` times), per-layer times, and the ratio rows. Each
    layout maps to (its step times, its per-layer times, ours over its speed per round,
    our step times in the rounds)."""
    x, y = N.synthetic_batch(net, args.batch)
    layouts = {"torch-nchw": False, "torch-channels-last": True}
    steppers = {k: peers.torch_step(net, x, y, args.threads, cl, args.warmup)
                for k, cl in layouts.items()}
    rounds = peers.interleaved_steps(N.train_step_timer(net, x, y), steppers, args.repeats)
    del steppers  # the torch models' memory, before the per-layer runs
    result = {}
    for layout, cl in layouts.items():
        step, speed = rounds.theirs_s[layout], rounds.speed_ratio(layout)
        layers = peers.measure_layers(net, args.batch, args.threads, cl, args.repeats)
        m = N.StepMeasurement(net=main.net, batch=main.batch, image_size=main.image_size,
                              ledger=main.ledger, step_s=step, first_call_s=step.median,
                              layer_s=layers)
        rows = [r for r in m.rows(base, implementation=layout) if r["what"] != "compile"]
        ratios = [make_row(base, what="ratio", subject=main.net, phase="step", metric="ratio",
                           value=speed.median, unit="1", stat="median",
                           repeats=len(speed.samples), batch=main.batch,
                           image_size=main.image_size, implementation=f"numba/{layout}",
                           note="ours over the peer's speed, median of rounds of one step "
                                "each: ours, torch-nchw, torch-channels-last")]
        for (layer, phase), rep in layers.items():
            ours = _our_time(main, layer, phase)
            if ours and layer not in main.fused:
                theirs = _peer_time(layers, main, layer, (phase,))
                ratios.append(make_row(base, what="ratio", subject=main.net, layer=layer,
                                       phase=phase, metric="ratio", value=theirs / ours,
                                       unit="1", batch=main.batch, image_size=main.image_size,
                                       implementation=f"numba/{layout}"))
        writer.add(rows + ratios)
        result[layout] = (step, layers, speed, rounds.ours_s)
    return result


def _peer_time(lay: dict, m: N.StepMeasurement, layer: str, phases) -> float:
    """The peer's time for ``layer`` in ``phases`` (seconds), with the layers fused into it
    in ours: the same work on both sides."""
    names = [layer] + [f for f, host in m.fused.items() if host == layer]
    return sum(lay[(n, ph)].median for n in names for ph in phases if (n, ph) in lay)


def _our_time(m: N.StepMeasurement, layer: str, phase: str) -> float:
    if phase == "forward":
        rep = m.layer_s.get((layer, "forward"))
        return rep.median if rep else 0.0
    parts = [m.layer_s[k].median for k in m.layer_s
             if k[0] == layer and k[1].startswith("backward")]
    return sum(parts)


def _layer_phases(m: N.StepMeasurement, layer: str) -> list[tuple[str, Repeats]]:
    """The timed phases of one layer, each with its repeats."""
    return [(ph, m.layer_s[(layer, ph)]) for ph in
            ("forward", "backward_data", "backward_weight", "backward")
            if (layer, ph) in m.layer_s]


def _layer_totals(m: N.StepMeasurement, layer: str) -> tuple[float, float]:
    """One layer's time in s (the sum of its phases' medians) and its FLOPs."""
    phases = _layer_phases(m, layer)
    return (sum(rep.median for _, rep in phases),
            sum(m.phase_flop(layer, ph) for ph, _ in phases))


def _layer_flops(m: N.StepMeasurement) -> dict[str, float]:
    """Each timed layer's rate in FLOP/s, as the table prints it (layers with no FLOPs or
    done inside another layer left out)."""
    totals = {r.name: _layer_totals(m, r.name) for r in m.ledger if r.name not in m.fused}
    return {k: flop / t for k, (t, flop) in totals.items() if flop and t}


def _summary(args, m: N.StepMeasurement, sweep, best, peer, out: Path) -> str:
    peak = best["peak"]
    lines = [f"perfmodel node: {m.net} at {m.image_size}x{m.image_size}, batch {m.batch}, "
             f"{args.threads} thread(s), {args.repeats} timed steps (median)",
             f"measured FP32 peak (best before and after the steps): FMA loop "
             f"{best['fma'] / 1e9:.1f} GFLOP/s, sgemm {best['sgemm'] / 1e9:.1f} GFLOP/s (the "
             f"measured peak is the larger); triad bandwidth {best['triad'] / 1e9:.1f} GB/s",
             ""]
    warn = N.placement_warning(best, args.threads)
    if warn:
        lines.insert(2, warn)
    ridge = peak / best["triad"]
    rows = []
    for r in m.ledger:
        phases = _layer_phases(m, r.name)
        if not phases:
            continue
        t, flop = _layer_totals(m, r.name)
        nbytes = sum(N.phase_bytes(r, ph) for ph, _ in phases)
        ai = flop / nbytes if nbytes else 0.0
        bound = min(peak, ai * best["triad"])
        ms = {ph: f"{rep.median * 1e3:.1f}" for ph, rep in phases}
        bwd = ms.get("backward") or "/".join(ms.get(k, "-") for k in ("backward_data",
                                                                       "backward_weight"))
        paired = m.paired_fraction(r.name, [ph for ph, _ in phases]) if flop else None
        row = [r.name, ms.get("forward", "-"), bwd, f"{flop / t / 1e9:.1f}" if flop else "-",
               f"{100 * flop / t / peak:.0f}%" if flop else "-",
               f"{100 * flop / t / best['sgemm']:.0f}%" if flop else "-",
               f"{100 * paired.median:.0f}%" if paired else "-", f"{ai:.1f}",
               f"{100 * (flop / t) / bound:.0f}%" if flop and bound else "-"]
        if r.name in m.fused:  # its time and FLOPs are in the host's row
            row[1:] = ["-", "-", f"in {m.fused[r.name]}"] + ["-"] * (len(row) - 4)
        if peer:
            for layout in ("torch-nchw", "torch-channels-last"):
                tt = _peer_time(peer[layout][1], m, r.name, ("forward", "backward"))
                row.append(f"{tt / t:.2f}" if t and r.name not in m.fused else "-")
        rows.append(row)
    headers = ["layer", "fwd ms", "bwd ms (data/wt)", "GFLOP/s", "% peak", "% sgemm",
               "% paired", "FLOP/B", "% roofline"]
    if peer:
        headers += ["torch/ours nchw", "torch/ours cl"]
    lines.append(table(headers, rows))
    probes = m.probe_flops
    if probes:
        lines.append(f"(% paired: each step's rate over an FMA probe run right after it, "
                     f"median of the steps; probes {min(probes) / 1e9:.0f}-"
                     f"{max(probes) / 1e9:.0f} GFLOP/s)")
    lines.append(f"(roofline ridge at {ridge:.1f} FLOP/B; ratios > 1: ours faster; torch "
                 "per-layer times taken layer by layer in isolation)")
    lines.append("")
    ps = m.paired_step_fraction()
    paired_step = f" ({100 * ps.median:.0f}% paired)" if ps else ""
    lines.append(f"step: {m.step_s.median:.3f} s (min {m.step_s.min:.3f}, max "
                 f"{m.step_s.max:.3f}), {m.samples_per_s:.2f} samples/s, "
                 f"{m.flop_rate / 1e9:.1f} GFLOP/s = {100 * m.flop_rate / peak:.0f}% of the "
                 f"measured peak{paired_step}, {100 * m.flop_rate / best['sgemm']:.0f}% of "
                 f"sgemm's ({m.ledger.step_flop / m.batch / 1e9:.2f} GFLOP "
                 f"per sample); "
                 f"first call +{max(m.first_call_s - m.step_s.median, 0):.2f} s (JIT)")
    for layout, (step, _, speed, ours) in peer.items():
        lines.append(f"{layout}: {step.median:.3f} s, {m.batch / step.median:.2f} samples/s; "
                     f"ours/{layout} speed = {speed.median:.2f} (rounds {speed.min:.2f}-"
                     f"{speed.max:.2f}; ours {ours.median:.3f} s in the rounds)")
    if peer:
        lines.append(f"(ours/torch: the median over {args.repeats} rounds of one step each, "
                     "ours then torch-nchw then torch-channels-last, of the torch step's time "
                     "over ours in the round)")
    lines.append("")
    lines.append(table(["batch", "step s", "samples/s", "GFLOP/s"],
                       [[s.batch, f"{s.step_s.median:.3f}", f"{s.samples_per_s:.2f}",
                         f"{s.flop_rate / 1e9:.1f}"] for s in sweep]))
    lines.append(f"\nresults: {out}")
    return "\n".join(lines)


def _json_summary(args, m: N.StepMeasurement, sweep, best, peer, out: Path) -> dict:
    return {
        "net": m.net, "image_size": m.image_size, "batch": m.batch, "threads": args.threads,
        "peak_fma_flops": best["fma"], "peak_sgemm_flops": best["sgemm"],
        "peak_flops": best["peak"],
        "fma_1thread_flops": best.get("fma_1thread"),
        "placement_warning": N.placement_warning(best, args.threads),
        "triad_bandwidth_Bps": best["triad"],
        "fma_probe_flops": m.probe_flops,
        "paired_peak_fraction": {
            r.name: p.median for r in m.ledger
            if (p := m.paired_fraction(r.name, ["forward", "backward_data", "backward_weight",
                                                "backward"])) is not None},
        "layer_flops": (rates := _layer_flops(m)),
        "layer_sgemm_fraction": {k: v / best["sgemm"] for k, v in rates.items()},
        "step_time_s": m.step_s.median, "samples_per_s": m.samples_per_s,
        "step_flops": m.flop_rate, "step_sgemm_fraction": m.flop_rate / best["sgemm"],
        "rate_vs_batch": [{"batch": s.batch, "samples_per_s": s.samples_per_s,
                           "flops": s.flop_rate} for s in sweep],
        "peer": {k: {"step_time_s": v[0].median,
                     "speed_ratio_ours_over_peer": v[2].median,
                     "speed_ratio_rounds": v[2].samples,
                     "ours_step_time_s_in_rounds": v[3].median}
                 for k, v in peer.items()},
        "results_file": str(out),
    }
