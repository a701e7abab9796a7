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

Stored in column chunks (the ``detect_window`` table), so a million series never
make one oversized value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection, delete, insert, select, text

from tracker.store.companies import now_utc
from tracker.store.core import Store
from tracker.store.latest import _DAY_SQL, Latest, latest_of
from tracker.store.schema import detect_window

_MISSING = np.iinfo(np.int64).min
_CHUNK_SERIES = 25_000


@dataclass
class Window:
    """Latest values of (series, source) columns for calendar days from ``first_day``
    (a day number; NaN where nothing is known), as of observation ``last_observation``."""

    first_day: int
    series_id: np.ndarray
    source_id: np.ndarray
    values: np.ndarray
    last_observation: int

    @classmethod
    def of(cls, latest: Latest, first_day: int, last_observation: int) -> Window:
        code = latest.series_id * np.int64(2**31) + latest.source_id
        uniq, col = np.unique(code, return_inverse=True)
        rows = int(latest.day.max()) - first_day + 1 if len(latest) else 0
        values = np.full((max(rows, 0), uniq.size), np.nan)
        keep = latest.day >= first_day
        values[latest.day[keep] - first_day, col[keep]] = latest.value[keep]
        return cls(first_day, uniq // 2**31, uniq % 2**31, values, last_observation)

    def trim(self, first_day: int) -> None:
        """Forget the days before ``first_day`` (no longer needed by any window)."""
        if first_day > self.first_day:
            self.values = self.values[first_day - self.first_day:]
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
        if new.size:  # series seen for the first time
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
        rows = conn.execute(sql, {"a": after, "b": upto}).all()
    out = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
    return out[out[:, 2] >= first_day]


def load(store: Store) -> Window | None:
    with store.reading("reading the detection window") as conn:
        chunks = conn.execute(select(detect_window).order_by(detect_window.c.chunk)).all()
    if not chunks or len({(c.first_day, c.last_observation, c.days) for c in chunks}) != 1:
        return None
    head = chunks[0]
    series_id = np.concatenate([np.frombuffer(c.series, dtype=np.int64) for c in chunks])
    source_id = np.concatenate([np.frombuffer(c.sources, dtype=np.int64) for c in chunks])
    parts = [np.frombuffer(c.counts, dtype=np.int64).reshape(head.days, len(c.series) // 8)
             for c in chunks]
    raw = np.hstack(parts) if parts else np.zeros((head.days, 0), dtype=np.int64)
    values = np.where(raw == _MISSING, np.nan, raw.astype(np.float64))
    return Window(int(head.first_day), series_id.copy(), source_id.copy(), values,
                  int(head.last_observation))


def save(conn: Connection, window: Window) -> None:
    """Replace the stored window, inside the caller's transaction."""
    conn.execute(delete(detect_window))
    counts = np.where(np.isfinite(window.values), window.values, 0).astype(np.int64)
    counts[~np.isfinite(window.values)] = _MISSING
    m = window.series_id.size
    stamp = now_utc()
    rows = [{"chunk": k // _CHUNK_SERIES, "first_day": window.first_day,
             "days": int(window.values.shape[0]), "last_observation": window.last_observation,
             "series": window.series_id[k:k + _CHUNK_SERIES].astype(np.int64).tobytes(),
             "sources": window.source_id[k:k + _CHUNK_SERIES].astype(np.int64).tobytes(),
             "counts": np.ascontiguousarray(counts[:, k:k + _CHUNK_SERIES]).tobytes(),
             "updated_at": stamp}
            for k in range(0, max(m, 1), _CHUNK_SERIES)]
    conn.execute(insert(detect_window), rows)

