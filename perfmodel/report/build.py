"""Build a self-contained report folder from results files (the one tidy schema) and the
model: ``index.html`` (no network needed: images are local PNGs, no scripts but one inline
check), figures drawn with seaborn, tables as CSV, and ``summary.md``.

Every section says what it needs; a section whose data is missing is listed as missing
instead of failing the report.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..model.stragglers import detour_default
from ..results import ResultsError, read_results
from ..ui import UserError


@dataclass
class Claim:
    """One checked statement for the summary on top: a measured value, its tolerance and the
    verdict (None: not measured, with ``detail`` saying why)."""

    claim: str
    value: float
    unit: str
    tolerance: str
    passed: bool | None
    detail: str = ""


@dataclass
class Section:
    title: str
    text: str = ""
    figures: list[str] = field(default_factory=list)   # PNG file names
    tables: list[str] = field(default_factory=list)    # CSV file names
    missing: str = ""
    captions: dict[str, str] = field(default_factory=dict)  # figure -> what to read from it
    claims: list[Claim] = field(default_factory=list)
    functional: list[str] = field(default_factory=list)  # tables of functional runs


def fmt(v: float, digits: int = 3, unit: str = "") -> str:
    """A number to ``digits`` significant digits (thousands kept whole), or "not measured"."""
    if v is None or not isinstance(v, (int, float, np.floating, np.integer)) or not \
            math.isfinite(float(v)):
        return "not measured"  # never followed by a unit
    v = float(v)
    text = f"{v:.0f}" if abs(v) >= 10 ** digits else f"{v:.{digits}g}"
    return f"{text} {unit}".strip() if unit else text


def round_frame(df: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """Floats to ``digits`` significant digits (what a table or CSV of the report shows)."""
    out = df.copy()
    for c in out.columns:
        if pd.api.types.is_float_dtype(out[c]):
            out[c] = out[c].map(lambda v: float(f"{v:.{digits}g}") if pd.notna(v)
                                and math.isfinite(v) else v)
    return out


def write_csv(df: pd.DataFrame, out: Path, name: str, digits: int = 4) -> str:
    """A report table: rounded to meaningful digits, empty cells where nothing was measured."""
    round_frame(df, digits).to_csv(out / name, index=False, na_rep="")
    return name


def load(paths: list[str | Path]) -> pd.DataFrame:
    """Every results file into one frame; a bad file is a UserError naming it."""
    frames = []
    for p in paths:
        try:
            frames.append(read_results(p))
        except ResultsError as e:
            raise UserError(str(e)) from None
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return plt, sns


def _save(fig, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return name


def _latest(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of the most recent run in ``df`` (by time)."""
    if df.empty:
        return df
    last = df.sort_values("time_utc")["run_id"].iloc[-1]
    return df[df.run_id == last]


def _main_batch(run: pd.DataFrame, df: pd.DataFrame) -> int:
    """The batch a node run timed per layer as its main one: where its FMA probes ran (the
    sweep's other batches carry per-layer rows too), else its largest."""
    probe = df[(df.what == "probe") & (df.run_id == run.run_id.iloc[0])]
    return int(probe.batch.iloc[0]) if len(probe) else int(run.batch.max())


def node_sections(df: pd.DataFrame, out: Path) -> list[Section]:
    plt, sns = _plt()
    node = df[(df.implementation == "numba") & df.what.isin(["layer", "step", "peak",
                                                             "bandwidth"])]
    layers = node[(node.what == "layer") & (node.metric == "flop_rate")]
    if layers.empty:
        return [Section("Node: per-layer FLOP rates and roofline",
                        missing="no perfmodel node results (per-layer rows)")]
    run = _latest(layers)
    batch = _main_batch(run, df)
    mine = node[node.run_id == run.run_id.iloc[0]]
    # the peaks of this run, every implementation (sgemm's rows are OpenBLAS's, not Numba's)
    ran = df[df.run_id == run.run_id.iloc[0]]
    peaks = ran[ran.what == "peak"].groupby("subject")["value"].max()
    triad = mine[mine.what == "bandwidth"]["value"].max()
    peak = float(peaks.max()) if len(peaks) else np.nan  # the larger of FMA loop and sgemm
    secs = []
    run = run[run.batch == batch]
    where = (f"{run.subject.iloc[0]} {run.image_size.iloc[0]}x{run.image_size.iloc[0]} px, "
             f"batch {batch}, {run.threads.iloc[0]} thread(s)")
    fig, ax = plt.subplots(figsize=(10, 4.5))
    sns.barplot(data=run.assign(gflops=run.value / 1e9), x="layer", y="gflops", hue="phase",
                ax=ax)
    for name, v in peaks.items():
        ax.axhline(v / 1e9, ls="--", lw=1, color="k" if name == "fma" else "grey")
        ax.text(len(run.layer.unique()) - 0.5, v / 1e9, f" {name} peak", va="bottom",
                ha="right", fontsize=8)
    ax.set(ylabel="GFLOP/s", xlabel="", title=f"per-layer FLOP rates: {where}")
    ax.tick_params(axis="x", rotation=60)
    f1 = _save(fig, out, "node_layers.png")
    tab = run[["layer", "phase", "value", "flop", "bytes"]].rename(columns={"value": "flops"})
    tab = tab.assign(percent_of_measured_peak=100 * tab.flops / peak,
                     flop_per_byte=tab.flop / tab.bytes.replace(0, np.nan))
    write_csv(tab.rename(columns={"flops": "flop_per_s", "flop": "flop_per_call",
                                  "bytes": "bytes_per_call"}), out, "node_layers.csv", 3)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    pts = tab.dropna(subset=["flop_per_byte"])
    sns.scatterplot(data=pts.assign(gflops=pts.flops / 1e9), x="flop_per_byte", y="gflops",
                    hue="phase", ax=ax)
    if math.isfinite(peak) and math.isfinite(triad):
        ai = np.logspace(-2, 3, 100)
        ax.plot(ai, np.minimum(peak, ai * triad) / 1e9, "k-", lw=1,
                label="roofline (measured peak, triad)")
    ax.set(xscale="log", yscale="log", xlabel="FLOP/byte (compulsory traffic)",
           ylabel="GFLOP/s", title="roofline")
    ax.legend(fontsize=8)
    f2 = _save(fig, out, "node_roofline.png")
    step = mine[(mine.what == "step") & (mine.metric == "flop_rate") & (mine.batch == batch)]
    step_text = (f" The training step: {fmt(step.value.iloc[0] / 1e9)} GFLOP/s = "
                 f"{fmt(100 * step.value.iloc[0] / peak, 2)}% of the measured peak."
                 if len(step) and math.isfinite(peak) else "")
    secs.append(Section(
        "Node: per-layer FLOP rates and roofline",
        text=f"{where}. Measured FP32 peak: FMA loop "
             f"{fmt(peaks.get('fma', np.nan) / 1e9, unit='GFLOP/s')}, sgemm "
             f"{fmt(peaks.get('sgemm', np.nan) / 1e9, unit='GFLOP/s')} (the peak is the "
             f"larger of the two measured); triad "
             f"bandwidth {fmt(triad / 1e9, unit='GB/s')}. FLOPs: 2 per multiply-add, padded "
             f"taps counted.{step_text}",
        figures=[f1, f2], tables=["node_layers.csv"],
        captions={f1: "Forward, backward-data and backward-weight FLOP rate of each layer "
                      "against the measured peaks (dashed): the convolutions carry the step; "
                      "element-wise layers are bound by memory, not FLOPs.",
                  f2: "Each layer's rate against its arithmetic intensity (compulsory bytes "
                      "only): points far below the roofline leave speed on the table."}))
    steps = node[(node.what == "step") & (node.metric == "sample_rate")]
    if steps.empty:
        secs.append(Section("Node: rate vs batch", missing="no step rows"))
    else:
        s = steps.assign(config=steps.subject + " " + steps.image_size.astype(str) + " px, "
                         + steps.threads.astype(str) + " thr")
        fig, ax = plt.subplots(figsize=(6.5, 4))
        sns.lineplot(data=s, x="batch", y="value", hue="config", marker="o", ax=ax,
                     errorbar=None)
        ax.set(xscale="log", xlabel="local batch", ylabel="samples/s",
               title="training rate vs local batch")
        f3 = _save(fig, out, "node_rate_vs_batch.png")
        write_csv(s[["subject", "image_size", "threads", "batch", "value", "min", "max"]]
                  .rename(columns={"value": "samples_per_s", "min": "min_samples_per_s",
                                   "max": "max_samples_per_s"}), out,
                  "node_rate_vs_batch.csv", 4)
        secs.append(Section("Node: rate vs batch", figures=[f3],
                            tables=["node_rate_vs_batch.csv"],
                            captions={f3: "Samples/s of a training step against the local "
                                          "batch: the node profile the throughput model "
                                          "interpolates (median of the timed steps)."}))
    peer = df[df.what == "ratio"]
    if not peer.empty and (peer.phase == "step").any():
        r = peer[peer.phase == "step"][["subject", "implementation", "batch", "value"]]
        write_csv(r.rename(columns={"value": "ours_over_torch_speed"}), out, "peer_ratio.csv")
        secs.append(Section("Node: against PyTorch", text="speed of ours over torch (> 1: "
                            "ours faster)", tables=["peer_ratio.csv"]))
    return secs


