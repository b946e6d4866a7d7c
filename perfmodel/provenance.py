"""Provenance written with every result: host, CPU, cores, library versions, git commit."""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata as md
import os
import platform
import socket
import subprocess
import uuid
from pathlib import Path

import llvmlite.binding as llvm
from numba import config as numba_config
from threadpoolctl import threadpool_info

from kernels import blas as kernel_blas
from kernels.blas_env import EFFECTIVE
from kernels.threads import available_cores, threading_layer

_LIBS = ("numpy", "numba", "llvmlite", "pandas", "mpi4py", "torch")


@functools.cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@functools.cache
def numba_cpu() -> str:
    """The CPU name Numba passes to LLVM: ``NUMBA_CPU_NAME`` if set, else the host's."""
    return numba_config.CPU_NAME or llvm.get_host_cpu_name()


@functools.cache
def versions() -> str:
    out = [f"python={platform.python_version()}"]
    for lib in _LIBS:
        try:
            out.append(f"{lib}={md.version(lib)}")
        except md.PackageNotFoundError:
            pass
    out.append(f"numba_threading={threading_layer()}")
    # the LLVM target Numba compiles the kernels for (znver3, skylake-avx512, sapphirerapids...):
    # its name sets the vector ISA and LLVM's preferred vector width
    out.append(f"numba_cpu={numba_cpu()}")
    out.append(f"openblas_thread_timeout={EFFECTIVE}")
    try:
        blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        if blas:
            out.append(f"blas={blas[0]['internal_api']}-{blas[0]['version']}")
            # the kernels the library chose for this CPU (OpenBLAS: Haswell, SkylakeX,
            # Cooperlake, SapphireRapids, Zen...): what an AVX-512 host's sgemm peak runs
            if blas[0].get("architecture"):
                out.append(f"blas_kernels={blas[0]['architecture']}")
        # the conv data gradient's path: shifted GEMMs through this CBLAS sgemm, or im2col
        out.append("conv_shifted_sgemm=" + (kernel_blas.describe().split(" ")[0]
                                             if kernel_blas.AVAILABLE else "none"))
    except Exception:  # pragma: no cover - provenance must never fail a run
        pass
    return ";".join(out)


@functools.cache
def git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                           text=True, timeout=5)
        if r.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                   cwd=here, capture_output=True, text=True, timeout=5)
            return r.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def batch_job() -> str:
    """The batch job this process runs in, 'slurm:JOBID@NODELIST' ('' outside one)."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return ""
    return f"slurm:{job}@{os.environ.get('SLURM_JOB_NODELIST', '')}"


def run_base(threads: int, ranks: int = 1, mpi_library: str = "") -> dict:
    """The fields every row of one run shares."""
    cores = available_cores()
    return dict(run_id=uuid.uuid4().hex[:12], host=socket.gethostname(), cpu_model=cpu_model(),
                cores=cores, threads=threads, ranks=ranks,
                functional=threads * ranks > cores, versions=versions(),
                mpi_library=mpi_library, git_commit=git_commit(), job=batch_job())
