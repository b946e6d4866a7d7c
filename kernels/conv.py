"""Convolution and transposed convolution (the paper's "deconvolution"), NCHW, float32.

Algorithm: a Numba-parallel ``im2col`` lays the receptive fields of a chunk of images out as a
``(C_in*kh*kw, images*H_out*W_out)`` matrix and one GEMM (numpy's OpenBLAS ``sgemm``) does the
multiply-adds; small layers thus make one large GEMM. The forward's columns are kept for the
weight gradient when they fit ``COLUMN_CACHE_BYTES`` (else recomputed); the stride-1 data
gradient is the convolution of the output gradient with the flipped kernel, other strides
scatter column gradients back with ``col2im``. The GEMM's (C, images*pixels) results go to
NCHW, and NCHW gradients to (C, images*pixels), in one pass that also adds the bias or sums
its gradient (:func:`unfold`, :func:`fold`).

FLOPs: 2 per multiply-add, every kernel tap counted including taps on padded zeros (see
:mod:`kernels.base`); the bias adds 1 FLOP per output element forward and per output element
to its gradient backward.
"""

from __future__ import annotations

import math
import time

import numpy as np
from numba import njit, prange, uint64

from . import blas
from .base import Layer, Shape, check_batch, check_int, pair
from .shifted import ShiftedConv

#: rows at most this wide go through the element-wise kernel :func:`_im2col_narrow`; wider ones
#: through :func:`_im2col_rows`, whose slice copies win once a row is long (measured here: at
#: 14x14 the narrow kernel took 0.57 ms against 1.2, at 28x28 2.2 against 3.1; at 56x56 even).
NARROW_ROW = 32


def im2col(x: np.ndarray, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, ho: int,
           wo: int, cols: np.ndarray) -> None:
    """Columns of a batch: cols[(c*kh + i)*kw + j, (b*ho + oh)*wo + ow] =
    x[b, c, oh*sh - ph + i, ow*sw - pw + j] (0 outside the image). x is (B, C, H, W),
    C-contiguous; ``cols`` (C*kh*kw, B*ho*wo), C-contiguous, is overwritten."""
    if sh == sw == 1 and wo <= NARROW_ROW and x.flags.c_contiguous and cols.flags.c_contiguous:
        _im2col_narrow(x, kh, kw, ph, pw, ho, wo, cols)
    else:
        _im2col_rows(x, kh, kw, sh, sw, ph, pw, ho, wo, cols)


@njit(parallel=True, cache=True)
def _im2col_narrow(x, kh, kw, ph, pw, ho, wo, cols):  # pragma: no cover - JIT
    """:func:`im2col` at stride 1 for short rows: flat, unsigned indices, so that Numba emits
    no negative-index wrap-around test per element and the copy loops vectorize; the
    per-row slice objects of :func:`_im2col_rows` cost more than a 14-float row itself."""
    nb, c_in, h, w = x.shape
    n_cols = nb * ho * wo
    xf = x.ravel()
    cf = cols.ravel()
    for r in prange(c_in * kh * kw):
        c = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        lo = min(max(0, pw - j), wo)
        hi = max(lo, min(wo, w + pw - j))
        for b in range(nb):
            for oh in range(ho):
                ih = oh - ph + i
                dst = uint64(r * n_cols + (b * ho + oh) * wo)
                if ih < 0 or ih >= h:
                    for ow in range(uint64(wo)):
                        cf[dst + ow] = 0.0
                    continue
                # lo >= pw - j, so the source index of the first copied element is >= 0
                src = uint64(((b * c_in + c) * h + ih) * w + lo + j - pw)
                for ow in range(uint64(lo)):
                    cf[dst + ow] = 0.0
                d2 = dst + uint64(lo)
                for k in range(uint64(hi - lo)):
                    cf[d2 + k] = xf[src + k]
                for ow in range(uint64(hi), uint64(wo)):
                    cf[dst + ow] = 0.0


