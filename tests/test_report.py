"""perfmodel report: the committed paper report is current, a report of partial results,
bad results files, and the HTML opened in a real headless browser."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from perfmodel.cli import main
from perfmodel.report.build import build

from .browser import chromium

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "reports" / "paper"
DETERMINISTIC = ["reproduction.csv", "fitted_parameters.csv", "strong_scaling_model.csv",
                 "weak_scaling_model.csv", "time_to_target_model.csv", "summary.md",
                 "summary.csv", "scaling.csv", "time_to_target.csv", "convergence_fit.csv"]


def test_committed_paper_report_matches_the_code(showcase):
    """Rebuilt from its recorded run, the showcase is what is committed. Regenerate with
    `perfmodel report --paper` when this fails."""
    for name in DETERMINISTIC:
        assert (showcase / name).read_text() == (PAPER / name).read_text(), \
            f"reports/paper/{name} is stale: run `perfmodel report --paper`"
    assert (PAPER / "index.html").exists() and (PAPER / "paper_scaling.png").exists()


@pytest.fixture(scope="module")
def node_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("r") / "node.csv"
    assert main(["node", "--quick", "--image-size", "32", "--sweep", "1,2", "--repeats", "1",
                 "--threads", "1", "-o", str(out), "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def partial_report(node_results, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    build(out, [node_results], paper=False, plan=True)
    return out


def test_partial_results_say_what_is_missing(partial_report):
    html = (partial_report / "index.html").read_text()
    assert "Partial report; missing" in html and "no perfmodel scale results" in html
    assert (partial_report / "node_layers.png").exists()
    assert "relu1 into maxpool1" in html  # a fused layer has no bar: the text says where it is
    assert (partial_report / "plan_pareto.png").exists() and "Planning a cluster run" in html
    assert "Missing: no perfmodel scale results" in (partial_report / "summary.md").read_text()
    assert "http://" not in html and "https://" not in html  # nothing from the network


@pytest.mark.parametrize("content,match", [
    ("", "empty"),
    ("a,b\n1,2\n", "columns do not match"),
])
def test_bad_results_file_is_a_clear_error(tmp_path, capsys, content, match):
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    assert main(["report", "--results", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and match in err and "Traceback" not in err
    assert main(["report", "--results", str(tmp_path / "none.csv"), "--out",
                 str(tmp_path / "o")]) == 2


def test_report_opens_in_a_headless_browser(partial_report):
    browser = chromium()
    if browser is None:
        pytest.skip(reason="Debian's chromium is not installed and could not be installed here")
    r = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", "--no-first-run", "--disable-quic",
                        f"--user-data-dir={partial_report / '.chrome'}",
                        "--virtual-time-budget=5000", "--dump-dom",
                        (partial_report / "index.html").as_uri()],
                       capture_output=True, text=True, timeout=120)
    dom = r.stdout
    m = re.search(r'data-images="(\d+)"\s+data-broken-images="(\d+)"', dom)
    assert m, dom[:500] + r.stderr[-500:]
    assert int(m.group(1)) >= 3 and int(m.group(2)) == 0
    tables = re.findall(r"<table.*?</table>", dom, flags=re.S)
    assert tables and all(len(re.findall(r"<tr", t)) >= 2 for t in tables)


def test_speedup_compares_like_with_like():
    """Efficiency is taken against the 1-worker run with the same threads per rank and batch:
    a 2-worker x 1-thread run is not set against a 1-worker x 2-thread one (which read 1.85
    once), and a run with no such baseline gets no efficiency at all."""
    from perfmodel.report.sections.harness import speedup_table

    runs = pd.DataFrame([
        dict(strategy="sync", workers=1, threads=2, batch=32, value=100.0),
        dict(strategy="sync", workers=1, threads=1, batch=32, value=60.0),
        dict(strategy="sync", workers=2, threads=1, batch=32, value=110.0),
        dict(strategy="sync", workers=2, threads=1, batch=16, value=70.0),  # no baseline
        dict(strategy="async", workers=2, threads=1, batch=32, value=90.0),  # none either
    ]).assign(subject="hep-f32-d0", image_size=48, straggler="", functional=False)
    eff = speedup_table(runs)
    two = eff[eff.workers == 2]
    assert len(two) == 1 and two.efficiency.iloc[0] == pytest.approx(110 / 120)
    assert (eff.efficiency <= 1).all()


@pytest.mark.parametrize("rates,harness_s,verdict", [
    # profiles (samples/s at batch 16, one per round) against harness compute times (s)
    ((400.0, 410.0, 420.0), (0.040,) * 3, "pass"),  # 39.0 ms against 40 ms: -2.4%
    ((360.0, 370.0, 380.0), (0.040,) * 3, "FAIL"),  # 43.2 ms: +8.1%, the rounds agree
    ((300.0, 370.0, 380.0), (0.040,) * 3, "FAIL"),  # one round off: the other two carry it
    ((280.0, 370.0, 470.0), (0.040,) * 3, "inconclusive"),  # +8.1%; no two rounds agree
    ((330.0, 410.0, 500.0), (0.040,) * 3, "inconclusive"),  # -2.4%: no pass by luck either
    ((400.0, 410.0, 420.0), (0.040, 0.031, 0.050, 0.040), "inconclusive"),  # harness drifted
    # (median, fastest step) of each repeat: the machine slowed during most of them, alike
    (((360.0, 450.0), (370.0, 455.0), (380.0, 400.0)), (0.040,) * 3, "inconclusive"),
    ((400.0, 410.0, 420.0), ((0.040, 0.032), (0.040, 0.039), (0.041, 0.033)), "inconclusive"),
    # one of three slowed within: the other two carry the median, and the claim is judged
    (((360.0, 450.0), (370.0, 380.0), (380.0, 400.0)), (0.040,) * 3, "FAIL"),
    (((400.0, 405.0), (410.0, 420.0), (420.0, 430.0)), ((0.040, 0.032), (0.040, 0.039)),
     "pass"),  # one of two harness runs: not most of them
])
def test_node_rate_claim_is_inconclusive_when_the_machine_drifts(rates, harness_s, verdict,
                                                                 tmp_path):
    """The +-5% node-rate claim is judged only where the repeats behind both medians, the
    profiles' rounds and the harness runs, agree within UNSTABLE_SPREAD (less the one
    farthest from the median), and where most of them did not run their median step more than
    UNSTABLE_SPREAD slower than their own fastest; otherwise its verdict is "inconclusive",
    whichever side of the bar it falls."""
    from perfmodel.provenance import run_base
    from perfmodel.report.html import verdict_of, write_summary
    from perfmodel.report.sections.node import profile_sections
    from perfmodel.results import make_row

    sub = dict(subject="hep-f32-d0", image_size=48, threads=1, batch=16)
    def pair(v):  # a repeat's median, and its fastest step where given
        return v if isinstance(v, tuple) else (v, math.nan)

    prof = pd.DataFrame([make_row(run_base(1), what="step", metric="sample_rate", value=v,
                                  max=fast, implementation="numba", **sub)
                         for v, fast in map(pair, rates)])
    runs = pd.DataFrame([make_row(run_base(1), what="run", metric=m, phase=ph, value=v,
                                  min=fast, strategy="sync", **sub)
                         for t, fast in map(pair, harness_s)
                         for m, ph, v in [("time", "compute", t), ("sample_rate", "", 16 / t)]])
    sections = profile_sections(prof, runs, tmp_path)
    rate = sections[0].claims[0]
    assert rate.claim.startswith("node rate (alone)") and verdict_of(rate) == verdict
    assert ("drifted" in rate.inconclusive) == (verdict == "inconclusive")
    # summary.md, read without the html, says why too
    md = write_summary(tmp_path, "t", sections).read_text()
    assert (f"- inconclusive, {rate.claim}: {rate.inconclusive}" in md) == bool(rate.inconclusive)


NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def _numbers(text: str) -> set[float]:
    return {float(f"{float(t):.3g}") for t in NUMBER.findall(text)}


@pytest.fixture(scope="module")
def showcase(tmp_path_factory):
    """The showcase rebuilt from the recorded run committed under reports/paper/results."""
    out = tmp_path_factory.mktemp("paper")
    shutil.copytree(PAPER / "results", out / "results")
    assert main(["report", "--paper", "--out", str(out)]) == 0
    return out


def test_showcase_has_the_recorded_run(showcase):
    import html as H

    html = H.unescape((showcase / "index.html").read_text())
    for title in ("Summary: what holds", "Scaling: measured and predicted",
                  "Time to a target loss: measured and predicted",
                  "The paper's figures beside the model's"):
        assert title in html
    assert "Partial report" not in html and "Measured on " in html
    assert "sgemm not measured" not in html  # OpenBLAS's rows count toward the peak too


def test_report_shows_no_nan_and_its_summary_numbers_are_in_a_csv(showcase):
    html = (showcase / "index.html").read_text()
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style).*?</\1>", "", html, flags=re.S))
    assert not re.search(r"\b(nan|NaN|inf|Infinity)\b", text), \
        re.search(r".{60}\b(nan|NaN|inf|Infinity)\b.{60}", text)
    summary = re.search(r"<table class='claims'>.*?</table>", html, flags=re.S).group(0)
    shown = _numbers(re.sub(r"<[^>]+>", " ", summary))
    in_csv = set()
    for p in showcase.glob("*.csv"):
        in_csv |= _numbers(p.read_text())
    assert shown and shown <= in_csv, sorted(shown - in_csv)


def test_showcase_efficiency_at_most_one(showcase):
    eff = pd.read_csv(showcase / "speedup.csv")
    assert len(eff) and (eff.efficiency <= 1.0).all(), eff


def test_pipeline_rounds_interleave_profiles_and_timed_runs(tmp_path):
    """The default pipeline: every round starts with its node profiles, its scaling sweeps
    run only timed configurations (ranks x threads <= 2 cores), each round draws its own
    seed, and the quick convergence rounds run the quick held-out configurations
    (each in every round, at least 8 runs)."""
    import argparse

    from perfmodel.cli import converge as CLI_CONVERGE
    from perfmodel.cli.harness import add_arguments
    from perfmodel.harness import convergence_runs as CR
    from perfmodel.harness.scale import plan
    from perfmodel.report.pipeline import ROUNDS, stages

    st = stages(tmp_path)
    labels = [label for label, _ in st]
    for k in range(1, ROUNDS + 1):
        first = labels.index(f"node profile (round {k} of {ROUNDS})")
        assert labels[first + 1] == f"node profile, 2 ranks busy (round {k} of {ROUNDS})"
        assert labels[first + 2] == f"scaling sweep (round {k} of {ROUNDS})"
        assert f"held-out convergence runs (round {k} of {ROUNDS})" in labels[first:]
    assert labels.index("node profile (closing)") > labels.index(
        f"held-out convergence runs (round {ROUNDS} of {ROUNDS})")
    seeds = set()
    for label, argv in st:
        if argv[0] == "scale" and "--timed-only" in argv:
            p = argparse.ArgumentParser()
            add_arguments(p)
            runs, _ = plan(p.parse_args(argv[1:]), cores=2)
            assert runs and all(r * cfg.threads <= 2 and not cfg.functional
                                for r, cfg in runs), label
            seeds.add(argv[argv.index("--seed") + 1])
    assert len(seeds) == ROUNDS
    p = argparse.ArgumentParser()
    CLI_CONVERGE.add_arguments(p)
    args = p.parse_args(["--quick", "--rounds", "2"])
    held = [lab for k in (1, 2) for lab, _ in CR.round_stages(args, tmp_path, k)
            if lab.startswith("held out")]
    assert len(held) == 2 * len(CR.QUICK_HELD_OUT) >= 8
    assert {h.split(": ")[1].split(" (")[0] for h in held} == set(CR.QUICK_HELD_OUT)
    full = p.parse_args(["--rounds", "2"])
    assert sum(lab.startswith("held out") for lab, _ in CR.round_stages(full, tmp_path, 1)) \
        == len(CR.HELD_OUT)
