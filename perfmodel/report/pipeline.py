"""The default pipeline behind ``make report``: the node, the throughput model and the
convergence model, each measured and predicted on this machine, then the paper's figures beside
the model's and the report.

1. a quick node measurement (HEP at 64x64) for the node section;
2. convergence calibration (``perfmodel converge --quick --calibrate-only``);
3. ``ROUNDS`` rounds spread over time, each: a node profile of the local workload
   (:mod:`perfmodel.harness.workload`; one thread per rank), right after it the timed scaling sweep
   (sync and async with 1-2 workers x 1 thread, with and without injected stragglers; a timed
   hybrid needs 3 ranks on 2 cores), then that round's held-out convergence runs; one more
   profile closes the last round, so every run lies between two profiles. Each round draws
   its own data order and straggler delays. Each figure is then the median over the rounds,
   and the spread across rounds is reported;
4. once: functional runs of async and hybrid at 2 workers (more ranks than cores; shown
   apart, never scored);
5. ``perfmodel validate`` (throughput) and ``perfmodel converge --compare-only`` (time to
   target), then the report.

Every stage is a ``perfmodel`` command in its own process (:mod:`perfmodel.harness.stage`), so that no
thread pool, affinity or cache of one stage reaches the next one's measurement; their output
goes to ``results/pipeline.log`` beside the results."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..harness import convergence_runs as CR
from ..harness import stage
from ..harness import workload as W
from ..results import is_results_file
from ..ui import ProgressBar
from .build import build

ROUNDS = 2
#: the scaling sweep: batch 32 per worker, 1 thread per rank (a step of ~60 ms here, so that
#: per-step fixed costs do not dominate; the same threads per rank in every run, so speedup and
#: efficiency compare like with like)
SWEEP = [*W.NET_ARGS, "--batch", "32", "--threads", "1", "--steps", "30", "--warmup", "3"]
#: injected per-step delays of the straggler sweeps: random (sync waits for the slower of its
#: workers) and constant (it does not)
STRAGGLERS = ("exponential:0.02", "constant:0.03")


def stages(res: Path, full: bool = False, rounds: int = ROUNDS) -> list[tuple[str, list[str]]]:
    """The pipeline's stages: (label, perfmodel arguments), in order."""
    quiet = ["--no-progress"]
    conv = res / "convergence"
    data = ["--data", str(conv / "data")]
    scale = ["scale", *SWEEP, *data, "-o", str(res / "scale.csv"), *quiet]
    out = [("node (quick)", ["node", *([] if full else ["--quick"]), "-o",
                             str(res / "node.csv"), *quiet]),
           ("convergence calibration", ["converge", "--quick", "--calibrate-only", "--out",
                                        str(conv), *quiet])]
    for k in range(1, rounds + 1):
        tag = f" (round {k} of {rounds})"
        timed = [*scale, "--strategies", "sync,async", "--workers", "1,2", "--timed-only",
                 "--seed", str(k)]  # each round its own draws of data order and stragglers
        out.append(CR.profile_stage(conv, f"node-t1-p{k}.csv", tag))
        out.append(CR.busy_profile_stage(conv, f"node-t1-b2-p{k}.csv", tag))
        out.append((f"scaling sweep{tag}", [*timed, *(["--micro"] if k == 1 else [])]))
        for strag in STRAGGLERS:
            out.append((f"straggler sweep {strag}{tag}", [*timed, "--straggler", strag]))
        out.append((f"held-out convergence runs{tag}",
                    ["converge", "--quick", "--round", str(k), "--rounds", str(rounds),
                     "--no-profile", "--out", str(conv), *quiet]))
    # and one more profile after the last runs: every run then lies between two profiles
    out.append(CR.profile_stage(conv, f"node-t1-p{rounds + 1}.csv", " (closing)"))
    out.append(CR.busy_profile_stage(conv, f"node-t1-b2-p{rounds + 1}.csv", " (closing)"))
    out.append(("functional runs", [*scale, "--strategies", "async,hybrid", "--workers", "2",
                                    "--groups", "1,2", "--steps", "20"]))
    return out


def default_pipeline(out: Path, progress: bool = True, full: bool = False) -> Path:
    res = out / "results"  # the measurements; the report's own tables sit beside it
    res.mkdir(parents=True, exist_ok=True)
    for f in list(res.glob("*.csv")) + list(out.glob("*.csv")) + list(out.glob("*.png")):
        f.unlink()  # a fresh run: old results would mix with new ones
    log = res / "pipeline.log"
    log.write_text("")
    conv = res / "convergence"
    steps = stages(res, full)
    bar = ProgressBar(len(steps) + 2, "report", enabled=None if progress else False)
    for label, argv in steps:
        t0 = time.perf_counter()
        rc = stage.run(argv, log)
        with open(log, "a") as f:
            f.write(f"[{label}: {time.perf_counter() - t0:.1f} s, exit {rc}]\n")
        if rc:
            print(f"perfmodel report: step '{label}' failed (exit {rc}); building the report "
                  f"from what was measured (see {log})", file=sys.stderr)
        bar(label)
    profiles = [str(p) for p in sorted(conv.glob("node-t*.csv"))]
    if profiles and (res / "scale.csv").exists():
        stage.run(["validate", "--node", *profiles, "--scale", str(res / "scale.csv"), "-o",
                   str(res / "errors.csv")], log)
    if (conv / "heldout.csv").exists():
        stage.run(["converge", "--compare-only", "--out", str(conv)], log)
    bar("validate")
    results = [str(p) for p in sorted(res.glob("*.csv")) if is_results_file(p)]
    path = build(out, results, convergence=conv if (conv / "heldout.csv").exists() else None,
                 profiles=profiles)
    bar("report")
    return path
