"""CUDA kernels (Numba) of the layers the paper's two nets use, NCHW, float32.

Convolutions are im2col, a tiled shared-memory GEMM, and a reorder: the forward lays the
receptive fields out as a (C_in kh kw, B H_out W_out) matrix, multiplies it by the
(C_out, C_in kh kw) weights, and writes NCHW adding the bias; the weight gradient is the
output gradient (C_out, B H_out W_out) times the columns transposed; the data gradient is the
weights transposed times the output gradient, folded back by col2im as a gather (each input
element sums the columns that read it: no atomics). A transposed convolution runs the same
pieces the other way round. The GEMM takes both operands in shared-memory tiles of
``TILE`` x ``TILE`` with either transposed, C = alpha op(A) op(B) + beta C.

Everything runs under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) too, which is how
the tests check each kernel against the CPU kernels with no GPU. Launch shapes: 1-D grids of
``THREADS`` for element-wise work, 2-D grids of tiles for the GEMM.
"""

from __future__ import annotations

import math

from numba import cuda, float32

#: GEMM tile edge: TILE x TILE threads per block, two TILE^2 shared tiles
TILE = 16
THREADS = 256  # threads per block, element-wise kernels


def blocks(n: int) -> int:
    """1-D grid size covering n elements."""
    return max(1, math.ceil(n / THREADS))


