"""The paper's nets on NVIDIA GPUs with Numba CUDA kernels (:mod:`.ops`), behind the CPU
layers' API and ledger (:mod:`.layers`, :mod:`.net`, :mod:`.climate`):
``hep_net(device="cuda")`` and ``climate_net(device="cuda")``.

``available()`` says whether a device (or Numba's CUDA simulator, ``NUMBA_ENABLE_CUDASIM=1``)
is there to run them; the simulator runs every kernel in Python threads, for tests on tiny
shapes only.
"""

from __future__ import annotations

from numba import config, cuda

from .climate import CudaClimateNet
from .net import CudaSequential


def simulated() -> bool:
    """True under Numba's CUDA simulator."""
    return bool(config.ENABLE_CUDASIM)


def available() -> bool:
    """A CUDA device or the simulator."""
    return simulated() or cuda.is_available()


__all__ = ["CudaClimateNet", "CudaSequential", "available", "simulated"]
