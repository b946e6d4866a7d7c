"""Effects at scale (model): one switch of the scenario at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ...model import scenario as SC
from ...model.stragglers import detour_default
from ...model.throughput import evaluate
from ..common import PLACED, Section, plotting, save_figure, write_csv


#: a published OS-noise measurement (:func:`perfmodel.model.stragglers.detour_default`)
OS_RATE_HZ, OS_DETOUR_S = detour_default()
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
                                                   f"cluster.straggler_rate_hz={OS_RATE_HZ!r}",
                                                   f"cluster.straggler_scale={OS_DETOUR_S!r}"]),
              ("detours 1 kHz x 25 us", ['cluster.straggler="detour"',
                                         "cluster.straggler_rate_hz=1000",
                                         "cluster.straggler_scale=25e-6"])],
}
SCALE_EFFECTS_BASE = ['workload.net="resnet50"', "workload.image_size=224",
                      "training.batch_per_worker=32", 'cluster.straggler="none"']


def scale_effects_section(out: Path, preset: str = "perlmutter-gpu-hep",
                          base: list[str] | None = None, batch: int = 32) -> Section:
    """Efficiency against GPUs for ResNet-50 on the preset, one effect at scale switched at a
    time (model only: each switch's mechanism is in perfmodel/model/throughput.py)."""
    plt, _ = plotting()
    gpus = np.unique(np.round(np.geomspace(4, 7168, 12) / 4) * 4)
    rows = []
    for effect, cases in SCALE_EFFECTS.items():
        for label, sets in cases:
            s, _ = SC.load(preset, [*(SCALE_EFFECTS_BASE if base is None else base), *sets])
            r = evaluate(SC.to_inputs(s), "sync", gpus, 1, 0, batch)
            rows += [dict(effect=effect, case=label, gpus=int(g), efficiency=float(e))
                     for g, e in zip(gpus, r["efficiency"])]
    df = pd.DataFrame(rows)
    write_csv(df, out, "scale_effects.csv", 4)
    # 2 x 2 panels, each legend below its panel: four in a row were too small to read
    fig, grid = plt.subplots(2, 2, figsize=(11, 8.5), sharey=True)
    axes = grid.ravel()
    for ax, (effect, part) in zip(axes, df.groupby("effect", sort=False)):
        for label, d in part.groupby("case", sort=False):
            ax.plot(d.gpus, d.efficiency, "o-", ms=3, label=label)
        ax.set(xscale="log", xlabel="GPUs", title=effect, ylim=(0, 1.05))
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2,
                  frameon=False).set_gid(PLACED)
    for ax in grid[:, 0]:
        ax.set_ylabel("efficiency (sustained)")
    f = save_figure(fig, out, "scale_effects.png")
    text = (f"ResNet-50 at batch 32 per GPU on the {preset} preset, synchronous, "
            "one switch at a time against the preset (NCCL's choice, fused "
            "messages, a non-blocking network) without stragglers, which the "
            "right panel adds (the preset's 5.8 ms is the delay fitted on Cori, "
            "an assumption on Perlmutter). "
            "Noise as osnoise measured it is the detour default, a published "
            f"measurement on a stock Linux machine ({OS_RATE_HZ / 1e3:.2f} kHz x "
            f"{OS_DETOUR_S * 1e6:.1f} us per CPU, taken as the node's; see "
            "perfmodel/model/stragglers.py); the 25 us detours are an "
            "illustration, not a measurement.")
    if base is not None:
        text = (f"{preset} at {batch} samples per device, synchronous, one switch at a time "
                "against the scenario as it is (perfmodel/model/throughput.py has each "
                "switch's mechanism).")
    return Section("Effects at scale (model)", figures=[f], tables=["scale_effects.csv"],
                   text=text,
                   captions={f: "Efficiency (sustained throughput over GPUs that never wait) "
                                "against GPUs. Top left to bottom right: the allreduce algorithm, how "
                                "gradients are sent, the network's taper past 32 nodes, and "
                                "per-node noise (the slowest of the GPUs sets the step)."})
