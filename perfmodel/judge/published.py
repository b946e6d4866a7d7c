"""Published scaling runs of other systems against the model: the development set.

Each case is a TOML file under ``perfmodel/judge/published/``: a scenario (``[cluster]``,
``[workload]``, ``[training]``, ``[io]``), every input with its source in a comment or marked
ESTIMATED or DERIVED with the reason, as the presets are, and a ``[case]`` table with the
published outcome:

* ``source``, ``where`` and ``quote``: who published it, where, and their words;
* ``efficiency``: the published (or DERIVED, ``efficiency_how``) scaling efficiency, the
  throughput of the run over ``devices / baseline_devices`` times the baseline's;
* ``measure``: ``sustained`` (default: the mean rate over a run) or ``peak`` (the best
  iterations', as Kurth et al. report their speedups);
* ``baseline_devices`` (default 1) and ``baseline_batch_per_worker`` (default the run's):
  what the efficiency is against: one device, or one node of ``baseline_devices`` (a
  baseline within one node trains with a local allreduce, as a single machine does).

The model predicts both runs from the same inputs at every corner of the uncertain ones; the
case's prediction is the nominal efficiency and its interval. The set's figures
(:func:`summary`): median |error|, Kendall tau between predicted and published efficiency,
the lost efficiency the model explains (sum of 1 - e, predicted over published), and how
many of the runs that published e <= 0.85 it predicts within 15%.

This is a development set: it shows which mechanisms the model lacks. A mechanism comes with
its own cited source and applies to every case alike; no case has a knob of its own.

Measured inputs come from the case's own source where it publishes them, by one rule for all:
the device rate from its one-device run, and ``busy_rate_fraction`` (a device's rate with all
of its node's devices training) from its one-node run over devices_per_node times that, when
the case spans several nodes (a one-node case's node rate is its outcome, so it takes the
cited default instead). The efficiency is against the source's own baseline, on the same
hardware as the run.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..model import scenario as SC
from ..model.throughput import evaluate
from ..stats import kendall_tau, median_abs
from ..ui import UserError

LOW_EFFICIENCY = 0.85   # the runs that lose: published e at or below this
WITHIN = 0.15           # "within": |predicted / published - 1| at most this
CASE_KEYS = {"source", "where", "quote", "url", "efficiency", "efficiency_how",
             "baseline_devices", "baseline_batch_per_worker", "title", "measure"}
MEASURES = {"sustained": "throughput_samples_per_s", "peak": "peak_throughput_flops"}


@dataclass
class Case:
    """One published run: its scenario, its outcome and the model's prediction of it."""

    name: str
    title: str
    source: str
    where: str
    quote: str
    published: float
    baseline_devices: int
    baseline_batch: int | None
    scenario: dict
    measure: str = "sustained"
    how: str = ""           # how the published efficiency was read (efficiency_how)
    devices: int = 0
    predicted: float = float("nan")
    low: float = float("nan")
    high: float = float("nan")

    @property
    def error(self) -> float:
        return self.predicted / self.published - 1.0

    @property
    def kind(self) -> str:
        """CPU or GPU, from the cluster's name (the cases name their processors)."""
        name = str(self.scenario["cluster"]["name"])
        return "CPU" if any(k in name for k in ("Xeon", "EPYC", "CPU")) else "GPU"

    @property
    def low_efficiency(self) -> bool:
        return self.published <= LOW_EFFICIENCY


def case_dir() -> Path:
    return Path(str(resources.files("perfmodel.judge") / "published"))


def case_paths(folder: Path | None = None) -> list[Path]:
    return sorted((folder or case_dir()).glob("*.toml"))


