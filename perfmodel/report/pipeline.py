"""The default pipeline behind ``make report``: measure the node (quick), the node profiles
and a small local scaling sweep for validation, validate the model, add the paper's figures
beside the model's, and build the report. A few minutes on a 2-core machine."""

from __future__ import annotations

import sys
from pathlib import Path

from ..ui import ProgressBar
from .build import build

SCALE_NET = ["--filters", "16", "--image-size", "32"]


def default_pipeline(out: Path, progress: bool = True, full: bool = False) -> Path:
    from ..cli import main

    res = out / "results"  # the measurements; the report's own tables sit beside it
    res.mkdir(parents=True, exist_ok=True)
    for f in list(res.glob("*.csv")) + list(out.glob("*.csv")) + list(out.glob("*.png")):
        f.unlink()  # a fresh run: old results would mix with new ones
    quiet = ["--no-progress"]
    steps = [
        ("node (quick)", ["node", *([] if full else ["--quick"]), "-o", str(res / "node.csv"),
                          *quiet]),
        ("node profile, 1 thread", ["node", "--net", "hep", *SCALE_NET, "--threads", "1",
                                    "--sweep", "2,4,8", "--repeats", "10",
                                    "-o", str(res / "node-f16-t1.csv"), *quiet]),
        ("node profile, 2 threads", ["node", "--net", "hep", *SCALE_NET, "--threads", "2",
                                     "--sweep", "2,4,8", "--repeats", "10",
                                     "-o", str(res / "node-f16-t2.csv"), *quiet]),
        ("scaling sweep", ["scale", "--micro", "--strategies", "sync,async,hybrid",
                           "--workers", "1,2", "--groups", "1,2", *SCALE_NET, "--batch", "8",
                           "--steps", "30", "-o", str(res / "scale.csv"), *quiet]),
        ("straggler sweep", ["scale", "--strategies", "sync,async,hybrid", "--workers", "1,2",
                             "--groups", "1,2", *SCALE_NET, "--batch", "8", "--steps", "30",
                             "--straggler", "exponential:0.02", "-o", str(res / "scale.csv"),
                             *quiet]),
    ]
    bar = ProgressBar(len(steps) + 2, "report", enabled=None if progress else False)
    for label, argv in steps:
        rc = main(argv)
        if rc:
            print(f"perfmodel report: step '{label}' failed (exit {rc}); building the report "
                  "from what was measured", file=sys.stderr)
        bar(label)
    nodes = [str(p) for p in sorted(res.glob("node-f16-*.csv"))]
    if nodes and (res / "scale.csv").exists():
        main(["validate", "--node", *nodes, "--scale", str(res / "scale.csv"), "-o",
              str(res / "errors.csv")])
    bar("validate")
    results = [str(p) for p in sorted(res.glob("*.csv")) if _is_results(p)]
    path = build(out, results)
    bar("report")
    return path


def _is_results(p: Path) -> bool:
    from ..results import NAMES

    try:
        with open(p) as f:
            return f.readline().strip().split(",") == NAMES
    except OSError:
        return False
