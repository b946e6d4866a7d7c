"""Every layer, forward and backward, against an independent float64 reference."""

from __future__ import annotations

import numpy as np
import pytest

import kernels as K
from kernels import blas
from tests import reference as R

#: the shifted-GEMM data gradient runs only where numpy's BLAS exports a CBLAS sgemm
NEEDS_SGEMM = pytest.mark.skipif(not blas.AVAILABLE,
                                 reason="numpy's BLAS exports no CBLAS sgemm known to "
                                        "kernels.blas: the shifted path cannot run")

RTOL = 1e-4


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


# (n, c_in, c_out, h, w, k, stride, pad): odd sizes, batch 1, strides, paddings
CONV_CASES = [
    (1, 3, 5, 7, 9, 3, 1, 1),
    (2, 4, 3, 8, 8, 1, 1, 0),
    (3, 2, 6, 11, 10, 5, 2, 2),
    (1, 5, 4, 9, 13, (3, 5), (2, 1), (0, 2)),
    (2, 3, 2, 6, 7, 7, 1, 3),
    (1, 1, 1, 5, 5, 2, 3, 0),
    (2, 6, 4, 4, 4, 3, 2, 4),  # padding larger than the image
    (2, 2, 3, 5, 41, 3, 1, 1),  # rows wider than kernels.conv.NARROW_ROW
    (1, 2, 2, 3, 3, 3, 1, 4),  # stride 1, padding larger than the image
]


@pytest.mark.parametrize("shifted", [pytest.param(True, marks=NEEDS_SGEMM), False],
                         ids=["shifted", "im2col"])
@pytest.mark.parametrize("per_image_pixels", [1 << 30, 1], ids=["batched", "per-image"])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_reference(case, per_image_pixels, shifted, monkeypatch):
    """Both GEMM layouts: images gathered into one GEMM with layout passes, and one GEMM per
    image writing NCHW with the bias folded into it (kernels.conv.PER_IMAGE_PIXELS); per
    image, the stride-1 data gradient as shifted GEMMs (kernels.shifted) or im2col + GEMM."""
    from kernels import conv
    monkeypatch.setattr(conv, "PER_IMAGE_PIXELS", per_image_pixels)
    monkeypatch.setattr(conv.blas, "AVAILABLE", shifted)
    n, ci, co, h, w, k, s, p = case
    rng = np.random.default_rng(1)
    layer = K.Conv2d(ci, co, k, s, p, seed=2)
    x = rng.standard_normal((n, ci, h, w)).astype(np.float32)
    y = layer.forward(x)
    x64, w64, b64 = x.astype(np.float64), layer.weight.astype(np.float64), layer.bias.astype(
        np.float64)
    st, pd = layer.stride, layer.padding
    ref = R.conv2d(x64, w64, b64, st, pd)
    assert y.shape == ref.shape == layer.output_shape(x.shape)
    assert y.dtype == np.float32
    assert rel_err(y, ref) < RTOL
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy)
    rdx, rdw, rdb = R.conv2d_grads(x64, w64, dy.astype(np.float64), st, pd)
    assert rel_err(dx, rdx) < RTOL
    assert rel_err(layer.grad_weight, rdw) < RTOL
    assert rel_err(layer.grad_bias, rdb) < RTOL


@NEEDS_SGEMM
def test_sgemm_takes_strided_views_transposes_and_accumulates():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((5, 9)).astype(np.float32)
    big = rng.standard_normal((7, 20)).astype(np.float32)
    b = big[:, 3:14]  # 7 x 11, rows 20 apart
    c = np.ones((5, 11), np.float32)
    blas.sgemm(a[:, 2:9], b, c, beta=1.0)
    assert np.allclose(c, a[:, 2:9] @ b + 1.0, rtol=1e-5, atol=1e-5)
    d = np.empty((5, 7), np.float32)
    blas.sgemm(a[:, :4], big[:, 10:14], d, trans_b=True)
    assert np.allclose(d, a[:, :4] @ big[:, 10:14].T, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="do not match"):
        blas.sgemm(a, b, c)
    with pytest.raises(ValueError, match="float32"):
        blas.sgemm(a.astype(np.float64), big[:9], c)
    with pytest.raises(ValueError, match="contiguous"):
        blas.sgemm(a[:, ::2], big[:5], c)
    assert "sgemm" in blas.describe()


