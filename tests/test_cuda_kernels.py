"""The Numba CUDA kernels against the CPU kernels, under Numba's CUDA simulator (set in
tests/conftest.py): every layer kind forward and backward on small shapes, the GEMM with
each transpose, and one training step of the HEP net."""

from __future__ import annotations

import numpy as np
import pytest
from numba import cuda

import kernels
from kernels import cuda as kc
from kernels.cuda import layers as CL
from kernels.cuda import ops

pytestmark = pytest.mark.skipif(not kc.simulated(), reason="the simulator tests run with "
                                "NUMBA_ENABLE_CUDASIM=1 (tests/conftest.py sets it)")
RNG = np.random.default_rng(0)


def _r(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_tiled_gemm_with_each_transpose(ta, tb):
    a, b = _r(5, 19) if not ta else _r(19, 5), _r(19, 21) if not tb else _r(21, 19)
    c0 = _r(5, 21)
    c = cuda.to_device(c0.copy())
    ops.matmul(cuda.to_device(a), cuda.to_device(b), c, ta, tb, alpha=2.0, beta=0.5)
    ref = 2.0 * ((a.T if ta else a) @ (b.T if tb else b)) + 0.5 * c0
    np.testing.assert_allclose(c.copy_to_host(), ref, rtol=1e-5, atol=1e-5)


def _check(cpu_layer, x, rtol=1e-4, atol=1e-5):
    """Forward and backward of a CPU layer and its device twin on the same input."""
    dev = CL.to_device(cpu_layer)
    y = cpu_layer.forward(x.copy())
    yd = dev.forward(cuda.to_device(x))
    np.testing.assert_allclose(yd.copy_to_host(), y, rtol=rtol, atol=atol)
    dy = _r(*y.shape)
    dx = cpu_layer.backward(dy.copy())
    dxd = dev.backward(cuda.to_device(dy))
    if dx is not None:
        np.testing.assert_allclose(dxd.copy_to_host(), dx, rtol=rtol, atol=atol)
    for p, w, g in dev.params():
        np.testing.assert_allclose(g.copy_to_host(), getattr(cpu_layer, "grad_" + p),
                                   rtol=rtol, atol=atol)
    return dev


@pytest.mark.parametrize("k,s,p,bias", [(3, 1, 1, True), (3, 2, 0, False), (1, 1, 0, True)])
def test_conv2d_forward_and_backward(k, s, p, bias):
    layer = kernels.Conv2d(2, 3, k, s, p, bias=bias, rng=RNG)
    _check(layer, _r(2, 2, 7, 7))


def test_conv_transpose2d_forward_and_backward():
    layer = kernels.ConvTranspose2d(3, 2, 3, 2, 1, output_padding=1, rng=RNG)
    _check(layer, _r(2, 3, 4, 4))


@pytest.mark.parametrize("layer", [kernels.ReLU(), kernels.LeakyReLU(0.2)], ids=["relu", "leaky"])
def test_activations(layer):
    _check(layer, _r(2, 3, 4, 5))


@pytest.mark.parametrize("k,s", [(2, 2), (3, 2)])
def test_maxpool(k, s):
    _check(kernels.MaxPool2d(k, s), _r(2, 2, 7, 7))


def test_global_avgpool_and_linear():
    _check(kernels.GlobalAvgPool2d(), _r(3, 4, 5, 5))
    _check(kernels.Linear(6, 4, rng=RNG), _r(3, 6))


def test_dropout_keeps_and_scales_by_its_own_mask():
    layer = kernels.Dropout(0.5, seed=1)
    dev = CL.to_device(layer)
    x = _r(4, 3, 8, 8)
    y = dev.forward(cuda.to_device(x)).copy_to_host()
    keep = dev._keep.copy_to_host().astype(bool)
    assert 0.3 < keep.mean() < 0.7
    np.testing.assert_allclose(y, np.where(keep, 2 * x, 0), rtol=1e-6)
    dy = _r(*x.shape)
    dx = dev.backward(cuda.to_device(dy)).copy_to_host()
    np.testing.assert_allclose(dx, np.where(keep, 2 * dy, 0), rtol=1e-6)


def _assert_same_weights(cpu, dev) -> None:
    for (n, lc), (_, ld) in zip(cpu.named_layers(), dev.named_layers()):
        for p, w, _ in lc.params():
            np.testing.assert_allclose(getattr(ld, p).copy_to_host(), w, rtol=1e-4, atol=1e-6,
                                       err_msg=f"{n}.{p}")


def test_hep_net_on_the_device_trains_as_on_the_cpu():
    cpu = kernels.hep_net(16, filters=2, dropout=0.0, seed=3)
    dev = kernels.hep_net(16, filters=2, dropout=0.0, seed=3, device="cuda")
    assert dev.ledger(2).train_flop == cpu.ledger(2).train_flop
    x, y = _r(2, 3, 16, 16), np.array([0, 1])
    loss_cpu = cpu.train_step(x, y, lr=0.1)
    loss_dev = dev.train_step(x, y, lr=0.1)
    assert loss_dev == pytest.approx(loss_cpu, rel=1e-5)
    _assert_same_weights(cpu, dev)


def test_peak_and_bandwidth_probes_run():
    out = cuda.device_array(64, np.float32)
    ops.fma_chain[1, 64](out, 3)
    assert np.isfinite(out.copy_to_host()).all()
    a = cuda.device_array(100, np.float32)
    ops.triad[1, 128](a, cuda.to_device(np.ones(100, np.float32)),
                      cuda.to_device(np.ones(100, np.float32)), np.float32(2.0))
    assert (a.copy_to_host() == 3.0).all()


def test_node_device_cuda_runs_end_to_end_on_the_simulator(tmp_path, capsys):
    import json

    from perfmodel.cli import main
    from perfmodel.results import read_results

    out = tmp_path / "cuda.csv"
    assert main(["node", "--device", "cuda", "--net", "hep", "--image-size", "16",
                 "--filters", "1", "--batch", "1", "--sweep", "1", "--repeats", "1", "--json",
                 "-o", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr()
    summary = json.loads(printed.out)  # with --json, stdout is the JSON alone
    assert "FMA-chain peak" in printed.err
    assert summary["simulator"] and summary["implementation"] == "numba-cuda"
    assert set(summary["conv_peak_fraction"]) == {"conv1", "conv2", "conv3", "conv4", "conv5"}
    df = read_results(out)
    assert "device=numba-cuda-simulator" in df.versions.iloc[0]
    layers = df[(df.what == "layer") & (df.metric == "time")]
    assert {"forward", "backward"} <= set(layers.phase)
    assert set(df[df.what == "peak"].subject) == {"fma"}


def test_climate_net_on_the_device_trains_as_on_the_cpu():
    """The climate net's wiring (heads and decoder summed into the encoder's gradient, the
    reconstruction loss on the device) on a tiny net of its layer kinds: 1x8x8 -> 4x4 -> 8x8.
    The simulator runs every thread in Python, so the 64x64 minimum of climate_net() would
    take minutes; climate_net(device="cuda") is checked for its layers and ledger."""
    from kernels.loss import DetectionTarget

    def tiny(device):
        rng = np.random.default_rng(5)
        enc = kernels.Sequential(kernels.Conv2d(1, 2, 5, 2, 2, rng=rng),
                                 kernels.LeakyReLU(0.1, inplace=True), input_shape=(1, 8, 8),
                                 names=["conv1", "lrelu1"])
        heads = [kernels.Conv2d(2, k, 3, 1, 1, rng=rng) for k in (2, 4, 4)]
        dec = kernels.Sequential(kernels.ConvTranspose2d(2, 1, 5, 2, 2, 1, rng=rng),
                                 names=["deconv1"], first_needs_grad=True)
        net = kernels.ClimateNet(enc, heads, dec, (1, 8, 8))
        return kc.CudaClimateNet(net, 5) if device == "cuda" else net

    cpu, dev = tiny("cpu"), tiny("cuda")
    rng = np.random.default_rng(1)
    x = _r(2, 1, 8, 8)
    y = DetectionTarget(obj=(rng.random((2, 4, 4)) < 0.3).astype(np.int8),
                        cls=rng.integers(0, 4, (2, 4, 4)),
                        box=rng.standard_normal((2, 4, 4, 4)).astype(np.float32),
                        labelled=np.array([True, False]))
    loss_cpu = cpu.train_step(x, y, lr=0.05)
    loss_dev = dev.train_step(x, y, lr=0.05)
    assert loss_dev == pytest.approx(loss_cpu, rel=1e-5)
    _assert_same_weights(cpu, dev)
    kw = dict(image_size=64, in_channels=1, filters=(1,) * 6, decoder_filters=(1,) * 4)
    full_cpu, full_dev = kernels.climate_net(**kw), kernels.climate_net(**kw, device="cuda")
    assert [n for n, _ in full_dev.named_layers()] == [n for n, _ in full_cpu.named_layers()]
    assert full_dev.ledger(2).train_flop == full_cpu.ledger(2).train_flop


def test_node_device_cuda_names_what_it_runs(capsys):
    from perfmodel.cli import main

    assert main(["node", "--device", "cuda", "--net", "resnet50", "--no-progress"]) == 2
    assert "allowed: hep, climate" in capsys.readouterr().err
    assert main(["node", "--device", "cuda", "--net", "climate", "--filters", "4",
                 "--no-progress"]) == 2
    assert "HEP net only" in capsys.readouterr().err
