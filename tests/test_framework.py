"""perfmodel node --framework torch: the zoo's networks built in torch from their definitions,
timed per layer and per batch, on the FLOP convention of the ledger."""

from __future__ import annotations

import json

import pytest

from kernels.zoo import ZOO
from perfmodel.cli import main
from perfmodel.measure import framework as FW
from perfmodel.results import read_results

torch = pytest.importorskip("torch", reason="the peers extra (torch) is not installed")

from perfmodel.measure import ledger as L  # noqa: E402  (after the torch check)


@pytest.mark.parametrize("net,size", [("resnet50", 64), ("resnet101", 64), ("vgg16", 224),
                                      ("inception_v3", 299), ("deeplabv3_resnet50", 64),
                                      ("cosmoflow", 32)])
def test_the_torch_build_of_a_zoo_net_has_the_zoo_ledger(net, size):
    """Counted again by tracing the torch module (torch.fx), every convolution, fully
    connected, normalization, activation and pooling row equals the zoo's, as do the
    parameters: the torch network is the definition the model's ledger comes from."""
    s = FW.zoo_subject(net, size)
    spec = ZOO[net](image_size=size)
    assert s.params == sum(spec.blobs) == sum(p.numel() for p in s.module.parameters())
    traced = {r.layer.removeprefix("layers."): r for r in L.module_ledger(
        s.module, s.input_shape, net).rows}
    checked = 0
    for r in spec.rows:
        if r.kind in ("conv", "conv3d", "fc", "bn", "relu", "leaky_relu", "maxpool",
                      "maxpool3d", "dropout") or (r.kind == "avgpool" and r.output_shape[2] > 1):
            key = r.name if r.kind not in ("fc", "conv3d") else f"{r.name}.1"
            assert traced[key].forward_flop == r.forward_flop, r.name
            checked += 1
    assert checked > 0.8 * len(spec.rows)


def test_node_framework_writes_layer_rows_whose_flop_sum_is_the_ledgers(tmp_path, capsys):
    out = tmp_path / "fw.csv"
    rc = main(["node", "--framework", "torch", "--net", "resnet50", "--image-size", "64",
               "--batch", "4", "--device", "cpu", "--json", "-o", str(out), "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr()
    summary = json.loads(printed.out)  # with --json, stdout is the JSON alone
    assert "GFLOP/s" in printed.err
    ledger = ZOO["resnet50"](image_size=64, batch=4).ledger()
    assert summary["layer_flop_total"] == summary["ledger_train_flop"] == ledger.train_flop
    df = read_results(out)
    layers = df[(df.what == "layer") & (df.metric == "time")]
    assert set(layers.phase) == {"forward", "backward"}
    assert len(layers) == 2 * len(ledger.rows)  # every row timed both ways
    assert (layers.value > 0).all()
    assert df[(df.what == "layer") & (df.metric == "time")].flop.sum() == ledger.train_flop
    steps = df[(df.what == "step") & (df.metric == "flop_rate")]
    assert sorted(steps.batch) == [1, 2, 4] and set(steps.implementation) == {"torch-cpu"}
    assert "framework=torch-" in df.versions.iloc[0] and "device=cpu" in df.versions.iloc[0]
    # a scenario naming the file as its node profile predicts from the measured rate
    scen = tmp_path / "s.toml"
    scen.write_text(f'[cluster]\nname = "torch here"\nnodes = 2\ndevices_per_node = 1\n'
                    f'node_profile = "{out}"\ndevice_batch = 4\nlink_bandwidth_Bps = 1e9\n'
                    'link_latency_s = 5e-6\n[workload]\nnet = "resnet50"\nimage_size = 64\n'
                    '[training]\nstrategy = "sync"\nworkers = 1\nbatch_per_worker = 4\n')
    assert main(["predict", str(scen), "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    step = df[(df.what == "step") & (df.metric == "time") & (df.batch == 4)
              & (df.stat == "median")].value.iloc[0]
    assert pred["step_time_s"] == pytest.approx(step, rel=0.05)


def test_a_users_module_is_timed_through_the_ledgers_tracer(tmp_path, capsys):
    out = tmp_path / "m.csv"
    rc = main(["node", "--framework", "torch", "--model", "tests.test_ledger:bottleneck_net",
               "--input", "3,32,32", "--batch", "2", "--sweep", "2", "--repeats", "1",
               "--json", "-o", str(out), "--no-progress"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    led = L.build("tests.test_ledger:bottleneck_net", (3, 32, 32))
    assert sum(r["forward_flop"] for r in summary["layers"]) == 2 * led.forward_flop
    timed = [r for r in summary["layers"] if r["forward_s"] is not None]
    modules = dict(L.load_module("tests.test_ledger:bottleneck_net").named_modules())
    assert len(timed) == sum(1 for r in led.rows if r.layer in modules)  # not the functional
    # add and relu, which have no module to hook
    # its forward adds to a layer's output in place (y += ...): backward hooks cannot run,
    # and the result says so instead of dropping the rows silently
    assert summary["note"] == FW.INPLACE_NOTE
    assert all(r["backward_s"] is None for r in summary["layers"])


def test_hep_through_torch_times_every_layer():
    s = FW.hep_subject(32)
    layers, note = FW.measure_layers(s, 2, repeats=1)
    assert note == "" and {n for n, _ in layers} == set(s.modules)


@pytest.mark.parametrize("argv,match", [
    (["--framework", "torch", "--net", "climate"], "not measured through a framework"),
    (["--framework", "torch", "--net", "hep", "--peer", "torch"], "framework alone"),
    (["--model", "x:y"], "--model applies to --framework torch only"),
    (["--device", "cuda", "--net", "vgg16"], "the Numba CUDA kernels run the paper's nets"),
    (["--framework", "torch", "--input", "3,8,8"], "--input applies to --model only"),
])
def test_bad_framework_arguments_are_one_line_and_exit_2(argv, match, capsys):
    assert main(["node", *argv]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_gpu_is_a_clear_error(capsys):
    assert main(["node", "--framework", "torch", "--net", "resnet50", "--device", "cuda"]) == 2
    assert "sees no CUDA device" in capsys.readouterr().err


def test_the_gpu_script_parses_and_measures_what_it_promises():
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_node.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    for what in ("--device cuda --net hep --batch 64", "--tf32 \"$tf\" --net hep --batch 64",
                 "--net resnet50 --batch 256", "--sweep 32,64,128,256", "reports/gpu"):
        assert what in text