@NEEDS_SGEMM
def test_another_cblas_loads_and_computes_the_same_product(monkeypatch):
    """kernels.blas.load_cblas, here on numpy's own OpenBLAS, and the asv suite that compares
    another BLAS with it at the HEP step's GEMM shapes."""
    import ctypes.util

    from threadpoolctl import threadpool_info

    from suites import bench_kernels
    path = next(i["filepath"] for i in threadpool_info() if i.get("user_api") == "blas")
    other = blas.load_cblas(path, 1)
    rng = np.random.default_rng(6)
    a, b = (rng.standard_normal(s).astype(np.float32) for s in ((6, 5), (5, 7)))
    c = np.empty((6, 7), np.float32)
    other(a, b, c)
    assert np.allclose(c, a @ b, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="does not load"):
        blas.load_cblas("/nonexistent/libblas.so", 1)
    with pytest.raises(ValueError, match="exports no CBLAS sgemm"):
        blas.load_cblas(ctypes.util.find_library("m") or "libm.so.6", 1)
    monkeypatch.setenv("PERFMODEL_OTHER_CBLAS", path)
    bench = bench_kernels.OtherBLAS()
    bench.setup("conv4 forward")
    assert bench.track_speed_over_numpy_blas("conv4 forward") > 0
    monkeypatch.delenv("PERFMODEL_OTHER_CBLAS")
    with pytest.raises(NotImplementedError, match="PERFMODEL_OTHER_CBLAS"):
        bench.setup("conv4 forward")


def test_shifted_conv_refuses_a_kernel_larger_than_the_padded_image():
    from kernels.shifted import ShiftedConv
    with pytest.raises(ValueError, match="does not fit"):
        ShiftedConv(2, 3, 3, 4, 5, 5, 0, 0)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("chunk_bytes,cache_bytes,per_image_pixels",
                         [(1, 1 << 30, 1 << 30), (1, 0, 1 << 30), (1 << 29, 0, 1 << 30),
                          (1 << 29, 1 << 30, 1), (1 << 29, 0, 1)])