def load_case(path: Path) -> Case:
    """A case file: its ``[case]`` table checked, its scenario validated."""
    source = str(path)
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UserError(f"{source}: cannot read ({e})") from None
    meta: dict[str, Any] = raw.pop("case", None) or {}
    unknown = set(meta) - CASE_KEYS
    if unknown:
        raise UserError(f"{source}: unknown key(s) in [case]: {', '.join(sorted(unknown))} "
                        f"(allowed: {', '.join(sorted(CASE_KEYS))})")
    for k in ("source", "quote", "efficiency"):
        if k not in meta:
            raise UserError(f"{source}: [case] needs {k}")
    e = meta["efficiency"]
    if isinstance(e, bool) or not isinstance(e, (int, float)) or not 0 < e <= 1.05:
        raise UserError(f"{source}: case.efficiency={e!r} is out of range (allowed 0 < e <= "
                        "1.05: a published scaling efficiency)")
    measure = meta.get("measure", "sustained")
    if measure not in MEASURES:
        raise UserError(f"{source}: case.measure={measure!r} is not allowed (allowed: "
                        f"{', '.join(MEASURES)})")
    s = SC.validate(raw, source)
    base = int(meta.get("baseline_devices", 1))
    cfg = SC.configuration(s)
    if not 1 <= base < cfg["workers"] or cfg["workers"] % base:
        raise UserError(f"{source}: case.baseline_devices={base} must divide the run's "
                        f"{cfg['workers']} workers and be fewer")
    return Case(name=path.stem, title=meta.get("title", path.stem), source=meta["source"],
                where=meta.get("where", ""), quote=meta["quote"], published=float(e),
                how=meta.get("efficiency_how", ""),
                baseline_devices=base, baseline_batch=meta.get("baseline_batch_per_worker"),
                scenario=s, devices=int(cfg["workers"]), measure=measure)


def _baseline(s: dict, case: Case) -> dict[str, Any]:
    """The configuration the published efficiency is against: ``baseline_devices`` workers at
    the baseline's batch; within one node a local synchronous allreduce (what one machine
    runs), else the run's strategy."""
    cfg = SC.configuration(s)
    local = case.baseline_devices <= s["cluster"]["devices_per_node"]
    return dict(strategy="sync" if local else cfg["strategy"], workers=case.baseline_devices,
                groups=1, servers=0 if local else cfg["servers"],
                batch=case.baseline_batch or cfg["batch"])


def predict_case(case: Case) -> Case:
    """The model's efficiency of the case (nominal) and its interval over every corner of the
    scenario's uncertain inputs (the run and its baseline at the same corner)."""
    s = case.scenario
    run, base = SC.configuration(s), _baseline(s, case)
    cfg = {k: [run[k], base[k]] for k in ("strategy", "workers", "groups", "servers", "batch")}
    effs = []
    for values in SC.corners(s):  # the run and its baseline in one evaluation
        thr = evaluate(SC.to_inputs(s, values), cfg["strategy"], cfg["workers"], cfg["groups"],
                       cfg["servers"], cfg["batch"])[MEASURES[case.measure]]
        effs.append(float(thr[0] / (run["workers"] / base["workers"] * thr[1])))
    case.predicted, case.low, case.high = effs[0], min(effs), max(effs)
    return case


def case_path(name: str, folder: Path | None = None) -> Path:
    """The file of the case called ``name`` (its file name without .toml), or a UserError
    that names the cases it could have meant."""
    paths = {p.stem: p for p in case_paths(folder)}
    if name in paths:
        return paths[name]
    near = [n for n in paths if name in n] or sorted(paths)
    raise UserError(f"--case {name!r}: no such case under {folder or case_dir()} (allowed: "
                    f"{', '.join(near[:12])}{', ...' if len(near) > 12 else ''})")


def run(folder: Path | None = None, progress=None) -> list[Case]:
    """Every case of the set, predicted; ``progress(label)`` is called after each case."""
    paths = case_paths(folder)
    if not paths:
        raise UserError(f"no published cases (*.toml) under {folder or case_dir()}")
    out = []
    for p in paths:
        out.append(predict_case(load_case(p)))
        if progress:
            progress(p.stem)
    return out


def summary(cases: list[Case]) -> dict[str, Any]:
    """The set's figures (the names of ``perfmodel published --json``)."""
    pub = np.array([c.published for c in cases])
    pred = np.array([c.predicted for c in cases])
    low = [c for c in cases if c.low_efficiency]
    lost = float(np.sum(1 - pub))
    return dict(
        cases=len(cases), sources=len({c.source for c in cases}),
        median_abs_error=median_abs(pred / pub - 1),
        kendall_tau=kendall_tau(pred, pub),
        loss_ratio=float(np.sum(1 - pred)) / lost if lost > 0 else float("nan"),
        low_efficiency_within=sum(abs(c.error) <= WITHIN for c in low),
        low_efficiency_cases=len(low))
