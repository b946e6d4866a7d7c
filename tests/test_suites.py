"""The asv suites import and are well formed (full runs are not part of the tests)."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("asv", path=os.path.dirname(sys.executable)) is None
                    and shutil.which("asv") is None, reason="asv is not installed")
def test_asv_check():
    asv = shutil.which("asv", path=os.path.dirname(sys.executable)) or shutil.which("asv")
    r = subprocess.run([asv, "check", "--python=same"], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "No problems found" in r.stdout


def _asv() -> str | None:
    return shutil.which("asv", path=os.path.dirname(sys.executable)) or shutil.which("asv")


class _Log(http.server.SimpleHTTPRequestHandler):
    requests: list[tuple[str, int]] = []

    def log_request(self, code="-", size="-"):
        self.requests.append((self.path, int(code) if str(code).isdigit() else 0))

    def log_message(self, *args):
        pass


@pytest.mark.skipif(_asv() is None, reason="asv is not installed")
def test_asv_dashboard_works_offline(tmp_path):
    """`make asv`'s steps on one fast benchmark: run, publish, make offline; then the index and
    the benchmark's graph page in headless Chromium with every outside address unresolvable:
    nothing fails to load, the graph's data is fetched and plotted, no page loads a CDN."""
    from .browser import chromium

    browser = chromium()
    if browser is None:
        pytest.skip(reason="Debian's chromium is not installed and could not be installed here")
    conf = json.loads((ROOT / "asv.conf.json").read_text())
    conf.update(repo=str(ROOT), benchmark_dir=str(ROOT / "suites"),
                results_dir=str(tmp_path / "results"), html_dir=str(tmp_path / "html"),
                env_dir=str(tmp_path / "env"))
    cfg = tmp_path / "asv.conf.json"
    cfg.write_text(json.dumps(conf))
    env = dict(os.environ, HOME=str(tmp_path))  # asv's machine file goes there
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    bench = "Predict.time_predict_one_scenario"
    for cmd in (["machine", "--yes", "--machine", "test-vm"],
                ["run", "--python=same", "--machine", "test-vm", "--set-commit-hash", head,
                 "--bench", bench, "--quick"],
                ["publish"]):
        r = subprocess.run([_asv(), *cmd, "--config", str(cfg)], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    r = subprocess.run([sys.executable, str(ROOT / "suites" / "offline_html.py"),
                        str(tmp_path / "html")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not any("https://cdn" in p.read_text() or "https://code.jquery" in p.read_text()
                   for p in (tmp_path / "html").rglob("*.html"))
    handler = functools.partial(_Log, directory=str(tmp_path / "html"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        doms = {}
        for page in ("", f"#bench_model.{bench}"):
            _Log.requests.clear()
            p = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                                "--enable-logging=stderr", "--v=1",
                                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                                f"--user-data-dir={tmp_path / '.chrome'}",
                                "--virtual-time-budget=8000", "--dump-dom", base + page],
                               capture_output=True, text=True, timeout=120)
            console = [ln for ln in p.stderr.splitlines() if "CONSOLE" in ln]
            assert not [ln for ln in console if "Failed" in ln or "rror" in ln], console
            # every page, script, style and font loads; only other benchmarks' graph data is
            # missing (this run measured one benchmark)
            failed = [(path, code) for path, code in _Log.requests if code >= 400
                      and not (path.startswith("/graphs/") and bench not in path)]
            assert not failed, failed
            doms[page] = (p.stdout, list(_Log.requests))
    finally:
        server.shutdown()
    index, _ = doms[""]
    assert "failed to load" not in index and "bench_model" in index
    graph, requests = doms[f"#bench_model.{bench}"]
    data = [path for path, code in requests if path.startswith("/graphs/") and code == 200]
    assert data, requests  # the graph's data file was fetched
    points = json.loads((tmp_path / "html" / data[0].lstrip("/").split("?")[0]).read_text())
    assert any(v is not None for _, v in points)
    assert "flot-base" in graph and "flot-tick-label" in graph  # flot drew the plot
