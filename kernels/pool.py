"""Max pooling and global average pooling, NCHW.

FLOPs: max pooling counts ``kh*kw - 1`` comparisons per output forward and 1 add per output
backward (routing the gradient to the winner); global average pooling counts one add per input
element plus one multiply per output forward, and one multiply-free copy-scale (1 FLOP) per input
element backward. Pooling has no parameters.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .base import Layer, Shape, check_batch, pair


@njit(parallel=True, cache=True)
def _maxpool_fwd(x, kh, kw, sh, sw, ho, wo, relu, y, arg):  # pragma: no cover - JIT
    """Max over each window (the first maximum in row-major order wins) and its flat index
    in the image plane; with ``relu``, max(that, 0), and index -1 where it is not positive
    (no gradient flows: the ReLU before the pool would have stopped it)."""
    n, c, h, w = x.shape
    for k in prange(n * c):
        i = k // c
        ch = k % c
        for oh in range(ho):
            for ow in range(wo):
                best = -np.inf
                bi = 0
                for a in range(kh):
                    ih = oh * sh + a
                    for b in range(kw):
                        iw = ow * sw + b
                        v = x[i, ch, ih, iw]
                        if v > best or (a == 0 and b == 0):
                            best = v
                            bi = ih * w + iw
                if relu and not best > 0:
                    best = 0.0
                    bi = -1
                y[i, ch, oh, ow] = best
                arg[i, ch, oh, ow] = bi


@njit(parallel=True, cache=True)
def _maxpool2_fwd(x, ho, wo, relu, y, arg):  # pragma: no cover - JIT
    """:func:`_maxpool_fwd` for 2x2 windows at stride 2 (the HEP net's): the same result and
    tie rule (the first maximum in row-major order wins), without the generic loop nest.
    ``arg`` (int8) holds the winner's place in its window, 2*row + column, or -1."""
    n, c, h, w = x.shape
    for k in prange(n * c):
        i = k // c
        ch = k % c
        for oh in range(ho):
            r0 = 2 * oh
            for ow in range(wo):
                c0 = 2 * ow
                best = x[i, ch, r0, c0]
                bi = 0
                v = x[i, ch, r0, c0 + 1]
                if v > best:
                    best = v
                    bi = 1
                v = x[i, ch, r0 + 1, c0]
                if v > best:
                    best = v
                    bi = 2
                v = x[i, ch, r0 + 1, c0 + 1]
                if v > best:
                    best = v
                    bi = 3
                if relu and not best > 0:
                    best = 0.0
                    bi = -1  # no winner: _maxpool2_bwd writes zeros for the window
                y[i, ch, oh, ow] = best
                arg[i, ch, oh, ow] = bi


@njit(parallel=True, cache=True)
def _maxpool2_bwd(dy, arg, h, w, dx):  # pragma: no cover - JIT
    """Gradient of the 2x2/2 pooling: each input element written once, row by row (the
    windows do not overlap), instead of zeroing the whole input and scattering into it."""
    n, c, ho, wo = dy.shape
    for k in prange(n * c):
        i = k // c
        ch = k % c
        for p in range(2 * ho):
            oh = p // 2
            first = 2 * (p % 2)  # the window places of row p: first, first + 1
            for ow in range(wo):
                a = arg[i, ch, oh, ow] - first  # 0 or 1 when the winner is in row p
                g = dy[i, ch, oh, ow]
                dx[i, ch, p, 2 * ow] = g if a == 0 else 0.0
                dx[i, ch, p, 2 * ow + 1] = g if a == 1 else 0.0
            for q in range(2 * wo, w):  # a column left over when w is odd
                dx[i, ch, p, q] = 0.0
        for p in range(2 * ho, h):  # a row left over when h is odd
            for q in range(w):
                dx[i, ch, p, q] = 0.0


@njit(parallel=True, cache=True)
def _maxpool_bwd(dy, arg, h, w, dx):  # pragma: no cover - JIT
    n, c, ho, wo = dy.shape
    for k in prange(n * c):
        i = k // c
        ch = k % c
        for p in range(h):
            for q in range(w):
                dx[i, ch, p, q] = 0.0
        for oh in range(ho):
            for ow in range(wo):
                a = arg[i, ch, oh, ow]
                if a >= 0:  # -1: a window the fused ReLU zeroed
                    dx[i, ch, a // w, a % w] += dy[i, ch, oh, ow]


class MaxPool2d(Layer):
    """Max pooling without padding (``stride`` defaults to ``kernel_size``, as in PyTorch).

    Ties go to the first maximum in row-major window order. Windows that would run past the
    edge are dropped (PyTorch's ``ceil_mode=False``).

    ``reuse_grad=True``: backward returns the same array every call, overwritten by the next
    backward; for nets that consume the gradient before then. Inside the HEP step a fresh
    205 MB gradient for maxpool1 took ~100 ms to write (its pages faulted in one by one),
    against 18 ms into a reused array. ``reuse_output=True``: the same for forward's output
    and argmax (maxpool1's forward in the HEP step at 224x224, batch 8: 39-203 ms into
    fresh arrays, see ``Conv2d``'s ``reuse_output``).

    The argmax is the winner's index in the image plane (int32), or for 2x2 windows at
    stride 2 its place in the window (int8): a quarter of the bytes to write forward and read
    backward (maxpool1 of the HEP step, batch 8, with its ReLU: 15.0 -> 11.6 ms forward,
    10.0 -> 8.8 ms backward; AMD EPYC, 2 threads).

    ``relu_input``: the input has not been through the ReLU that precedes the pool in the
    net; the pool applies it, max(max over the window, 0), which is the same value and the
    same gradient (ReLU and max commute; the gradient reaches the winner only if it is
    positive). ``Sequential`` sets it when it fuses a ReLU into the pool after it, saving
    the ReLU's two passes over the larger tensor.
    """

    kind = "maxpool"

    def __init__(self, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] | None = None, *, reuse_grad: bool = False,
                 reuse_output: bool = False) -> None:
        super().__init__()
        self.reuse_grad = bool(reuse_grad)
        self.reuse_output = bool(reuse_output)
        self._dx: np.ndarray | None = None
        n = type(self).__name__
        self.kernel_size = pair(n, "kernel_size", kernel_size, 1, 7)
        self.stride = self.kernel_size if stride is None else pair(n, "stride", stride, 1)
        self._shape: Shape | None = None
        self._arg: np.ndarray | None = None
        self.relu_input = False

    @property
    def _two_by_two(self) -> bool:
        return self.kernel_size == self.stride == (2, 2)

    def describe(self) -> str:
        return f"k={self.kernel_size}, s={self.stride}" + (", relu" if self.relu_input else "")

    def output_shape(self, input_shape: Shape) -> Shape:
        expected = "(N>=1, C, H, W) with H, W >= kernel"
        check_batch(self, input_shape, 4, expected)
        n, c, h, w = input_shape
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        if h < kh or w < kw:
            raise self._shape_error(expected, input_shape)
        return n, c, (h - kh) // sh + 1, (w - kw) // sw + 1

    def flops(self, input_shape: Shape) -> tuple[int, int, int]:
        n, c, ho, wo = self.output_shape(input_shape)
        kh, kw = self.kernel_size
        out = n * c * ho * wo
        return out * (kh * kw - 1), out, 0

    def forward(self, x: np.ndarray) -> np.ndarray:
        n, c, ho, wo = self.output_shape(x.shape)
        x = np.ascontiguousarray(x)
        new = self._scratch if self.reuse_output else (lambda _, shape, dt: np.empty(shape, dt))
        y = new("y", (n, c, ho, wo), x.dtype)
        arg = new("arg", (n, c, ho, wo), np.int8 if self._two_by_two else np.int32)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        relu = bool(self.relu_input)
        if self._two_by_two:
            _maxpool2_fwd(x, ho, wo, relu, y, arg)
        else:
            _maxpool_fwd(x, kh, kw, sh, sw, ho, wo, relu, y, arg)
        self._shape, self._arg = x.shape, arg
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        if self._shape is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        if not self.needs_input_grad:
            return None
        n, c, h, w = self._shape
        dx = self._dx
        if dx is None or dx.shape != (n, c, h, w) or dx.dtype != dy.dtype:
            dx = np.empty((n, c, h, w), dtype=dy.dtype)
            self._dx = dx if self.reuse_grad else None
        bwd = _maxpool2_bwd if self._two_by_two else _maxpool_bwd
        bwd(np.ascontiguousarray(dy), self._arg, h, w, dx)
        return dx


class GlobalAvgPool2d(Layer):
    """Mean over H and W: (N, C, H, W) -> (N, C). PyTorch: ``AdaptiveAvgPool2d(1)`` + flatten."""

    kind = "avgpool"

    def __init__(self) -> None:
        super().__init__()
        self._shape: Shape | None = None

    def output_shape(self, input_shape: Shape) -> Shape:
        check_batch(self, input_shape, 4, "(N>=1, C, H, W)")
        return tuple(input_shape[:2])

    def flops(self, input_shape: Shape) -> tuple[int, int, int]:
        n, c, h, w = input_shape
        return n * c * h * w + n * c, n * c * h * w, 0

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.output_shape(x.shape)
        self._shape = x.shape
        return x.mean(axis=(2, 3), dtype=x.dtype)

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        if self._shape is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        n, c, h, w = self._shape
        scale = dy.dtype.type(1.0 / (h * w))
        return np.ascontiguousarray(
            np.broadcast_to((dy * scale)[:, :, None, None], (n, c, h, w)))
