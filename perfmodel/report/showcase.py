"""The committed showcase, ``reports/paper/``: the paper's figures beside the model's, plus this
machine's measured-vs-predicted sections from one recorded ``make report`` run.

``perfmodel report --paper --record reports/latest`` copies that run's results (less the
per-iteration traces, which no section reads) into ``reports/paper/results/`` and rebuilds;
``perfmodel report --paper`` rebuilds from the recorded results already there. The recorded
run's provenance (machine, versions, commit, time) is stated on top of the report.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..results import ResultsError, ResultsWriter, is_results_file, read_results
from ..ui import UserError
from .build import build

#: rows no section of the report reads: per-iteration traces of the harness
DROP = {"iteration", "loss"}
TITLE = "Deep Learning at 15PF: the paper's figures beside the model's, and this machine's"


def record(src: Path, dst: Path) -> list[Path]:
    """Copy the results files of a finished report folder ``src`` (its ``results/``, the
    convergence runs included) into ``dst``, without per-iteration traces; the old ones go."""
    res = src / "results" if (src / "results").is_dir() else src
    files = [p for p in sorted(res.rglob("*.csv")) if is_results_file(p)]
    if not files:
        raise UserError(f"--record={src}: no results files under {res} (run make report "
                        "first)")
    if dst.exists():
        shutil.rmtree(dst)
    out = []
    for p in files:
        try:
            df = read_results(p)
        except ResultsError as e:
            raise UserError(f"--record: {e}") from None
        target = dst / p.relative_to(res)
        ResultsWriter(target).add(df[~df.what.isin(DROP)].to_dict("records"))
        out.append(target)
    return out


def showcase(out: Path, recorded: Path | None = None) -> Path:
    """Build ``out`` (reports/paper): the paper's figures, and the sections of the run
    recorded under ``out/results`` (copied there from ``recorded`` first, when given)."""
    res = out / "results"
    if recorded is not None:
        record(Path(recorded), res)
    files = [str(p) for p in sorted(res.glob("*.csv")) if is_results_file(p)] if res.is_dir() \
        else []
    conv = res / "convergence"
    intro = ("The paper's published figures beside the model's (deterministic), then the "
             "measured-vs-predicted sections of one recorded run of `make report` on the "
             "machine named below: its results files are under results/ (per-iteration "
             "traces left out); `perfmodel report --paper --record reports/latest` records a "
             "new one." if files else
             "The paper's published figures beside the model's. No recorded run: `make "
             "report`, then `perfmodel report --paper --record reports/latest`.")
    return build(out, files, paper=True, plan=bool(files), title=TITLE, intro=intro,
                 convergence=conv if (conv / "heldout.csv").exists() else None,
                 profiles=sorted(conv.glob("node-t*.csv")))
