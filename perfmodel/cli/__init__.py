"""The ``perfmodel`` command: a lazy registry of sub-commands, one module per family.

Each sub-command is a row of :data:`COMMANDS`: its help line and parser texts, and the module
that defines ``add_arguments``-style and ``run``-style functions for it. Only the module of the
command being run is imported (``perfmodel --help`` imports none of them); user mistakes raise
:class:`UserError` and end with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from ..ui import UserError


@dataclass(frozen=True)
class Command:
    """One sub-command: where its code lives and what its parser says."""

    module: str                      # relative to this package, e.g. ".model"
    add: str                         # function (parser) -> None that adds the arguments
    run: str                         # function (args) -> int
    help: str
    parser: dict[str, Any] = field(default_factory=dict)  # description, epilog, formatter


RAW = argparse.RawDescriptionHelpFormatter
COMMANDS: dict[str, Command] = {
    "node": Command(".node", "add_arguments", "run_node",
                    "measure a node: per-layer and whole-step FLOP rates", dict(description=(
                        "Measure one node: a training step (forward, backward, SGD update) of "
                        "a net at a batch and thread count, per layer and whole, its rate vs "
                        "batch, and the machine's FP32 peak (FMA loop, sgemm) and bandwidth "
                        "for the roofline. Writes a results CSV in the project's tidy "
                        "schema."))),
    "report": Command(".report", "add_arguments", "run_report",
                      "run the default pipeline and write a report", dict(description=(
                          "Without arguments: measure the node (quick), a small local scaling "
                          "sweep, validate the model, and write a report folder "
                          "(index.html, PNG figures, CSV tables, summary.md). With --results: "
                          "a report of those files only. With --paper: the paper's figures "
                          "beside the model's (deterministic)."))),
    "predict": Command(".model", "add_predict_arguments", "run_predict",
                       "predict a cluster run from a scenario or preset", dict(description=(
                           "Predict throughput, scaling efficiency, the step's breakdown and "
                           "time to target of one configuration. SCENARIO is a TOML file or a "
                           "preset name."))),
    "sweep": Command(".model", "add_sweep_arguments", "run_sweep",
                     "predictions over a grid of configurations", dict(description=(
                         "Evaluate every combination of the varied training values at once "
                         "and write a tidy table."))),
    "reproduce": Command(".model", "add_reproduce_arguments", "run_reproduce",
                         "the paper's figures beside the model's", dict(
                             description=(
                                 "Each published figure beside the model's nominal value and "
                                 "its interval over the Cori presets' uncertain inputs, with "
                                 "%% error, whether it was fitted, held out or not scored, and "
                                 "whether it counts as reproduced."),
                             epilog=("example: perfmodel reproduce --set cluster.overlap=true  "
                                     "(what if Intel Caffe had overlapped its per-layer "
                                     "exchange)"))),
    "presets": Command(".model", "add_presets_arguments", "run_presets",
                       "list the scenario presets"),
    "init": Command(".model", "add_init_arguments", "run_init",
                    "write a commented scenario to start from", dict(description=(
                        "Write a scenario file with every key listed, its unit, what it "
                        "counts (per node, per device, per run) and its default; the values "
                        "of a preset set, the other keys as comments. Numbers may carry "
                        "units (\"200 Gb/s\"). Reference: docs/scenario.md."))),
    "ledger": Command(".ledger", "add_arguments", "run_ledger",
                      "the layer table of your own network (PyTorch or ONNX)", dict(
                          description=(
                              "Write the layer table that workload.layers reads: per layer, "
                              "parameters, forward FLOP per sample (2 per multiply-add, the "
                              "zoo's conventions), fp32 gradient bytes and the order of the "
                              "gradients in backward. MODEL is package.module:function (a "
                              "callable returning a torch.nn.Module, traced with torch.fx) or "
                              "a .onnx file. Needs the 'ledger' extra (torch, onnx)."),
                          epilog=("example: perfmodel ledger torchvision.models:resnet50 -o "
                                  "layers.csv"))),
    "published": Command(".published", "add_arguments", "run_published",
                         "published scaling runs of other systems against the model",
                         dict(description=(
                             "Predict every published run of the development set (scenarios "
                             "with sourced inputs, under perfmodel/judge/published/) and "
                             "print each case's published and predicted efficiency with its "
                             "interval, then the set's median |error|, Kendall tau, the share "
                             "of the lost efficiency the model explains and how many of the "
                             "low-efficiency runs it gets within 15%."))),
    "scale": Command(".harness", "add_arguments", "run_scale",
                     "MPI scaling sweeps of sync, async and hybrid training", dict(description=(
                         "Run the MPI harness over strategies, worker, group and server counts "
                         "(mpiexec here, or --emit-slurm for a cluster); results in the "
                         "project's schema."))),
    "data": Command(".harness", "add_data_arguments", "run_data",
                    "write a synthetic data set as HDF5 shards", dict(description=(
                        "Generate seeded synthetic HEP or climate samples, shaped like the "
                        "paper's, into HDF5 shards."))),
    "plan": Command(".plan", "add_arguments", "run_plan",
                    "choose the configuration of a cluster run", dict(
                        description=(
                            "Search strategies, node counts, parameter servers and batch per "
                            "worker for time to solution and node-hours under constraints; "
                            "report the Pareto front, the recommendation and why the others "
                            "lose. Without --epochs or --target-loss the target is one epoch "
                            "of the scenario's data set (else its target loss), and the plan "
                            "says so."),
                        epilog_from="EXAMPLES", formatter_class=RAW)),
    "validate": Command(".validate", "add_arguments", "run_validate",
                        "the model's predictions against harness runs", dict(description=(
                            "Predict every harness run from measured inputs (node profile, "
                            "ping-pong) and report the errors."))),
    "converge": Command(".converge", "add_arguments", "run_converge",
                        "time to a target loss: calibrate, predict, measure", dict(
                            description=(
                                "Calibrate the convergence model on harness runs to a target "
                                "loss (sync at 4 batches, async at 2-3 groups), then predict "
                                "and measure the time to target of held-out timed runs (other "
                                "batches, workers, strategies, stragglers); ~10 min on 2 "
                                "cores."),
                            epilog=("examples:\n  perfmodel converge\n  perfmodel converge "
                                    "--target-loss 0.4 --out results/conv04\n  perfmodel "
                                    "converge --compare-only --out results/convergence"),
                            formatter_class=RAW)),
}


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: 'perfmodel node: error: ...' and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _module(cmd: Command):
    return importlib.import_module(cmd.module, __package__)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s arguments are added (its module imported), the other
    sub-commands carry their help line alone."""
    p = Parser(
        prog="perfmodel",
        description="Benchmarks and a performance model of data-parallel deep-learning "
                    "training on HPC clusters (Kurth et al., SC17, reproduced).")
    p.add_argument("--version", action="version",
                   version=f"perfmodel {__version__} (python {platform.python_version()}; "
                           "each results file records the git commit)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, cmd in COMMANDS.items():
        kw = dict(cmd.parser)
        if name != command:
            sub.add_parser(name, help=cmd.help)
            continue
        mod = _module(cmd)
        if "epilog_from" in kw:
            kw["epilog"] = getattr(mod, kw.pop("epilog_from"))
        getattr(mod, cmd.add)(sub.add_parser(name, help=cmd.help, **kw))
    return p


def _note(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"perfmodel: note: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    parser = build_parser(command)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed one line; its code for errors is 2
        return int(e.code or 0)
    if not args.command:
        parser.print_help()
        return 0
    cmd = COMMANDS[args.command]
    try:
        with warnings.catch_warnings():  # deprecation notes: one line each, no source line
            warnings.simplefilter("default", FutureWarning)
            warnings.showwarning = _note
            return getattr(_module(cmd), cmd.run)(args)
    except BrokenPipeError:  # perfmodel ... | head: the reader left; nothing is lost
        sys.stderr.close()
        return 0
    except UserError as e:
        print(f"perfmodel {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path given that cannot be read or written: say which, no traceback
        if e.filename is None:
            raise
        print(f"perfmodel {args.command}: error: {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"perfmodel {args.command}: interrupted; finished measurements are in the "
              "results file", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
