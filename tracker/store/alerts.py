"""Stored alerts: upsert by fingerprint, listing, review status, and the detection mark.

An alert row is identified by its fingerprint (see ``tracker.alerts.fingerprint``).
Saving is an upsert in one transaction: new fingerprints are inserted as ``open``,
known ones are updated in place where a field changed, and a verdict only moves
forward (a replay of an earlier day, with less data, never turns a confirmed alert
back into a provisional one). An analyst's status and note are never touched by
detection.

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
from tracker.store import window_cache
from tracker.store.companies import now_utc
from tracker.store.core import Store
from tracker.store.schema import alerts, observations, series, source_state, sources

#: Fields detection may change on an existing alert.
UPDATABLE = ("kind", "verdict", "confirmed_on", "change_pct", "value_before", "value_after",
             "score", "severity", "event_id", "sources_agreeing")
#: What an upsert row carries besides ``UPDATABLE``.
IDENTITY = ("fingerprint", "series_id", "source_id", "date", "detected_on")
_MARK_SOURCE, _MARK_KEY = "tracker.detect", "mark"


@dataclass(frozen=True)
class DetectionMark:
    """Detection has judged every day up to ``through`` with the observations up to
    id ``last_observation`` (all of them written before that detection read)."""

    through: date
    last_observation: int


def series_source_ids(store: Store, keys: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Series and source ids for rows of (company, metric, source)."""
    with store.reading("mapping series") as conn:
        ser = pd.DataFrame(conn.execute(select(series.c.id, series.c.company_id,
                                               series.c.metric)).all(),
                           columns=["series_id", "company", "metric"])
        src = pd.DataFrame(conn.execute(select(sources.c.id, sources.c.name)).all(),
                           columns=["source_id", "source"])
    merged = keys[["company", "metric", "source"]].merge(ser, how="left").merge(src, how="left")
    return merged["series_id"].to_numpy(), merged["source_id"].to_numpy()


def upsert(store: Store, rows: Sequence[dict[str, Any]], *,
           mark: DetectionMark | None = None,
           window: window_cache.Window | None = None) -> tuple[set[str], int]:
    """Insert new alerts, update changed ones; returns (new fingerprints, rows updated).

    Each row has the ``IDENTITY`` and ``UPDATABLE`` fields. ``mark`` and the detection
    ``window`` it was computed from are saved in the same transaction.
    """
    stamp = now_utc()
    fresh: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    with store.transaction("saving alerts") as conn:
        existing = {}
        fps = [r["fingerprint"] for r in rows]
        for k in range(0, len(fps), 5000):
            existing.update({row.fingerprint: row for row in conn.execute(
                select(alerts.c.fingerprint, *[alerts.c[c] for c in UPDATABLE])
                .where(alerts.c.fingerprint.in_(bindparam("fps", expanding=True))),
                {"fps": fps[k:k + 5000]})})
        for r in rows:
            old = existing.get(r["fingerprint"])
            if old is None:
                fresh.append(r)
            elif not _regresses(old, r) and any(_differs(getattr(old, c), r[c])
                                                 for c in UPDATABLE):
                changed.append(r)
        if fresh:
            conn.execute(insert(alerts), [{**r, "status": "open", "created_at": stamp,
                                           "updated_at": stamp} for r in fresh])
        if changed:
            conn.execute(
                update(alerts).where(alerts.c.fingerprint == bindparam("fp"))
                .values({c: bindparam(c) for c in UPDATABLE} | {"updated_at": stamp}),
                [{**{c: r[c] for c in UPDATABLE}, "fp": r["fingerprint"]} for r in changed],
            )
        if mark is not None:
            _save_mark(conn, mark)
        if window is not None:
            window_cache.save(conn, window)
    return {r["fingerprint"] for r in fresh}, len(changed)


def _regresses(old: object, new: dict[str, Any]) -> bool:
    """A verdict only moves forward: a replay of an earlier day (less data) must not
    turn a confirmed alert back into a provisional one."""
    return getattr(old, "verdict", None) == "confirmed" and new["verdict"] == "provisional"


def _differs(old: object, new: object) -> bool:
    if isinstance(old, float) and isinstance(new, float):
        return not np.isclose(old, new, rtol=1e-9, atol=1e-9)
    return old != new


def moves_since(store: Store, day: date) -> pd.DataFrame:
    """Stored drop, spike and glitch alerts dated ``day`` or later, with the fields an
    upsert needs plus company, metric and source: the neighbours that a day's new
    verdicts are grouped into cross-company events with."""
    query = (select(*[alerts.c[c] for c in (*IDENTITY, *UPDATABLE)],
                    series.c.company_id.label("company"), series.c.metric,
                    sources.c.name.label("source"))
             .join(series, series.c.id == alerts.c.series_id)
             .join(sources, sources.c.id == alerts.c.source_id)
             .where(alerts.c.date >= day, alerts.c.kind.in_(("drop", "spike", "glitch"))))
    with store.reading("reading recent alerts") as conn:
        rows = conn.execute(query).mappings().all()
    return pd.DataFrame(rows, columns=[*IDENTITY, *UPDATABLE, "company", "metric", "source"])


def query(store: Store, *, since: date | None = None, status: str | None = None,
          kind: str | None = None, company_id: str | None = None) -> pd.DataFrame:
    """Stored alerts with company, metric and source names, by date then id."""
    q = (select(alerts, series.c.company_id.label("company"), series.c.metric,
                sources.c.name.label("source"))
         .join(series, series.c.id == alerts.c.series_id)
         .join(sources, sources.c.id == alerts.c.source_id)
         .order_by(alerts.c.date, alerts.c.id))
    if since is not None:
        q = q.where(alerts.c.date >= since)
    if status is not None:
        q = q.where(alerts.c.status == status)
    if kind is not None:
        q = q.where(alerts.c.kind == kind)
    if company_id is not None:
        q = q.where(series.c.company_id == company_id)
    with store.reading("listing alerts") as conn:
        return pd.DataFrame(conn.execute(q).mappings().all())


def set_status(store: Store, ids: list[int], status: str, note: str | None = None) -> int:
    """Set the review status (and note) of alerts; every id must exist."""
    with store.transaction("updating alerts") as conn:
        known = set(conn.execute(select(alerts.c.id).where(
            alerts.c.id.in_(bindparam("ids", expanding=True))), {"ids": ids}).scalars())
        missing = sorted(set(ids) - known)
        if missing:
            raise NotFoundError(f"no alert with id {', '.join(map(str, missing))} "
                                "(see 'tracker alerts')")
        values: dict[str, object] = {"status": status, "updated_at": now_utc()}
        if note is not None:
            values["note"] = note
        conn.execute(update(alerts).where(alerts.c.id.in_(bindparam("ids", expanding=True)))
                     .values(**values), {"ids": ids})
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
    """Earliest day of the observations with an id above ``after_id`` (indexed: the
    daily run asks for the few rows written since its last mark)."""
    with store.reading("reading observation days") as conn:
        return _as_date(conn.execute(select(func.min(observations.c.as_of))
                                     .where(observations.c.id > after_id)).scalar())


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