def profile_sections(prof: pd.DataFrame, df: pd.DataFrame, out: Path) -> list[Section]:
    """The node profiles the throughput model is given (one per round and threads per rank):
    samples/s against the batch, and how far the rounds agree at the timed runs' batch."""
    steps = prof[(prof.what == "step") & (prof.metric == "sample_rate")
                 & (prof.implementation == "numba")]
    title = "Node profiles of the local workload (the model's input)"
    if steps.empty:
        return [Section(title, missing="no node profiles")]
    plt, sns = _plt()
    runs = df[(df.what == "run") & (df.metric == "sample_rate") & ~df.functional] \
        if "what" in df else pd.DataFrame()
    batch = int(runs.batch.mode().iloc[0]) if len(runs) else int(steps.batch.max())
    thr = int(runs.threads.mode().iloc[0]) if len(runs) else int(steps.threads.min())
    st = steps.assign(profile=steps.threads.astype(str) + " thread(s)")
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.lineplot(data=st, x="batch", y="value", hue="profile", units="run_id", estimator=None,
                 marker="o", lw=1, ax=ax)
    ax.set(xlabel="batch per rank", ylabel="samples/s", title=f"{st.subject.iloc[0]}: "
           "training rate vs batch, every round's profile")
    f = _save(fig, out, "node_profiles.png")
    at = steps[(steps.batch == batch) & (steps.threads == thr)]
    med, spread = float(at.value.median()), _spread(at.value)
    tab = steps.groupby(["threads", "batch"]).agg(profiles=("value", "size"),
                                                   median_samples_per_s=("value", "median"),
                                                   spread=("value", _spread)).reset_index()
    write_csv(tab.assign(spread_percent=100 * tab.spread).drop(columns="spread"), out,
              "node_profiles.csv", 3)
    # the node level of the model: the profiles' forward + backward time against the compute
    # phase the harness measured in its timed runs of the same batch and threads
    upd = prof[(prof.what == "layer") & (prof.layer == "update") & (prof.metric == "time")
               & (prof.batch == batch) & (prof.threads == thr)].value.median()
    prof_s = batch / med - (upd if upd == upd else 0.0)
    # every timed run's compute phase counts: an injected delay is spent outside it (busy, so
    # the core stays as warm as in a run without one), and each rank has its own core
    comp = df[(df.what == "run") & (df.metric == "time") & (df.phase == "compute")
              & (df.batch == batch) & (df.threads == thr) & ~df.functional
              & (df.subject == steps.subject.iloc[0])] if "phase" in df else pd.DataFrame()
    harness_s = float(comp.value.median()) if len(comp) else float("nan")
    err = prof_s / harness_s - 1 if len(comp) else float("nan")
    claims = [Claim(f"node rate: profiled forward+backward time against the harness's "
                    f"compute phase ({thr} thread(s), batch {batch})", 100 * err, "%",
                    "within +-10%", bool(abs(err) <= 0.10) if err == err else None,
                    f"profiles {fmt(1e3 * prof_s)} ms (median of {len(at)}, "
                    f"{fmt(med)} samples/s with the update), harness {fmt(1e3 * harness_s)} ms "
                    f"(median of {len(comp)} runs)" if len(comp) else
                    "no timed harness run at this batch and threads"),
              Claim(f"node profiles: spread across rounds ({thr} thread(s), batch {batch})",
                    100 * spread, "%", "stated", None,
                    f"(max - min) / median of {len(at)} profiles, each in its own process "
                    "right before the runs it predicts")]
    return [Section(title, figures=[f], tables=["node_profiles.csv"], claims=claims,
                    text=f"{len(steps.run_id.unique())} profiles, taken in rounds between the "
                         "harness runs, each in its own process. The model predicts every "
                         "harness run from the median of the profiles at its batch and threads "
                         "per rank.",
                    captions={f: "One line per profile: where the lines of one thread count "
                                 "part, the machine drifted between rounds; that spread bounds "
                                 "how well any prediction can match a single run."})]


RUN_KEYS = ["strategy", "workers", "groups", "param_servers", "threads", "batch", "subject",
            "image_size", "straggler", "functional"]
#: the bars of the throughput model on this machine (issue #13)
THROUGHPUT_ERROR_BAR = 0.10
TAU_BAR = 0.8


def _spread(v: pd.Series) -> float:
    """(max - min) / median over repeated measurements of one figure; 0 for one."""
    v = v.dropna()
    return float((v.max() - v.min()) / v.median()) if len(v) > 1 and v.median() else 0.0


