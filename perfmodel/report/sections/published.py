"""Published scaling runs of other systems against the model: the development set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ...judge import published as P
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
