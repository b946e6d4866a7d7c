"""One ``perfmodel`` command run as a stage of a longer job, in its own Python process.

A measurement must not depend on what ran before it in the same job: thread pools, CPU
affinity, BLAS threads and caches all outlive a command inside one interpreter. The default
report pipeline and ``perfmodel converge`` therefore run every stage through :func:`run`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run(argv: list[str], log: Path | None = None) -> int:
    """Run ``python -m perfmodel ARGV`` in a fresh process; its exit status (2: bad input).
    With ``log``, its standard output and error are appended there (the caller names the log
    when a stage fails)."""
    cmd = [sys.executable, "-m", "perfmodel", *argv]
    if log is None:
        return subprocess.run(cmd).returncode
    with open(log, "a") as f:
        f.write(f"$ perfmodel {' '.join(argv)}\n")
        f.flush()
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