@njit(parallel=True, cache=True, fastmath=False)
def _im2col_rows(x, kh, kw, sh, sw, ph, pw, ho, wo, cols):  # pragma: no cover - JIT
    """Columns of a batch: cols[(c*kh + i)*kw + j, (b*ho + oh)*wo + ow] =
    x[b, c, oh*sh - ph + i, ow*sw - pw + j] (0 outside the image). x is (B, C, H, W)."""
    nb, c_in, h, w = x.shape
    for r in prange(c_in * kh * kw):
        c = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        for b in range(nb):
            for oh in range(ho):
                ih = oh * sh - ph + i
                base = (b * ho + oh) * wo
                if ih < 0 or ih >= h:
                    for ow in range(wo):
                        cols[r, base + ow] = 0.0
                    continue
                if sw == 1:
                    lo = min(max(0, pw - j), wo)
                    hi = max(lo, min(wo, w + pw - j))
                    for ow in range(lo):
                        cols[r, base + ow] = 0.0
                    cols[r, base + lo:base + hi] = x[b, c, ih, lo - pw + j:hi - pw + j]
                    for ow in range(hi, wo):
                        cols[r, base + ow] = 0.0
                else:
                    for ow in range(wo):
                        iw = ow * sw - pw + j
                        if iw >= 0 and iw < w:
                            cols[r, base + ow] = x[b, c, ih, iw]
                        else:
                            cols[r, base + ow] = 0.0


@njit(parallel=True, cache=True, fastmath=False)
def col2im(cols, kh, kw, sh, sw, ph, pw, ho, wo, x):  # pragma: no cover - JIT
    """The adjoint of :func:`im2col` for a batch: x[b, c, ih, iw] = sum of the columns of
    image b that read it. ``x`` (B, C, H, W) is overwritten. Parallel over channels, so no two
    threads write one element."""
    nb, c_in, h, w = x.shape
    for c in prange(c_in):
        for b in range(nb):
            for ih in range(h):
                for iw in range(w):
                    x[b, c, ih, iw] = 0.0
            for i in range(kh):
                for j in range(kw):
                    r = (c * kh + i) * kw + j
                    for oh in range(ho):
                        ih = oh * sh - ph + i
                        if ih < 0 or ih >= h:
                            continue
                        base = (b * ho + oh) * wo
                        for ow in range(wo):
                            iw = ow * sw - pw + j
                            if iw >= 0 and iw < w:
                                x[b, c, ih, iw] += cols[r, base + ow]


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


# Layout changes between the GEMM's (channels, images*pixels) matrices and NCHW, fused with the
# bias (one pass over the output instead of two). Each has a parallel kernel for large layers
# and a serial twin for small ones, whose work is less than a parallel region's start-up.
# Two functions, not one compiled twice: Numba's cache keys a function by its name only.


@njit(parallel=True, cache=True)
def _unfold_par(r, bias, y):  # pragma: no cover - JIT
    """y[b, o, :] = r[o, b*hw:(b+1)*hw] + bias[o] (no bias when ``bias`` is empty)."""
    m, c, hw = y.shape
    with_bias = bias.size == c
    for k in prange(m * c):
        b = k // c
        o = k % c
        bo = bias[o] if with_bias else np.float32(0.0)
        for p in range(hw):
            y[b, o, p] = r[o, b * hw + p] + bo


@njit(cache=True)
def _unfold_ser(r, bias, y):  # pragma: no cover - JIT
    """:func:`_unfold_par` on one thread."""
    m, c, hw = y.shape
    with_bias = bias.size == c
    for o in range(c):
        bo = bias[o] if with_bias else np.float32(0.0)
        for b in range(m):
            for p in range(hw):
                y[b, o, p] = r[o, b * hw + p] + bo


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _fold_par(dy, out, gb, accumulate):  # pragma: no cover - JIT
    """out[o, b*hw + p] = dy[b, o, p]; gb[o] = (gb[o] if accumulate else 0) + the sum over
    b and p (no bias gradient when ``gb`` is empty). Each image's row is summed in float32
    with reassociation allowed, so that the copy loop stays vectorized, the rows in float64."""
    m, c, hw = dy.shape
    with_bias = gb.size == c
    for o in prange(c):
        s = 0.0
        for b in range(m):
            r = np.float32(0.0)
            for p in range(hw):
                v = dy[b, o, p]
                out[o, b * hw + p] = v
                r += v
            s += r
        if with_bias:
            gb[o] = (gb[o] if accumulate else 0.0) + s


