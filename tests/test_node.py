"""perfmodel node: the results schema, a quick run, interrupted runs and bad input."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import llvmlite.binding as llvm
import pandas as pd
import pytest

from perfmodel import provenance
from perfmodel import results as R
from perfmodel.cli import main
from perfmodel.measure.node import build_net, measure_step
from perfmodel.provenance import run_base
from perfmodel.report.build import machine_line

ROOT = Path(__file__).resolve().parents[1]


def _rows(n=3):
    base = run_base(threads=1)
    return [R.make_row(base, what="step", subject="hep", phase="step", metric="time",
                       value=0.5 + i, unit="s", min=0.4, max=0.7 + i, repeats=3, batch=8,
                       image_size=64, flop=1e9, implementation="numba") for i in range(n)]


def test_provenance_names_the_numba_target(monkeypatch):
    """The LLVM target the kernels were compiled for is recorded: NUMBA_CPU_NAME where set
    (as Numba reads it), else the host CPU, and the report's machine line shows it."""
    monkeypatch.setattr(provenance.numba_config, "CPU_NAME", None)
    assert provenance.numba_cpu.__wrapped__() == llvm.get_host_cpu_name()
    monkeypatch.setattr(provenance.numba_config, "CPU_NAME", "skylake-avx512")
    assert provenance.numba_cpu.__wrapped__() == "skylake-avx512"
    assert f"numba_cpu={provenance.numba_cpu()}" in provenance.versions().split(";")
    df = pd.DataFrame(_rows(1)).assign(versions="numba=0.68.1;numba_cpu=sapphirerapids")
    assert "Numba target sapphirerapids" in machine_line(df)


def test_schema_round_trips(tmp_path):
    path = tmp_path / "r.csv"
    w = R.ResultsWriter(path)
    w.add(_rows(2))
    w.add(_rows(1))
    df = R.read_results(path)
    assert list(df.columns) == R.NAMES
    assert len(df) == 3
    assert df["value"].tolist() == [0.5, 1.5, 0.5]
    assert df["batch"].dtype == "int64" and df["functional"].dtype == bool
    again = R.ResultsWriter(path, append=True)
    again.add(_rows(1))
    assert len(R.read_results(path)) == 4
    # nothing else is left in the folder: writes go through a renamed temporary file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]


def test_make_row_rejects_unknown_fields():
    with pytest.raises(KeyError, match="not in the results schema"):
        R.make_row({}, speed=1.0)


@pytest.mark.parametrize("content,match", [
    ("", "empty"),
    ("a,b\n1,2\n", "columns do not match"),
    ("\x00\x01garbage", "columns do not match|not a results CSV"),
])
def test_bad_results_files_name_file_and_problem(tmp_path, content, match):
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(R.ResultsError, match=match) as e:
        R.read_results(p)
    assert str(p) in str(e.value)


def test_wrong_type_in_a_column(tmp_path):
    p = tmp_path / "r.csv"
    R.ResultsWriter(p).add(_rows(2))
    text = p.read_text().splitlines()
    cells = text[2].split(",")
    cells[R.NAMES.index("batch")] = "eight"
    text[2] = ",".join(cells)
    p.write_text("\n".join(text) + "\n")
    with pytest.raises(R.ResultsError, match=r"column 'batch' must hold int values \(row 3"):
        R.read_results(p)


def test_measure_step_ledger_and_phases():
    net = build_net("hep", 32)
    m = measure_step(net, batch=2, repeats=2)
    assert len(m.step_s.samples) == 2 and m.step_s.median > 0
    assert ("conv2", "backward_data") in m.layer_s and ("conv2", "backward_weight") in m.layer_s
    assert ("conv1", "forward") in m.layer_s
    rows = m.rows(run_base(1))
    step_rate = [r for r in rows if r["what"] == "step" and r["metric"] == "flop_rate"][0]
    assert math.isclose(step_rate["value"], m.ledger.step_flop / m.step_s.median)
    # relu1 is fused into maxpool1: its FLOPs count where its work is timed
    assert m.fused["relu1"] == "maxpool1" and m.phase_flop("relu1", "forward") == 0
    led = {r.name: r for r in m.ledger}
    assert m.phase_flop("maxpool1", "forward") == (led["maxpool1"].forward_flop
                                                   + led["relu1"].forward_flop)
    relu1 = [r for r in rows if r["layer"] == "relu1"]
    assert relu1 and all(r["metric"] == "time" and r["note"] == "fused into maxpool1"
                         for r in relu1)
    per_layer = sum(r["flop"] for r in rows if r["what"] == "layer" and r["metric"] == "time"
                    and r["phase"] != "update")
    assert per_layer == sum(r.train_flop for r in m.ledger if r.name != "loss")


