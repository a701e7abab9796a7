"""One worker's slice of the observations: a range of series ids over a range of days.

A distributed detection pass (``tracker.dask_engine``) never ships the matrix from
the client: each task opens the database itself and reads only its own series,
through :func:`read_slice`. The series id range is the unique index's prefix
(``series_id, source_id, as_of, collected_at``), so on PostgreSQL the read is an
index range scan however large the table; the day range keeps a daily run's read to
its trailing window. The values are the latest known per (series, source, day), by
the same rule as :func:`tracker.store.latest.latest_values` (one implementation:
:func:`tracker.store.latest.latest_rows`).

Engines are kept per worker process and URL (:func:`_store`): a worker runs many
tasks, and opening a pool per task would cost more than a small slice's read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
from sqlalchemy import bindparam, func, select

from tracker.store import window_cache
from tracker.store.core import Store
from tracker.store.latest import date_of, day_number, day_range, read_latest
from tracker.store.schema import observations, series, sources
from tracker.store.window_cache import Window

_CHUNK = 500_000
_STORES: dict[str, Store] = {}
#: new observations the client reads for the partitions' windows at most (5 int64
#: each: 320 MB); beyond, a backfill of many days, each partition reads afresh
_MAX_NEW_ROWS = 8_000_000


@dataclass(frozen=True)
class Dense:
    """A partition's days x columns matrix (NaN where nothing is known), as detection
    takes it: a row per day with a known value plus the days asked for (the whole
    matrix's first day, so weekly blocks and drift's grid start where the local
    engine's do), a column per (series, source) pair with a known value, in id order."""

    values: np.ndarray
    days: np.ndarray
    series_id: np.ndarray
    source_id: np.ndarray

    @property
    def empty(self) -> bool:
        return not self.series_id.size


@dataclass(frozen=True)
class Slice:
    """Latest value per (series, source, day) of a slice, sorted by those three."""

    series_id: np.ndarray
    source_id: np.ndarray
    day: np.ndarray
    value: np.ndarray

    def __len__(self) -> int:
        return int(self.day.size)

    def days(self, since: date | None, until: date | None) -> Slice:
        """The rows of the days [since, until] (either optional): what a read of those
        days gives, since each row is its cell's latest value whatever the range."""
        keep = np.ones(self.day.size, dtype=bool)
        if since is not None:
            keep &= self.day >= day_number(since)
        if until is not None:
            keep &= self.day <= day_number(until)
        if keep.all():
            return self
        return Slice(self.series_id[keep], self.source_id[keep], self.day[keep],
                     self.value[keep])

    def dense(self, extra_days: Sequence[int]) -> Dense:
        """The slice as a matrix, with rows (empty if nothing is known) on ``extra_days``."""
        days = np.unique(np.concatenate([self.day, np.asarray(extra_days, dtype=np.int64)]))
        values, sid, oid = window_cache.fill(self.series_id, self.source_id,
                                             np.searchsorted(days, self.day), self.value,
                                             days.size)
        return Dense(values, days, sid, oid)


@dataclass(frozen=True)
class WindowPlan:
    """How a task gets its partition's window of the days from ``keep`` (a day
    number) as of observation ``upto``: its stored window, if it holds observation
    ``mark``, plus ``rows`` (the partition's observations since), or read afresh."""

    keep: int
    upto: int
    mark: int | None = None
    rows: np.ndarray | None = None


def window_plans(store: Store, ranges: list[tuple[int, int]], keep: int, upto: int
                 ) -> list[WindowPlan]:
    """Each partition's :class:`WindowPlan`: the new observations are read once, here,
    through the id index, and split by series id (a task reading them itself would
    scan every partition's new rows). Windows of partitions that no longer exist
    are forgotten."""
    stored = window_cache.parts(store)
    if set(stored) - {lo for lo, _ in ranges}:
        with store.transaction("forgetting the windows of old partitions") as conn:
            window_cache.drop_parts(conn, [lo for lo, _ in ranges])
    marks = [stored[lo][1] if lo in stored and stored[lo][0] == hi else None
             for lo, hi in ranges]
    known = [m for m in marks if m is not None and m <= upto]
    if not known or upto - min(known) > _MAX_NEW_ROWS:
        return [WindowPlan(keep, upto) for _ in ranges]
    rows = window_cache.rows_between(store, min(known), upto, keep, ids=True)
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    plans = []
    for (lo, hi), mark in zip(ranges, marks, strict=True):
        if mark is None or mark > upto:
            plans.append(WindowPlan(keep, upto))
            continue
        a, b = np.searchsorted(rows[:, 0], [lo, hi + 1])
        mine = rows[a:b]
        plans.append(WindowPlan(keep, upto, mark, mine[mine[:, 4] > mark, :4].copy()))
    return plans


def part_window(url: str, lo: int, hi: int, plan: WindowPlan) -> Window:
    """The window of the partition [lo, hi] by ``plan``, saved back by this process if
    it changed (the stored window is a cache of the observations: writing it outside
    the run's transaction can only make a later run read afresh, never judge wrong)."""
    store = _store(url)
    win = None if plan.mark is None else window_cache.load(store, lo, hi)
    if win is None or win.last_observation != plan.mark or win.first_day > plan.keep:
        return store_window(url, lo, hi, read_slice(url, lo, hi, since=date_of(plan.keep)),
                            plan)
    assert plan.rows is not None
    same = plan.upto == win.last_observation and win.first_day == plan.keep
    win.apply_rows(store, plan.rows, plan.upto)
    win.trim(plan.keep)
    if not same or win.dirty or win.stored_columns != win.series_id.size:
        with store.transaction("saving a partition's window") as conn:
            window_cache.save(conn, store, win)
    return win


def store_window(url: str, lo: int, hi: int, sl: Slice, plan: WindowPlan) -> Window:
    """Store the partition's window from ``plan.keep`` out of a slice that holds every
    observation to ``plan.upto`` (a full pass's), as :func:`part_window` would read it."""
    win = Window.of_cells(sl.series_id, sl.source_id, sl.day, sl.value, plan.keep,
                          plan.upto, part=lo, last_series=hi)
    with _store(url).transaction("saving a partition's window") as conn:
        window_cache.save(conn, _store(url), win)
    return win


def kept_window(url: str, lo: int, hi: int, since: date | None, upto: int) -> Window | None:
    """The partition's stored window if it holds exactly the observations to ``upto``
    and the days from ``since``: the steps after a daily detection read it, not the
    observations."""
    if since is None:
        return None
    win = window_cache.load(_store(url), lo, hi)
    return win if win is not None and win.last_observation == upto \
        and win.first_day <= day_number(since) else None


def window_dense(win: Window, since: date | None, until: date | None,
                 extra_days: Sequence[int]) -> Dense:
    """The days [since, until] of a partition's kept window as :meth:`Slice.dense` of a
    read of them gives it, taken from the window's matrix without going through cells."""
    n = win.values.shape[0]
    lo = 0 if since is None else min(max(day_number(since) - win.first_day, 0), n)
    hi = n if until is None else min(max(day_number(until) - win.first_day + 1, lo), n)
    vals = win.values[lo:hi]
    finite = np.isfinite(vals)
    cols = np.flatnonzero(finite.any(axis=0))
    cols = cols[np.lexsort((win.source_id[cols], win.series_id[cols]))]
    rows = np.flatnonzero(finite.any(axis=1))
    seen = (rows + lo + win.first_day).astype(np.int64)
    days = np.union1d(seen, np.asarray(extra_days, dtype=np.int64))
    values = np.full((days.size, cols.size), np.nan)
    if rows.size:
        values[np.searchsorted(days, seen)] = vals[np.ix_(rows, cols)]
    return Dense(values, days, win.series_id[cols].astype(np.int64),
                 win.source_id[cols].astype(np.int64))


def _store(url: str) -> Store:
    """This process's store for ``url``, opened once (read only: never migrated here)."""
    store = _STORES.get(url)
    if store is None:
        store = _STORES[url] = Store(url, migrate=False, create=False)
    return store


def series_ids(store: Store) -> np.ndarray:
    """Every series id, ascending: what partitions split into ranges."""
    with store.reading("reading series ids") as conn:
        ids = conn.execute(select(series.c.id).order_by(series.c.id)).scalars().all()
    return np.asarray(ids, dtype=np.int64)


def day_span(store: Store, *, since: date | None = None, until: date | None = None
             ) -> tuple[int, int] | None:
    """First and last day (day numbers) with any observation in [since, until].

    A slice's matrix must span the same days as the whole matrix would (the weekly
    adjustment's blocks and drift's grid start at its first day), so every task is
    given these and not only its own series' first and last days.
    """
    q = select(func.min(observations.c.as_of), func.max(observations.c.as_of))
    if since is not None:
        q = q.where(observations.c.as_of >= since)
    if until is not None:
        q = q.where(observations.c.as_of <= until)
    with store.reading("reading the span of days") as conn:
        lo, hi = conn.execute(q).one()
    if lo is None:
        return None
    return _day_number(lo), _day_number(hi)


def _day_number(value: object) -> int:
    d = date.fromisoformat(value[:10]) if isinstance(value, str) else value
    assert isinstance(d, date)
    return (d - date(1970, 1, 1)).days


def read_slice(url: str, lo: int, hi: int, *, since: date | None = None,
               until: date | None = None, only: Sequence[int] | None = None) -> Slice:
    """Latest values of the series with ids in [lo, hi] (or only the ids ``only``, a few)
    for days in [since, until], read by the calling process itself from ``url``."""
    store = _store(url)
    where, params, binds = day_range(since, until)
    where += ["o.series_id >= :lo", "o.series_id <= :hi"]
    params.update(lo=int(lo), hi=int(hi))
    if only is not None:
        where.append("o.series_id IN :only")
        params["only"] = sorted({int(i) for i in only})
        binds.append(bindparam("only", expanding=True))
    with store.reading("reading a slice of observations") as conn:
        rows = read_latest(conn, store.dialect, where, params, binds, by_series=True,
                           nothing=only is not None and not params["only"])
    return Slice(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3])


def slice_names(url: str, lo: int, hi: int
                ) -> tuple[dict[int, tuple[str, str]], dict[int, str]]:
    """series id -> (company id, metric) of the series with ids in [lo, hi], and every
    source's name: what a task needs to name its columns (not the million others)."""
    store = _store(url)
    with store.reading("reading a slice's series names") as conn:
        names = {int(i): (c, m) for i, c, m in conn.execute(
            select(series.c.id, series.c.company_id, series.c.metric)
            .where(series.c.id.between(int(lo), int(hi))))}
        return names, {int(i): n for i, n in conn.execute(select(sources.c.id,
                                                                  sources.c.name))}
