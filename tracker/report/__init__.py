"""The daily HTML report: what an analyst opens in the morning, the whole day on one page.

A static folder per day (``reports/YYYY-MM-DD/index.html`` plus PNG charts), so it
can be mailed, served by any web server or opened from disk, with no service to
run. Jinja2 renders it with autoescaping on: company names, sources, failure
reasons and notes come from outside data and must never become markup.

What it tells, in reading order: the run (what each source collected, which failed
and why, which companies have gone quiet, since no data looks exactly like "all is
well"), the alerts new today, every open alert whatever its severity (a glitch too:
it is a verdict an analyst may want to overrule), alerts reviewed lately with their
notes, the cross-company events, and charts, as thumbnails linking to full-size ones.

The folder holds exactly the files of the latest build: a company that drops out of
the report takes its charts with it, so nobody opens yesterday's picture of it.
With ``[report] base_url`` set, :func:`report_url` is where a day's page is served,
the link each notification carries.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from tracker.errors import InputError
from tracker.metrics import chart_key, metric_label
from tracker.output import staged
from tracker.records import StepOutcome
from tracker.store import companies as company_ops
from tracker.store import report_data, run_history
from tracker.workspace import Workspace

if TYPE_CHECKING:
    from tracker.config import Settings

log = logging.getLogger(__name__)

MAX_CHARTS = 12
#: Width in pixels of the chart thumbnails on the page; each links to the full chart.
THUMB_WIDTH = 640
#: Alerts no longer open are shown (and count in the events) if first seen within
#: this many days of the report's day; open ones are shown whatever their age.
REVIEWED_DAYS = 30
_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Report:
    path: Path
    charts: int
    new: int
    open: int


def report_url(settings: Settings, day: date) -> str | None:
    """The address of ``day``'s report under ``[report] base_url``, or None.

    None when no base URL is set or the report is not written: a notification must
    not link to a page that will never exist. The page is named in full
    (``.../2022-10-11/index.html``) because not every static host serves a folder's
    index (object stores do not, by default).
    """
    base = settings.report.base_url
    if not base or not settings.report.enabled:
        return None
    return f"{base.rstrip('/')}/{day.isoformat()}/index.html"


def _env() -> Environment:
    env = Environment(loader=PackageLoader("tracker.report", "templates"),
                      autoescape=select_autoescape(["html", "j2"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["count"] = lambda v: "" if v is None else f"{v:,.0f}"
    env.filters["pct"] = lambda v: "" if v is None else f"{v:+.1f}%"
    env.filters["score"] = lambda v: "" if v is None else f"{v:.2f}"  # as tracker alerts
    env.filters["url"] = lambda v: quote(str(v))
    return env


def _plain(value: Any) -> Any:
    """A cell as the template shows it: None for every kind of missing, dates as text."""
    if value is None or (not isinstance(value, str | list | dict) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, date):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A table's rows for the template, values made plain (dates as text, no numpy)."""
    return [{k: _plain(v) for k, v in r.items()} for r in frame.to_dict("records")]


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Alerts for the template, each with the key of its series' chart (``chart``)."""
    return [{**r, "chart": chart_key(str(r["company"]), str(r["metric"]))}
            for r in _rows(frame)]


def _by_severity(frame: pd.DataFrame) -> pd.DataFrame:
    """Most severe first, then the latest first anomalous day: what to look at first."""
    if frame.empty:
        return frame
    rank = frame["severity"].map(_SEVERITY_ORDER).fillna(len(_SEVERITY_ORDER))
    return (frame.assign(_rank=rank).sort_values(["_rank", "date", "id"],
                                                 ascending=[True, False, True])
            .drop(columns="_rank"))


def _events(alerts: pd.DataFrame) -> list[dict[str, Any]]:
    """Cross-company events of the alerts shown (open ones, recent ones), newest
    first, with the companies and alerts in each."""
    if alerts.empty:
        return []
    linked = alerts[alerts["event_id"].notna()]
    events = []
    for eid, g in linked.groupby("event_id"):
        events.append({
            "event_id": eid, "date": _plain(g["date"].min()), "kind": g["kind"].iloc[0],
            "companies": sorted(set(g["company_name"].fillna(g["company"]))),
            "count": len(g), "open": int((g["status"] == "open").sum()),
            "severity": min(g["severity"], key=lambda s: _SEVERITY_ORDER.get(s, 9)),
        })
    return sorted(events, key=lambda e: (e["date"], e["event_id"]), reverse=True)


