"""Test-wide settings.

Numba's CUDA simulator: the CUDA kernels (kernels/cuda) are tested against the CPU kernels on
every machine, GPU or not. The variable must be set before numba is first imported, which is
why it is set here; it changes nothing for the CPU kernels. A machine with a GPU runs the
GPU measurements through ``perfmodel node`` and scripts/gpu_node.sh, not through pytest.
"""

import os

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
