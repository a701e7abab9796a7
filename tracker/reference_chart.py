"""The reference headcount on a company's chart: a step line, and the ratio beside it.

An analyst judging "is this count inflated?" needs the official headcount on the
same axis as the claimed one: drawn as the step function the ratio uses (each
reference carried forward to the next, ``tracker.inflation``), each step labelled
with its source ("Apple 10-K 2022: 164,000"), so the figure says where the number
comes from. The ratio itself, on request, goes on a second y axis.

The step line is a LineCollection, not a Line2D: ``ax.lines`` stays one line per
source (``tracker.plots`` and its tests count on it), and the collection's ``gid``
("reference") is how a test or a viewer finds it.
"""

from __future__ import annotations

from typing import Any

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D

REFERENCE_COLOR = "#2c3e50"
RATIO_COLOR = "#8e44ad"


def steps(references: pd.DataFrame, lo: pd.Timestamp, hi: pd.Timestamp) -> pd.DataFrame:
    """The references in force within [lo, hi]: start, end, count, source per step.

    The one in force on ``lo`` starts there; a reference dated after ``hi`` is not
    in force yet and is left out.
    """
    refs = references.assign(as_of=pd.to_datetime(references["as_of"])) \
        .sort_values("as_of").reset_index(drop=True)
    refs = refs[refs["as_of"] <= hi]
    before = refs[refs["as_of"] <= lo]
    refs = refs[refs["as_of"] > lo]
    if len(before):
        refs = pd.concat([before.tail(1).assign(as_of=lo), refs], ignore_index=True)
    if refs.empty:
        return pd.DataFrame(columns=["start", "end", "count", "source"])
    start = refs["as_of"].reset_index(drop=True)
    end = pd.concat([start.iloc[1:], pd.Series([hi])], ignore_index=True)
    return pd.DataFrame({"start": start, "end": end, "count": refs["count"].to_numpy(),
                         "source": refs["source"].to_numpy()})


def draw(ax: Axes, references: pd.DataFrame, lo: pd.Timestamp, hi: pd.Timestamp, *,
         ratio: pd.DataFrame | None = None) -> list[Any]:
    """Draw the reference step line (and the ratio on a twin axis when given);
    returns the legend handles for what was drawn."""
    drawn = steps(references, lo, hi)
    handles: list[Any] = []
    if len(drawn):
        x = mdates.date2num(np.ravel(np.column_stack([drawn["start"], drawn["end"]])))
        y = np.repeat(drawn["count"].to_numpy(dtype="float64"), 2)
        ax.add_collection(LineCollection([np.column_stack([x, y])], colors=REFERENCE_COLOR,
                                         linestyles="dashed", linewidths=1.2, zorder=2,
                                         gid="reference"), autolim=True)
        ax.autoscale_view()
        for step in drawn.itertuples(index=False):
            ax.annotate(f"{step.source}: {int(step.count):,}",
                        xy=(mdates.date2num(step.start), float(step.count)),
                        xytext=(3, 3), textcoords="offset points", fontsize=7.5,
                        color=REFERENCE_COLOR, gid="reference-label")
        handles.append(Line2D([], [], color=REFERENCE_COLOR, linestyle="dashed",
                              label="reference headcount"))
    if ratio is not None and len(ratio):
        twin = ax.twinx()
        for source, part in ratio.groupby("source", sort=True):
            twin.plot(pd.to_datetime(part["as_of"]), part["ratio"], color=RATIO_COLOR,
                      linewidth=0.9, linestyle="dotted", gid=f"ratio:{source}")
        twin.set_ylabel("claimed / reference", color=RATIO_COLOR)
        twin.tick_params(axis="y", colors=RATIO_COLOR)
        twin.set_ylim(bottom=0)
        twin.spines["top"].set_visible(False)
        handles.append(Line2D([], [], color=RATIO_COLOR, linestyle="dotted",
                              label="ratio (right axis)"))
    return handles
