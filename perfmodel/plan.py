"""``perfmodel plan``: how to run on a cluster, and what it costs.

Searches strategies (sync; hybrid with G groups; async), worker counts, parameter-server
counts and batch per worker, all at once (vectorized: 10^6 configurations in about a second),
for the time to solution and the node-hours it takes:

* target ``epochs``: time = epochs x dataset_samples x the epoch factor / sustained
  throughput. The epochs are what training needs at a batch well below the noise scale; with
  ``[convergence] b_noise`` known, an update batch B costs E(B) / E_min = (1 + B / B_noise) times
  as many (McCandlish et al. 2018), times the staleness and momentum cost of G asynchronous
  groups (:mod:`perfmodel.model.convergence`). Without ``b_noise`` no factor is charged, and
  the planner says so;
* target ``loss`` (the scenario's ``[convergence]``): the model's time to target.

node-hours = nodes x time, nodes = ceil((workers + servers) / devices_per_node). Constraints:
``--max-nodes``, ``--deadline`` and ``--budget-node-hours``. The recommendation is the
configuration with the fewest node-hours that meets the deadline when one is given, else the
fastest one within the other constraints. The Pareto front (time vs node-hours) is reported,
and for each other strategy why its best configuration loses: the largest non-compute share of
its step (communication, parameter servers, straggler wait) and its time and cost.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .harness import slurm
from .model import scenario as SC
from .model import zoo_convergence as ZC
from .model.convergence import Convergence, retuned_momentum
from .model.predict import predict
from .model.throughput import STRATEGIES, evaluate
from .ui import UserError

BATCHES = (1, 2, 4, 8, 16, 32, 64, 128)


def parse_duration(text: str) -> float:
    """Seconds from '90', '90s', '45m', '2h', '1.5d'."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smhd]?)\s*", str(text))
    if not m:
        raise UserError(f"--deadline={text!r}: expected a duration like 3600, 45m, 2h or 1d")
    v = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    if v <= 0:
        raise UserError(f"--deadline={text!r} must be positive")
    return v


@dataclass
class Target:
    epochs: float | None = None
    loss: bool = False


def default_target(s: dict) -> Target:
    """The target when the user names none: one pass over the scenario's data set
    (workload.dataset_samples), else its [convergence] target loss (with s_min), else an
    error saying what to give."""
    if s["workload"]["dataset_samples"]:
        return Target(epochs=1.0)
    conv = s["convergence"]
    if conv["target_loss"] is not None and conv["s_min"].nominal > 0:
        return Target(loss=True)
    raise UserError("no target given and none to default to: give --epochs N (needs "
                    "workload.dataset_samples) or --target-loss (needs [convergence] "
                    "target_loss and s_min)")


def describe(target: Target, s: dict) -> str:
    """The target in words, with the numbers it stands for."""
    if target.loss:
        return f"the scenario's target loss {s['convergence']['target_loss'].nominal:g}"
    n = s["workload"]["dataset_samples"]
    return f"{target.epochs:g} epoch(s) of {n:,} samples"


def _blocks(max_workers: int, max_groups: int = 64, max_servers: int = 64):
    # sync may use every device; async and hybrid leave at least one for a server
    """The search grid as blocks (strategy code, workers array, groups, servers): every worker
    count for sync; for async every server count; for hybrid the group counts that divide the
    workers, with every server count. Each block is crossed with the batches."""
    yield 0, np.arange(1, max_workers + 1), 1, 0
    w_all = np.arange(1, max(max_workers, 2))
    servers = np.unique(np.round(np.geomspace(1, max_servers, 12)).astype(int))
    for s in servers:
        yield 1, w_all, None, int(s)  # async: as many groups as workers
        for g in range(2, max_groups + 1):
            yield 2, w_all[w_all % g == 0], g, int(s)


def candidates(max_workers: int, devices_per_node: int, max_groups: int = 64,
               max_servers: int = 64, batches=BATCHES, chunk: int | None = None):
    """The search grid as dict(strategy, workers, groups, servers, batch) of arrays; with
    ``chunk``, an iterator of such dicts of about ``chunk`` configurations each (the whole grid
    of a large machine is millions: its arrays and the model's temporaries are what took the
    time and the memory)."""
    def gen():
        cols = {k: [] for k in ("strategy", "workers", "groups", "servers", "batch")}
        n = 0
        for code, w, g, s in _blocks(max_workers, max_groups, max_servers):
            for b in batches:
                cols["strategy"].append(np.full(len(w), code))
                cols["workers"].append(w)
                cols["groups"].append(w if g is None else np.full(len(w), g))
                cols["servers"].append(np.full(len(w), s))
                cols["batch"].append(np.full(len(w), b))
                n += len(w)
                if chunk and n >= chunk:
                    yield {k: np.concatenate(v) for k, v in cols.items()}
                    cols = {k: [] for k in cols}
                    n = 0
        if n:
            yield {k: np.concatenate(v) for k, v in cols.items()}
    if chunk:
        return gen()
    return next(gen(), {k: np.zeros(0, int) for k in ("strategy", "workers", "groups",
                                                       "servers", "batch")})