def test_conv_parts_add_up_to_their_phase_and_come_out_as_rows():
    """im2col + GEMM + layout of a convolution's phase, as the kernel timed them, never exceed
    the phase's own time and cover most of it; every conv phase has a GEMM part."""
    from perfmodel.cli.node_parts import parts_summary, parts_table

    net = build_net("hep", 32)
    m = measure_step(net, batch=2, repeats=2)
    d = parts_summary(m, wakeup_s=1e-4)
    got = {(c["layer"], c["phase"]) for c in d["conv"]}
    assert ("conv1", "forward") in got and ("conv2", "backward_data") in got
    assert ("conv1", "backward_data") not in got  # the first layer needs no input gradient
    for c in d["conv"]:
        parts = c["im2col_s"] + c["gemm_s"] + c["layout_s"]
        assert c["gemm_s"] > 0 and parts <= c["phase_s"] * 1.001
    assert set(d["kinds"]) >= {"relu", "maxpool", "dropout", "update"}  # relu5: not fused
    assert set(d["fused"]) == {"relu1", "relu2", "relu3", "relu4"}
    assert "softmax_xent" not in d["kinds"]  # the loss is outside the layers' timers
    assert 0 <= d["outside_layers_s"] < d["step_s"]
    rows = [r for r in m.rows(run_base(1)) if r["what"] == "part"]
    assert {r["note"] for r in rows} == {"im2col", "gemm", "layout"}
    text = parts_table(m, {"sgemm": 1e11}, 1e-4)
    assert "conv2" in text and "% sgemm" in text and "100 us" in text


def test_paired_fraction_divides_each_step_by_its_own_probe():
    net = build_net("hep", 32)
    probes = iter([100e9, 50e9, 200e9])
    m = measure_step(net, batch=2, repeats=3, probe=lambda: next(probes))
    assert m.probe_flops == [100e9, 50e9, 200e9]
    phases = ["forward", "backward_data", "backward_weight"]
    flop = sum(m.phase_flop("conv2", ph) for ph in phases)
    t = [sum(m.layer_s[("conv2", ph)].samples[i] for ph in phases) for i in range(3)]
    want = sorted(flop / t[i] / p for i, p in enumerate([100e9, 50e9, 200e9]))[1]
    assert math.isclose(m.paired_fraction("conv2", phases).median, want)
    step = m.paired_step_fraction()
    assert math.isclose(step.samples[1], m.ledger.step_flop / m.step_s.samples[1] / 50e9)
    rows = m.rows(run_base(1))
    assert [r for r in rows if r["what"] == "probe"][0]["value"] == 100e9
    assert any(r["metric"] == "paired_peak_fraction" and r["layer"] == "conv2" for r in rows)
    unprobed = measure_step(net, batch=2, repeats=1)
    assert unprobed.paired_fraction("conv2", phases) is None
    assert not any(r["metric"] == "paired_peak_fraction" for r in unprobed.rows(run_base(1)))


def test_quick_run_writes_a_valid_file(tmp_path, capsys):
    out = tmp_path / "node.csv"
    rc = main(["node", "--quick", "--image-size", "32", "--sweep", "1,2", "--repeats", "1",
               "--threads", "1", "-o", str(out), "--no-progress", "--json", "--parts"])
    assert rc == 0
    df = R.read_results(out)
    assert set(df["what"]) >= {"peak", "bandwidth", "layer", "step", "compile", "probe", "part",
                               "wakeup"}
    assert (df[df.what == "wakeup"].value > 0).all()
    paired = df[(df.metric == "paired_peak_fraction") & (df.batch == 8)]
    assert len(paired) and (paired.value > 0).all() and (paired.unit == "1").all()
    steps = df[(df.what == "step") & (df.metric == "sample_rate")]
    assert sorted(steps["batch"]) == [1, 2, 8]
    assert (df["threads"] == 1).all() and (df["ranks"] == 1).all()
    assert not df["functional"].any()
    assert df["git_commit"].iloc[0] != ""
    printed = capsys.readouterr()
    summary = json.loads(printed.out)  # with --json, stdout is the JSON alone
    assert "samples_per_s" in summary and "pool_wakeup_s" in summary["parts"]
    assert "GFLOP/s" in printed.err and "where the time goes" in printed.err  # the tables
    sgemm = summary["peak_sgemm_flops"]
    shares = summary["layer_sgemm_fraction"]
    assert {"conv1", "conv5", "fc1"} <= set(shares) and "relu1" not in shares  # fused: in the pool
    assert all(math.isclose(shares[k], v / sgemm) for k, v in summary["layer_flops"].items())
    assert math.isclose(summary["step_sgemm_fraction"], summary["step_flops"] / sgemm)


