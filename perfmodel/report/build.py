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

from ..results import ResultsError, read_results
from ..ui import UserError


@dataclass
class Section:
    title: str
    text: str = ""
    figures: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)   # CSV file names
    missing: str = ""


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


def node_sections(df: pd.DataFrame, out: Path) -> list[Section]:
    plt, sns = _plt()
    node = df[(df.implementation == "numba") & df.what.isin(["layer", "step", "peak",
                                                             "bandwidth"])]
    layers = node[(node.what == "layer") & (node.metric == "flop_rate")]
    if layers.empty:
        return [Section("Node: per-layer FLOP rates and roofline",
                        missing="no perfmodel node results (per-layer rows)")]
    run = _latest(layers)
    batch = int(run.batch.iloc[0])
    peaks = node[node.what == "peak"].groupby("subject")["value"].max()
    triad = node[node.what == "bandwidth"]["value"].max()
    peak = float(peaks.max()) if len(peaks) else np.nan  # the larger of FMA loop and sgemm
    secs = []
    run = run[run.batch == batch]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    sns.barplot(data=run.assign(gflops=run.value / 1e9), x="layer", y="gflops", hue="phase",
                ax=ax)
    for name, v in peaks.items():
        ax.axhline(v / 1e9, ls="--", lw=1, color="k" if name == "fma" else "grey")
        ax.text(len(run.layer.unique()) - 0.5, v / 1e9, f" {name} peak", va="bottom",
                ha="right", fontsize=8)
    ax.set(ylabel="GFLOP/s", xlabel="", title=f"{run.subject.iloc[0]} {run.image_size.iloc[0]}"
           f"px, batch {batch}, {run.threads.iloc[0]} thread(s)")
    ax.tick_params(axis="x", rotation=60)
    f1 = _save(fig, out, "node_layers.png")
    tab = run[["layer", "phase", "value", "flop", "bytes"]].rename(columns={"value": "flops"})
    tab = tab.assign(percent_of_measured_peak=100 * tab.flops / peak,
                     flop_per_byte=tab.flop / tab.bytes.replace(0, np.nan))
    tab.to_csv(out / "node_layers.csv", index=False)
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
    secs.append(Section("Node: per-layer FLOP rates and roofline",
                        text=f"FP32 peak measured: FMA loop {peak / 1e9:.1f} GFLOP/s, sgemm "
                             f"{peaks.get('sgemm', np.nan) / 1e9:.1f} GFLOP/s; triad "
                             f"{triad / 1e9:.1f} GB/s. FLOPs: 2 per multiply-add, padded taps "
                             "counted.", figures=[f1, f2], tables=["node_layers.csv"]))
    steps = node[(node.what == "step") & (node.metric == "sample_rate")]
    if steps.empty:
        secs.append(Section("Node: rate vs batch", missing="no step rows"))
    else:
        s = steps.assign(config=steps.subject + " " + steps.image_size.astype(str) + "px, "
                         + steps.threads.astype(str) + " thr")
        fig, ax = plt.subplots(figsize=(6.5, 4))
        sns.lineplot(data=s, x="batch", y="value", hue="config", marker="o", ax=ax,
                     errorbar=None)
        ax.set(xscale="log", xlabel="local batch", ylabel="samples/s",
               title="training rate vs local batch")
        f3 = _save(fig, out, "node_rate_vs_batch.png")
        s[["subject", "image_size", "threads", "batch", "value", "min", "max"]].to_csv(
            out / "node_rate_vs_batch.csv", index=False)
        secs.append(Section("Node: rate vs batch", figures=[f3],
                            tables=["node_rate_vs_batch.csv"]))
    peer = df[df.what == "ratio"]
    if not peer.empty and (peer.phase == "step").any():
        r = peer[peer.phase == "step"][["subject", "implementation", "batch", "value"]]
        r.to_csv(out / "peer_ratio.csv", index=False)
        secs.append(Section("Node: against PyTorch", text="speed of ours over torch (> 1: "
                            "ours faster)", tables=["peer_ratio.csv"]))
    return secs


