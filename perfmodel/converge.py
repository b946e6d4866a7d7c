"""``perfmodel converge``: time to a target loss, measured and predicted.

The sweep (``make convergence``), each stage in its own process:

1. a learnable data set (``perfmodel data``, with held-out events);
2. **calibration** runs, each until its smoothed held-out loss reaches the target: sync at four
   batches (S_min and B_noise, :func:`perfmodel.model.convergence.fit_batch`, with B_simple
   measured along the way) and async at 2 and 3 groups, with the explicit momentum kept and
   re-tuned (gamma and kappa, :func:`~perfmodel.model.convergence.fit_async`). Calibration
   counts updates, not seconds, so these may oversubscribe the cores (functional runs);
3. ``--rounds`` rounds spread over time, each: a node profile (one thread per rank, the
   batches of step 4), then **held-out** timed runs (1 thread per rank) at other
   batches, worker counts, strategies and stragglers, never used in a fit, each run with its
   own seed; the ping-pong once;
4. the comparison: predicted time to target = updates (convergence model) x the throughput
   model's step time / groups, against the measured time (the mean of a configuration's
   runs); median |error| and Kendall tau over the configurations.

The workload is :mod:`perfmodel.workload`'s. Everything is read back from results files
(:func:`target_table`), so ``perfmodel converge --compare-only`` redoes step 4 and the report
reads the same files; ``--calibrate-only`` and ``--round K`` run steps 1-2 and one round of
step 3 alone, so that a longer job (the report pipeline) can put other runs between them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from . import stage
from . import workload as W
from .model.convergence import Convergence, fit_async, fit_batch
from .ui import ProgressBar, UserError, table

NET = W.NET_ARGS
TRAIN = ["--lr", "0.01", "--momentum", "0.9", "--eval-every", "10", "--eval-samples", "256",
         "--trace-every", "10", "--warmup", "2"]
#: the smoothed held-out loss to reach: on the steep part of the curve (at 0.35 the curve is
#: near its floor and the first passage scatters twice as much between seeds)
TARGET_LOSS = 0.40
CALIB_BATCHES = (8, 16, 32, 64)
CALIB_BATCHES_QUICK = (8, 16, 32)  # --quick: no batch 64 (the costliest runs), no async
#: held-out timed runs (1 thread per rank): (label, scale arguments); none is fitted on
HELD_OUT = [
    ("sync 1x12", ["--strategies", "sync", "--workers", "1", "--batch", "12"]),
    ("sync 1x24", ["--strategies", "sync", "--workers", "1", "--batch", "24"]),
    ("sync 1x48", ["--strategies", "sync", "--workers", "1", "--batch", "48"]),
    ("sync 2x8", ["--strategies", "sync", "--workers", "2", "--batch", "8"]),
    ("sync 2x16", ["--strategies", "sync", "--workers", "2", "--batch", "16"]),
    ("sync 2x8 straggler", ["--strategies", "sync", "--workers", "2", "--batch", "8",
                            "--straggler", "exponential:0.005"]),
    ("sync 1x24 straggler", ["--strategies", "sync", "--workers", "1", "--batch", "24",
                             "--straggler", "constant:0.02"]),
    ("async 1x12", ["--strategies", "async", "--workers", "1", "--batch", "12"]),
    ("async 1x32", ["--strategies", "async", "--workers", "1", "--batch", "32"]),
]
#: --quick's held-out configurations: every strategy, worker count and straggler kind of the
#: list, with times to target ~1.4x apart on the dev VM (3.8 to 18 s), so that their ranking
#: is a test of the model and not of this machine's run-to-run noise (5-10%)
QUICK_HELD_OUT = ("sync 2x8", "sync 2x8 straggler", "async 1x12", "sync 1x24", "sync 1x48")
PROFILE_BATCHES = "8,12,16,24,32,48"
HELD_OUT_SEED = 100  # held-out run i of round k (1-based) trains with seed 100 k + i


# --- reading runs back -------------------------------------------------------------------

def target_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per harness run that had a target: configuration, hyper-parameters, measured
    updates / samples / seconds to the target, whether it was censored, mean staleness."""
    tg = df[df.what == "target"]
    if tg.empty:
        return pd.DataFrame()
    hyper = df[df.what == "hyper"].pivot_table(index="run_id", columns="metric",
                                               values="value", aggfunc="first")
    stale = df[(df.what == "staleness") & (df.stat == "mean")].set_index("run_id")["value"]
    wide = tg.pivot_table(index="run_id", columns="metric", values="value", aggfunc="first")
    first = tg.groupby("run_id").first()
    out = pd.DataFrame({
        "run_id": wide.index, "strategy": first.strategy, "ranks": first.ranks,
        "param_servers": first.param_servers, "groups": first.groups,
        "workers": first.ranks - first.param_servers, "threads": first.threads,
        "batch": first.batch, "subject": first.subject, "image_size": first.image_size,
        "straggler": first.straggler, "functional": first.functional,
        "censored": first.stat == "censored", "updates": wide["updates"],
        "samples": wide["samples"], "time_s": wide["time"]})
    for m in ("update_batch", "momentum", "lr", "target_loss", "difficulty", "seed"):
        out[m] = hyper[m].reindex(out.index) if m in hyper else np.nan
    out["staleness"] = stale.reindex(out.index).fillna(0.0)
    return out.reset_index(drop=True)


