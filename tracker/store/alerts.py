"""Stored alerts: upsert by fingerprint, listing, review status, and the detection mark.

An alert row is identified by its fingerprint (see ``tracker.alerts.fingerprint``).
Saving is an upsert in one transaction: new fingerprints are inserted as ``open``,
known ones are updated in place where a field changed, and a verdict only moves
forward (a replay of an earlier day, with less data, never turns a confirmed alert
back into a provisional one). The stored alerts of the days a detection re-judged
(:class:`Judged`) that it no longer finds are *withdrawn*, never deleted: someone
may have been paged about them. Every change is a row of ``alert_changes`` (when,
the day of data, old -> new verdict, the fields, why), in the same transaction.

An analyst's note is never touched by detection, and neither is a status an analyst
set: only an alert nobody reviewed (``reviewed_at`` is null) follows its verdict,
resolved when it becomes a glitch or is withdrawn, open again if it comes back.

The *detection mark* (``through`` day, last observation id) records how far
detection has looked, so the daily run judges only the days whose verdicts can have
changed since: later days, and days of observations added after the mark
(late data, corrections). It is saved in the same transaction as the alerts it led
to, so a crash between the two can only make the next run redo work, never skip it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, bindparam, delete, func, insert, select, update

from tracker.errors import NotFoundError
from tracker.records import DETECTOR_KINDS, Alert
from tracker.store import window_cache
from tracker.store.companies import now_utc
from tracker.store.core import Store
from tracker.store.schema import (
    alert_changes,
    alerts,
    companies,
    observations,
    series,
    source_state,
    sources,
)

#: Fields detection may change on an existing alert.
UPDATABLE = ("kind", "verdict", "confirmed_on", "change_pct", "value_before", "value_after",
             "score", "severity", "event_id", "sources_agreeing", "sources_seen",
             "sources_silent", "sources_no_data", "possible_source_error")
#: What an upsert row carries besides ``UPDATABLE``.
IDENTITY = ("fingerprint", "series_id", "source_id", "date", "detected_on")
_MARK_SOURCE, _MARK_KEY = "tracker.detect", "mark"
#: Verdicts after which the alarm is over: an unreviewed alert is resolved by them.
OVER = ("glitch", "withdrawn")


@dataclass(frozen=True)
class Judged:
    """What one detection pass re-judged, so that what it no longer finds is withdrawn.

    ``day`` is the last day of data judged (the day recorded with each change);
    the stored alerts first detected in [``first_detected``, ``day``] (from the
    start when None), dated ``since`` or later, of ``company_ids`` (all when None)
    were all judged again. ``cause`` says why they were (in each change's reason).
    ``withdraw`` is False for a pass over a past state of knowledge (``known_at``),
    which restates alerts but is no evidence against the others.
    """

    day: date
    first_detected: date | None = None
    since: date | None = None
    company_ids: tuple[str, ...] | None = None
    cause: str = ""
    withdraw: bool = True
    #: The kinds of alert the pass produces: another pass's alerts (the ratio to a
    #: reference headcount's, ``tracker.inflation``) are not its to withdraw.
    kinds: tuple[str, ...] = DETECTOR_KINDS


@dataclass(frozen=True)
class Saved:
    """What an upsert did: new fingerprints, rows updated, rows withdrawn."""

    new: set[str]
    updated: int
    withdrawn: int


@dataclass(frozen=True)
class DetectionMark:
    """Detection has judged every day up to ``through`` with the observations up to
    id ``last_observation`` (all of them written before that detection read)."""

    through: date
    last_observation: int


#: company ids per query of :func:`series_source_ids` (under SQLite's 32,766 bound
#: parameters)
_IDS_CHUNK = 5000


def series_source_ids(store: Store, keys: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Series and source ids for rows of (company, metric, source)."""
    wanted = keys["company"].unique().tolist()
    q = select(series.c.id, series.c.company_id, series.c.metric)
    # the series of the wanted companies (a day's alerts, an event's members) in
    # chunks of index probes, not the names of a million series; past a tenth of a
    # million companies one read of the whole table costs less
    chunks = [q.where(series.c.company_id.in_(wanted[k:k + _IDS_CHUNK]))
              for k in range(0, len(wanted), _IDS_CHUNK)] if len(wanted) <= 100_000 else [q]
    with store.reading("mapping series") as conn:
        found = [row for c in chunks for row in conn.execute(c).all()]
        ser = pd.DataFrame(found, columns=["series_id", "company", "metric"])
        src = pd.DataFrame(conn.execute(select(sources.c.id, sources.c.name)).all(),
                           columns=["source_id", "source"])
    merged = keys[["company", "metric", "source"]].merge(ser, how="left").merge(src, how="left")
    return merged["series_id"].to_numpy(), merged["source_id"].to_numpy()


def upsert(store: Store, rows: Sequence[dict[str, Any]], *,
           mark: DetectionMark | None = None,
           window: window_cache.Window | None = None,
           judged: Judged | None = None, found: set[str] | None = None) -> Saved:
    """Insert new alerts, update changed ones, withdraw the judged ones not ``found``.

    Each row has the ``IDENTITY`` and ``UPDATABLE`` fields. ``found`` is the
    fingerprints the detector produced (the rows may also restate stored neighbours);
    without it every row counts as found. ``mark`` and the detection ``window`` it
    was computed from are saved in the same transaction.
    """
    stamp = now_utc()
    day = judged.day if judged is not None else max(
        (r["detected_on"] for r in rows), default=stamp.date())
    cause = judged.cause if judged is not None else ""
    fresh: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    log: list[dict[str, Any]] = []
    with store.transaction("saving alerts") as conn:
        existing = {}
        fps = [r["fingerprint"] for r in rows]
        cols = [alerts.c.id, alerts.c.fingerprint, alerts.c.status, alerts.c.reviewed_at,
                *[alerts.c[c] for c in UPDATABLE]]
        for k in range(0, len(fps), 5000):
            existing.update({row.fingerprint: row for row in conn.execute(
                select(*cols)
                .where(alerts.c.fingerprint.in_(bindparam("fps", expanding=True))),
                {"fps": fps[k:k + 5000]})})
        for r in rows:
            old = existing.get(r["fingerprint"])
            if old is None:
                fresh.append(r)
                continue
            if _regresses(old, r):
                continue
            diff = {c: (getattr(old, c), r[c]) for c in UPDATABLE
                    if _differs(getattr(old, c), r[c])}
            if not diff:
                continue
            status = _follow(old, r["verdict"])
            changed.append({**r, "status": status})
            log.append(_change(old, r["verdict"], status, diff, day, stamp, cause))
        if fresh:
            conn.execute(insert(alerts), [{**r, "status": "open", "created_at": stamp,
                                           "updated_at": stamp} for r in fresh])
        if changed:
            conn.execute(
                update(alerts).where(alerts.c.fingerprint == bindparam("fp"))
                .values({c: bindparam(c) for c in (*UPDATABLE, "status")}
                        | {"updated_at": stamp}),
                [{**{c: r[c] for c in (*UPDATABLE, "status")}, "fp": r["fingerprint"]}
                 for r in changed],
            )
        withdrawn = 0
        if judged is not None and judged.withdraw:
            keep = set(fps) if found is None else found
            gone = [row for row in conn.execute(_judged_query(judged))
                    if row.fingerprint not in keep]
            if gone:
                withdrawn = len(gone)
                updates = []
                for row in gone:
                    status = _follow(row, "withdrawn")
                    updates.append({"aid": row.id, "st": status})
                    log.append(_change(row, "withdrawn", status,
                                       {"verdict": (row.verdict, "withdrawn")}, day, stamp,
                                       cause))
                conn.execute(update(alerts).where(alerts.c.id == bindparam("aid"))
                             .values(verdict="withdrawn", status=bindparam("st"),
                                     updated_at=stamp), updates)
        if log:
            conn.execute(insert(alert_changes), log)
        if mark is not None:
            _save_mark(conn, mark)
        if window is not None:
            window_cache.save(conn, store, window)
    return Saved({r["fingerprint"] for r in fresh}, len(changed), withdrawn)


def _judged_query(j: Judged) -> Any:
    """The stored, not yet withdrawn alerts a detection pass judged again."""
    q = (select(alerts.c.id, alerts.c.fingerprint, alerts.c.verdict, alerts.c.status,
                alerts.c.reviewed_at)
         .where(alerts.c.verdict != "withdrawn", alerts.c.detected_on <= j.day,
                alerts.c.kind.in_(list(j.kinds))))
    if j.first_detected is not None:
        q = q.where(alerts.c.detected_on >= j.first_detected)
    if j.since is not None:
        q = q.where(alerts.c.date >= j.since)
    if j.company_ids is not None:
        q = q.where(alerts.c.series_id.in_(
            select(series.c.id).where(series.c.company_id.in_(list(j.company_ids)))))
    return q


def _follow(old: Any, verdict: str) -> str:
    """The status after a verdict change: an unreviewed alert follows its verdict."""
    status = str(old.status)
    if old.reviewed_at is not None or verdict == old.verdict:
        return status
    if verdict in OVER and status == "open":
        return "resolved"
    if verdict not in OVER and old.verdict in OVER and status == "resolved":
        return "open"
    return status


def _change(old: Any, verdict: str, status: str, diff: dict[str, tuple[Any, Any]],
            day: date, stamp: Any, cause: str) -> dict[str, Any]:
    """One ``alert_changes`` row: old -> new, the fields, and why."""
    return {"alert_id": int(old.id), "day": day, "changed_at": stamp,
            "old_verdict": old.verdict, "new_verdict": verdict,
            "old_status": old.status if status != old.status else None,
            "new_status": status if status != old.status else None,
            "changes": {c: [_plain(a), _plain(b)] for c, (a, b) in diff.items()},
            "reason": _why(old.verdict, verdict, diff, status != old.status, cause)}


def _why(old: str, new: str, diff: dict[str, tuple[Any, Any]], moved: bool,
         cause: str) -> str:
    """A sentence an analyst reads in the alert's history."""
    if new == old:
        fields = ", ".join(sorted(diff))
        text = f"re-evaluated, still {new}: {fields} changed"
    elif new == "withdrawn":
        text = f"withdrawn (was {old}): the detector no longer finds it in the data as now known"
    elif new == "glitch":
        text = f"{old} -> glitch: the count came back"
    elif new == "confirmed" and old == "provisional":
        text = "provisional -> confirmed: the count stayed moved"
    else:
        text = f"{old} -> {new}: found again in the data as now known"
    if moved:
        text += "; status follows the verdict (nobody reviewed it)"
    # a confirmation or a glitch is the lifecycle of a move; anything else is news
    # about the data, whose cause (a correction, a full pass) is said
    lifecycle = old == "provisional" and new in ("confirmed", "glitch")
    return text + (f"; {cause}" if cause and not lifecycle else "")


def _plain(value: Any) -> Any:
    """A value as JSON keeps it: dates as ISO text, numpy scalars as Python numbers."""
    if value is None:
        return None
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _regresses(old: object, new: dict[str, Any]) -> bool:
    """A verdict only moves forward: a replay of an earlier day (less data) must not
    turn a confirmed alert (or a glitch) back into a provisional one."""
    return getattr(old, "verdict", None) in ("confirmed", "glitch") \
        and new["verdict"] == "provisional"


def _differs(old: object, new: object) -> bool:
    if isinstance(old, float) and isinstance(new, float):
        return not np.isclose(old, new, rtol=1e-9, atol=1e-9)
    return old != new


def moves_since(store: Store, day: date) -> pd.DataFrame:
    """Stored drop, spike and glitch alerts dated ``day`` or later, with the fields an
    upsert needs plus company, metric and source: the neighbours that a day's new
    verdicts are grouped into cross-company events with (a withdrawn one is none)."""
    query = (select(*[alerts.c[c] for c in (*IDENTITY, *UPDATABLE)],
                    series.c.company_id.label("company"), series.c.metric,
                    sources.c.name.label("source"))
             .join(series, series.c.id == alerts.c.series_id)
             .join(sources, sources.c.id == alerts.c.source_id)
             .where(alerts.c.date >= day, alerts.c.kind.in_(("drop", "spike", "glitch")),
                    alerts.c.verdict != "withdrawn"))
    with store.reading("reading recent alerts") as conn:
        rows = conn.execute(query).mappings().all()
    return pd.DataFrame(rows, columns=[*IDENTITY, *UPDATABLE, "company", "metric", "source"])


def query(store: Store, *, since: date | None = None, status: str | None = None,
          kind: str | None = None, company_id: str | None = None,
          severities: Sequence[str] | None = None, limit: int | None = None,
          ids: Sequence[int] | None = None, metric: str | None = None) -> pd.DataFrame:
    """Stored alerts with company, metric and source names, by date then id.

    ``severities`` keeps only those levels; ``limit`` keeps the last ``limit`` alerts
    of that order (the most recent), still returned oldest first. Both are applied in
    SQL, so a listing of the latest ten reads ten rows, not the whole table.
    """
    q = (select(alerts, series.c.company_id.label("company"), series.c.metric,
                sources.c.name.label("source"))
         .join(series, series.c.id == alerts.c.series_id)
         .join(sources, sources.c.id == alerts.c.source_id))
    if since is not None:
        q = q.where(alerts.c.date >= since)
    if status is not None:
        q = q.where(alerts.c.status == status)
    if kind is not None:
        q = q.where(alerts.c.kind == kind)
    if company_id is not None:
        q = q.where(series.c.company_id == company_id)
    if metric is not None:
        q = q.where(series.c.metric == metric)
    if severities is not None:
        q = q.where(alerts.c.severity.in_(list(severities)))
    if ids is not None:
        q = q.where(alerts.c.id.in_(list(ids)))
    if limit is not None:
        q = q.order_by(alerts.c.date.desc(), alerts.c.id.desc()).limit(limit)
    else:
        q = q.order_by(alerts.c.date, alerts.c.id)
    with store.reading("listing alerts") as conn:
        rows = conn.execute(q).mappings().all()
    return pd.DataFrame(rows[::-1] if limit is not None else rows)


def set_status(store: Store, ids: list[int], status: str, note: str | None = None,
               author: str | None = None) -> int:
    """Set the review status (and note) of alerts, recording who (``author``) and when
    (``reviewed_at``, UTC); every id must exist.

    Each review is also a row of ``alert_changes``, like a change detection makes: the
    alert keeps only its last review, but its history (``tracker alerts --history``)
    and a view of a past day (:func:`tracker.alerts.alerts_as_of`) need every one.
    Its ``day`` is the last day of data detection had judged when the analyst looked
    (the detection mark), so reviews and verdicts share one timeline: today in a daily
    install, the replayed day in a backfill or a study of 2022.
    """
    with store.transaction("updating alerts") as conn:
        before = {r.id: r for r in conn.execute(
            select(alerts.c.id, alerts.c.status, alerts.c.verdict, alerts.c.note,
                   alerts.c.reviewed_by).where(
                alerts.c.id.in_(bindparam("ids", expanding=True))), {"ids": ids})}
        missing = sorted(set(ids) - set(before))
        if missing:
            raise NotFoundError(f"no alert with id {', '.join(map(str, missing))} "
                                "(see 'tracker alerts')")
        stamp = now_utc()
        raw = conn.execute(select(source_state.c.value).where(
            source_state.c.source == _MARK_SOURCE, source_state.c.key == _MARK_KEY)).scalar()
        seen_through = date.fromisoformat(json.loads(raw)["through"]) if raw else stamp.date()
        values: dict[str, object] = {"status": status, "updated_at": stamp,
                                     "reviewed_at": stamp}
        if author is not None:
            values["reviewed_by"] = author
        if note is not None:
            values["note"] = note
        conn.execute(update(alerts).where(alerts.c.id.in_(bindparam("ids", expanding=True)))
                     .values(**values), {"ids": ids})
        reason = f"reviewed by {author or 'someone'}: {status}" + (f" ({note})" if note else "")
        log = []
        for r in before.values():
            changed = {"status": [r.status, status]}
            if note is not None and note != r.note:
                changed["note"] = [r.note, note]
            if author is not None and author != r.reviewed_by:
                changed["reviewed_by"] = [r.reviewed_by, author]
            log.append({"alert_id": r.id, "day": seen_through, "changed_at": stamp,
                        "old_verdict": r.verdict, "new_verdict": r.verdict,
                        "old_status": r.status, "new_status": status,
                        "changes": changed, "reason": reason})
        conn.execute(insert(alert_changes), log)
    return len(ids)


# -- the detection mark ---------------------------------------------------------------

def load_mark(store: Store) -> DetectionMark | None:
    with store.reading("reading the detection mark") as conn:
        raw = conn.execute(select(source_state.c.value).where(
            source_state.c.source == _MARK_SOURCE, source_state.c.key == _MARK_KEY)).scalar()
    if raw is None:
        return None
    data = json.loads(raw)
    return DetectionMark(date.fromisoformat(data["through"]), int(data["last_observation"]))


def _save_mark(conn: Connection, mark: DetectionMark) -> None:
    conn.execute(delete(source_state).where(source_state.c.source == _MARK_SOURCE,
                                            source_state.c.key == _MARK_KEY))
    conn.execute(insert(source_state).values(
        source=_MARK_SOURCE, key=_MARK_KEY, updated_at=now_utc(),
        value=json.dumps({"through": mark.through.isoformat(),
                          "last_observation": mark.last_observation})))


def last_observation_id(store: Store) -> int:
    """Highest observation id: read *before* the observations a detection uses."""
    with store.reading("reading the last observation") as conn:
        return int(conn.execute(select(func.max(observations.c.id))).scalar() or 0)


def earliest_day_since(store: Store, after_id: int) -> date | None:
    """Earliest day of the observations with an id above ``after_id``: the daily run
    asks for the rows written since its last mark, through the id index.

    The rows are selected in a materialized CTE first: a bare ``min(as_of) WHERE id >``
    is planned by PostgreSQL as "walk the as_of index until an id matches", which
    reads every old row of the table before the new ones (1.5 s at 10^7 rows, minutes
    at 10^9) where the id range is 60 ms.
    """
    new = (select(observations.c.as_of).where(observations.c.id > after_id)
           .cte("new").prefix_with("MATERIALIZED"))
    with store.reading("reading observation days") as conn:
        return _as_date(conn.execute(select(func.min(new.c.as_of))).scalar())


def first_observation_day(store: Store) -> date | None:
    with store.reading("reading the first day") as conn:
        return _as_date(conn.execute(select(func.min(observations.c.as_of))).scalar())


def _as_date(value: object) -> date | None:
    if value is None:
        return None
    if isinstance(value, str):
        return date.fromisoformat(value[:10])
    assert isinstance(value, date)
    return value


# -- the change log and what notifications said -----------------------------------------

CHANGE_COLUMNS = ("alert_id", "day", "changed_at", "old_verdict", "new_verdict", "old_status",
                  "new_status", "changes", "reason")


def changes(store: Store, alert_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """The recorded changes of alerts (all, or of ``alert_ids``), oldest first."""
    q = select(*[alert_changes.c[c] for c in CHANGE_COLUMNS]).order_by(
        alert_changes.c.alert_id, alert_changes.c.id)
    if alert_ids is not None:
        if not alert_ids:
            return pd.DataFrame(columns=list(CHANGE_COLUMNS))
        q = q.where(alert_changes.c.alert_id.in_(bindparam("ids", expanding=True)))
    with store.reading("reading alert changes") as conn:
        rows = conn.execute(q, {"ids": list(alert_ids)} if alert_ids is not None else {})
        return pd.DataFrame(rows.mappings().all(), columns=list(CHANGE_COLUMNS))


def pending_updates(store: Store, until: date) -> list[Alert]:
    """Notified alerts whose verdict changed since (first detected by ``until``).

    Each carries ``previous_verdict``, ``previous_kind`` and ``previous_severity``:
    what the notification said. The review status does not matter: whoever was paged
    about a drop wants to hear that it was a glitch, whatever the alert's status.
    """
    query = (
        select(alerts.c.id, alerts.c.fingerprint, series.c.company_id.label("company"),
               companies.c.name.label("company_name"), series.c.metric,
               sources.c.name.label("source"), alerts.c.date, alerts.c.detected_on,
               alerts.c.confirmed_on, alerts.c.verdict, alerts.c.kind, alerts.c.change_pct,
               alerts.c.value_before, alerts.c.value_after, alerts.c.score, alerts.c.severity,
               alerts.c.status, alerts.c.event_id, alerts.c.sources_agreeing,
               alerts.c.sources_seen, alerts.c.sources_silent, alerts.c.sources_no_data,
               alerts.c.possible_source_error,
               alerts.c.notified_verdict.label("previous_verdict"),
               alerts.c.notified_kind.label("previous_kind"),
               alerts.c.notified_severity.label("previous_severity"))
        .join(series, series.c.id == alerts.c.series_id)
        .join(sources, sources.c.id == alerts.c.source_id)
        .join(companies, companies.c.id == series.c.company_id)
        .where(alerts.c.notified_at.is_not(None), alerts.c.notified_verdict.is_not(None),
               alerts.c.verdict != alerts.c.notified_verdict, alerts.c.detected_on <= until)
        .order_by(alerts.c.date, alerts.c.id)
    )
    with store.reading("reading alert updates to notify") as conn:
        return [Alert.from_mapping(row) for row in conn.execute(query).mappings()]


