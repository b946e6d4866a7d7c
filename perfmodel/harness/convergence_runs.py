"""The runs behind ``perfmodel converge``: time to a target loss, measured on this machine.

Each stage is a ``perfmodel`` command in its own process (:mod:`perfmodel.harness.stage`):

1. a learnable data set (``perfmodel data``, with held-out events);
2. **calibration** runs, each until its smoothed held-out loss reaches the target: sync at four
   batches (S_min and B_noise, :func:`perfmodel.model.convergence.fit_batch`, with B_simple
   measured along the way) and async at 2 and 3 groups, with the explicit momentum kept and
   re-tuned (gamma and kappa, :func:`~perfmodel.model.convergence.fit_async`). Calibration
   counts updates, not seconds, so these may oversubscribe the cores (functional runs);
3. ``--rounds`` rounds spread over time, each: a node profile (one thread per rank, the
   batches of step 3), then **held-out** timed runs (1 thread per rank) at other
   batches, worker counts, strategies and stragglers, never used in a fit, each run with its
   own seed; the ping-pong once.

The comparison (step 4) is :mod:`perfmodel.judge.converge`'s. The workload is
:mod:`perfmodel.harness.workload`'s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..ui import ProgressBar
from . import stage
from . import workload as W

NET = W.NET_ARGS
TRAIN = ["--lr", "0.01", "--momentum", "0.9", "--eval-every", "10", "--eval-samples", "256",
         "--trace-every", "10", "--warmup", "2"]
#: the smoothed held-out loss to reach: on the steep part of the curve (at 0.35 the curve is
#: near its floor and the first passage scatters twice as much between seeds)
TARGET_LOSS = 0.40
CALIB_BATCHES = (8, 16, 32, 64)
CALIB_BATCHES_QUICK = (8, 16, 32)  # --quick: no batch 64 (the costliest runs), no async
#: held-out timed runs (1 thread per rank): (label, scale arguments); none is fitted on
HELD_OUT = [
    ("sync 1x12", ["--strategies", "sync", "--workers", "1", "--batch", "12"]),
    ("sync 1x24", ["--strategies", "sync", "--workers", "1", "--batch", "24"]),
    ("sync 1x48", ["--strategies", "sync", "--workers", "1", "--batch", "48"]),
    ("sync 2x8", ["--strategies", "sync", "--workers", "2", "--batch", "8"]),
    ("sync 2x16", ["--strategies", "sync", "--workers", "2", "--batch", "16"]),
    ("sync 2x8 straggler", ["--strategies", "sync", "--workers", "2", "--batch", "8",
                            "--straggler", "exponential:0.005"]),
    ("sync 1x24 straggler", ["--strategies", "sync", "--workers", "1", "--batch", "24",
                             "--straggler", "constant:0.02"]),
    ("async 1x12", ["--strategies", "async", "--workers", "1", "--batch", "12"]),
    ("async 1x32", ["--strategies", "async", "--workers", "1", "--batch", "32"]),
]
#: --quick's held-out configurations: every strategy, worker count and straggler kind of the
#: list, with times to target ~1.4x apart on the dev VM (3.8 to 18 s), so that their ranking
#: is a test of the model and not of this machine's run-to-run noise (5-10%)
QUICK_HELD_OUT = ("sync 2x8", "sync 2x8 straggler", "async 1x12", "sync 1x24", "sync 1x48")
PROFILE_BATCHES = "8,12,16,24,32,48"
HELD_OUT_SEED = 100  # held-out run i of round k (1-based) trains with seed 100 k + i


def target_args(args: argparse.Namespace, out: Path) -> list[str]:
    return ["--target-loss", f"{args.target_loss:g}", "--max-steps", str(args.max_steps),
            "--data", str(out / "data"), *NET, *TRAIN, "--no-progress"]


def calibration_stages(args: argparse.Namespace, out: Path) -> list[tuple[str, list[str]]]:
    """The data set and the calibration runs (a fresh start: old results in ``out`` go).
    Sync at every batch of CALIB_BATCHES (--seeds each); async at 2 and 3 groups with the
    momentum kept and re-tuned. --quick: sync at CALIB_BATCHES_QUICK only (its held-out runs
    have no asynchronous groups to predict)."""
    for f in out.glob("*.csv"):
        f.unlink()
    out.mkdir(parents=True, exist_ok=True)
    tgt = target_args(args, out)
    calib = ["-o", str(out / "calibration.csv")]
    stages = [("data", ["data", "--net", "hep", "--image-size", str(W.IMAGE_SIZE), "--samples",
                        "4096", "--shards", "2", "--val-samples", "512", "--out",
                        str(out / "data")])]
    for b in CALIB_BATCHES_QUICK if args.quick else CALIB_BATCHES:
        for seed in range(args.seeds):
            stages.append((f"calibration sync b={b} seed {seed}",
                           ["scale", *tgt, "--strategies", "sync", "--workers", "1", "--batch",
                            str(b), "--noise-scale", "--seed", str(seed), *calib]))
    for retune in ([] if args.quick else [[], ["--retune-momentum"]]):
        stages.append((f"calibration async 2-3 groups{' re-tuned' if retune else ''}",
                       ["scale", *tgt, "--strategies", "async", "--workers", "2,3",
                        "--batch", "16", *retune, *calib]))
    return stages


def profile_stage(out: Path, name: str, tag: str = "") -> tuple[str, list[str]]:
    """A node profile of the workload at one thread per rank, written to ``out/name`` (the
    comparison reads every ``node-t*.csv`` there). --quick: a shorter peak measurement; the
    profile's step times are what counts here."""
    return (f"node profile{tag}",
            ["node", *NET, "--threads", "1", "--sweep", PROFILE_BATCHES, "--batch", "8",
             "--repeats", "20", "--quick", "-o", str(out / name), "--no-progress"])


