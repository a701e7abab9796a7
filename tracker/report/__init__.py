"""The daily HTML report: what an analyst opens in the morning.

A static folder per day (``reports/YYYY-MM-DD/index.html`` plus PNG charts), so it
can be mailed, served by any web server or opened from disk, with no service to
run. Jinja2 renders it with autoescaping on: company names and sources come from
outside data and must never become markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from tracker.errors import InputError
from tracker.output import staged
from tracker.records import StepOutcome
from tracker.store import companies as company_ops
from tracker.store import run_history
from tracker.workspace import Workspace

MAX_CHARTS = 12
_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Report:
    path: Path
    charts: int
    new: int
    open: int


def _env() -> Environment:
    return Environment(loader=PackageLoader("tracker.report", "templates"),
                       autoescape=select_autoescape(["html", "j2"]),
                       trim_blocks=True, lstrip_blocks=True)


def _records(frame: pd.DataFrame) -> list[dict]:
    if frame.empty:
        return []
    records = frame.to_dict("records")
    for r in records:  # NaN would render as "nan"; an absent event is just empty
        r["event_id"] = r["event_id"] if isinstance(r["event_id"], str) else None
    return records


def build_report(ws: Workspace, day: date, *, new_ids: list[int] | None = None,
                 summary: str = "", output_dir: Path | None = None) -> Report:
    """Write the report for ``day``; ``new_ids`` are the alerts this run created.

    Charts are drawn for the companies with new or open warning/critical alerts,
    most severe first, at most ``MAX_CHARTS``, so the report stays quick to build
    and to read however many companies are tracked.
    """
    from tracker.alerts import list_alerts
    from tracker.plots import plot_company, render

    root = output_dir or ws.settings.resolve(ws.settings.report.output_dir)
    folder = root / day.isoformat()
    alerts = list_alerts(ws)
    new_ids = set(new_ids or [])
    new = alerts[alerts["id"].isin(new_ids)]
    open_ = alerts[(alerts["status"] == "open") & (alerts["severity"] != "info")]
    open_ = open_.assign(_rank=open_["severity"].map(_SEVERITY_ORDER)).sort_values(
        ["_rank", "date"], ascending=[True, False]).drop(columns="_rank")
    events = []
    if not alerts.empty:
        grouped = alerts[alerts["event_id"].notna()].groupby("event_id")
        events = [{"event_id": eid, "companies": sorted(set(g["company"])), "count": len(g)}
                  for eid, g in grouped]
    wanted = list(dict.fromkeys([*new["company"], *open_["company"]]))[:MAX_CHARTS]
    shown = pd.concat([new, open_])
    first_alert = shown.groupby("company")["date"].min() if len(shown) else {}
    path = folder / "index.html"
    charts = []
    # the page and its charts are put in place together once every byte of them is
    # written: a disk filling up half way leaves yesterday's report whole
    with staged() as stage:
        for company in wanted:
            # from a few months before the company's first alert shown, up to the day
            since = pd.Timestamp(first_alert[company]) - pd.Timedelta(days=120)
            try:
                fig = plot_company(ws, company, since=since.date(), until=day)
            except InputError:  # no data in the window: nothing to draw
                continue
            name = f"{company}.png"
            stage.write(folder / name, render(fig, "png"), parents=True)
            charts.append({"company": company, "file": name})
        html = _env().get_template("daily.html.j2").render(
            day=day.isoformat(), summary=summary, new_alerts=_records(new),
            open_alerts=_records(open_), events=events, charts=charts,
            companies=company_ops.count(ws.store),
        )
        stage.write(path, html, parents=True)
    return Report(path, len(charts), len(new), len(open_))


def report_step(ws: Workspace, day: date, run_id: int) -> StepOutcome:
    """The main job's last step: the report of the run's day, alerts it created marked new."""
    if not ws.settings.report.enabled:
        return StepOutcome()
    new_ids = run_history.alerts_created_since_start(ws.store, run_id)
    report = build_report(ws, day, new_ids=new_ids)
    return StepOutcome(notes=[f"report {report.path}"], details={"report": str(report.path)})
