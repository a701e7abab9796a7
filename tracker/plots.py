"""Charts of stored series and their alerts, built on matplotlib's Figure API.

Only ``matplotlib.figure.Figure`` is used, never pyplot: pyplot keeps global state
(a current figure, an interactive backend chosen at import) that leaks memory in a
long-running job and fails on a headless server. A ``Figure`` renders through the
backend its file format needs (Agg for PNG), so nothing here sets a backend, and
nothing calls ``show()``: callers save the figure, or a notebook displays it.

The series figure is what an analyst looks at to judge an alert, so it shows the
data honestly: one line per source, missing days as gaps rather than invented
values, and each alert where it happened, in the verdict vocabulary: a provisional
one (dashed) visibly different from a confirmed one or a glitch (solid, filled), and
a withdrawn one (grey, dotted) still there, since someone may have been paged.

A chart of the past (``plot_company(..., until=D)``) shows the past: the values as
known at the end of D (a later correction is not drawn) and the alerts in the state
a daily run on D left them (:func:`tracker.alerts.alerts_as_of`). Titles say the
data's last day.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib import rc_context, ticker
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from tracker import reference_chart
from tracker.errors import InputError, NotFoundError
from tracker.output import write_file

if TYPE_CHECKING:
    from tracker.workspace import Workspace

#: Resolution of saved files; figure sizes below are in inches, so pixels = size x DPI.
DPI = 120
SERIES_SIZE = (10.0, 4.8)
PANEL_SIZE = (4.0, 2.7)
KIND_COLORS = {"drop": "#c0392b", "spike": "#1e8449", "glitch": "#d35400",
               "drift_up": "#7d3c98", "drift_down": "#7d3c98",
               "inflated": "#8e44ad", "ratio_jump": "#8e44ad"}
SHIFTS = ("drop", "spike")
DRIFTS = ("drift_up", "drift_down")
_LINESTYLE = {"confirmed": "solid", "glitch": "solid", "provisional": "dashed",
              "withdrawn": "dotted"}
#: Verdicts that are the final word about a move (drawn solid and filled).
_DECIDED = ("confirmed", "glitch")
WITHDRAWN_COLOR = "#9a9a9a"


# -- input normalisation ------------------------------------------------------------

def _days(values: Any) -> pd.Series:
    """Alert dates arrive as python dates, Timestamps, strings or NaN/None."""
    return pd.to_datetime(pd.Series(values, dtype="object"), errors="coerce")


def _alert_frame(alerts: pd.DataFrame | None) -> pd.DataFrame:
    """Alerts with Timestamp dates and a ``verdict`` column, whatever frame they came in.

    ``list_alerts`` has ``verdict`` (and ``status`` is the review status), while a
    ``DetectionResult`` frame carries the verdict in ``status``; both are accepted.
    """
    if alerts is None or alerts.empty:
        return pd.DataFrame(columns=["date", "detected_on", "kind", "verdict", "change_pct"])
    frame = alerts.copy()
    for col in ("date", "detected_on", "confirmed_on"):
        frame[col] = _days(frame[col]) if col in frame else pd.NaT
    if "verdict" not in frame:
        status = frame.get("status", pd.Series(index=frame.index, dtype="object"))
        verdict = status.where(status.isin(_LINESTYLE), None)
        if "kind" in frame:  # detector rows tell a glitch by its kind
            verdict = verdict.where(frame["kind"] != "glitch", "glitch")
        frame["verdict"] = verdict
    unknown = frame["verdict"].isna()
    frame.loc[unknown, "verdict"] = np.where(frame.loc[unknown, "confirmed_on"].notna(),
                                             "confirmed", "provisional")
    if "change_pct" not in frame:
        frame["change_pct"] = np.nan
    return frame[frame["date"].notna()].reset_index(drop=True)


def _require(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame]
    if missing:
        raise InputError(f"{what} needs columns {', '.join(columns)}; "
                         f"missing {', '.join(missing)} (pass store.observations(...))")


def with_gaps(days: pd.Series, values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Sorted days and values with a NaN inserted after every gap in the cadence.

    Matplotlib joins consecutive points, so without the NaN a five-day outage would be
    drawn as a straight line of values nobody observed. The cadence is the median
    step (one day for daily data), so a weekly series is not shattered into dots.
    """
    order = np.argsort(days.to_numpy(dtype="datetime64[ns]"), kind="stable")
    x = days.to_numpy(dtype="datetime64[ns]")[order]
    y = values.to_numpy(dtype="float64")[order]
    if len(x) < 2:
        return x, y
    steps = np.diff(x)
    step = max(np.median(steps), np.timedelta64(1, "D"))
    after = np.flatnonzero(steps > step)
    return np.insert(x, after + 1, x[after] + step), np.insert(y, after + 1, np.nan)


