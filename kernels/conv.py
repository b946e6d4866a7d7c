"""Convolution and transposed convolution (the paper's "deconvolution"), NCHW, float32.

Algorithm: per image, a Numba-parallel ``im2col`` lays the receptive fields out as a
``(C_in*kh*kw, H_out*W_out)`` matrix and one GEMM (numpy's OpenBLAS ``sgemm``) does the
multiply-adds; ``col2im`` scatters column gradients back. The backward pass recomputes the
columns per image instead of keeping them for the whole batch, so memory stays at one image's
columns (the full climate net would otherwise hold gigabytes).

FLOPs: 2 per multiply-add, every kernel tap counted including taps on padded zeros (see
:mod:`kernels.base`); the bias adds 1 FLOP per output element forward and per output element
to its gradient backward.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .base import Layer, Shape, check_batch, check_int, pair


@njit(parallel=True, cache=True, fastmath=False)
def im2col(x, kh, kw, sh, sw, ph, pw, ho, wo, cols):  # pragma: no cover - JIT
    """cols[(c*kh + i)*kw + j, oh*wo + ow] = x[c, oh*sh - ph + i, ow*sw - pw + j] (0 outside)."""
    c_in, h, w = x.shape
    for r in prange(c_in * kh * kw):
        c = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        for oh in range(ho):
            ih = oh * sh - ph + i
            base = oh * wo
            if ih < 0 or ih >= h:
                for ow in range(wo):
                    cols[r, base + ow] = 0.0
                continue
            if sw == 1:
                lo = min(max(0, pw - j), wo)
                hi = max(lo, min(wo, w + pw - j))
                for ow in range(lo):
                    cols[r, base + ow] = 0.0
                for ow in range(lo, hi):
                    cols[r, base + ow] = x[c, ih, ow - pw + j]
                for ow in range(hi, wo):
                    cols[r, base + ow] = 0.0
            else:
                for ow in range(wo):
                    iw = ow * sw - pw + j
                    if iw >= 0 and iw < w:
                        cols[r, base + ow] = x[c, ih, iw]
                    else:
                        cols[r, base + ow] = 0.0


@njit(parallel=True, cache=True, fastmath=False)
def col2im(cols, kh, kw, sh, sw, ph, pw, ho, wo, x):  # pragma: no cover - JIT
    """The adjoint of :func:`im2col`: x[c, ih, iw] = sum of the columns that read it.

    ``x`` is overwritten. Parallel over channels, so no two threads write one element.
    """
    c_in, h, w = x.shape
    for c in prange(c_in):
        for ih in range(h):
            for iw in range(w):
                x[c, ih, iw] = 0.0
        for i in range(kh):
            for j in range(kw):
                r = (c * kh + i) * kw + j
                for oh in range(ho):
                    ih = oh * sh - ph + i
                    if ih < 0 or ih >= h:
                        continue
                    base = oh * wo
                    for ow in range(wo):
                        iw = ow * sw - pw + j
                        if iw >= 0 and iw < w:
                            x[c, ih, iw] += cols[r, base + ow]


@njit(parallel=True, cache=True)
def _add_bias(y, b):  # pragma: no cover - JIT
    n, c, hw = y.shape
    for k in prange(n * c):
        i = k // c
        o = k % c
        bo = b[o]
        for p in range(hw):
            y[i, o, p] += bo


@njit(parallel=True, cache=True)
def _bias_grad(dy, out):  # pragma: no cover - JIT
    n, c, hw = dy.shape
    for o in prange(c):
        s = 0.0
        for i in range(n):
            for p in range(hw):
                s += dy[i, o, p]
        out[o] = s


def _init_uniform(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    """PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (Kaiming uniform with a=sqrt(5))."""
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


def conv_output_size(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


class _ConvBase(Layer):
    """What Conv2d and ConvTranspose2d share: validated geometry and PyTorch's initialization."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int], padding: int | tuple[int, int], bias: bool,
                 seed: int | None, rng: np.random.Generator | None, transposed: bool) -> None:
        super().__init__()
        n = type(self).__name__
        self.in_channels = check_int(n, "in_channels", in_channels, 1)
        self.out_channels = check_int(n, "out_channels", out_channels, 1)
        self.kernel_size = pair(n, "kernel_size", kernel_size, 1, 7)
        self.stride = pair(n, "stride", stride, 1)
        self.padding = pair(n, "padding", padding, 0)
        kh, kw = self.kernel_size
        rng = rng if rng is not None else np.random.default_rng(seed)
        # PyTorch computes fan_in from weight.size(1): in_channels, or out_channels if transposed
        first, second = ((self.in_channels, self.out_channels) if transposed
                         else (self.out_channels, self.in_channels))
        fan_in = second * kh * kw
        self.weight = _init_uniform(rng, (first, second, kh, kw), fan_in)
        self.bias = _init_uniform(rng, (self.out_channels,), fan_in) if bias else None
        self.grad_weight = np.zeros_like(self.weight)
        self.grad_bias = np.zeros_like(self.bias) if bias else None
        self._x: np.ndarray | None = None


