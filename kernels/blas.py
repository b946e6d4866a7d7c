"""``C = A @ B + beta * C`` through the CBLAS ``sgemm`` of the OpenBLAS that numpy loaded.

numpy's ``matmul`` always overwrites its output (beta = 0), so a sum of GEMMs costs a pass
over the output per term. The convolutions' shifted-GEMM path (:mod:`kernels.conv`)
accumulates nine GEMMs into one output that stays in cache, which needs beta = 1. The
library is the one numpy itself calls (found through ``threadpoolctl``, so its thread count
is the one :func:`kernels.set_num_threads` sets); nothing is loaded that numpy has not
loaded. Where that library exports no CBLAS ``sgemm`` that this module knows (numpy built
against another BLAS), :data:`AVAILABLE` is False and the callers keep their numpy path;
:func:`describe` says which, for the provenance.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_info

#: (symbol, integer type): numpy's wheels bundle OpenBLAS with 64-bit integers and
#: prefixed names (scipy-openblas); a system OpenBLAS exports plain ``cblas_sgemm``.
_SYMBOLS = (("scipy_cblas_sgemm64_", ctypes.c_int64), ("cblas_sgemm64_", ctypes.c_int64),
            ("scipy_cblas_sgemm", ctypes.c_int32), ("cblas_sgemm", ctypes.c_int32))
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def _bind(lib: ctypes.CDLL) -> tuple[Callable | None, str]:
    """The first CBLAS sgemm of :data:`_SYMBOLS` that ``lib`` exports, typed, and its name."""
    for name, integer in _SYMBOLS:
        fn = getattr(lib, name, None)
        if fn is None:
            continue
        p, f = ctypes.c_void_p, ctypes.c_float
        fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, integer, integer, integer,
                       f, p, integer, p, integer, f, p, integer]
        fn.restype = None
        return fn, name
    return None, ""


def _find() -> tuple[Callable | None, str]:
    for info in threadpool_info():
        if info.get("user_api") != "blas" or info.get("internal_api") != "openblas":
            continue
        try:
            fn, name = _bind(ctypes.CDLL(info["filepath"]))
        except OSError:
            continue
        if fn is not None:
            return fn, f"{name} from {info['filepath'].rsplit('/', 1)[-1]}"
    return None, "none: numpy's BLAS exports no CBLAS sgemm known here"


_SGEMM, _WHERE = _find()
#: whether :func:`sgemm` can run here
AVAILABLE: bool = _SGEMM is not None


def describe() -> str:
    """Which library and symbol :func:`sgemm` calls, or why none."""
    return _WHERE


def _rows(a: np.ndarray, name: str) -> int:
    """The leading dimension of a 2-D float32 array whose rows are contiguous."""
    if a.ndim != 2 or a.dtype != np.float32:
        raise ValueError(f"sgemm: {name} must be a 2-D float32 array (got {a.ndim}-D "
                         f"{a.dtype})")
    if a.shape[1] > 1 and a.strides[1] != 4 or a.strides[0] % 4 or a.strides[0] < 0:
        raise ValueError(f"sgemm: {name}'s rows must be contiguous (strides {a.strides})")
    return max(a.strides[0] // 4, a.shape[1], 1)


def sgemm(a: np.ndarray, b: np.ndarray, c: np.ndarray, beta: float = 0.0,
          trans_b: bool = False) -> None:
    """``c = a @ b + beta * c`` (``b.T`` for ``b`` with ``trans_b``), float32, in place.

    Each operand is 2-D with contiguous rows and any row stride, so strided views (a block of
    columns, a shifted window of a flat image) go in without a copy. Raises RuntimeError
    where :data:`AVAILABLE` is False and ValueError on shapes or layouts it cannot take."""
    if _SGEMM is None:
        raise RuntimeError(f"kernels.blas.sgemm: {_WHERE}")
    _call(_SGEMM, a, b, c, beta, trans_b)


def load_cblas(path: str, threads: int) -> Callable[..., None]:
    """:func:`sgemm` through another library's CBLAS sgemm (e.g. MKL's ``libmkl_rt.so``), for
    comparing BLAS libraries at the kernels' GEMM shapes; its thread count is set to
    ``threads`` where it exports MKL's or OpenBLAS's setter. Raises ValueError if the file
    does not load or exports no CBLAS sgemm."""
    try:
        lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        raise ValueError(f"{path}: does not load as a shared library ({e})") from None
    fn, _ = _bind(lib)
    if fn is None:
        raise ValueError(f"{path}: exports no CBLAS sgemm (allowed: "
                         f"{', '.join(n for n, _ in _SYMBOLS)})")
    for setter in ("MKL_Set_Num_Threads", "openblas_set_num_threads"):
        if hasattr(lib, setter):
            getattr(lib, setter)(int(threads))

    def other(a: np.ndarray, b: np.ndarray, c: np.ndarray, beta: float = 0.0,
              trans_b: bool = False) -> None:
        _call(fn, a, b, c, beta, trans_b)

    return other


def _call(fn: Callable, a: np.ndarray, b: np.ndarray, c: np.ndarray, beta: float,
          trans_b: bool) -> None:
    lda, ldb, ldc = _rows(a, "a"), _rows(b, "b"), _rows(c, "c")
    m, k = a.shape
    kb, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if kb != k or c.shape != (m, n):
        raise ValueError(f"sgemm: shapes {a.shape} @ {b.shape}{'.T' if trans_b else ''} "
                         f"-> {c.shape} do not match")
    if not c.flags.writeable:
        raise ValueError("sgemm: c is read-only")
    fn(_ROW_MAJOR, _NO_TRANS, _TRANS if trans_b else _NO_TRANS, m, n, k, 1.0,
       a.ctypes.data, lda, b.ctypes.data, ldb, float(beta), c.ctypes.data, ldc)
