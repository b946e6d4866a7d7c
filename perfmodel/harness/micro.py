"""MPI micro-benchmarks for the model's inputs and the harness's overhead (rank 0 writes):

* ping-pong between ranks 0 and 1 over message sizes (one-way time = round trip / 2, the
  best of the repetitions after warm-up, as the OSU latency test), and alpha (s) and the
  bandwidth 1/beta (B/s) of the Hockney model fitted by least squares on those points;
* the harness's gradient allreduce (pack, ``Allreduce``, scale, unpack) against a bare
  ``Allreduce`` of a buffer of the same size, max over ranks of the median time.

    mpiexec -n 2 python -m mpi4py -m perfmodel.harness.micro --output results/micro.csv
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ..provenance import run_base
from ..results import ResultsWriter, make_row
from .config import HarnessConfig
from .train import Blobs, allreduce_gradients, build_net

SIZES = [8, 64, 512, 4096, 32768, 262144, 1 << 21, 1 << 23]


def pingpong(comm, sizes=SIZES, repeats: int = 20) -> list[tuple[int, float]]:
    from mpi4py import MPI  # importing MPI initialises it: only where a rank runs

    out = []
    for n in sizes:
        buf = np.zeros(max(n // 4, 1), np.float32)
        reps = max(3, min(repeats, int(2e8 // max(n, 1))))
        best = float("inf")
        for i in range(reps + 2):
            comm.Barrier()
            t = MPI.Wtime()
            if comm.rank == 0:
                comm.Send([buf, MPI.FLOAT], dest=1, tag=1)
                comm.Recv([buf, MPI.FLOAT], source=1, tag=2)
            elif comm.rank == 1:
                comm.Recv([buf, MPI.FLOAT], source=0, tag=1)
                comm.Send([buf, MPI.FLOAT], dest=0, tag=2)
            dt = (MPI.Wtime() - t) / 2
            if i >= 2:
                best = min(best, dt)
        out.append((buf.nbytes, best))
    return out


def fit_hockney(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(alpha_s, bandwidth_Bps) of t = alpha + m / bandwidth, least squares weighted by 1/t
    (relative errors), alpha clipped at 0."""
    m = np.array([p[0] for p in points], float)
    t = np.array([p[1] for p in points], float)
    w = 1.0 / t
    a = np.stack([np.ones_like(m), m], 1) * w[:, None]
    alpha, beta = np.linalg.lstsq(a, t * w, rcond=None)[0]
    return max(float(alpha), 0.0), 1.0 / max(float(beta), 1e-18)


def allreduce_overhead(comm, net_name: str = "hep", image_size: int = 32, repeats: int = 20
                       ) -> tuple[float, float, int]:
    """(harness median s, bare median s, bytes), each the max over ranks."""
    from mpi4py import MPI  # importing MPI initialises it: only where a rank runs

    cfg = HarnessConfig(strategy="sync", net=net_name, image_size=image_size, data="",
                        batch=1, steps=1)
    net = build_net(cfg)
    blobs = Blobs(net)
    blobs.bind_grads()[:] = 1.0
    bare = np.ones(blobs.total, np.float32)

    def timed(fn) -> float:
        ts = []
        for i in range(repeats + 3):
            comm.Barrier()
            t = MPI.Wtime()
            fn()
            if i >= 3:
                ts.append(MPI.Wtime() - t)
        return comm.allreduce(float(np.median(ts)), op=MPI.MAX)

    h = timed(lambda: allreduce_gradients(cfg, comm, blobs))
    b = timed(lambda: comm.Allreduce(MPI.IN_PLACE, [bare, MPI.FLOAT], op=MPI.SUM))
    return h, b, blobs.total * 4


def main(argv: list[str] | None = None) -> int:
    from mpi4py import MPI  # importing MPI initialises it: only where a rank runs

    p = argparse.ArgumentParser(prog="perfmodel.harness.micro", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default="")
    p.add_argument("--net", default="hep")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    comm = MPI.COMM_WORLD
    if comm.size < 2:
        if comm.rank == 0:
            print("perfmodel.harness.micro: error: needs at least 2 ranks", file=sys.stderr)
        return 2
    points = pingpong(comm)
    h, b, nbytes = allreduce_overhead(comm, a.net, a.image_size)
    if comm.rank == 0:
        base = run_base(a.threads, ranks=comm.size,
                        mpi_library=MPI.Get_library_version().strip().splitlines()[0])
        alpha, bw = fit_hockney(points)
        rows = [make_row(base, what="pingpong", subject="p2p", metric="time", value=t,
                         unit="s", stat="min", bytes=float(m), implementation="mpi4py")
                for m, t in points]
        rows.append(make_row(base, what="hockney", subject="p2p", metric="latency",
                             value=alpha, unit="s", stat="fit", implementation="mpi4py"))
        rows.append(make_row(base, what="hockney", subject="p2p", metric="bandwidth",
                             value=bw, unit="B/s", stat="fit", implementation="mpi4py"))
        for impl, v in (("harness", h), ("bare", b)):
            rows.append(make_row(base, what="allreduce", subject=a.net, metric="time",
                                 value=v, unit="s", bytes=float(nbytes), implementation=impl,
                                 image_size=a.image_size))
        rows.append(make_row(base, what="ratio", subject="allreduce", metric="ratio",
                             value=h / b, unit="1", implementation="harness/bare",
                             bytes=float(nbytes)))
        if a.output:
            ResultsWriter(a.output, append=True).add(rows)
        print(f"ping-pong: alpha {alpha * 1e6:.2f} us, bandwidth {bw / 1e9:.2f} GB/s; "
              f"allreduce of {nbytes / 1e6:.2f} MB: harness {h * 1e3:.3f} ms, bare "
              f"{b * 1e3:.3f} ms (ratio {h / b:.3f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
