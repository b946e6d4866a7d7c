"""``perfmodel report``: the default pipeline, a report of given results, or the paper's."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..report.build import build, build_scenario
from ..report.pipeline import default_pipeline
from ..report.showcase import showcase
from ..ui import UserError


def add_arguments(rep: argparse.ArgumentParser) -> None:
    rep.add_argument("--out", default=None, help="output folder (default reports/latest, "
                     "or reports/paper with --paper)")
    rep.add_argument("--results", nargs="+", default=None, help="results files to report")
    rep.add_argument("--convergence", default=None, help="with --results: a perfmodel "
                     "converge folder for the time-to-target section")
    rep.add_argument("--paper", action="store_true", help="the committed showcase "
                     "(reports/paper): the paper reproduction and the recorded run's sections")
    rep.add_argument("--record", default=None, metavar="DIR", help="with --paper: record the "
                     "results of a finished report folder (e.g. reports/latest) first")
    rep.add_argument("--scenario", default=None, metavar="FILE", help="a report of your "
                     "scenario (or a preset), predictions only, in seconds: scaling with "
                     "intervals, the step's timeline, a plan, the effects at scale")
    rep.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     help="with --scenario: override a value (repeatable)")
    rep.add_argument("--epochs", type=float, default=1.0, help="with --scenario: the plan's "
                     "target in epochs (default 1)")
    rep.add_argument("--full", action="store_true", help="full-size HEP node measurement")
    rep.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_report(args: argparse.Namespace) -> int:
    """The main job: the default pipeline, or a report of given results, or the paper's."""
    out = Path(args.out or ("reports/paper" if args.paper else "reports/latest"))
    if args.record and not args.paper:
        raise UserError("--record goes with --paper (it records a run into the showcase)")
    if args.scenario:
        if args.paper or args.results:
            raise UserError("--scenario makes a report of predictions only: not with "
                            "--paper or --results")
        out = Path(args.out or "reports/scenario")
        path = build_scenario(out, args.scenario, args.set, epochs=args.epochs)
    elif args.paper:
        path = showcase(out, Path(args.record) if args.record else None)
    elif args.results:
        path = build(out, args.results, convergence=args.convergence)
    else:
        path = default_pipeline(out, progress=not args.no_progress, full=args.full)
    print(f"report: {path.resolve()}")
    return 0