def _isolated(y: np.ndarray) -> np.ndarray:
    """Points with no neighbour on either side: a line alone would not draw them."""
    finite = np.isfinite(y)
    left = np.concatenate([[False], finite[:-1]])
    right = np.concatenate([finite[1:], [False]])
    return finite & ~left & ~right


# -- axes decoration ----------------------------------------------------------------

class _LogCountFormatter(ticker.LogFormatter):
    """Log-axis labels with thousands separators; LogFormatter decides which to show."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        if not super().__call__(x, pos):
            return ""
        return f"{x:,.0f}" if x >= 1 else f"{x:g}"


def _format_axes(ax: Axes, *, log: bool, counts: bool, decades: float = 0.0) -> None:
    """Concise dates, counts with thousands separators, a light grid.

    On a log axis spanning less than a decade (a purge halves a count; it does not
    divide it by ten) the decade ticks would leave one label or none, so plain
    round-number ticks are used there instead.
    """
    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    if log:
        ax.set_yscale("log")
        if decades < 1:
            ax.yaxis.set_major_locator(ticker.MaxNLocator(nbins=7, steps=[1, 2, 2.5, 5, 10]))
            ax.yaxis.set_minor_locator(ticker.NullLocator())
            ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
        else:
            ax.yaxis.set_major_formatter(_LogCountFormatter())
            ax.yaxis.set_minor_formatter(_LogCountFormatter(minor_thresholds=(1, 0.5)))
    elif counts:
        ax.yaxis.set_major_locator(ticker.MaxNLocator(nbins="auto", integer=True))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    else:
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: f"{v:,.4g}"))
    ax.grid(True, which="major", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _headroom(ax: Axes, fraction: float) -> None:
    """Free a band at the top of the axes so alert labels do not sit on the data."""
    lo, hi = ax.get_ylim()
    if ax.get_yscale() == "log":
        ax.set_ylim(lo, hi * (hi / lo) ** fraction)
    else:
        ax.set_ylim(lo, hi + (hi - lo) * fraction)


def _pct(value: Any) -> str:
    return "" if pd.isna(value) else f" {float(value):+.1f}%"


#: At most this many alerts are labelled on one chart, the most significant first: a
#: label per alert made a chart of a noisy series with 500 alerts unreadable (and took
#: seconds to lay out); the rest are drawn, and the chart says how many are unlabelled.
MAX_LABELS = 8
_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
#: A label stays legible over the lines and spans of other alerts.
_LABEL_BOX = {"facecolor": "white", "alpha": 0.85, "edgecolor": "none", "pad": 1.0}


def _mark_alerts(ax: Axes, alerts: pd.DataFrame, lines: Mapping[str, Line2D],
                 x_range: tuple[np.datetime64, np.datetime64], *, labels: bool) -> None:
    """Shifts as vertical lines, glitches as markers on the point, drifts as spans.

    One artist per kind and verdict, however many alerts (a chart with 5,000 alerts
    took 40 s as one artist each, and 500 were already a blur); its gid names the
    kind, verdict and days (``alert:drop:confirmed:2022-10-11``). Shift lines are a
    LineCollection (``ax.vlines``), not Line2D, so ``ax.lines`` stays exactly one line
    per source.
    """
    if alerts.empty:
        return
    xform = ax.get_xaxis_transform()
    a = alerts.reset_index(drop=True)
    days = pd.to_datetime(a["date"])
    verdicts = a["verdict"].astype(str)
    groups = a.groupby([a["kind"].astype(str), verdicts], sort=True).groups
    for (kind, verdict), idx in groups.items():
        rows = a.loc[idx]
        x = days.loc[idx]
        color, style = _color(kind, verdict), _LINESTYLE.get(verdict, "solid")
        gid = f"alert:{kind}:{verdict}:" + ",".join(f"{d:%Y-%m-%d}" for d in x)
        if kind in DRIFTS:
            ends = pd.to_datetime(rows["detected_on"]).fillna(x)
            lo, hi = mdates.date2num(x), mdates.date2num(ends)
            spans = [[(a0, 0), (a0, 1), (b0, 1), (b0, 0)] for a0, b0 in zip(lo, hi, strict=True)]
            ax.add_collection(PolyCollection(
                spans, transform=xform, facecolors=to_rgba(color, 0.12 if verdict in _DECIDED
                                                          else 0.06),
                edgecolors=color, linestyles=style, hatch=None if verdict in _DECIDED else "//",
                linewidths=0.8, gid=gid), autolim=False)
        elif kind == "glitch":
            ax.scatter(x, _glitch_heights(rows, x, lines), s=60, marker="o", zorder=4, gid=gid,
                       linewidths=1.6, facecolors=color if verdict in _DECIDED else "white",
                       edgecolors=color, linestyles=style)
        else:
            ax.vlines(x, 0, 1, transform=xform, colors=color, linestyles=style,
                      linewidth=1.4, zorder=3, gid=gid)
    if labels:
        _label_alerts(ax, a, days, lines, x_range)


def _glitch_heights(rows: pd.DataFrame, x: pd.Series, lines: Mapping[str, Line2D]) -> np.ndarray:
    """Where each glitch marker sits: on its source's line that day, else at the value
    the alert recorded (the point may lie outside the plotted data)."""
    y = np.full(len(rows), np.nan)
    first = next(iter(lines), None)
    sources = rows["source"].to_numpy(dtype=object) if "source" in rows \
        else np.full(len(rows), None, dtype=object)
    owner = np.array([s if s in lines else first for s in sources], dtype=object)
    want_all = x.to_numpy(dtype="datetime64[ns]")
    for source in {o for o in owner if o is not None}:
        mask = owner == source
        xs = np.asarray(lines[source].get_xdata(), dtype="datetime64[ns]")
        ys = np.asarray(lines[source].get_ydata(), dtype="float64")
        if not len(xs):
            continue
        want = want_all[mask]
        at = np.clip(np.searchsorted(xs, want), 0, len(xs) - 1)
        y[mask] = np.where(xs[at] == want, ys[at], np.nan)
    after = pd.to_numeric(rows.get("value_after", pd.Series(np.nan, index=rows.index)),
                          errors="coerce").to_numpy(dtype="float64")
    return np.where(np.isnan(y), after, y)


def _label_alerts(ax: Axes, a: pd.DataFrame, days: pd.Series, lines: Mapping[str, Line2D],
                  x_range: tuple[np.datetime64, np.datetime64]) -> None:
    """Label the ``MAX_LABELS`` most significant alerts (severity, then size of move)."""
    xform = ax.get_xaxis_transform()
    lo, hi = x_range
    right_edge = lo + (hi - lo) * 0.8
    rank = a.get("severity", pd.Series("info", index=a.index)).map(_SEVERITY_ORDER).fillna(3)
    # most severe, then largest, then most recent: the one an analyst opened it for
    order = pd.DataFrame({"rank": rank, "size": -a["change_pct"].abs().fillna(0),
                          "day": -days.to_numpy(dtype="datetime64[D]").astype(np.int64)}) \
        .sort_values(["rank", "size", "day"], kind="stable").index[:MAX_LABELS]
    chosen = a.loc[sorted(order, key=lambda i: days.loc[i])]
    heights = {}
    glitches = chosen[chosen["kind"] == "glitch"]
    if len(glitches):
        heights = dict(zip(glitches.index, _glitch_heights(glitches, days.loc[glitches.index],
                                                             lines), strict=True))
    # labels closer than this (in days) are stacked, not drawn over each other
    near = max(float((hi - lo) / np.timedelta64(1, "D")) * 0.07, 1.0)
    placed: list[float] = []
    for i, r in chosen.iterrows():
        kind, verdict, x = str(r["kind"]), str(r["verdict"]), days.loc[i]
        color = _color(kind, verdict)
        xn = mdates.date2num(x)  # annotate() does not convert dates itself
        text = f"{kind}{_pct(r['change_pct'])}" + ("" if verdict in _DECIDED else f" ({verdict})")
        if len(lines) > 1 and isinstance(r.get("source"), str):
            text = f"{r['source']}: {text}"  # several sources: say whose alert this is
        before, after = r.get("value_before", np.nan), r.get("value_after", np.nan)
        if kind in SHIFTS and pd.notna(before) and pd.notna(after):
            text += f"\n{x:%Y-%m-%d}: {before:,.0f} → {after:,.0f}"
        if kind == "glitch":
            ax.annotate(text, xy=(xn, heights[i]), xytext=(7, -2), textcoords="offset points",
                        fontsize=8, color=color, va="center", bbox=_LABEL_BOX)
            continue
        k = sum(abs(xn - p) < near for p in placed)
        placed.append(xn)
        left = np.datetime64(x) > right_edge
        ax.annotate(text, xy=(xn, 1), xycoords=xform, xytext=(-5 if left else 5, -4 - 26 * k),
                    textcoords="offset points", ha="right" if left else "left", va="top",
                    fontsize=8.5, color=color, fontweight="bold", bbox=_LABEL_BOX)
    if len(a) > len(chosen):
        ax.text(0.995, 0.01, f"{len(a) - len(chosen)} more alert(s) drawn, not labelled",
                transform=ax.transAxes, ha="right", va="bottom", fontsize=7.5, color="#555555")


def _color(kind: str, verdict: str) -> str:
    """The kind's colour; grey for a withdrawn alert, whatever it was about."""
    return WITHDRAWN_COLOR if verdict == "withdrawn" else KIND_COLORS.get(kind, "#555555")


