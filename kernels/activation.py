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
    """y = x for x > 0, else ``negative_slope * x`` (the climate net uses 0.1)."""

    kind = "leakyrelu"

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        if not 0.0 <= float(negative_slope) < 1.0:
            raise ValueError(f"{type(self).__name__}: negative_slope={negative_slope} is out "
                             "of range (allowed 0 <= slope < 1)")
        self.negative_slope = float(negative_slope)
        self._x: np.ndarray | None = None

    def describe(self) -> str:
        return f"slope={self.negative_slope}"

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.output_shape(x.shape)
        x = np.ascontiguousarray(x)
        y = np.empty_like(x)
        _leaky_fwd(x.reshape(-1), x.dtype.type(self.negative_slope), y.reshape(-1))
        self._x = x
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        x = self._x
        if x is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        if dy.shape != x.shape:
            raise self._shape_error(f"gradient {x.shape}", dy.shape)
        dx = np.empty_like(x)
        _leaky_bwd(x.reshape(-1), np.ascontiguousarray(dy, dtype=x.dtype).reshape(-1),
                   x.dtype.type(self.negative_slope), dx.reshape(-1))
        return dx


class ReLU(LeakyReLU):
    """y = max(x, 0)."""

    kind = "relu"

    def __init__(self) -> None:
        super().__init__(0.0)

    def describe(self) -> str:
        return ""


class Dropout(_Elementwise):
    """Inverted dropout: in training, zero each element with probability ``p`` and scale the
    survivors by 1/(1-p); identity in evaluation mode. Seeded for repeatable runs."""

    kind = "dropout"

    def __init__(self, p: float = 0.5, *, seed: int | None = None) -> None:
        super().__init__()
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"{type(self).__name__}: p={p} is out of range (allowed 0 <= p < 1)")
        self.p = float(p)
        self._rng = np.random.default_rng(seed)
        self._mask: np.ndarray | None = None

    def describe(self) -> str:
        return f"p={self.p}"

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.output_shape(x.shape)
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        keep = self._rng.random(x.shape, dtype=np.float32) >= self.p
        self._mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - self.p))
        return x * self._mask

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        return dy if self._mask is None else dy * self._mask