def test_conv2d_chunked_and_uncached_paths_agree(monkeypatch, chunk_bytes, cache_bytes,
                                                  per_image_pixels, bias):
    """One image per GEMM chunk, columns recomputed in backward, and/or one GEMM per image
    in NCHW with the bias inside the GEMM: same results as one chunk with cached columns."""
    from kernels import conv
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4, 9, 10)).astype(np.float32)
    dy = rng.standard_normal((3, 5, 9, 10)).astype(np.float32)
    ref = K.Conv2d(4, 5, 3, 1, 1, seed=8, bias=bias)
    y0, dx0 = ref.forward(x).copy(), ref.backward(dy)
    monkeypatch.setattr(conv, "CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(conv, "COLUMN_CACHE_BYTES", cache_bytes)
    monkeypatch.setattr(conv, "PER_IMAGE_PIXELS", per_image_pixels)
    layer = K.Conv2d(4, 5, 3, 1, 1, seed=8, bias=bias)
    for _ in range(2):  # twice: kept columns and buffers must not leak between calls
        y1, dx1 = layer.forward(x), layer.backward(dy)
        assert rel_err(y1, y0) < 1e-5 and rel_err(dx1, dx0) < 1e-5
        assert rel_err(layer.grad_weight, ref.grad_weight) < 1e-5
        if bias:
            assert rel_err(layer.grad_bias, ref.grad_bias) < 1e-5


@pytest.mark.parametrize("n,c,h,w,k,p", [(2, 3, 5, 7, 3, 1), (1, 2, 4, 40, 3, 1),
                                         (2, 1, 3, 3, 5, 4), (1, 2, 6, 6, (3, 5), (0, 2))])
def test_im2col_narrow_kernel_equals_row_kernel(n, c, h, w, k, p):
    from kernels import conv
    kh, kw = (k, k) if isinstance(k, int) else k
    ph, pw = (p, p) if isinstance(p, int) else p
    ho, wo = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
    x = np.random.default_rng(9).standard_normal((n, c, h, w)).astype(np.float32)
    a = np.full((c * kh * kw, n * ho * wo), np.nan, np.float32)
    b = a.copy()
    conv._im2col_narrow(x, kh, kw, ph, pw, ho, wo, a)
    conv._im2col_rows(x, kh, kw, 1, 1, ph, pw, ho, wo, b)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("kernel", ["ser", "par"])
@pytest.mark.parametrize("bias", [True, False])
def test_fold_and_unfold_kernels_equal_numpy_transposes(kernel, bias):
    from kernels import conv
    rng = np.random.default_rng(4)
    m, c, hw = 3, 5, 7
    y_ref = rng.standard_normal((m, c, hw)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32) if bias else conv._NO_BIAS
    r = np.ascontiguousarray(y_ref.transpose(1, 0, 2)).reshape(c, m * hw)
    y = np.full_like(y_ref, np.nan)
    getattr(conv, f"_unfold_{kernel}")(r, b, y)
    assert np.array_equal(y, y_ref + (b[:, None] if bias else 0))
    out = np.full_like(r, np.nan)
    gb = np.full(c, 2.0, np.float32) if bias else conv._NO_BIAS
    getattr(conv, f"_fold_{kernel}")(y_ref, out, gb, True)
    assert np.array_equal(out, r)
    if bias:
        np.testing.assert_allclose(gb, 2.0 + y_ref.sum(axis=(0, 2)), rtol=1e-5, atol=1e-5)
        getattr(conv, f"_fold_{kernel}")(y_ref, out, gb, False)
        np.testing.assert_allclose(gb, y_ref.sum(axis=(0, 2)), rtol=1e-5, atol=1e-5)


DECONV_CASES = [
    (1, 3, 4, 5, 5, 3, 1, 1, 0),
    (2, 4, 3, 6, 7, 5, 2, 2, 1),
    (1, 2, 2, 3, 4, 4, 4, 0, 0),
    (3, 3, 5, 4, 3, (3, 2), (2, 3), (1, 0), (1, 2)),
    (1, 5, 2, 1, 1, 3, 2, 0, 1),
]


@pytest.mark.parametrize("case", DECONV_CASES)
def test_conv_transpose2d_matches_reference(case):
    n, ci, co, h, w, k, s, p, op = case
    rng = np.random.default_rng(3)
    layer = K.ConvTranspose2d(ci, co, k, s, p, op, seed=4)
    x = rng.standard_normal((n, ci, h, w)).astype(np.float32)
    y = layer.forward(x)
    x64, w64 = x.astype(np.float64), layer.weight.astype(np.float64)
    args = (layer.stride, layer.padding, layer.output_padding)
    ref = R.conv_transpose2d(x64, w64, layer.bias.astype(np.float64), *args)
    assert y.shape == ref.shape == layer.output_shape(x.shape)
    assert rel_err(y, ref) < RTOL
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy)
    rdx, rdw, rdb = R.conv_transpose2d_grads(x64, w64, dy.astype(np.float64), *args)
    assert rel_err(dx, rdx) < RTOL
    assert rel_err(layer.grad_weight, rdw) < RTOL
    assert rel_err(layer.grad_bias, rdb) < RTOL