def _label(r) -> str:
    return (f"{r.strategy} {int(r.workers)}w" + (f" {int(r.groups)}g" if r.groups > 1 else "")
            + f" x{int(r.threads)}t b{int(r.batch)}" + (f" {r.straggler}" if r.straggler else "")
            + (" (functional)" if r.functional else ""))


def speedup_table(sust: pd.DataFrame) -> pd.DataFrame:
    """Weak-scaling speedup and efficiency of each timed run without a straggler against the
    1-worker run of the same strategy, threads per rank, batch and workload: like with like,
    so efficiency <= 1 unless something superlinear is going on. Runs with no such baseline
    are left out (the report says so)."""
    t = sust[~sust.functional & (sust.straggler == "")]
    keys = ["strategy", "threads", "batch", "subject", "image_size"]
    base = t[t.workers == 1].groupby(keys)["value"].median().rename("baseline")
    m = t.merge(base.reset_index(), on=keys, how="inner")
    m = m.assign(speedup=m.value / m.baseline)
    return m.assign(efficiency=m.speedup / m.workers)


def harness_sections(df: pd.DataFrame, out: Path) -> list[Section]:
    plt, sns = _plt()
    runs = df[(df.what == "run") & (df.metric == "sample_rate")]
    if runs.empty:
        return [Section("Scaling: measured and predicted",
                        missing="no perfmodel scale results")]
    secs = []
    runs = runs.assign(workers=runs.ranks - runs.param_servers,
                       kind=np.where(runs.functional, "functional", "timed"))
    # one row per configuration and statistic: the median over its rounds, and their spread
    agg = runs.groupby(RUN_KEYS + ["stat"], as_index=False).agg(
        value=("value", "median"), rounds=("value", "size"), spread=("value", _spread))
    pred = df[(df.what == "prediction") & (df.metric == "sample_rate")].assign(
        workers=lambda d: d.ranks - d.param_servers)
    both = agg.merge(pred[RUN_KEYS + ["stat", "value"]].rename(columns={"value": "predicted"}),
                     on=RUN_KEYS + ["stat"], how="left")
    both = both.assign(kind=np.where(both.functional, "functional", "timed"),
                       error=both.predicted / both.value - 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, stat in zip(axes, ("sustained", "peak")):
        m = both[(both.stat == stat) & both.predicted.notna()]
        if m.empty:
            ax.set_title(f"{stat}: no predictions (run perfmodel validate)")
            continue
        sns.scatterplot(data=m, x="value", y="predicted", hue="strategy", style="kind", s=70,
                        ax=ax)
        lim = [0, 1.1 * max(m.value.max(), m.predicted.max())]
        ax.plot(lim, lim, "k:", lw=1)
        ax.fill_between(lim, [0.9 * v for v in lim], [1.1 * v for v in lim], color="grey",
                        alpha=0.15, lw=0)
        ax.set(xlim=lim, ylim=lim, xlabel="measured samples/s", ylabel="predicted samples/s",
               title=f"{stat} throughput (band: +-10%)")
    f1 = _save(fig, out, "scaling.png")
    tab = both[both.stat == "sustained"].sort_values(["functional", "strategy", "workers"])
    tab = tab.assign(spread_percent=100 * tab.spread, error_percent=100 * tab.error)
    # what every run shares goes to the text, not into a column of repeats
    shared = [c for c in ("subject", "image_size", "batch", "threads") if tab[c].nunique() == 1]
    cols = [c for c in RUN_KEYS[:-1] if c not in shared] + [
        "rounds", "value", "spread_percent", "predicted", "error_percent"]
    names = {"value": "measured_samples_per_s", "predicted": "predicted_samples_per_s",
             "param_servers": "servers"}
    write_csv(tab[~tab.functional][cols].rename(columns=names), out, "scaling.csv", 3)
    write_csv(tab[tab.functional][cols].rename(columns=names), out,
              "scaling_functional.csv", 3)
    common = ", ".join(f"{c.replace('_', ' ')} {tab[c].iloc[0]}" for c in shared)
    timed = tab[~tab.functional & tab.error.notna()]
    claims = []
    from ..plan import kendall_tau

    if len(timed):
        med = float(np.median(np.abs(timed.error)))
        claims.append(Claim("throughput model: median |error| of sustained samples/s",
                            100 * med, "%", f"<= {100 * THROUGHPUT_ERROR_BAR:.0f}%",
                            med <= THROUGHPUT_ERROR_BAR,
                            f"{len(timed)} timed configurations, each the median of its "
                            f"rounds; predicted from the node profiles and the ping-pong"))
        tau = kendall_tau(timed.predicted, timed.value) if len(timed) >= 2 else float("nan")
        claims.append(Claim("throughput model: ranking of those runs (Kendall tau)", tau, "",
                            f">= {TAU_BAR:g}", bool(tau >= TAU_BAR) if tau == tau else None,
                            "predicted against measured order of sustained samples/s"))
        spread = float(timed.spread.median())
        claims.append(Claim("harness runs: median spread across rounds", 100 * spread, "%",
                            "stated", None, f"(max - min) / median of each configuration's "
                            f"{int(timed.rounds.max())} rounds; this machine's run-to-run "
                            "noise"))
    else:
        claims.append(Claim("throughput model: median |error| of sustained samples/s",
                            float("nan"), "%", f"<= {100 * THROUGHPUT_ERROR_BAR:.0f}%", None,
                            "no timed run with a prediction (perfmodel validate)"))
    sust = agg[agg.stat == "sustained"]
    eff = speedup_table(sust)
    text = ("Throughput of each harness run (median over its rounds) against the model's "
            "prediction from the node profiles and the ping-pong; nothing here is fitted to "
            "these runs. Functional runs (more ranks x threads than cores) are listed apart "
            f"and never scored. Every run here: {common or 'see the table'}.")
    figs, caps = [f1], {f1: "Predicted against measured samples/s; points inside the grey "
                            "band are within 10%. Sustained: the run's mean rate; peak: its "
                            "best 5% of iterations."}
    tables = ["scaling.csv", "scaling_functional.csv"]
    if not eff.empty and (eff.workers > 1).any():
        write_csv(eff[["strategy", "workers", "threads", "batch", "value", "baseline",
                       "speedup", "efficiency"]].rename(
            columns={"value": "samples_per_s", "baseline": "one_worker_samples_per_s"}),
            out, "speedup.csv", 3)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        scaled = eff[eff.strategy.isin(eff[eff.workers > 1].strategy)]
        for ax, col in zip(axes, ("speedup", "efficiency")):
            sns.lineplot(data=scaled, x="workers", y=col, hue="strategy", markers=True,
                         style="strategy", errorbar=None, ax=ax)
            ax.set(title=f"weak scaling {col} (same threads per rank and batch)")
        axes[0].plot([1, eff.workers.max()], [1, eff.workers.max()], "k:", lw=1)
        axes[1].set_ylim(0, 1.1)
        f_eff = _save(fig, out, "speedup.png")
        figs.append(f_eff)
        caps[f_eff] = ("Weak scaling on this machine: each run against the 1-worker run of "
                       "the same strategy, threads per rank and batch (efficiency = speedup / "
                       "workers). Timed runs without stragglers only.")
        tables.append("speedup.csv")
    secs.append(Section("Scaling: measured and predicted", text=text, figures=figs,
                        tables=tables, captions=caps, claims=claims,
                        functional=["scaling_functional.csv"]))
    ph = df[(df.what == "run") & (df.metric == "time") & df.phase.isin(
        ["compute", "straggle", "wait", "comm", "ps", "io"])]
    if not ph.empty:
        ph = ph.assign(workers=ph.ranks - ph.param_servers)
        ph = ph.assign(config=[_label(r) for r in ph.itertuples()])
        piv = ph.pivot_table(index="config", columns="phase", values="value", aggfunc="median")
        fig, ax = plt.subplots(figsize=(10, 4.5))
        (piv * 1e3).plot.barh(stacked=True, ax=ax)
        ax.legend(title="phase", loc="center left", bbox_to_anchor=(1.01, 0.5))
        ax.set(xlabel="ms per iteration (median)", ylabel="", title="where an iteration goes: "
               "the cost of stragglers")
        f3 = _save(fig, out, "stragglers.png")
        write_csv((piv * 1e3).add_suffix("_ms").reset_index(), out,
                  "iteration_breakdown.csv", 3)
        secs.append(Section("The cost of stragglers", figures=[f3],
                            tables=["iteration_breakdown.csv"],
                            captions={f3: "Median milliseconds per iteration by phase: an "
                                          "injected straggler shows as straggle on the slow "
                                          "rank and as wait on the others."}))
    if timed.empty:
        secs.append(Section("Prediction error", missing="no perfmodel validate rows"))
    else:
        e = both[both.error.notna()]
        e = e.assign(config=[_label(r) for r in e.itertuples()], pct=100 * e.error)
        fig, ax = plt.subplots(figsize=(8, 4.5))
        sns.barplot(data=e, y="config", x="pct", hue="stat", ax=ax)
        ax.axvline(0, color="k", lw=1)
        for x in (-10, 10):
            ax.axvline(x, color="grey", ls=":", lw=1)
        ax.set(xlabel="predicted / measured - 1 (%)", ylabel="", title="prediction error")
        f4 = _save(fig, out, "prediction_error.png")
        write_csv(e[["config", "stat", "pct", "rounds", "spread"]].rename(
            columns={"pct": "error_percent", "spread": "spread_across_rounds"}), out,
            "prediction_error.csv", 3)
        secs.append(Section("Prediction error", figures=[f4], tables=["prediction_error.csv"],
                            captions={f4: "Relative error of each configuration's predicted "
                                          "throughput; dotted lines at +-10%. Functional runs "
                                          "are marked and left out of every median."}))
    return secs


def convergence_sections(out: Path, conv_dir: Path | None) -> list[Section]:
    """Time to a target loss: the held-out runs' validation loss against wall-clock time with
    the model's predicted time to target marked on each curve, the gradient noise scale over
    training, and the predicted-vs-measured table (perfmodel converge's results)."""
    title = "Time to a target loss: measured and predicted"
    if conv_dir is None or not (conv_dir / "heldout.csv").exists():
        return [Section(title, missing="no perfmodel converge results (make convergence)")]
    from ..converge import analyse, summary
    from ..results import read_results
    from ..ui import UserError

    try:
        conv, calib, cmp = analyse(conv_dir)
    except UserError as e:
        return [Section(title, missing=str(e))]
    s = summary(cmp)
    if not s["runs"]:
        notes = sorted({n for n in cmp.note if isinstance(n, str) and n}) if len(cmp) else []
        return [Section(title, missing="no held-out timed run with a prediction"
                        + (f" ({'; '.join(notes)})" if notes else ""))]
    plt, sns = _plt()
    held = read_results(conv_dir / "heldout.csv")
    ev = held[(held.what == "eval") & (held.metric == "val_loss_smoothed")]
    lab = {r.run_id: f"{r.strategy} {r.workers}x{r.batch}" + (" straggler" if r.straggler
                                                               else "")
           for r in cmp.itertuples()}
    fig, axes = plt.subplots(2, 2, figsize=(14, 9.5))
    axes = axes.ravel()
    ax = axes[0]
    palette = sns.color_palette("tab10", len(cmp))
    for colour, r in zip(palette, cmp.itertuples()):
        for i, rid in enumerate(r.run_id.split()):  # every run (seed) of the configuration
            e = ev[ev.run_id == rid].sort_values("step")
            ax.plot(e.elapsed_s, e.value, color=colour, lw=1.2,
                    label=lab[r.run_id] if i == 0 else None)
        ax.errorbar([r.predicted_s], [conv.source["target_loss"]],
                    xerr=[[r.predicted_s - r.predicted_low_s],
                          [r.predicted_high_s - r.predicted_s]],
                    fmt="v", color=colour, ms=7, capsize=3)
    ax.axhline(conv.source["target_loss"], color="k", ls=":", lw=1)
    ax.axhline(np.log(2), color="grey", ls="--", lw=1)
    ax.set(xlabel="seconds since the timed start (evaluation pauses excluded)",
           ylabel="held-out loss (EMA)", title="held-out runs; triangles: predicted time to "
           "target")
    ax.legend(fontsize=7)
    cal = read_results(conv_dir / "calibration.csv")
    nz = cal[(cal.what == "noise") & (cal.metric == "b_simple") & cal.value.notna()]
    ax = axes[1]
    if nz.empty:
        ax.set_title("no noise-scale rows (--noise-scale)")
    else:
        nz = nz.merge(calib[["run_id", "update_batch"]], on="run_id")
        sns.lineplot(data=nz.assign(batch=nz.update_batch.astype(int)), x="step", y="value",
                     hue="batch", palette="viridis", errorbar=None, ax=ax)
        ax.axhline(conv.b_noise, color="red", ls="--", lw=1,
                   label=f"fitted B_noise {conv.b_noise:.1f}")
        ax.set(yscale="log", xlabel="step", ylabel="B_simple = tr(Sigma) / |G|^2 (samples)",
               title="gradient noise scale over training (sync calibration)")
        ax.legend(fontsize=7, title="batch")
    ax = axes[2]
    ok = cmp[~cmp.censored]
    ax.errorbar(ok.measured_s, ok.predicted_s,
                yerr=[ok.predicted_s - ok.predicted_low_s, ok.predicted_high_s - ok.predicted_s],
                fmt="o", capsize=3)
    for r in ok.itertuples():
        ax.annotate(lab[r.run_id], (r.measured_s, r.predicted_s), fontsize=6,
                    xytext=(3, 3), textcoords="offset points")
    lim = [0, 1.15 * max(ok.measured_s.max(), ok.predicted_high_s.max())]
    ax.plot(lim, lim, "k:", lw=1)
    ax.fill_between(lim, [0.75 * v for v in lim], [1.25 * v for v in lim], color="grey",
                    alpha=0.15, lw=0)
    ax.set(xlim=lim, ylim=lim, xlabel="measured s", ylabel="predicted s",
           title="time to target (band: +-25%)")
    ax = axes[3]
    cev = cal[(cal.what == "eval") & (cal.metric == "val_loss_smoothed")]
    for r in calib.itertuples():
        e = cev[cev.run_id == r.run_id].sort_values("step")
        style = "-" if r.groups <= 1 else "--"
        ax.plot(e.elapsed_s, e.value, style, lw=1,
                label=f"{r.strategy} g{r.groups} b{r.update_batch:.0f} mu{r.momentum:.2f}")
    ax.axhline(conv.source["target_loss"], color="k", ls=":", lw=1)
    ax.set(xlabel="seconds (functional runs: not timing data)", ylabel="held-out loss (EMA)",
           title="calibration runs (fitted on; dashed: asynchronous)")
    ax.legend(fontsize=6, ncol=2)
    f = _save(fig, out, "time_to_target.png")
    tab = cmp.assign(error_percent=100 * cmp.error,
                     predicted_interval_s=[f"{fmt(a)}-{fmt(b)}" for a, b in
                                           zip(cmp.predicted_low_s, cmp.predicted_high_s)])
    cols = ["strategy", "workers", "groups", "threads", "batch", "update_batch", "straggler",
            "seeds", "censored", "measured_updates", "predicted_updates", "measured_s",
            "predicted_s", "predicted_interval_s", "error_percent"]
    cols = [c for c in cols if not (c in ("groups", "censored") and tab[c].nunique() == 1)]
    write_csv(tab[cols].rename(columns={"seeds": "runs"}), out, "time_to_target.csv", 3)
    fit = pd.DataFrame([dict(parameter=n, value=getattr(conv, n),
                             standard_error=getattr(conv, n + "_se", 0.0), unit=u,
                             fitted_on=", ".join(conv.source.get(k, [])))
                        for n, k, u in (("s_min", "s_min, b_noise", "updates"),
                                        ("b_noise", "s_min, b_noise", "samples"),
                                        ("gamma", "gamma, kappa", "1"),
                                        ("kappa", "gamma, kappa", "1/update"))
                        if conv.source.get(k)])  # a parameter nothing was fitted on: no row
    write_csv(fit, out, "convergence_fit.csv", 3)
    n_async = len(conv.source.get("gamma, kappa", []))
    async_text = (f"gamma = {fmt(conv.gamma)} +- {fmt(conv.gamma_se)}, kappa = "
                  f"{fmt(conv.kappa)} +- {fmt(conv.kappa_se)} per update of staleness "
                  f"({n_async} asynchronous runs)" if n_async > 2 and conv.gamma_se > 0 else
                  f"gamma = {fmt(conv.gamma)}, kappa = {fmt(conv.kappa)} from {n_async} "
                  "asynchronous runs (exactly determined: no standard error; make "
                  "convergence fits them on 4)" if n_async else
                  "gamma and kappa not fitted (no asynchronous calibration run)")
    med, tau = s["median_abs_error"], s["kendall_tau"]
    detail = (f"{s['configurations']} held-out configurations, {s['runs']} timed runs "
              "(other batches, worker counts, strategies, stragglers; none fitted on)")
    claims = [Claim("time to target loss: median |error| of the prediction", 100 * med, "%",
                    "<= 25%", bool(med <= 0.25), detail),
                  Claim("time to target loss: ranking (Kendall tau)", tau, "", ">= 0.8",
                        bool(tau >= 0.8) if tau == tau else None,
                        "predicted against measured order of the held-out configurations"),
                  Claim("time to target loss: held-out timed runs", s["runs"], "", ">= 8",
                        s["runs"] >= 8, f"{s['censored']} censored (cap reached first)")]
    text = (f"Every run trains the local workload ({calib.subject.iloc[0]} at "
            f"{calib.image_size.iloc[0]}x{calib.image_size.iloc[0]} px) until its smoothed held-out loss reaches "
            f"{conv.source['target_loss']:g} (chance: ln 2 = 0.693). Calibration (fitted on "
            f"{len(calib)} runs, never scored): S_min = {fmt(conv.s_min)} +- "
            f"{fmt(conv.s_min_se)} updates, B_noise = {fmt(conv.b_noise)} +- "
            f"{fmt(conv.b_noise_se)} samples; {async_text}. Held-out: median |error| of time "
            f"to target {fmt(100 * med)}% ({detail}; updates alone "
            f"{fmt(100 * s['median_abs_updates_error'])}%), Kendall tau {fmt(tau)}. "
            "Predicted time = updates (convergence model) x step time (throughput model from "
            "the node profiles and the ping-pong) / groups; intervals over +-1 standard error "
            "of the fitted parameters.")
    caption = ("Top left: each held-out run's smoothed held-out loss against training time, "
               "the triangle where the model predicted it would reach the target (bar: the "
               "interval). Top right: the gradient noise scale B_simple measured along the "
               "calibration runs, beside the fitted B_noise. Bottom left: predicted against "
               "measured time to target (band: +-25%). Bottom right: the calibration runs "
               "(dashed: asynchronous; functional runs, not timing data).")
    return [Section(title, text=text, figures=[f], captions={f: caption},
                    tables=["time_to_target.csv", "convergence_fit.csv"], claims=claims)]


TIMELINE_CASE = ["workload.net=\"resnet50\"", "workload.image_size=224",
                 "training.strategy=\"sync\"", "training.groups=1",
                 "training.param_servers=0", "training.workers=256",
                 "training.batch_per_worker=32"]


def timeline_section(out: Path, preset: str = "cori-knl-hep") -> Section:
    """One step on a timeline: compute (forward, then backward) and the in-group messages, for
    ResNet-50 on the preset's nodes, fused against DDP-style buckets sent as backward goes."""
    from .. import scenario as SC
    from ..model_cli import step_timeline

    plt, _ = _plt()
    fig, axes = plt.subplots(2, 1, figsize=(11, 4.2), sharex=True)
    rows = []
    for ax, (label, sets) in zip(axes, (
            ("fused, after backward", ['cluster.messages="fused"', "cluster.overlap=false"]),
            ("25 MiB buckets, overlapped", ['cluster.messages="bucketed"',
                                           "cluster.overlap=true"]))):
        s, _ = SC.load(preset, [*TIMELINE_CASE, *sets])
        tl = step_timeline(s)
        t_c = tl["compute_s"] * 1e3
        ready = SC.to_inputs(s).blob_ready  # the first gradient: forward has ended
        fwd = t_c * (float(np.min(ready)) if ready is not None else 1 / 3)
        ax.barh(1, fwd, color="#9ecae1", label="forward")
        ax.barh(1, t_c - fwd, left=fwd, color="#3182bd", label="backward")
        for m in tl["schedule"]:
            ax.barh(0, (m["end_s"] - m["start_s"]) * 1e3, left=m["start_s"] * 1e3,
                    color="#fdae6b", edgecolor="k", lw=0.4)
        ax.axvspan(t_c, t_c + tl["exposed_s"] * 1e3, color="red", alpha=0.12,
                   label="exposed communication")
        ax.set(yticks=[0, 1], yticklabels=["messages", "compute"],
               title=f"{label}: exposed {tl['exposed_s'] * 1e3:.0f} ms of "
                     f"{tl['communication_s'] * 1e3:.0f} ms")
        rows += [dict(case=label, **{k: v for k, v in m.items()}) for m in tl["schedule"]]
    axes[1].legend(fontsize=7, loc="center right")
    axes[1].set_xlabel("ms since the step began")
    f = _save(fig, out, "step_timeline.png")
    write_csv(pd.DataFrame(rows).rename(columns={"bytes": "message_bytes"}), out,
              "step_timeline.csv", 4)
    return Section("A step as a timeline (model)", figures=[f], tables=["step_timeline.csv"],
                   text="ResNet-50 (its ledger from kernels/zoo.py) at batch 32 on 256 of the "
                        f"{preset} preset's nodes, synchronous. perfmodel predict --timeline "
                        "prints the same schedule for any scenario.",
                   captions={f: "Top: one fused allreduce after backward, all of it exposed. "
                                "Bottom: gradients in 25 MiB buckets (PyTorch DDP's default), "
                                "each sent as soon as backward has produced it; only what ends "
                                "after backward (red) adds to the step."})


def plan_section(out: Path, preset: str = "cori-knl-hep", epochs: float = 10,
                 deadline_s: float = 1800.0) -> Section:
    """The planner on a preset: Pareto front of time vs node-hours and the recommendation."""
    from .. import plan as PL
    from .. import scenario as SC

    plt, sns = _plt()
    s, _ = SC.load_for_plan(preset)
    feasible, facts = PL.search(s, PL.Target(epochs=epochs), None, deadline_s, None)
    if feasible.empty:
        return Section("Planning", missing=f"no feasible plan: {facts.get('binding')}")
    front = PL.pareto(feasible)
    chosen = PL.recommend(feasible, deadline_s)
    front.to_csv(out / "plan_pareto.csv", index=False)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sample = feasible.sample(min(len(feasible), 20000), random_state=0)
    sns.scatterplot(data=sample, x="time_s", y="node_hours", hue="strategy", s=6,
                    alpha=0.3, linewidth=0, ax=ax)
    ax.plot(front.time_s, front.node_hours, "k-", lw=1.5, label="Pareto front")
    target = PL.Target(epochs=epochs)
    pred = PL.chosen_prediction(s, chosen)
    t_lo, t_hi = PL.time_interval_s(s, chosen, target, pred)
    a_lo, a_hi = PL.throughput_time_interval_s(chosen, pred)
    ax.errorbar([chosen.time_s], [chosen.node_hours], xerr=[[chosen.time_s - t_lo],
                [t_hi - chosen.time_s]], color="red", lw=1, capsize=3, zorder=4)
    ax.scatter([chosen.time_s], [chosen.node_hours], marker="*", s=200, color="red",
               label="recommended", zorder=5)
    ax.axvline(deadline_s, color="grey", ls="--", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="time to solution (s)", ylabel="node-hours",
           title=f"plan: {preset}, {epochs:g} epochs, deadline {deadline_s / 60:g} min")
    ax.legend(fontsize=8)
    f = _save(fig, out, "plan_pareto.png")
    why = "; ".join(PL.why_not(feasible, chosen))
    return Section("Planning a cluster run", figures=[f], tables=["plan_pareto.csv"],
                   text=f"{facts['evaluated']} configurations searched. Recommended (fewest "
                        f"node-hours within the deadline): {chosen.strategy}, "
                        f"{PL._cfg(chosen)} on {chosen.nodes} nodes, {PL._dur(chosen.time_s)},"
                        f" {chosen.node_hours:.4g} node-hours, chosen at the preset's "
                        f"nominal inputs; over every corner of its uncertain inputs it takes "
                        f"{PL._dur(t_lo)} to {PL._dur(t_hi)} (the throughput's inputs "
                        f"alone: {PL._dur(a_lo)} to {PL._dur(a_hi)}; the rest is the epochs "
                        f"the convergence assumptions charge), so it "
                        f"{'meets' if t_hi <= deadline_s else 'can miss'} the deadline. "
                        f"Why the others lose: {why}.",
                   captions={f: "Every configuration the planner evaluated (a sample), time "
                                "to solution against node-hours; the line is the Pareto front, "
                                "the star the recommendation (its bar: the time over the "
                                "uncertain inputs), the dashed line the deadline. "
                                "Batches past the preset's noise scale are charged the extra "
                                "epochs they cost."})


#: the published OS-noise measurement behind the detour default (perfmodel.model.stragglers)
_OS_RATE_HZ, _OS_DETOUR_S = detour_default()
#: one switch at a time on the Perlmutter preset, ResNet-50 at batch 32 per GPU
SCALE_EFFECTS = {
    "collective": [("ring", ['cluster.allreduce="ring"']),
                   ("MPICH's choice", ['cluster.allreduce="auto"']),
                   ("NCCL's choice", ['cluster.allreduce="nccl"'])],
    "messages": [("fused, after backward", ['cluster.messages="fused"']),
                 ("DDP buckets, overlapped", ['cluster.messages="bucketed"',
                                              "cluster.overlap=true"]),
                 ("Horovod cycles, overlapped", ['cluster.messages="horovod"',
                                                 "cluster.overlap=true"])],
    "taper": [("non-blocking", []),
              ("fat-tree 2:1 past 32 nodes", ["cluster.taper=2", "cluster.group_nodes=32"]),
              ("fat-tree 4:1 past 32 nodes", ["cluster.taper=4", "cluster.group_nodes=32"])],
    "noise": [("none", []),
              ("exponential 5.8 ms", ['cluster.straggler="exponential"']),
              ("OS noise as osnoise measured it", ['cluster.straggler="detour"',
                                                   f"cluster.straggler_rate_hz={_OS_RATE_HZ!r}",
                                                   f"cluster.straggler_scale={_OS_DETOUR_S!r}"]),
              ("detours 1 kHz x 25 us", ['cluster.straggler="detour"',
                                         "cluster.straggler_rate_hz=1000",
                                         "cluster.straggler_scale=25e-6"])],
}
SCALE_EFFECTS_BASE = ['workload.net="resnet50"', "workload.image_size=224",
                      "training.batch_per_worker=32", 'cluster.straggler="none"']


def scale_effects_section(out: Path, preset: str = "perlmutter-gpu-hep") -> Section:
    """Efficiency against GPUs for ResNet-50 on the preset, one effect at scale switched at a
    time (model only: each switch's mechanism is in perfmodel/model/throughput.py)."""
    from .. import scenario as SC
    from ..model.throughput import evaluate

    plt, _ = _plt()
    gpus = np.unique(np.round(np.geomspace(4, 7168, 12) / 4) * 4)
    rows = []
    for effect, cases in SCALE_EFFECTS.items():
        for label, sets in cases:
            s, _ = SC.load(preset, [*SCALE_EFFECTS_BASE, *sets])
            r = evaluate(SC.to_inputs(s), "sync", gpus, 1, 0, 32)
            rows += [dict(effect=effect, case=label, gpus=int(g), efficiency=float(e))
                     for g, e in zip(gpus, r["efficiency"])]
    df = pd.DataFrame(rows)
    write_csv(df, out, "scale_effects.csv", 4)
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6), sharey=True)
    for ax, (effect, part) in zip(axes, df.groupby("effect", sort=False)):
        for label, d in part.groupby("case", sort=False):
            ax.plot(d.gpus, d.efficiency, "o-", ms=3, label=label)
        ax.set(xscale="log", xlabel="GPUs", title=effect, ylim=(0, 1.05))
        ax.legend(fontsize=7)
    axes[0].set_ylabel("efficiency (sustained)")
    f = _save(fig, out, "scale_effects.png")
    return Section("Effects at scale (model)", figures=[f], tables=["scale_effects.csv"],
                   text=f"ResNet-50 at batch 32 per GPU on the {preset} preset, synchronous, "
                        "one switch at a time against the preset (NCCL's choice, fused "
                        "messages, a non-blocking network) without stragglers, which the "
                        "right panel adds (the preset's 5.8 ms is the delay fitted on Cori, "
                        "an assumption on Perlmutter). "
                        "Noise as osnoise measured it is the detour default, a published "
                        f"measurement on a stock Linux machine ({_OS_RATE_HZ / 1e3:.2f} kHz x "
                        f"{_OS_DETOUR_S * 1e6:.1f} us per CPU, taken as the node's; see "
                        "perfmodel/model/stragglers.py); the 25 us detours are an "
                        "illustration, not a measurement.",
                   captions={f: "Efficiency (sustained throughput over GPUs that never wait) "
                                "against GPUs. Left to right: the allreduce algorithm, how "
                                "gradients are sent, the network's taper past 32 nodes, and "
                                "per-node noise (the slowest of the GPUs sets the step)."})


