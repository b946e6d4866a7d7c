"""The two networks: parameter counts, the FLOP ledger in closed form, whole-net gradient
checks by finite differences, learning on a toy problem, and errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest

import kernels as K


def test_hep_parameter_count_is_exact():
    net = K.hep_net()
    assert net.param_count() == 594_178
    assert net.ledger(1).param_bytes / 2**20 == pytest.approx(2.27, abs=0.005)


def test_hep_ledger_closed_form():
    """Convolution FLOPs from the closed form 2*H*W*Cout*Cin*k*k per image (SAME padding)."""
    led = K.hep_net().ledger(8)
    conv_fwd = 0
    for i, (size, cin) in enumerate([(224, 3), (112, 128), (56, 128), (28, 128), (14, 128)]):
        row = led.row(f"conv{i + 1}")
        mac = 8 * size * size * 128 * cin * 9
        bias = 8 * size * size * 128
        assert row.forward_flop == 2 * mac + bias
        assert row.backward_weight_flop == 2 * mac + bias
        assert row.backward_data_flop == (0 if i == 0 else 2 * mac)  # data needs no gradient
        conv_fwd += 2 * mac
    assert conv_fwd / 8 == pytest.approx(5.26e9, rel=2e-3)   # the published 5.26 GFLOP/image
    assert led.row("fc1").forward_flop == 8 * (2 * 128 * 2 + 2)
    assert led.row("maxpool1").forward_flop == 8 * 128 * 112 * 112 * 3
    assert led.row("relu1").forward_flop == 8 * 128 * 224 * 224
    assert led.update_flop == 6 * 594_178
    assert led.train_flop == sum(r.forward_flop + r.backward_data_flop + r.backward_weight_flop
                                 for r in led)
    assert 15.4e9 < led.train_flop / 8 < 15.8e9


def test_climate_net_matches_paper_counts():
    net = K.climate_net()
    kinds = [l.kind for _, l in net.named_layers()]
    assert kinds.count("conv") == 9 and kinds.count("deconv") == 5
    mib = net.param_count() * 4 / 2**20
    assert abs(mib / 302.1 - 1) < 0.2
    encoder = sum(l.param_count() for _, l in net.encoder.named_layers())
    assert encoder * 4 / 2**20 == pytest.approx(253.3, abs=0.05)
    assert net.grid_shape() == (1, 1280, 12, 12)
    led = net.ledger(2)
    conv1 = led.row("conv1")
    assert conv1.forward_flop == 2 * (2 * 128 * 384 * 384 * 16 * 25) + 2 * 128 * 384 * 384
    deconv5 = led.row("deconv5")
    assert deconv5.output_shape == (2, 16, 768, 768)
    assert deconv5.forward_flop == 2 * (2 * 48 * 192 * 192 * 16 * 16) + 2 * 16 * 768 * 768


def test_climate_native_size():
    net = K.climate_net((768, 1152), filters=(4,) * 6, decoder_filters=(4,) * 4)
    assert net.grid_shape() == (1, 4, 12, 18)
    assert net.ledger(1).row("deconv5").output_shape == (1, 16, 768, 1152)


def _numeric_grad(f, arr, idx, eps=1e-6):
    old = arr[idx]
    arr[idx] = old + eps
    up = f()
    arr[idx] = old - eps
    down = f()
    arr[idx] = old
    return (up - down) / (2 * eps)


def test_hep_gradient_by_finite_differences():
    net = K.hep_net(image_size=16, filters=3, dropout=0.0, seed=1).to_dtype(np.float64)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 16, 16))
    y = np.array([0, 1])

    def loss():
        return net.loss.forward(net.forward(x), y)

    loss()
    net.backward(net.loss.backward())
    for name, layer in net.named_layers():
        for pname, w, g in layer.params():
            g = getattr(layer, "grad_" + pname)
            for _ in range(3):
                idx = tuple(rng.integers(0, s) for s in w.shape)
                assert _numeric_grad(loss, w, idx) == pytest.approx(g[idx], rel=1e-5, abs=1e-8), \
                    f"{name}.{pname}{idx}"


def _climate_toy(rng, net, n=2):
    x = rng.standard_normal((n, *net.input_shape))
    _, _, gh, gw = net.grid_shape()
    target = K.DetectionTarget(obj=(rng.random((n, gh, gw)) < 0.5).astype(np.int8),
                               cls=rng.integers(0, 4, (n, gh, gw)),
                               box=rng.standard_normal((n, 4, gh, gw)),
                               labelled=np.array([True, False][:n]))
    return x, target


def test_climate_gradient_by_finite_differences():
    net = K.climate_net(64, in_channels=2, filters=(2, 3, 2, 3, 2, 3), decoder_filters=(2, 2, 2, 2),
                        seed=2).to_dtype(np.float64)
    rng = np.random.default_rng(1)
    x, target = _climate_toy(rng, net)

    def loss():
        return net.loss(net.forward(x), x, target)

    loss()
    d_conf, d_cls, d_box = net.det_loss.backward()
    net.backward(d_conf, d_cls, d_box, net.recon_weight * net.recon_loss.backward())
    for name in ("conv1", "conv6", "conf", "cls", "box", "deconv1", "deconv5"):
        layer = dict(net.named_layers())[name]
        for pname, w, _ in layer.params():
            g = getattr(layer, "grad_" + pname)
            for _ in range(2):
                idx = tuple(rng.integers(0, s) for s in w.shape)
                assert _numeric_grad(loss, w, idx) == pytest.approx(g[idx], rel=1e-4, abs=1e-7), \
                    f"{name}.{pname}{idx}"


def toy_hep_data(rng, n, size=32):
    """Learnable toy: class 1 images carry a bright blob in the first channel."""
    x = rng.random((n, 3, size, size)).astype(np.float32) * 0.5
    y = rng.integers(0, 2, n)
    x[y == 1, 0, size // 4:size // 2, size // 4:size // 2] += 2.0
    return x, y


def test_scaled_hep_learns_a_toy_problem():
    net = K.hep_net(image_size=32, filters=8, dropout=0.0, seed=0, lr=0.05, momentum=0.9)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(60):
        x, y = toy_hep_data(rng, 16)
        losses.append(net.train_step(x, y))
    assert np.mean(losses[-8:]) < 0.4 * np.mean(losses[:8])
    x, y = toy_hep_data(rng, 64)
    acc = (net.eval().forward(x).argmax(1) == y).mean()
    assert acc > 0.9


def test_scaled_climate_train_step_lowers_loss():
    net = K.climate_net(64, filters=(4, 4, 8, 8, 8, 8), decoder_filters=(4, 4, 4, 4), seed=0,
                        lr=0.01, momentum=0.9)
    rng = np.random.default_rng(3)
    x, target = _climate_toy(rng, net)
    x = x.astype(np.float32)
    losses = [net.train_step(x, target) for _ in range(15)]
    assert losses[-1] < losses[0]


def test_float32_throughout():
    net = K.hep_net(image_size=32, filters=4)
    out = net.forward(np.zeros((1, 3, 32, 32), np.float32))
    assert out.dtype == np.float32


@pytest.mark.parametrize("make,match", [
    (lambda: K.Conv2d(3, 8, 9), r"Conv2d: kernel_size=9 is out of range \(allowed 1..7\)"),
    (lambda: K.Conv2d(3, 8, 3, stride=0), r"Conv2d: stride=0"),
    (lambda: K.Conv2d(3, 8, 3, padding=-1), r"Conv2d: padding=-1"),
    (lambda: K.ConvTranspose2d(3, 8, 3, 2, 0, 2), r"output_padding"),
    (lambda: K.Linear(0, 3), r"Linear: in_features=0"),
    (lambda: K.MaxPool2d(3, 0), r"MaxPool2d: stride=0"),
    (lambda: K.Dropout(1.5), r"Dropout: p=1.5"),
    (lambda: K.hep_net(image_size=100), r"multiple of 16"),
    (lambda: K.climate_net(100), r"multiple of 64"),
])
def test_bad_constructor_arguments_name_the_field(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("layer,shape", [
    (K.Conv2d(3, 8, 3), (2, 4, 10, 10)),       # wrong channels
    (K.Conv2d(3, 8, 5), (1, 3, 3, 3)),         # image smaller than the kernel
    (K.Conv2d(3, 8, 3), (0, 3, 10, 10)),       # batch 0
    (K.Conv2d(3, 8, 3), (3, 10, 10)),          # no batch axis
    (K.Linear(5, 2), (4, 6)),
    (K.MaxPool2d(2), (1, 1, 1, 1)),
])
def test_bad_shapes_name_layer_expected_and_given(layer, shape):
    with pytest.raises(K.ShapeError) as e:
        layer.forward(np.zeros(shape, np.float32))
    msg = str(e.value)
    assert type(layer).__name__ in msg and "expected" in msg and str(tuple(shape)) in msg


def test_net_rejects_wrong_input_and_batch_zero():
    net = K.hep_net(image_size=32, filters=4)
    with pytest.raises(K.ShapeError, match=r"expected input \(N>=1, 3, 32, 32\), got \(2, 3, 64"):
        net.forward(np.zeros((2, 3, 64, 64), np.float32))
    with pytest.raises(ValueError, match="batch=0"):
        net.ledger(0)


def test_threads_setting():
    assert K.set_num_threads(1) == 1
    assert K.get_num_threads() == 1
    with pytest.raises(ValueError, match="threads=0"):
        K.set_num_threads(0)
    K.set_num_threads(K.max_threads())
