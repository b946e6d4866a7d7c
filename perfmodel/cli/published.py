"""``perfmodel published``: the development set of published scaling runs, predicted."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..judge import published as P
from ..judge import ttt as T
from ..model.predict import predict, step_timeline
from ..ui import ProgressBar, UserError, table
from .model import print_prediction


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cases", default=None, metavar="DIR",
                   help="a folder of case files (default: the set shipped with perfmodel, "
                        "perfmodel/judge/published/)")
    p.add_argument("--json", action="store_true", help="JSON on stdout: every case and the "
                   "set's figures")
    p.add_argument("--ttt", action="store_true", help="the time-to-train set instead: "
                   "published MLPerf runs' epochs and time to train against the convergence "
                   "and throughput models (perfmodel/judge/ttt/)")
    p.add_argument("--case", default=None, metavar="NAME",
                   help="one case in full: its source and quote, the published and predicted "
                        "efficiency, and the run's step breakdown as perfmodel predict prints "
                        "it (NAME: the file name without .toml, as the table lists it)")
    p.add_argument("--timeline", action="store_true", help="with --case: also the run's step "
                   "timeline (each message's ready, start and end against backward)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_published(args: argparse.Namespace) -> int:
    folder = Path(args.cases) if args.cases else None
    if args.timeline and not args.case:
        raise UserError("--timeline needs --case NAME (the timeline of one case's run)")
    if args.ttt and args.case:
        raise UserError("--case shows one case of the throughput set, not of --ttt's "
                        "time-to-train set (--ttt --json gives every ttt case's fields)")
    if args.ttt:
        return _run_ttt(args, folder)
    if args.case:
        return _run_case(args, folder)
    bar = ProgressBar(len(P.case_paths(folder)), "published",
                      enabled=False if args.no_progress else None)
    cases = P.run(folder, progress=bar)
    s = P.summary(cases)
    if args.json:
        print(json.dumps(dict(s, cases=[dict(
            case=c.name, title=c.title, source=c.source, where=c.where, quote=c.quote,
            devices=c.devices, baseline_devices=c.baseline_devices, published=c.published,
            predicted=c.predicted, low=c.low, high=c.high, error=c.error)
            for c in cases], case_count=s["cases"]), indent=2, default=float))
        return 0
    rows = [[c.name, c.devices, c.baseline_devices, f"{c.published:.3f}",
             f"{c.predicted:.3f}", f"[{c.low:.3f}, {c.high:.3f}]", f"{100 * c.error:+.1f}%",
             "yes" if c.low_efficiency else ""]
            for c in sorted(cases, key=lambda c: c.published)]
    print(table(["case", "devices", "vs", "published e", "predicted e", "interval", "error",
                 f"e <= {P.LOW_EFFICIENCY:g}"], rows))
    print(f"\n{s['cases']} published runs from {s['sources']} sources (a development set: "
          "mechanisms are found on it, nothing is fitted to a case)")
    print(f"median |error| of efficiency: {100 * s['median_abs_error']:.1f}%")
    print(f"Kendall tau, predicted against published efficiency: {s['kendall_tau']:.2f}")
    print(f"lost efficiency explained, sum(1 - e) predicted over published: "
          f"{s['loss_ratio']:.2f}")
    print(f"runs that published e <= {P.LOW_EFFICIENCY:g} predicted within "
          f"{100 * P.WITHIN:.0f}%: {s['low_efficiency_within']} of "
          f"{s['low_efficiency_cases']}")
    return 0


def _run_case(args: argparse.Namespace, folder: Path | None) -> int:
    case = P.predict_case(P.load_case(P.case_path(args.case, folder)))
    p = predict(case.scenario)
    if args.timeline:
        p["timeline"] = step_timeline(case.scenario)
    head = dict(case=case.name, title=case.title, source=case.source, where=case.where,
                quote=case.quote, efficiency_how=case.how, devices=case.devices,
                baseline_devices=case.baseline_devices, published=case.published,
                predicted=case.predicted, low=case.low, high=case.high, error=case.error)
    if args.json:
        print(json.dumps(dict(head, prediction=p), indent=2, default=float))
        return 0
    print(f"{case.name}: {case.title}\nsource: {case.source}\nwhere: {case.where}\n"
          f"quote: {case.quote}")
    vs = "one device" if case.baseline_devices == 1 else f"{case.baseline_devices} devices"
    print(f"\nefficiency against {vs}: published {case.published:.3f}"
          f"{f' ({case.how})' if case.how else ''}; predicted {case.predicted:.3f} "
          f"[{case.low:.3f}, {case.high:.3f}], error {100 * case.error:+.1f}%")
    print("\nThe run at the nominal inputs (its efficiency row is against one device of the "
          "same scenario, not the case's baseline):")
    print_prediction(p, case.name)
    return 0


def _run_ttt(args: argparse.Namespace, folder: Path | None) -> int:
    bar = ProgressBar(len(list((folder or T.case_dir()).glob("*.toml"))), "time to train",
                      enabled=False if args.no_progress else None)
    cases = T.run(folder, progress=bar)
    s = T.summary(cases)
    if args.json:
        print(json.dumps(dict(s, kind="time-to-train", cases=[dict(
            case=c.name, title=c.title, source=c.source, where=c.where, quote=c.quote,
            scenario=c.scenario_case, devices=c.devices, global_batch=c.global_batch,
            optimizer=c.optimizer, epochs=c.epochs, predicted_epochs=c.predicted_epochs,
            epochs_error=c.epochs_error, time_to_train_s=c.time_to_train_s,
            predicted_s=c.predicted_s, time_error=c.time_error, eval_s=c.eval_s,
            throughput_samples_per_s=c.throughput_samples_per_s, runs=c.runs)
            for c in cases], case_count=s["cases"]), indent=2, default=float))
        return 0
    rows = [[c.name, c.devices, f"{c.global_batch:,}", f"{c.epochs:g}",
             f"{c.predicted_epochs:.1f}", f"{100 * c.epochs_error:+.1f}%",
             f"{c.time_to_train_s:.4g}", f"{c.predicted_s:.4g}", f"{100 * c.time_error:+.1f}%"]
            for c in sorted(cases, key=lambda c: c.time_to_train_s)]
    print(table(["case", "devices", "global batch", "epochs", "predicted", "error",
                 "time to train s", "predicted s", "error"], rows))
    print(f"\n{s['cases']} published MLPerf Training runs (v2.1 and later) from "
          f"{s['sources']} submissions; epochs from the published epochs-against-batch curve "
          "(perfmodel/model/zoo_convergence.py), time from the throughput model plus the "
          "logged evaluation time")
    print(f"epochs: median |error| {100 * s['epochs_median_abs_error']:.1f}%")
    print(f"time to train: median |error| {100 * s['time_median_abs_error']:.1f}%, Kendall "
          f"tau {s['time_kendall_tau']:.2f}")
    return 0
