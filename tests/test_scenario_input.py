"""What a user writes in a scenario: quantities with units, paths beside the scenario file,
--unset, and (fuzzed) any value of any key: exit 0 with finite JSON or exit 2 naming the field,
never a traceback."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmodel.cli import main
from perfmodel.model import scenario as SC
from perfmodel.model import units


@pytest.mark.parametrize("key,text,value", [
    ("link_bandwidth_Bps", "200 Gb/s", 25e9), ("link_bandwidth_Bps", "25 GB/s", 25e9),
    ("link_bandwidth_Bps", "100Gbps", 12.5e9), ("link_latency_s", "2 us", 2e-6),
    ("link_latency_s", "1.5ms", 1.5e-3), ("device_peak_flops", "19.5 TFLOP/s", 19.5e12),
    ("bucket_bytes", "25 MiB", 25 * 2**20), ("straggler_rate_hz", "1 kHz", 1e3),
    ("link_latency_s", "3e-6", 3e-6)])
def test_quantities_convert_to_the_unit_of_the_key(key, text, value):
    assert units.parse(key, text) == pytest.approx(value)


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def test_a_scenario_in_units_predicts_as_the_same_in_numbers():
    plain = SC.load("perlmutter-gpu-hep")[0]
    words = SC.load("perlmutter-gpu-hep", ['cluster.link_bandwidth_Bps="800 Gb/s"',
                                           'cluster.intra_bandwidth_Bps="100 GB/s"',
                                           'cluster.link_latency_s=["1.5 us", "3 us"]'])[0]
    for k in ("link_bandwidth_Bps", "intra_bandwidth_Bps", "link_latency_s"):
        assert words["cluster"][k] == plain["cluster"][k]
    rc, _, err = _run(["predict", "perlmutter-gpu-hep", "--set",
                       'cluster.link_bandwidth_Bps="8 furlongs"'])
    assert rc == 2 and "cluster.link_bandwidth_Bps" in err and "furlongs" in err


def test_paths_resolve_against_the_scenario_file(tmp_path, monkeypatch):
    (tmp_path / "net.csv").write_text("layer,params,forward_flop\nfc,1000000,2000000\n")
    text = SC.read_raw("perlmutter-gpu-hep")[0]
    (tmp_path / "my.toml").write_text(
        (tmp_path / "x").as_posix() and
        open(SC.__file__.replace("scenario.py", "presets/perlmutter-gpu-hep.toml")).read()
        .replace('net = "hep"', 'layers = "net.csv"'))
    assert text
    monkeypatch.chdir(tmp_path.parent)  # elsewhere: the path is the file's folder's
    rc, out, err = _run(["predict", str(tmp_path / "my.toml"), "--json"])
    assert rc == 0, err


def test_unset_removes_a_key_before_the_overrides():
    s, _ = SC.load("perlmutter-gpu-hep", ["training.global_batch=8192"],
                   unset=["training.batch_per_worker"])
    assert SC.configuration(s)["batch"] == 32
    rc, _, err = _run(["predict", "perlmutter-gpu-hep", "--unset", "training.nosuch"])
    assert rc == 2 and "--unset" in err


def test_the_three_defects_of_the_mutation_run_are_errors():
    for text, field in (("convergence.kappa=inf", "convergence.kappa"),
                        ("io.fs_bandwidth_Bps=1e-320", "io.fs_bandwidth_Bps"),
                        ('cluster.link_profile=""', "cluster.link_profile")):
        rc, _, err = _run(["predict", "cpu-epyc-hdr-hep", "--set", text, "--json"])
        assert rc == 2 and field in err and "Traceback" not in err


NUMERIC = [(sec, key) for sec, keys in SC.SCHEMA.items() for key, (typ, _) in keys.items()
           if typ in ("num", "int")]
VALUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10**7),
                   st.sampled_from(['"1 GB/s"', '"2 us"', '""', '"x"', "true", "[1, 2]",
                                    "[2, 1]", "1e-320", "-1e300"]))


@settings(max_examples=150, deadline=None)
@given(field=st.sampled_from(NUMERIC), value=VALUES,
       preset=st.sampled_from(["cpu-epyc-hdr-hep", "perlmutter-gpu-hep", "cori-knl-hep"]))
def test_fuzzed_presets_predict_finite_json_or_name_the_field(field, value, preset):
    sec, key = field
    text = value if isinstance(value, str) else (
        "nan" if isinstance(value, float) and math.isnan(value) else
        ("inf" if value == math.inf else "-inf" if value == -math.inf else repr(value)))
    rc, out, err = _run(["predict", preset, "--set", f"{sec}.{key}={text}", "--json"])
    assert "Traceback" not in err
    if rc == 0:
        json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    else:
        # one line naming a field: this one, or the one a consistency rule found it breaks
        assert rc == 2 and err.count("\n") == 1 and re.search(
            r"\b(cluster|io|workload|training|convergence)\b", err), err


def test_sweeps_vary_any_key_keep_intervals_and_draw(tmp_path):
    out, fig = tmp_path / "s.csv", tmp_path / "s.png"
    rc, _, err = _run(["sweep", "perlmutter-gpu-hep", "--vary",
                       "cluster.link_bandwidth_Bps=12.5e9,25e9", "--vary",
                       'training.gradient_dtype=fp32,fp16', "--vary", "training.workers=8,64",
                       "-o", str(out), "--plot", str(fig)])
    assert rc == 0, err
    import pandas as pd

    df = pd.read_csv(out)
    assert len(df) == 8 and set(df["training.gradient_dtype"]) == {"fp32", "fp16"}
    assert (df.throughput_samples_per_s_low <= df.throughput_samples_per_s).all()
    assert (df.throughput_samples_per_s <= df.throughput_samples_per_s_high).all()
    fp16 = df[df["training.gradient_dtype"] == "fp16"].comm_s.to_numpy()
    fp32 = df[df["training.gradient_dtype"] == "fp32"].comm_s.to_numpy()
    assert (fp16 <= fp32).all() and fig.stat().st_size > 1000
    rc, _, err = _run(["sweep", "perlmutter-gpu-hep", "--vary", "cluster.nosuch=1,2"])
    assert rc == 2 and "cluster.nosuch" in err
    rc, _, err = _run(["sweep", "perlmutter-gpu-hep", "--vary", "training.workers=8,16",
                       "--plot", str(tmp_path / "sweep.txt")])
    assert rc == 2 and "sweep.txt" in err and "png, pdf, svg" in err and "Traceback" not in err


def test_renamed_keys_are_read_with_a_note_and_predict_the_same(tmp_path, capsys):
    import warnings

    from perfmodel.cli import main
    from perfmodel.model.predict import predict

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        old, _ = SC.load("perlmutter-gpu-hep", ["cluster.node_batch=32"])
        ref, _ = SC.load("perlmutter-gpu-hep", ["cluster.device_batch=32"])
    assert any("cluster.node_batch is now cluster.device_batch" in str(w.message)
               for w in seen)
    assert predict(old)["throughput_samples_per_s"] == predict(ref)["throughput_samples_per_s"]
    # a file with an old name: read, one note on stderr, and the same numbers
    f = tmp_path / "old.toml"
    f.write_text(_toml_with_old_name())
    assert main(["predict", str(f), "--json"]) == 0
    out = capsys.readouterr()
    assert "perfmodel: note:" in out.err and "device_peak_flops" in out.err
    # both names at once: an error naming them
    from perfmodel.ui import UserError

    with pytest.raises(UserError, match="node_peak_flops and cluster.device_peak_flops"), \
            pytest.warns(FutureWarning):
        SC.validate({"cluster": {"node_peak_flops": 1e12, "device_peak_flops": 1e12}})


def _toml_with_old_name() -> str:
    return ('[cluster]\nnodes = 4\nnode_peak_flops = "10 TFLOP/s"\ndevice_flops = "5 TFLOP/s"\n'
            'link_bandwidth_Bps = "25 GB/s"\nlink_latency_s = "2 us"\n'
            '[workload]\nnet = "resnet50"\n[training]\nstrategy = "sync"\nworkers = 4\n'
            'batch_per_worker = 32\n')


def test_a_reader_that_leaves_early_is_no_error():
    # perfmodel sweep ... | head -1: the pipe closes; no traceback, exit 0
    import subprocess
    import sys

    cmd = (f"{sys.executable} -c 'import sys; from perfmodel.cli import main; "
           "sys.exit(main())' sweep cori-knl-hep --vary training.workers=1:9000 | head -c 10")
    run = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True,
                         text=True, timeout=120)
    assert "Traceback" not in run.stderr and run.returncode == 0, run.stderr[-800:]