@njit(cache=True, fastmath={"reassoc"})
def _fold_ser(dy, out, gb, accumulate):  # pragma: no cover - JIT
    """:func:`_fold_par` on one thread."""
    m, c, hw = dy.shape
    with_bias = gb.size == c
    for o in range(c):
        s = 0.0
        for b in range(m):
            r = np.float32(0.0)
            for p in range(hw):
                v = dy[b, o, p]
                out[o, b * hw + p] = v
                r += v
            s += r
        if with_bias:
            gb[o] = (gb[o] if accumulate else 0.0) + s


_NO_BIAS = np.empty(0, dtype=np.float32)


def unfold(r: np.ndarray, bias: np.ndarray | None, y: np.ndarray) -> None:
    """A GEMM result ``r`` (C, m*HW) into ``y`` (m, C, HW), adding ``bias`` (C,) if given."""
    b = _NO_BIAS if bias is None else bias
    (_unfold_ser if y.size <= SMALL_ELEMENTWISE else _unfold_par)(r, b, y)


def fold(dy: np.ndarray, out: np.ndarray, gb: np.ndarray | None, accumulate: bool) -> None:
    """``dy`` (m, C, HW) into ``out`` (C, m*HW); the bias gradient, summed over images and
    pixels, into ``gb`` (C,) (added to it when ``accumulate``), if given."""
    g = _NO_BIAS if gb is None else gb
    (_fold_ser if dy.size <= SMALL_ELEMENTWISE else _fold_par)(dy, out, g, accumulate)


#: Layout changes (:func:`fold`, :func:`unfold`) of at most this many elements run on one
#: thread: waking Numba's pool costs 0.1-0.3 ms per parallel region on this 2-vCPU VM, more
#: than the work (HEP conv5 at batch 8, 0.2 M elements: unfold + bias 0.04 ms serial, 0.25 ms
#: parallel; numpy's transposing copy and separate bias add 0.14 ms).
SMALL_ELEMENTWISE = 1 << 20

#: Conv2d keeps the forward's im2col columns for the backward pass when the whole batch's
#: columns take at most this many bytes (HEP at batch 8: 0.47 GB for conv2); larger layers
#: recompute them per image instead.
COLUMN_CACHE_BYTES = 1 << 30
#: Conv2d runs one GEMM per image, reading and writing NCHW as it is (no layout pass), when an
#: output image has at least this many pixels; smaller images are gathered into one GEMM.
PER_IMAGE_PIXELS = 2048
#: Conv2d lays out the columns of as many images at once as fit in this many bytes, so that
#: small layers make one large GEMM instead of one small GEMM per image.
CHUNK_BYTES = 1 << 29
#: The per-image GEMM writes its output in column blocks of at most this many bytes: one
#: ``np.matmul`` per block into a strided view of the image, which OpenBLAS takes as is
#: (``ldc``). HEP conv1 at 224x224, batch 8 (128 x 28 times 28 x 50,176 per image): 39.6 ms
#: as one GEMM per image, 28.4 ms in blocks of 8-12 MB (AMD EPYC, 2 threads).
GEMM_BLOCK_BYTES = 1 << 23