def _legend(ax: Axes, alerts: pd.DataFrame, *, sources: bool) -> list[Any]:
    """Legend handles: sources (without the isolated-point marker) and alert styles."""
    handles: list[Any] = [
        Line2D([], [], color=line.get_color(), linewidth=line.get_linewidth(),
               label=line.get_label()) for line in ax.get_lines()] if sources else []
    seen = set()
    for a in alerts.itertuples(index=False):
        key = ("drift" if a.kind in DRIFTS else str(a.kind), str(a.verdict))
        if key in seen:
            continue
        seen.add(key)
        color, style = _color(str(a.kind), key[1]), _LINESTYLE.get(key[1], "solid")
        label = key[0] if key[0] == key[1] else f"{key[0]} ({key[1]})"  # not "glitch (glitch)"
        if key[0] == "drift":
            handles.append(Patch(facecolor=color, alpha=0.25, edgecolor=color, linestyle=style,
                                 label=label))
        elif key[0] == "glitch":
            handles.append(Line2D([], [], color=color, marker="o", linestyle="none",
                                  markerfacecolor=color if key[1] in _DECIDED else "white",
                                  label=label))
        else:
            handles.append(Line2D([], [], color=color, linestyle=style, label=label))
    return handles


# -- figures ------------------------------------------------------------------------