#: Population events of this many days before the report's day are listed and charted.
PLATFORM_DAYS = 120


def _platform(ws: Workspace, day: date, stage: Any, folder: Path
              ) -> tuple[list[dict[str, Any]], str | None]:
    """Population events known on ``day`` (the last ``PLATFORM_DAYS``) and, when there
    are any, the chart of the share moving per day around them (``population.png``)."""
    from tracker.plots import plot_population, render
    from tracker.population import list_events

    since = day - timedelta(days=PLATFORM_DAYS)
    events = list_events(ws, since=since, until=day)
    if events.empty:
        return [], None
    metric = str(events["metric"].iloc[-1])
    try:
        fig = plot_population(ws, since=since, until=day, metric=metric)
    except InputError:
        return _rows(events.iloc[::-1]), None
    stage.write(folder / "population.png", render(fig, "png"), parents=True)
    return _rows(events.iloc[::-1]), "population.png"


def _stale(ws: Workspace, day: date) -> list[dict[str, Any]]:
    """Companies without an observation for ``[run] stale_days`` days by ``day``."""
    cutoff = day - timedelta(days=ws.settings.run.stale_days)
    return [{"id": cid, "name": name, "last_day": last and last.isoformat(),
             "days_since": (day - last).days if last else None}
            for cid, name, last in report_data.stale_companies(ws.store, day, cutoff)]


