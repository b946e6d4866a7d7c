"""Element-wise layers: ReLU, LeakyReLU and (inverted) Dropout.

FLOPs: 1 per element forward (a max, a compare-select or a multiply) and 1 per element backward.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .base import Layer, Shape


@njit(parallel=True, cache=True)
def _leaky_fwd(x, slope, y):  # pragma: no cover - JIT
    for i in prange(x.size):
        v = x[i]
        y[i] = v if v > 0 else v * slope


@njit(parallel=True, cache=True)
def _leaky_bwd(x, dy, slope, dx):  # pragma: no cover - JIT
    for i in prange(x.size):
        dx[i] = dy[i] if x[i] > 0 else dy[i] * slope


class _Elementwise(Layer):
    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) < 2 or input_shape[0] < 1:
            raise self._shape_error("(N>=1, ...)", input_shape)
        return tuple(input_shape)

    def flops(self, input_shape: Shape) -> tuple[int, int, int]:
        size = int(np.prod(input_shape))
        return size, size, 0


class LeakyReLU(_Elementwise):
    """y = x for x > 0, else ``negative_slope * x`` (the climate net uses 0.1).

    ``inplace=True`` (as PyTorch's) overwrites the input with the output in forward and the
    incoming gradient with the outgoing one in backward: for nets that own both arrays. It
    saves a fresh array each way: on HEP's relu1 (51 M elements) 33 -> 17 ms forward,
    page faults of a new 205 MB array included.
    """

    kind = "leakyrelu"

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__()
        if not 0.0 <= float(negative_slope) < 1.0:
            raise ValueError(f"{type(self).__name__}: negative_slope={negative_slope} is out "
                             "of range (allowed 0 <= slope < 1)")
        self.negative_slope = float(negative_slope)
        self.inplace = bool(inplace)
        self._x: np.ndarray | None = None  # backward reads only its sign (slope >= 0)

    def describe(self) -> str:
        return f"slope={self.negative_slope}" + (", inplace" if self.inplace else "")

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.output_shape(x.shape)
        if self.fused_into:  # the next layer applies it (a max-pool: ``relu_input``)
            self._x = x
            return x
        x = np.ascontiguousarray(x)
        y = x if self.inplace and x.flags.writeable else np.empty_like(x)
        _leaky_fwd(x.reshape(-1), x.dtype.type(self.negative_slope), y.reshape(-1))
        self._x = x  # in place, x now holds the output: same sign, which is all backward reads
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        x = self._x
        if x is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        if dy.shape != x.shape:
            raise self._shape_error(f"gradient {x.shape}", dy.shape)
        if self.fused_into:  # the max-pool's gradient is zero wherever this one's would be
            return dy
        dy = np.ascontiguousarray(dy, dtype=x.dtype)
        dx = dy if self.inplace and dy.flags.writeable else np.empty_like(x)
        _leaky_bwd(x.reshape(-1), dy.reshape(-1), x.dtype.type(self.negative_slope),
                   dx.reshape(-1))
        return dx


class ReLU(LeakyReLU):
    """y = max(x, 0)."""

    kind = "relu"

    def __init__(self, inplace: bool = False) -> None:
        super().__init__(0.0, inplace)

    def describe(self) -> str:
        parts = (["inplace"] if self.inplace else []) + (
            [f"fused into {self.fused_into}"] if self.fused_into else [])
        return ", ".join(parts)


@njit(inline="always")
def _mix32(z):  # pragma: no cover - JIT
    """One round of the 32-bit integer hash "lowbias32" (C. Wellons, hash-prospector: two
    xorshift-multiply steps). Each step is cast back to 32 bits: Numba widens uint32
    products to 64 bits."""
    z = np.uint32(z ^ (z >> np.uint32(16)))
    z = np.uint32(z * np.uint32(0x7FEB352D))
    z = np.uint32(z ^ (z >> np.uint32(15)))
    z = np.uint32(z * np.uint32(0x846CA68B))
    return np.uint32(z ^ (z >> np.uint32(16)))


@njit(parallel=True, cache=True)
def _dropout_fwd(x, key, threshold, scale, y, keep):  # pragma: no cover - JIT
    """Element i survives when the top 24 bits of a keyed hash of i reach ``threshold``
    (p * 2^24): a counter-based generator, so threads need no shared state and a key repeats
    the mask exactly. The hash is two rounds of :func:`_mix32`, the key's low half xored in
    before the first and its high half added before the second; 32-bit arithmetic
    vectorizes on AVX2, where splitmix64's 64-bit products do not (dropout1 of the HEP step
    at 224x224, batch 8: 8.4 ms against 11.1 ms forward, AMD EPYC, 2 threads). Needs
    ``x.size < 2**32``."""
    k0 = np.uint32(key & np.uint64(0xFFFFFFFF))
    k1 = np.uint32(key >> np.uint64(32))
    for i in prange(x.size):
        z = _mix32(np.uint32(_mix32(np.uint32(np.uint32(i) ^ k0)) + k1))
        k = (z >> np.uint32(8)) >= threshold
        keep[i] = k
        y[i] = x[i] * scale if k else 0.0


@njit(parallel=True, cache=True)
def _dropout_bwd(dy, keep, scale, dx):  # pragma: no cover - JIT
    for i in prange(dy.size):
        dx[i] = dy[i] * scale if keep[i] else 0.0


class Dropout(_Elementwise):
    """Inverted dropout: in training, zero each element with probability ``p`` and scale the
    survivors by 1/(1-p); identity in evaluation mode. Seeded for repeatable runs: each
    forward draws a 64-bit key from the layer's generator and a counter-based hash of
    (key, element index) decides, in parallel, which elements survive (p is resolved to
    1/2^24). ``reuse_output=True``: forward's output and mask and backward's gradient are
    kept arrays, overwritten by the next call (dropout1 in the HEP step at 224x224, batch 8:
    16-114 ms forward into fresh arrays; see ``Conv2d``'s ``reuse_output``)."""

    kind = "dropout"

    def __init__(self, p: float = 0.5, *, seed: int | None = None,
                 reuse_output: bool = False) -> None:
        super().__init__()
        self.reuse_output = bool(reuse_output)
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"{type(self).__name__}: p={p} is out of range (allowed 0 <= p < 1)")
        self.p = float(p)
        self._rng = np.random.default_rng(seed)
        self._keep: np.ndarray | None = None

    def describe(self) -> str:
        return f"p={self.p}"

    @property
    def _scale(self) -> float:
        return 1.0 / (1.0 - self.p)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.output_shape(x.shape)
        if not self.training or self.p == 0.0:
            self._keep = None
            return x
        if x.size >= 1 << 32:
            raise ValueError(f"{self.name}: {x.size} elements (allowed < 2**32: the mask's "
                             "hash counts elements in 32 bits)")
        x = np.ascontiguousarray(x)
        y, keep = self._new("y", x.shape, x.dtype), self._new("keep", x.shape, np.bool_)
        key = np.uint64(self._rng.integers(0, 2**63, dtype=np.uint64))
        _dropout_fwd(x.reshape(-1), key, np.uint32(round(self.p * (1 << 24))),
                     x.dtype.type(self._scale), y.reshape(-1), keep.reshape(-1))
        self._keep = keep
        return y

    def _new(self, key: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        return self._scratch(key, shape, dtype) if self.reuse_output else np.empty(shape, dtype)

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        if self._keep is None:
            return dy
        if dy.shape != self._keep.shape:
            raise self._shape_error(f"gradient {self._keep.shape}", dy.shape)
        dy = np.ascontiguousarray(dy)
        dx = self._new("dx", dy.shape, dy.dtype)
        _dropout_bwd(dy.reshape(-1), self._keep.reshape(-1), dy.dtype.type(self._scale),
                     dx.reshape(-1))
        return dx