def fit(calib: pd.DataFrame) -> Convergence:
    """The convergence model from calibration runs: sync (and 1-group async) runs that reached
    the target fit S_min and B_noise; runs of 2+ groups fit gamma and kappa. Censored runs are
    left out (they bound the updates from below) and named in the source."""
    if calib.empty:
        raise UserError("no calibration runs with a target in the given results")
    targets = calib.target_loss.unique()
    if len(targets) != 1:
        raise UserError(f"calibration runs at several target losses {sorted(targets)}: give "
                        "runs of one target")
    ok = calib[~calib.censored]
    sync = ok[ok.groups <= 1]
    moms = sync.momentum.unique()
    if len(moms) != 1:
        raise UserError(f"sync calibration runs at several momenta {sorted(moms)}")
    try:
        conv = fit_batch(sync.update_batch, sync.updates, list(sync.run_id),
                         ref_momentum=float(moms[0]))
    except ValueError as e:
        raise UserError(str(e)) from None
    asy = ok[ok.groups > 1]
    if len(asy) >= 2:
        conv = fit_async(conv, asy.update_batch, asy.staleness, asy.momentum, asy.updates,
                         list(asy.run_id))
    conv.source["censored (left out)"] = list(calib[calib.censored].run_id)
    conv.source["target_loss"] = float(targets[0])
    return conv


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
    from .validate import apply_bandwidth, predict_run, profile_rates

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
    from .plan import kendall_tau

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
                censored=int(cmp.censored.sum()))


def fit_rows(conv: Convergence, base: dict) -> list[dict]:
    """The fitted parameters as results rows (what='convergence_fit', stat 'fit', min/max at
    +-1 standard error); the runs they came from are in the fit's JSON beside them."""
    from .results import make_row

    out = []
    for name, unit in (("s_min", "updates"), ("b_noise", "samples"), ("gamma", "1"),
                       ("kappa", "1/update"), ("ref_momentum", "1")):
        v, se = getattr(conv, name), getattr(conv, name + "_se", 0.0)
        out.append(make_row(base, what="convergence_fit", metric=name, value=v, unit=unit,
                            stat="fit", min=v - se, max=v + se))
    return out


# --- the sweep ---------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="results/convergence", help="folder for the results "
                   "(default results/convergence)")
    p.add_argument("--target-loss", type=float, default=TARGET_LOSS, help="smoothed held-out "
                   f"loss to reach (default {TARGET_LOSS:g}; chance is ln 2 = 0.693)")
    p.add_argument("--max-steps", type=int, default=4000, help="cap per run (default 4000)")
    p.add_argument("--seeds", type=int, default=2, help="calibration runs per batch "
                   "(default 2)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of node profiles and "
                   "held-out runs, each run with its own seed (default 2)")
    p.add_argument("--quick", action="store_true", help="sync calibration at batch 8, 16 and "
                   "32 only, and 5 of the 9 held-out configurations (for the report "
                   "pipeline)")
    p.add_argument("--calibrate-only", action="store_true", help="the data and the "
                   "calibration runs only (a fresh start)")
    p.add_argument("--round", type=int, default=None, metavar="K", help="round K of "
                   "--rounds only: its node profiles and held-out runs, appended")
    p.add_argument("--no-profile", action="store_true", help="with --round: the held-out "
                   "runs only (the caller takes the node profiles, node-t*.csv in --out)")
    p.add_argument("--compare-only", action="store_true", help="refit and compare the "
                   "results already in --out")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-progress", action="store_true")


