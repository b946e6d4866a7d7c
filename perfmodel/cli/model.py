"""``perfmodel predict``, ``sweep``, ``reproduce`` and ``presets``: terminal tables and JSON."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import pandas as pd

from ..judge.reproduce import WIDTH, passed, reproduce, scored
from ..model import reference as REF
from ..model import scenario as SC
from ..model.predict import (BREAKDOWN, parse_vary, predict, split_varies, step_timeline,
                             sweep)
from ..ui import UserError, table


def _fmt(x, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if unit and abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.4g} {unit}".strip()


def add_predict_arguments(pred: argparse.ArgumentParser) -> None:
    pred.add_argument("scenario", help="scenario file or preset (see 'perfmodel presets')")
    pred.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                      help="override a scenario value (repeatable)")
    pred.add_argument("--unset", action="append", default=[], metavar="SECTION.KEY",
                      help="remove a key of the scenario before the --set values (repeatable; "
                           "e.g. training.batch_per_worker to give a global_batch instead)")
    pred.add_argument("--json", action="store_true", help="JSON on stdout")
    pred.add_argument("--timeline", action="store_true", help="also the step as a timeline: "
                      "each message's ready, start and end times against backward, and the "
                      "exposed part")


def add_sweep_arguments(sw: argparse.ArgumentParser) -> None:
    sw.add_argument("scenario")
    sw.add_argument("--vary", action="append", default=[], metavar="SECTION.KEY=SPEC",
                    help="any key of the scenario: a:b (integers a..b, training keys), a:b:n "
                         "(n log-spaced), or x,y,z (numbers, quantities such as 100 Gb/s, "
                         "names); repeatable. Training axes are evaluated at once, each "
                         "value of another key is a scenario of its own")
    sw.add_argument("--intervals", action=argparse.BooleanOptionalAction, default=None,
                    help="each prediction's low and high over every corner of the uncertain "
                         f"inputs (default: on up to {INTERVALS_UP_TO:,} configurations x "
                         "corners)")
    sw.add_argument("--plot", default=None, metavar="FILE.png", help="draw throughput and "
                    "efficiency against the first varied key")
    sw.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    sw.add_argument("--unset", action="append", default=[], metavar="SECTION.KEY",
                    help="remove a key of the scenario before the --set values (repeatable)")
    sw.add_argument("--output", "-o", default=None, help="CSV or .parquet (default: CSV on "
                    "stdout)")


def add_reproduce_arguments(rp: argparse.ArgumentParser) -> None:
    rp.add_argument("--json", action="store_true")
    rp.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override both Cori presets (repeatable); the fitted parameter is "
                         "fitted again under them")


def add_presets_arguments(p: argparse.ArgumentParser) -> None:
    """``perfmodel presets`` takes no arguments."""


def add_init_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="the scenario file to write (TOML)")
    p.add_argument("--from", dest="preset", default="perlmutter-gpu-hep",
                   help="the preset (or scenario file) whose values it starts from (default "
                        "perlmutter-gpu-hep: GPU nodes; see perfmodel presets)")
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    p.add_argument("--reference", metavar="MD", default=None,
                   help="also write the scenario reference (every key, its unit and "
                        "default) as Markdown, as docs/scenario.md holds it")


def run_init(args: argparse.Namespace) -> int:
    out = Path(args.file)
    if out.exists() and not args.force:
        raise UserError(f"{out} exists (give --force to overwrite it)")
    raw, source = SC.read_raw(args.preset)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(REF.template(raw, source))
    SC.load(str(out))  # what init writes must load: a mistake here is ours, not the user's
    print(f"scenario written to {out} (from {source}); try: perfmodel predict {out}")
    if args.reference:
        Path(args.reference).write_text(REF.markdown())
        print(f"reference written to {args.reference}")
    return 0


def run_presets(args: argparse.Namespace) -> int:
    print("\n".join(SC.preset_names()))
    return 0


def run_predict(args: argparse.Namespace) -> int:
    s, source = SC.load(args.scenario, args.set, args.unset)
    p = predict(s)
    if args.timeline:
        p["timeline"] = step_timeline(s)
    if args.json:
        print(json.dumps(p, indent=2))
        return 0
    print_prediction(p, source)
    return 0


def print_prediction(p: dict, source: str) -> None:
    """A prediction (:func:`perfmodel.model.predict.predict`, with its ``timeline`` when one
    was asked for) as terminal tables: the figures with their intervals, the step's breakdown
    and assumptions, then the timeline's messages."""
    cfg = p["configuration"]
    print(f"{source}: {cfg['strategy']}, {cfg['workers']} workers, {cfg['groups']} group(s), "
          f"{cfg['servers']} parameter server(s), local batch {cfg['batch']}")
    rows = []
    for key, unit in (("throughput_samples_per_s", "samples/s"), ("throughput_flops", "FLOP/s"),
                      ("peak_throughput_flops", "FLOP/s"), ("efficiency", ""),
                      ("speedup", "x"), ("step_time_s", "s"), ("steps_to_target", ""),
                      ("time_to_target_s", "s")):
        lo, hi = p["interval"][key] or (None, None)
        rows.append([key, _fmt(p[key], unit), f"[{_fmt(lo, unit)}, {_fmt(hi, unit)}]"])
    print(table(["quantity", "predicted", "interval"], rows))
    print("\nstep breakdown (sustained): " + ", ".join(
        f"{k[:-2]} {p['breakdown'][k] * 1e3:.2f} ms" for k in BREAKDOWN))
    for line in p["assumptions"]:
        print(f"assumed: {line}")
    if "timeline" not in p:
        return
    tl = p["timeline"]
    rows = tl["schedule"]
    shown = rows if len(rows) <= 12 else rows[:6] + rows[-6:]
    trip = "; each with the root's server round trip" if tl["servers"] else ""
    print(f"\nstep timeline ({tl['messages']} messages, overlap "
          f"{'on' if tl['overlap'] else 'off'}; group of {tl['group_size']:g}{trip}): "
          "compute "
          f"{tl['compute_s'] * 1e3:.2f} ms, communication {tl['communication_s'] * 1e3:.2f}"
          f" ms, exposed after backward {tl['exposed_s'] * 1e3:.2f} ms, overlapped "
          f"compute slowed by {tl['overlap_s'] * 1e3:.2f} ms")
    print(table(["message", "MB", "ready ms", "start ms", "end ms", "exposed ms"],
                [[r["message"], f"{r['bytes'] / 1e6:.3g}", f"{r['ready_s'] * 1e3:.2f}",
                  f"{r['start_s'] * 1e3:.2f}", f"{r['end_s'] * 1e3:.2f}",
                  f"{r['exposed_s'] * 1e3:.2f}"] for r in shown]))
    if len(rows) > len(shown):
        print(f"({len(rows) - len(shown)} messages in the middle not shown; --json has all)")
    if tl["pull_s"] > 0:
        print(f"before the forward: every worker pulls all the weights from the servers, "
              f"{tl['pull_s'] * 1e3:.2f} ms (training.ps_pull = 'step-start'; in ps)")


