"""The pieces of the sbatch scripts that ``perfmodel scale --emit-slurm`` and ``perfmodel plan
--emit-slurm`` write: the launcher line and a ``run`` wrapper that records a failed launch.

Two launchers, as clusters offer them:

* ``srun`` (the default): Slurm starts the ranks itself and hands them the job's wire-up
  through a PMI plugin, which must match the MPI that mpi4py was built against: ``--mpi=pmi2``
  for MPICH (the `mpi` extra's wheel, Cray MPICH, Intel MPI), ``--mpi=pmix`` for Open MPI. A
  wrong or missing plugin starts N independent one-rank jobs; the harness detects that and
  stops with the reason.
* ``mpiexec``: the MPI's own launcher inside the allocation (MPICH's Hydra and Open MPI's
  mpirun read the Slurm allocation); for an MPI whose PMI the cluster's Slurm lacks, or to
  use the MPI's own binding options.

A launch that fails ends the job with its exit code; ``run`` first copies its error output to
the job's output (as ever) and appends a ``what=failure`` row with the reason and the job to
the results file (:mod:`perfmodel.harness.failure`).
"""

from __future__ import annotations

import argparse

LAUNCHERS = ("srun", "mpiexec")

RUN_FUNCTION = r'''# run CMD...: launch; on failure, keep its error output in the job's output and append a
# failure row (reason, exit code, job) to the results file, then end the job with that code
run() {
  local err rc=0
  err=$(mktemp)
  "$@" 2> >(tee "$err" >&2) || rc=$?
  wait
  if [ "$rc" -ne 0 ]; then
    echo "perfmodel: launch failed with exit code $rc: $*" >&2
    python -m perfmodel.harness.failure --output "$OUT" --exit-code "$rc" --log "$err" \
        --command "$*" || true
  fi
  rm -f "$err"
  return "$rc"
}
'''


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The launcher options of an --emit-slurm command."""
    p.add_argument("--slurm-launcher", choices=LAUNCHERS, default="srun",
                   help="with --emit-slurm: srun (default; needs --slurm-mpi to match your "
                        "MPI) or mpiexec inside the allocation")
    p.add_argument("--slurm-mpi", default="pmi2", help="with --emit-slurm and srun: Slurm's "
                   "PMI plugin (default pmi2, for MPICH; pmix for Open MPI)")


def launch(ranks: int, launcher: str, mpi: str) -> str:
    """The command prefix that starts ``ranks`` ranks, each bound to its CPUs."""
    if launcher == "srun":
        return f"srun -n {ranks} --mpi={mpi} --cpu-bind=cores"
    return f"mpiexec -n {ranks}"