BUSY_BATCHES = "8,16,32"  # the batches the 2-worker runs train at (here and in the report)


def busy_profile_stage(out: Path, name: str, tag: str = "") -> tuple[str, list[str]]:
    """A node profile with both ranks of the node busy (``--busy-ranks 2``), at the batches of
    the 2-worker runs: their compute runs beside another rank's, slower than alone."""
    return (f"node profile, 2 ranks busy{tag}",
            ["node", *NET, "--threads", "1", "--busy-ranks", "2", "--sweep", BUSY_BATCHES,
             "--batch", "8", "--repeats", "20", "--quick", "-o", str(out / name),
             "--no-progress"])


def round_stages(args: argparse.Namespace, out: Path, k: int, profile: bool = True
                 ) -> list[tuple[str, list[str]]]:
    """Round ``k`` (1-based) of ``--rounds``: a node profile (unless ``profile`` is off: the
    caller takes it) and the held-out runs right after it, all at one thread per rank (at this
    workload's size a second thread gains 1.0-1.25x and its step times scatter by tens of
    percent: no basis for a timed comparison). Rounds are spread over time, each with its own
    profile: a shared machine drifts, and every held-out configuration is predicted from the
    median of the profiles. Every configuration (QUICK_HELD_OUT with --quick) runs in every
    round, each run with its own seed; the first run of round 1 also takes the ping-pong."""
    tag = f" (round {k} of {args.rounds})" if args.rounds > 1 else ""
    tgt = target_args(args, out)
    stages = [profile_stage(out, f"node-t1-r{k}.csv", tag),
              busy_profile_stage(out, f"node-t1-b2-r{k}.csv", tag)] if profile else []
    first = True
    for i, (label, argv) in enumerate(HELD_OUT):
        if args.quick and label not in QUICK_HELD_OUT:
            continue
        micro = ["--micro"] if k == 1 and first else []
        first = False
        stages.append((f"held out: {label}{tag}",
                       ["scale", *tgt, *argv, "--threads", "1", *micro, "--seed",
                        str(HELD_OUT_SEED + 100 * (k - 1) + i),
                        "-o", str(out / "heldout.csv")]))
    return stages


def run_stages(stages: list[tuple[str, list[str]]], no_progress: bool) -> None:
    bar = ProgressBar(len(stages), "converge", enabled=False if no_progress else None)
    for label, argv in stages:
        rc = stage.run(argv)
        if rc:
            print(f"perfmodel converge: stage '{label}' failed (exit {rc}); going on",
                  file=sys.stderr)
        bar(label)
