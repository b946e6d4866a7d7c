"""Time to a target loss, measured against predicted (``perfmodel converge``'s step 4).

The runs are :mod:`perfmodel.harness.convergence_runs`'. Everything is read back from
results files, so ``perfmodel converge --compare-only`` redoes this step alone and the report
reads the same files: the convergence model is fitted on the calibration runs
(:func:`perfmodel.model.convergence.fit`), each held-out configuration is predicted as
updates (convergence model) x the throughput model's step time / groups, and compared with
the measured time (the mean of a configuration's runs); median |error| and Kendall tau over
the configurations.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..model.convergence import Convergence, fit, target_table
from ..provenance import run_base
from ..results import ResultsWriter, make_row, read_all
from ..stats import kendall_tau
from ..ui import UserError
from .validate import apply_bandwidth, link_from, predict_run, profile_rates

CONFIG = ["strategy", "workers", "groups", "param_servers", "threads", "batch", "subject",
          "image_size", "straggler", "functional", "update_batch", "momentum", "ranks"]


def replicates(held: pd.DataFrame) -> pd.DataFrame:
    """One row per held-out configuration: the mean updates and seconds to target over its
    runs (seeds), how many there were, their run ids and relative spread; a configuration with
    a censored run is censored (its mean would be biased low)."""
    if held.empty:
        return held
    h = held.assign(straggler=held.straggler.fillna(""))
    g = h.groupby(CONFIG, dropna=False, sort=False)
    out = g.agg(updates=("updates", "mean"), time_s=("time_s", "mean"),
                censored=("censored", "any"), seeds=("run_id", "size"),
                run_id=("run_id", lambda v: " ".join(v)),
                time_spread=("time_s", lambda v: float(v.max() / v.min() - 1)
                             if len(v) > 1 else 0.0)).reset_index()
    return out


def compare(held: pd.DataFrame, conv: Convergence, node: pd.DataFrame, link) -> pd.DataFrame:
    """Predicted against measured time to target for each held-out configuration (the mean of
    its runs, :func:`replicates`): updates from the convergence model (staleness G - 1, the
    run's momentum) x the throughput model's step time (from the node profile and the
    ping-pong) / G; intervals over the fit's +-1 standard errors."""
    rates, apply_bw = profile_rates(node), apply_bandwidth(node)
    rows = []
    for r in replicates(held).itertuples():
        thr, _, note = predict_run(r, rates, link, apply_bw)
        g = max(int(r.groups), 1)
        step_s = r.workers * r.batch / thr if thr == thr else float("nan")
        nominal, lo, hi = conv.interval(
            lambda m, b=r.update_batch, tau=g - 1.0, mu=r.momentum: m.updates(b, tau, mu))
        t = float(nominal) * step_s / g
        rows.append(dict(run_id=r.run_id, strategy=r.strategy, workers=int(r.workers),
                         groups=g, param_servers=int(r.param_servers), threads=int(r.threads),
                         batch=int(r.batch), update_batch=int(r.update_batch),
                         straggler=r.straggler, functional=bool(r.functional),
                         censored=bool(r.censored), measured_updates=float(r.updates),
                         predicted_updates=float(nominal),
                         updates_error=float(nominal) / r.updates - 1,
                         measured_s=float(r.time_s), predicted_s=t,
                         predicted_low_s=float(lo) * step_s / g,
                         predicted_high_s=float(hi) * step_s / g,
                         error=t / r.time_s - 1, step_s=step_s, note=note,
                         seeds=int(r.seeds), time_spread=float(r.time_spread)))
    return pd.DataFrame(rows)


def summary(cmp: pd.DataFrame) -> dict:
    """Median |error| of time to target and Kendall tau over the timed, uncensored held-out
    configurations; ``runs`` counts the timed runs behind them (seeds and rounds)."""
    if cmp.empty:
        return dict(configurations=0, runs=0, median_abs_error=float("nan"),
                    median_abs_updates_error=float("nan"), kendall_tau=float("nan"),
                    censored=0)
    timed = cmp[~cmp.functional & ~cmp.censored & cmp.error.notna()]
    n = len(timed)
    return dict(configurations=int(n), runs=int(timed.seeds.sum()) if n else 0,
                median_abs_error=float(np.median(np.abs(timed.error))) if n else float("nan"),
                median_abs_updates_error=float(np.median(np.abs(timed.updates_error)))
                if n else float("nan"),
                kendall_tau=float(kendall_tau(timed.predicted_s, timed.measured_s))
                if n >= 2 else float("nan"),
                censored=int(cmp.censored.sum()), **ordered_pairs(timed))


def ordered_pairs(timed: pd.DataFrame) -> dict[str, int]:
    """How many pairs of configurations the model orders as measured: of all pairs, and of
    the pairs measured apart by more than their runs' own spread (|ln(t_i / t_j)| above the
    sum of the two configurations' relative spreads across runs; one run: the median spread
    of those with several). A pair inside the noise can swap between two runs of the
    pipeline whatever the model; one outside it should not."""
    t = timed.measured_s.to_numpy(float)
    p = timed.predicted_s.to_numpy(float)
    spread = timed.time_spread.to_numpy(float)
    several = timed.seeds.to_numpy() > 1
    fill = float(np.median(spread[several])) if several.any() else 0.0
    spread = np.where(several, spread, fill)
    out = dict(pairs=0, pairs_correct=0, pairs_apart=0, pairs_apart_correct=0)
    for i in range(len(t)):
        for j in range(i + 1, len(t)):
            right = bool((t[i] - t[j]) * (p[i] - p[j]) > 0)
            out["pairs"] += 1
            out["pairs_correct"] += right
            if abs(np.log(t[i] / t[j])) > spread[i] + spread[j]:
                out["pairs_apart"] += 1
                out["pairs_apart_correct"] += right
    return out


def fit_rows(conv: Convergence, base: dict) -> list[dict]:
    """The fitted parameters as results rows (what='convergence_fit', stat 'fit', min/max at
    +-1 standard error); the runs they came from are in the fit's JSON beside them."""
    out = []
    for name, unit in (("s_min", "updates"), ("b_noise", "samples"), ("gamma", "1"),
                       ("kappa", "1/update"), ("ref_momentum", "1")):
        v, se = getattr(conv, name), getattr(conv, name + "_se", 0.0)
        out.append(make_row(base, what="convergence_fit", metric=name, value=v, unit=unit,
                            stat="fit", min=v - se, max=v + se))
    return out


def analyse(out: Path) -> tuple[Convergence, pd.DataFrame, pd.DataFrame]:
    """(fitted model, calibration table, comparison) from the results under ``out``."""
    for name in ("calibration.csv", "heldout.csv"):
        if not (out / name).exists():
            raise UserError(f"{out / name} is missing: run perfmodel converge --out {out}")
    calib = target_table(read_all([str(out / "calibration.csv")]))
    conv = fit(calib)
    runs = read_all([str(out / "heldout.csv")])
    profiles = sorted(out.glob("node-t*.csv"))
    if not profiles:
        raise UserError(f"no node profiles (node-t*.csv) under {out}: run perfmodel converge "
                        f"--out {out}")
    node = read_all([str(p) for p in profiles])
    cmp = compare(target_table(runs), conv, node, link_from(runs))
    return conv, calib, cmp


def write_outputs(out: Path) -> tuple[Convergence, pd.DataFrame, pd.DataFrame, dict]:
    """Fit, compare and write ``time_to_target.csv``, ``fit.csv`` and ``fit.json`` under
    ``out``; returns (fitted model, calibration table, comparison, summary)."""
    conv, calib, cmp = analyse(out)
    s = summary(cmp)
    cmp.to_csv(out / "time_to_target.csv", index=False)
    ResultsWriter(out / "fit.csv").add(fit_rows(conv, run_base(1)))
    (out / "fit.json").write_text(json.dumps(dict(
        s_min=conv.s_min, s_min_se=conv.s_min_se, b_noise=conv.b_noise,
        b_noise_se=conv.b_noise_se, gamma=conv.gamma, gamma_se=conv.gamma_se,
        kappa=conv.kappa, kappa_se=conv.kappa_se, ref_momentum=conv.ref_momentum,
        fitted_on=conv.source, summary=s), indent=2, default=float))
    return conv, calib, cmp, s
