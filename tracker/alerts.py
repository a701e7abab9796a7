"""Anomalies -> stored alerts: fingerprint, cross-company events, corroboration, lifecycle.

An alert's identity is (company, metric, source, first anomalous day, family),
where the family is "move" for drops, spikes and glitches and "drift" for drifts.
The kind is deliberately *not* part of the identity: a drop reported provisionally
on its day and reclassified as a glitch two days later is the same alert, updated,
never a second one. Re-running detection therefore never duplicates an alert, and
an analyst's status (acknowledged, dismissed, resolved) survives every re-run.

The *verdict* is one vocabulary everywhere (:data:`VERDICTS`): the detector's
provisional or confirmed, ``glitch`` for a move that came back (the detector says
so by its kind; it is mapped here, once), and ``withdrawn`` for a stored alert that
a detection of its days, on corrected data, no longer finds. Withdrawn alerts stay
(someone may have been paged); every change is recorded with why
(:func:`alert_history`), and :func:`alerts_as_of` rebuilds the state alerts had on
a past day, for charts of the past.

Alerts found while backfilling history (first detected more than ``fresh_days``
before the run's day) are stored but not counted as new: importing two years of
history must not page anyone about 2022.

Which days to judge and what to read for them is ``tracker.detection``'s job; the
SQL is ``tracker.store.alerts``'.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from tracker import corroboration
from tracker.detect import events
from tracker.errors import InputError
from tracker.metrics import check_metric
from tracker.records import (
    ALERT_FIELDS,
    ALERT_KINDS,
    ALERT_STATUSES,
    ALERT_VERDICTS,
    INFLATION_KINDS,
)
from tracker.silences import checked_author
from tracker.store import alerts as alert_store
from tracker.store import window_cache
from tracker.workspace import Workspace

STATUSES = ALERT_STATUSES
KINDS = ALERT_KINDS
VERDICTS = ALERT_VERDICTS
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


@dataclass
class DetectionResult:
    """What one detection pass found and changed."""

    anomalies: pd.DataFrame
    events: pd.DataFrame
    new: pd.DataFrame = field(default_factory=pd.DataFrame)
    updated: int = 0
    series: int = 0
    withdrawn: int = 0

    def fresh(self, day: date, fresh_days: int) -> pd.DataFrame:
        """New alerts first reported within ``fresh_days`` of ``day`` (not backfill)."""
        if self.new.empty:
            return self.new
        cutoff = pd.Timestamp(day - timedelta(days=fresh_days))
        return self.new[pd.to_datetime(self.new["detected_on"]) >= cutoff]


def fingerprint(company: str, metric: str, source: str, day: date, kind: str) -> str:
    # an inflation alert is its own family: a ratio_jump on a purge's day is not the drop
    family = "drift" if kind.startswith("drift") else kind if kind in INFLATION_KINDS \
        else "move"
    key = f"{company}|{metric}|{source}|{day:%Y-%m-%d}|{family}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def verdict_of(kind: Any, status: Any) -> Any:
    """The verdict of detector rows: the detector tells a glitch by its kind (and calls
    it confirmed), a shift or a drift by its status (provisional or confirmed)."""
    return np.where(np.asarray(kind) == "glitch", "glitch", np.asarray(status))


def save_verdicts(ws: Workspace, found: pd.DataFrame, *, series: int = 0,
                  mark: alert_store.DetectionMark | None = None,
                  window: window_cache.Window | None = None,
                  neighbours_from: date | None = None,
                  judged: alert_store.Judged | None = None,
                  known_at: datetime | None = None) -> DetectionResult:
    """Turn detector rows (with company, metric, source) into stored alerts.

    ``found`` is every verdict of a full pass, or (with ``neighbours_from``) those of
    the days a daily run judged: then the stored moves dated ``neighbours_from`` or
    later are grouped with them, so a drop today joins yesterday's event at another
    company, and their event and corroboration are updated where that changed them.
    The stored alerts that ``judged`` covers and ``found`` does not restate are
    withdrawn, in the same transaction. Corroboration by the series' other sources
    reads their values up to ``judged.day`` (known at ``known_at``, when given).
    """
    found = found.copy()
    if len(found):
        found["fingerprint"] = [fingerprint(c, m, s, d, k) for c, m, s, d, k in zip(
            found["company"], found["metric"], found["source"], found["date"], found["kind"],
            strict=True)]
        # in date order a later verdict about the same alert is its newer state
        found = found.drop_duplicates("fingerprint", keep="last").reset_index(drop=True)
        found["series_id"], found["source_id"] = alert_store.series_source_ids(ws.store, found)
        found["verdict"] = verdict_of(found["kind"], found["status"])
    stored = _neighbours(ws, found, neighbours_from, judged)
    linked = pd.concat([stored, found], ignore_index=True) if len(stored) else found
    grouped = _link(ws, linked, through=judged.day if judged is not None else None,
                    known_at=known_at)
    rows = [_row(r) for r in linked.to_dict("records")]
    saved = alert_store.upsert(ws.store, rows, mark=mark, window=window, judged=judged,
                               found=set(found["fingerprint"]) if len(found) else set())
    found = linked.iloc[len(stored):].reset_index(drop=True)
    if found.empty:
        return DetectionResult(found, grouped, found.assign(id=pd.Series(dtype="int64")),
                               saved.updated, series, saved.withdrawn)
    new = found[found["fingerprint"].isin(saved.new)].reset_index(drop=True)
    return DetectionResult(found, grouped, new, saved.updated, series, saved.withdrawn)


def _neighbours(ws: Workspace, found: pd.DataFrame, since: date | None,
                judged: alert_store.Judged | None) -> pd.DataFrame:
    """Stored moves from ``since`` on that ``found`` does not restate, in detector
    columns; not those ``judged`` covers, which are being withdrawn."""
    if since is None:
        return found.iloc[0:0]
    stored = alert_store.moves_since(ws.store, since)
    if len(found):
        stored = stored[~stored["fingerprint"].isin(found["fingerprint"])]
    if judged is not None and judged.withdraw and len(stored):
        detected = pd.to_datetime(stored["detected_on"])
        covered = detected <= pd.Timestamp(judged.day)
        if judged.first_detected is not None:
            covered &= detected >= pd.Timestamp(judged.first_detected)
        if judged.since is not None:
            covered &= pd.to_datetime(stored["date"]) >= pd.Timestamp(judged.since)
        if judged.company_ids is not None:
            covered &= stored["company"].isin(judged.company_ids)
        stored = stored[~covered]
    if stored.empty:
        return found.iloc[0:0]
    stored = stored.assign(status=stored["verdict"])
    for c in ("date", "detected_on", "confirmed_on"):
        stored[c] = pd.to_datetime(stored[c])
    return stored


def _link(ws: Workspace, found: pd.DataFrame, *, through: date | None = None,
          known_at: datetime | None = None) -> pd.DataFrame:
    """Set ``event_id`` (cross-company events), corroboration (``sources_agreeing``
    and ``corroboration.FIELDS``) and the severity it caps, in place."""
    if found.empty:
        return pd.DataFrame()
    # grouped by row: the detector's column numbers differ between passes
    grouped = events(found.assign(series=found.index),
                     min_companies=ws.settings.alerts.event_min_companies,
                     company=lambda i: found.at[i, "company"])
    found["event_id"] = None
    for ev in grouped.itertuples():
        found.loc[found.index.isin(ev.series) & (found["kind"] == ev.kind),
                  "event_id"] = ev.event_id
    corroborated = corroboration.corroborate(ws.store, found, ws.settings, through=through,
                                             known_at=known_at)
    for column in corroborated.columns:
        found[column] = corroborated[column]
    found["severity"] = corroboration.graded(found, ws.settings.detect)
    # a member of a population event keeps that event's id (tracker.population sets it)
    from tracker.store import events as event_store

    population = event_store.event_of_alerts(ws.store, list(found["fingerprint"]))
    if population:
        found["event_id"] = pd.Series([population.get(f, e) for f, e in zip(
            found["fingerprint"], found["event_id"], strict=True)], index=found.index,
            dtype=object)
    return grouped


def _row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "fingerprint": r["fingerprint"], "series_id": int(r["series_id"]),
        "source_id": int(r["source_id"]), "date": day_of(r["date"]),
        "detected_on": day_of(r["detected_on"]), "confirmed_on": day_of(r["confirmed_on"]),
        "kind": r["kind"], "change_pct": float(r["change_pct"]),
        "value_before": _num(r["value_before"]), "value_after": _num(r["value_after"]),
        "score": float(r["score"]), "severity": r["severity"], "verdict": r["verdict"],
        "event_id": r["event_id"], "sources_agreeing": int(r["sources_agreeing"]),
        "sources_seen": _text(r["sources_seen"]), "sources_silent": _text(r["sources_silent"]),
        "sources_no_data": _text(r["sources_no_data"]),
        "possible_source_error": bool(r["possible_source_error"]),
    }


def day_of(value: Any) -> date | None:
    """A detector timestamp (or NaT) as the date the store and the records keep."""
    return None if pd.isna(value) else pd.Timestamp(value).date()


def _text(value: Any) -> str | None:
    return None if value is None or pd.isna(value) else str(value)


def _num(value: float) -> float | None:
    return None if pd.isna(value) else float(value)


#: Columns of an alert listing: the alert record, then its review and delivery:
#: when it was notified, who reviewed it last and when (UTC), and the analyst's note.
REVIEW_FIELDS: tuple[str, ...] = ("notified_at", "reviewed_by", "reviewed_at", "note")
LISTING_FIELDS: tuple[str, ...] = (*ALERT_FIELDS, *REVIEW_FIELDS)


def list_alerts(
    ws: Workspace, *, since: date | None = None, status: str | None = None,
    kind: str | None = None, company: str | None = None, min_severity: str | None = None,
    open_only: bool = False, limit: int | None = None, ids: list[int] | None = None,
    metric: str | None = None,
) -> pd.DataFrame:
    """Stored alerts with the fields of the alert record and their review (LISTING_FIELDS).

    ``metric`` keeps one series kind (``employees:security``: a role segment's alerts).

    ``open_only`` is ``status="open"`` (what still needs a look); ``min_severity``
    keeps that level and above; ``limit`` keeps the most recent ``limit`` alerts (by
    first anomalous day), listed oldest first like every listing. The review
    timestamps are UTC-aware, so no export can mistake them for local time.
    """
    if status is not None and status not in STATUSES:
        raise InputError(f"--status: {status!r} is not one of {', '.join(STATUSES)}")
    if open_only and status not in (None, "open"):
        raise InputError(f"--open lists open alerts; it contradicts --status {status}")
    if kind is not None and kind not in KINDS:
        raise InputError(f"--kind: {kind!r} is not one of {', '.join(KINDS)}")
    if min_severity is not None and min_severity not in SEVERITY_RANK:
        raise InputError(f"--severity: {min_severity!r} is not one of "
                         f"{', '.join(SEVERITY_RANK)}")
    if limit is not None and limit < 1:
        raise InputError(f"--limit: {limit} must be 1 or more")
    levels = None if min_severity is None else [
        s for s, rank in SEVERITY_RANK.items() if rank >= SEVERITY_RANK[min_severity]]
    if metric is not None:
        check_metric(metric, "--metric")
    frame = alert_store.query(ws.store, since=since, status="open" if open_only else status,
                              kind=kind, severities=levels, limit=limit, ids=ids,
                              metric=metric,
                              company_id=ws.store.company_id(company) if company else None)
    if frame.empty:
        return pd.DataFrame(columns=list(LISTING_FIELDS))
    frame["change_pct"] = frame["change_pct"].round(2)
    frame["score"] = frame["score"].round(2)
    for col in ("notified_at", "reviewed_at"):
        frame[col] = pd.to_datetime(frame[col]).dt.tz_localize("UTC")
    return frame[list(LISTING_FIELDS)].reset_index(drop=True)


def set_status(ws: Workspace, ids: list[int], status: str, note: str | None = None,
               author: str | None = None) -> int:
    """Mark alerts reviewed (acknowledged, dismissed, resolved) or reopen them.

    The review records its author (by default the OS user, as ``tracker review``
    without ``--author``) and time, so a listing says who decided and when.
    """
    if status not in STATUSES:
        raise InputError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    return alert_store.set_status(ws.store, ids, status, note, checked_author(author))


# -- history: what changed, and the state alerts had on a past day -----------------------

HISTORY_FIELDS = ("alert_id", "company", "metric", "source", "date", "day", "changed_at",
                  "old_verdict", "new_verdict", "old_status", "new_status", "changes", "reason")


def alert_history(ws: Workspace, ids: list[int] | None = None) -> pd.DataFrame:
    """The story of alerts (all, or ``ids``), oldest first: when each was first reported
    and with which verdict, then every recorded change, detection's and reviews'.

    ``day`` is the last day of data the detection judged (the first report's is the
    day it was detected; a review's, the last day of data judged then), ``changed_at`` when
    (UTC), ``changes`` maps each changed field to [old, new], ``reason`` says why.
    """
    listed = alert_store.query(ws.store, ids=ids)
    if listed.empty:
        return pd.DataFrame(columns=list(HISTORY_FIELDS))
    log = alert_store.changes(ws.store, [int(i) for i in listed["id"]])
    first_verdict = log.drop_duplicates("alert_id").set_index("alert_id")["old_verdict"]
    born = pd.DataFrame({
        "alert_id": listed["id"], "day": listed["detected_on"],
        "changed_at": listed["created_at"], "old_verdict": None,
        "new_verdict": listed["id"].map(first_verdict).fillna(listed["verdict"]),
        "old_status": None, "new_status": "open",
        "changes": [{} for _ in range(len(listed))], "reason": "first reported"})
    story = pd.concat([born, log], ignore_index=True) if len(log) else born
    story["order"] = np.arange(len(story)) >= len(born)  # a report before its changes
    story = story.sort_values(["alert_id", "order"], kind="stable")
    names = listed[["id", "company", "metric", "source", "date"]].rename(
        columns={"id": "alert_id"})
    out = story.merge(names, on="alert_id", how="left")
    out["changed_at"] = pd.to_datetime(out["changed_at"]).dt.tz_localize(None) \
        .dt.tz_localize("UTC")
    return out[list(HISTORY_FIELDS)].reset_index(drop=True)


def alerts_as_of(ws: Workspace, day: date, *, company: str | None = None) -> pd.DataFrame:
    """The alerts as a daily run on ``day`` left them: what was known and decided by then.

    Alerts first detected after ``day`` are left out; the changes recorded after it
    are undone (a correction that withdrew an alert later, a changed size); and a
    verdict reached after ``day`` (``confirmed_on`` later, e.g. by a full pass over
    history) is the provisional drop or spike it was that day, graded as it was then.
    The columns are those of :func:`list_alerts`.
    """
    frame = list_alerts(ws, company=company)
    if frame.empty:
        return frame
    return rewind(ws, frame[pd.to_datetime(frame["detected_on"]) <= pd.Timestamp(day)], day)


def rewind(ws: Workspace, frame: pd.DataFrame, day: date) -> pd.DataFrame:
    """Alerts (rows with ``id`` and the alert columns) as they stood at the end of
    ``day``: the changes recorded after it undone, reviews included, and a verdict
    reached later shown as the provisional move it was then. One implementation for
    :func:`alerts_as_of`, charts of the past and the report of a past day."""
    if frame.empty:
        return frame
    frame = frame.set_index("id", drop=False).copy()
    log = alert_store.changes(ws.store, [int(i) for i in frame.index])
    later = log[pd.to_datetime(log["day"]) > pd.Timestamp(day)]
    dated = {"confirmed_on", "date", "detected_on"}
    for change in reversed(list(later.itertuples(index=False))):
        for column, (old, _new) in dict(change.changes).items():
            if column in frame:
                frame.at[change.alert_id, column] = (
                    date.fromisoformat(old) if column in dated and old else old)
        if change.old_status is not None and "status" in frame:
            frame.at[change.alert_id, "status"] = change.old_status
    # a drift is reported with its final word; a move is provisional until decided
    undecided = frame["verdict"].isin(("confirmed", "glitch")) & (
        ~frame["kind"].astype(str).str.startswith("drift")) & (
        pd.to_datetime(frame["confirmed_on"]).isna()
        | (pd.to_datetime(frame["confirmed_on"]) > pd.Timestamp(day)))
    if undecided.any():
        part = frame[undecided]
        kind = np.where(part["change_pct"] < 0, "drop", "spike")
        frame.loc[undecided, "kind"] = kind
        frame.loc[undecided, "verdict"] = "provisional"
        frame.loc[undecided, "confirmed_on"] = None
        frame.loc[undecided, "severity"] = corroboration.graded(
            part.assign(kind=kind.astype(object)), ws.settings.detect)
    return frame.reset_index(drop=True)
