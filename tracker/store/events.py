"""Stored population events and their members: replace a judged range, list, notify.

A population pass (full or daily) judges a range of days; :func:`save` replaces the
stored events touching that range with what it found, in one transaction: events it
restates keep their id, ``created_at`` and ``notified_at`` (an event is announced
once, however often it is recomputed); events it no longer finds (their data were
corrected) are deleted with their members. Member alerts get the event's id in
``alerts.event_id`` (the whole-metric event's when an alert is a member of several),
cleared again when the event goes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Text, bindparam, cast, delete, select, update

from tracker.store.companies import now_utc
from tracker.store.core import Store
from tracker.store.schema import (
    alerts,
    companies,
    population_event_members,
    population_events,
    series,
    source_state,
    sources,
)

#: Event columns a pass computes (besides id, timestamps).
VALUES = ("metric", "cohort", "direction", "first_date", "last_date", "n_series", "n_members",
          "share", "weighted_share", "peak_share", "expected_share", "score",
          "median_change_pct")
_CHUNK = 5000
_MARK_SOURCE, _MARK_KEY = "tracker.population", "mark"


def save(store: Store, events: Sequence[dict[str, Any]], members: Sequence[dict[str, Any]],
         *, first: date | None, last: date,
         mark: tuple[date, int] | None = None) -> tuple[list[str], int]:
    """Replace the events touching [``first``, ``last``] (everything when ``first`` is
    None) by ``events`` and their ``members`` (rows with event_id, series_id,
    source_id, date, change_pct, score, value_before, alert_id).

    Returns the ids that are new (never stored before) and how many were deleted.
    ``mark`` (the last day judged, the last observation read) is saved with them.
    """
    stamp = now_utc()
    ids = [e["id"] for e in events]
    with store.transaction("saving population events") as conn:
        q = select(population_events.c.id, population_events.c.created_at,
                   population_events.c.notified_at).where(population_events.c.first_date <= last)
        if first is not None:
            q = q.where(population_events.c.last_date >= first)
        old = {r.id: r for r in conn.execute(q)}
        for k in range(0, len(ids), _CHUNK):  # restated events that began before the range
            old.update({r.id: r for r in conn.execute(
                select(population_events.c.id, population_events.c.created_at,
                       population_events.c.notified_at)
                .where(population_events.c.id.in_(ids[k:k + _CHUNK])))})
        gone = sorted(set(old) - set(ids))
        touched = sorted(old)
        for k in range(0, len(touched), _CHUNK):
            part = touched[k:k + _CHUNK]
            conn.execute(delete(population_event_members)
                         .where(population_event_members.c.event_id.in_(part)))
            conn.execute(update(alerts).where(alerts.c.event_id.in_(part))
                         .values(event_id=None))
            conn.execute(delete(population_events).where(population_events.c.id.in_(part)))
        if events:
            conn.execute(population_events.insert(), [
                {**{c: e[c] for c in ("id", *VALUES)},
                 "created_at": old[e["id"]].created_at if e["id"] in old else stamp,
                 "updated_at": stamp,
                 "notified_at": old[e["id"]].notified_at if e["id"] in old else None}
                for e in events])
        if members:
            conn.execute(population_event_members.insert(), list(members))
        linked = _alert_links(events, members)
        if linked:
            conn.execute(update(alerts).where(alerts.c.id == bindparam("aid"))
                         .values(event_id=bindparam("eid")),
                         [{"aid": a, "eid": e} for a, e in linked.items()])
        if mark is not None:
            conn.execute(delete(source_state).where(source_state.c.source == _MARK_SOURCE,
                                                    source_state.c.key == _MARK_KEY))
            conn.execute(source_state.insert().values(
                source=_MARK_SOURCE, key=_MARK_KEY, updated_at=stamp,
                value=json.dumps({"through": mark[0].isoformat(), "last_observation": mark[1]})))
    return [i for i in ids if i not in old], len(gone)


def _alert_links(events: Sequence[dict[str, Any]], members: Sequence[dict[str, Any]]
                 ) -> dict[int, str]:
    """Alert id -> the event it is a member of; the whole-metric event wins."""
    rank = {e["id"]: (e["cohort"] is not None, e["id"]) for e in events}
    out: dict[int, str] = {}
    for m in sorted(members, key=lambda m: rank[m["event_id"]], reverse=True):
        if m["alert_id"] is not None:
            out[int(m["alert_id"])] = m["event_id"]
    return out


def query(store: Store, *, since: date | None = None, until: date | None = None,
          metric: str | None = None, cohort: str | None = None,
          ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Stored events overlapping [since, until], with how many members alerted."""
    e = population_events
    q = select(e)
    if since is not None:
        q = q.where(e.c.last_date >= since)
    if until is not None:
        q = q.where(e.c.first_date <= until)
    if metric is not None:
        q = q.where(e.c.metric == metric)
    if cohort is not None:
        q = q.where(e.c.cohort == cohort)
    if ids is not None:
        q = q.where(e.c.id.in_(list(ids)))
    m = population_event_members
    with store.reading("reading population events") as conn:
        rows = conn.execute(q.order_by(e.c.first_date, e.c.id)).mappings().all()
        frame = pd.DataFrame(rows, columns=[c.name for c in e.columns])
        counts = pd.DataFrame(conn.execute(
            select(m.c.event_id, m.c.alert_id.is_not(None).label("alerted"))).all(),
            columns=["event_id", "alerted"])
    alerted = counts.groupby("event_id")["alerted"].sum() if len(counts) else pd.Series(
        dtype="int64")
    frame["n_alerted"] = frame["id"].map(alerted).fillna(0).astype("int64")
    frame["n_silent"] = frame["n_members"] - frame["n_alerted"]
    return frame