def series_figure(
    observations: pd.DataFrame, alerts: pd.DataFrame | None = None, *,
    title: str | None = None, log: bool = False, references: pd.DataFrame | None = None,
    ratio: pd.DataFrame | None = None,
) -> Figure:
    """One company's count per source over time, with its alerts where they happened.

    ``references`` (as ``tracker.references.list_references``) draws the official
    headcount as a step line labelled with its source, ``ratio`` (as
    ``tracker.inflation.ratios``) the ratio on a second axis (``tracker.reference_chart``).

    ``observations`` is one company and metric as ``Store.observations`` returns them
    (columns as_of, value, and source/company/metric when present). ``alerts`` may be
    every alert (``list_alerts``): only this company's, metric's and sources' alerts
    inside the plotted window are drawn. ``log`` makes a 50% drop and a 50% drop at
    another size look the same.
    """
    _require(observations, ("as_of", "value"), "series_figure")
    obs = observations.copy()
    if "source" not in obs:
        obs["source"] = "value"
    company = _single(obs, "company")
    metric = _single(obs, "metric")
    fig = Figure(figsize=SERIES_SIZE, layout="constrained")
    ax = fig.add_subplot()
    lines: dict[str, Line2D] = {}
    for source, part in obs.groupby("source", sort=True):
        x, y = with_gaps(pd.to_datetime(part["as_of"]), part["value"])
        (line,) = ax.plot(x, y, linewidth=1.3, label=str(source), gid=f"series:{source}",
                          marker="o", markersize=3, markevery=list(_isolated(y)))
        lines[str(source)] = line
    found = _alert_frame(alerts)
    if not obs.empty:
        x_lo = np.datetime64(pd.to_datetime(obs["as_of"]).min(), "ns")
        x_hi = np.datetime64(pd.to_datetime(obs["as_of"]).max(), "ns")
        found = _select(found, company=company, metric=metric, sources=set(lines),
                        window=(x_lo, x_hi))
        extra = [] if references is None or references.empty else reference_chart.draw(
            ax, references, pd.Timestamp(x_lo), pd.Timestamp(x_hi), ratio=ratio)
        positive = obs["value"][obs["value"] > 0]
        decades = float(np.log10(positive.max() / positive.min())) if len(positive) else 0.0
        _format_axes(ax, log=log, counts=True, decades=decades)
        _mark_alerts(ax, found, lines, (x_lo, x_hi), labels=True)
        pad = (x_hi - x_lo) * 0.01
        ax.set_xlim(x_lo - pad, x_hi + pad)
        topped = int((found["kind"] != "glitch").sum())  # glitch labels sit on the point
        if topped:
            _headroom(ax, 0.12 + 0.05 * min(topped, 4))
    else:
        ax.text(0.5, 0.5, "no observations", transform=ax.transAxes, ha="center",
                color="#777777")
    handles = _legend(ax, found, sources=True) + (extra if not obs.empty else [])
    if handles:  # above the axes, so it never hides data or an alert's label
        fig.legend(handles=handles, loc="outside upper right", fontsize=8, frameon=False,
                   ncols=min(len(handles), 5))
    ax.set_ylabel(f"{metric or 'count'} (log scale)" if log else (metric or "count"))
    ax.set_title(title if title is not None else (company or ""), loc="left",
                 fontweight="bold")
    return fig


