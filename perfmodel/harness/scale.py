"""The sweeps behind ``perfmodel scale``: strong and weak scaling of the harness through mpiexec (or an
sbatch script for Slurm).

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


from ..ui import UserError
from . import slurm
from .config import STRATEGIES, HarnessConfig, Straggler, to_argv, validate


def _ints(field: str, text: str) -> list[int]:
    try:
        vals = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise UserError(f"--{field}={text!r} must be comma-separated integers") from None
    if not vals:
        raise UserError(f"--{field} is empty")
    return vals


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
    check_difficulty(args.difficulty, args.val_samples)
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
    the paper), launched by srun or mpiexec (:mod:`perfmodel.harness.slurm`)."""
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


def launch(cmd: list[str], timeout_s: float, env: dict) -> int:
    try:
        r = subprocess.run(cmd, timeout=timeout_s + 30, env=env)
    except subprocess.TimeoutExpired:
        print(f"run timed out after {timeout_s:g} s: {shlex.join(cmd)}", file=sys.stderr)
        return 1
    if r.returncode:
        print(f"run failed (exit {r.returncode}): {shlex.join(cmd)}", file=sys.stderr)
    return int(r.returncode != 0)


def check_difficulty(difficulty: float, val_samples: int) -> None:
    if not 0 <= difficulty <= 1:
        raise UserError(f"--difficulty={difficulty} is out of range (allowed 0..1)")
    if val_samples < 0:
        raise UserError(f"--val-samples={val_samples} is out of range (allowed >= 0)")
