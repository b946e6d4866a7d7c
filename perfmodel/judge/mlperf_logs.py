"""What the time-to-train cases (``perfmodel/judge/ttt/``) take from MLPerf Training result
logs: per run, the global batch, the optimizer, the status, the epochs to the target (the
first evaluation at or above it: its ``epoch_num`` + 1), the time from ``run_start`` to
``run_stop`` (MLPerf's score) and the evaluation time within it; and what the throughput cases
(``perfmodel/judge/published/mlperf*``) take: the training rate in images/s, ImageNet's
1,281,167 training images over each epoch's duration (``epoch_start`` to ``epoch_stop``), the
median over the steady epochs (from the fourth on) and then over the runs.

Reproduce a case's DERIVED values from a clone of mlcommons/training_results_vX.Y::

    python -m perfmodel.judge.mlperf_logs NVIDIA/results/dgxh100_n64_ngc23.04_mxnet/resnet/result_*.txt
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

RESNET_TARGET = 0.759  # MLPerf Training's ResNet-50 quality target, top-1
IMAGENET_TRAIN = 1_281_167  # images in ImageNet-1k's training set: one epoch
WARM_EPOCHS = 3  # epochs left out of the rate: start-up, compilation, the first evaluations


def parse(text: str, target: float = RESNET_TARGET) -> dict[str, Any]:
    """One result log's run: gbs, opt, status, epochs, ttt_s, eval_s and samples_per_s (None
    where absent)."""
    r: dict[str, Any] = dict(gbs=None, opt=None, status=None, epochs=None, ttt_s=None,
                             eval_s=0.0, samples_per_s=None)
    start = stop = eval_start = None
    epoch_start: dict[Any, float] = {}
    epoch_s: list[float] = []
    for line in text.splitlines():
        i = line.find(":::MLLOG")
        if i < 0:
            continue
        try:
            d = json.loads(line[i + len(":::MLLOG"):])
        except json.JSONDecodeError:
            continue
        k, meta = d.get("key"), d.get("metadata", {})
        if k == "global_batch_size":
            r["gbs"] = d["value"]
        elif k == "opt_name":
            r["opt"] = d["value"]
        elif k == "run_start":
            start = d["time_ms"]
        elif k == "run_stop":
            stop, r["status"] = d["time_ms"], meta.get("status")
        elif k == "eval_start":
            eval_start = d["time_ms"]
        elif k == "eval_stop" and eval_start is not None:
            r["eval_s"] += (d["time_ms"] - eval_start) / 1e3
            eval_start = None
        elif k == "epoch_start":
            epoch_start[meta.get("epoch_num")] = d["time_ms"]
        elif k == "epoch_stop" and meta.get("epoch_num") in epoch_start:
            epoch_s.append((d["time_ms"] - epoch_start[meta.get("epoch_num")]) / 1e3)
        elif (k == "eval_accuracy" and r["epochs"] is None and d.get("value") is not None
              and d["value"] >= target):
            r["epochs"] = meta.get("epoch_num", -1) + 1
    if start is not None and stop is not None:
        r["ttt_s"] = (stop - start) / 1e3
    steady = [s for s in epoch_s[WARM_EPOCHS:] if s > 0]
    if steady:
        r["samples_per_s"] = statistics.median(IMAGENET_TRAIN / s for s in steady)
    return r


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The medians over the successful runs, as a case states them."""
    ok = [r for r in runs if r["status"] == "success" and r["epochs"]]
    if not ok:
        return dict(runs=0)
    return dict(runs=len(ok), gbs=sorted({r["gbs"] for r in ok}),
                opt=sorted({r["opt"] for r in ok}),
                epochs=statistics.median(r["epochs"] for r in ok),
                time_to_train_s=statistics.median(r["ttt_s"] for r in ok),
                eval_s=statistics.median(r["eval_s"] for r in ok),
                samples_per_s=statistics.median(r["samples_per_s"] for r in ok
                                                if r["samples_per_s"]) if any(
                    r["samples_per_s"] for r in ok) else None)


def main(argv: list[str] | None = None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    runs = []
    if not paths or any(p.startswith("-") for p in paths):
        print("usage: python -m perfmodel.judge.mlperf_logs RESULT_LOG... (MLPerf Training "
              "result_*.txt files)", file=sys.stderr)
        return 2
    for p in paths:
        try:
            r = parse(Path(p).read_text())
        except (OSError, UnicodeDecodeError) as e:
            print(f"mlperf_logs: {p}: cannot read ({e})", file=sys.stderr)
            return 2
        runs.append(r)
        print(p, r)
    print(json.dumps(summarize(runs)))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