class Conv2d(_ConvBase):
    """2-D convolution, ``weight`` of shape (out_channels, in_channels, kh, kw), ``bias`` (out,).

    Same signature and layouts as ``torch.nn.Conv2d`` (no dilation or groups). Kernel sizes 1–7.
    """

    kind = "conv"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 bias: bool = True, *, seed: int | None = None,
                 rng: np.random.Generator | None = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias, seed,
                         rng, transposed=False)

    def describe(self) -> str:
        return (f"{self.in_channels}->{self.out_channels}, k={self.kernel_size}, "
                f"s={self.stride}, p={self.padding}")

    def output_shape(self, input_shape: Shape) -> Shape:
        expected = f"(N>=1, {self.in_channels}, H, W) with H+2p, W+2p >= kernel"
        check_batch(self, input_shape, 4, expected)
        n, c, h, w = input_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        if c != self.in_channels or h + 2 * ph < kh or w + 2 * pw < kw:
            raise self._shape_error(expected, input_shape)
        return (n, self.out_channels, conv_output_size(h, kh, sh, ph),
                conv_output_size(w, kw, sw, pw))

    def flops(self, input_shape: Shape) -> tuple[int, int, int]:
        n, co, ho, wo = self.output_shape(input_shape)
        kh, kw = self.kernel_size
        mac = n * co * ho * wo * self.in_channels * kh * kw
        bias = n * co * ho * wo if self.bias is not None else 0
        return 2 * mac + bias, 2 * mac, 2 * mac + bias

    def forward(self, x: np.ndarray) -> np.ndarray:
        n, co, ho, wo = self.output_shape(x.shape)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        x = np.ascontiguousarray(x, dtype=self.weight.dtype)
        w2 = self.weight.reshape(co, -1)
        cols = np.empty((w2.shape[1], ho * wo), dtype=x.dtype)
        y = np.empty((n, co, ho * wo), dtype=x.dtype)
        for i in range(n):
            im2col(x[i], kh, kw, sh, sw, ph, pw, ho, wo, cols)
            np.dot(w2, cols, out=y[i])
        if self.bias is not None:
            _add_bias(y, self.bias)
        self._x = x
        return y.reshape(n, co, ho, wo)

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        x = self._x
        if x is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        n, co, ho, wo = self.output_shape(x.shape)
        if dy.shape != (n, co, ho, wo):
            raise self._shape_error(f"gradient {(n, co, ho, wo)}", dy.shape)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        dy3 = np.ascontiguousarray(dy, dtype=x.dtype).reshape(n, co, ho * wo)
        w2 = self.weight.reshape(co, -1)
        gw = np.zeros_like(w2)
        cols = np.empty((w2.shape[1], ho * wo), dtype=x.dtype)
        dx = np.empty_like(x) if self.needs_input_grad else None
        for i in range(n):
            im2col(x[i], kh, kw, sh, sw, ph, pw, ho, wo, cols)
            gw += dy3[i] @ cols.T
            if dx is not None:
                np.dot(w2.T, dy3[i], out=cols)
                col2im(cols, kh, kw, sh, sw, ph, pw, ho, wo, dx[i])
        self.grad_weight = gw.reshape(self.weight.shape)
        if self.bias is not None:
            _bias_grad(dy3, self.grad_bias)
        return dx


