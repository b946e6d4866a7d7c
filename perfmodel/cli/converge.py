"""``perfmodel converge``: time to a target loss, calibrated, predicted and measured."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..harness.convergence_runs import (TARGET_LOSS, calibration_stages, round_stages,
                                        run_stages)
from ..judge.converge import write_outputs
from ..ui import UserError, table


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="results/convergence", help="folder for the results "
                   "(default results/convergence)")
    p.add_argument("--target-loss", type=float, default=TARGET_LOSS, help="smoothed held-out "
                   f"loss to reach (default {TARGET_LOSS:g}; chance is ln 2 = 0.693)")
    p.add_argument("--max-steps", type=int, default=4000, help="cap per run (default 4000)")
    p.add_argument("--seeds", type=int, default=2, help="calibration runs per batch "
                   "(default 2)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of node profiles and "
                   "held-out runs, each run with its own seed (default 2)")
    p.add_argument("--quick", action="store_true", help="sync calibration at batch 8, 16 and "
                   "32 only, and 5 of the 9 held-out configurations (for the report "
                   "pipeline)")
    p.add_argument("--calibrate-only", action="store_true", help="the data and the "
                   "calibration runs only (a fresh start)")
    p.add_argument("--round", type=int, default=None, metavar="K", help="round K of "
                   "--rounds only: its node profiles and held-out runs, appended")
    p.add_argument("--no-profile", action="store_true", help="with --round: the held-out "
                   "runs only (the caller takes the node profiles, node-t*.csv in --out)")
    p.add_argument("--compare-only", action="store_true", help="refit and compare the "
                   "results already in --out")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-progress", action="store_true")


def run_converge(args: argparse.Namespace) -> int:
    out = Path(args.out)
    for name in ("max_steps", "seeds", "rounds"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')}={getattr(args, name)} is out of "
                            "range (allowed >= 1)")
    if not 0 < args.target_loss:
        raise UserError(f"--target-loss={args.target_loss:g} is out of range (allowed > 0)")
    if args.round is not None and not 1 <= args.round <= args.rounds:
        raise UserError(f"--round={args.round} is out of range (allowed 1..{args.rounds}, "
                        "--rounds)")
    if sum((args.compare_only, args.calibrate_only, args.round is not None)) > 1:
        raise UserError("give at most one of --compare-only, --calibrate-only and --round")
    if args.compare_only:
        return report(out, args.json)
    stages = []
    if args.round is None:
        stages += calibration_stages(args, out)
        if not args.calibrate_only:
            for k in range(1, args.rounds + 1):
                stages += round_stages(args, out, k)
    else:
        stages += round_stages(args, out, args.round, profile=not args.no_profile)
    run_stages(stages, args.no_progress)
    if args.calibrate_only or args.round is not None:
        return 0
    return report(out, args.json)


def report(out: Path, as_json: bool = False) -> int:
    """Fit, compare and print (or print as JSON) the results under ``out``."""
    conv, calib, cmp, s = write_outputs(out)
    if as_json:
        print(json.dumps(dict(fit=json.loads((out / "fit.json").read_text()),
                              runs=cmp.to_dict("records")), indent=2, default=float))
        return 0
    print(f"calibration (fitted; {len(calib)} runs, target {conv.source['target_loss']:g}):")
    print(f"  S_min = {conv.s_min:.0f} +- {conv.s_min_se:.0f} updates, B_noise = "
          f"{conv.b_noise:.1f} +- {conv.b_noise_se:.1f} samples (sync runs "
          f"{', '.join(conv.source['s_min, b_noise'])})")
    if "gamma, kappa" in conv.source:
        print(f"  gamma = {conv.gamma:.3f} +- {conv.gamma_se:.3f}, kappa = {conv.kappa:.3f} "
              f"+- {conv.kappa_se:.3f} /update (async runs "
              f"{', '.join(conv.source['gamma, kappa'])})")
    pct = lambda e: "-" if e != e else f"{100 * e:+.0f}%"  # noqa: E731
    rows = [[r.strategy, r.workers, r.groups, r.threads, r.batch, r.straggler or "-",
             f"{r.measured_updates:.0f}", f"{r.predicted_updates:.0f}",
             f"{r.measured_s:.1f}", f"{r.predicted_s:.1f} [{r.predicted_low_s:.1f}, "
             f"{r.predicted_high_s:.1f}]", pct(r.error),
             "censored" if r.censored else ("functional" if r.functional else "timed")]
            for r in cmp.itertuples()]
    print("\nheld-out runs (none used in a fit): time to target, measured vs predicted")
    print(table(["strategy", "workers", "groups", "thr", "batch", "straggler",
                 "updates meas", "updates pred", "time meas s", "time pred s", "error",
                 "kind"], rows))
    for note in sorted({n for n in cmp.note if isinstance(n, str) and n}):
        print(f"no prediction: {note}")
    print(f"\nmedian |error| of time to target over {s['configurations']} held-out "
          f"configurations ({s['runs']} timed runs): "
          f"{100 * s['median_abs_error']:.1f}% (updates alone "
          f"{100 * s['median_abs_updates_error']:.1f}%); Kendall tau {s['kendall_tau']:.2f}"
          f"\nwritten: {out / 'time_to_target.csv'}, {out / 'fit.json'}")
    return 0
