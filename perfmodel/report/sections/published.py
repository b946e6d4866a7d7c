"""Published scaling runs of other systems against the model: the development set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ...judge import published as P
from ...judge import ttt as T
from ...model import zoo_convergence as ZC
from ..common import Claim, Section, plotting, save_figure, write_csv


def published_section(out: Path) -> Section:
    """Predicted against published efficiency, one point per case of the development set
    (``perfmodel published``), with the set's figures as stated claims."""
    cases = P.run()
    s = P.summary(cases)
    df = pd.DataFrame([dict(case=c.name, source=c.source, kind=c.kind, devices=c.devices,
                            vs_devices=c.baseline_devices, published=c.published,
                            predicted=c.predicted, low=c.low, high=c.high, error=c.error)
                       for c in cases]).sort_values("published")
    write_csv(df, out, "published.csv", 4)
    plt, _ = plotting()
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    x = np.linspace(0, 1.05, 2)
    ax.plot(x, x, color="0.4", lw=1, label="predicted = published")
    ax.fill_between(x, x * (1 - P.WITHIN), x * (1 + P.WITHIN), color="0.85",
                    label=f"within {100 * P.WITHIN:.0f}%")
    for kind, marker in (("GPU", "o"), ("CPU", "s")):
        d, label = df[df.kind == kind], f"{kind} runs"
        ax.errorbar(d.published, d.predicted, yerr=[d.predicted - d.low, d.high - d.predicted],
                    fmt=marker, ms=4, capsize=2, lw=0.8, label=label)
    ax.set(xlim=(0, 1.05), ylim=(0, 1.05), xlabel="published efficiency",
           ylabel="predicted efficiency (interval over the uncertain inputs)")
    ax.legend(loc="lower right", fontsize=8)
    f = save_figure(fig, out, "published.png")
    claims = [
        Claim("published runs: median absolute error of efficiency", 100 * s["median_abs_error"], "%",
              "stated", None, f"{s['cases']} runs from {s['sources']} sources: perfmodel "
              "published"),
        Claim("published runs: Kendall tau, predicted against published efficiency",
              s["kendall_tau"], "", "stated", None, "the ranking of runs by efficiency"),
        Claim("published runs: lost efficiency explained (predicted / published sum of 1 - e)",
              s["loss_ratio"], "", "stated", None, "1 = the model loses what the runs lost"),
        Claim(f"published runs with e <= {P.LOW_EFFICIENCY:g} predicted within "
              f"{100 * P.WITHIN:.0f}%", s["low_efficiency_within"], "runs", "stated", None,
              f"of {s['low_efficiency_cases']}")]
    return Section("Published runs of other systems (development set)", figures=[f],
                   tables=["published.csv"], claims=claims,
                   text=f"{s['cases']} published data-parallel scaling results from "
                        f"{s['sources']} sources (papers, vendor tables, MLPerf logs, issue "
                        "threads), each a scenario whose inputs carry their sources "
                        "(perfmodel/judge/published/). The model predicts each run and the "
                        "baseline its efficiency is against from the same inputs. A "
                        "development set: it shows which mechanisms the model lacks; nothing "
                        "in it is fitted to a case.",
                   captions={f: "Predicted against published efficiency, one point per run; "
                                "bars: the interval over the case's uncertain inputs. Points "
                                "above the band: the model is too optimistic."})


def time_to_train_section(out: Path) -> Section:
    """Published time to train (``perfmodel published --ttt``): the epochs-against-batch curve
    beside its published points and the submissions' logged epochs, and predicted against
    logged time to train."""
    cases = T.run()
    s = T.summary(cases)
    df = pd.DataFrame([dict(case=c.name, devices=c.devices, global_batch=c.global_batch,
                            epochs=c.epochs, predicted_epochs=c.predicted_epochs,
                            time_to_train_s=c.time_to_train_s, predicted_s=c.predicted_s,
                            time_error=c.time_error) for c in cases]).sort_values("devices")
    write_csv(df, out, "time_to_train.csv", 4)
    plt, _ = plotting()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.6))
    curve = ZC.curve("resnet50", "lars")
    b = np.geomspace(1000, 70000, 60)
    ax.plot(b, curve.epochs(b), color="0.3", lw=1.2, label="fit E(B) = E_min (1 + B / B_crit)")
    rcp = [(bb, np.mean(r), min(r), max(r)) for bb, r in ZC.RESNET50_LARS_RCP]
    ax.errorbar([p[0] for p in rcp], [p[1] for p in rcp],
                yerr=[[p[1] - p[2] for p in rcp], [p[3] - p[1] for p in rcp]], fmt="s", ms=4,
                capsize=2, label="MLCommons reference runs (fitted on)")
    ax.scatter(df.global_batch, df.epochs, marker="x", color="C3", zorder=3,
               label="MLPerf submissions (held out from the fit)")
    ax.set(xscale="log", xlabel="global batch", ylabel="epochs to 75.9% top-1",
           title="ResNet-50, LARS: epochs against batch")
    ax.legend(fontsize=8, loc="upper left")
    lim = [df[["time_to_train_s", "predicted_s"]].min().min() * 0.7,
           df[["time_to_train_s", "predicted_s"]].max().max() * 1.4]
    bx.plot(lim, lim, color="0.4", lw=1)
    bx.fill_between(lim, [v * 0.8 for v in lim], [v * 1.2 for v in lim], color="0.88",
                    label="within 20%")
    bx.scatter(df.time_to_train_s, df.predicted_s, s=18, label="MLPerf runs")
    bx.set(xscale="log", yscale="log", xlim=lim, ylim=lim, xlabel="logged time to train (s)",
           ylabel="predicted (s)", title="time to train")
    bx.legend(fontsize=8, loc="upper left")
    f = save_figure(fig, out, "time_to_train.png")
    claims = [
        Claim("time to train, published runs: median |error| of epochs",
              100 * s["epochs_median_abs_error"], "%", "stated", None,
              f"{s['cases']} MLPerf Training runs (v2.1 and later): perfmodel published --ttt"),
        Claim("time to train, published runs: median |error| of time to train",
              100 * s["time_median_abs_error"], "%", "stated", None,
              "throughput model + logged evaluation time"),
        Claim("time to train, published runs: Kendall tau", s["time_kendall_tau"], "",
              "stated", None, "the ranking of runs by time to train")]
    return Section("Published time to train (MLPerf Training, ResNet-50)", figures=[f],
                   tables=["time_to_train.csv"], claims=claims,
                   text=f"{s['cases']} MLPerf Training ResNet-50 submissions of rounds v2.1 to "
                        "v4.0, each the cluster and configuration of a case of the throughput "
                        "set (perfmodel/judge/ttt/). Epochs come from the epochs-against-batch "
                        "curve fitted on MLCommons' reference runs (not on these submissions); "
                        "the time is those epochs over the throughput model's rate, plus the "
                        "logged evaluation time.",
                   captions={f: "Left: the curve, the reference runs it was fitted on (bars: "
                                "fastest to slowest run) and the submissions' logged epochs. "
                                "Right: predicted against logged time to train."})