def gemm_blocked(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out = a @ b`` as one GEMM per block of :data:`GEMM_BLOCK_BYTES` of ``out``'s columns
    (2-D float arrays, rows contiguous)."""
    m, n = out.shape
    cols = max(256, GEMM_BLOCK_BYTES // max(m * out.itemsize, 1))
    blocks = -(-n // cols)
    step = -(-n // blocks)  # even blocks
    for s in range(0, n, step):
        np.matmul(a, b[:, s:s + step], out=out[:, s:s + step])


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
        self._cols: list[np.ndarray] | None = None
        self._workspace: dict[str, np.ndarray] = {}
        self.last_backward_s: dict[str, float] = {}
        #: wall time in s per (phase, part) since the caller last cleared it; parts: im2col,
        #: gemm, layout (NCHW to and from the GEMM's layout, the bias, col2im)
        self.parts_s: dict[tuple[str, str], float] = {}

    def _chunks(self, n: int, per_image_bytes: int, one_each: bool = False
                ) -> list[tuple[int, int]]:
        """Image ranges [s, e) of at most ``CHUNK_BYTES`` of columns, or of one image each."""
        m = 1 if one_each else max(1, min(n, CHUNK_BYTES // max(per_image_bytes, 1)))
        return [(s, min(s + m, n)) for s in range(0, n, m)]


class Conv2d(_ConvBase):
    """2-D convolution, ``weight`` of shape (out_channels, in_channels, kh, kw), ``bias`` (out,).

    Same signature and layouts as ``torch.nn.Conv2d`` (no dilation or groups). Kernel sizes 1–7.

    ``reuse_output=True``: forward writes into one array kept between calls, so each call
    overwrites the previous output, and backward does the same with the input gradient; for
    layers inside a net, whose outputs live one step. A fresh output is faulted in page by
    page, and numpy advises the kernel to back large arrays with huge pages, which on a host
    with transparent huge pages set to ``madvise`` (this VM) may compact memory on the fault:
    in the HEP step at 224x224, batch 8, conv1's 205 MB output pass took 33-360 ms into a fresh
    array and 23-30 ms into a kept one, and the step 1.26-1.53 s against 1.11-1.21 s (AMD EPYC,
    2 threads).
    """

    kind = "conv"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 bias: bool = True, *, seed: int | None = None,
                 rng: np.random.Generator | None = None, reuse_output: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias, seed,
                         rng, transposed=False)
        self.reuse_output = bool(reuse_output)
        self._shifted: tuple = (None, None)  # (key, ShiftedConv) of the data gradient

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
        """Images in chunks: one im2col and one GEMM per chunk, ``(C_out, K) @ (K, m*HW)``;
        small layers thus make one large GEMM instead of many small ones. Large images
        (:data:`PER_IMAGE_PIXELS`) go one per chunk: the GEMM then writes the image's NCHW
        output itself, with the bias as one more column of the weights against a row of ones
        in the columns, so no pass over the output follows it."""
        n, co, ho, wo = self.output_shape(x.shape)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        x = np.ascontiguousarray(x, dtype=self.weight.dtype)
        w2 = self.weight.reshape(co, -1)
        k, hw = w2.shape[1], ho * wo
        keep = self.training and n * k * hw * x.itemsize <= COLUMN_CACHE_BYTES
        y = (self._scratch("out", (n, co, hw), x.dtype) if self.reuse_output
             else np.empty((n, co, hw), dtype=x.dtype))
        direct = hw >= PER_IMAGE_PIXELS
        if direct and self.bias is not None:
            w2 = np.concatenate([w2, self.bias[:, None]], axis=1)
        kept = []
        clock = _PartClock(self.parts_s, "forward")
        for s, e in self._chunks(n, k * hw * x.itemsize, direct):
            key = f"cols{s}" if keep else "cols"
            cols = self._scratch(key, (w2.shape[1], (e - s) * hw), x.dtype)
            im2col(x[s:e], kh, kw, sh, sw, ph, pw, ho, wo, cols[:k])
            cols[k:] = 1.0  # the bias row, if any
            clock("im2col")
            if direct:
                gemm_blocked(w2, cols, y[s])
                clock("gemm")
            else:
                r = self._scratch("gemm", (co, (e - s) * hw), x.dtype)
                np.dot(w2, cols, out=r)
                clock("gemm")
                unfold(r, self.bias, y[s:e])
                clock("layout")
            if keep:
                kept.append(cols)
        self._x = x
        self._cols = kept if keep else None
        return y.reshape(n, co, ho, wo)

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        """Weight gradient from the forward's columns (kept when they fit
        ``COLUMN_CACHE_BYTES``, else recomputed); data gradient, for stride 1, as the
        convolution of ``dy`` with the flipped, transposed kernel (im2col + GEMM; for large
        images, :mod:`kernels.shifted`'s kh*kw GEMMs over shifted windows where numpy's BLAS
        exports CBLAS sgemm: HEP conv2 at 224x224, batch 8, 202 -> 187 ms), else by col2im
        per image. Large images (:data:`PER_IMAGE_PIXELS`) go one per GEMM, which
        reads the NCHW gradient and writes the NCHW data gradient as they are; the bias
        gradient comes out of the weight GEMM, from the columns' row of ones. Wall time of
        the two parts is left in ``last_backward_s``, and of their im2col, GEMM and layout
        passes in ``parts_s``."""
        x = self._x
        if x is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        n, co, ho, wo = self.output_shape(x.shape)
        if dy.shape != (n, co, ho, wo):
            raise self._shape_error(f"gradient {(n, co, ho, wo)}", dy.shape)
        _, ci, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        dy = np.ascontiguousarray(dy, dtype=x.dtype)
        w2 = self.weight.reshape(co, -1)
        k, hw = w2.shape[1], ho * wo
        direct = hw >= PER_IMAGE_PIXELS
        kb = k + (1 if direct and self.bias is not None else 0)  # the columns' rows
        gw = self.grad_weight.reshape(co, -1)  # a view: gradients are written in place
        gwb = self._scratch("gwb", (co, kb), x.dtype) if kb > k else gw
        flip = sh == sw == 1 and ph < kh and pw < kw
        shifted = (flip and direct and self.needs_input_grad and blas.AVAILABLE
                   and x.dtype == np.float32)
        if shifted:  # dx = conv(dy, W^T flipped) as shifted GEMMs: kernels.shifted
            taps = self._scratch("taps", (kh, kw, ci, co), x.dtype)
            np.copyto(taps, self.weight[:, :, ::-1, ::-1].transpose(2, 3, 1, 0))
            sc = self._shifted_data_conv((co, ho, wo), ci, x.dtype)
        elif flip:  # dx = conv(dy, W^T flipped) with padding k-1-p
            wf = self._scratch("flipped", (ci, co, kh, kw), x.dtype)
            np.copyto(wf, self.weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
            wf = wf.reshape(ci, -1)
        dx = None
        if self.needs_input_grad:
            dx = (self._scratch("dx", x.shape, x.dtype) if self.reuse_output
                  else np.empty_like(x))
        wt = _PartClock(self.parts_s, "backward_weight")
        data = _PartClock(self.parts_s, "backward_data")
        for ci_, (s, e) in enumerate(self._chunks(n, k * hw * x.itemsize, direct)):
            wt.start()
            m = e - s
            if self._cols is not None:
                cols = self._cols[ci_]
            else:
                cols = self._scratch("cols", (kb, m * hw), x.dtype)
                im2col(x[s:e], kh, kw, sh, sw, ph, pw, ho, wo, cols[:k])
                cols[k:] = 1.0
                wt("im2col")
            if direct:
                dyt = dy[s].reshape(co, hw)
            else:
                dyt = self._scratch("dyt", (co, m * hw), x.dtype)
                fold(dy[s:e].reshape(m, co, hw), dyt, self.grad_bias, s > 0)
                wt("layout")
            if s == 0:
                np.dot(dyt, cols.T, out=gwb)
            else:
                gwb += np.dot(dyt, cols.T, out=self._scratch("gw", gwb.shape, gwb.dtype))
            wt("gemm")
            if dx is None:
                continue
            data.start()
            if shifted:
                sc.run(dy[s], taps, dx[s], data)
            elif flip:
                dcols = self._scratch("dcols", (co * kh * kw, m * h * w), x.dtype)
                im2col(dy[s:e], kh, kw, 1, 1, kh - 1 - ph, kw - 1 - pw, h, w, dcols)
                data("im2col")
                if direct:
                    gemm_blocked(wf, dcols, dx[s].reshape(ci, h * w))
                    data("gemm")
                else:
                    r = np.dot(wf, dcols, out=self._scratch("gemm", (ci, m * h * w), x.dtype))
                    data("gemm")
                    unfold(r, None, dx[s:e].reshape(m, ci, h * w))
                    data("layout")
            else:
                r = np.dot(w2.T, dyt, out=self._scratch("dcols", (k, m * hw), x.dtype))
                data("gemm")
                col2im(r, kh, kw, sh, sw, ph, pw, ho, wo, dx[s:e])
                data("layout")
        if kb > k:
            wt.start()
            gw[...] = gwb[:, :k]
            self.grad_bias[...] = gwb[:, k]
            wt("layout")
        self._cols = None
        self.last_backward_s = {"backward_data": data.total_s, "backward_weight": wt.total_s}
        return dx

    def _shifted_data_conv(self, dy_shape: tuple[int, int, int], ci: int,
                           dtype) -> ShiftedConv:
        """The data gradient's :class:`ShiftedConv` for one image's gradient of ``dy_shape``
        (kept while the shape holds)."""
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        key = (dy_shape, ci, np.dtype(dtype))
        if self._shifted[0] != key:
            co, ho, wo = dy_shape
            self._shifted = (key, ShiftedConv(co, ho, wo, ci, kh, kw, kh - 1 - ph,
                                              kw - 1 - pw, dtype))
        return self._shifted[1]


class _PartClock:
    """Adds the wall time since the last mark to ``parts[(phase, part)]`` on each call, and
    keeps the phase's total (``total_s``). :meth:`start` marks without charging."""

    def __init__(self, parts: dict[tuple[str, str], float], phase: str) -> None:
        self.parts, self.phase, self.total_s = parts, phase, 0.0
        self.t = time.perf_counter()

    def start(self) -> None:
        self.t = time.perf_counter()

    def __call__(self, part: str) -> None:
        now = time.perf_counter()
        key = (self.phase, part)
        self.parts[key] = self.parts.get(key, 0.0) + (now - self.t)
        self.total_s += now - self.t
        self.t = now


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
        """Chunks of images: one GEMM ``(C_out*kh*kw, C_in) @ (C_in, m*H*W)`` and a batched
        col2im into the (larger) output."""
        n, co, ho, wo = self.output_shape(x.shape)
        _, ci, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        x = np.ascontiguousarray(x, dtype=self.weight.dtype)
        w2t = self.weight.reshape(ci, -1).T  # (co*kh*kw, ci)
        y = np.empty((n, co, ho, wo), dtype=x.dtype)
        for s, e in self._chunks(n, w2t.shape[0] * h * w * x.itemsize):
            m = e - s
            xt = self._scratch("xt", (ci, m * h * w), x.dtype)
            fold(x[s:e].reshape(m, ci, h * w), xt, None, False)
            cols = self._scratch("cols", (w2t.shape[0], m * h * w), x.dtype)
            np.dot(w2t, xt, out=cols)
            # the transposed conv's output is the "input image" of the equivalent conv
            col2im(cols, kh, kw, sh, sw, ph, pw, h, w, y[s:e])
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
        gw = self.grad_weight.reshape(ci, -1)  # a view: gradients are written in place
        gw[...] = 0
        dx = np.empty_like(x) if self.needs_input_grad else None
        for s, e in self._chunks(n, w2.shape[1] * h * w * x.itemsize):
            m = e - s
            cols = self._scratch("cols", (w2.shape[1], m * h * w), x.dtype)
            im2col(dy[s:e], kh, kw, sh, sw, ph, pw, h, w, cols)
            xt = self._scratch("xt", (ci, m * h * w), x.dtype)
            fold(x[s:e].reshape(m, ci, h * w), xt, None, False)
            gw += np.dot(xt, cols.T, out=self._scratch("gw", gw.shape, gw.dtype))
            if dx is not None:
                r = np.dot(w2, cols, out=self._scratch("gemm", (ci, m * h * w), x.dtype))
                unfold(r, None, dx[s:e].reshape(m, ci, h * w))
        if self.bias is not None:
            _bias_grad(dy.reshape(n, co, ho * wo), self.grad_bias)
        return dx