def apply_epoch_curve(s: dict, optimizer: str | None) -> list[str]:
    """Charge a zoo network's published epochs against batch (:mod:`.model.zoo_convergence`)
    when the scenario states no ``[convergence] b_noise`` of its own: its B_crit becomes the
    noise scale (with its interval) and a batch limit of the optimizer family becomes a
    constraint (``plan_hints['max_update_batch']``). Returns the notes to print: which curve,
    which optimizer family (``optimizer`` None: SGD, assumed and said), or why none."""
    net = s["workload"]["net"]
    family = optimizer or "sgd"
    assumed = "" if optimizer else " (SGD assumed: perfmodel plan --optimizer sgd|lars chooses)"
    conv = s["convergence"]
    if conv["b_noise"].nominal > 0:
        return [f"epochs against batch: the scenario's own b_noise {conv['b_noise'].nominal:.4g}"
                + (f" ({conv['source']})" if conv["source"] else "")]
    c = ZC.curve(net, family)
    if c is None:
        known = sorted({n for n, _ in ZC.CURVES})
        what = repr(net) if net else "given by its layers or parameters"
        return [f"note: no published epochs-against-batch curve for workload {what} with "
                f"{family.upper()}{assumed} (published here: {', '.join(known)}); epochs are "
                "taken as independent of the batch"]
    s["plan_hints"]["max_update_batch"] = c.max_batch
    notes = []
    if c.b_crit is not None:
        conv["b_noise"] = c.b_crit
        conv["source"] = (f"{c.net} with {family.upper()} to {c.target}: E(B) = E_min (1 + B / "
                          f"{c.b_crit.nominal:,.0f}), B_crit [{c.b_crit.low:,.0f}, "
                          f"{c.b_crit.high:,.0f}], fitted on {c.fitted_on}; {c.source}")
        notes.append(f"epochs against batch{assumed}: {conv['source']}")
    else:
        notes.append(f"epochs against batch{assumed}: {c.net} with {family.upper()} to "
                     f"{c.target}: the same epochs at every batch up to {c.max_batch:,} "
                     f"({c.source})")
    if c.max_batch:
        notes.append(f"constraint: update batches above {c.max_batch:,} are left out (the "
                     f"largest at which {family.upper()} is published to reach the target)")
    if not (conv["gamma"].high > 0 or conv["kappa"].high > 0):
        notes.append("note: the curve is of synchronous training; asynchronous groups are "
                     "charged only what the scenario's [convergence] gamma and kappa say "
                     "(here nothing), so async and hybrid plans are optimistic")
    return notes


def epoch_factor(s: dict, grid: dict[str, np.ndarray]) -> np.ndarray:
    """Epochs at each configuration over epochs at a small batch in sync: E(B, tau, mu) /
    E_min, with B the update batch (a group's), tau = G - 1; ones without a noise scale."""
    conv = s["convergence"]
    b_noise = conv["b_noise"].nominal
    w = np.asarray(grid["workers"], float)
    code = np.asarray(grid["strategy"])
    g = np.where(code == 0, 1.0, np.where(code == 1, w, np.asarray(grid["groups"], float)))
    if not b_noise > 0:
        return np.ones(len(w))
    ref = conv["ref_momentum"].nominal
    model = Convergence(s_min=1.0, b_noise=b_noise, ref_momentum=ref,
                        gamma=conv["gamma"].nominal, kappa=conv["kappa"].nominal)
    tau = g - 1.0
    mu = (retuned_momentum(ref, tau) if conv["retune_momentum"]
          else (conv["momentum"].nominal if conv["momentum"] is not None else ref))
    return model.epoch_factor(w / g * np.asarray(grid["batch"], float), tau, mu)


def throughput_time_interval_s(r: pd.Series, pred: dict) -> tuple[float, float]:
    """(low, high) time to solution in s of configuration ``r`` over the corners of the
    throughput's uncertain inputs alone, at its nominal epochs (``pred``: from
    :func:`chosen_prediction`)."""
    thr = pred["throughput_samples_per_s"]
    thr_lo, thr_hi = pred["interval"]["throughput_samples_per_s"]
    return float(r.time_s * thr / thr_hi), float(r.time_s * thr / thr_lo)