def harness_sections(df: pd.DataFrame, out: Path) -> list[Section]:
    plt, sns = _plt()
    runs = df[(df.what == "run") & (df.metric == "sample_rate")]
    if runs.empty:
        return [Section("Scaling: measured and predicted",
                        missing="no perfmodel scale results")]
    secs = []
    runs = runs.assign(workers=runs.ranks - runs.param_servers,
                       kind=np.where(runs.functional, "functional", "timed"))
    pred = df[(df.what == "prediction") & (df.metric == "sample_rate")]
    sust = runs[runs.stat == "sustained"]
    keys = ["strategy", "ranks", "groups", "param_servers", "threads", "batch", "subject",
            "image_size", "straggler", "stat"]
    both = runs.merge(pred[keys + ["value"]].rename(columns={"value": "predicted"}), on=keys,
                      how="inner")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, stat in zip(axes, ("sustained", "peak")):
        m = both[both.stat == stat]
        if m.empty:
            ax.set_title(f"{stat}: no predictions (run perfmodel validate)")
            continue
        sns.scatterplot(data=m, x="value", y="predicted", hue="strategy", style="kind", s=70,
                        ax=ax)
        lim = [0, 1.1 * max(m.value.max(), m.predicted.max())]
        ax.plot(lim, lim, "k:", lw=1)
        ax.fill_between(lim, [0.85 * v for v in lim], [1.15 * v for v in lim], color="grey",
                        alpha=0.15, lw=0)
        ax.set(xlim=lim, ylim=lim, xlabel="measured samples/s", ylabel="predicted samples/s",
               title=f"{stat} throughput (band: +-15%)")
    f1 = _save(fig, out, "scaling.png")
    cols = ["strategy", "workers", "groups", "param_servers", "threads", "batch",
            "straggler", "functional", "stat", "value"]
    runs[cols].to_csv(out / "scaling.csv", index=False)
    text = ("Throughput of each harness run; functional runs (ranks x threads above the "
            "cores) are marked and are not scaling data.")
    base = sust[(sust.workers == 1) & ~sust.functional & (sust.straggler == "")]
    if not base.empty:
        b = base.groupby("strategy")["value"].max()
        eff = sust.assign(speedup=sust.value / sust.strategy.map(b))
        eff = eff.assign(efficiency=eff.speedup / eff.workers)
        eff[["strategy", "workers", "groups", "straggler", "functional", "speedup",
             "efficiency"]].to_csv(out / "speedup.csv", index=False)
        e = eff[eff.straggler == ""].assign(kind=np.where(eff[eff.straggler == ""].functional,
                                                          "functional", "timed"))
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, col in zip(axes, ("speedup", "efficiency")):
            sns.lineplot(data=e, x="workers", y=col, hue="strategy", style="kind",
                         markers=True, errorbar=None, ax=ax)
            ax.set(title=f"weak scaling {col} (batch per worker fixed; over 1 worker)")
        axes[0].plot([1, e.workers.max()], [1, e.workers.max()], "k:", lw=1)
        f_eff = _save(fig, out, "speedup.png")
        secs.append(Section("Scaling: measured and predicted", text=text, figures=[f1, f_eff],
                            tables=["scaling.csv", "speedup.csv"]))
    else:
        secs.append(Section("Scaling: measured and predicted", text=text, figures=[f1],
                            tables=["scaling.csv"]))
    ph = df[(df.what == "run") & (df.metric == "time") & df.phase.isin(
        ["compute", "straggle", "wait", "comm", "ps", "io"])]
    if not ph.empty:
        ph = ph.assign(config=ph.subject + "@" + ph.image_size.astype(str) + " b"
                       + ph.batch.astype(str) + " " + ph.strategy + " w"
                       + (ph.ranks - ph.param_servers).astype(str) + " g"
                       + ph.groups.astype(str) + " " + ph.straggler.replace("", "-"))
        piv = ph.pivot_table(index="config", columns="phase", values="value", aggfunc="median")
        fig, ax = plt.subplots(figsize=(9, 4.5))
        (piv * 1e3).plot.barh(stacked=True, ax=ax)
        ax.set(xlabel="ms per iteration (median)", ylabel="", title="where an iteration goes: "
               "the cost of stragglers")
        f3 = _save(fig, out, "stragglers.png")
        piv.to_csv(out / "iteration_breakdown.csv")
        secs.append(Section("The cost of stragglers", figures=[f3],
                            tables=["iteration_breakdown.csv"]))
    err = df[(df.what == "error") & (df.metric == "rel_error")]
    if err.empty:
        secs.append(Section("Prediction error", missing="no perfmodel validate rows"))
    else:
        e = err.assign(config=err.strategy + " w" + (err.ranks - err.param_servers).astype(str)
                       + " g" + err.groups.astype(str) + " b" + err.batch.astype(str) + " "
                       + err.straggler.replace("", "-") + np.where(err.functional, " (f)",
                                                                   ""))
        fig, ax = plt.subplots(figsize=(8, 4.5))
        sns.barplot(data=e.assign(pct=100 * e.value), y="config", x="pct", hue="stat", ax=ax)
        ax.axvline(0, color="k", lw=1)
        ax.set(xlabel="predicted / measured - 1 (%)", ylabel="", title="prediction error "
               "((f): functional run)")
        f4 = _save(fig, out, "prediction_error.png")
        timed = e[~e.functional]
        med = {s: 100 * np.nanmedian(np.abs(g.value)) for s, g in timed.groupby("stat")}
        e[["config", "stat", "value", "functional"]].to_csv(out / "prediction_error.csv",
                                                            index=False)
        secs.append(Section("Prediction error", figures=[f4], tables=["prediction_error.csv"],
                            text="median |error| over timed runs: " + ", ".join(
                                f"{k} {v:.1f}%" for k, v in med.items())))
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
        e = ev[ev.run_id == r.run_id].sort_values("step")
        ax.plot(e.elapsed_s, e.value, color=colour, lw=1.3, label=lab[r.run_id])
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
    tab = cmp[["strategy", "workers", "groups", "threads", "batch", "update_batch",
               "straggler", "censored", "measured_updates", "predicted_updates",
               "measured_s", "predicted_s", "predicted_low_s", "predicted_high_s",
               "error"]].copy()
    tab["error"] = (100 * tab.error).round(1)
    tab.round(3).to_csv(out / "time_to_target.csv", index=False)
    fit = pd.DataFrame([dict(parameter=n, value=round(getattr(conv, n), 4),
                             standard_error=round(getattr(conv, n + "_se", 0.0), 4),
                             fitted_on=", ".join(conv.source.get(k, [])))
                        for n, k in (("s_min", "s_min, b_noise"), ("b_noise", "s_min, b_noise"),
                                     ("gamma", "gamma, kappa"), ("kappa", "gamma, kappa"))])
    fit.to_csv(out / "convergence_fit.csv", index=False)
    bar = (s["runs"] >= 8 and s["median_abs_error"] <= 0.25 and s["kendall_tau"] >= 0.8)
    text = (f"Calibration (fitted, {len(calib)} runs to held-out loss "
            f"{conv.source['target_loss']:g}; never scored): S_min = {conv.s_min:.0f} "
            f"+- {conv.s_min_se:.0f} updates, B_noise = {conv.b_noise:.1f} +- "
            f"{conv.b_noise_se:.1f} samples, gamma = {conv.gamma:.2f} +- {conv.gamma_se:.2f},"
            f" kappa = {conv.kappa:.2f} +- {conv.kappa_se:.2f}. Held-out timed runs (other "
            f"batches, worker counts, strategies, stragglers; none used in a fit): median "
            f"|error| of time to target {100 * s['median_abs_error']:.1f}% over {s['runs']} "
            f"runs (updates alone {100 * s['median_abs_updates_error']:.1f}%), Kendall tau "
            f"{s['kendall_tau']:.2f}; the bar (>= 8 runs, <= 25%, tau >= 0.8) is "
            f"{'met' if bar else 'NOT met'}. Predicted = updates (convergence model) x step "
            "time (throughput model from the node profile) / groups.")
    return [Section(title, text=text, figures=[f],
                    tables=["time_to_target.csv", "convergence_fit.csv"])]


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
                        f" {chosen.node_hours:.4g} node-hours. Why the others lose: {why}.")