def run_converge(args: argparse.Namespace) -> int:
    out = Path(args.out)
    for name in ("max_steps", "seeds", "rounds"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')}={getattr(args, name)} is out of "
                            "range (allowed >= 1)")
    if not 0 < args.target_loss:
        raise UserError(f"--target-loss={args.target_loss:g} is out of range (allowed > 0)")
    if args.round is not None and not 1 <= args.round <= args.rounds:
        raise UserError(f"--round={args.round} is out of range (allowed 1..{args.rounds}, "
                        "--rounds)")
    if sum((args.compare_only, args.calibrate_only, args.round is not None)) > 1:
        raise UserError("give at most one of --compare-only, --calibrate-only and --round")
    if args.compare_only:
        return report(out, args.json)
    stages = []
    if args.round is None:
        stages += calibration_stages(args, out)
        if not args.calibrate_only:
            for k in range(1, args.rounds + 1):
                stages += round_stages(args, out, k)
    else:
        stages += round_stages(args, out, args.round, profile=not args.no_profile)
    _run(stages, args.no_progress)
    if args.calibrate_only or args.round is not None:
        return 0
    return report(out, args.json)


def _target_args(args: argparse.Namespace, out: Path) -> list[str]:
    return ["--target-loss", f"{args.target_loss:g}", "--max-steps", str(args.max_steps),
            "--data", str(out / "data"), *NET, *TRAIN, "--no-progress"]


def calibration_stages(args: argparse.Namespace, out: Path) -> list[tuple[str, list[str]]]:
    """The data set and the calibration runs (a fresh start: old results in ``out`` go).
    Sync at every batch of CALIB_BATCHES (--seeds each); async at 2 and 3 groups with the
    momentum kept and re-tuned. --quick: sync at CALIB_BATCHES_QUICK only (its held-out runs
    have no asynchronous groups to predict)."""
    for f in out.glob("*.csv"):
        f.unlink()
    out.mkdir(parents=True, exist_ok=True)
    tgt = _target_args(args, out)
    calib = ["-o", str(out / "calibration.csv")]
    stages = [("data", ["data", "--net", "hep", "--image-size", str(W.IMAGE_SIZE), "--samples",
                        "4096", "--shards", "2", "--val-samples", "512", "--out",
                        str(out / "data")])]
    for b in CALIB_BATCHES_QUICK if args.quick else CALIB_BATCHES:
        for seed in range(args.seeds):
            stages.append((f"calibration sync b={b} seed {seed}",
                           ["scale", *tgt, "--strategies", "sync", "--workers", "1", "--batch",
                            str(b), "--noise-scale", "--seed", str(seed), *calib]))
    for retune in ([] if args.quick else [[], ["--retune-momentum"]]):
        stages.append((f"calibration async 2-3 groups{' re-tuned' if retune else ''}",
                       ["scale", *tgt, "--strategies", "async", "--workers", "2,3",
                        "--batch", "16", *retune, *calib]))
    return stages


def profile_stage(out: Path, name: str, tag: str = "") -> tuple[str, list[str]]:
    """A node profile of the workload at one thread per rank, written to ``out/name`` (the
    comparison reads every ``node-t*.csv`` there). --quick: a shorter peak measurement; the
    profile's step times are what counts here."""
    return (f"node profile{tag}",
            ["node", *NET, "--threads", "1", "--sweep", PROFILE_BATCHES, "--batch", "8",
             "--repeats", "20", "--quick", "-o", str(out / name), "--no-progress"])


def round_stages(args: argparse.Namespace, out: Path, k: int, profile: bool = True
                 ) -> list[tuple[str, list[str]]]:
    """Round ``k`` (1-based) of ``--rounds``: a node profile (unless ``profile`` is off: the
    caller takes it) and the held-out runs right after it, all at one thread per rank (at this
    workload's size a second thread gains 1.0-1.25x and its step times scatter by tens of
    percent: no basis for a timed comparison). Rounds are spread over time, each with its own
    profile: a shared machine drifts, and every held-out configuration is predicted from the
    median of the profiles. Every configuration (QUICK_HELD_OUT with --quick) runs in every
    round, each run with its own seed; the first run of round 1 also takes the ping-pong."""
    tag = f" (round {k} of {args.rounds})" if args.rounds > 1 else ""
    tgt = _target_args(args, out)
    stages = [profile_stage(out, f"node-t1-r{k}.csv", tag)] if profile else []
    first = True
    for i, (label, argv) in enumerate(HELD_OUT):
        if args.quick and label not in QUICK_HELD_OUT:
            continue
        micro = ["--micro"] if k == 1 and first else []
        first = False
        stages.append((f"held out: {label}{tag}",
                       ["scale", *tgt, *argv, "--threads", "1", *micro, "--seed",
                        str(HELD_OUT_SEED + 100 * (k - 1) + i),
                        "-o", str(out / "heldout.csv")]))
    return stages