def overview_figure(
    matrix_or_obs: pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame],
    alerts: pd.DataFrame | None,
    companies: list[str] | None = None,
    max_panels: int = 12,
    *,
    metric: str | None = "employees",
    names: Mapping[str, str] | None = None,
) -> Figure:
    """Small multiples of the companies with alerts, each indexed to 100 at its start.

    Indexing makes Amazon's -33% and a 5,000-person company's glitch readable on
    panels of the same kind. ``matrix_or_obs`` is an observations frame, the
    ``(matrix, keys)`` pair from ``alerts.build_matrix``, or a wide frame (dates x
    companies). Without ``companies`` the panels are the companies with alerts, most
    severe first, at most ``max_panels`` (the title says how many were left out).
    ``names`` maps company ids to display names for the panel titles.
    """
    obs = _long(matrix_or_obs, metric)
    found = _alert_frame(alerts)
    if metric is not None and "metric" in found:
        found = found[found["metric"] == metric]
    if companies is None:
        from tracker.alerts import SEVERITY_RANK  # lazily: it loads the detectors

        ranked = found.assign(rank=found.get("severity", pd.Series(dtype=str))
                              .map(SEVERITY_RANK).fillna(0),
                              size=found["change_pct"].abs().fillna(0))
        ranked = ranked.sort_values(["rank", "size"], ascending=False, kind="stable")
        wanted = list(dict.fromkeys(ranked.get("company", pd.Series(dtype=str))))
        wanted = [c for c in wanted if c in set(obs["company"])]
    else:
        wanted = list(companies)
    shown = wanted[:max(max_panels, 0)]
    n = len(shown)
    ncols = min(n, 3) if n != 4 else 2
    nrows = math.ceil(n / ncols) if n else 1
    fig = Figure(figsize=(PANEL_SIZE[0] * max(ncols, 1), PANEL_SIZE[1] * nrows + 0.5),
                 layout="constrained")
    if not n:
        fig.text(0.5, 0.5, "no companies with alerts", ha="center", va="center",
                 color="#777777")
        return fig
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False).ravel()
    x_lo = np.datetime64(obs["as_of"].min(), "ns")
    x_hi = np.datetime64(obs["as_of"].max(), "ns")
    for ax, company in zip(axes, shown, strict=False):
        part = obs[obs["company"] == company]
        lines: dict[str, Line2D] = {}
        for source, rows in part.groupby("source", sort=True):
            rows = rows.sort_values("as_of")
            valid = rows["value"].dropna()
            base = valid.iloc[0] if len(valid) and valid.iloc[0] else np.nan
            x, y = with_gaps(rows["as_of"], rows["value"] / base * 100.0)
            (lines[str(source)],) = ax.plot(x, y, linewidth=1.1, label=str(source),
                                            gid=f"series:{source}", marker="o", markersize=2.5,
                                            markevery=list(_isolated(y)))
        ax.hlines(100, 0, 1, transform=ax.get_yaxis_transform(), colors="#999999",
                  linewidth=0.6, linestyles=":", zorder=1, gid="reference:100")
        _format_axes(ax, log=False, counts=False)
        mine = _select(found, company=company, metric=None, sources=set(lines),
                       window=(x_lo, x_hi))
        _mark_alerts(ax, mine, lines, (x_lo, x_hi), labels=False)
        label = (names or {}).get(company, company)
        worst = mine.loc[mine["change_pct"].abs().idxmax()] if mine["change_pct"].notna().any() \
            else None
        suffix = "" if worst is None else f"   {worst['kind']}{_pct(worst['change_pct'])}"
        ax.set_title(f"{label}{suffix}", loc="left", fontsize=9.5, fontweight="bold")
        ax.tick_params(labelsize=8)
    for ax in axes[n:]:
        ax.set_visible(False)
    pad = (x_hi - x_lo) * 0.01
    axes[0].set_xlim(x_lo - pad, x_hi + pad)
    left_out = len(wanted) - n
    fig.suptitle("Companies with alerts, indexed to 100 at the first day shown"
                 + (f" ({left_out} more not shown)" if left_out > 0 else ""),
                 x=0.01, ha="left", fontsize=11)
    handles = _legend(axes[0], found[found["company"].isin(shown)] if "company" in found
                      else found, sources=False)
    if handles:
        fig.legend(handles=handles, loc="outside lower center", fontsize=8, ncols=len(handles),
                   frameon=False)
    return fig


