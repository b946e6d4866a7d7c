"""What the time-to-train cases (``perfmodel/judge/ttt/``) take from MLPerf Training result
logs: per run, the global batch, the optimizer, the status, the epochs to the target (the
first evaluation at or above it: its ``epoch_num`` + 1), the time from ``run_start`` to
``run_stop`` (MLPerf's score) and the evaluation time within it.

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


def parse(text: str, target: float = RESNET_TARGET) -> dict[str, Any]:
    """One result log's run: gbs, opt, status, epochs, ttt_s, eval_s (None where absent)."""
    r: dict[str, Any] = dict(gbs=None, opt=None, status=None, epochs=None, ttt_s=None,
                             eval_s=0.0)
    start = stop = eval_start = None
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
        elif (k == "eval_accuracy" and r["epochs"] is None and d.get("value") is not None
              and d["value"] >= target):
            r["epochs"] = meta.get("epoch_num", -1) + 1
    if start is not None and stop is not None:
        r["ttt_s"] = (stop - start) / 1e3
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
                eval_s=statistics.median(r["eval_s"] for r in ok))


def main(argv: list[str] | None = None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    runs = []
    for p in paths:
        r = parse(Path(p).read_text())
        runs.append(r)
        print(p, r)
    print(json.dumps(summarize(runs)))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