def members(store: Store, event_ids: Sequence[str]) -> pd.DataFrame:
    """Members of the events, with company, metric and source names, by event then change."""
    m = population_event_members
    q = (select(m.c.event_id, series.c.company_id.label("company"), series.c.metric,
                sources.c.name.label("source"), m.c.date, m.c.change_pct, m.c.score,
                m.c.value_before, m.c.alert_id)
         .join(series, series.c.id == m.c.series_id)
         .join(sources, sources.c.id == m.c.source_id)
         .where(m.c.event_id.in_(list(event_ids)))
         .order_by(m.c.event_id, m.c.change_pct, series.c.company_id))
    with store.reading("reading population event members") as conn:
        rows = conn.execute(q).mappings().all()
    return pd.DataFrame(rows, columns=["event_id", "company", "metric", "source", "date",
                                       "change_pct", "score", "value_before", "alert_id"])


def pending(store: Store, since: date, until: date) -> pd.DataFrame:
    """Events not yet announced whose last day is in [since, until]."""
    frame = query(store, since=since, until=until)
    return frame[frame["notified_at"].isna()].reset_index(drop=True)


def mark_notified(store: Store, ids: Sequence[str], when: datetime | None = None) -> None:
    """Record that the events were announced (they are not announced again)."""
    if not ids:
        return
    with store.transaction("marking population events notified") as conn:
        conn.execute(update(population_events).where(population_events.c.id.in_(list(ids)))
                     .values(notified_at=when or now_utc()))


def event_of_alerts(store: Store, fingerprints: Sequence[str]) -> dict[str, str]:
    """Fingerprint -> population event id, for alerts that are members of one."""
    out: dict[str, str] = {}
    fps = list(fingerprints)
    with store.reading("reading alert events") as conn:
        for k in range(0, len(fps), _CHUNK):
            out.update({r.fingerprint: r.event_id for r in conn.execute(
                select(alerts.c.fingerprint, alerts.c.event_id)
                .where(alerts.c.fingerprint.in_(fps[k:k + _CHUNK]),
                       alerts.c.event_id.like("pop-%")))})
    return out


def load_mark(store: Store) -> tuple[date, int] | None:
    """The last day population events were judged through, and the last observation read."""
    with store.reading("reading the population mark") as conn:
        raw = conn.execute(select(source_state.c.value).where(
            source_state.c.source == _MARK_SOURCE, source_state.c.key == _MARK_KEY)).scalar()
    if raw is None:
        return None
    data = json.loads(raw)
    return date.fromisoformat(data["through"]), int(data["last_observation"])


def industries(store: Store) -> dict[str, str]:
    """Company id -> its ``industry`` tag (imported, e.g. from Thinknum exports)."""
    # only the companies whose tags name an industry: parsing a million empty tags
    # cost 11 s of every daily run
    with store.reading("reading industries") as conn:
        rows = conn.execute(select(companies.c.id, companies.c.tags).where(
            cast(companies.c.tags, Text).like('%"industry"%'))).all()
    return {r.id: str(r.tags["industry"]) for r in rows
            if isinstance(r.tags, dict) and r.tags.get("industry")}
