"""Record a failed launch in a results file: ``python -m perfmodel.harness.failure --output
OUT --exit-code N --log ERRFILE --command CMD`` appends one ``what=failure`` row whose ``note``
holds the reason (the last lines of the launch's error output) and whose ``job`` names the
batch job. The sbatch scripts' ``run`` wrapper calls it (:mod:`perfmodel.harness.slurm`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..provenance import run_base
from ..results import ResultsWriter, make_row


def reason(log: str, lines: int = 6, limit: int = 600) -> str:
    """The last non-empty lines of an error output, joined: what a reader needs first."""
    text = [ln.strip() for ln in log.splitlines() if ln.strip()]
    out = " | ".join(text[-lines:])
    return out[-limit:] if out else "no error output"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="perfmodel.harness.failure", description=__doc__)
    p.add_argument("--output", required=True, help="results file to append the row to")
    p.add_argument("--exit-code", type=int, required=True)
    p.add_argument("--log", default=None, help="the launch's error output")
    p.add_argument("--command", default="", help="the command that failed")
    a = p.parse_args(argv)
    log = Path(a.log).read_text(errors="replace") if a.log and Path(a.log).exists() else ""
    row = make_row(run_base(1), what="failure", subject="launch", metric="exit_code",
                   value=float(a.exit_code), unit="1", stat="single",
                   note=f"{reason(log)} (command: {a.command})"[:1000])
    ResultsWriter(a.output, append=True).add([row])
    print(f"failure recorded in {a.output}: exit code {a.exit_code}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
