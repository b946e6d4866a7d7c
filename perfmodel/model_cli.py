"""``perfmodel predict``, ``sweep`` and ``reproduce``: terminal tables and JSON."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from . import scenario as SC
from .predict import BREAKDOWN, predict, sweep
from .ui import UserError, table


def _fmt(x, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if unit and abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.4g} {unit}".strip()


def step_timeline(s: dict) -> dict:
    """The scenario configuration's step as a timeline (nominal inputs): compute, then each
    in-group message's ready, start and end times, and the exposed part."""
    import numpy as np

    from .model import timeline as TL
    from .model.throughput import evaluate, message_s, messages

    inp = SC.to_inputs(s)
    cfg = SC.configuration(s)
    res = evaluate(inp, cfg["strategy"], cfg["workers"], cfg["groups"], cfg["servers"],
                   cfg["batch"])
    t_c = float(res["compute_s"])
    n = cfg["workers"] / (cfg["workers"] if cfg["strategy"] == "async" else cfg["groups"])
    servers = cfg["strategy"] != "sync" and cfg["servers"] >= 1  # root's round trip rides along
    if inp.messages == "horovod":  # its buffers follow the cycles: the recurrence records them
        rows: list = []
        _, total = TL.horovod(np.array([t_c]), lambda q, x: message_s(inp, q, x, servers),
                              np.array([n]), inp.blob_bytes, inp.blob_ready, inp.overlap,
                              inp.cycle_s, inp.fusion_bytes, rows=rows)
        comm = float(total[0])
    else:
        nb, ready = messages(inp)
        costs = [float(message_s(inp, np.array([n]), float(b), servers)[0]) for b in nb]
        rows = TL.schedule(t_c, costs, nb, ready, inp.overlap)
        comm = float(sum(costs))
    return dict(compute_s=t_c, group_size=n, messages=inp.messages, overlap=inp.overlap,
                servers=servers,
                exposed_s=max(0.0, (rows[-1]["end_s"] if rows else t_c) - t_c),
                communication_s=comm, schedule=rows)


def run_predict(args: argparse.Namespace) -> int:
    s, source = SC.load(args.scenario, args.set)
    p = predict(s)
    if args.timeline:
        p["timeline"] = step_timeline(s)
    if args.json:
        print(json.dumps(p, indent=2))
        return 0
    cfg = p["configuration"]
    print(f"{source}: {cfg['strategy']}, {cfg['workers']} workers, {cfg['groups']} group(s), "
          f"{cfg['servers']} parameter server(s), local batch {cfg['batch']}")
    rows = []
    for key, unit in (("throughput_samples_per_s", "samples/s"), ("throughput_flops", "FLOP/s"),
                      ("peak_throughput_flops", "FLOP/s"), ("efficiency", ""),
                      ("speedup", "x"), ("step_time_s", "s"), ("steps_to_target", ""),
                      ("time_to_target_s", "s")):
        lo, hi = p["interval"][key] or (None, None)
        rows.append([key, _fmt(p[key], unit), f"[{_fmt(lo, unit)}, {_fmt(hi, unit)}]"])
    print(table(["quantity", "predicted", "interval"], rows))
    print("\nstep breakdown (sustained): " + ", ".join(
        f"{k[:-2]} {p['breakdown'][k] * 1e3:.2f} ms" for k in BREAKDOWN))
    if args.timeline:
        tl = p["timeline"]
        rows = tl["schedule"]
        shown = rows if len(rows) <= 12 else rows[:6] + rows[-6:]
        trip = "; each with the root's server round trip" if tl["servers"] else ""
        print(f"\nstep timeline ({tl['messages']} messages, overlap "
              f"{'on' if tl['overlap'] else 'off'}; group of {tl['group_size']:g}{trip}): "
              "compute "
              f"{tl['compute_s'] * 1e3:.2f} ms, communication {tl['communication_s'] * 1e3:.2f}"
              f" ms, exposed after backward {tl['exposed_s'] * 1e3:.2f} ms")
        print(table(["message", "MB", "ready ms", "start ms", "end ms", "exposed ms"],
                    [[r["message"], f"{r['bytes'] / 1e6:.3g}", f"{r['ready_s'] * 1e3:.2f}",
                      f"{r['start_s'] * 1e3:.2f}", f"{r['end_s'] * 1e3:.2f}",
                      f"{r['exposed_s'] * 1e3:.2f}"] for r in shown]))
        if len(rows) > len(shown):
            print(f"({len(rows) - len(shown)} messages in the middle not shown; --json has "
                  "all)")
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    if not args.vary:
        raise UserError("give at least one --vary training.KEY=SPEC")
    s, _ = SC.load(args.scenario, args.set)
    t0 = time.perf_counter()
    df = sweep(s, args.vary)
    dt = time.perf_counter() - t0
    msg = (f"{len(df)} configurations evaluated in {dt:.2f} s"
           f" ({df.attrs['dropped']} combinations dropped as invalid)")
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".parquet":
            try:
                df.to_parquet(out)
            except ImportError:
                raise UserError("--output *.parquet needs pyarrow; use .csv or "
                                "pip install pyarrow") from None
        else:
            df.to_csv(out, index=False)
        print(f"{msg}; written to {out}", file=sys.stderr)
    else:
        df.to_csv(sys.stdout, index=False)
        print(msg, file=sys.stderr)
    return 0


