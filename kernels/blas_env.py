"""Set before numpy loads OpenBLAS: how long OpenBLAS's idle worker threads spin.

OpenBLAS's workers spin for 2^28 cycles (~0.1 s) after every GEMM before they sleep. Between
two GEMMs this project runs Numba-parallel kernels (im2col, ReLU, pooling) whose worker thread
then shares a core with a spinning OpenBLAS thread. Measured here (HEP, batch 8, 2 threads):
the backward pass of relu1 took 210 ms with the default and 70 ms with
``OPENBLAS_THREAD_TIMEOUT=4`` (2^4 cycles); the whole step 2.50 -> 2.08 s. A value the user
set is kept. It takes effect only if this module runs before numpy is first imported, which
``import kernels`` and ``import perfmodel`` arrange; :data:`EFFECTIVE` says whether it did.
"""

import os
import sys

#: 2^4 cycles: workers sleep right after a GEMM (OpenBLAS accepts 4..30)
THREAD_TIMEOUT = "4"

if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", THREAD_TIMEOUT)
    EFFECTIVE: str = os.environ["OPENBLAS_THREAD_TIMEOUT"]
else:  # numpy and its OpenBLAS were loaded first: whatever the environment said then holds
    EFFECTIVE = os.environ.get("OPENBLAS_THREAD_TIMEOUT", "default (numpy loaded first)")
