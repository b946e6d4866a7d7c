"""Published time to train against the model: epochs from the convergence model, time from
the throughput model, for runs whose logs publish both.

Each case is a TOML file under ``perfmodel/judge/ttt/`` with one ``[case]`` table:

* ``source``, ``where`` and ``quote``: the published run (MLPerf Training result logs of
  rounds v2.1 and later; rounds v0.7 to v2.0 are held out and not used);
* ``scenario``: the name of a case of the throughput set (``perfmodel/judge/published/``)
  whose cluster, workers and batch are this run's; ``global_batch`` must equal its workers x
  batch per worker;
* ``optimizer``: the optimizer family the run logs (``opt_name``), which picks the published
  epochs-against-batch curve (:mod:`perfmodel.model.zoo_convergence`);
* ``epochs``, ``time_to_train_s`` and ``eval_s``: the logged epochs to the target (the first
  successful evaluation), the logged time from run start to run stop (MLPerf's score) and the
  logged evaluation time within it, each the median over the successful runs (``runs``).

The prediction of a case: epochs = the curve's E(global batch); time = epochs x the data set's
samples / the throughput model's sustained samples/s for the scenario + the logged
evaluation time (the model does not predict evaluation). The set's figures: the median
|error| of the epochs and of the time to train, and Kendall tau of the time to train across
the runs. The curve was fitted on MLCommons' reference runs, not on these submissions; the
throughput inputs are each case's own (its one-node rate from the submitter's one-node run).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..model import scenario as SC
from ..model import zoo_convergence as ZC
from ..model.throughput import evaluate
from ..stats import kendall_tau, median_abs
from ..ui import UserError
from . import published as P

CASE_KEYS = {"title", "source", "where", "quote", "scenario", "global_batch", "optimizer",
             "epochs", "time_to_train_s", "eval_s", "runs"}
IMAGENET_TRAIN_SAMPLES = 1_281_167  # the logs' train_samples


@dataclass
class TTTCase:
    """One published time to train and the model's prediction of it."""

    name: str
    title: str
    source: str
    where: str
    quote: str
    scenario_case: str
    global_batch: int
    optimizer: str
    epochs: float
    time_to_train_s: float
    eval_s: float
    runs: int
    devices: int = 0
    predicted_epochs: float = float("nan")
    throughput_samples_per_s: float = float("nan")
    predicted_s: float = float("nan")

    @property
    def epochs_error(self) -> float:
        return self.predicted_epochs / self.epochs - 1.0

    @property
    def time_error(self) -> float:
        return self.predicted_s / self.time_to_train_s - 1.0


def case_dir() -> Path:
    return Path(str(resources.files("perfmodel.judge") / "ttt"))


def load_case(path: Path, throughput_dir: Path | None = None) -> tuple[TTTCase, dict]:
    """A case file and the scenario of its throughput case, checked."""
    source = str(path)
    try:
        meta: dict[str, Any] = tomllib.loads(Path(path).read_text()).get("case") or {}
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UserError(f"{source}: cannot read ({e})") from None
    unknown = set(meta) - CASE_KEYS
    missing = CASE_KEYS - {"title"} - set(meta)
    if unknown or missing:
        raise UserError(f"{source}: [case] " + (f"has unknown key(s) {sorted(unknown)}" if unknown
                        else f"needs {', '.join(sorted(missing))}"))
    for k in ("epochs", "time_to_train_s", "global_batch"):
        if not isinstance(meta[k], (int, float)) or isinstance(meta[k], bool) or meta[k] <= 0:
            raise UserError(f"{source}: case.{k}={meta[k]!r} is out of range (allowed > 0)")
    if meta["optimizer"] not in ZC.OPTIMIZERS:
        raise UserError(f"{source}: case.optimizer={meta['optimizer']!r} (allowed: "
                        f"{', '.join(ZC.OPTIMIZERS)})")
    tp = (throughput_dir or P.case_dir()) / f"{meta['scenario']}.toml"
    if not tp.is_file():
        raise UserError(f"{source}: case.scenario={meta['scenario']!r}: no throughput case "
                        f"{tp}")
    s = P.load_case(tp).scenario
    cfg = SC.configuration(s)
    if cfg["workers"] * cfg["batch"] != meta["global_batch"]:
        raise UserError(f"{source}: case.global_batch={meta['global_batch']} but its scenario "
                        f"runs {cfg['workers']} x {cfg['batch']}")
    case = TTTCase(name=path.stem, title=meta.get("title", path.stem), source=meta["source"],
                   where=meta["where"], quote=meta["quote"], scenario_case=meta["scenario"],
                   global_batch=int(meta["global_batch"]), optimizer=meta["optimizer"],
                   epochs=float(meta["epochs"]), time_to_train_s=float(meta["time_to_train_s"]),
                   eval_s=float(meta["eval_s"]), runs=int(meta["runs"]),
                   devices=int(cfg["workers"]))
    return case, s


def predict_case(case: TTTCase, s: dict) -> TTTCase:
    """Epochs from the published curve of the scenario's network and the case's optimizer,
    time from the throughput model at the scenario's nominal inputs."""
    curve = ZC.curve(s["workload"]["net"], case.optimizer)
    if curve is None:
        raise UserError(f"{case.name}: no epochs-against-batch curve for "
                        f"{s['workload']['net']!r} with {case.optimizer}")
    cfg = SC.configuration(s)
    thr = evaluate(SC.to_inputs(s), cfg["strategy"], cfg["workers"], cfg["groups"],
                   cfg["servers"], cfg["batch"])["throughput_samples_per_s"]
    case.predicted_epochs = float(curve.epochs(case.global_batch))
    case.throughput_samples_per_s = float(np.asarray(thr).ravel()[0])
    case.predicted_s = (case.predicted_epochs * IMAGENET_TRAIN_SAMPLES
                        / case.throughput_samples_per_s + case.eval_s)
    return case


def run(folder: Path | None = None, throughput_dir: Path | None = None,
        progress=None) -> list[TTTCase]:
    """Every time-to-train case, predicted; ``progress(label)`` after each."""
    paths = sorted((folder or case_dir()).glob("*.toml"))
    if not paths:
        raise UserError(f"no time-to-train cases (*.toml) under {folder or case_dir()}")
    out = []
    for p in paths:
        out.append(predict_case(*load_case(p, throughput_dir)))
        if progress:
            progress(p.stem)
    return out


def summary(cases: list[TTTCase]) -> dict[str, Any]:
    """The set's figures (the names of ``perfmodel published --ttt --json``)."""
    t_pred = np.array([c.predicted_s for c in cases])
    t_pub = np.array([c.time_to_train_s for c in cases])
    return dict(cases=len(cases), sources=len({c.source for c in cases}),
                epochs_median_abs_error=median_abs([c.epochs_error for c in cases]),
                time_median_abs_error=median_abs(t_pred / t_pub - 1),
                time_kendall_tau=kendall_tau(t_pred, t_pub))