def time_interval_s(s: dict, r: pd.Series, target: Target, pred: dict) -> tuple[float, float]:
    """(low, high) time to solution in s of configuration ``r`` over every corner of the
    scenario's uncertain inputs: its predicted throughput interval (``pred``, from
    :func:`chosen_prediction`) and, for an epochs target, the epoch factor at each corner of
    the convergence assumptions (they do not change the throughput, so the extremes pair)."""
    if target.loss:
        lo, hi = pred["interval"]["time_to_target_s"]
        return float(lo), float(hi)
    grid = {"strategy": [list(STRATEGIES).index(r.strategy)], "workers": [r.workers],
            "groups": [r.groups], "batch": [r.batch_per_worker]}
    factors = set()
    for v in {tuple((k, x) for k, x in v.items() if k[0] == "convergence" and x is not None)
              for v in SC.corners(s)}:
        s2 = copy.deepcopy(s)
        for (sec, key), x in v:
            s2[sec][key] = SC.Interval(x, x, x)
        factors.add(float(epoch_factor(s2, grid)[0]))
    samples = target.epochs * s["workload"]["dataset_samples"]
    thr_lo, thr_hi = pred["interval"]["throughput_samples_per_s"]
    return samples * min(factors) / thr_hi, samples * max(factors) / thr_lo


#: configurations evaluated at once: the model's temporaries stay in the tens of MB
CHUNK = 1 << 18
#: how many of the feasible configurations a search keeps beyond the Pareto front and the
#: fastest of each strategy (a seeded uniform sample, for plots)
SAMPLE = 20000


def search(s: dict, target: Target, max_nodes: int | None, deadline_s: float | None,
           budget_node_hours: float | None, max_groups: int = 64, max_servers: int = 64,
           batches=BATCHES) -> tuple[pd.DataFrame, dict]:
    """Evaluate the grid chunk by chunk (bounded memory) and keep, of the configurations
    within every constraint: the Pareto front of time against node-hours (which holds the
    recommendation, deadline or not), the fastest few of each strategy (for why the others
    lose) and a seeded uniform sample of about SAMPLE (for plots), sorted by time. ``facts``:
    how many were evaluated and feasible, and the binding constraint if none is feasible."""
    c = s["cluster"]
    d = c["devices_per_node"]
    nodes_cap = min(max_nodes or c["nodes"], c["nodes"])
    if max_nodes is not None and max_nodes < 1:
        raise UserError(f"--max-nodes={max_nodes} is out of range (allowed >= 1)")
    if not target.loss:
        samples = s["workload"]["dataset_samples"]
        if not samples:
            raise UserError("--epochs needs workload.dataset_samples in the scenario")
    max_w = max(nodes_cap * d, 1)
    total = sum(len(w) for _, w, _, _ in _blocks(max_w, max_groups, max_servers)) * len(batches)
    inp = SC.to_inputs(s)
    rng = np.random.default_rng(0)
    kept, evaluated, feasible_n, any_time = [], 0, 0, False
    best_other = {"deadline": np.inf, "budget-node-hours": np.inf}
    for grid in candidates(max_w, d, max_groups, max_servers, batches, chunk=CHUNK):
        col = _evaluate(s, inp, grid, target)
        t, nh = col["time_s"], col["node_hours"]
        evaluated += len(t)
        any_time |= bool(np.isfinite(t).any())
        ok_nodes = col["nodes"] <= nodes_cap
        ok_dead = t <= deadline_s if deadline_s else np.ones(len(t), bool)
        ok_budget = nh <= budget_node_hours if budget_node_hours else np.ones(len(t), bool)
        # for naming the binding constraint: the best each relaxed constraint could reach
        if (ok_nodes & ok_budget).any():
            best_other["deadline"] = min(best_other["deadline"], float(np.nanmin(
                np.where(ok_nodes & ok_budget, t, np.inf))))
        if (ok_nodes & ok_dead).any():
            best_other["budget-node-hours"] = min(best_other["budget-node-hours"], float(
                np.nanmin(np.where(ok_nodes & ok_dead, nh, np.inf))))
        idx = np.flatnonzero(ok_nodes & ok_dead & ok_budget & np.isfinite(t))
        feasible_n += len(idx)
        if not len(idx):
            continue
        keep = rng.random(len(idx)) < SAMPLE / total
        order = np.argsort(t[idx], kind="stable")
        h = nh[idx][order]
        front = np.r_[True, h[1:] < np.minimum.accumulate(h)[:-1]]
        keep[order[front]] = True
        code = col["code"][idx]
        for c in range(len(STRATEGIES)):  # the fastest few of each strategy
            mine = order[code[order] == c][:5]
            keep[mine] = True
        kept.append({k: v[idx[keep]] for k, v in col.items()})
    if target.loss and not any_time:
        raise UserError("target loss needs [convergence] target_loss and s_min in the "
                        "scenario (or use --epochs)")
    facts = {"evaluated": evaluated, "feasible": feasible_n}
    cols = ({k: np.concatenate([c[k] for c in kept]) for k in kept[0]} if kept else
            {k: v[:0] for k, v in _evaluate(s, inp, candidates(1, d, 1, 1), target).items()})
    if not feasible_n:
        facts["binding"] = _binding(best_other, deadline_s, budget_node_hours, nodes_cap)
    code = cols.pop("code")
    out = pd.DataFrame({"strategy": np.array(STRATEGIES)[code], **cols})
    return out.sort_values("time_s", kind="stable").reset_index(drop=True), facts


