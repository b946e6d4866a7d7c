"""A scenario's strong and weak scaling (model), with the intervals of its uncertain inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ...model import scenario as SC
from ...model.throughput import evaluate
from ..common import Section, plotting, save_figure, write_csv


def scaling_section(out: Path, s: dict, label: str) -> Section:
    """Throughput and efficiency against workers, powers of two up to the cluster's devices:
    weak scaling at the scenario's batch per worker, strong scaling at its global batch (the
    batch per worker falls as workers grow); each point's interval over every corner of the
    uncertain inputs."""
    cfg = SC.configuration(s)
    devices = s["cluster"]["nodes"] * s["cluster"]["devices_per_node"]
    w = 2 ** np.arange(int(np.log2(devices)) + 1)
    w = np.unique(np.append(w, [cfg["workers"]]))
    w = w[w <= devices]
    global_batch = cfg["batch"] * cfg["workers"]
    rows = []
    for kind, batch in (("weak", np.full(w.shape, float(cfg["batch"]))),
                        ("strong", np.maximum(global_batch / w, 1.0))):
        runs = [evaluate(SC.to_inputs(s, v), "sync", w, 1, 0, batch) for v in SC.corners(s)]
        for key in ("throughput_samples_per_s", "efficiency"):
            vals = np.array([r[key] for r in runs])
            for i, n in enumerate(w):
                rows.append(dict(scaling=kind, workers=int(n), batch_per_worker=batch[i],
                                 quantity=key, value=vals[0, i], low=vals[:, i].min(),
                                 high=vals[:, i].max()))
    df = pd.DataFrame(rows)
    write_csv(df, out, "scenario_scaling.csv", 4)
    plt, _ = plotting()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, ylabel in zip(axes, ("throughput_samples_per_s", "efficiency"),
                               ("samples/s", "efficiency")):
        for kind, d in df[df.quantity == key].groupby("scaling"):
            ax.plot(d.workers, d.value, "o-", ms=3, label=f"{kind} scaling")
            ax.fill_between(d.workers, d.low, d.high, alpha=0.2)
        ax.set(xscale="log", xlabel="workers (synchronous)", ylabel=ylabel)
        ax.xaxis.set_major_formatter(plt.matplotlib.ticker.ScalarFormatter())
    axes[0].set_yscale("log")
    axes[1].set_ylim(0, 1.05)
    axes[1].legend(fontsize=8, loc="lower left")
    f = save_figure(fig, out, "scenario_scaling.png")
    return Section(f"Scaling of {label} (model)", figures=[f], tables=["scenario_scaling.csv"],
                   text=f"Synchronous training on 1 to {devices} devices: weak scaling at "
                        f"{cfg['batch']} samples per worker, strong scaling at the scenario's "
                        f"global batch of {global_batch} (fewer samples per worker as workers "
                        "grow). Bands: every corner of the scenario's uncertain inputs.",
                   captions={f: "Left: throughput; right: efficiency (sustained throughput "
                                "over as many devices that never wait)."})
