"""Headless Chromium for the tests that open a page as a reader would."""

from __future__ import annotations

import os
import shutil
import subprocess


def chromium() -> str | None:
    """The path of Debian's chromium, installing it when the tests run as root."""
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
