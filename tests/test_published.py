"""The development set of published runs (perfmodel published): its shape, its sources, and
the command's output."""

from __future__ import annotations

import json
import re

import pytest

from perfmodel.cli import main
from perfmodel.judge import published as P

SECTIONS = ("[cluster]", "[workload]", "[training]", "[io]")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["published", "--json"]) == 0
    return json.loads(out.getvalue())


def test_the_set_is_large_varied_and_sourced(report):
    cases = report["cases"]
    assert len(cases) >= 30 and report["case_count"] == len(cases)
    assert sum(c["published"] <= P.LOW_EFFICIENCY for c in cases) >= 10
    assert report["low_efficiency_cases"] == sum(c["published"] <= 0.85 for c in cases)
    assert len({c["source"] for c in cases}) >= 8 and report["sources"] >= 8
    assert min(c["devices"] for c in cases) <= 8 and max(c["devices"] for c in cases) >= 4096
    for key in ("median_abs_error", "kendall_tau", "loss_ratio", "low_efficiency_within"):
        assert key in report
    for c in cases:
        assert c["low"] <= c["predicted"] <= c["high"]
        assert c["quote"] and c["source"]
        assert c["error"] == pytest.approx(c["predicted"] / c["published"] - 1)


def test_every_input_of_every_case_carries_its_source():
    """Each value of a case's scenario has a comment on its line (its source, or ESTIMATED or
    DERIVED with the reason), or a comment block right above it."""
    for path in P.case_paths():
        section, prev = None, ""
        for line in path.read_text().splitlines():
            s = line.strip()
            if s.startswith("["):
                section = s
            elif section in SECTIONS and re.match(r"^[A-Za-z_]+ *=", s):
                assert "#" in s or prev.startswith("#"), f"{path.name}: {s}"
            prev = line


def test_the_kinds_of_run_are_covered():
    kinds = set()
    for path in P.case_paths():
        text = path.read_text()
        kinds |= {k for k, pat in (("tcp", 'transport = "tcp"'), ("grpc", 'transport = "grpc"'),
                                   ("rdma", 'transport = "rdma"'), ("fp16", '"fp16"'),
                                   ("fp32", '"fp32"'), ("ps", "param_servers"),
                                   ("overlap", "overlap = true"), ("no overlap", "overlap = false"),
                                   ("cpu", "Xeon Phi"), ("gpu", "V100"))
                  if pat in text}
    assert kinds == {"tcp", "grpc", "rdma", "fp16", "fp32", "ps", "overlap", "no overlap", "cpu",
                     "gpu"}


def test_a_bad_case_is_an_error_naming_it(tmp_path, capsys):
    good = next(iter(P.case_paths())).read_text()
    (tmp_path / "bad.toml").write_text(good.replace("efficiency = ", "efficiency = 7 #", 1))
    assert main(["published", "--cases", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "case.efficiency" in err and "Traceback" not in err
    assert main(["published", "--cases", str(tmp_path / "none")]) == 2


def test_one_case_in_full_matches_the_set_and_explains_the_run(report, capsys):
    name = "horovod-issue396-tcp25-resnet50-64"
    row = next(c for c in report["cases"] if c["case"] == name)
    assert main(["published", "--case", name, "--timeline", "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["predicted"] == pytest.approx(row["predicted"])
    assert one["published"] == row["published"] and one["baseline_devices"] == 8
    p = one["prediction"]
    assert p["configuration"]["workers"] == 64 and p["timeline"]["schedule"]
    assert main(["published", "--case", name]) == 0
    text = capsys.readouterr().out
    assert "against 8 devices: published 0.452" in text and "step breakdown" in text
    assert "step timeline" not in text


def test_an_unknown_case_or_a_timeline_without_one_is_a_clear_error(capsys):
    assert main(["published", "--case", "horovod"]) == 2
    err = capsys.readouterr().err
    assert "--case 'horovod'" in err and "horovod-issue396-tcp25-resnet50-64" in err
    assert main(["published", "--timeline"]) == 2
    assert "--timeline needs --case" in capsys.readouterr().err
    assert main(["published", "--ttt", "--case", "mlperf30-dell-xe8545-64"]) == 2
    assert "not of --ttt's time-to-train set" in capsys.readouterr().err
