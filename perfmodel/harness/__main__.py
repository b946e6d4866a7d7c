"""Entry point of one harness run, on every rank:

    mpiexec -n N python -m mpi4py -m perfmodel.harness --strategy hybrid --groups 2 ...

(``python -m mpi4py`` makes an exception on any rank abort the whole job.) Arguments are
validated on every rank before any work; a mistake prints one line on rank 0 and every rank
exits with code 2. Rank 0 appends the run's rows to ``--output``.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from mpi4py import MPI

    from ..ui import UserError
    from .config import add_arguments, from_args, validate

    comm = MPI.COMM_WORLD
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
    from ..provenance import run_base
    from ..results import ResultsWriter
    from .rows import run_rows
    from .train import build_net, run

    # the job's cores: the union of the ranks' affinity masks (a pinned rank sees only its own)
    import os

    cores_seen = comm.allgather(sorted(os.sched_getaffinity(0)))
    job_cores = len(set().union(*map(set, cores_seen)))
    traces, net, layout = run(cfg, comm)
    if net is not None and cfg.save_weights and comm.rank == 0:
        np.savez(cfg.save_weights, **net.state())
    if comm.rank == 0:
        lib = MPI.Get_library_version().strip().splitlines()[0]
        base = run_base(cfg.threads, ranks=comm.size, mpi_library=lib)
        base["cores"] = job_cores
        base["functional"] = cfg.functional or comm.size * cfg.threads > job_cores
        model = build_net(cfg)
        layout["subject"] = getattr(model, "name", cfg.net)
        rows = run_rows(cfg, traces, layout, base, float(model.ledger(1).train_flop))
        if cfg.output:
            ResultsWriter(cfg.output, append=True).add(rows)
        rate = [r for r in rows if r["what"] == "run" and r["metric"] == "sample_rate"]
        print(f"{cfg.strategy} ranks={comm.size} groups={layout['groups']} "
              f"servers={layout['servers']}: {rate[0]['value']:.2f} samples/s sustained, "
              f"{rate[1]['value']:.2f} peak" + (f" -> {cfg.output}" if cfg.output else ""),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