def paper_sections(out: Path) -> list[Section]:
    """The paper's figures beside the model's (deterministic)."""
    from ..reproduce import WIDTH, passed, reproduce, scored

    plt, sns = _plt()
    figs, extra = reproduce()
    r4 = lambda x: round(x, 4) if math.isfinite(x) else None  # noqa: E731
    yes = lambda b: None if b is None else ("yes" if b else "no")  # noqa: E731
    rows = [dict(figure=f.what, published=f.published, unit=f.unit, model=r4(f.predicted),
                 model_low=r4(f.low), model_high=r4(f.high),
                 error_percent=round(100 * f.error, 2) if math.isfinite(f.error) else None,
                 inside=yes(f.inside), half_width_percent=round(100 * f.half_width, 1)
                 if math.isfinite(f.half_width) else None,
                 used_as=f.status, reproduced=yes(passed(f)), note=f.note) for f in figs]
    pd.DataFrame(rows).to_csv(out / "reproduction.csv", index=False)
    fit = pd.DataFrame([dict(parameter=k, value=round(v[0], 6), unit=v[1], fitted_on=v[2])
                        for k, v in extra["fitted"].items()])
    fit.to_csv(out / "fitted_parameters.csv", index=False)
    sc = pd.DataFrame({"nodes": extra["strong_nodes"] * 2,
                       "speedup": extra["strong_speedup_hep"] + extra["strong_speedup_climate"],
                       "net": ["hep"] * len(extra["strong_nodes"])
                       + ["climate"] * len(extra["strong_nodes"])})
    sc.round(4).to_csv(out / "strong_scaling_model.csv", index=False)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    sns.lineplot(data=sc, x="nodes", y="speedup", hue="net", marker="o", ax=axes[0])
    axes[0].plot(sc.nodes.unique(), sc.nodes.unique(), "k:", lw=1, label="ideal")
    axes[0].scatter([512], [320], marker="*", s=150, color="red", label="paper: 320x at 512")
    axes[0].axvline(256, color="grey", ls="--", lw=1)
    axes[0].set(xscale="log", yscale="log", ylabel="speedup over one node at batch 8",
                title="sync strong scaling, batch 2048 (model)")
    axes[0].legend(fontsize=8)
    wk = pd.DataFrame({"nodes": extra["weak_nodes"] * 2,
                       "efficiency": extra["weak_eff_sync"] + extra["weak_eff_hybrid"],
                       "strategy": ["sync"] * len(extra["weak_nodes"])
                       + ["hybrid (8 groups)"] * len(extra["weak_nodes"])})
    wk.round(4).to_csv(out / "weak_scaling_model.csv", index=False)
    sns.lineplot(data=wk, x="nodes", y="efficiency", hue="strategy", marker="o", ax=axes[1])
    axes[1].set(xscale="log", ylim=(0, 1.05), title="climate weak scaling, batch 8 (model)")
    tt = extra["time_to_target"]
    ttd = pd.DataFrame({"groups": tt["groups"], "time_to_target_s": tt["time_s"],
                        "low_s": tt["time_low_s"], "high_s": tt["time_high_s"]})
    ttd.round(2).to_csv(out / "time_to_target_model.csv", index=False)
    ax = axes[2]
    ax.fill_between(ttd.groups, ttd.low_s / 60, ttd.high_s / 60, alpha=0.2,
                    label="range over the assumptions")
    ax.plot(ttd.groups, ttd.time_to_target_s / 60, "o-", label="nominal")
    ax.set(xscale="log", yscale="log", xlabel="groups (1 = sync on every node)",
           ylabel="minutes to loss 0.05",
           title="HEP time to loss 0.05 on 9600 nodes (assumed)")
    ax.legend(fontsize=8)
    f1 = _save(fig, out, "paper_scaling.png")
    sc = scored(figs)
    return [Section("The paper's figures beside the model's",
                    text=f"Reproduced: {sum(bool(passed(f)) for f in sc)} of {len(sc)} scored "
                         "held-out figures. Each figure is the model at the presets' nominal "
                         "inputs and its interval over every corner of their uncertain inputs ("
                         + ", ".join(extra["uncertain_inputs"]) + "). A figure is reproduced "
                         "when the published value lies inside an interval no wider than "
                         f"+-{100 * WIDTH['throughput']:.0f}% (throughputs) or "
                         f"+-{100 * WIDTH['ratio']:.0f}% (ratios, knees) and the nominal meets "
                         "the tolerance. Fitted parameters are listed with the figure each was "
                         "fitted on; those figures do not count. Statements without their node "
                         "range are shown as curves, not scored; a figure blocked by an input "
                         "that is not public names it. Time to "
                         "target (right) rests on the preset's stated convergence assumption "
                         f"intervals: best sync over best hybrid is {tt['ratio']:.2f}x nominal, "
                         f"[{tt['ratio_low']:.2f}, {tt['ratio_high']:.2f}]x over them (the paper: "
                         "1.66x); sync pays in updates past the critical batch, hybrid in "
                         "staleness.",
                    figures=[f1], tables=["reproduction.csv", "fitted_parameters.csv",
                                          "strong_scaling_model.csv",
                                          "weak_scaling_model.csv",
                                          "time_to_target_model.csv"],
                    captions={f1: "The model at the paper's scale. Left: sync strong scaling "
                                  "(the star: the paper's 320x at 512 nodes), as the paper "
                                  "counts speedups: over one node's rate at batch 8. A few "
                                  "nodes, each with a large share of the 2048, run faster than "
                                  "at batch 8 (Intel Caffe's curve, nominal reading: 1.41x at "
                                  "128 and beyond; its conv and FC layers alone: 1.07x), "
                                  "hence the points above the diagonal. Middle: climate "
                                  "weak-scaling efficiency, sync and hybrid. Right: HEP time to "
                                  "loss 0.05 against the number of asynchronous groups on 9600 "
                                  "nodes, over the preset's assumed convergence intervals (the "
                                  "band): a model figure, not a measurement."})]


