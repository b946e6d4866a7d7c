"""The default pipeline behind ``make report``: measure the node (quick), the node profiles
and a small local scaling sweep for validation, validate the model, run the quick convergence
sweep (time to a target loss, measured and predicted), add the paper's figures beside the
model's, and build the report.

Every stage is a ``perfmodel`` command in its own process (:mod:`perfmodel.stage`), so that no
thread pool, affinity or cache of one stage reaches the next one's measurement; their output
goes to ``results/pipeline.log`` beside the results."""

from __future__ import annotations

import sys
from pathlib import Path

from .. import stage
from ..ui import ProgressBar
from .build import build

SCALE_NET = ["--filters", "16", "--image-size", "32"]


def default_pipeline(out: Path, progress: bool = True, full: bool = False) -> Path:
    res = out / "results"  # the measurements; the report's own tables sit beside it
    res.mkdir(parents=True, exist_ok=True)
    for f in list(res.glob("*.csv")) + list(out.glob("*.csv")) + list(out.glob("*.png")):
        f.unlink()  # a fresh run: old results would mix with new ones
    log = res / "pipeline.log"
    log.write_text("")
    quiet = ["--no-progress"]
    conv = res / "convergence"
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
        ("convergence (quick)", ["converge", "--quick", "--out", str(conv), *quiet]),
    ]
    bar = ProgressBar(len(steps) + 2, "report", enabled=None if progress else False)
    for label, argv in steps:
        rc = stage.run(argv, log)
        if rc:
            print(f"perfmodel report: step '{label}' failed (exit {rc}); building the report "
                  f"from what was measured (see {log})", file=sys.stderr)
        bar(label)
    nodes = [str(p) for p in sorted(res.glob("node-f16-*.csv"))]
    if nodes and (res / "scale.csv").exists():
        stage.run(["validate", "--node", *nodes, "--scale", str(res / "scale.csv"), "-o",
                   str(res / "errors.csv")], log)
    bar("validate")
    results = [str(p) for p in sorted(res.glob("*.csv")) if _is_results(p)]
    path = build(out, results, convergence=conv if (conv / "heldout.csv").exists() else None)
    bar("report")
    return path


def _is_results(p: Path) -> bool:
    from ..results import NAMES

    try:
        with open(p) as f:
            return f.readline().strip().split(",") == NAMES
    except OSError:
        return False
