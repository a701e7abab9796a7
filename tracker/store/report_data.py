"""What the daily report reads: the run it tells about, the alerts known on its day,
and how long each company has gone without data.

Reads only. The report is a picture of one day, so every read here is bounded by
that day: alerts first seen after it and observations of later days are left out,
and a report rebuilt for an earlier day does not borrow tomorrow's news. (Review
status and notes are the current ones: the alerts table keeps no history of them.)

All columns of the alerts table are read, not a fixed list, so fields added to
alerts later (who reviewed, when) reach the report without a change here.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd
from sqlalchemy import or_, select

from tracker.records import DEFAULT_METRIC
from tracker.store import companies as company_ops
from tracker.store.core import Store
from tracker.store.schema import (
    alert_changes,
    alerts,
    companies,
    run_sources,
    runs,
    series,
    sources,
)

#: Failures kept per source in the report's run summary (the run record keeps 200).
FAILURES_SHOWN = 20


def run_record(store: Store, run_id: int | None) -> dict[str, Any] | None:
    """Run ``run_id``, or else the latest run started, whatever day it collected for.

    (A run does not record the day it ran for, only when it ran; the report says
    which run it shows and when it started.) A dict of the run's columns plus
    ``sources``: what each source did in it, failures (company, reason) cut to
    :data:`FAILURES_SHOWN` with ``more`` counting the rest. None when there is no
    such run (a report built from imported history).
    """
    query = select(runs.c.id, runs.c.kind, runs.c.started_at, runs.c.finished_at,
                   runs.c.status, runs.c.summary)
    if run_id is not None:
        query = query.where(runs.c.id == run_id)
    else:
        query = query.order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(1)
    with store.reading("reading the run for the report") as conn:
        row = conn.execute(query).mappings().first()
        if row is None:
            return None
        found = conn.execute(
            select(run_sources.c.source, run_sources.c.status, run_sources.c.ok,
                   run_sources.c.failed, run_sources.c.inserted, run_sources.c.reason,
                   run_sources.c.failures)
            .where(run_sources.c.run_id == row["id"]).order_by(run_sources.c.source)
        ).mappings().all()
    record = dict(row)
    record["sources"] = [_source(dict(s)) for s in found]
    return record


def _source(row: dict[str, Any]) -> dict[str, Any]:
    failures = [f for f in (row.pop("failures") or []) if isinstance(f, dict)]
    row["failures"] = failures[:FAILURES_SHOWN]
    # the run record keeps at most 200 failures; ``failed`` counts them all
    row["more"] = max(int(row["failed"] or 0), len(failures)) - len(row["failures"])
    return row


def stale_companies(store: Store, until: date, cutoff: date, metric: str = DEFAULT_METRIC
                    ) -> list[tuple[str, str, date | None]]:
    """The companies with no ``metric`` observation in (cutoff, until], with their
    last day (:func:`tracker.store.companies.stale`)."""
    with store.reading("reading the stale companies") as conn:
        return company_ops.stale(conn, until, cutoff, metric)


def known_alerts(store: Store, until: date, recent_since: date) -> pd.DataFrame:
    """The alerts first seen (``detected_on``) by ``until`` that are open, or were first
    seen from ``recent_since`` on: every stored column plus company, company_name,
    metric and source; by date, then id.

    Closed alerts of older history are left out in the query, so the report of a
    long-running install reads what it shows, not years of reviewed alerts. Those with
    a change dated from ``recent_since`` on are kept: reviewed recently, or changed
    after ``until``, when they may still have been open (the caller rewinds them,
    :func:`tracker.alerts.rewind`).
    """
    changed = select(alert_changes.c.alert_id).where(alert_changes.c.day >= recent_since)
    query = (select(alerts, series.c.company_id.label("company"),
                    companies.c.name.label("company_name"), series.c.metric,
                    sources.c.name.label("source"))
             .join(series, series.c.id == alerts.c.series_id)
             .join(sources, sources.c.id == alerts.c.source_id)
             .join(companies, companies.c.id == series.c.company_id)
             .where(alerts.c.detected_on <= until,
                    or_(alerts.c.status == "open", alerts.c.detected_on >= recent_since,
                        alerts.c.id.in_(changed)))
             .order_by(alerts.c.date, alerts.c.id))
    with store.reading("reading alerts for the report") as conn:
        result = conn.execute(query)
        return pd.DataFrame(result.mappings().all(), columns=list(result.keys()))
