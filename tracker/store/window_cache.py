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

Windows are stored per ``part``: 0 is the local engine's window of the whole store;
the Dask engine's tasks each keep their partition's under its first series id, with
its last (``last_series``): a partition whose id range changed is read afresh. A
task's window is brought up to date by the new observations of its partition,
which the client reads once for all of them (:func:`rows_between`), and is written
back by the task itself: no process holds every partition's window.
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
    #: 0: the whole store's window; else a partition's first series id
    part: int = 0
    #: a partition's last series id (0 for the whole store's window)
    last_series: int = 0

    @classmethod
    def of(cls, latest: Latest, first_day: int, last_observation: int) -> Window:
        return cls._of(LatestMatrix.of(latest, first_day), last_observation)

    @classmethod
    def read(cls, store: Store, first_day: int, last_observation: int) -> Window:
        """The window from ``first_day`` read afresh from the observations (day by
        day on PostgreSQL: :func:`latest_matrix`)."""
        return cls._of(latest_matrix(store, first_day=first_day), last_observation)

    @classmethod
    def of_cells(cls, series_id: np.ndarray, source_id: np.ndarray, day: np.ndarray,
                 value: np.ndarray, first_day: int, last_observation: int, *,
                 part: int, last_series: int) -> Window:
        """A partition's window from its latest values per (series, source, day)
        (days before ``first_day`` dropped; the days run to the last one given)."""
        keep = day >= first_day
        rows = day[keep] - first_day
        values, sid, oid = fill(series_id[keep], source_id[keep], rows, value[keep],
                                int(rows.max()) + 1 if rows.size else 0)
        return cls(first_day, sid, oid, values, last_observation,
                   dirty=set(range(first_day, first_day + values.shape[0])), part=part,
                   last_series=last_series)

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
        return self.apply_rows(
            store, rows_between(store, self.last_observation, upto, self.first_day), upto)

    def apply_rows(self, store: Store, rows: np.ndarray, upto: int) -> int:
        """:meth:`apply` of the rows :func:`rows_between` read (those of the window's
        days and, for a partition, of its series; their id column, if any, unused)."""
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


