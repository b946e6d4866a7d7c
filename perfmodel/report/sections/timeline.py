"""The step of one configuration as a timeline: each message against backward."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ...model import scenario as SC
from ...model.predict import step_timeline
from ..common import Section, plotting, save_figure, write_csv


TIMELINE_CASE = ["workload.net=\"resnet50\"", "workload.image_size=224",
                 "training.strategy=\"sync\"", "training.groups=1",
                 "training.param_servers=0", "training.workers=256",
                 "training.batch_per_worker=32"]


def timeline_section(out: Path, preset: str = "cori-knl-hep",
                     case: list[str] | None = None) -> Section:
    """One step on a timeline: compute (forward, then backward) and the in-group messages, for
    ResNet-50 on the preset's nodes, fused against DDP-style buckets sent as backward goes."""
    plt, _ = plotting()
    fig, axes = plt.subplots(2, 1, figsize=(11, 4.2), sharex=True)
    rows = []
    for ax, (label, sets) in zip(axes, (
            ("fused, after backward", ['cluster.messages="fused"', "cluster.overlap=false"]),
            ("25 MiB buckets, overlapped", ['cluster.messages="bucketed"',
                                           "cluster.overlap=true"]))):
        s, _ = SC.load(preset, [*(TIMELINE_CASE if case is None else case), *sets])
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
    f = save_figure(fig, out, "step_timeline.png")
    write_csv(pd.DataFrame(rows).rename(columns={"bytes": "message_bytes"}), out,
              "step_timeline.csv", 4)
    return Section("A step as a timeline (model)", figures=[f], tables=["step_timeline.csv"],
                   text=("ResNet-50 (its ledger from kernels/zoo.py) at batch 32 on 256 of the "
                         f"{preset} preset's nodes, synchronous." if case is None else
                         f"{preset} as it is configured.")
                        + " perfmodel predict --timeline prints the same schedule for any "
                          "scenario.",
                   captions={f: "Top: one fused allreduce after backward, all of it exposed. "
                                "Bottom: gradients in 25 MiB buckets (PyTorch DDP's default), "
                                "each sent as soon as backward has produced it; only what ends "
                                "after backward (red) adds to the step."})