#: figure formats --plot writes (matplotlib's, by the file's extension)
PLOT_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp")
INTERVALS_UP_TO = 200_000  # configurations x corners evaluated for intervals by default


def run_sweep(args: argparse.Namespace) -> int:
    if not args.vary:
        raise UserError("give at least one --vary SECTION.KEY=SPEC")
    if args.plot and Path(args.plot).suffix.lower().lstrip(".") not in PLOT_FORMATS:
        raise UserError(f"--plot={args.plot!r}: the file's extension names the figure's "
                        f"format, one of {', '.join(PLOT_FORMATS)}")
    s, _ = SC.load(args.scenario, args.set, args.unset)
    size = _grid_size(args.vary)
    corners = len(SC.corners(s))
    intervals = args.intervals if args.intervals is not None else \
        size * corners <= INTERVALS_UP_TO
    t0 = time.perf_counter()
    df = sweep(s, args.vary, reload=lambda sets: SC.load(args.scenario, args.set + sets,
                                                         args.unset)[0],
               intervals=intervals)
    dt = time.perf_counter() - t0
    msg = (f"{len(df)} configurations evaluated in {dt:.2f} s"
           f" ({df.attrs['dropped']} combinations dropped as invalid); intervals "
           + (f"over {corners} corners of the uncertain inputs" if intervals else
              f"off ({size} configurations x {corners} corners: --intervals to take them)"))
    if args.plot:
        _plot_sweep(df, args.vary, Path(args.plot))
        msg += f"; figure {args.plot}"
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".parquet":
            try:
                df.to_parquet(out)
            except ImportError:
                raise UserError("--output *.parquet needs pyarrow; use .csv or "
                                "pip install pyarrow") from None
        else:
            df.to_csv(out, index=False, float_format="%.6g")
        print(f"{msg}; written to {out}", file=sys.stderr)
    else:
        df.to_csv(sys.stdout, index=False, float_format="%.6g")
        print(msg, file=sys.stderr)
    return 0


