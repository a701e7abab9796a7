"""Anomalies -> stored alerts: fingerprint, dedupe, lifecycle.

An alert's identity is (company, metric, source, first anomalous day, family),
where the family is "move" for drops, spikes and glitches and "drift" for drifts.
The kind is deliberately *not* part of the identity: a drop reported provisionally
on its day and reclassified as a glitch two days later is the same alert, updated,
never a second one. Re-running detection therefore never duplicates an alert, and
an analyst's status (acknowledged, dismissed, resolved) survives every re-run.

Alerts found while backfilling history (first detected more than ``fresh_days``
before the run's day) are stored but not counted as new: importing two years of
history must not page anyone about 2022.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import bindparam, insert, select, update

from tracker.detect import detect, events
from tracker.errors import InputError, NotFoundError
from tracker.records import ALERT_FIELDS, ALERT_KINDS, ALERT_STATUSES
from tracker.store.companies import now_utc
from tracker.store.schema import alerts, series, sources
from tracker.workspace import Workspace

STATUSES = ALERT_STATUSES
KINDS = ALERT_KINDS
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
_UPDATABLE = ("kind", "verdict", "confirmed_on", "change_pct", "value_before", "value_after",
              "score", "severity", "event_id", "sources_agreeing")


@dataclass
class DetectionResult:
    """What one detection pass found and changed."""

    anomalies: pd.DataFrame
    events: pd.DataFrame
    new: pd.DataFrame = field(default_factory=pd.DataFrame)
    updated: int = 0
    series: int = 0

    def fresh(self, day: date, fresh_days: int) -> pd.DataFrame:
        """New alerts first reported within ``fresh_days`` of ``day`` (not backfill)."""
        if self.new.empty:
            return self.new
        cutoff = pd.Timestamp(day - timedelta(days=fresh_days))
        return self.new[pd.to_datetime(self.new["detected_on"]) >= cutoff]


def fingerprint(company: str, metric: str, source: str, day: date, kind: str) -> str:
    family = "drift" if kind.startswith("drift") else "move"
    key = f"{company}|{metric}|{source}|{day:%Y-%m-%d}|{family}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def build_matrix(
    ws: Workspace, *, companies: list[str] | None = None, known_at: datetime | None = None,
    until: date | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Dates x series matrix of the latest known values, and its column keys.

    Columns are integers indexing ``keys`` (company, metric, source), so series
    names never have to be parsed back out of strings.
    """
    obs = ws.store.observations(companies, known_at=known_at, until=until)
    if obs.empty:
        return pd.DataFrame(dtype="float64"), pd.DataFrame(columns=["company", "metric", "source"])
    codes, uniques = pd.factorize(pd.MultiIndex.from_frame(obs[["company", "metric", "source"]]))
    keys = pd.DataFrame(list(uniques), columns=["company", "metric", "source"])
    day_codes, days = pd.factorize(obs["as_of"], sort=True)
    values = np.full((len(days), len(keys)), np.nan)
    values[day_codes, codes] = obs["value"].to_numpy(dtype="float64")
    matrix = pd.DataFrame(values, index=pd.DatetimeIndex(days), columns=range(len(keys)))
    return matrix, keys


def _corroborate(found: pd.DataFrame) -> np.ndarray:
    """How many sources of the same company and metric saw a move the same way (+-1 day)."""
    if found.empty:
        return np.zeros(0, dtype=int)
    direction = np.sign(found["change_pct"].to_numpy())
    day = found["date"].to_numpy(dtype="datetime64[D]").astype(np.int64)
    key = (found["company"] + "|" + found["metric"]).to_numpy()
    source = found["source"].to_numpy()
    agree = np.ones(len(found), dtype=int)
    for k in np.unique(key[pd.Series(key).duplicated(keep=False).to_numpy()]):
        idx = np.flatnonzero(key == k)
        for i in idx:
            near = idx[(np.abs(day[idx] - day[i]) <= 1) & (direction[idx] == direction[i])]
            agree[i] = len(set(source[near]))
    return agree


