"""``perfmodel plan``: the configuration of a cluster run, its Pareto front and why."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .. import plan as PL
from ..harness.slurm import add_arguments as slurm_arguments
from ..model import scenario as SC
from ..ui import UserError, positive_int, table

EXAMPLES = """examples:
  perfmodel plan cori-knl-hep                           # one epoch, fastest configuration
  perfmodel plan cori-knl-hep --epochs 10 --deadline 30m        # fewest node-hours in 30 min
  perfmodel plan perlmutter-gpu-hep --epochs 10 --budget-node-hours 50 --json
  perfmodel plan cpu-epyc-hdr-hep --epochs 5 --max-nodes 256 --emit-slurm job.sh
  perfmodel plan cori-knl-hep --target-loss --set convergence.profile=results/convergence \\
      --set convergence.target_loss=0.4                # convergence fitted on your own runs
  perfmodel init my-cluster.toml && perfmodel plan my-cluster.toml --epochs 1 -o front.csv
                                                        # your scenario; the Pareto front
"""


def add_arguments(pl: argparse.ArgumentParser) -> None:
    pl.add_argument("scenario", help="scenario file or preset (the cluster and the workload)")
    pl.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    pl.add_argument("--unset", action="append", default=[], metavar="SECTION.KEY",
                    help="remove a key of the scenario before the --set values (repeatable)")
    pl.add_argument("--epochs", type=float, default=None, help="target: passes over the "
                    "data set (needs workload.dataset_samples)")
    pl.add_argument("--target-loss", action="store_true", help="target: the scenario's "
                    "[convergence] target loss")
    pl.add_argument("--max-nodes", type=positive_int("max-nodes"), default=None)
    pl.add_argument("--deadline", default=None, help="e.g. 3600, 45m, 2h, 1d")
    pl.add_argument("--budget-node-hours", type=float, default=None)
    pl.add_argument("--json", action="store_true")
    pl.add_argument("--output", "-o", default=None, help="the Pareto front as CSV")
    pl.add_argument("--emit-slurm", default=None, metavar="FILE",
                    help="an sbatch script for the recommended configuration")
    pl.add_argument("--command", dest="user_command", default=None,
                    help="with --emit-slurm: your own training command instead of the harness "
                         "(gets PERFMODEL_* variables)")
    pl.add_argument("--threads-per-rank", type=positive_int("threads-per-rank"), default=None,
                    help="with --emit-slurm: cores per rank (default 64 on a node of one "
                         "rank, else 64 / devices per node)")
    pl.add_argument("--batches", default=None, metavar="B1,B2,...",
                    help="the local batches to search (default 1, 2, 4, ... up to 128 or the "
                         "scenario's batch_per_worker, which is always searched)")
    pl.add_argument("--optimizer", choices=("sgd", "lars"), default=None,
                    help="the optimizer family, for a zoo network's published epochs against "
                         "batch (default: sgd, said as assumed); a scenario's own "
                         "[convergence] b_noise takes precedence")
    slurm_arguments(pl)


def _batches(text: str | None, user: int | None) -> tuple[int, ...]:
    """The local batches to search: --batches, or powers of two up to 128 or the scenario's
    own batch, with that batch itself."""
    if text:
        try:
            out = sorted({int(b) for b in text.split(",") if b.strip()})
        except ValueError:
            raise UserError(f"--batches={text!r} must be comma-separated integers") from None
        if not out or out[0] < 1:
            raise UserError(f"--batches={text!r}: batches must be >= 1")
        return tuple(out)
    top = max(128, user or 1)
    grid = {2 ** k for k in range(top.bit_length()) if 2 ** k <= top}
    return tuple(sorted(grid | ({user} if user else set())))


def run_plan(args: argparse.Namespace) -> int:
    s, source = SC.load_for_plan(args.scenario, args.set, args.unset)
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
    curve_notes = PL.apply_epoch_curve(s, args.optimizer) if args.epochs is not None else []
    t0 = time.perf_counter()
    batches = _batches(args.batches, s["plan_hints"]["batch_per_worker"])
    feasible, facts = PL.search(s, PL.Target(epochs=args.epochs, loss=args.target_loss),
                                args.max_nodes, deadline, args.budget_node_hours,
                                batches=batches)
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
                          "epoch_notes": curve_notes,
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
             PL.format_duration(r.time_s), f"{r.node_hours:.4g}"] for r in front.head(12).itertuples()]
    print(table(["strategy", "workers", "groups", "servers", "batch", "nodes",
                 "time to solution", "node-hours"], rows))
    lo, hi = pred["interval"]["step_time_s"]
    print(f"\nrecommended ({'fewest node-hours meeting the deadline' if deadline else 'fastest'}"
          f"): {chosen.strategy}, {PL.describe_configuration(chosen)} on {chosen.nodes} nodes: "
          f"{PL.format_duration(chosen.time_s)}, {chosen.node_hours:.4g} node-hours; step "
          f"{pred['step_time_s'] * 1e3:.2f} ms [{lo * 1e3:.2f}, {hi * 1e3:.2f}] = "
          + ", ".join(f"{k[:-2]} {v * 1e3:.2f} ms" for k, v in pred["breakdown"].items()))
    a_lo, a_hi = PL.throughput_time_interval_s(chosen, pred)
    print(f"time to solution over the uncertain inputs: [{PL.format_duration(t_lo)}, {PL.format_duration(t_hi)}]"
          + ("" if args.target_loss else
             f" (the throughput's alone: [{PL.format_duration(a_lo)}, {PL.format_duration(a_hi)}]; the rest: the "
             "epochs the convergence assumptions charge)")
          + (f"; at the high end it {'meets' if t_hi <= deadline else 'misses'} the deadline "
             f"{PL.format_duration(deadline)} (the plan is chosen at the nominal inputs)" if deadline
             else ""))
    if int(chosen.batch_per_worker) == max(batches) and not args.batches:
        print(f"note: the largest batch searched ({max(batches)}) was chosen; larger ones "
              "were not searched (--batches)")
    print("why the others lose:")
    for line in reasons:
        print(f"  {line}")
    for line in curve_notes:
        print(line)
    if args.epochs is not None:
        bn = s["convergence"]["b_noise"].nominal
        if bn > 0:
            f = PL.epoch_factor(s, {k: [v] for k, v in dict(
                strategy=list(PL.STRATEGIES).index(chosen.strategy), workers=chosen.workers,
                groups=chosen.groups, batch=chosen.batch_per_worker).items()})[0]
            src = "the curve above" if curve_notes else (s['convergence']['source']
                                                          or 'the scenario')
            print(f"epochs charged for the update batch {chosen.update_batch:.0f} against "
                  f"B_noise {bn:.4g} ({src})"
                  f"{' and ' + str(int(chosen.groups)) + ' asynchronous groups' if chosen.groups > 1 else ''}"
                  f": x{f:.3g} ({args.epochs:g} -> {args.epochs * f:.3g} epochs)")
        elif not curve_notes:
            print("note: the scenario states no [convergence] b_noise, so epochs are taken "
                  "as independent of the batch; a global batch far above the noise scale "
                  "needs more epochs than planned")
    if args.output:
        print(f"Pareto front written to {args.output}")
    if args.emit_slurm:
        print(f"sbatch script written to {args.emit_slurm}")
    return 0
