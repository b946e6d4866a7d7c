"""The Numba CUDA nets on a GPU: the device's FP32 peak (an FMA-chain kernel) and memory
bandwidth (a triad), and the paper's nets' training step per layer and per batch.

The same rows as the CPU measurement (:class:`.node.StepMeasurement`), with
``implementation=numba-cuda``. Each timed step and each timed layer ends with a device
synchronize (timing only). FLOP: 2 per multiply-add, from the nets' ledger; the peak kernel
runs 8 independent FMA chains per thread, 16 FLOP per round. Under Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``) everything runs on tiny launches: functional only, never a
figure (the rows say ``simulator`` in ``versions``).
"""

from __future__ import annotations

import time

import numpy as np
from numba import cuda

import kernels
from kernels import LayerTimer
from kernels import cuda as kc
from kernels.cuda import ops

from ..results import Repeats
from .node import StepMeasurement, build_net, synthetic_batch


def device_versions() -> str:
    """The GPU's name, compute capability and SM count ('name=value;...'), or the simulator."""
    if kc.simulated():
        return "device=numba-cuda-simulator"
    d = cuda.get_current_device()
    cc = ".".join(map(str, d.compute_capability))
    return (f"device={d.name.decode() if isinstance(d.name, bytes) else d.name};"
            f"compute_capability={cc};sm_count={d.MULTIPROCESSOR_COUNT}")


def _timed(fn, repeats: int) -> Repeats:
    fn()
    cuda.synchronize()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return Repeats(out)


def fma_peak(repeats: int = 5) -> tuple[Repeats, float]:
    """(FLOP/s of each run, FLOP per run) of the FMA-chain kernel over the whole device."""
    if kc.simulated():
        blocks, threads, rounds = 1, 32, 4
    else:
        blocks = 64 * cuda.get_current_device().MULTIPROCESSOR_COUNT
        threads, rounds = 256, 8192
    out = cuda.device_array(blocks * threads, np.float32)
    flop = float(blocks * threads * rounds * ops.FMA_FLOP_PER_ROUND)
    t = _timed(lambda: ops.fma_chain[blocks, threads](out, rounds), repeats)
    return Repeats([flop / s for s in t.samples]), flop


def triad_bandwidth(n: int | None = None, repeats: int = 5) -> tuple[Repeats, float]:
    """(B/s of each run, bytes per run) of a = b + s c over n float32 elements."""
    n = n or (256 if kc.simulated() else 1 << 26)
    a, b, c = (cuda.to_device(np.ones(n, np.float32)) for _ in range(3))
    nbytes = 12.0 * n
    t = _timed(lambda: ops.triad[ops.blocks(n), ops.THREADS](a, b, c, np.float32(2.0)),
               repeats)
    return Repeats([nbytes / s for s in t.samples]), nbytes


def measure_step(name: str, batch: int, image_size: int | None, filters: int | None,
                 repeats: int, warmup: int = 1, progress=None) -> StepMeasurement:
    """A paper net (``hep`` or ``climate``) on the device at ``batch``: whole steps (forward,
    the loss, backward, the SGD update), then per-layer times from as many steps with a
    synchronizing timer."""
    if name not in kernels.NETS:
        raise ValueError(f"net={name!r}: the Numba CUDA kernels run the paper's nets "
                         f"(allowed: {', '.join(kernels.NETS)})")
    net = build_net(name, image_size, filters=filters, device="cuda")
    x, y = synthetic_batch(net, batch)
    xd = cuda.to_device(x)
    t0 = time.perf_counter()
    net.train_step(xd, y)
    cuda.synchronize()
    first = time.perf_counter() - t0
    for _ in range(max(warmup, 1) - 1):
        net.train_step(xd, y)
    cuda.synchronize()
    steps = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        net.train_step(xd, y)
        cuda.synchronize()
        steps.append(time.perf_counter() - t0)
        if progress:
            progress(f"batch {batch}")
    layer: dict[tuple[str, str], list[float]] = {}
    for _ in range(repeats):
        timer = LayerTimer()
        net.train_step(xd, y, timer=timer)
        for key, s in timer.seconds.items():
            if key[0] not in ("loss",):
                layer.setdefault(key, []).append(s)
    led = net.ledger(batch)
    return StepMeasurement(net=net.name, batch=batch, image_size=int(net.input_shape[1]),
                           ledger=led, step_s=Repeats(steps), first_call_s=first,
                           layer_s={k: Repeats(v) for k, v in layer.items()})
