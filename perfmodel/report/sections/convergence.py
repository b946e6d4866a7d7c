"""Time to a target loss: the convergence model's fit and its held-out runs, measured
against predicted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ...judge.converge import analyse, summary
from ...results import read_results
from ...ui import UserError
from ..common import Claim, Section, fmt, plotting, save_figure, write_csv


def convergence_sections(out: Path, conv_dir: Path | None) -> list[Section]:
    """Time to a target loss: the held-out runs' validation loss against wall-clock time with
    the model's predicted time to target marked on each curve, the gradient noise scale over
    training, and the predicted-vs-measured table (perfmodel converge's results)."""
    title = "Time to a target loss: measured and predicted"
    if conv_dir is None or not (conv_dir / "heldout.csv").exists():
        return [Section(title, missing="no perfmodel converge results (make convergence)")]
    try:
        conv, calib, cmp = analyse(conv_dir)
    except UserError as e:
        return [Section(title, missing=str(e))]
    s = summary(cmp)
    if not s["runs"]:
        notes = sorted({n for n in cmp.note if isinstance(n, str) and n}) if len(cmp) else []
        return [Section(title, missing="no held-out timed run with a prediction"
                        + (f" ({'; '.join(notes)})" if notes else ""))]
    plt, sns = plotting()
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
    f = save_figure(fig, out, "time_to_target.png")
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
                  Claim("time to target loss: pairs of configurations measured apart "
                        "beyond their run-to-run spread, ordered as measured",
                        s.get("pairs_apart_correct", 0), f"of {s.get('pairs_apart', 0)}",
                        "all", bool(s.get("pairs_apart_correct") == s.get("pairs_apart"))
                        if s.get("pairs_apart") else None,
                        f"all pairs: {s.get('pairs_correct', 0)} of {s.get('pairs', 0)} "
                        "ordered as measured; pairs inside the noise can swap whatever the "
                        "model (a tau over 5 configurations reads 0.6 after two swaps)"),
                  Claim("time to target loss: ranking (Kendall tau)", tau, "", "stated", None,
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