def test_interrupted_run_leaves_a_readable_file(tmp_path):
    out = tmp_path / "node.csv"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "perfmodel", "node", "--image-size", "32",
                             "--sweep", "1,2,4,8,16,32,64", "--repeats", "3", "-o", str(out),
                             "--no-progress"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until some measurements are on disk
        if out.exists() and (R.read_results(out)["what"] == "step").any():
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    df = R.read_results(out)
    assert (df["what"] == "peak").any() and (df["what"] == "step").any()


@pytest.mark.parametrize("argv,match", [
    (["node", "--net", "resnet"], "--net='resnet' is not a known network"),
    (["node", "--batch", "0"], "batch=0 is out of range"),
    (["node", "--batch", "-3"], "batch=-3 is out of range"),
    (["node", "--threads", "999"], "--threads=999 exceeds the"),
    (["node", "--image-size", "100"], "--image-size=100"),
    (["node", "--sweep", "a,b"], "--sweep="),
])
def test_bad_input_is_one_line_and_exit_2(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert match in err
    assert "Traceback" not in err and len(err.splitlines()) <= 3


def test_missing_peer_is_a_clear_error(monkeypatch, capsys):
    from perfmodel.measure import peers

    monkeypatch.setattr(peers, "torch_available", lambda: False)
    assert main(["node", "--peer", "torch", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "needs PyTorch" in err and "perfmodel[peers]" in err


def test_cli_exit_code_2_from_a_real_process():
    r = subprocess.run([sys.executable, "-m", "perfmodel", "node", "--batch", "0"],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 2 and "Traceback" not in r.stderr


@pytest.mark.skipif(not __import__("perfmodel.measure.peers").measure.peers.torch_available(),
                    reason="the peers extra (torch) is not installed")
def test_torch_mirror_computes_the_same_forward():
    import numpy as np
    import torch

    net = build_net("hep", 32)
    net.eval()
    model, _ = __import__("perfmodel.measure.peers").measure.peers.mirror(net)
    model.eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    ours = net.forward(x)
    theirs = model(torch.from_numpy(x)).detach().numpy()
    assert np.allclose(ours, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not __import__("perfmodel.measure.peers").measure.peers.torch_available(),
                    reason="the peers extra (torch) is not installed")
@pytest.mark.parametrize("shifted", [True, False], ids=["shifted", "im2col"])
def test_conv_and_fused_pool_gradients_agree_with_torch(shifted, monkeypatch):
    """Forward and all gradients of a per-image convolution (both data-gradient paths) and
    of a max-pool with its ReLU fused in, against torch's autograd, to 1e-4."""
    import numpy as np
    import torch

    import kernels
    from kernels import conv
    monkeypatch.setattr(conv, "PER_IMAGE_PIXELS", 1)
    monkeypatch.setattr(conv.blas, "AVAILABLE", shifted and conv.blas.AVAILABLE)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 5, 20, 18)).astype(np.float32)
    layer = kernels.Conv2d(5, 7, 3, 1, 1, seed=3)
    pool = kernels.MaxPool2d(2, 2)
    pool.relu_input = True
    y = pool.forward(layer.forward(x))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(pool.backward(dy))

    xt = torch.from_numpy(x).requires_grad_()
    ref = torch.nn.Conv2d(5, 7, 3, 1, 1)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(layer.weight))
        ref.bias.copy_(torch.from_numpy(layer.bias))
    yt = torch.nn.functional.max_pool2d(torch.relu(ref(xt)), 2, 2)
    yt.backward(torch.from_numpy(dy))

    def close(ours, theirs):
        theirs = theirs.detach().numpy()
        return np.abs(ours - theirs).max() <= 1e-4 * max(np.abs(theirs).max(), 1.0)

    assert close(y, yt) and close(dx, xt.grad)
    assert close(layer.grad_weight, ref.weight.grad) and close(layer.grad_bias, ref.bias.grad)


def test_interleaved_steps_alternate_and_pair_each_round():
    """Each round runs ours, then every peer in order; a slow spell that hits one round
    scales both sides of that round's ratio, so the paired ratio stays put where a ratio
    of the two sides' medians, taken in separate blocks, would not."""
    from perfmodel.measure import peers

    log, slow = [], {2}  # round 2 runs 3x slower on both sides

    def timer(name, base_s):
        def step():
            log.append(name)
            return base_s * (3.0 if log.count("ours") - 1 in slow else 1.0)
        return step

    r = peers.interleaved_steps(timer("ours", 1.0), {"a": timer("a", 2.0),
                                                    "b": timer("b", 0.5)}, 4)
    assert log == ["ours", "a", "b"] * 4
    assert r.ours_s.samples == [1.0, 1.0, 3.0, 1.0]
    assert r.speed_ratio("a").samples == [2.0] * 4
    assert r.speed_ratio("b").median == 0.5
    with pytest.raises(ValueError, match="rounds=0"):
        peers.interleaved_steps(timer("ours", 1.0), {}, 0)


def test_a_one_thread_run_restores_the_process_affinity(tmp_path):
    before = os.sched_getaffinity(0)
    assert main(["node", "--quick", "--image-size", "32", "--sweep", "1", "--repeats", "1",
                 "--threads", "1", "-o", str(tmp_path / "n.csv"), "--no-progress"]) == 0
    assert os.sched_getaffinity(0) == before


def test_placement_warning_flags_threads_that_share_cores():
    from perfmodel.measure.node import placement_warning

    ok = {"fma": 170e9, "fma_1thread": 88e9}
    shared = {"fma": 90e9, "fma_1thread": 88e9}
    assert placement_warning(ok, 2) is None
    assert "cores were shared" in placement_warning(shared, 2)
    assert placement_warning(shared, 1) is None and placement_warning({"fma": 1.0}, 2) is None


def test_busy_ranks_measures_beside_a_companion_and_says_so(tmp_path):
    """--busy-ranks 2: the step timed while a companion rank trains the same net and batch on
    the other core; its rows carry ranks=2; a profile holding both kinds gives the scenario's
    busy fraction, and validate predicts 2-worker runs from it."""
    from perfmodel.cli import main
    from perfmodel.judge.validate import profile_ranks, profile_rates
    from perfmodel.model.profiles import busy_fraction_from_profile
    from perfmodel.results import read_results

    out = tmp_path / "node.csv"
    args = ["node", "--net", "hep", "--image-size", "32", "--filters", "8", "--dropout", "0",
            "--threads", "1", "--sweep", "4", "--batch", "4", "--repeats", "2", "--quick",
            "-o", str(out), "--no-progress"]
    assert main(args) == 0
    assert main(args + ["--busy-ranks", "2", "--append"]) == 0
    df = read_results(out)
    steps = df[(df.what == "step") & (df.metric == "time")]
    assert set(steps.ranks) == {1, 2} and not df[df.ranks == 2].functional.any()
    f = busy_fraction_from_profile(str(out), 4)
    assert 0 < f <= 1
    rates = profile_rates(df)
    run = type("R", (), dict(subject=steps.subject.iloc[0], image_size=32, threads=1,
                             ranks=2, param_servers=0))
    assert profile_ranks(run, rates) == 2
    run.ranks, run.param_servers = 2, 1  # one worker and a server: computing alone
    assert profile_ranks(run, rates) == 1


def test_busy_ranks_beyond_the_cores_is_refused(capsys):
    from perfmodel.cli import main
    from kernels.threads import available_cores

    n = available_cores() + 1
    assert main(["node", "--quick", "--threads", "1", "--busy-ranks", str(n)]) == 2
    assert "--busy-ranks" in capsys.readouterr().err