def run_reproduce(args: argparse.Namespace) -> int:
    from .reproduce import WIDTH, passed, reproduce, scored

    figs, extra = reproduce(args.set)
    if args.set and not args.json:
        print("with both presets overridden: " + ", ".join(args.set) + "\n")
    fin = lambda x: x if x == x else None  # noqa: E731  (NaN -> null in JSON)
    if args.json:
        print(json.dumps({"figures": [dict(
            key=f.key, what=f.what, published=f.published, unit=f.unit,
            predicted=fin(f.predicted), low=fin(f.low), high=fin(f.high), error=fin(f.error),
            half_width=fin(f.half_width), inside=f.inside, status=f.status,
            tolerance=f.tolerance, reproduced=passed(f), note=f.note) for f in figs],
            "reproduced": sum(bool(passed(f)) for f in scored(figs)),
            "scored": len(scored(figs)), "overrides": list(args.set), **extra}, indent=2,
            default=float))
        return 0
    num = lambda x, u="": "-" if x != x else f"{x:.4g}{u}"  # noqa: E731
    rows = []
    for f in figs:
        ok = passed(f)
        rows.append([f.what, f"{f.published:g} {f.unit}".strip(), num(f.predicted),
                     f"[{num(f.low)}, {num(f.high)}]" if f.low == f.low else "-",
                     "-" if f.error != f.error else f"{100 * f.error:+.1f}%",
                     {True: "yes", False: "no", None: "-"}[f.inside],
                     "-" if f.half_width != f.half_width else f"+-{100 * f.half_width:.0f}%",
                     f.status, {True: "yes", False: "NO", None: "-"}[ok]])
    print(table(["figure", "published", "model", "interval", "error", "inside", "width",
                 "used as", "reproduced"], rows))
    print(f"\nreproduced = the published value inside the interval, the interval within "
          f"+-{100 * WIDTH['throughput']:.0f}% (throughputs) or +-{100 * WIDTH['ratio']:.0f}% "
          "(speedups, ratios, knees), and the nominal within the tolerance (5% throughputs, "
          "10% ratios, knees exact)")
    print("intervals: every corner of " + ", ".join(extra["uncertain_inputs"])
          + " (the presets give each its source)")
    print("\nfitted parameters (at most three; each figure it was fitted on is not counted):")
    for name, (v, unit, on) in extra["fitted"].items():
        print(f"  {name} = {v:.4g} {unit}   fitted on: {on}")
    for f in figs:
        if f.note:
            print(f"  note ({f.key}): {f.note}")
    sc = scored(figs)
    print(f"\nreproduced: {sum(bool(passed(f)) for f in sc)} of {len(sc)} scored held-out "
          "figures; not scored: "
          + "; ".join(f"{f.key} ({f.status})" for f in figs
                      if f.status != "held out" and f.status != "fitted"))
    return 0


def _read_all(paths: list[str]):
    import pandas as pd

    from .results import ResultsError, read_results

    try:
        return pd.concat([read_results(p) for p in paths], ignore_index=True)
    except ResultsError as e:
        raise UserError(str(e)) from None


