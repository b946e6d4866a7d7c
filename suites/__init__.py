"""asv benchmarks (``benchmark_dir`` in asv.conf.json): one module per area."""

# before any suite imports numpy: OpenBLAS's idle-thread spin time (see kernels/blas_env.py)
import kernels.blas_env  # noqa: E402, F401
