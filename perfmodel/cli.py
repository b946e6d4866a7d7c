"""The ``perfmodel`` command: a thin registry of sub-commands.

Each sub-command is a function ``(args) -> int`` registered in :data:`COMMANDS` beside its
argument parser, its module imported only when it runs; user mistakes raise
:class:`UserError` and end with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from .ui import UserError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def _positive_int(field: str):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{field}={text!r} is not an integer") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"{field}={v} is out of range (allowed >= 1)")
        return v
    return parse


def _batch_list(text: str) -> list[int]:
    try:
        out = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--sweep={text!r} must be comma-separated integers, e.g. 1,2,4,8") from None
    if not out or out[0] < 1:
        raise argparse.ArgumentTypeError(f"--sweep={text!r}: batches must be >= 1")
    return out


def add_node_args(p: argparse.ArgumentParser) -> None:
    from kernels import NETS
    from kernels.threads import available_cores

    p.add_argument("--net", default="hep", help=f"network: {', '.join(NETS)} (default hep)")
    p.add_argument("--batch", type=_positive_int("batch"), default=8,
                   help="local batch measured layer by layer (default 8, as in the paper)")
    p.add_argument("--threads", type=_positive_int("threads"), default=None,
                   help=f"threads per process (default: all {available_cores()} cores)")
    p.add_argument("--image-size", type=_positive_int("image-size"), default=None,
                   help="scaled variant: input height=width in pixels (default: published size)")
    p.add_argument("--filters", type=_positive_int("filters"), default=None,
                   help="HEP only: conv width of a scaled variant (default 128)")
    p.add_argument("--dropout", type=float, default=None,
                   help="HEP only: dropout probability (default: the published 0.5; 0 as the "
                        "convergence runs train, which also names the subject hep...-d0)")
    p.add_argument("--sweep", type=_batch_list, default=None,
                   help="batches for the rate-vs-batch curve (default 1,2,4,8,16; "
                        "--quick: 1,2,4,8)")
    p.add_argument("--repeats", type=_positive_int("repeats"), default=None,
                   help="timed steps per batch (default 5; --quick: 2)")
    p.add_argument("--warmup", type=_positive_int("warmup"), default=1,
                   help="untimed steps before timing (default 1)")
    p.add_argument("--peer", choices=["torch"], default=None,
                   help="also measure PyTorch (NCHW and channels-last) and report ratios")
    p.add_argument("--quick", action="store_true",
                   help="CI-sized run: HEP at 64x64 (NERSC's small variant), fewer repeats")
    p.add_argument("--output", "-o", default=None,
                   help="results CSV (default results/node-NET-TIME.csv)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


PLAN_EXAMPLES = """examples:
  perfmodel plan cori-knl-hep                           # one epoch, fastest configuration
  perfmodel plan cori-knl-hep --epochs 10 --deadline 30m        # fewest node-hours in 30 min
  perfmodel plan perlmutter-gpu-hep --epochs 10 --budget-node-hours 50 --json
  perfmodel plan cpu-epyc-hdr-hep --epochs 5 --max-nodes 256 --emit-slurm job.sh
  perfmodel plan cori-knl-hep --target-loss --set convergence.profile=results/convergence \\
      --set convergence.target_loss=0.4                # convergence fitted on your own runs
  perfmodel plan my-cluster.toml --epochs 1 -o front.csv       # your scenario; Pareto front
"""


def cmd_report(args: argparse.Namespace) -> int:
    """The main job: the default pipeline, or a report of given results, or the paper's."""
    from .report.build import build
    from .report.pipeline import default_pipeline

    out = Path(args.out or ("reports/paper" if args.paper else "reports/latest"))
    if args.record and not args.paper:
        raise UserError("--record goes with --paper (it records a run into the showcase)")
    if args.paper:
        from .report.showcase import showcase

        path = showcase(out, Path(args.record) if args.record else None)
    elif args.results:
        path = build(out, args.results, convergence=args.convergence)
    else:
        path = default_pipeline(out, progress=not args.no_progress, full=args.full)
    print(f"report: {path.resolve()}")
    return 0


