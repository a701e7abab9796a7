"""The detection window, kept between daily runs so each run reads only what is new.

The daily run needs the latest value of every series for about a year of days.
Reading those from the observations costs a second per ~million rows; keeping the
window as a matrix beside the detection mark and applying only the observations
written since (one day's worth, plus any late values or corrections) costs a
fraction of that, whatever the number of days. The window is a pure cache of the
observations: it records the last observation id applied, is used only when that
id is the detection mark's, and is rebuilt from the observations whenever it is
missing, stale or too short. So a lost or outdated window costs one slower run,
never a wrong verdict.

Stored one row per day (``detect_window_days``: that day's values of every column,
as int32 when they fit) beside the column keys (``detect_window_columns``, in
chunks, columns only ever appended) and one header row (``detect_window_meta``).
A daily run therefore writes the day it added and the few days corrections
touched, not the whole matrix: at a million series a year's window is 1.4 GB, a
day 4 MB. Columns added after a day was stored are missing in that day's row and
read back as NaN, which they are.

The last window saved or loaded in this process is also kept in memory, with the
header's token: the steps after detection (population events) and the next run of
a long-lived scheduler use it without reading it again, and any other writer of
the window changes the token, so a kept copy is never used stale.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import Connection, delete, insert, select, text

from tracker.store.companies import now_utc
from tracker.store.core import Store
from tracker.store.latest import (
    _DAY_SQL,
    Latest,
    LatestMatrix,
    latest_matrix,
    latest_of,
)
from tracker.store.schema import detect_window_columns, detect_window_days, detect_window_meta

_MISSING = {4: np.iinfo(np.int32).min, 8: np.iinfo(np.int64).min}
_CHUNK_COLUMNS = 250_000
_DAYS_PER_WRITE = 16


@dataclass
class Window:
    """Latest values of (series, source) columns for calendar days from ``first_day``
    (a day number; NaN where nothing is known), as of observation ``last_observation``."""

    first_day: int
    series_id: np.ndarray
    source_id: np.ndarray
    values: np.ndarray
    last_observation: int
    #: columns the stored copy already has (0: nothing stored is of this window)
    stored_columns: int = 0
    #: day numbers whose row changed since it was stored
    dirty: set[int] = field(default_factory=set)
    #: the stored header's token when this copy was saved or loaded
    token: str = ""

    @classmethod
    def of(cls, latest: Latest, first_day: int, last_observation: int) -> Window:
        return cls._of(LatestMatrix.of(latest, first_day), last_observation)

    @classmethod
    def read(cls, store: Store, first_day: int, last_observation: int) -> Window:
        """The window from ``first_day`` read afresh from the observations (day by
        day on PostgreSQL: :func:`latest_matrix`)."""
        return cls._of(latest_matrix(store, first_day=first_day), last_observation)

    @classmethod
    def _of(cls, m: LatestMatrix, last_observation: int) -> Window:
        days = m.values.shape[0]
        return cls(m.first_day, m.series_id, m.source_id, m.values, last_observation,
                   dirty=set(range(m.first_day, m.first_day + days)))

    def trim(self, first_day: int) -> None:
        """Forget the days before ``first_day`` (no longer needed by any window)."""
        if first_day > self.first_day:
            self.values = self.values[first_day - self.first_day:]
            self.dirty = {d for d in self.dirty if d >= first_day}
            self.first_day = first_day

    def apply(self, store: Store, upto: int) -> int:
        """Bring the window up to observation ``upto``; returns the rows applied.

        A cell that already held a value, or that several new rows concern, takes
        its latest-collected value from the store (a revision imported with an
        older collection time must not win just because it was written later).
        """
        rows = _rows_between(store, self.last_observation, upto, self.first_day)
        self.last_observation = upto
        if not len(rows):
            return 0
        code = rows[:, 0] * np.int64(2**31) + rows[:, 1]
        have = self.series_id * np.int64(2**31) + self.source_id
        new = np.setdiff1d(code, have)
        if new.size:  # series seen for the first time: appended, so stored days stay valid
            self.series_id = np.concatenate([self.series_id, new // 2**31])
            self.source_id = np.concatenate([self.source_id, new % 2**31])
            self.values = np.hstack([self.values, np.full((self.values.shape[0], new.size),
                                                          np.nan)])
            have = np.concatenate([have, new])
        order = np.argsort(have)
        col = order[np.searchsorted(have, code, sorter=order)]
        row = rows[:, 2] - self.first_day
        if row.max() >= self.values.shape[0]:
            grow = int(row.max()) + 1 - self.values.shape[0]
            self.values = np.vstack([self.values, np.full((grow, self.values.shape[1]),
                                                          np.nan)])
        self.dirty.update((np.unique(row) + self.first_day).tolist())
        cell = row * np.int64(self.values.shape[1]) + col
        uniq, counts = np.unique(cell, return_counts=True)
        revisit = np.isin(cell, uniq[counts > 1]) | np.isfinite(self.values[row, col])
        plain = ~revisit
        self.values[row[plain], col[plain]] = rows[plain, 3]
        if revisit.any():
            first = np.unique(cell[revisit], return_index=True)[1]
            idx = np.flatnonzero(revisit)[first]
            with store.reading("reading revised observations") as conn:
                self.values[row[idx], col[idx]] = latest_of(conn, rows[idx, :3])
        return len(rows)


def _rows_between(store: Store, after: int, upto: int, first_day: int) -> np.ndarray:
    """(series, source, day number, value) of observations with ids in (after, upto]."""
    day = _DAY_SQL.get(store.dialect, _DAY_SQL["sqlite"])
    sql = text(f"SELECT o.series_id, o.source_id, {day} AS d, o.value FROM observations o "
               "WHERE o.id > :a AND o.id <= :b")
    with store.reading("reading new observations") as conn:
        cursor = conn.execute(sql, {"a": after, "b": upto}).cursor
        assert cursor is not None
        chunks = []
        while batch := cursor.fetchmany(500_000):
            chunks.append(np.asarray(batch, dtype=np.int64))
    out = np.concatenate(chunks) if chunks else np.zeros((0, 4), dtype=np.int64)
    return out[out[:, 2] >= first_day]


#: (store url, window): the last window saved or loaded by this process
_kept: tuple[str, Window] | None = None


def load(store: Store) -> Window | None:
    """The stored window, or None when there is none or it is not whole."""
    global _kept
    with store.reading("reading the detection window") as conn:
        meta = conn.execute(select(detect_window_meta)).first()
        if meta is None:
            return None
        if _kept is not None and _kept[0] == store.url:
            win = _kept[1]
            if (win.token, win.first_day, win.last_observation, win.series_id.size) == \
                    (meta.token, meta.first_day, meta.last_observation, meta.columns) \
                    and not win.dirty:
                return win
        _kept = None
        chunks = conn.execute(select(detect_window_columns)
                              .order_by(detect_window_columns.c.chunk)).all()
        series_id = np.concatenate([np.frombuffer(c.series, dtype=np.int64) for c in chunks]) \
            if chunks else np.zeros(0, dtype=np.int64)
        source_id = np.concatenate([np.frombuffer(c.sources, dtype=np.int64) for c in chunks]) \
            if chunks else np.zeros(0, dtype=np.int64)
        if series_id.size != meta.columns or source_id.size != meta.columns:
            return None
        values = np.full((meta.days, meta.columns), np.nan)
        days = conn.execute(
            select(detect_window_days).where(detect_window_days.c.day >= meta.first_day,
                                             detect_window_days.c.day
                                             < meta.first_day + meta.days)).all()
        for d in days:
            raw = np.frombuffer(d.counts, dtype=np.int32 if d.width == 4 else np.int64)
            if raw.size != d.columns or d.columns > meta.columns:
                return None
            row = values[d.day - meta.first_day, : d.columns]
            row[:] = raw
            row[raw == _MISSING[d.width]] = np.nan
    win = Window(int(meta.first_day), series_id.copy(), source_id.copy(), values,
                 int(meta.last_observation), stored_columns=int(meta.columns),
                 token=meta.token)
    _kept = (store.url, win)
    return win


def _day_row(values: np.ndarray, day: int) -> dict:
    seen = np.isfinite(values)
    width = 4 if not seen.any() or np.abs(values[seen]).max() < 2**31 - 1 else 8
    dtype = np.int32 if width == 4 else np.int64
    counts = np.full(values.size, _MISSING[width], dtype=dtype)
    counts[seen] = values[seen]
    return {"day": day, "columns": int(values.size), "width": width,
            "counts": counts.tobytes()}


def save(conn: Connection, store: Store, window: Window) -> None:
    """Write what changed of the window, inside the caller's transaction: the header,
    the column chunks from the first that gained columns, and the dirty days."""
    global _kept
    fresh = window.stored_columns == 0
    n = int(window.series_id.size)
    token = uuid.uuid4().hex
    conn.execute(delete(detect_window_meta))
    conn.execute(insert(detect_window_meta), {
        "id": 1, "first_day": window.first_day, "days": int(window.values.shape[0]),
        "columns": n, "last_observation": window.last_observation, "token": token,
        "updated_at": now_utc()})
    first_chunk = 0 if fresh else window.stored_columns // _CHUNK_COLUMNS
    if fresh or n > window.stored_columns:
        conn.execute(delete(detect_window_columns)
                     .where(detect_window_columns.c.chunk >= first_chunk))
        conn.execute(insert(detect_window_columns), [
            {"chunk": k // _CHUNK_COLUMNS,
             "series": window.series_id[k:k + _CHUNK_COLUMNS].astype(np.int64).tobytes(),
             "sources": window.source_id[k:k + _CHUNK_COLUMNS].astype(np.int64).tobytes()}
            for k in range(first_chunk * _CHUNK_COLUMNS, max(n, 1), _CHUNK_COLUMNS)])
    t = detect_window_days
    if fresh:
        conn.execute(delete(t))
    else:
        conn.execute(delete(t).where(t.c.day < window.first_day))
    last = window.first_day + window.values.shape[0]
    dirty = sorted(d for d in window.dirty if window.first_day <= d < last)
    if dirty and not fresh:
        conn.execute(delete(t).where(t.c.day.in_(dirty)))
    for k in range(0, len(dirty), _DAYS_PER_WRITE):
        conn.execute(insert(t), [_day_row(window.values[d - window.first_day], d)
                                 for d in dirty[k:k + _DAYS_PER_WRITE]])
    window.stored_columns, window.dirty, window.token = n, set(), token
    _kept = (store.url, window)