def _grid_size(varies: list[str]) -> int:
    grid, other = split_varies(varies)
    n = 1
    for text in grid:
        n *= parse_vary(text)[2].size
    for _, vals in other:
        n *= len(vals)
    return n


def _plot_sweep(df, varies: list[str], out: Path) -> None:
    """Throughput and efficiency against the first varied key, one line per value of the
    second (if any), with the intervals as bands when they were taken."""
    import matplotlib  # plotting only when a figure is asked for (start-up time)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg")

    keys = [v.split("=", 1)[0].strip() for v in varies]
    col = [k.split(".", 1)[1] if k.split(".", 1)[1] in df.columns else k for k in keys]
    x, hue = col[0], (col[1] if len(col) > 1 else None)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    groups = df.groupby(hue, sort=False) if hue else [("", df)]
    for label, d in groups:
        d = d.sort_values(x, key=lambda v: _numeric(v))
        xs = _numeric(d[x])
        for ax, k in zip(axes, ("throughput_samples_per_s", "efficiency")):
            ax.plot(xs, d[k], "o-", ms=3, label=f"{hue} = {label}" if hue else None)
            if f"{k}_low" in d:
                ax.fill_between(xs, d[f"{k}_low"], d[f"{k}_high"], alpha=0.2)
    for ax, k in zip(axes, ("samples/s", "efficiency")):
        ax.set(xlabel=keys[0], ylabel=k)
        if _numeric(df[x]).dtype.kind == "f" and _numeric(df[x]).min() > 0 and \
                _numeric(df[x]).max() / _numeric(df[x]).min() > 20:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes[1].set_ylim(0, 1.05)
    if hue:
        axes[0].legend(fontsize=8, loc="best")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _numeric(v):
    n = pd.to_numeric(v, errors="coerce")
    return n.astype(float) if n.notna().all() else v


def run_reproduce(args: argparse.Namespace) -> int:
    figs, extra = reproduce(args.set)
    if args.set and not args.json:
        print("with both presets overridden: " + ", ".join(args.set) + "\n")
    fin = lambda x: x if x == x else None  # noqa: E731  (NaN -> null in JSON)
    if args.json:
        print(json.dumps({"figures": [dict(
            key=f.key, what=f.what, published=f.published, unit=f.unit,
            predicted=fin(f.predicted), low=fin(f.low), high=fin(f.high), error=fin(f.error),
            half_width=fin(f.half_width), inside=f.inside, status=f.status,
            tolerance=f.tolerance, reproduced=passed(f), note=f.note) for f in figs],
            "reproduced": sum(bool(passed(f)) for f in scored(figs)),
            "scored": len(scored(figs)), "overrides": list(args.set), **extra}, indent=2,
            default=float))
        return 0
    num = lambda x, u="": "-" if x != x else f"{x:.4g}{u}"  # noqa: E731
    rows = []
    for f in figs:
        ok = passed(f)
        rows.append([f.what, f"{f.published:g} {f.unit}".strip(), num(f.predicted),
                     f"[{num(f.low)}, {num(f.high)}]" if f.low == f.low else "-",
                     "-" if f.error != f.error else f"{100 * f.error:+.1f}%",
                     {True: "yes", False: "no", None: "-"}[f.inside],
                     "-" if f.half_width != f.half_width else f"+-{100 * f.half_width:.0f}%",
                     f.status, {True: "yes", False: "NO", None: "-"}[ok]])
    print(table(["figure", "published", "model", "interval", "error", "inside", "width",
                 "used as", "reproduced"], rows))
    print(f"\nreproduced = the published value inside the interval, the interval within "
          f"+-{100 * WIDTH['throughput']:.0f}% (throughputs) or +-{100 * WIDTH['ratio']:.0f}% "
          "(speedups, ratios, knees), and the nominal within the tolerance (5% throughputs, "
          "10% ratios, knees exact)")
    print("intervals: every corner of " + ", ".join(extra["uncertain_inputs"])
          + " (the presets give each its source)")
    print("\nfitted parameters (at most three; each figure it was fitted on is not counted):")
    for name, (v, unit, on) in extra["fitted"].items():
        print(f"  {name} = {v:.4g} {unit}   fitted on: {on}")
    for f in figs:
        if f.note:
            print(f"  note ({f.key}): {f.note}")
    sc = scored(figs)
    print(f"\nreproduced: {sum(bool(passed(f)) for f in sc)} of {len(sc)} scored held-out "
          "figures; not scored: "
          + "; ".join(f"{f.key} ({f.status})" for f in figs
                      if f.status != "held out" and f.status != "fitted"))
    return 0