@cuda.jit
def gemm(a, b, c, trans_a, trans_b, alpha, beta):  # pragma: no cover - device code
    """c[M, N] = alpha op(a) op(b) + beta c, op = transpose where asked; K from op(a)."""
    sa = cuda.shared.array((TILE, TILE), float32)
    sb = cuda.shared.array((TILE, TILE), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE + ty
    col = cuda.blockIdx.x * TILE + tx
    m, n = c.shape
    k_total = a.shape[0] if trans_a else a.shape[1]
    acc = float32(0.0)
    for t in range((k_total + TILE - 1) // TILE):
        k = t * TILE + tx
        v = float32(0.0)
        if row < m and k < k_total:
            v = a[k, row] if trans_a else a[row, k]
        sa[ty, tx] = v
        k = t * TILE + ty
        v = float32(0.0)
        if col < n and k < k_total:
            v = b[col, k] if trans_b else b[k, col]
        sb[ty, tx] = v
        cuda.syncthreads()
        for i in range(TILE):
            acc += sa[ty, i] * sb[i, tx]
        cuda.syncthreads()
    if row < m and col < n:
        if beta == 0.0:
            c[row, col] = alpha * acc
        else:
            c[row, col] = alpha * acc + beta * c[row, col]


def matmul(a, b, c, trans_a: bool = False, trans_b: bool = False, alpha: float = 1.0,
           beta: float = 0.0) -> None:
    """Launch :func:`gemm` over c's tiles."""
    m, n = c.shape
    grid = (max(1, math.ceil(n / TILE)), max(1, math.ceil(m / TILE)))
    gemm[grid, (TILE, TILE)](a, b, c, int(trans_a), int(trans_b), float32(alpha),
                             float32(beta))


@cuda.jit
def im2col(x, kh, kw, sh, sw, ph, pw, ho, wo, cols):  # pragma: no cover - device code
    """cols[(c kh + i) kw + j, (b ho + oh) wo + ow] = x[b, c, oh sh - ph + i, ow sw - pw + j],
    0 outside the image."""
    nb, nc, h, w = x.shape
    idx = cuda.grid(1)
    n_cols = nb * ho * wo
    if idx >= nc * kh * kw * n_cols:
        return
    r, q = idx // n_cols, idx % n_cols
    c, i, j = r // (kh * kw), (r // kw) % kh, r % kw
    bb, oh, ow = q // (ho * wo), (q // wo) % ho, q % wo
    ih, iw = oh * sh - ph + i, ow * sw - pw + j
    cols[r, q] = x[bb, c, ih, iw] if 0 <= ih < h and 0 <= iw < w else float32(0.0)


@cuda.jit
def col2im(cols, kh, kw, sh, sw, ph, pw, ho, wo, x):  # pragma: no cover - device code
    """The adjoint of :func:`im2col`: x[b, c, ih, iw] = the sum of the columns that read it
    (a gather over the taps, overwriting x)."""
    nb, nc, h, w = x.shape
    idx = cuda.grid(1)
    if idx >= x.size:
        return
    bb, c, ih, iw = idx // (nc * h * w), (idx // (h * w)) % nc, (idx // w) % h, idx % w
    acc = float32(0.0)
    for i in range(kh):
        th = ih + ph - i
        if th < 0 or th % sh != 0 or th // sh >= ho:
            continue
        for j in range(kw):
            tw = iw + pw - j
            if tw < 0 or tw % sw != 0 or tw // sw >= wo:
                continue
            acc += cols[(c * kh + i) * kw + j, (bb * ho + th // sh) * wo + tw // sw]
    x[bb, c, ih, iw] = acc


@cuda.jit
def to_nchw(y2, bias, has_bias, y):  # pragma: no cover - device code
    """y[b, c, p] = y2[c, b P + p] (+ bias[c]); y viewed (B, C, P)."""
    nb, nc, npix = y.shape
    idx = cuda.grid(1)
    if idx >= y.size:
        return
    bb, c, p = idx // (nc * npix), (idx // npix) % nc, idx % npix
    v = y2[c, bb * npix + p]
    y[bb, c, p] = v + bias[c] if has_bias else v


@cuda.jit
def from_nchw(dy, d2):  # pragma: no cover - device code
    """d2[c, b P + p] = dy[b, c, p]; dy viewed (B, C, P)."""
    nb, nc, npix = dy.shape
    idx = cuda.grid(1)
    if idx >= dy.size:
        return
    bb, c, p = idx // (nc * npix), (idx // npix) % nc, idx % npix
    d2[c, bb * npix + p] = dy[bb, c, p]


@cuda.jit
def row_sums(m, out):  # pragma: no cover - device code
    """out[r] = sum of row r of m (one thread per row: rows are few, C_out)."""
    r = cuda.grid(1)
    if r < m.shape[0]:
        acc = float32(0.0)
        for q in range(m.shape[1]):
            acc += m[r, q]
        out[r] = acc


@cuda.jit
def col_sums(m, out):  # pragma: no cover - device code
    """out[q] = sum of column q of m."""
    q = cuda.grid(1)
    if q < m.shape[1]:
        acc = float32(0.0)
        for r in range(m.shape[0]):
            acc += m[r, q]
        out[q] = acc


@cuda.jit
def add_bias_rows(y, bias):  # pragma: no cover - device code
    """y[b, j] += bias[j] (a fully connected layer's bias)."""
    idx = cuda.grid(1)
    if idx < y.size:
        y[idx // y.shape[1], idx % y.shape[1]] += bias[idx % y.shape[1]]


@cuda.jit
def leaky_relu(x, slope, y):  # pragma: no cover - device code
    """y = x where x > 0, else slope x (ReLU: slope 0); flat arrays."""
    i = cuda.grid(1)
    if i < x.size:
        v = x[i]
        y[i] = v if v > 0 else slope * v


@cuda.jit
def leaky_relu_grad(y, dy, slope, dx):  # pragma: no cover - device code
    """dx = dy where the output was > 0, else slope dy (from the output: as the CPU layer)."""
    i = cuda.grid(1)
    if i < y.size:
        dx[i] = dy[i] if y[i] > 0 else slope * dy[i]


@cuda.jit
def dropout(x, seed, p, scale, y, keep):  # pragma: no cover - device code
    """Inverted dropout: keep[i] = u(seed, i) >= p from a counter-based 32-bit hash
    (C. Wellons' "lowbias32"; every product stays below 2^63), y = x keep scale; ``seed`` <
    2^31."""
    i = cuda.grid(1)
    if i < x.size:
        z = (seed * 0x9E3779B1 + i) & 0xFFFFFFFF
        z ^= z >> 16
        z = (z * 0x7FEB352D) & 0xFFFFFFFF
        z ^= z >> 15
        z = (z * 0x846CA68B) & 0xFFFFFFFF
        z ^= z >> 16
        k = 1 if z / 4294967296.0 >= p else 0
        keep[i] = k
        y[i] = x[i] * scale if k else float32(0.0)


@cuda.jit
def dropout_grad(dy, keep, scale, dx):  # pragma: no cover - device code
    i = cuda.grid(1)
    if i < dy.size:
        dx[i] = dy[i] * scale if keep[i] else float32(0.0)


@cuda.jit
def maxpool(x, kh, kw, sh, sw, y, arg):  # pragma: no cover - device code
    """y = the max of each window; arg = its flat index within the window (first max)."""
    nb, nc, ho, wo = y.shape
    idx = cuda.grid(1)
    if idx >= y.size:
        return
    bb, c, oh, ow = idx // (nc * ho * wo), (idx // (ho * wo)) % nc, (idx // wo) % ho, idx % wo
    best = x[bb, c, oh * sh, ow * sw]
    at = 0
    for i in range(kh):
        for j in range(kw):
            v = x[bb, c, oh * sh + i, ow * sw + j]
            if v > best:
                best = v
                at = i * kw + j
    y[bb, c, oh, ow] = best
    arg[bb, c, oh, ow] = at


@cuda.jit
def maxpool_grad(dy, arg, kh, kw, sh, sw, dx):  # pragma: no cover - device code
    """dx = dy at each window's max, 0 elsewhere: a gather over the windows that contain the
    element (overlapping windows add)."""
    nb, nc, h, w = dx.shape
    ho, wo = dy.shape[2], dy.shape[3]
    idx = cuda.grid(1)
    if idx >= dx.size:
        return
    bb, c, ih, iw = idx // (nc * h * w), (idx // (h * w)) % nc, (idx // w) % h, idx % w
    acc = float32(0.0)
    for i in range(kh):
        th = ih - i
        if th < 0 or th % sh != 0 or th // sh >= ho:
            continue
        for j in range(kw):
            tw = iw - j
            if tw < 0 or tw % sw != 0 or tw // sw >= wo:
                continue
            if arg[bb, c, th // sh, tw // sw] == i * kw + j:
                acc += dy[bb, c, th // sh, tw // sw]
    dx[bb, c, ih, iw] = acc


@cuda.jit
def global_avgpool(x, y):  # pragma: no cover - device code
    """y[b, c] = the mean of x[b, c] (x viewed (B, C, P)); one thread per (b, c)."""
    idx = cuda.grid(1)
    nb, nc, npix = x.shape
    if idx < nb * nc:
        bb, c = idx // nc, idx % nc
        acc = float32(0.0)
        for p in range(npix):
            acc += x[bb, c, p]
        y[bb, c] = acc / npix


@cuda.jit
def global_avgpool_grad(dy, dx):  # pragma: no cover - device code
    idx = cuda.grid(1)
    nb, nc, npix = dx.shape
    if idx < dx.size:
        bb, c = idx // (nc * npix), (idx // npix) % nc
        dx[bb, c, idx % npix] = dy[bb, c] / npix


@cuda.jit
def sgd_momentum(w, g, v, lr, momentum, weight_decay):  # pragma: no cover - device code
    """v = momentum v + g + wd w; w -= lr v (the CPU optimizer's update, 6 FLOP/param)."""
    i = cuda.grid(1)
    if i < w.size:
        gi = g[i] + weight_decay * w[i]
        v[i] = momentum * v[i] + gi
        w[i] -= lr * v[i]


@cuda.jit
def fma_chain(out, n_iter):  # pragma: no cover - device code
    """The FP32 peak probe: 8 independent FMA chains per thread, n_iter rounds, 2 FLOP per
    FMA; the result is written so the compiler keeps the work."""
    i = cuda.grid(1)
    a0 = float32(i) * float32(1e-7)
    a1, a2, a3, a4, a5, a6, a7 = a0 + 1, a0 + 2, a0 + 3, a0 + 4, a0 + 5, a0 + 6, a0 + 7
    m, c = float32(0.999999), float32(1e-6)
    for _ in range(n_iter):
        a0 = a0 * m + c
        a1 = a1 * m + c
        a2 = a2 * m + c
        a3 = a3 * m + c
        a4 = a4 * m + c
        a5 = a5 * m + c
        a6 = a6 * m + c
        a7 = a7 * m + c
    if i < out.size:
        out[i] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7


#: FLOP of one fma_chain thread per round: 8 FMAs of 2 FLOP
FMA_FLOP_PER_ROUND = 16


@cuda.jit
def triad(a, b, c, s):  # pragma: no cover - device code
    """a = b + s c: the memory-bandwidth probe (12 bytes per element)."""
    i = cuda.grid(1)
    if i < a.size:
        a[i] = b[i] + s * c[i]


@cuda.jit
def add_into(a, b):  # pragma: no cover - device code
    """a += b, flat arrays (the climate net sums its heads' and decoder's gradients)."""
    i = cuda.grid(1)
    if i < a.size:
        a[i] += b[i]


@cuda.jit
def mse_grad(pred, target, scale, grad, sumsq):  # pragma: no cover - device code
    """grad = scale (pred - target) and sumsq[0] += sum((pred - target)^2), flat arrays.

    Each block sums its squares in shared memory (a tree of THREADS) and adds one partial
    with an atomic: one atomic per block, not per element. ``sumsq`` is float64."""
    part = cuda.shared.array(THREADS, dtype=float32)
    i = cuda.grid(1)
    t = cuda.threadIdx.x
    d = float32(0.0)
    if i < pred.size:
        d = pred[i] - target[i]
        grad[i] = scale * d
    part[t] = d * d
    cuda.syncthreads()
    s = THREADS // 2
    while s > 0:
        if t < s:
            part[t] += part[t + s]
        cuda.syncthreads()
        s //= 2
    if t == 0:
        cuda.atomic.add(sumsq, 0, part[0])
