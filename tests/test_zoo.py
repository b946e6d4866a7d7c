"""Common networks as ledgers (kernels.zoo): exact parameter counts and multiply-adds against
the published figures, the same FLOP conventions as the kernels' own layers, and a user's
layer table as a workload."""

from __future__ import annotations

from pathlib import Path

import pytest

import kernels
from kernels import zoo
from perfmodel.model import scenario as SC
from perfmodel.model import workload as WL
from perfmodel.cli import main
from perfmodel.model.predict import predict

# torchvision's model documentation (pytorch.org/vision/stable/models.html): parameters, and
# the "GFLOPS" column, which counts multiply-adds of one image at 224x224 (Inception: 299x299)
# (DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1: 21 classes, the auxiliary head included,
# at 520x520, the size its transforms resize to)
PUBLISHED = {"resnet50": (25_557_032, 4.09e9), "resnet101": (44_549_160, 7.80e9),
             "vgg16": (138_357_544, 15.47e9), "inception_v3": (27_161_264, 5.71e9),
             "deeplabv3_resnet50": (42_004_074, 178.72e9)}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameters_exact_and_multiply_adds_within_one_percent(name):
    params, macs = PUBLISHED[name]
    spec = zoo.ZOO[name]()
    led = spec.ledger()
    assert led.params == params == sum(spec.blobs)
    # 2 FLOP per multiply-add (the published column rounds to 3 significant digits)
    assert spec.conv_flop() / 2 == pytest.approx(macs, rel=0.01)
    assert led.train_flop > 2.9 * spec.conv_flop()  # backward ~ twice forward, plus the rest
    assert led.rows[0].backward_data_flop == 0  # the first layer needs no data gradient


def test_resnet50_blobs_and_batch():
    s1, s8 = zoo.resnet50(), zoo.resnet50(batch=8)
    assert len(s1.blobs) == 161  # torchvision: 53 conv weights, 53 BN scale/shift, fc W and b
    assert s8.ledger().train_flop == 8 * s1.ledger().train_flop
    assert s8.ledger().params == s1.ledger().params


def test_spec_counts_as_the_kernels_layers_do():
    """The spec's conv, fc and pool rows equal the kernels' own layers' ledger rows."""
    s = zoo.Spec("t", (3, 12, 12), batch=2)
    x = s.conv((3, 12, 12), 8, 3, 1, 1, bias=True)   # not the first layer's rules: add one
    s.rows.clear(), s.blobs.clear()
    y = s.conv((3, 12, 12), 8, 3, 2, 1, bias=True)
    s.maxpool(y, 2, 2)
    s.global_avgpool(x)
    s.fc((8, 6, 6), 5)
    mine = {r.kind: r for r in s.rows}
    ref = kernels.Conv2d(3, 8, 3, 2, 1)
    ref.needs_input_grad = False
    for spec_row, layer, shape in ((mine["conv"], ref, (2, 3, 12, 12)),
                                   (mine["maxpool"], kernels.MaxPool2d(2, 2), (2, 8, 6, 6)),
                                   (mine["avgpool"], kernels.GlobalAvgPool2d(), (2, 8, 12, 12)),
                                   (mine["fc"], kernels.Linear(288, 5), (2, 288))):
        c = layer.cost(shape)
        assert (spec_row.forward_flop, spec_row.backward_data_flop,
                spec_row.backward_weight_flop, spec_row.params) == \
               (c.forward_flop, c.backward_data_flop, c.backward_weight_flop, c.params), \
               spec_row.kind


def test_zoo_networks_and_layer_tables_are_workloads(tmp_path, capsys):
    s, _ = SC.load("cori-knl-hep", ['workload.net="vgg16"', "workload.image_size=224"])
    vgg = predict(s)
    s, _ = SC.load("cori-knl-hep", ['workload.net="resnet50"', "workload.image_size=224"])
    res = predict(s)
    # same nodes and rate: VGG's 5.4x the parameters cost more communication per FLOP
    assert vgg["efficiency"] < res["efficiency"] <= 1
    table = tmp_path / "net.csv"
    rows = [("conv1", 1792, 1.8e8), ("conv2", 36928, 3.7e9), ("fc", 4097000, 8.2e6)]
    table.write_text("layer,params,forward_flop\n" + "".join(f"{a},{b},{c}\n"
                                                             for a, b, c in rows))
    cori = (Path(SC.__file__).parent / "presets" / "cori-knl-hep.toml").read_text()
    scen = tmp_path / "mine.toml"
    scen.write_text(cori.replace('net = "hep"', f'layers = "{table}"'))
    s, _ = SC.load(str(scen))
    assert predict(s)["throughput_flops"] > 0
    flop, blobs = WL.workload_ledger(s["workload"])
    assert list(blobs) == [4.0 * p for _, p, _ in rows]
    assert flop == pytest.approx(sum(3 * f for _, _, f in rows) - rows[0][2])
    bad = tmp_path / "bad.csv"
    bad.write_text("layer,params,forward_flop\nconv1,many,1e9\n")
    assert main(["predict", str(scen), "--set", f'workload.layers="{bad}"']) == 2
    err = capsys.readouterr().err
    assert "workload.layers" in err and "line 2" in err and "Traceback" not in err


def test_dilation_keeps_the_size_and_the_taps():
    s = zoo.Spec("t", (8, 28, 28))
    y = s.conv((8, 28, 28), 16, 3, 1, 12, d=12)
    assert y == (16, 28, 28)
    plain = zoo.Spec("t", (8, 28, 28))
    plain.conv((8, 28, 28), 16, 3, 1, 1)
    assert s.rows[0].forward_flop == plain.rows[0].forward_flop
    # DeepLabv3's backbone runs stages 3 and 4 at output stride 8
    rows = zoo.deeplabv3_resnet50(image_size=512).rows
    last_block = [r for r in rows if r.kind == "add"][-1]
    assert tuple(last_block.output_shape[1:]) == (2048, 64, 64)
    assert tuple(rows[-1].output_shape[2:]) == (512, 512)  # upsampled to the input


def test_cosmoflow_follows_the_mlperf_reference_definition():
    """No published parameter count was found: the MLPerf HPC reference definition
    (mlcommons/hpc, cosmoflow/models/cosmoflow.py, configs/cosmo.yaml), term by term."""
    s = zoo.cosmoflow()
    chans = [4, 32, 64, 128, 256, 512]
    conv = sum(8 * a * b + b for a, b in zip(chans, chans[1:]))   # 2x2x2 kernels with bias
    flat = 512 * 4 ** 3                                           # 128 / 2^5 = 4 per side
    dense = (flat * 128 + 128) + (128 * 64 + 64) + (64 * 4 + 4)
    assert s.ledger().params == conv + dense == 5_597_604
    # multiply-adds of the convolutions: every 'same'-padded tap of each output voxel
    side = [128, 64, 32, 16, 8]
    macs = sum(b * n ** 3 * a * 8 for a, b, n in zip(chans, chans[1:], side)) + flat * 128 \
        + 128 * 64 + 64 * 4
    bias_adds = sum(b * n ** 3 for b, n in zip(chans[1:], side)) + 128 + 64 + 4
    assert s.conv_flop() == 2 * macs + bias_adds
    with pytest.raises(ValueError, match="too small"):
        zoo.cosmoflow(image_size=16)
