"""perfmodel ledger: a user's network as a layer table, against the zoo's conventions."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from kernels.zoo import Spec, resnet50
from perfmodel.cli import main
from perfmodel.measure import ledger as L
from perfmodel.model import scenario as SC
from perfmodel.model.predict import predict


def _small_onnx(path: Path) -> Spec:
    """conv 3x3 (bias) + BN + ReLU + maxpool 2 + global average pool + Gemm, as an ONNX file,
    and the same network as a zoo Spec."""
    onnx = pytest.importorskip("onnx", reason="the 'ledger' extra (onnx) is not installed")
    from onnx import TensorProto, helper, numpy_helper

    def init(name, *shape):
        return numpy_helper.from_array(np.zeros(shape, np.float32), name)

    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "g", "be", "mu", "var"], ["n"]),
             helper.make_node("Relu", ["n"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["p"], ["a"]),
             helper.make_node("Flatten", ["a"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1)]
    graph = helper.make_graph(
        nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [init("w", 16, 3, 3, 3), init("b", 16), init("g", 16), init("be", 16), init("mu", 16),
         init("var", 16), init("fw", 10, 16), init("fb", 10)])
    onnx.save(helper.make_model(graph), str(path))
    s = Spec("small", (3, 8, 8))
    x = s.maxpool(s.relu(s.bn(s.conv(s.input_dims, 16, 3, 1, 1, bias=True))), 2, 2)
    s.fc(s.global_avgpool(x), 10)
    return s


def test_an_onnx_file_gives_the_zoo_ledger_of_the_same_network(tmp_path):
    spec = _small_onnx(tmp_path / "small.onnx")
    led = L.build(str(tmp_path / "small.onnx"), (3, 8, 8))
    assert [r.forward_flop for r in led.rows] == [r.forward_flop for r in spec.rows]
    assert led.params == sum(spec.blobs)  # BN's running statistics are not trained
    assert led.uncounted == []


def test_the_table_is_what_workload_layers_reads(tmp_path):
    _small_onnx(tmp_path / "small.onnx")
    out = tmp_path / "layers.csv"
    assert main(["ledger", str(tmp_path / "small.onnx"), "--input", "3,8,8", "-o",
                 str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == list(L.COLUMNS)
    assert [int(r["gradient_bytes"]) for r in rows] == [4 * int(r["params"]) for r in rows]
    # backward: the last layer with parameters first
    order = [(int(r["backward_order"]), r["layer"]) for r in rows if r["backward_order"]]
    assert sorted(order)[0][1] == rows[-1]["layer"] and len(order) == 3
    # a scenario predicts from it
    (tmp_path / "my.toml").write_text(
        '[cluster]\nnodes = 4\ndevice_peak_flops = "19.5 TFLOP/s"\ndevice_flops = "10 TFLOP/s"\nlink_bandwidth_Bps = "100 Gb/s"\n'
        'link_latency_s = "2 us"\n[workload]\nlayers = "layers.csv"\n'
        '[training]\nstrategy = "sync"\nworkers = 4\nbatch_per_worker = 32\n')
    p = predict(SC.load(str(tmp_path / "my.toml"))[0])
    assert np.isfinite(p["throughput_samples_per_s"])


def test_bad_models_are_clear_errors(tmp_path, capsys):
    assert main(["ledger", "no_such_package.x:y"]) == 2
    assert "ledger" in capsys.readouterr().err  # cannot import it, or torch is missing
    assert main(["ledger", "resnet50"]) == 2
    assert main(["ledger", str(tmp_path / "missing.onnx")]) == 2
    assert main(["ledger", "x.onnx", "--input", "3,0,5"]) == 2


def _torchvision():
    pytest.importorskip("torch", reason="the 'ledger' extra (torch) is not installed")
    try:
        import torchvision  # noqa: F401
    except Exception as e:  # a CUDA-built torchvision beside a CPU torch fails on import
        pytest.skip(reason=f"torchvision does not import here ({type(e).__name__}: {e})")


def test_torchvision_resnet50_traced_gives_the_zoo_ledger():
    _torchvision()
    led = L.build("torchvision.models:resnet50", (3, 224, 224))
    zoo = resnet50()
    assert led.params == sum(zoo.blobs) == 25_557_032
    assert led.forward_flop == sum(r.forward_flop for r in zoo.rows)
    assert led.uncounted == []


def bottleneck_net():
    """A small ResNet written in torch (stem, one bottleneck with a projection shortcut,
    pooling, classifier): the traced ledger must equal the zoo's Spec of the same net."""
    import torch  # optional peer, only where a test calls this
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(8)
            self.relu = nn.ReLU(inplace=True)
            self.pool = nn.MaxPool2d(3, 2, 1)
            self.a = nn.Conv2d(8, 4, 1, bias=False)
            self.bn_a = nn.BatchNorm2d(4)
            self.b = nn.Conv2d(4, 16, 3, 1, 1, bias=False)
            self.bn_b = nn.BatchNorm2d(16)
            self.down = nn.Conv2d(8, 16, 1, bias=False)
            self.avg = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            x = self.pool(self.relu(self.bn1(self.conv1(x))))
            y = self.bn_b(self.b(self.relu(self.bn_a(self.a(x)))))
            y += self.down(x)
            y = torch.relu(y)
            return self.fc(torch.flatten(self.avg(y), 1))

    return Net()


def test_a_traced_torch_module_gives_the_zoo_ledger_of_the_same_network():
    pytest.importorskip("torch", reason="the 'ledger' extra (torch) is not installed")
    led = L.build("tests.test_ledger:bottleneck_net", (3, 32, 32))
    s = Spec("small", (3, 32, 32))
    x = s.maxpool(s.relu(s.bn(s.conv(s.input_dims, 8, 7, 2, 3))), 3, 2, 1)
    y = s.bn(s.conv(s.relu(s.bn(s.conv(x, 4, 1))), 16, 3, 1, 1))
    s.conv(x, 16, 1)
    s.relu(s.add(y))
    s.fc(s.global_avgpool(y), 10)
    assert sorted(r.forward_flop for r in led.rows) == sorted(r.forward_flop for r in s.rows)
    assert led.params == sum(s.blobs) and led.uncounted == []


def test_json_summary_of_a_ledger(tmp_path, capsys):
    _small_onnx(tmp_path / "small.onnx")
    out = tmp_path / "t.csv"
    assert main(["ledger", str(tmp_path / "small.onnx"), "--input", "3,8,8", "-o", str(out),
                 "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["layers"] == 6 and s["params"] == 16 * 27 + 16 * 3 + 170 and out.exists()