def _single(obs: pd.DataFrame, column: str) -> str | None:
    if column not in obs:
        return None
    values = sorted(obs[column].dropna().unique())
    if len(values) > 1:
        raise InputError(
            f"series_figure draws one series but the observations hold {len(values)} "
            f"values of {column!r} ({', '.join(map(str, values[:5]))}): filter them first, "
            "or use overview_figure for several companies")
    return str(values[0]) if values else None


def _select(found: pd.DataFrame, *, company: str | None, metric: str | None,
            sources: set[str], window: tuple[np.datetime64, np.datetime64]) -> pd.DataFrame:
    """The alerts that belong on these axes: same series, and overlapping the window."""
    keep = pd.Series(True, index=found.index)
    if company is not None and "company" in found:
        keep &= found["company"] == company
    if metric is not None and "metric" in found:
        keep &= found["metric"] == metric
    if "source" in found and sources:
        keep &= found["source"].isin(sources) | found["source"].isna()
    end = found["detected_on"].fillna(found["date"])
    keep &= (found["date"] <= pd.Timestamp(window[1])) & (end >= pd.Timestamp(window[0]))
    return found[keep].reset_index(drop=True)


def _long(data: pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame],
          metric: str | None) -> pd.DataFrame:
    """company, source, as_of, value from any of the three accepted shapes."""
    if isinstance(data, tuple):
        matrix, keys = data
        stacked = matrix.rename_axis(index="as_of", columns="col").stack().rename("value")
        frame = stacked.reset_index().join(keys, on="col").drop(columns="col")
    elif "as_of" in data and "value" in data:
        frame = data.copy()
    else:
        frame = (data.rename_axis(index="as_of", columns="company").stack().rename("value")
                 .reset_index())
    if "source" not in frame:
        frame["source"] = "value"
    if metric is not None and "metric" in frame:
        frame = frame[frame["metric"] == metric]
    frame["as_of"] = pd.to_datetime(frame["as_of"])
    frame["value"] = frame["value"].astype("float64")
    return frame[["company", "source", "as_of", "value"]].dropna(subset=["value"])


# -- files and workspaces -----------------------------------------------------------

def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG or SVG (by suffix) at 120 dpi, creating parent folders.

    Atomically: a failed write (disk full, read-only folder) leaves the old chart
    and raises tracker.output.WriteError.

    The size is not trimmed (no ``bbox_inches="tight"``): a chart's pixel size is
    then predictable, figure size x 120, which reports and tests rely on. SVGs carry
    no date and fixed ids, so drawing the same chart twice gives the same file.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise InputError(f"{path}: cannot save a chart as {path.suffix or 'no suffix'!r}; "
                         "use a .png or .svg file name")
    return write_file(path, render(fig, fmt), parents=True)