def fill(series_id: np.ndarray, source_id: np.ndarray, row: np.ndarray, value: np.ndarray,
         n_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, series ids, source ids): the ``n_rows`` x columns matrix of the cells
    (NaN where none), one column per (series, source) pair in id order, the order the
    whole store's matrix has, so a partition's columns line up with it."""
    code = series_id * np.int64(2**31) + source_id
    uniq, col = np.unique(code, return_inverse=True)
    values = np.full((n_rows, uniq.size), np.nan)
    values[row, col] = value
    return values, uniq // 2**31, uniq % 2**31


def rows_between(store: Store, after: int, upto: int, first_day: int, *,
                 ids: bool = False) -> np.ndarray:
    """(series, source, day number, value[, id]) of observations with ids in (after,
    upto] of the days from ``first_day``."""
    day = _DAY_SQL.get(store.dialect, _DAY_SQL["sqlite"])
    sql = text(f"SELECT o.series_id, o.source_id, {day} AS d, o.value"
               f"{', o.id' if ids else ''} FROM observations o "
               "WHERE o.id > :a AND o.id <= :b")
    with store.reading("reading new observations") as conn:
        cursor = conn.execute(sql, {"a": after, "b": upto}).cursor
        assert cursor is not None
        chunks = []
        while batch := cursor.fetchmany(500_000):
            chunks.append(np.asarray(batch, dtype=np.int64))
    out = np.concatenate(chunks) if chunks else np.zeros((0, 5 if ids else 4), dtype=np.int64)
    return out[out[:, 2] >= first_day]


#: (store url, window): the last window saved or loaded by this process
_kept: tuple[str, Window] | None = None


def load(store: Store, part: int = 0, last_series: int = 0) -> Window | None:
    """The stored window of ``part`` (0: the whole store's), or None when there is
    none, it is not whole or it is of another id range (``last_series``)."""
    global _kept
    with store.reading("reading the detection window") as conn:
        meta = conn.execute(select(detect_window_meta)
                            .where(detect_window_meta.c.part == part)).first()
        if meta is None or meta.last_series != last_series:
            return None
        if part == 0 and _kept is not None and _kept[0] == store.url:
            win = _kept[1]
            if (win.token, win.first_day, win.last_observation, win.series_id.size) == \
                    (meta.token, meta.first_day, meta.last_observation, meta.columns) \
                    and not win.dirty:
                return win
        if part == 0:
            _kept = None
        chunks = conn.execute(select(detect_window_columns)
                              .where(detect_window_columns.c.part == part)
                              .order_by(detect_window_columns.c.chunk)).all()
        series_id = np.concatenate([np.frombuffer(c.series, dtype=np.int64) for c in chunks]) \
            if chunks else np.zeros(0, dtype=np.int64)
        source_id = np.concatenate([np.frombuffer(c.sources, dtype=np.int64) for c in chunks]) \
            if chunks else np.zeros(0, dtype=np.int64)
        if series_id.size != meta.columns or source_id.size != meta.columns:
            return None
        values = np.full((meta.days, meta.columns), np.nan)
        days = conn.execute(
            select(detect_window_days).where(detect_window_days.c.part == part,
                                             detect_window_days.c.day >= meta.first_day,
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
                 token=meta.token, part=part, last_series=last_series)
    if part == 0:
        _kept = (store.url, win)
    return win


def parts(store: Store) -> dict[int, tuple[int, int]]:
    """Each stored partition window's first series id -> (its last series id, the
    last observation it holds): which partitions a daily run can bring up to date."""
    m = detect_window_meta
    with store.reading("reading the partitions' windows") as conn:
        return {int(p): (int(s), int(o)) for p, s, o in conn.execute(
            select(m.c.part, m.c.last_series, m.c.last_observation).where(m.c.part != 0))}


def drop_parts(conn: Connection, keep: list[int]) -> None:
    """Forget the partition windows not in ``keep`` (their partitioning changed)."""
    for t in (detect_window_days, detect_window_columns, detect_window_meta):
        conn.execute(delete(t).where(t.c.part != 0, t.c.part.not_in(keep)))


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
    part = window.part
    conn.execute(delete(detect_window_meta).where(detect_window_meta.c.part == part))
    conn.execute(insert(detect_window_meta), {
        "part": part, "last_series": window.last_series, "first_day": window.first_day,
        "days": int(window.values.shape[0]),
        "columns": n, "last_observation": window.last_observation, "token": token,
        "updated_at": now_utc()})
    first_chunk = 0 if fresh else window.stored_columns // _CHUNK_COLUMNS
    if fresh or n > window.stored_columns:
        conn.execute(delete(detect_window_columns)
                     .where(detect_window_columns.c.part == part,
                            detect_window_columns.c.chunk >= first_chunk))
        conn.execute(insert(detect_window_columns), [
            {"part": part, "chunk": k // _CHUNK_COLUMNS,
             "series": window.series_id[k:k + _CHUNK_COLUMNS].astype(np.int64).tobytes(),
             "sources": window.source_id[k:k + _CHUNK_COLUMNS].astype(np.int64).tobytes()}
            for k in range(first_chunk * _CHUNK_COLUMNS, max(n, 1), _CHUNK_COLUMNS)])
    t = detect_window_days
    if fresh:
        conn.execute(delete(t).where(t.c.part == part))
    else:
        conn.execute(delete(t).where(t.c.part == part, t.c.day < window.first_day))
    last = window.first_day + window.values.shape[0]
    dirty = sorted(d for d in window.dirty if window.first_day <= d < last)
    if dirty and not fresh:
        conn.execute(delete(t).where(t.c.part == part, t.c.day.in_(dirty)))
    for k in range(0, len(dirty), _DAYS_PER_WRITE):
        conn.execute(insert(t), [{"part": part,
                                  **_day_row(window.values[d - window.first_day], d)}
                                 for d in dirty[k:k + _DAYS_PER_WRITE]])
    window.stored_columns, window.dirty, window.token = n, set(), token
    if part == 0:
        _kept = (store.url, window)