def test_conv_transpose_is_adjoint_of_conv():
    """<conv(x), y> == <x, conv_transpose(y)> with shared weights and no bias."""
    rng = np.random.default_rng(5)
    conv = K.Conv2d(3, 4, 5, 2, 2, bias=False, seed=1)
    deconv = K.ConvTranspose2d(4, 3, 5, 2, 2, 1, bias=False)
    deconv.weight = conv.weight.copy()  # (out, in) of the conv == (in, out) of the deconv
    x = rng.standard_normal((2, 3, 10, 10)).astype(np.float32)
    y = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    lhs = np.vdot(conv.forward(x).astype(np.float64), y)
    rhs = np.vdot(x.astype(np.float64), deconv.forward(y))
    assert abs(lhs - rhs) < 1e-4 * abs(lhs)


@pytest.mark.parametrize("n,c,h,w,k,s", [(1, 2, 6, 6, 2, 2), (2, 3, 7, 9, 3, 2),
                                         (1, 1, 5, 4, 2, 1), (2, 3, 7, 9, 2, 2)])
def test_maxpool_matches_reference(n, c, h, w, k, s):
    rng = np.random.default_rng(6)
    layer = K.MaxPool2d(k, s)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    y = layer.forward(x)
    ref, dmask = R.maxpool(x.astype(np.float64), k, s)
    assert rel_err(y, ref) < RTOL
    dy = rng.standard_normal(y.shape).astype(np.float32)
    rdx = np.einsum("ncij,ncijhw->nchw", dy.astype(np.float64), dmask)
    assert rel_err(layer.backward(dy), rdx) < RTOL