CHECK_SCRIPT = """<script>
window.addEventListener('load', function () {
  var imgs = document.images, bad = 0;
  for (var i = 0; i < imgs.length; i++) if (!imgs[i].complete || imgs[i].naturalWidth === 0) bad++;
  document.body.setAttribute('data-images', imgs.length);
  document.body.setAttribute('data-broken-images', bad);
});
</script>"""


FOLD_ROWS = 12  # longer tables are folded (and always linked as CSV)


def _cell(v) -> str:
    if isinstance(v, float):
        return "–" if not math.isfinite(v) else fmt(v, 4)
    return html.escape(str(v)) if str(v) != "" else "–"


def _table_html(out: Path, name: str, functional: bool = False) -> str:
    df = pd.read_csv(out / name, keep_default_na=False, na_values=[""])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>"
                   for row in df.itertuples(index=False))
    table = f"<table><tr>{head}</tr>{body}</table>"
    label = (f"<a href='{html.escape(name)}'>{html.escape(name)}</a> ({len(df)} rows"
             + ("; functional runs: more ranks x threads than cores, not timing data"
                if functional else "") + ")")
    if len(df) > FOLD_ROWS:
        return f"<details><summary>table {label}</summary>{table}</details>"
    return f"<p class='tab'>table {label}</p>{table}"