def paper_sections(out: Path) -> list[Section]:
    """The paper's figures beside the model's (deterministic)."""
    from ..reproduce import passed, reproduce

    plt, sns = _plt()
    figs, extra = reproduce()
    rows = [dict(figure=f.what, published=f.published, unit=f.unit,
                 model=round(f.predicted, 4) if math.isfinite(f.predicted) else None,
                 error_percent=round(100 * f.error, 2) if math.isfinite(f.predicted) else None,
                 used_as=f.status, within_tolerance=passed(f), note=f.note) for f in figs]
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
    axes[0].set(xscale="log", yscale="log", title="sync strong scaling, batch 2048 (model)")
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
    held = [passed(f) for f in figs if f.status == "held out"]
    return [Section("The paper's figures beside the model's",
                    text=f"Held-out figures within tolerance: {sum(bool(h) for h in held)} of "
                         f"{len(held)}. Fitted parameters are listed with the figure each was "
                         "fitted on; those figures do not count as reproduced. Time to "
                         "target (right) rests on the preset's stated convergence assumption "
                         f"intervals: best sync over best hybrid is {tt['ratio']:.2f}x nominal, "
                         f"[{tt['ratio_low']:.2f}, {tt['ratio_high']:.2f}]x over them (the paper: "
                         "1.66x); sync pays in updates past the critical batch, hybrid in "
                         "staleness.",
                    figures=[f1], tables=["reproduction.csv", "fitted_parameters.csv",
                                          "strong_scaling_model.csv",
                                          "weak_scaling_model.csv",
                                          "time_to_target_model.csv"])]