def run_validate(args: argparse.Namespace) -> int:
    import numpy as np

    from .provenance import run_base
    from .results import ResultsWriter
    from .validate import compare, error_rows, link_from

    node, runs = _read_all(args.node), _read_all(args.scale)
    link = link_from(runs)
    df = compare(runs, node, link)
    if df.empty:
        raise UserError("no harness runs in the --scale files")
    print(f"inputs: ping-pong alpha {link.alpha_s * 1e6:.2f} us, bandwidth "
          f"{link.bandwidth_Bps / 1e9:.2f} GB/s; node profiles from {', '.join(args.node)}")
    pct = lambda e: "-" if np.isnan(e) else f"{100 * e:+.1f}%"  # noqa: E731
    rows = [[r.strategy, r.workers, r.groups, r.param_servers, r.threads, r.batch,
             r.straggler or "-", r.repeats, f"{r.measured:.1f}", f"{r.predicted:.1f}", pct(r.error),
             f"{r.measured_peak:.1f}", f"{r.predicted_peak:.1f}", pct(r.peak_error),
             "functional" if r.functional else (r.note or "timed")]
            for r in df.itertuples()]
    print(table(["strategy", "workers", "groups", "servers", "thr", "batch", "straggler",
                 "runs", "sust. meas", "sust. pred", "error", "peak meas", "peak pred", "error",
                 "kind"], rows))
    from .plan import kendall_tau

    timed = df[~df.functional & df.error.notna()]
    ranked = df[df.error.notna()]
    if len(ranked) >= 2:
        print(f"ranking by sustained throughput, predicted vs measured: Kendall tau "
              f"{kendall_tau(ranked.predicted, ranked.measured):.2f} over {len(ranked)} runs"
              + (f" ({kendall_tau(timed.predicted, timed.measured):.2f} over the {len(timed)} "
                 "timed ones)" if len(timed) >= 2 else ""))
    if len(timed):
        print(f"\nmedian |error| over {len(timed)} timed runs: sustained "
              f"{100 * np.median(np.abs(timed.error)):.1f}%, peak "
              f"{100 * np.median(np.abs(timed.peak_error)):.1f}%")
    if args.target_loss is not None:
        from .validate import time_to_target

        tt = time_to_target(runs, args.target_loss)
        print(f"\ntime to training loss {args.target_loss:g} (EMA), measured:")
        print(table(["strategy", "workers", "groups", "straggler", "steps", "final loss",
                     "steps to target", "time to target", "kind"],
                    [[r.strategy, r.workers, r.groups, r.straggler or "-", r.steps,
                      f"{r.final_loss:.3f}", r.steps_to_target if r.steps_to_target >= 0
                      else "not reached",
                      "-" if np.isnan(r.time_to_target_s) else f"{r.time_to_target_s:.2f} s",
                      "functional" if r.functional else "timed"] for r in tt.itertuples()]))
    if args.output:
        ResultsWriter(args.output, append=True).add(error_rows(df, run_base(1)))
        print(f"comparison rows appended to {args.output}")
    return 0


