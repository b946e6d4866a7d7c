"""perfmodel report: the committed paper report is current, a report of partial results,
bad results files, and the HTML opened in a real headless browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from perfmodel.cli import main
from perfmodel.report.build import build

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "reports" / "paper"
DETERMINISTIC = ["reproduction.csv", "fitted_parameters.csv", "strong_scaling_model.csv",
                 "weak_scaling_model.csv", "summary.md"]


def test_committed_paper_report_matches_the_code(tmp_path):
    """Regenerate with `perfmodel report --paper` when this fails."""
    assert main(["report", "--paper", "--out", str(tmp_path)]) == 0
    for name in DETERMINISTIC:
        assert (tmp_path / name).read_text() == (PAPER / name).read_text(), \
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


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() == 0 and shutil.which("apt-get"):  # the test set-up installs it
        for cmd in (["apt-get", "install", "-y", "-q", "chromium"], ["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "chromium"]):
            subprocess.run(cmd, capture_output=True, timeout=900)
            if shutil.which("chromium"):
                break
        return shutil.which("chromium")
    return None


def test_report_opens_in_a_headless_browser(partial_report):
    browser = _chromium()
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
