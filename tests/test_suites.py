"""The asv suites import and are well formed (full runs are not part of the tests)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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
