"""``perfmodel scale``: strong and weak scaling sweeps of the harness through mpiexec (or an
sbatch script for Slurm), and ``perfmodel data``.

A sweep is the product of strategies x workers x groups x servers. Workers are ranks that
train; servers come on top (ranks = workers + servers, as the paper counts 9594 workers + 6
servers). Weak scaling keeps ``--batch`` per worker; strong scaling keeps ``--global-batch``
per synchronous group. Combinations a strategy cannot take (sync with servers, more groups
than workers, groups that do not divide the workers, a batch that does not divide) are
skipped with a note; a sweep left with nothing to run, and every malformed argument, is an
error (exit 2) before any rank starts. Threads per rank default to cores // ranks; runs with
ranks x threads above the cores are labelled functional (kept out of scaling figures);
``--timed-only`` skips them instead.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from kernels.threads import available_cores

from ..ui import ProgressBar, UserError
from .config import (STRATEGIES, HarnessConfig, Straggler, add_convergence_arguments,
                     to_argv, validate)


def _ints(field: str, text: str) -> list[int]:
    try:
        vals = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise UserError(f"--{field}={text!r} must be comma-separated integers") from None
    if not vals:
        raise UserError(f"--{field} is empty")
    return vals


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
    from ..slurm import add_arguments as slurm_arguments

    slurm_arguments(p)
    p.add_argument("--timed-only", action="store_true", help="skip the runs whose ranks x "
                   "threads would exceed the cores (functional runs), with a note")
    p.add_argument("--dry-run", action="store_true", help="print the runs, run nothing")
    p.add_argument("--micro", action="store_true", help="also run the ping-pong and "
                   "allreduce micro-benchmarks (2 ranks)")
    p.add_argument("--no-progress", action="store_true")


def plan(args: argparse.Namespace, cores: int) -> tuple[list[tuple[int, HarnessConfig]],
                                                          list[str]]:
    """The runs (ranks, config) of a sweep and the notes on skipped combinations."""
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    for s in strategies:
        if s not in STRATEGIES:
            raise UserError(f"--strategies: {s!r} is not a strategy (allowed: "
                            f"{', '.join(STRATEGIES)})")
    workers = _ints("workers", args.workers)
    groups = _ints("groups", args.groups)
    servers = _ints("param-servers", args.param_servers)
    if workers[0] < 1 or groups[0] < 1 or servers[0] < 1:
        raise UserError("--workers, --groups and --param-servers must be >= 1")
    for name in ("batch", "steps", "image_size", "filters"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')}={getattr(args, name)} is out of "
                            "range (allowed >= 1)")
    if not 0 <= args.momentum < 1:
        raise UserError(f"--momentum={args.momentum} is out of range (allowed 0 <= m < 1)")
    if args.global_batch is not None and args.global_batch < 1:
        raise UserError(f"--global-batch={args.global_batch} is out of range (allowed >= 1)")
    if args.threads is not None and not 1 <= args.threads <= cores:
        raise UserError(f"--threads={args.threads} is out of range (allowed 1..{cores})")
    straggler = Straggler.parse(args.straggler)
    _check_difficulty(args.difficulty, args.val_samples)
    data = args.data or os.path.join("data", f"{args.net}-{args.image_size}" + (
        f"-d{args.difficulty:g}" if args.difficulty else ""))
    runs, notes = [], []
    for strat in strategies:
        for w in workers:
            combos = {"sync": [(1, 0)], "async": [(w, s) for s in servers],
                      "hybrid": [(g, s) for g in groups for s in servers]}[strat]
            for g, s in combos:
                if strat == "hybrid" and (g > w or w % g):
                    notes.append(f"skipped hybrid with {w} workers and {g} groups: groups "
                                 "must divide the workers")
                    continue
                per_group = w // g
                if args.global_batch is not None:
                    if args.global_batch % per_group:
                        notes.append(f"skipped {strat} with {w} workers, {g} groups: global "
                                     f"batch {args.global_batch} does not divide over "
                                     f"{per_group} workers")
                        continue
                    b = args.global_batch // per_group
                else:
                    b = args.batch
                ranks = w + s
                threads = args.threads or max(1, cores // ranks)
                if args.timed_only and ranks * threads > cores:
                    notes.append(f"skipped {strat} with {w} workers, {g} groups, {s} "
                                 f"server(s): {ranks} ranks x {threads} threads exceed the "
                                 f"{cores} cores (--timed-only)")
                    continue
                momentum = args.momentum
                if args.retune_momentum and strat != "sync":
                    momentum = max(0.0, 1.0 - g * (1.0 - args.momentum))
                cfg = HarnessConfig(
                    strategy=strat, net=args.net, image_size=args.image_size, data=data,
                    batch=b, steps=args.steps, warmup=args.warmup,
                    groups=1 if strat != "hybrid" else g, param_servers=s, lr=args.lr,
                    momentum=momentum, lr_warmup=args.lr_warmup, dropout=args.dropout,
                    seed=args.seed, eval_every=args.eval_every,
                    eval_samples=args.eval_samples, smooth=args.smooth,
                    target_loss=args.target_loss,
                    max_steps=args.max_steps, noise_scale=args.noise_scale,
                    trace_every=args.trace_every,
                    straggler=straggler, threads=threads, filters=args.filters,
                    functional=ranks * threads > cores, watchdog_s=args.timeout_s)
                validate(cfg, ranks, cores)
                runs.append((ranks, cfg))
    if not runs:
        raise UserError("nothing to run: " + "; ".join(notes[:3]))
    return runs, notes


def mpiexec_path(explicit: str | None) -> str:
    if explicit:
        return explicit
    here = Path(sys.executable).parent / "mpiexec"
    found = str(here) if here.exists() else shutil.which("mpiexec")
    if not found:
        raise UserError("no mpiexec found: pip install 'perfmodel[mpi]' (the MPICH wheel) or "
                        "load your cluster's MPI")
    return found


def binding(launcher: list[str], cfg: HarnessConfig) -> list[str]:
    """Pin each rank to its own cores for timed runs: unpinned, two ranks on two cores ran
    their compute 1.6x slower here (the OS moved them around). Functional runs stay unpinned
    (more ranks than cores cannot be pinned apart)."""
    if cfg.functional:
        return []
    try:
        v = subprocess.run([launcher[0], "--version"], capture_output=True, text=True,
                           timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    if "HYDRA" in v:
        return ["-bind-to", f"core:{cfg.threads}"]
    if "Open MPI" in v or "OpenRTE" in v:
        return ["--bind-to", "core", "--map-by", f"slot:PE={cfg.threads}"]
    return []


def harness_command(launcher: list[str], ranks: int, cfg: HarnessConfig) -> list[str]:
    return [*launcher, *binding(launcher, cfg), "-n", str(ranks), sys.executable, "-m",
            "mpi4py", "-m", "perfmodel.harness", *to_argv(cfg)]


def slurm_script(runs: list[tuple[int, HarnessConfig]], args: argparse.Namespace) -> str:
    """An sbatch script for the same sweep: ``--slurm-ranks-per-node`` ranks a node (1, as in
    the paper), launched by srun or mpiexec (:mod:`perfmodel.slurm`)."""
    from .. import slurm

    per_node = args.slurm_ranks_per_node
    max_ranks = max(r for r, _ in runs)
    nodes = -(-max_ranks // per_node)
    lines = ["#!/bin/bash",
             "#SBATCH --job-name=perfmodel-scale",
             f"#SBATCH --nodes={nodes}",
             f"#SBATCH --ntasks={max_ranks}",
             f"#SBATCH --ntasks-per-node={per_node}",
             f"#SBATCH --cpus-per-task={args.slurm_cpus_per_task}",
             f"#SBATCH --time={max(1, int(len(runs) * args.timeout_s // 60))}",
             "# Generated by `perfmodel scale --emit-slurm`; every run appends to one results",
             f"# file. Threads per rank follow the allocation. Launcher: {args.slurm_launcher}"
             + (f" --mpi={args.slurm_mpi}" if args.slurm_launcher == "srun" else ""),
             "set -euo pipefail",
             "export NUMBA_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}",
             f"DATA={shlex.quote(runs[0][1].data)}",
             f"OUT={shlex.quote(args.output or 'results/scale.csv')}",
             slurm.RUN_FUNCTION,
             f"test -d \"$DATA\" || perfmodel data --net {runs[0][1].net} "
             f"--image-size {runs[0][1].image_size} --samples {args.samples} "
             f"--shards {max_ranks} --val-samples {args.val_samples} --out \"$DATA\"",
             ""]
    for ranks, cfg in runs:
        c = replace(cfg, threads=1, output="$OUT", functional=False)
        argv = to_argv(c)
        argv[argv.index("--threads") + 1] = "${SLURM_CPUS_PER_TASK:-1}"
        argv[argv.index("--data") + 1] = "$DATA"
        argv[argv.index("--output") + 1] = "$OUT"
        lines.append(f"run {slurm.launch(ranks, args.slurm_launcher, args.slurm_mpi)} python "
                     "-m mpi4py -m perfmodel.harness "
                     + " ".join(a if a.startswith("$") else shlex.quote(a) for a in argv)
                     .replace("'$", "$"))
    return "\n".join(lines) + "\n"


def run_scale(args: argparse.Namespace) -> int:
    from ..data import dataset_matches, write_dataset
    from ..ui import default_output

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
        failed += _launch(cmd, args.timeout_s, env)
        bar("micro")
    for ranks, cfg in runs:
        if cfg.functional:
            print(f"note: {cfg.strategy} on {ranks} ranks x {cfg.threads} threads exceeds "
                  f"the {cores} cores: functional run, not scaling data", file=sys.stderr)
        failed += _launch(harness_command(launcher, ranks, replace(cfg, output=out)),
                          args.timeout_s, env)
        bar(f"{cfg.strategy} {ranks} ranks")
    print(f"results: {out}" + (f" ({failed} run(s) failed)" if failed else ""))
    return 1 if failed else 0


def _launch(cmd: list[str], timeout_s: float, env: dict) -> int:
    try:
        r = subprocess.run(cmd, timeout=timeout_s + 30, env=env)
    except subprocess.TimeoutExpired:
        print(f"run timed out after {timeout_s:g} s: {shlex.join(cmd)}", file=sys.stderr)
        return 1
    if r.returncode:
        print(f"run failed (exit {r.returncode}): {shlex.join(cmd)}", file=sys.stderr)
    return int(r.returncode != 0)


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
    from ..data import write_dataset

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
    _check_difficulty(args.difficulty, args.val_samples)
    try:
        import kernels

        kernels.NETS[args.net](image_size=args.image_size)
    except ValueError as e:
        raise UserError(f"--image-size={args.image_size}: {e}") from None
    bar = ProgressBar(args.shards + bool(args.val_samples), "data")
    write_dataset(args.out, args.net, args.samples, args.image_size, args.shards,
                          args.seed, args.labelled_fraction, progress=bar,
                          difficulty=args.difficulty, val_samples=args.val_samples)
    print(f"{args.samples} {args.net} samples in {args.shards} shard(s)"
          + (f" and {args.val_samples} held out in val.h5" if args.val_samples else "")
          + f" under {args.out}/")
    return 0


def _check_difficulty(difficulty: float, val_samples: int) -> None:
    if not 0 <= difficulty <= 1:
        raise UserError(f"--difficulty={difficulty} is out of range (allowed 0..1)")
    if val_samples < 0:
        raise UserError(f"--val-samples={val_samples} is out of range (allowed >= 0)")
