"""What every section of a report shares: the Section and Claim it returns, number formats,
CSV tables, results loading and the figures' plotting set-up."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..results import read_all


@dataclass
class Claim:
    """One checked statement for the summary on top: a measured value, its tolerance and the
    verdict (None: not measured, with ``detail`` saying why). ``inconclusive`` says why the
    measurement could not decide it either way (the machine drifted more than the tolerance
    between the repeats the value comes from); the verdict is then "inconclusive", pass or
    not."""

    claim: str
    value: float
    unit: str
    tolerance: str
    passed: bool | None
    detail: str = ""
    inconclusive: str = ""


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
    return read_all(paths)


def plotting():
    """(pyplot, seaborn), set up for files: the Agg backend and the report's theme."""
    # imported here, not at the top: plotting costs start-up time no command but the report needs
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg")
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return plt, sns


PLACED = "placed"  # a legend's gid when its section placed it off the data itself


def legends_off_the_data(fig) -> None:
    """Move each legend of an axes at the right edge of ``fig`` outside it, to its right:
    a legend inside the axes hides the bars or points behind it. Legends of axes with a
    neighbour to their right, or whose gid is :data:`PLACED`, stay where their section put
    them."""
    axes = [ax for ax in fig.axes if ax.get_visible()]
    if not axes:
        return
    right = max(ax.get_position().x1 for ax in axes)
    for ax in axes:
        leg = ax.get_legend()
        if leg is None or ax.get_position().x1 < right - 1e-3 or leg.get_gid() == PLACED:
            continue
        leg.set_loc("upper left")
        leg.set_bbox_to_anchor((1.02, 1.0), transform=ax.transAxes)


def save_figure(fig, out: Path, name: str) -> str:
    """Write ``fig`` as ``out/name`` (PNG) and close it. Log axes get plain tick labels
    (2, 5, 20, not 2x10^0): a report is read by people, not parsed. Legends at the figure's
    right edge move outside the axes (:func:`legends_off_the_data`). An axis whose ticks the
    figure placed itself (``set_xticks``) keeps them, without minor ticks."""
    from matplotlib.ticker import (FixedLocator, FuncFormatter, LogLocator,  # loaded already
                                   NullFormatter, NullLocator)

    plain = FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1e4 else f"{v:g}")
    for ax in fig.axes:
        for axis, scale, lim in ((ax.xaxis, ax.get_xscale(), ax.get_xlim()),
                                 (ax.yaxis, ax.get_yscale(), ax.get_ylim())):
            if scale != "log":
                continue
            if isinstance(axis.get_major_locator(), FixedLocator):
                axis.set_minor_locator(NullLocator())
                continue
            axis.set_major_formatter(plain)
            decades = math.log10(max(lim) / max(min(lim), 1e-300))
            # 2 and 5 between the powers of ten, labelled only where they have room
            axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
            axis.set_minor_formatter(plain if decades <= 2.5 else NullFormatter())
    fig.tight_layout()
    legends_off_the_data(fig)
    fig.savefig(out / name, dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt  # already loaded by plotting(); here to close the figure

    plt.close(fig)
    return name


def latest_run(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of the most recent run in ``df`` (by time)."""
    if df.empty:
        return df
    last = df.sort_values("time_utc")["run_id"].iloc[-1]
    return df[df.run_id == last]


def main_batch(run: pd.DataFrame, df: pd.DataFrame) -> int:
    """The batch a node run timed per layer as its main one: where its FMA probes ran (the
    sweep's other batches carry per-layer rows too), else its largest."""
    probe = df[(df.what == "probe") & (df.run_id == run.run_id.iloc[0])]
    return int(probe.batch.iloc[0]) if len(probe) else int(run.batch.max())


def relative_spread(v: pd.Series) -> float:
    """(max - min) / median over repeated measurements of one figure; 0 for one."""
    v = v.dropna()
    return float((v.max() - v.min()) / v.median()) if len(v) > 1 and v.median() else 0.0


def spread_but_one(v: pd.Series) -> float:
    """:func:`relative_spread` of the repeats less the one farthest from their median (of
    three or more): how far apart the repeats that carry the median are. One disturbed round
    of three moves the median little, and this spread not at all."""
    v = v.dropna()
    if len(v) >= 3:
        v = v.drop((v - v.median()).abs().idxmax())
    return relative_spread(v)


def slowed_within(typical: pd.Series, fastest: pd.Series, rate: bool) -> pd.Series:
    """How much longer each repeat's typical (median) step took than its own fastest one, as a
    fraction: fastest / typical - 1 for rates (samples/s), typical / fastest - 1 for times (s).
    A machine disturbed during a repeat slows most of its steps but rarely all: its fastest step
    still shows what the code does undisturbed. NaN where the fastest was not recorded."""
    typical, fastest = typical.astype(float), fastest.astype(float)
    return fastest / typical - 1 if rate else typical / fastest - 1