def _run(stages: list[tuple[str, list[str]]], no_progress: bool) -> None:
    bar = ProgressBar(len(stages), "converge", enabled=False if no_progress else None)
    for label, argv in stages:
        rc = stage.run(argv)
        if rc:
            print(f"perfmodel converge: stage '{label}' failed (exit {rc}); going on",
                  file=sys.stderr)
        bar(label)


def analyse(out: Path) -> tuple[Convergence, pd.DataFrame, pd.DataFrame]:
    """(fitted model, calibration table, comparison) from the results under ``out``."""
    from .model_cli import _read_all
    from .validate import link_from

    for name in ("calibration.csv", "heldout.csv"):
        if not (out / name).exists():
            raise UserError(f"{out / name} is missing: run perfmodel converge --out {out}")
    calib = target_table(_read_all([str(out / "calibration.csv")]))
    conv = fit(calib)
    runs = _read_all([str(out / "heldout.csv")])
    profiles = sorted(out.glob("node-t*.csv"))
    if not profiles:
        raise UserError(f"no node profiles (node-t*.csv) under {out}: run perfmodel converge "
                        f"--out {out}")
    node = _read_all([str(p) for p in profiles])
    cmp = compare(target_table(runs), conv, node, link_from(runs))
    return conv, calib, cmp


def report(out: Path, as_json: bool = False) -> int:
    from .provenance import run_base
    from .results import ResultsWriter

    conv, calib, cmp = analyse(out)
    s = summary(cmp)
    cmp.to_csv(out / "time_to_target.csv", index=False)
    ResultsWriter(out / "fit.csv").add(fit_rows(conv, run_base(1)))
    (out / "fit.json").write_text(json.dumps(dict(
        s_min=conv.s_min, s_min_se=conv.s_min_se, b_noise=conv.b_noise,
        b_noise_se=conv.b_noise_se, gamma=conv.gamma, gamma_se=conv.gamma_se,
        kappa=conv.kappa, kappa_se=conv.kappa_se, ref_momentum=conv.ref_momentum,
        fitted_on=conv.source, summary=s), indent=2, default=float))
    if as_json:
        print(json.dumps(dict(fit=json.loads((out / "fit.json").read_text()),
                              runs=cmp.to_dict("records")), indent=2, default=float))
        return 0
    print(f"calibration (fitted; {len(calib)} runs, target {conv.source['target_loss']:g}):")
    print(f"  S_min = {conv.s_min:.0f} +- {conv.s_min_se:.0f} updates, B_noise = "
          f"{conv.b_noise:.1f} +- {conv.b_noise_se:.1f} samples (sync runs "
          f"{', '.join(conv.source['s_min, b_noise'])})")
    if "gamma, kappa" in conv.source:
        print(f"  gamma = {conv.gamma:.3f} +- {conv.gamma_se:.3f}, kappa = {conv.kappa:.3f} "
              f"+- {conv.kappa_se:.3f} /update (async runs "
              f"{', '.join(conv.source['gamma, kappa'])})")
    pct = lambda e: "-" if e != e else f"{100 * e:+.0f}%"  # noqa: E731
    rows = [[r.strategy, r.workers, r.groups, r.threads, r.batch, r.straggler or "-",
             f"{r.measured_updates:.0f}", f"{r.predicted_updates:.0f}",
             f"{r.measured_s:.1f}", f"{r.predicted_s:.1f} [{r.predicted_low_s:.1f}, "
             f"{r.predicted_high_s:.1f}]", pct(r.error),
             "censored" if r.censored else ("functional" if r.functional else "timed")]
            for r in cmp.itertuples()]
    print("\nheld-out runs (none used in a fit): time to target, measured vs predicted")
    print(table(["strategy", "workers", "groups", "thr", "batch", "straggler",
                 "updates meas", "updates pred", "time meas s", "time pred s", "error",
                 "kind"], rows))
    for note in sorted({n for n in cmp.note if isinstance(n, str) and n}):
        print(f"no prediction: {note}")
    print(f"\nmedian |error| of time to target over {s['configurations']} held-out "
          f"configurations ({s['runs']} timed runs): "
          f"{100 * s['median_abs_error']:.1f}% (updates alone "
          f"{100 * s['median_abs_updates_error']:.1f}%); Kendall tau {s['kendall_tau']:.2f}"
          f"\nwritten: {out / 'time_to_target.csv'}, {out / 'fit.json'}")
    return 0