def run_detection(
    ws: Workspace, *, companies: list[str] | None = None, since: date | None = None,
    known_at: datetime | None = None, until: date | None = None,
) -> DetectionResult:
    """Detect over the stored history and upsert the alerts; returns what changed.

    ``since`` limits which anomalies are stored (by first day), not the history the
    detector sees: it always judges each day against its full trailing window.
    """
    ids = [ws.store.company_id(c) for c in companies] if companies else None
    matrix, keys = build_matrix(ws, companies=ids, known_at=known_at, until=until)
    if matrix.empty:
        return DetectionResult(pd.DataFrame(), pd.DataFrame())
    found = detect(matrix, ws.settings.detect)
    found = found.join(keys, on="series")
    if since is not None:
        found = found[found["date"] >= pd.Timestamp(since)]
    found = found.reset_index(drop=True)
    grouped = events(found, min_companies=ws.settings.alerts.event_min_companies,
                     company=lambda s: keys.at[s, "company"])
    found["event_id"] = None
    for ev in grouped.itertuples():
        found.loc[found["series"].isin(ev.series) & (found["kind"] == ev.kind),
                  "event_id"] = ev.event_id
    found["sources_agreeing"] = _corroborate(found)
    new, updated = _upsert(ws, found)
    return DetectionResult(found, grouped, new, updated, matrix.shape[1])