def _thumbnail(png: bytes) -> bytes:
    """A smaller copy of a chart for the page; the full one is a click away.

    Resampled from the drawn chart rather than drawn again, so both show the same
    picture and the chart is rendered once; a 256-colour palette (a chart has few
    colours) makes it about a third of the full chart's bytes, where plain RGB would
    save little. Pillow is matplotlib's own image library, so it is always there.
    """
    from PIL import Image

    with Image.open(io.BytesIO(png)) as img:
        if img.width <= THUMB_WIDTH:
            return png
        height = round(img.height * THUMB_WIDTH / img.width)
        # charts are drawn on an opaque white face: dropping alpha changes nothing
        small = img.convert("RGB").resize((THUMB_WIDTH, height), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    small.quantize(256).save(out, format="PNG", optimize=True)
    return out.getvalue()


def _remove_stale_images(folder: Path, keep: Iterable[str]) -> None:
    """Delete the charts of earlier builds of this day's report that this one lacks.

    After the new files are in place, not before: a failed build leaves the old
    report whole, images and all. Only ``*.png`` files go; the tool writes nothing
    else there besides the page.
    """
    keep = set(keep)
    for old in folder.glob("*.png"):
        if old.name not in keep:
            try:
                old.unlink()
            except OSError as exc:  # an old picture left behind must not fail the run
                log.warning("could not remove the old chart %s: %s", old, exc)


def build_report(ws: Workspace, day: date, *, new_ids: list[int] | None = None,
                 summary: str = "", output_dir: Path | None = None,
                 run_id: int | None = None) -> Report:
    """Write the report for ``day``; ``new_ids`` are the alerts this run created
    (default: those first seen on ``day``).

    ``run_id`` is the run to summarize (the main job passes its own); without it the
    latest run is shown, said to be that, with when it started. Alerts first
    seen after ``day`` are left out, so a report rebuilt for an earlier day shows
    what was known then. Charts are drawn for the companies with new or open alerts,
    most severe first, at most ``MAX_CHARTS``, so the report stays quick to build
    and to read however many companies are tracked.
    """
    from tracker.inflation import inflated_companies
    from tracker.plots import plot_company, render

    root = output_dir or ws.settings.resolve(ws.settings.report.output_dir)
    folder = root / day.isoformat()
    recent = day - timedelta(days=REVIEWED_DAYS)
    from tracker.alerts import rewind

    # as the day left them: a report rebuilt for a past day shows that day's verdicts
    # and reviews, not what was learned and decided since
    alerts = rewind(ws, report_data.known_alerts(ws.store, day, recent), day)
    backfill = 0
    if alerts.empty:
        new = open_ = reviewed = alerts
    else:
        # without the run's ids (``tracker report``): the alerts first seen on the day
        created = alerts[alerts["id"].isin(set(new_ids))] if new_ids is not None \
            else alerts[pd.to_datetime(alerts["detected_on"]) == pd.Timestamp(day)]
        # as in the run's exit code: an alert found while backfilling old history is
        # stored, and open below, but it is not today's news
        fresh = pd.to_datetime(created["detected_on"]) >= pd.Timestamp(
            day - timedelta(days=ws.settings.alerts.fresh_days))
        new = _by_severity(created[fresh])
        backfill = int((~fresh).sum())
        open_ = _by_severity(alerts[alerts["status"] == "open"])
        reviewed = alerts[alerts["status"] != "open"]  # all recent (see known_alerts)
        reviewed = reviewed.sort_values(["date", "id"], ascending=False)
    shown = pd.concat([new, open_])
    # one chart per series with alerts: a role segment's drop (employees:security)
    # is drawn on its own scale, not lost in the company's whole headcount
    wanted = list(dict.fromkeys(zip(shown["company"], shown["metric"], strict=True)))[
        :MAX_CHARTS] if len(shown) else []
    first_alert = shown.groupby(["company", "metric"])["date"].min() if len(shown) else {}
    names = dict(zip(alerts["company"], alerts["company_name"], strict=True)) \
        if len(alerts) else {}
    path = folder / "index.html"
    charts = []
    # the page and its charts are put in place together once every byte of them is
    # written: a disk filling up half way leaves yesterday's report whole
    with staged() as stage:
        for company, metric in wanted:
            # from a few months before the series' first alert shown, up to the day
            start = pd.Timestamp(first_alert[(company, metric)]) - pd.Timedelta(days=120)
            try:
                fig = plot_company(ws, company, since=start.date(), until=day, metric=metric)
            except InputError:  # no data in the window: nothing to draw
                continue
            full = render(fig, "png")
            key = chart_key(company, metric)
            chart = {"company": company, "key": key, "name": names.get(company) or company,
                     "metric": metric, "label": metric_label(metric),
                     "file": f"{key}.png", "thumb": f"{key}.thumb.png"}
            stage.write(folder / chart["file"], full, parents=True)
            stage.write(folder / chart["thumb"], _thumbnail(full), parents=True)
            charts.append(chart)
        platform, chart_file = _platform(ws, day, stage, folder)
        run = report_data.run_record(ws.store, run_id)
        html = _env().get_template("daily.html.j2").render(
            day=day.isoformat(), summary=summary, run=run and _plain_run(run),
            run_given=run_id is not None, new_alerts=_records(new), backfill=backfill,
            open_alerts=_records(open_), reviewed=_records(reviewed),
            reviewed_days=REVIEWED_DAYS, events=_events(alerts), charts=charts,
            charted={c["key"] for c in charts}, stale=_stale(ws, day),
            stale_days=ws.settings.run.stale_days, companies=company_ops.count(ws.store),
            platform=platform, platform_chart=chart_file, platform_days=PLATFORM_DAYS,
            inflated=_rows(inflated_companies(ws, day)),
        )
        stage.write(path, html, parents=True)
    _remove_stale_images(folder, [n for c in charts for n in (c["file"], c["thumb"])]
                         + ([chart_file] if chart_file else []))
    return Report(path, len(charts), len(new), len(open_))


def _plain_run(run: dict[str, Any]) -> dict[str, Any]:
    shown = {k: _plain(v) for k, v in run.items() if k != "sources"}
    # a failure of the whole source is its reason, in the sources table already
    shown["sources"] = [{**s, "shown_failures": [f for f in s["failures"] if f.get("company")
                                                 or f.get("reason") != s["reason"]]}
                        for s in run["sources"]]
    shown["inserted"] = sum(int(s["inserted"] or 0) for s in run["sources"])
    shown["failed_sources"] = [s["source"] for s in run["sources"] if s["status"] == "failed"]
    return shown


def report_step(ws: Workspace, day: date, run_id: int) -> StepOutcome:
    """The main job's last step: the report of the run's day, alerts it created marked new."""
    if not ws.settings.report.enabled:
        return StepOutcome()
    new_ids = run_history.alerts_created_since_start(ws.store, run_id)
    report = build_report(ws, day, new_ids=new_ids, run_id=run_id)
    details: dict[str, Any] = {"report": str(report.path)}
    url = report_url(ws.settings, day)
    if url:
        details["report_url"] = url
    return StepOutcome(notes=[f"report {report.path}"], details=details)


__all__ = ["MAX_CHARTS", "Report", "build_report", "report_step", "report_url"]