def _evaluate(s: dict, inp, grid: dict[str, np.ndarray], target: Target
              ) -> dict[str, np.ndarray]:
    """One chunk of the grid: the model's step, throughput and time to solution, as the
    columns of the search's frame (``code``: the strategy's index in STRATEGIES)."""
    d = s["cluster"]["devices_per_node"]
    res = evaluate(inp, grid["strategy"], grid["workers"], grid["groups"], grid["servers"],
                   grid["batch"])
    if target.loss:
        t = res["time_to_target_s"]
    else:
        t = (target.epochs * s["workload"]["dataset_samples"] * epoch_factor(s, grid)
             / res["throughput_samples_per_s"])
    nodes = np.ceil((grid["workers"] + grid["servers"]) / d)
    g = np.where(grid["strategy"] == 1, grid["workers"], grid["groups"])
    limit = s.get("plan_hints", {}).get("max_update_batch")
    if limit:  # past the batch its optimizer family is published to reach the target at
        t = np.where(grid["workers"] / g * grid["batch"] > limit, np.inf, t)
    return {"code": grid["strategy"], "workers": grid["workers"], "groups": g,
            "param_servers": grid["servers"], "batch_per_worker": grid["batch"],
            "nodes": nodes.astype(int), "time_s": t, "node_hours": nodes * t / 3600.0,
            "update_batch": grid["workers"] / g * grid["batch"],
            "throughput_samples_per_s": res["throughput_samples_per_s"],
            "step_time_s": res["step_time_s"], "compute_s": res["compute_s"],
            "comm_s": res["comm_s"], "ps_s": res["ps_s"], "straggler_s": res["straggler_s"]}


def _binding(best_other: dict, deadline_s, budget, nodes_cap) -> str:
    """Name the constraint that makes the search infeasible, with the numbers: the best the
    other constraints allow, against the one that binds."""
    msgs = []
    if deadline_s and np.isfinite(best_other["deadline"]):
        msgs.append(f"--deadline binds: the fastest configuration within the other "
                    f"constraints takes {format_duration(best_other['deadline'])}, over the deadline "
                    f"{format_duration(deadline_s)}")
    if budget and np.isfinite(best_other["budget-node-hours"]):
        msgs.append(f"--budget-node-hours binds: the cheapest configuration within the "
                    f"other constraints needs {best_other['budget-node-hours']:.4g} "
                    f"node-hours, over the budget {budget:g}")
    if not msgs:
        msgs.append(f"the constraints together bind (deadline "
                    f"{format_duration(deadline_s) if deadline_s else '-'}, budget {budget or '-'} "
                    f"node-hours, at most {nodes_cap} nodes): no single one relaxed alone "
                    "makes a configuration feasible")
    return "; ".join(msgs)


def pareto(df: pd.DataFrame) -> pd.DataFrame:
    """Configurations no other beats on both time and node-hours (df sorted by time)."""
    if df.empty:
        return df
    best = np.minimum.accumulate(df.node_hours.to_numpy())
    keep = np.r_[True, df.node_hours.to_numpy()[1:] < best[:-1]]
    return df[keep].reset_index(drop=True)


def recommend(feasible: pd.DataFrame, deadline_s: float | None) -> pd.Series:
    if deadline_s:
        return feasible.sort_values(["node_hours", "time_s"]).iloc[0]
    return feasible.iloc[0]


