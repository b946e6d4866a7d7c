"""``perfmodel validate``: the throughput model's predictions against harness runs."""

from __future__ import annotations

import argparse

import numpy as np

from ..judge.validate import compare, error_rows, link_from, time_to_target
from ..provenance import run_base
from ..results import ResultsWriter, read_all
from ..stats import kendall_tau
from ..ui import UserError, table


def add_arguments(va: argparse.ArgumentParser) -> None:
    va.add_argument("--node", required=True, nargs="+", help="perfmodel node results")
    va.add_argument("--scale", required=True, nargs="+", help="perfmodel scale results "
                    "(with the --micro ping-pong)")
    va.add_argument("--output", "-o", default=None, help="also write the comparison rows")
    va.add_argument("--target-loss", type=float, default=None,
                    help="also report each run's measured time to this training loss")


def run_validate(args: argparse.Namespace) -> int:
    node, runs = read_all(args.node), read_all(args.scale)
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
