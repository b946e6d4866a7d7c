"""The MPI harness's runs against the throughput model: measured and predicted throughput,
speedup and efficiency, per configuration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ...stats import kendall_tau
from ..common import Claim, Section, plotting, relative_spread, save_figure, write_csv


RUN_KEYS = ["strategy", "workers", "groups", "param_servers", "threads", "batch", "subject",
            "image_size", "straggler", "functional"]
#: the bars of the throughput model on this machine (issue #13)
THROUGHPUT_ERROR_BAR = 0.10
#: per worker count: one worker alone; two workers, whose compute beside each other the busy
#: profile measures and whose exchange the ping-pong does
WORKER_ERROR_BAR = {1: 0.10, 2: 0.15}
TAU_BAR = 0.8


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
    plt, sns = plotting()
    runs = df[(df.what == "run") & (df.metric == "sample_rate")]
    if runs.empty:
        return [Section("Scaling: measured and predicted",
                        missing="no perfmodel scale results")]
    secs = []
    runs = runs.assign(workers=runs.ranks - runs.param_servers,
                       kind=np.where(runs.functional, "functional", "timed"))
    # one row per configuration and statistic: the median over its rounds, and their spread
    agg = runs.groupby(RUN_KEYS + ["stat"], as_index=False).agg(
        value=("value", "median"), rounds=("value", "size"), spread=("value", relative_spread))
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
    f1 = save_figure(fig, out, "scaling.png")
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
        # per worker count: a median over every run hides the configurations that lose (two
        # ranks on this node slow each other's compute), so each count is scored apart
        for w, part in timed.groupby("workers"):
            bar = WORKER_ERROR_BAR.get(int(w), WORKER_ERROR_BAR[2])
            med_w = float(np.median(np.abs(part.error)))
            claims.append(Claim(f"throughput model, {int(w)} worker(s): median |error| of "
                                "sustained samples/s", 100 * med_w, "%",
                                f"<= {100 * bar:.0f}%", med_w <= bar,
                                f"{len(part)} timed configurations"
                                + ("; predicted from the profile with as many ranks busy "
                                   "where one was measured (perfmodel node --busy-ranks), "
                                   "else from the profile alone" if w > 1 else "")))
        sync2 = timed[(timed.strategy == "sync") & (timed.workers == 2)]
        if len(sync2):
            worst = float(np.max(np.abs(sync2.error)))
            claims.append(Claim("2-worker sync runs: largest |error| of sustained samples/s",
                                100 * worst, "%", f"<= {100 * WORKER_ERROR_BAR[2]:.0f}%",
                                worst <= WORKER_ERROR_BAR[2],
                                f"{len(sync2)} configurations (with and without stragglers)"))
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
        f_eff = save_figure(fig, out, "speedup.png")
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
        f3 = save_figure(fig, out, "stragglers.png")
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
        f4 = save_figure(fig, out, "prediction_error.png")
        write_csv(e[["config", "stat", "pct", "rounds", "spread"]].rename(
            columns={"pct": "error_percent", "spread": "spread_across_rounds"}), out,
            "prediction_error.csv", 3)
        secs.append(Section("Prediction error", figures=[f4], tables=["prediction_error.csv"],
                            captions={f4: "Relative error of each configuration's predicted "
                                          "throughput; dotted lines at +-10%. Functional runs "
                                          "are marked and left out of every median."}))
    return secs