#: Fonts tried in order, per character: DejaVu (matplotlib's own) first, then the
#: common families that cover CJK, Arabic, Hebrew and other scripts where installed.
FONTS = ["DejaVu Sans", "Noto Sans", "Noto Sans CJK JP", "Noto Sans Arabic",
         "Noto Sans Hebrew", "WenQuanYi Zen Hei", "Droid Sans Fallback", "Arial Unicode MS"]


def render(fig: Figure, fmt: str = "png") -> bytes:
    """``fig`` as PNG or SVG bytes, drawn in memory.

    Drawing never touches the disk, so a chart can be staged with the files it
    belongs with (the report) and written by tracker.output's one atomic write.
    """
    buffer = io.BytesIO()
    with rc_context({"svg.hashsalt": "tracker",  # stable clip-path ids in SVGs
                     "font.family": ["sans-serif"], "font.sans-serif": FONTS}), \
            warnings.catch_warnings():
        # a name in a script no installed font covers is drawn as boxes; matplotlib
        # would also print two lines per missing character on stderr
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
        fig.savefig(buffer, format=fmt, dpi=DPI,
                    metadata={"Date": None} if fmt == "svg" else None)
    return buffer.getvalue()


def _names(ws: Workspace) -> dict[str, str]:
    return {ref.id: ref.name for ref in ws.company_refs()}


def plot_company(
    ws: Workspace, company: str, *, since: date | None = None, until: date | None = None,
    metric: str = "employees", log: bool = False, ratio: bool = False,
) -> Figure:
    """``series_figure`` for a company in the store (id, alias or name), with its alerts,
    its reference headcounts when it has any (known by ``until``), and with ``ratio``
    the ratio claimed / reference on a second axis.

    Without ``until``: everything known now, the alerts as they stand. With it, the
    chart a daily run on that day would have drawn: the values as known at its end
    (:func:`known_by`), the alerts as they stood then
    (:func:`tracker.alerts.alerts_as_of`). The title names the data's last day.
    """
    from tracker.alerts import alerts_as_of, list_alerts
    from tracker.inflation import ratios
    from tracker.metrics import check_metric, metric_label
    from tracker.records import DEFAULT_METRIC
    from tracker.references import list_references
    from tracker.store.companies import name_of

    check_metric(metric, "--metric")
    cid = ws.store.company_id(company)
    obs = ws.store.observations([cid], metric=metric, since=since, until=until,
                                revisions=until is not None)
    if until is not None:
        obs = known_by(obs, until)
    if obs.empty:
        raise NotFoundError(f"no {metric!r} observations for {company!r}"
                            + (f" since {since}" if since else "")
                            + (f" until {until}" if until else ""))
    alerts = list_alerts(ws, company=cid) if until is None else alerts_as_of(
        ws, until, company=cid)
    last = pd.Timestamp(obs["as_of"].max())
    # a segment's chart says so: 'Apple, employees (security)' is not Apple's headcount
    what = "" if metric == DEFAULT_METRIC else f", {metric_label(metric)}"
    title = f"{name_of(ws.store, cid) or cid}{what}, data through {last:%Y-%m-%d}" + (
        f" as known on {until:%Y-%m-%d}" if until is not None else "")
    # not revisioned: a chart of the past shows them too; a reference is a headcount,
    # so a segment's chart (employees:security) does not get it: it would squash the axis
    refs = list_references(ws, cid) if metric == DEFAULT_METRIC \
        else list_references(ws, cid).iloc[0:0]
    ratios_ = ratios(obs, refs.assign(as_of=pd.to_datetime(refs["as_of"]))) \
        if ratio and len(refs) else None
    return series_figure(obs, alerts, title=title, log=log, references=refs, ratio=ratios_)


