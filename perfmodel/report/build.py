"""Build a self-contained report folder from results files (the one tidy schema) and the
model: ``index.html`` (no network needed: images are local PNGs, no scripts but one inline
check), figures drawn with seaborn, tables as CSV, and ``summary.md``.

Every section says what it needs; a section whose data is missing is listed as missing
instead of failing the report.
"""


from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..model import scenario as SC
from ..results import read_results
from .common import Section, load, write_csv
from .html import summary_frame, write_html, write_summary
from .sections.convergence import convergence_sections
from .sections.effects import scale_effects_section
from .sections.harness import harness_sections
from .sections.node import node_sections, profile_sections
from .sections.paper import paper_sections
from .sections.plan import plan_section
from .sections.published import published_section, time_to_train_section
from .sections.scaling import scaling_section
from .sections.timeline import timeline_section


def measured_line(df: pd.DataFrame, profiles, convergence) -> str:
    """What the report's measurements are, counted from the results."""
    runs = df[(df.what == "run") & (df.metric == "sample_rate") & (df.stat == "sustained")]
    nodes = df[df.what == "peak"].run_id.nunique()
    parts = [f"{nodes} node measurement(s)"]
    if profiles:
        parts.append(f"{len(profiles)} node profiles")
    parts.append(f"{int((~runs.functional).sum())} timed and {int(runs.functional.sum())} "
                 "functional harness runs")
    if convergence is not None:
        conv = Path(convergence)
        n = sum(read_results(conv / f).query("what == 'target'").run_id.nunique()
                for f in ("calibration.csv", "heldout.csv") if (conv / f).exists())
        parts.append(f"{n} runs to a target loss")
    return "Measured: " + ", ".join(parts) + "."


def machine_line(df: pd.DataFrame) -> str:
    """Where and when the measurements were made, from the results' provenance columns."""
    if df.empty:
        return ""
    r = df.sort_values("time_utc").iloc[-1]
    times = df.time_utc[df.time_utc.astype(str) != ""]
    when = (f"{times.min()} to {times.max()}" if len(times) else "time not recorded")
    vers = dict(kv.split("=", 1) for kv in str(r.versions).split(";") if "=" in kv)
    keep = ", ".join(f"{k} {vers[k]}" for k in ("python", "numpy", "numba", "mpi4py", "blas")
                     if k in vers)
    if "blas_kernels" in vers:
        keep += f" ({vers['blas_kernels']} kernels)"
    if "numba_cpu" in vers:
        keep += f", Numba target {vers['numba_cpu']}"
    mpi = next((m for m in df.mpi_library.astype(str) if m and m != "nan"), "not used")
    return (f"Measured on {r.host}: {r.cpu_model}, {int(r.cores)} cores; {keep}; "
            f"MPI {mpi}; commit {str(r.git_commit)[:12]}; {when} "
            "(UTC).")


def build(out: str | Path, results: list[str | Path], paper: bool = True,
          title: str = "perfmodel report", plan: bool = True,
          convergence: str | Path | None = None, intro: str | None = None,
          profiles: list[str | Path] | None = None) -> Path:
    """The report folder ``out`` from ``results`` files (and the model's paper figures);
    ``convergence``: a ``perfmodel converge`` folder for the time-to-target section;
    ``profiles``: the node profiles the throughput model was given."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    df = load(results)
    sections: list[Section] = []
    if df.empty:
        sections.append(Section("Measurements", missing="no results files given"))
    else:
        sections += node_sections(df, out)
        if profiles:
            sections += profile_sections(load(profiles), df, out)
        sections += harness_sections(df, out)
    sections += convergence_sections(out, None if convergence is None else Path(convergence))
    if paper:
        sections += paper_sections(out)
        sections.append(timeline_section(out))
        sections.append(scale_effects_section(out))
        sections.append(published_section(out))
        sections.append(time_to_train_section(out))
    if plan:
        sections.append(plan_section(out))
    claims = [c for sec in sections for c in sec.claims]
    if claims:
        write_csv(summary_frame(claims), out, "summary.csv", digits=3)
    machine = machine_line(df)
    if not df.empty:
        machine = f"{measured_line(df, profiles, convergence)} {machine}"
    write_summary(out, title, sections, machine)
    return write_html(out, title, sections, machine=machine, intro=intro if intro is not None
                      else "Measured next to predicted on this machine. Every figure comes "
                           "from the results files under results/ (one tidy schema); the "
                           "README gives the commands.")


def build_scenario(out: str | Path, scenario: str, sets: list[str] | None = None,
                   epochs: float = 1.0, deadline_s: float | None = None) -> Path:
    """A report of a user's scenario, predictions only (no measurement): its strong and weak
    scaling with intervals, its step as a timeline, the plan of a run and the effects at
    scale switched one at a time. Figures are files beside index.html: the folder is the
    unit to move."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    s, source = SC.load(scenario, sets)
    cfg = SC.configuration(s)
    sections = [scaling_section(out, s, source),
                timeline_section(out, scenario, case=list(sets or [])),
                plan_section(out, scenario, epochs=epochs,
                             deadline_s=deadline_s if deadline_s else float("inf")),
                scale_effects_section(out, scenario, base=list(sets or []),
                                      batch=int(cfg["batch"]))]
    title = f"perfmodel: {source}"
    write_summary(out, title, sections)
    return write_html(out, title, sections, intro=(
        f"Predictions of {source} ({cfg['strategy']}, {cfg['workers']} workers at "
        f"{cfg['batch']} samples each): nothing here was measured. Every number comes from "
        "the scenario's inputs and their sources; intervals span every corner of its "
        "uncertain inputs."))