class ConvTranspose2d(_ConvBase):
    """Transposed convolution, ``weight`` of shape (in_channels, out_channels, kh, kw).

    Same signature and layouts as ``torch.nn.ConvTranspose2d`` (no dilation or groups). Output
    size ``(H-1)*stride - 2*padding + kernel + output_padding``. Kernel sizes 1–7.
    FLOPs: each input pixel multiplies into ``out_channels*kh*kw`` outputs: 2 FLOP per
    multiply-add, padded (cropped) taps included, as the col2im kernel computes them.
    """

    kind = "deconv"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 output_padding: int | tuple[int, int] = 0, bias: bool = True, *,
                 seed: int | None = None, rng: np.random.Generator | None = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias, seed,
                         rng, transposed=True)
        n = type(self).__name__
        self.output_padding = pair(n, "output_padding", output_padding, 0)
        for d in range(2):
            if self.output_padding[d] >= self.stride[d]:
                raise ValueError(f"{n}: output_padding={self.output_padding} must be smaller "
                                 f"than stride={self.stride}")

    def describe(self) -> str:
        return (f"{self.in_channels}->{self.out_channels}, k={self.kernel_size}, "
                f"s={self.stride}, p={self.padding}, op={self.output_padding}")

    def output_shape(self, input_shape: Shape) -> Shape:
        expected = f"(N>=1, {self.in_channels}, H>=1, W>=1) giving a positive output size"
        check_batch(self, input_shape, 4, expected)
        n, c, h, w = input_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        oph, opw = self.output_padding
        ho = (h - 1) * sh - 2 * ph + kh + oph
        wo = (w - 1) * sw - 2 * pw + kw + opw
        if c != self.in_channels or h < 1 or w < 1 or ho < 1 or wo < 1:
            raise self._shape_error(expected, input_shape)
        return n, self.out_channels, ho, wo

    def flops(self, input_shape: Shape) -> tuple[int, int, int]:
        n, c, h, w = input_shape
        _, co, ho, wo = self.output_shape(input_shape)
        kh, kw = self.kernel_size
        mac = n * c * h * w * co * kh * kw
        bias = n * co * ho * wo if self.bias is not None else 0
        return 2 * mac + bias, 2 * mac, 2 * mac + bias

    def forward(self, x: np.ndarray) -> np.ndarray:
        n, co, ho, wo = self.output_shape(x.shape)
        _, ci, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        x = np.ascontiguousarray(x, dtype=self.weight.dtype)
        w2t = self.weight.reshape(ci, -1).T  # (co*kh*kw, ci)
        cols = np.empty((w2t.shape[0], h * w), dtype=x.dtype)
        y = np.empty((n, co, ho, wo), dtype=x.dtype)
        for i in range(n):
            np.dot(w2t, x[i].reshape(ci, h * w), out=cols)
            # the transposed conv's output is the "input image" of the equivalent conv
            col2im(cols, kh, kw, sh, sw, ph, pw, h, w, y[i])
        if self.bias is not None:
            _add_bias(y.reshape(n, co, ho * wo), self.bias)
        self._x = x
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        x = self._x
        if x is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        n, co, ho, wo = self.output_shape(x.shape)
        if dy.shape != (n, co, ho, wo):
            raise self._shape_error(f"gradient {(n, co, ho, wo)}", dy.shape)
        _, ci, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        dy = np.ascontiguousarray(dy, dtype=x.dtype)
        w2 = self.weight.reshape(ci, -1)  # (ci, co*kh*kw)
        gw = np.zeros_like(w2)
        cols = np.empty((w2.shape[1], h * w), dtype=x.dtype)
        dx = np.empty_like(x) if self.needs_input_grad else None
        for i in range(n):
            im2col(dy[i], kh, kw, sh, sw, ph, pw, h, w, cols)
            xi = x[i].reshape(ci, h * w)
            gw += xi @ cols.T
            if dx is not None:
                np.dot(w2, cols, out=dx[i].reshape(ci, h * w))
        self.grad_weight = gw.reshape(self.weight.shape)
        if self.bias is not None:
            _bias_grad(dy.reshape(n, co, ho * wo), self.grad_bias)
        return dx