CHECK_SCRIPT = """<script>
window.addEventListener('load', function () {
  var imgs = document.images, bad = 0;
  for (var i = 0; i < imgs.length; i++) if (!imgs[i].complete || imgs[i].naturalWidth === 0) bad++;
  document.body.setAttribute('data-images', imgs.length);
  document.body.setAttribute('data-broken-images', bad);
});
</script>"""


def write_html(out: Path, title: str, sections: list[Section], intro: str = "") -> Path:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             "</title><style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;"
             "color:#222}table{border-collapse:collapse;font-size:13px;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
             "img{max-width:100%}.missing{color:#a40}</style>"
             f"{CHECK_SCRIPT}</head><body><h1>{html.escape(title)}</h1>"
             f"<p>{html.escape(intro)}</p>"]
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
        for t in s.tables:
            df = pd.read_csv(out / t, keep_default_na=False)
            parts.append(f"<h3>{html.escape(t)}</h3>"
                         + df.head(60).to_html(index=False, float_format=lambda v: f"{v:.4g}"))
    parts.append("</body></html>")
    path = out / "index.html"
    path.write_text("\n".join(parts))
    return path


def write_summary(out: Path, title: str, sections: list[Section]) -> Path:
    lines = [f"# {title}", ""]
    for s in sections:
        lines.append(f"## {s.title}")
        lines.append("")
        lines.append(f"Missing: {s.missing}" if s.missing else (s.text or ""))
        for f in s.figures:
            lines.append(f"![{f}]({f})")
        for t in s.tables:
            lines.append(f"- table: [{t}]({t})")
        lines.append("")
    path = out / "summary.md"
    path.write_text("\n".join(lines))
    return path


def build(out: str | Path, results: list[str | Path], paper: bool = True,
          title: str = "perfmodel report", plan: bool = True,
          convergence: str | Path | None = None) -> Path:
    """The report folder ``out`` from ``results`` files (and the model's paper figures);
    ``convergence``: a ``perfmodel converge`` folder for the time-to-target section."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    df = load(results)
    sections: list[Section] = []
    if df.empty:
        sections.append(Section("Measurements", missing="no results files given"))
    else:
        sections += node_sections(df, out)
        sections += harness_sections(df, out)
    sections += convergence_sections(out, None if convergence is None else Path(convergence))
    if paper:
        sections += paper_sections(out)
    if plan:
        sections.append(plan_section(out))
    write_summary(out, title, sections)
    return write_html(out, title, sections, intro="Measured next to predicted. "
                      "Every figure comes from the results files listed in summary.md's "
                      "folder; see the README for the commands.")
