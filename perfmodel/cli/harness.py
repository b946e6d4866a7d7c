"""``perfmodel scale`` (MPI scaling sweeps of the harness) and ``perfmodel data`` (synthetic
HDF5 shards)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import replace
from pathlib import Path

import kernels
from kernels.threads import available_cores

from ..harness.config import add_convergence_arguments
from ..harness.data import dataset_matches, write_dataset
from ..harness.scale import (check_difficulty, harness_command, launch, mpiexec_path, plan,
                             slurm_script)
from ..harness.slurm import add_arguments as slurm_arguments
from ..ui import ProgressBar, UserError, default_output


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--net", default="hep", help="hep or climate (default hep)")
    p.add_argument("--image-size", type=int, default=32, help="input size (default 32)")
    p.add_argument("--filters", type=int, default=16, help="HEP conv width (default 16)")
    p.add_argument("--strategies", default="sync,async,hybrid",
                   help="comma-separated: sync, async, hybrid (default all)")
    p.add_argument("--workers", default="1,2", help="worker counts (default 1,2)")
    p.add_argument("--groups", default="1,2", help="hybrid group counts (default 1,2)")
    p.add_argument("--param-servers", default="1", help="server counts for async and "
                   "hybrid (default 1)")
    p.add_argument("--batch", type=int, default=8, help="weak scaling: batch per worker "
                   "(default 8)")
    p.add_argument("--global-batch", type=int, default=None,
                   help="strong scaling: batch per synchronous group (replaces --batch)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per run (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps (default 3)")
    p.add_argument("--straggler", default="", help="injected delay per step and worker, "
                   "e.g. exponential:0.05 (seconds)")
    p.add_argument("--threads", type=int, default=None, help="threads per rank (default "
                   "cores // ranks)")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    p.add_argument("--momentum", type=float, default=0.9, help="explicit SGD momentum "
                   "(default 0.9; asynchrony adds implicit momentum: lower it for many groups)")
    p.add_argument("--retune-momentum", action="store_true",
                   help="async/hybrid: lower the explicit momentum for G groups to "
                        "max(0, 1 - G (1 - m)), keeping the effective momentum at m "
                        "(Mitliagkas et al. 2016)")
    p.add_argument("--dropout", type=float, default=0.5, help="HEP dropout (default 0.5, the "
                   "published net's; 16-filter nets learn with 0)")
    p.add_argument("--seed", type=int, default=0, help="weights and data order (default 0)")
    add_convergence_arguments(p)
    p.add_argument("--data", default=None, help="HDF5 shards (default data/NET-SIZE[-dD], "
                   "made if missing)")
    p.add_argument("--samples", type=int, default=1024, help="samples to generate when the "
                   "data is missing (default 1024)")
    p.add_argument("--difficulty", type=float, default=0.0, help="HEP data difficulty 0..1 "
                   "when the data is made (default 0)")
    p.add_argument("--val-samples", type=int, default=512, help="held-out events made with "
                   "the data (default 512)")
    p.add_argument("--output", "-o", default=None, help="results CSV (default "
                   "results/scale-NET-TIME.csv)")
    p.add_argument("--mpiexec", default=None, help="MPI launcher (default: mpiexec beside "
                   "the Python interpreter, else on PATH)")
    p.add_argument("--timeout-s", type=float, default=600, help="per-run limit (default 600)")
    p.add_argument("--emit-slurm", default=None, metavar="FILE",
                   help="write an sbatch script for this sweep instead of running it")
    p.add_argument("--slurm-cpus-per-task", type=int, default=64,
                   help="with --emit-slurm: cores per rank (default 64, e.g. of a 68-core "
                        "KNL node with 4 left to the OS)")
    p.add_argument("--slurm-ranks-per-node", type=int, default=1,
                   help="with --emit-slurm: ranks on each node (default 1, as in the paper)")
    slurm_arguments(p)
    p.add_argument("--timed-only", action="store_true", help="skip the runs whose ranks x "
                   "threads would exceed the cores (functional runs), with a note")
    p.add_argument("--dry-run", action="store_true", help="print the runs, run nothing")
    p.add_argument("--micro", action="store_true", help="also run the ping-pong and "
                   "allreduce micro-benchmarks (2 ranks)")
    p.add_argument("--no-progress", action="store_true")


def run_scale(args: argparse.Namespace) -> int:
    cores = available_cores()
    runs, notes = plan(args, cores)
    out = args.output or default_output("scale", args.net)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    if args.emit_slurm:
        for name in ("slurm_ranks_per_node", "slurm_cpus_per_task"):
            if getattr(args, name) < 1:
                raise UserError(f"--{name.replace('_', '-')}={getattr(args, name)} is out of "
                                "range (allowed >= 1)")
        Path(args.emit_slurm).write_text(slurm_script(runs, args))
        print(f"sbatch script for {len(runs)} runs written to {args.emit_slurm}")
        return 0
    launcher = [mpiexec_path(args.mpiexec)]
    if args.dry_run:
        for ranks, cfg in runs:
            print(shlex.join(harness_command(launcher, ranks, replace(cfg, output=out))))
        return 0
    data = Path(runs[0][1].data)
    max_ranks = max(r for r, _ in runs)
    if not dataset_matches(data, args.difficulty, need_val=args.eval_every > 0):
        print(f"generating {args.samples} {args.net} samples (+{args.val_samples} held out, "
              f"difficulty {args.difficulty:g}) into {data}/", file=sys.stderr)
        for old in data.glob("*.h5"):
            old.unlink()
        write_dataset(data, args.net, args.samples, args.image_size, shards=max_ranks,
                      difficulty=args.difficulty, val_samples=args.val_samples)
    bar = ProgressBar(len(runs) + args.micro, "scale", enabled=False if args.no_progress
                      else None)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    failed = 0
    if args.micro:
        cmd = [*launcher, "-n", "2", sys.executable, "-m", "mpi4py", "-m",
               "perfmodel.harness.micro", "--output", out, "--net", args.net,
               "--image-size", str(args.image_size)]
        failed += launch(cmd, args.timeout_s, env)
        bar("micro")
    for ranks, cfg in runs:
        if cfg.functional:
            print(f"note: {cfg.strategy} on {ranks} ranks x {cfg.threads} threads exceeds "
                  f"the {cores} cores: functional run, not scaling data", file=sys.stderr)
        failed += launch(harness_command(launcher, ranks, replace(cfg, output=out)),
                          args.timeout_s, env)
        bar(f"{cfg.strategy} {ranks} ranks")
    print(f"results: {out}" + (f" ({failed} run(s) failed)" if failed else ""))
    return 1 if failed else 0


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--net", default="hep", help="hep or climate")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--samples", type=int, default=1024)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--labelled-fraction", type=float, default=0.5,
                   help="climate: fraction of labelled images")
    p.add_argument("--difficulty", type=float, default=0.0,
                   help="HEP: 0..1, how much signal and background overlap (jet counts, "
                        "pile-up); 0 (default) is the easiest")
    p.add_argument("--val-samples", type=int, default=512,
                   help="held-out events in val.h5, for validation losses (default 512; 0: "
                        "none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="folder for shard_*.h5")


def run_data(args: argparse.Namespace) -> int:
    if args.net not in ("hep", "climate"):
        raise UserError(f"--net={args.net!r} is not known (allowed: hep, climate)")
    for name in ("samples", "shards", "image_size"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')}={getattr(args, name)} is out of "
                            "range (allowed >= 1)")
    if args.samples < args.shards:
        raise UserError(f"--samples={args.samples} is fewer than --shards={args.shards}")
    if not 0 <= args.labelled_fraction <= 1:
        raise UserError(f"--labelled-fraction={args.labelled_fraction} is out of range "
                        "(allowed 0..1)")
    check_difficulty(args.difficulty, args.val_samples)
    try:
        kernels.NETS[args.net](image_size=args.image_size)
    except ValueError as e:
        raise UserError(f"--image-size={args.image_size}: {e}") from None
    bar = ProgressBar(args.shards + bool(args.val_samples), "data")
    write_dataset(args.out, args.net, args.samples, args.image_size, args.shards, args.seed, args.labelled_fraction, progress=bar,
                          difficulty=args.difficulty, val_samples=args.val_samples)
    print(f"{args.samples} {args.net} samples in {args.shards} shard(s)"
          + (f" and {args.val_samples} held out in val.h5" if args.val_samples else "")
          + f" under {args.out}/")
    return 0