def _ids(ws: Workspace, found: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    with ws.store.reading("mapping series") as conn:
        ser = pd.DataFrame(conn.execute(select(series.c.id, series.c.company_id,
                                               series.c.metric)).all(),
                           columns=["series_id", "company", "metric"])
        src = pd.DataFrame(conn.execute(select(sources.c.id, sources.c.name)).all(),
                           columns=["source_id", "source"])
    merged = found[["company", "metric", "source"]].merge(ser, how="left").merge(src, how="left")
    return merged["series_id"], merged["source_id"]


def _upsert(ws: Workspace, found: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    if found.empty:
        return found.assign(id=pd.Series(dtype="int64")), 0
    found = found.copy()
    found["fingerprint"] = [fingerprint(c, m, s, d, k) for c, m, s, d, k in zip(
        found["company"], found["metric"], found["source"], found["date"], found["kind"],
        strict=True)]
    found = found.drop_duplicates("fingerprint", keep="last")
    found["series_id"], found["source_id"] = (s.to_numpy() for s in _ids(ws, found))
    found["verdict"] = found["status"]
    stamp = now_utc()
    rows = []
    for r in found.itertuples(index=False):
        rows.append({
            "fingerprint": r.fingerprint, "series_id": int(r.series_id),
            "source_id": int(r.source_id), "date": r.date.date(),
            "detected_on": r.detected_on.date(),
            "confirmed_on": None if pd.isna(r.confirmed_on) else r.confirmed_on.date(),
            "kind": r.kind, "change_pct": float(r.change_pct),
            "value_before": _num(r.value_before), "value_after": _num(r.value_after),
            "score": float(r.score), "severity": r.severity, "verdict": r.verdict,
            "event_id": r.event_id, "sources_agreeing": int(r.sources_agreeing),
        })
    with ws.store.transaction("saving alerts") as conn:
        existing = {row.fingerprint: row for row in conn.execute(
            select(alerts.c.fingerprint, *[alerts.c[c] for c in _UPDATABLE])
            .where(alerts.c.fingerprint.in_(bindparam("fps", expanding=True))),
            {"fps": [r["fingerprint"] for r in rows]})}
        fresh = [r for r in rows if r["fingerprint"] not in existing]
        changed = [r for r in rows if r["fingerprint"] in existing
                   and not _regresses(existing[r["fingerprint"]], r)
                   and any(_differs(getattr(existing[r["fingerprint"]], c), r[c])
                           for c in _UPDATABLE)]
        if fresh:
            conn.execute(insert(alerts), [{**r, "status": "open", "created_at": stamp,
                                           "updated_at": stamp} for r in fresh])
        if changed:
            conn.execute(
                update(alerts).where(alerts.c.fingerprint == bindparam("fp"))
                .values({c: bindparam(c) for c in _UPDATABLE} | {"updated_at": stamp}),
                [{**{c: r[c] for c in _UPDATABLE}, "fp": r["fingerprint"]} for r in changed],
            )
    fresh_fps = {r["fingerprint"] for r in fresh}
    return found[found["fingerprint"].isin(fresh_fps)].reset_index(drop=True), len(changed)


def _regresses(old: object, new: dict) -> bool:
    """A verdict only moves forward: a replay of an earlier day (less data) must not
    turn a confirmed alert back into a provisional one."""
    return getattr(old, "verdict", None) == "confirmed" and new["verdict"] == "provisional"


def _num(value: float) -> float | None:
    return None if pd.isna(value) else float(value)


def _differs(old: object, new: object) -> bool:
    if isinstance(old, float) and isinstance(new, float):
        return not np.isclose(old, new, rtol=1e-9, atol=1e-9)
    return old != new


def list_alerts(
    ws: Workspace, *, since: date | None = None, status: str | None = None,
    kind: str | None = None, company: str | None = None, min_severity: str | None = None,
) -> pd.DataFrame:
    """Stored alerts with the fields of the alert record (records.ALERT_FIELDS)."""
    if status is not None and status not in STATUSES:
        raise InputError(f"--status: {status!r} is not one of {', '.join(STATUSES)}")
    if kind is not None and kind not in KINDS:
        raise InputError(f"--kind: {kind!r} is not one of {', '.join(KINDS)}")
    query = (select(alerts, series.c.company_id.label("company"), series.c.metric,
                    sources.c.name.label("source"))
             .join(series, series.c.id == alerts.c.series_id)
             .join(sources, sources.c.id == alerts.c.source_id)
             .order_by(alerts.c.date, alerts.c.id))
    if since is not None:
        query = query.where(alerts.c.date >= since)
    if status is not None:
        query = query.where(alerts.c.status == status)
    if kind is not None:
        query = query.where(alerts.c.kind == kind)
    if company is not None:
        query = query.where(series.c.company_id == ws.store.company_id(company))
    with ws.store.reading("listing alerts") as conn:
        frame = pd.DataFrame(conn.execute(query).mappings().all())
    if frame.empty:
        return pd.DataFrame(columns=list(ALERT_FIELDS))
    if min_severity is not None:
        frame = frame[frame["severity"].map(SEVERITY_RANK) >= SEVERITY_RANK[min_severity]]
    frame["change_pct"] = frame["change_pct"].round(2)
    frame["score"] = frame["score"].round(2)
    return frame[list(ALERT_FIELDS)].reset_index(drop=True)


def set_status(ws: Workspace, ids: list[int], status: str, note: str | None = None) -> int:
    """Mark alerts reviewed (acknowledged, dismissed, resolved) or reopen them."""
    if status not in STATUSES:
        raise InputError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    with ws.store.transaction("updating alerts") as conn:
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


def detect_step(ws: Workspace, day: date, run_id: int) -> list[dict]:
    """The main job's detection step: upsert alerts, return the new ones.

    Each carries ``fresh``: False for backfill (first detected more than
    ``[alerts] fresh_days`` before ``day``), which the job stores but does not count.
    """
    result = run_detection(ws, until=day)
    fresh = set(result.fresh(day, ws.settings.alerts.fresh_days)["fingerprint"]) if len(
        result.new) else set()
    records = result.new.to_dict("records")
    for r in records:
        r["fresh"] = r["fingerprint"] in fresh
    return records
