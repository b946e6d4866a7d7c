"""``perfmodel published``: the development set of published scaling runs, predicted."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..judge import published as P
from ..ui import ProgressBar, table


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cases", default=None, metavar="DIR",
                   help="a folder of case files (default: the set shipped with perfmodel, "
                        "perfmodel/judge/published/)")
    p.add_argument("--json", action="store_true", help="JSON on stdout: every case and the "
                   "set's figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_published(args: argparse.Namespace) -> int:
    folder = Path(args.cases) if args.cases else None
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