def _claims_html(claims: list[Claim]) -> str:
    rows = []
    for c in claims:
        verdict = _verdict(c)
        cls = {"pass": "ok", "FAIL": "fail", "stated": "st"}.get(verdict, "na")
        rows.append(f"<tr><td style='text-align:left'>{html.escape(c.claim)}</td>"
                    f"<td>{html.escape(fmt(c.value, 3, c.unit))}</td>"
                    f"<td>{html.escape(c.tolerance)}</td><td class='{cls}'>{verdict}</td>"
                    f"<td style='text-align:left'>{html.escape(c.detail)}</td></tr>")
    return ("<table class='claims'><tr><th>claim</th><th>measured</th><th>tolerance</th>"
            "<th>verdict</th><th>how</th></tr>" + "".join(rows) + "</table>")


def _verdict(c: Claim) -> str:
    if c.tolerance == "stated":
        return "stated"
    return "not measured" if c.passed is None else ("pass" if c.passed else "FAIL")


def summary_frame(claims: list[Claim]) -> pd.DataFrame:
    """The claims as the summary.csv table (every number of the summary on top is here)."""
    return pd.DataFrame([dict(claim=c.claim, value=float(fmt(c.value, 3)) if c.value is not
                              None and math.isfinite(c.value) else np.nan, unit=c.unit,
                              tolerance=c.tolerance, verdict=_verdict(c).lower(),
                              how=c.detail)
                         for c in claims])


STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;font-size:13px;margin:0.5em 0 1em;display:block;"
         "overflow-x:auto;max-width:100%}"
         "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
         "img{max-width:100%}.missing{color:#a40}.caption{color:#555;font-size:14px;"
         "margin-top:0}.ok{color:#060;font-weight:bold}.fail{color:#b00;font-weight:bold}"
         ".na{color:#a40}.st{color:#555}.machine{background:#f4f4f4;padding:0.6em}.tab{margin-bottom:0}")


def write_html(out: Path, title: str, sections: list[Section], intro: str = "",
               machine: str = "") -> Path:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{STYLE}</style>{CHECK_SCRIPT}</head><body>"
             f"<h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>"]
    if machine:
        parts.append(f"<p class='machine'>{html.escape(machine)}</p>")
    claims = [c for s in sections for c in s.claims]
    if claims:
        parts.append("<h2>Summary: what holds</h2>" + _claims_html(claims)
                     + "<p class='caption'>Each claim with its tolerance; the numbers are in "
                       "<a href='summary.csv'>summary.csv</a>, the measurements behind them "
                       "in the sections below and in results/.</p>")
    missing = [s for s in sections if s.missing]
    if missing:
        parts.append("<p class='missing'>Partial report; missing: " + "; ".join(
            html.escape(f"{s.title} ({s.missing})") for s in missing) + "</p>")
    for s in sections:
        if s.missing:
            continue
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.text:
            parts.append(f"<p>{html.escape(s.text)}</p>")
        for f in s.figures:
            parts.append(f"<p><img src='{html.escape(f)}' alt='{html.escape(f)}'></p>")
            if f in s.captions:
                parts.append(f"<p class='caption'>{html.escape(s.captions[f])}</p>")
        for t in s.tables:
            parts.append(_table_html(out, t, functional=t in s.functional))
    parts.append("</body></html>")
    path = out / "index.html"
    path.write_text("\n".join(parts))
    return path


def write_summary(out: Path, title: str, sections: list[Section], machine: str = "") -> Path:
    lines = [f"# {title}", ""]
    if machine:
        lines += [machine, ""]
    claims = [c for s in sections for c in s.claims]
    if claims:
        lines += ["## Summary: what holds", "", "| claim | measured | tolerance | verdict |",
                  "|---|---|---|---|"]
        for c in claims:
            verdict = _verdict(c)
            lines.append(f"| {c.claim} | {fmt(c.value, 3, c.unit)} | {c.tolerance} | "
                         f"{verdict} |")
        lines.append("")
    for s in sections:
        lines.append(f"## {s.title}")
        lines.append("")
        lines.append(f"Missing: {s.missing}" if s.missing else (s.text or ""))
        for f in s.figures:
            lines.append(f"![{f}]({f})")
            if f in s.captions:
                lines.append(f"*{s.captions[f]}*")
        for t in s.tables:
            lines.append(f"- table: [{t}]({t})")
        lines.append("")
    path = out / "summary.md"
    path.write_text("\n".join(lines))
    return path


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