def test_maxpool_2x2_ties_go_to_the_first_maximum_as_in_the_generic_kernel():
    from kernels import pool
    x = np.zeros((1, 1, 4, 5), np.float32)
    x[0, 0, 1, 1] = x[0, 0, 1, 0] = 1.0  # a tie in the first window: (1, 0) comes first
    layer = K.MaxPool2d(2)
    y, arg = layer.forward(x), layer._arg.copy()
    generic = np.empty_like(y), np.empty(arg.shape, np.int32)
    pool._maxpool_fwd(x, 2, 2, 2, 2, 2, 2, False, *generic)
    assert np.array_equal(y, generic[0])
    oh, ow = np.meshgrid(np.arange(2), np.arange(2), indexing="ij")
    flat = generic[1][0, 0]  # the generic kernel's index in the plane: row * 5 + column
    assert np.array_equal(arg[0, 0], 2 * (flat // 5 - 2 * oh) + flat % 5 - 2 * ow)
    assert arg.dtype == np.int8 and arg[0, 0, 0, 0] == 2 * 1 + 0
    dx = layer.backward(np.ones_like(y))
    assert dx.sum() == y.size and dx[0, 0, 1, 0] == 1 and dx[0, 0, :, 4].sum() == 0


@pytest.mark.parametrize("k,s", [(2, 2), (3, 2), (2, 1)])
def test_maxpool_with_relu_input_equals_relu_then_pool(k, s):
    """relu_input: the pool applies the ReLU before it. Values and input gradient equal the
    two layers run apart, exactly, ties and all-negative windows included."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    x[0, 0, :4, :4] = -1.0                    # all-negative windows: no gradient
    x[1, 1, 2:4, 2:4] = 0.5                   # ties among positive values
    relu, pool = K.ReLU(), K.MaxPool2d(k, s)
    y0 = pool.forward(relu.forward(x))
    fused = K.MaxPool2d(k, s)
    fused.relu_input = True
    y1 = fused.forward(x)
    assert np.array_equal(y0, y1)
    dy = rng.standard_normal(y0.shape).astype(np.float32)
    assert np.array_equal(relu.backward(pool.backward(dy)), fused.backward(dy))


@pytest.mark.parametrize("k", [2, 3])
def test_sequential_fuses_relu_into_the_pool_with_the_same_training(k):
    """A net with fusion (the default) and without it: the same losses and weight gradients,
    bit for bit, over steps that draw new dropout masks, and in evaluation; the fused ReLU
    names its pool and passes data through. k=2: the 2x2 kernels; 3: the generic ones."""
    def net(fuse):
        rng = np.random.default_rng(0)
        return K.Sequential(K.Conv2d(2, 4, 3, 1, 1, rng=rng), K.ReLU(inplace=True),
                            K.MaxPool2d(k, 2), K.Dropout(0.4, seed=5),
                            K.Conv2d(4, 4, 3, 1, 1, rng=rng), K.ReLU(),
                            K.GlobalAvgPool2d(), K.Linear(4, 2, rng=rng),
                            input_shape=(2, 9, 9), first_needs_grad=True, fuse=fuse)
    a, b = net(True), net(False)
    assert a.fused_layers() == {"relu1": "maxpool1"} and b.fused_layers() == {}
    assert a.layers[2].relu_input and not b.layers[2].relu_input
    rng = np.random.default_rng(1)
    for _ in range(2):
        x = rng.standard_normal((3, 2, 9, 9)).astype(np.float32)
        y = np.array([0, 1, 1])
        assert a.compute_gradients(x.copy(), y) == b.compute_gradients(x.copy(), y)
        for la, lb in zip(a.layers, b.layers):
            for (_, _, ga), (_, _, gb) in zip(la.params(), lb.params()):
                assert np.array_equal(ga, gb)
    a.eval(), b.eval()
    assert np.array_equal(a.forward(x.copy()), b.forward(x.copy()))
    assert a.ledger(3).rows == b.ledger(3).rows  # the ledger is the net's, fused or not
    assert "fused into maxpool1" in repr(a)


def test_maxpool_reuse_grad_returns_one_array_with_the_right_values():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 3, 6, 7)).astype(np.float32)
    ref, layer = K.MaxPool2d(2), K.MaxPool2d(2, reuse_grad=True)
    dy = rng.standard_normal(ref.forward(x).shape).astype(np.float32)
    layer.forward(x)
    first = layer.backward(dy)
    assert np.array_equal(first, ref.backward(dy))
    layer.forward(-x)
    second = layer.backward(2 * dy)
    assert second is first  # overwritten: the contract of reuse_grad
    ref.forward(-x)
    assert np.array_equal(second, ref.backward(2 * dy))


def test_global_avg_pool():
    rng = np.random.default_rng(7)
    layer = K.GlobalAvgPool2d()
    x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    assert rel_err(layer.forward(x), x.astype(np.float64).mean((2, 3))) < RTOL
    dy = rng.standard_normal((2, 3)).astype(np.float32)
    ref = np.repeat(np.repeat(dy[:, :, None, None] / 20.0, 5, 2), 4, 3)
    assert rel_err(layer.backward(dy), ref) < RTOL


@pytest.mark.parametrize("layer,slope", [(K.ReLU(), 0.0), (K.LeakyReLU(0.1), 0.1)])
def test_relu_family(layer, slope):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 4, 5, 1)).astype(np.float32)
    ref = np.where(x > 0, x, slope * x)
    assert rel_err(layer.forward(x), ref) < RTOL
    dy = rng.standard_normal(x.shape).astype(np.float32)
    assert rel_err(layer.backward(dy), np.where(x > 0, dy, slope * dy)) < RTOL


def test_linear_matches_reference():
    rng = np.random.default_rng(9)
    layer = K.Linear(7, 3, seed=1)
    assert layer.weight.shape == (3, 7)
    x = rng.standard_normal((1, 7)).astype(np.float32)
    w64 = layer.weight.astype(np.float64)
    assert rel_err(layer.forward(x), x @ w64.T + layer.bias) < RTOL
    dy = rng.standard_normal((1, 3)).astype(np.float32)
    assert rel_err(layer.backward(dy), dy @ w64) < RTOL
    assert rel_err(layer.grad_weight, dy.T @ x) < RTOL
    assert rel_err(layer.grad_bias, dy.sum(0)) < RTOL


@pytest.mark.parametrize("slope", [0.0, 0.1])
def test_inplace_relu_equals_the_out_of_place_one(slope):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    ref = K.LeakyReLU(slope)
    y0, dx0 = ref.forward(x), ref.backward(dy)
    layer = K.LeakyReLU(slope, inplace=True)
    xi, dyi = x.copy(), dy.copy()
    y1 = layer.forward(xi)
    assert y1 is xi and np.array_equal(y1, y0)
    dx1 = layer.backward(dyi)
    assert dx1 is dyi and np.array_equal(dx1, dx0)


def test_dropout_scales_and_masks():
    layer = K.Dropout(0.5, seed=3)
    x = np.ones((4, 1000), np.float32)
    y = layer.forward(x)
    assert set(np.unique(y)) <= {0.0, 2.0}
    assert 0.4 < (y == 0).mean() < 0.6
    assert np.array_equal(layer.backward(x), y)
    layer.training = False
    assert np.array_equal(layer.forward(x), x)


def test_dropout_is_seeded_and_keeps_the_right_fraction():
    x = np.ones((8, 64, 32, 32), np.float32)
    a, b = K.Dropout(0.3, seed=5), K.Dropout(0.3, seed=5)
    ya, yb = a.forward(x), b.forward(x)
    assert np.array_equal(ya, yb)  # same seed, same masks
    assert not np.array_equal(ya, a.forward(x))  # a new mask every step
    assert abs((ya == 0).mean() - 0.3) < 0.01
    assert np.allclose(ya[ya != 0], 1 / 0.7)
    dy = np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    dx = b.backward(dy)
    assert np.array_equal(dx == 0, yb == 0)
    assert np.allclose(dx, np.where(yb != 0, dy / 0.7, 0), rtol=1e-6, atol=0)


def test_dropout_masks_are_independent_across_steps_and_elements():
    """The 32-bit counter hash: successive steps' masks, and neighbouring elements of one
    mask, are uncorrelated (|r| < 0.01 over 1 M elements; a shifted or repeated mask gives
    r near 1)."""
    layer = K.Dropout(0.5, seed=11)
    x = np.ones((16, 64, 32, 32), np.float32)
    masks = [(layer.forward(x) != 0).ravel().astype(np.float64) for _ in range(3)]
    for a, b in zip(masks, masks[1:]):
        assert abs(np.corrcoef(a, b)[0, 1]) < 0.01
    m = masks[0]
    for lag in (1, 2, 1024):
        assert abs(np.corrcoef(m[:-lag], m[lag:])[0, 1]) < 0.01
    for p in (0.1, 0.9):
        kept = (K.Dropout(p, seed=2).forward(x) != 0).mean()
        assert abs(kept - (1 - p)) < 0.003


def test_dropout_refuses_more_elements_than_its_counter_holds():
    x = np.broadcast_to(np.float32(1), (1 << 16, 1 << 16))  # 2**32 elements, no memory
    with pytest.raises(ValueError, match="allowed < 2"):
        K.Dropout(0.5, seed=1).forward(x)


def test_softmax_cross_entropy():
    rng = np.random.default_rng(10)
    z = rng.standard_normal((5, 3)).astype(np.float32)
    t = np.array([0, 2, 1, 1, 0])
    loss = K.CrossEntropyLoss()
    rl, rg = R.softmax_xent(z.astype(np.float64), t)
    assert abs(loss.forward(z, t) - rl) < 1e-5
    assert rel_err(loss.backward(), rg) < RTOL


def test_mse():
    rng = np.random.default_rng(11)
    a, b = rng.standard_normal((2, 3, 4, 4)).astype(np.float32), rng.standard_normal(
        (2, 3, 4, 4)).astype(np.float32)
    loss = K.MSELoss()
    assert abs(loss.forward(a, b) - ((a.astype(np.float64) - b) ** 2).mean()) < 1e-6
    assert rel_err(loss.backward(), 2 * (a.astype(np.float64) - b) / a.size) < RTOL


def _detection_problem(rng, n=3, k=4, g=3):
    preds = (rng.standard_normal((n, 2, g, g)), rng.standard_normal((n, k, g, g)),
             rng.standard_normal((n, 4, g, g)))
    target = K.DetectionTarget(obj=(rng.random((n, g, g)) < 0.3).astype(np.int8),
                               cls=rng.integers(0, k, (n, g, g)),
                               box=rng.standard_normal((n, 4, g, g)),
                               labelled=np.array([True, False, True][:n]))
    return preds, target


def test_detection_loss_gradient_by_finite_differences():
    rng = np.random.default_rng(12)
    preds, target = _detection_problem(rng)
    loss = K.DetectionLoss()
    loss.forward(preds, target)
    grads = loss.backward()
    eps = 1e-6
    for head, grad in zip(range(3), grads):
        for _ in range(6):
            idx = tuple(rng.integers(0, s) for s in preds[head].shape)
            p = [a.copy() for a in preds]
            p[head][idx] += eps
            up = K.DetectionLoss().forward(tuple(p), target)
            p[head][idx] -= 2 * eps
            down = K.DetectionLoss().forward(tuple(p), target)
            assert abs((up - down) / (2 * eps) - grad[idx]) < 1e-6


def test_detection_loss_ignores_unlabelled_images():
    rng = np.random.default_rng(13)
    preds, target = _detection_problem(rng)
    base = K.DetectionLoss().forward(preds, target)
    changed = tuple(a.copy() for a in preds)
    for a in changed:
        a[1] += 5.0  # image 1 is unlabelled
    assert K.DetectionLoss().forward(changed, target) == pytest.approx(base)


def test_sgd_momentum_weight_decay_matches_pytorch_rule():
    layer = K.Linear(3, 2, seed=0)
    w0 = layer.weight.astype(np.float64).copy()
    g = np.full_like(layer.weight, 0.5)
    opt = K.SGD([layer], lr=0.1, momentum=0.9, weight_decay=0.01)
    layer.grad_weight = g.copy()
    layer.grad_bias = np.zeros_like(layer.bias)
    opt.step()
    v1 = g + 0.01 * w0
    w1 = w0 - 0.1 * v1
    assert rel_err(layer.weight, w1) < 1e-6
    layer.grad_weight = g.copy()
    opt.step()
    v2 = 0.9 * v1 + g + 0.01 * w1
    assert rel_err(layer.weight, w1 - 0.1 * v2) < 1e-6


@pytest.mark.parametrize("make", [
    lambda r: K.Conv2d(2, 3, 3, 1, 1, seed=1, reuse_output=r),
    lambda r: K.MaxPool2d(2, 2, reuse_output=r),
    lambda r: K.Dropout(0.5, seed=1, reuse_output=r),
])
def test_reuse_output_keeps_one_buffer_and_computes_the_same(make):
    x1 = np.random.default_rng(0).standard_normal((2, 2, 8, 8)).astype(np.float32)
    x2 = np.random.default_rng(1).standard_normal((2, 2, 8, 8)).astype(np.float32)
    fresh, kept = make(False), make(True)
    a1, b1 = fresh.forward(x1), kept.forward(x1)
    np.testing.assert_array_equal(a1, b1)
    first = b1.copy()
    a2, b2 = fresh.forward(x2), kept.forward(x2)
    np.testing.assert_array_equal(a2, b2)
    assert np.shares_memory(b1, b2)           # kept: the next call overwrites the last output
    assert not np.shares_memory(a1, a2)       # the default: a new array every call
    np.testing.assert_array_equal(a1, first)  # ... so an output held by the caller stays
    dy = np.ones_like(a2)
    da, db = fresh.backward(dy), kept.backward(dy)
    if da is not None:
        np.testing.assert_array_equal(da, db)