def known_by(revisions: pd.DataFrame, day: date) -> pd.DataFrame:
    """One row per series, source and day: the value as known at the end of ``day``.

    That is the latest revision collected by then. A day no revision of which had
    been collected by then (history imported later) shows its first revision, the
    oldest knowledge the store has of it: a chart of the past drawn from a later
    import then still shows the data, and never a correction made after ``day``.
    """
    if revisions.empty or "collected_at" not in revisions:
        return revisions
    end = pd.Timestamp(day) + pd.Timedelta(days=1)
    keys = [c for c in ("company", "metric", "source", "as_of") if c in revisions]
    ordered = revisions.sort_values([*keys, "collected_at"], kind="stable")
    known = ordered[pd.to_datetime(ordered["collected_at"]) < end]
    first = ordered.drop_duplicates(keys, keep="first")
    latest = known.drop_duplicates(keys, keep="last")
    rows = pd.concat([latest, first]).drop_duplicates(keys, keep="first")
    return rows.sort_values(keys, kind="stable").reset_index(drop=True)


def plot_overview(
    ws: Workspace, *, since: date | None = None, until: date | None = None,
    metric: str = "employees",
    companies: list[str] | None = None, max_panels: int = 12,
) -> Figure:
    """``overview_figure`` over the store: every company with alerts, named properly;
    with ``until``, as known and decided on that day (as :func:`plot_company`)."""
    from tracker.alerts import alerts_as_of, list_alerts

    ids = [ws.store.company_id(c) for c in companies] if companies else None
    obs = ws.store.observations(ids, metric=metric, since=since, until=until,
                                revisions=until is not None)
    if until is None:
        alerts = list_alerts(ws, since=since)
    else:
        obs = known_by(obs, until)
        alerts = alerts_as_of(ws, until)
        if since is not None and len(alerts):
            alerts = alerts[pd.to_datetime(alerts["date"]) >= pd.Timestamp(since)]
    return overview_figure(obs, alerts, ids, max_panels, metric=metric, names=_names(ws))


def population_figure(daily: pd.DataFrame, *, title: str | None = None) -> Figure:
    """The share of a population's series moving down and up each day, event days marked.

    ``daily`` is :func:`tracker.population.share_history` (one population): columns
    date, direction, share, expected and event. Down is drawn below the axis, so a
    purge reads as a dip and a surge as a peak, and the expected share shows how
    far above its own history the day was.
    """
    _require(daily, ("date", "direction", "share", "expected", "event"), "population shares")
    fig = Figure(figsize=SERIES_SIZE, layout="constrained")
    ax = fig.subplots()
    colors = {"down": KIND_COLORS["drop"], "up": KIND_COLORS["spike"]}
    for direction, sign in (("down", -1.0), ("up", 1.0)):
        part = daily[daily["direction"] == direction].sort_values("date")
        days = pd.to_datetime(part["date"])
        ax.plot(days, sign * 100 * part["share"], color=colors[direction], linewidth=1.0,
                label=f"moving {direction}", gid=f"share:{direction}")
        ax.plot(days, sign * 100 * part["expected"], color=colors[direction], linewidth=0.7,
                linestyle=":", gid=f"expected:{direction}")
        hit = part[part["event"].astype(bool)]
        ax.scatter(pd.to_datetime(hit["date"]), sign * 100 * hit["share"], s=36, zorder=3,
                   color=colors[direction], edgecolors="black", linewidths=0.6,
                   gid=f"events:{direction}",
                   label=f"event ({direction})" if len(hit) else None)
        for day, share in zip(pd.to_datetime(hit["date"]), hit["share"], strict=True):
            ax.annotate(f"{day:%Y-%m-%d}  {100 * share:.0f}%", (day, sign * 100 * share),
                        textcoords="offset points", xytext=(6, -10 if sign < 0 else 4),
                        fontsize=8)
    ax.axhline(0, color="#999999", linewidth=0.6)
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{abs(v):g}%"))
    ax.set_ylabel("share of series moving (down below, up above)")
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(mdates.AutoDateLocator()))
    ax.grid(True, axis="y", color="#eeeeee")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.set_title(title or "Share of series moving beyond their own variation, per day",
                 loc="left", fontsize=11)
    return fig


def plot_population(ws: Workspace, *, since: date | None = None, until: date | None = None,
                    metric: str = "employees") -> Figure:
    """:func:`population_figure` of a metric's whole population, from the store."""
    from tracker.population import share_history

    daily = share_history(ws, since=since, until=until, metric=metric)
    if daily.empty:
        raise NotFoundError(f"no {metric!r} observations to measure"
                            + (f" since {since}" if since else ""))
    return population_figure(daily, title=f"{metric}: share of series moving per day")