def why_not(feasible: pd.DataFrame, chosen: pd.Series) -> list[str]:
    """One line per other strategy: its best configuration and what holds it back."""
    out = []
    for strat in STRATEGIES:
        sub = feasible[feasible.strategy == strat]
        if strat == chosen.strategy and sub.iloc[0].name == chosen.name:
            sub = sub.iloc[1:]
            if sub.empty:
                continue
        if sub.empty:
            out.append(f"{strat}: no feasible configuration")
            continue
        r = sub.iloc[0]
        shares = {"communication": r.comm_s, "parameter servers": r.ps_s,
                  "straggler wait": r.straggler_s}
        name, v = max(shares.items(), key=lambda kv: kv[1])
        out.append(f"{strat} ({describe_configuration(r)}): {format_duration(r.time_s)}, {r.node_hours:.4g} node-hours; "
                   f"{name} is {100 * v / r.step_time_s:.0f}% of the step")
    return out


def describe_configuration(r) -> str:
    return (f"{r.workers} workers, {r.groups} group(s), {r.param_servers} server(s), "
            f"batch {r.batch_per_worker}")


def format_duration(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "-"
    for unit, f in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= f:
            return f"{s / f:.3g} {unit}"
    return f"{s:.3g} s"


def chosen_prediction(s: dict, r: pd.Series) -> dict:
    """The full prediction (breakdown and intervals) of one configuration."""
    s2 = copy.deepcopy(s)
    t = s2["training"]
    t.update(strategy=r.strategy, workers=int(r.workers), groups=int(
        1 if r.strategy == "sync" else (r.workers if r.strategy == "async" else r.groups)),
        param_servers=int(r.param_servers), batch_per_worker=int(r.batch_per_worker),
        global_batch=None)
    return predict(s2)


def default_threads_per_rank(s: dict) -> int:
    """Cores per rank when the user does not say: 64 on a node of one rank (a CPU node, the
    paper's 64 of a KNL's 68 cores), else 64 shared by the node's devices (8 for 8 GPUs)."""
    return max(1, 64 // max(s["cluster"]["devices_per_node"], 1))


def slurm_script(r: pd.Series, s: dict, command: str | None, threads_per_rank: int | None,
                 launcher: str = "srun", mpi: str = "pmi2") -> str:
    """An sbatch script running the harness (or the user's command) with configuration r,
    launched by srun or mpiexec (:mod:`perfmodel.harness.slurm`). A scenario of several
    devices per node gets one rank per device and asks for the GPUs."""
    d = s["cluster"]["devices_per_node"]
    threads_per_rank = threads_per_rank or default_threads_per_rank(s)
    ranks = int(r.workers + r.param_servers)
    lines = ["#!/bin/bash",
             f"#SBATCH --job-name=perfmodel-plan-{r.strategy}",
             f"#SBATCH --nodes={int(r.nodes)}",
             f"#SBATCH --ntasks={ranks}",
             f"#SBATCH --ntasks-per-node={d}",
             *([f"#SBATCH --gpus-per-node={d}"] if d > 1 else []),
             f"#SBATCH --cpus-per-task={threads_per_rank}",
             f"#SBATCH --time={max(1, math.ceil(r.time_s / 60 * 1.2))}",
             f"# perfmodel plan: {r.strategy}, {describe_configuration(r)}; predicted {format_duration(r.time_s)}, "
             f"{r.node_hours:.4g} node-hours",
             "set -euo pipefail",
             f"export PERFMODEL_STRATEGY={r.strategy} PERFMODEL_GROUPS={int(r.groups)} "
             f"PERFMODEL_PARAM_SERVERS={int(r.param_servers)} "
             f"PERFMODEL_BATCH_PER_WORKER={int(r.batch_per_worker)}",
             "export NUMBA_NUM_THREADS=${SLURM_CPUS_PER_TASK}",
             "OUT=${PERFMODEL_OUTPUT:-results/plan-run.csv}",
             slurm.RUN_FUNCTION]
    start = slurm.launch(ranks, launcher, mpi)
    if command:
        lines.append(f"run {start} {command}")
    else:
        w = s["workload"]
        lines.append(f"run {start} python -m mpi4py -m perfmodel.harness "
                     f"--strategy {r.strategy} --net {w['net'] or 'hep'} "
                     + (f"--image-size {w['image_size']} " if w.get("image_size") else "")
                     + (f"--filters {w['filters']} " if w.get("filters") else "")
                     + f"--groups {int(r.groups) if r.strategy == 'hybrid' else 1} "
                     f"--param-servers {int(r.param_servers)} --batch {int(r.batch_per_worker)}"
                     " --threads ${SLURM_CPUS_PER_TASK} --data ${PERFMODEL_DATA:?set the data "
                     "folder} --steps ${PERFMODEL_STEPS:-1000} --output \"$OUT\"")
    return "\n".join(lines) + "\n"
