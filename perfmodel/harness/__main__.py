"""Entry point of one harness run, on every rank:

    mpiexec -n N python -m mpi4py -m perfmodel.harness --strategy hybrid --groups 2 ...

(``python -m mpi4py`` makes an exception on any rank abort the whole job.) Arguments are
validated on every rank before any work; a mistake prints one line on rank 0 and every rank
exits with code 2. Rank 0 appends the run's rows to ``--output``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import h5py
import numpy as np

from ..provenance import run_base
from ..results import ResultsStream
from ..ui import UserError
from .config import add_arguments, from_args, validate
from .data import VAL_FILE
from .rows import Progress, run_rows
from .train import build_net, run


def main(argv: list[str] | None = None) -> int:
    from mpi4py import MPI  # importing MPI initialises it: only where a rank runs

    comm = MPI.COMM_WORLD
    problem = launch_problem(comm.size)
    if problem:
        if os.environ.get("SLURM_PROCID", "0") == "0":
            print(f"perfmodel harness: error: {problem}", file=sys.stderr, flush=True)
        return 2
    p = argparse.ArgumentParser(prog="perfmodel.harness", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    try:
        args = p.parse_args(argv)
        cfg = from_args(args)
        validate(cfg, comm.size)
    except UserError as e:
        if comm.rank == 0:
            print(f"perfmodel harness: error: {e}", file=sys.stderr, flush=True)
        # python -m mpi4py turns a non-zero exit into MPI_Abort: let rank 0 speak first
        comm.Barrier()
        return 2
    # the job's cores: the union of the ranks' affinity masks (a pinned rank sees only its own)
    cores_seen = comm.allgather(sorted(os.sched_getaffinity(0)))
    job_cores = len(set().union(*map(set, cores_seen)))
    problem = _data_problem(cfg) if comm.rank == 0 else None
    problem = comm.bcast(problem, root=0)
    if problem:
        if comm.rank == 0:
            print(f"perfmodel harness: error: {problem}", file=sys.stderr, flush=True)
        comm.Barrier()
        return 2
    stream = on_eval = None
    if comm.rank == 0:
        lib = MPI.Get_library_version().strip().splitlines()[0]
        base = run_base(cfg.threads, ranks=comm.size, mpi_library=lib)
        base["cores"] = job_cores
        base["functional"] = cfg.functional or comm.size * cfg.threads > job_cores
        model = build_net(cfg)
        workers = comm.size - cfg.param_servers
        groups = workers if cfg.strategy == "async" else cfg.groups
        layout0 = dict(workers=workers, groups=groups, per_group=workers // groups,
                       servers=cfg.param_servers, subject=getattr(model, "name", cfg.net))
        if cfg.output:
            stream = ResultsStream(cfg.output)
            progress = Progress(cfg, layout0, base)

            def on_eval(trace) -> None:
                stream.add(progress.rows(trace))
    traces, net, layout = run(cfg, comm, on_eval)
    if net is not None and cfg.save_weights and comm.rank == 0:
        np.savez(cfg.save_weights, **net.state())
    if comm.rank == 0:
        layout["subject"] = layout0["subject"]
        streamed = 0
        if stream:
            stream.add(progress.rows(traces[0]))  # what finished after the last evaluation
            streamed = progress.iterations
        rows = run_rows(cfg, traces, layout, base, float(model.ledger(1).train_flop),
                        streamed=streamed, difficulty=_difficulty(cfg.data))
        if stream:
            stream.add(rows)
        rate = [r for r in rows if r["what"] == "run" and r["metric"] == "sample_rate"]
        tgt = traces[0].target
        reach = ""
        if tgt:
            reach = (f"; target {cfg.target_loss:g} {'reached' if tgt['reached'] else 'NOT reached (censored)'}"
                     f" after {tgt['updates']} updates")
        print(f"{cfg.strategy} ranks={comm.size} groups={layout['groups']} "
              f"servers={layout['servers']}: {rate[0]['value']:.2f} samples/s sustained, "
              f"{rate[1]['value']:.2f} peak{reach}" + (f" -> {cfg.output}" if cfg.output else ""),
              flush=True)
    return 0


def launch_problem(size: int) -> str | None:
    """srun started several tasks, yet each sees an MPI world of one: Slurm's PMI plugin does
    not match the MPI (N independent one-rank runs would follow). None when all is well."""
    tasks = int(os.environ.get("SLURM_STEP_NUM_TASKS") or 0)
    if tasks > 1 and size == 1:
        return (f"srun started {tasks} tasks but each sees an MPI world of 1: Slurm's PMI "
                "plugin does not match this MPI. Launch with srun --mpi=pmi2 (MPICH) or "
                "--mpi=pmix (Open MPI), or with mpiexec inside the allocation "
                "(perfmodel scale --emit-slurm --slurm-launcher/--slurm-mpi)")
    return None


def _data_problem(cfg) -> str | None:
    """What is wrong with the data folder for this run, or None."""

    d = Path(cfg.data)
    if not any(d.glob("shard_*.h5")):
        return f"--data={cfg.data}: no shard_*.h5 there (make them with perfmodel data)"
    if cfg.eval_every and not (d / VAL_FILE).exists():
        return (f"--eval-every needs held-out events in {d / VAL_FILE} (perfmodel data "
                "--val-samples N)")
    return None


def _difficulty(data: str) -> float:
    shards = sorted(Path(data).glob("shard_*.h5"))
    with h5py.File(shards[0], "r") as f:
        return float(f.attrs.get("difficulty", 0.0))


if __name__ == "__main__":
    sys.exit(main())