def run_plan(args: argparse.Namespace) -> int:
    import time

    from . import plan as PL

    s, source = SC.load_for_plan(args.scenario, args.set)
    if args.epochs is not None and args.target_loss:
        raise UserError("give exactly one target: --epochs N or --target-loss (the scenario's "
                        "[convergence])")
    default = None
    if args.epochs is None and not args.target_loss:
        default = PL.default_target(s)
        args.epochs, args.target_loss = default.epochs, default.loss
    if args.epochs is not None and args.epochs <= 0:
        raise UserError(f"--epochs={args.epochs} is out of range (allowed > 0)")
    if args.budget_node_hours is not None and args.budget_node_hours <= 0:
        raise UserError(f"--budget-node-hours={args.budget_node_hours} is out of range "
                        "(allowed > 0)")
    deadline = PL.parse_duration(args.deadline) if args.deadline else None
    t0 = time.perf_counter()
    feasible, facts = PL.search(s, PL.Target(epochs=args.epochs, loss=args.target_loss),
                                args.max_nodes, deadline, args.budget_node_hours)
    dt = time.perf_counter() - t0
    if feasible.empty:
        raise UserError(f"no feasible configuration among {facts['evaluated']}: "
                        f"{facts['binding']}")
    chosen = PL.recommend(feasible, deadline)
    front = PL.pareto(feasible)
    pred = PL.chosen_prediction(s, chosen)
    t_lo, t_hi = PL.time_interval_s(s, chosen, PL.Target(args.epochs, args.target_loss), pred)
    reasons = PL.why_not(feasible, chosen)
    if args.output:
        front.to_csv(args.output, index=False)
    if args.emit_slurm:
        from pathlib import Path

        Path(args.emit_slurm).write_text(PL.slurm_script(
            chosen, s, args.user_command, args.threads_per_rank, args.slurm_launcher,
            args.slurm_mpi))
    if args.json:
        print(json.dumps({"source": source, "evaluated": facts["evaluated"],
                          "feasible": facts["feasible"],
                          "target": PL.describe(PL.Target(args.epochs, args.target_loss), s),
                          "default_target": default is not None,
                          "search_s": dt,
                          "recommended": {k: (v.item() if hasattr(v, "item") else v)
                                          for k, v in chosen.items()},
                          "prediction": pred, "why_not": reasons,
                          "time_interval_s": [t_lo, t_hi],
                          "meets_deadline_at_high": (t_hi <= deadline) if deadline else None,
                          "pareto": front.to_dict("records")}, indent=2, default=float))
        return 0
    if default is not None:
        print(f"target: {PL.describe(default, s)} (the default without --epochs or "
              "--target-loss)")
    print(f"{source}: {facts['evaluated']} configurations searched in {dt:.2f} s; "
          f"{facts['feasible']} feasible, {len(front)} on the Pareto front")
    rows = [[r.strategy, r.workers, r.groups, r.param_servers, r.batch_per_worker, r.nodes,
             PL._dur(r.time_s), f"{r.node_hours:.4g}"] for r in front.head(12).itertuples()]
    print(table(["strategy", "workers", "groups", "servers", "batch", "nodes",
                 "time to solution", "node-hours"], rows))
    lo, hi = pred["interval"]["step_time_s"]
    print(f"\nrecommended ({'fewest node-hours meeting the deadline' if deadline else 'fastest'}"
          f"): {chosen.strategy}, {PL._cfg(chosen)} on {chosen.nodes} nodes: "
          f"{PL._dur(chosen.time_s)}, {chosen.node_hours:.4g} node-hours; step "
          f"{pred['step_time_s'] * 1e3:.2f} ms [{lo * 1e3:.2f}, {hi * 1e3:.2f}] = "
          + ", ".join(f"{k[:-2]} {v * 1e3:.2f} ms" for k, v in pred["breakdown"].items()))
    a_lo, a_hi = PL.throughput_time_interval_s(chosen, pred)
    print(f"time to solution over the uncertain inputs: [{PL._dur(t_lo)}, {PL._dur(t_hi)}]"
          + ("" if args.target_loss else
             f" (the throughput's alone: [{PL._dur(a_lo)}, {PL._dur(a_hi)}]; the rest: the "
             "epochs the convergence assumptions charge)")
          + (f"; at the high end it {'meets' if t_hi <= deadline else 'misses'} the deadline "
             f"{PL._dur(deadline)} (the plan is chosen at the nominal inputs)" if deadline
             else ""))
    print("why the others lose:")
    for line in reasons:
        print(f"  {line}")
    if args.epochs is not None:
        bn = s["convergence"]["b_noise"].nominal
        if bn > 0:
            from .plan import epoch_factor

            f = epoch_factor(s, {k: [v] for k, v in dict(
                strategy=list(PL.STRATEGIES).index(chosen.strategy), workers=chosen.workers,
                groups=chosen.groups, batch=chosen.batch_per_worker).items()})[0]
            print(f"epochs charged for the update batch {chosen.update_batch:.0f} against "
                  f"B_noise {bn:.4g} ({s['convergence']['source'] or 'the scenario'})"
                  f"{' and ' + str(int(chosen.groups)) + ' asynchronous groups' if chosen.groups > 1 else ''}"
                  f": x{f:.3g} ({args.epochs:g} -> {args.epochs * f:.3g} epochs)")
        else:
            print("note: the scenario states no [convergence] b_noise, so epochs are taken "
                  "as independent of the batch; a global batch far above the noise scale "
                  "needs more epochs than planned")
    if args.output:
        print(f"Pareto front written to {args.output}")
    if args.emit_slurm:
        print(f"sbatch script written to {args.emit_slurm}")
    return 0