def _lazy(module: str, func: str) -> Callable[[argparse.Namespace], int]:
    """A command whose module is imported only when it runs (keeps --help and startup fast)."""
    import importlib

    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module, __package__), func)(args)

    return run


def cmd_presets(args: argparse.Namespace) -> int:
    from .scenario import preset_names

    print("\n".join(preset_names()))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: 'perfmodel node: error: ...' and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="perfmodel",
        description="Benchmarks and a performance model of data-parallel deep-learning "
                    "training on HPC clusters (Kurth et al., SC17, reproduced).")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    node = sub.add_parser("node", help="measure a node: per-layer and whole-step FLOP rates",
                          description=(
                              "Measure one node: a training step (forward, backward, SGD "
                              "update) of a net at a batch and thread count, per layer and "
                              "whole, its rate vs batch, and the machine's FP32 peak "
                              "(FMA loop, sgemm) and bandwidth for the roofline. Writes a "
                              "results CSV in the project's tidy schema."))
    add_node_args(node)
    rep = sub.add_parser("report", help="run the default pipeline and write a report",
                         description="Without arguments: measure the node (quick), a small "
                                     "local scaling sweep, validate the model, and write a "
                                     "self-contained report (index.html, PNG figures, CSV "
                                     "tables, summary.md). With --results: a report of those "
                                     "files only. With --paper: the paper's figures beside "
                                     "the model's (deterministic).")
    rep.add_argument("--out", default=None, help="output folder (default reports/latest, "
                     "or reports/paper with --paper)")
    rep.add_argument("--results", nargs="+", default=None, help="results files to report")
    rep.add_argument("--convergence", default=None, help="with --results: a perfmodel "
                     "converge folder for the time-to-target section")
    rep.add_argument("--paper", action="store_true", help="the committed showcase "
                     "(reports/paper): the paper reproduction and the recorded run's sections")
    rep.add_argument("--record", default=None, metavar="DIR", help="with --paper: record the "
                     "results of a finished report folder (e.g. reports/latest) first")
    rep.add_argument("--full", action="store_true", help="full-size HEP node measurement")
    rep.add_argument("--no-progress", action="store_true", help="no progress bar")
    pred = sub.add_parser("predict", help="predict a cluster run from a scenario or preset",
                          description="Predict throughput, scaling efficiency, the step's "
                                      "breakdown and time to target of one configuration. "
                                      "SCENARIO is a TOML file or a preset name.")
    pred.add_argument("scenario", help="scenario file or preset (see 'perfmodel presets')")
    pred.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                      help="override a scenario value (repeatable)")
    pred.add_argument("--json", action="store_true", help="JSON on stdout")
    pred.add_argument("--timeline", action="store_true", help="also the step as a timeline: "
                      "each message's ready, start and end times against backward, and the "
                      "exposed part")
    sw = sub.add_parser("sweep", help="predictions over a grid of configurations",
                        description="Evaluate every combination of the varied training "
                                    "values at once and write a tidy table.")
    sw.add_argument("scenario")
    sw.add_argument("--vary", action="append", default=[], metavar="training.KEY=SPEC",
                    help="a:b (integers a..b), a:b:n (n log-spaced), x,y,z (repeatable)")
    sw.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    sw.add_argument("--output", "-o", default=None, help="CSV or .parquet (default: CSV on "
                    "stdout)")
    rp = sub.add_parser("reproduce", help="the paper's figures beside the model's",
                        description="Each published figure beside the model's nominal value "
                                    "and its interval over the Cori presets' uncertain inputs, "
                                    "with %% error, whether it was fitted, held out or not "
                                    "scored, and whether it counts as reproduced.",
                        epilog="example: perfmodel reproduce --set cluster.overlap=true  "
                               "(what if Intel Caffe had overlapped its per-layer exchange)")
    rp.add_argument("--json", action="store_true")
    rp.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override both Cori presets (repeatable); the fitted parameter is "
                         "fitted again under them")
    sub.add_parser("presets", help="list the scenario presets")
    from .harness.scale import add_arguments as scale_args
    from .harness.scale import add_data_arguments

    sc = sub.add_parser("scale", help="MPI scaling sweeps of sync, async and hybrid training",
                        description="Run the MPI harness over strategies, worker, group and "
                                    "server counts (mpiexec here, or --emit-slurm for a "
                                    "cluster); results in the project's schema.")
    scale_args(sc)
    da = sub.add_parser("data", help="write a synthetic data set as HDF5 shards",
                        description="Generate seeded synthetic HEP or climate samples, "
                                    "shaped like the paper's, into HDF5 shards.")
    add_data_arguments(da)
    pl = sub.add_parser("plan", help="choose the configuration of a cluster run",
                        description="Search strategies, node counts, parameter servers and "
                                    "batch per worker for time to solution and node-hours "
                                    "under constraints; report the Pareto front, the "
                                    "recommendation and why the others lose. Without "
                                    "--epochs or --target-loss the target is one epoch of "
                                    "the scenario's data set (else its target loss), and "
                                    "the plan says so.",
                        epilog=PLAN_EXAMPLES,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    pl.add_argument("scenario", help="scenario file or preset (the cluster and the workload)")
    pl.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    pl.add_argument("--epochs", type=float, default=None, help="target: passes over the "
                    "data set (needs workload.dataset_samples)")
    pl.add_argument("--target-loss", action="store_true", help="target: the scenario's "
                    "[convergence] target loss")
    pl.add_argument("--max-nodes", type=_positive_int("max-nodes"), default=None)
    pl.add_argument("--deadline", default=None, help="e.g. 3600, 45m, 2h, 1d")
    pl.add_argument("--budget-node-hours", type=float, default=None)
    pl.add_argument("--json", action="store_true")
    pl.add_argument("--output", "-o", default=None, help="the Pareto front as CSV")
    pl.add_argument("--emit-slurm", default=None, metavar="FILE",
                    help="an sbatch script for the recommended configuration")
    pl.add_argument("--command", dest="user_command", default=None,
                    help="with --emit-slurm: your own training command instead of the harness "
                         "(gets PERFMODEL_* variables)")
    pl.add_argument("--threads-per-rank", type=_positive_int("threads-per-rank"), default=64,
                    help="with --emit-slurm: cores per rank (default 64)")
    from .slurm import add_arguments as slurm_arguments

    slurm_arguments(pl)
    va = sub.add_parser("validate", help="the model's predictions against harness runs",
                        description="Predict every harness run from measured inputs (node "
                                    "profile, ping-pong) and report the errors.")
    va.add_argument("--node", required=True, nargs="+", help="perfmodel node results")
    va.add_argument("--scale", required=True, nargs="+", help="perfmodel scale results "
                    "(with the --micro ping-pong)")
    va.add_argument("--output", "-o", default=None, help="also write the comparison rows")
    va.add_argument("--target-loss", type=float, default=None,
                    help="also report each run's measured time to this training loss")
    from .converge import add_arguments as converge_args

    cv = sub.add_parser("converge", help="time to a target loss: calibrate, predict, measure",
                        description="Calibrate the convergence model on harness runs to a "
                                    "target loss (sync at 4 batches, async at 2-3 groups), "
                                    "then predict and measure the time to target of held-out "
                                    "timed runs (other batches, workers, strategies, "
                                    "stragglers); ~10 min on 2 cores.",
                        epilog="examples:\n  perfmodel converge\n  perfmodel converge "
                               "--target-loss 0.4 --out results/conv04\n  perfmodel converge "
                               "--compare-only --out results/convergence",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    converge_args(cv)
    COMMANDS.update(converge=_lazy(".converge", "run_converge"),
        node=_lazy(".node_cli", "run_node"), report=cmd_report, presets=cmd_presets,
        predict=_lazy(".model_cli", "run_predict"), sweep=_lazy(".model_cli", "run_sweep"),
        reproduce=_lazy(".model_cli", "run_reproduce"), plan=_lazy(".model_cli", "run_plan"),
        validate=_lazy(".model_cli", "run_validate"), scale=_lazy(".harness.scale", "run_scale"),
        data=_lazy(".harness.scale", "run_data"))
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed one line; its code for errors is 2
        return int(e.code or 0)
    if not args.command:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except UserError as e:
        print(f"perfmodel {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"perfmodel {args.command}: interrupted; finished measurements are in the "
              "results file", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
