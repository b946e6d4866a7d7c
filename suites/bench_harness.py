"""The harness's communication: allreduce bandwidth and its overhead over a bare mpi4py
Allreduce of the same buffer (through mpiexec, 2 ranks), and the alpha of the ping-pong."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
import subprocess


def _mpiexec() -> str:
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else "mpiexec"


class Allreduce:
    timeout = 300
    number = 1
    repeat = 1

    def setup_cache(self):
        out = Path(tempfile.mkdtemp(prefix="perfmodel-asv-")) / "micro.csv"
        subprocess.run([_mpiexec(), "-n", "2", sys.executable, "-m", "mpi4py", "-m",
                        "perfmodel.harness.micro", "--output", str(out)], check=True,
                       capture_output=True)
        from perfmodel.results import read_results

        df = read_results(out)
        a = df[df.what == "allreduce"].set_index("implementation")
        h = df[df.what == "hockney"].set_index("metric")["value"]
        return {"harness_s": float(a.loc["harness", "value"]),
                "bare_s": float(a.loc["bare", "value"]),
                "bytes": float(a.loc["harness", "bytes"]),
                "alpha_s": float(h["latency"]), "bandwidth": float(h["bandwidth"])}

    def track_allreduce_bandwidth(self, c):
        return c["bytes"] / c["harness_s"] / 1e9

    track_allreduce_bandwidth.unit = "GB/s"

    def track_overhead_over_bare_allreduce(self, c):
        return c["harness_s"] / c["bare_s"]

    track_overhead_over_bare_allreduce.unit = "ratio"

    def track_pingpong_latency(self, c):
        return c["alpha_s"] * 1e6

    track_pingpong_latency.unit = "us"
