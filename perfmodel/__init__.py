"""perfmodel: measure a node, model a cluster, validate with MPI, report and plan.

Reproduces and generalizes Kurth et al., "Deep Learning at 15PF" (SC17).
"""

import kernels.blas_env  # noqa: F401 - before anything loads numpy and its OpenBLAS

__version__ = "0.1.0"
