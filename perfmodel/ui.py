"""Terminal helpers: user errors (exit code 2), a progress line and plain tables."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from typing import Sequence, TextIO


class UserError(Exception):
    """A mistake in what the user asked for: one clear line, exit code 2, no traceback."""


class ProgressBar:
    """A one-line progress bar on stderr (only when stderr is a terminal, or when forced)."""

    def __init__(self, total: int, label: str = "", enabled: bool | None = None) -> None:
        self.total, self.done, self.label = max(total, 1), 0, label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.t0 = time.perf_counter()

    def __call__(self, message: str = "") -> None:
        self.done = min(self.done + 1, self.total)
        if not self.enabled:
            return
        frac = self.done / self.total
        bar = "#" * int(frac * 30)
        el = time.perf_counter() - self.t0
        sys.stderr.write(f"\r{self.label} [{bar:<30}] {self.done}/{self.total} "
                         f"{el:5.0f}s {message[:50]:<50}")
        if self.done == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def text_stream(as_json: bool) -> TextIO:
    """Where a command prints its human-readable summary: stdout, or stderr where stdout
    carries JSON (``--json``), so that ``perfmodel ... --json > out.json`` is valid JSON and
    the table still shows on the terminal."""
    return sys.stderr if as_json else sys.stdout


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Right-aligned plain-text table; floats keep what the caller formatted."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths))
    out = [line, "-" * len(line)]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(out)


def default_output(kind: str, net: str) -> str:
    """results/KIND-NET-YYYYmmddTHHMMSS.csv: where a command writes when not told."""
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    return os.path.join("results", f"{kind}-{net}-{stamp}.csv")


def positive_int(field: str):
    """An argparse type: an integer >= 1, its error naming ``field``."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{field}={text!r} is not an integer") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"{field}={v} is out of range (allowed >= 1)")
        return v
    return parse
