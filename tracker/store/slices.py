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

from tracker.store.core import Store
from tracker.store.latest import day_number, day_range, read_latest
from tracker.store.schema import observations, series, sources

_CHUNK = 500_000
_STORES: dict[str, Store] = {}


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
