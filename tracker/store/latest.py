"""The latest known value of every (series, source, day) in a range of days, as arrays.

This is what detection reads every day, so it is built for speed rather than
generality: four integer columns straight from the covering index
``(as_of, series_id, source_id, value)`` (no lookups into the table, days as
integers computed by the database), fetched in chunks into numpy. Revisions are
rare, so they are not sorted out in SQL: a (series, source, day) read twice is
looked up once more, for its latest-collected value. ``Store.observations`` stays
the general reader (names, timestamps, revisions, points in time).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Date, bindparam, text

from tracker.store.core import Store

_CHUNK = 1 << 20
#: The day as days since 1970-01-01, per dialect.
_DAY_SQL = {"sqlite": "CAST(julianday(o.as_of) - 2440587.5 AS INTEGER)",
            "postgresql": "(o.as_of - DATE '1970-01-01')"}


def day_number(d: date) -> int:
    """A day as the store's day numbers count it (days since 1970-01-01)."""
    return (d - date(1970, 1, 1)).days


def date_of(n: int) -> date:
    return date(1970, 1, 1) + timedelta(days=n)


@dataclass(frozen=True)
class Latest:
    """Flat arrays, one entry per (series, source, day), sorted by those three."""

    series_id: np.ndarray
    source_id: np.ndarray
    day: np.ndarray
    value: np.ndarray
    #: series id -> (company id, metric); source id -> name
    series_names: dict[int, tuple[str, str]]
    source_names: dict[int, str]

    def __len__(self) -> int:
        return int(self.day.size)

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The distinct (series, source) pairs, and each row's index among them.

        The rows are sorted by pair already, so the pairs are where a row differs from
        the one before: linear, where ``np.unique(return_inverse=True)`` sorts 10^8
        codes again (seconds) and holds three more arrays of their size."""
        if not len(self):
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        starts = np.empty(len(self), dtype=bool)
        starts[0] = True
        np.not_equal(self.series_id[1:], self.series_id[:-1], out=starts[1:])
        starts[1:] |= self.source_id[1:] != self.source_id[:-1]
        col = np.cumsum(starts)
        col -= 1  # in place: at 10^8 rows each temporary is 800 MB
        first = np.flatnonzero(starts)
        return self.series_id[first], self.source_id[first], col

    def day_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """The distinct days, ascending, and each row's index among them (linear: the
        days span a bounded range)."""
        if not len(self):
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        lo = int(self.day.min())
        offset = self.day - lo
        present = np.zeros(int(offset.max()) + 1, dtype=bool)
        present[offset] = True
        return lo + np.flatnonzero(present), (np.cumsum(present) - 1)[offset]


#: ``series`` as one parameter (a JSON list; an array literal on PostgreSQL),
#: whatever its length: SQLite caps bound
#: variables, and one array keeps PostgreSQL's plan the same for any slice size.
_SERIES_SQL = {"sqlite": "o.series_id IN (SELECT value FROM json_each(:sids))",
               "postgresql": "o.series_id = ANY(CAST(:sids AS integer[]))"}


def day_range(since: date | None, until: date | None
              ) -> tuple[list[str], dict[str, object], list[Any]]:
    """The WHERE clauses, parameters and typed binds of ``since <= as_of <= until``
    (either optional) over ``observations o``: the one day filter of the raw reads."""
    where: list[str] = ["1=1"]
    params: dict[str, object] = {}
    binds: list[Any] = []
    for clause, name, value in (("o.as_of >= :since", "since", since),
                                ("o.as_of <= :until", "until", until)):
        if value is not None:
            where.append(clause)
            params[name] = value
            binds.append(bindparam(name, type_=Date()))
    return where, params, binds


def read_latest(conn: Any, dialect: str, where: list[str], params: dict[str, object],
                binds: list[Any], *, nothing: bool = False, by_series: bool = False
                ) -> np.ndarray:
    """Rows (series_id, source_id, day number, value) of ``observations o`` matching
    ``where``, as one int64 array, then the latest revision of each
    (:func:`latest_rows`): the raw read of the window and of a Dask slice.
    ``nothing``: the caller knows no row can match (an empty id list). ``by_series``:
    ``where`` selects a range of series (a slice), not only a range of days."""
    if nothing:
        return latest_rows(conn, np.zeros((0, 4), dtype=np.int64))
    if dialect == "postgresql":
        return latest_rows(conn, _read_packed(conn, where, params, binds, by_series))
    sql = text(f"SELECT o.series_id, o.source_id, {_DAY_SQL['sqlite']}, o.value "
               "FROM observations o WHERE " + " AND ".join(where)).bindparams(*binds)
    cursor = conn.execute(sql, params).cursor
    assert cursor is not None
    chunks: list[np.ndarray] = []
    while batch := cursor.fetchmany(_CHUNK):
        chunks.append(np.asarray(batch, dtype=np.int64))
    rows = np.concatenate(chunks) if chunks else np.zeros((0, 4), dtype=np.int64)
    return latest_rows(conn, rows)


#: One observation as PostgreSQL's ``int4send``/``int8send`` write it (big-endian).
_PACKED = np.dtype([("series_id", ">i4"), ("source_id", ">i4"), ("day", ">i4"),
                    ("value", ">i8")])


def _read_packed(conn: Any, where: list[str], params: dict[str, object], binds: list[Any],
                 by_series: bool) -> np.ndarray:
    """The rows of :func:`read_latest` on PostgreSQL, packed by the server
    (:func:`packed_groups`): the client holds the packed bytes (20 B per row) and the
    result (32 B per row), nothing more."""
    parts = list(packed_groups(conn, where, params, binds, by_series=by_series))
    rows = np.empty((sum(p.size for p in parts), 4), dtype=np.int64)
    at = 0
    while parts:  # converted about a million rows at a time, each batch freed once copied
        take, n = 0, 0
        while take < len(parts) and (n == 0 or n + parts[take].size <= _CHUNK):
            n, take = n + parts[take].size, take + 1
        batch = np.concatenate(parts[:take])
        del parts[:take]
        for i, name in enumerate(_PACKED.names):
            rows[at:at + n, i] = batch[name]
        at += n
    return rows


#: series ids per group of a slice's packed read (:func:`packed_groups`)
_SLICE_BLOCK = 64


def packed_groups(conn: Any, where: list[str], params: dict[str, object], binds: list[Any],
                  *, by_series: bool = False) -> Iterator[np.ndarray]:
    """The observations of ``observations o`` matching ``where``, on PostgreSQL, one
    group at a time as records of :data:`_PACKED` (series, source, day, value; every
    revision, not sorted within the group).

    A row-per-row fetch costs a Python tuple per observation and, with a client-side
    cursor, holds the whole result in libpq first: at 10^8 rows (a million companies'
    window) that is some 20 GB. Here the server packs each group's rows into one bytea
    of fixed 20-byte records, which numpy reads in place: a few hundred fetched
    values instead of 10^8, streamed through a server-side cursor.

    A window (a range of days, all series) is grouped by day, following the
    ``(as_of, ...)`` index, so a caller can build it day by day; the hash aggregate is
    switched off so the server, too, holds one day at a time instead of all of them.
    A slice (a range of series, one task's) is grouped by blocks of
    :data:`_SLICE_BLOCK` series ids through the hash aggregate: its rows come from a
    bitmap scan of the ``(series_id, ...)`` index in no order, and grouping by series
    made the server sort them and send one small row per series (measured on a
    10,000-series slice of 1.1 M rows: 0.86-1.02 s sorted by series, 0.65-0.68 s in
    blocks of 64; the aggregate spills to disk past ``work_mem``, so memory stays
    bounded either way).
    """
    group = f"o.series_id / {_SLICE_BLOCK}" if by_series else "o.as_of"
    sql = text(
        "SELECT string_agg(int4send(o.series_id) || int4send(o.source_id) || "
        f"int4send({_DAY_SQL['postgresql']}) || int8send(o.value), ''::bytea) "
        "FROM observations o WHERE " + " AND ".join(where) + f" GROUP BY {group}"
    ).bindparams(*binds)
    conn.execute(text(f"SET LOCAL enable_hashagg = {'on' if by_series else 'off'}"))
    result = conn.execute(sql, params, execution_options={"stream_results": True,
                                                          "max_row_buffer": 64})
    try:
        for (packed,) in result:
            yield np.frombuffer(packed, dtype=_PACKED)
    finally:
        result.close()
        conn.execute(text("RESET enable_hashagg"))


def latest_values(store: Store, *, since: date | None = None, until: date | None = None,
                  companies: Iterable[str] | None = None,
                  series: Iterable[int] | None = None) -> Latest:
    """Latest value per (series, source, day) for days in [since, until] (both optional),
    of every company, of ``companies`` (ids) only, or of the ``series`` ids only.

    ``series`` is the read of one worker's slice (a trailing window of a set of
    series): on PostgreSQL the day range prunes the quarterly partitions and the
    unique index ``(series_id, source_id, as_of, ...)`` finds the slice's rows.
    """
    where, params, binds = day_range(since, until)
    if companies is not None:
        where.append("o.series_id IN (SELECT id FROM series WHERE company_id IN :cids)")
        params["cids"] = list(companies)
        binds.append(bindparam("cids", expanding=True))
    if series is not None:
        import json

        ids = sorted({int(i) for i in series})
        where.append(_SERIES_SQL.get(store.dialect, _SERIES_SQL["sqlite"]))
        params["sids"] = json.dumps(ids) if store.dialect == "sqlite" else \
            "{" + ",".join(map(str, ids)) + "}"
    nothing = params.get("cids") == [] or params.get("sids") in ("[]", "{}")
    with store.reading("reading observations") as conn:
        rows = read_latest(conn, store.dialect, where, params, binds, nothing=nothing)
        series_names, source_names = key_names(conn)
    return Latest(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3], series_names, source_names)


@dataclass(frozen=True)
class LatestMatrix:
    """The latest value of every (series, source) column for the calendar days from
    ``first_day`` (a day number): NaN where nothing is known. Columns in (series,
    source) id order, as :meth:`Latest.columns` gives them."""

    first_day: int
    series_id: np.ndarray
    source_id: np.ndarray
    values: np.ndarray

    @classmethod
    def of(cls, latest: Latest, first_day: int | None = None) -> LatestMatrix:
        """The matrix of rows already read (``first_day``: the first row's day)."""
        series_id, source_id, col = latest.columns()
        if first_day is None:
            first_day = int(latest.day.min()) if len(latest) else 0
        rows = int(latest.day.max()) - first_day + 1 if len(latest) else 0
        values = np.full((max(rows, 0), series_id.size), np.nan)
        # one flat index built in place: at 10^8 rows each temporary is 800 MB
        flat = latest.day - first_day
        flat *= series_id.size
        flat += col
        keep = flat >= 0
        if keep.all():
            values.reshape(-1)[flat] = latest.value
        else:
            values.reshape(-1)[flat[keep]] = latest.value[keep]
        return cls(first_day, series_id, source_id, values)


def latest_matrix(store: Store, *, first_day: int | None = None,
                  last_day: int | None = None) -> LatestMatrix:
    """:meth:`LatestMatrix.of` the latest values of the days [first_day, last_day]
    (day numbers, both optional: the store's first and last), built day by day on
    PostgreSQL.

    All the rows at once are 32 B per observation (and 20 more while packed): at
    a million series and a year and a quarter of days, some 20 GB beside a 3.6 GB
    matrix. Day by day, the client holds each day's values as a row of the columns
    seen so far, then the matrix (the rows put in column order, each freed once
    copied): about twice the matrix, whatever the number of observations. The
    daily run's fresh window and every whole-store pass of the local engine read
    through here."""
    since = None if first_day is None else date_of(first_day)
    until = None if last_day is None else date_of(last_day)
    if store.dialect != "postgresql":
        return LatestMatrix.of(latest_values(store, since=since, until=until), first_day)
    where, params, binds = day_range(since, until)
    known = np.zeros(0, dtype=np.int64)  # column codes seen so far, sorted
    ids = np.zeros(0, dtype=np.int64)  # each one's column in order of first sight
    rows: dict[int, np.ndarray] = {}
    with store.reading("reading observations") as conn:
        for group in packed_groups(conn, where, params, binds):
            code = group["series_id"].astype(np.int64) << 31
            code |= group["source_id"]
            at = np.searchsorted(known, code)
            seen = at < known.size
            seen[seen] = known[at[seen]] == code[seen]
            if not seen.all():
                new = np.unique(code[~seen])
                known = np.concatenate([known, new])
                ids = np.concatenate([ids, ids.size + np.arange(new.size)])
                order = np.argsort(known, kind="stable")
                known, ids = known[order], ids[order]
                at = np.searchsorted(known, code)
            col = ids[at]
            row = np.full(known.size, np.nan)
            row[col] = group["value"]
            many = np.flatnonzero(np.bincount(col, minlength=known.size) > 1)
            day = int(group["day"][0])
            if many.size:  # cells read twice: their latest-collected value
                cells = np.empty((many.size, 3), dtype=np.int64)
                first = np.zeros(known.size, dtype=np.int64)
                first[col] = np.arange(col.size)  # a row of each (any: same key)
                cells[:, 0] = group["series_id"][first[many]]
                cells[:, 1] = group["source_id"][first[many]]
                cells[:, 2] = day
                row[many] = latest_of(conn, cells)
            rows[day] = row
    if first_day is None:
        first_day = min(rows) if rows else 0
    days = max(rows) - first_day + 1 if rows else 0
    values = np.full((days, known.size), np.nan)
    for day in sorted(rows):
        row = rows.pop(day)
        part = ids < row.size  # columns first seen on a later day stay NaN here
        values[day - first_day, part] = row[ids[part]] if not part.all() else row[ids]
    return LatestMatrix(first_day, known >> 31, known & (2**31 - 1), values)


def latest_rows(conn, rows: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """(series, source, day, value) rows sorted by the first three, one per cell, each
    cell's latest-collected value (the few cells read twice are looked up once more)."""
    # sorted and compared column by column: at 10^8 rows each whole-array temporary
    # is gigabytes
    order = np.lexsort((rows[:, 2], rows[:, 1], rows[:, 0]))
    for i in range(rows.shape[1]):
        rows[:, i] = rows[order, i]
    del order
    if len(rows) < 2:
        return rows
    same = rows[1:, 0] == rows[:-1, 0]
    for i in (1, 2):
        same &= rows[1:, i] == rows[:-1, i]
    if not same.any():
        return rows
    dup = np.zeros(len(rows), dtype=bool)
    dup[1:] = same  # a later row of the same cell
    first = np.zeros(len(rows), dtype=bool)
    first[:-1] = same
    revised = np.flatnonzero(first & ~dup)  # first row of each cell read twice
    rows[revised, 3] = latest_of(conn, rows[revised, :3])
    return rows[~dup]


def key_names(conn) -> tuple[dict[int, tuple[str, str]], dict[int, str]]:  # type: ignore[no-untyped-def]
    """series id -> (company id, metric) and source id -> name."""
    series_names = {int(i): (c, m) for i, c, m in conn.execute(text(
        "SELECT id, company_id, metric FROM series")).all()}
    return series_names, {int(i): n for i, n in conn.execute(text(
        "SELECT id, name FROM sources")).all()}


def names(store: Store) -> tuple[dict[int, tuple[str, str]], dict[int, str]]:
    """:func:`key_names` of ``store``, read once per process and then only the ids added
    since: a series or a source is never renamed nor deleted, and a daily run asks
    for the names of a million series more than once (1.5-2 s a read). Callers must
    not change the dicts. Should the counts disagree with what is kept (a database
    restored under a running process), everything is read again."""
    with store.reading("reading series names") as conn:
        n_series, n_sources = conn.execute(text(
            "SELECT (SELECT count(*) FROM series), (SELECT count(*) FROM sources)")).one()
        kept = store.memo.get("key_names")
        if isinstance(kept, tuple):
            series_names, source_names = kept
            for table, known in (("series", series_names), ("sources", source_names)):
                cols = "company_id, metric" if table == "series" else "name"
                rows = conn.execute(text(f"SELECT id, {cols} FROM {table} WHERE id > :m"),
                                    {"m": max(known, default=0)}).all()
                known.update({int(r[0]): (r[1], r[2]) if table == "series" else r[1]
                              for r in rows})
            if (len(series_names), len(source_names)) == (n_series, n_sources):
                return series_names, source_names
        fresh = key_names(conn)
        store.memo["key_names"] = fresh
        return fresh


def latest_of(conn, cells: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The latest-collected value of each (series, source, day number) cell."""
    query = text(
        "SELECT value FROM observations WHERE series_id = :s AND source_id = :o "
        "AND as_of = :d ORDER BY collected_at DESC LIMIT 1"
    ).bindparams(bindparam("d", type_=Date()))
    days = cells[:, 2].astype("datetime64[D]").tolist()
    return np.asarray([conn.execute(query, {"s": int(s), "o": int(o), "d": d}).scalar()
                       for (s, o, _), d in zip(cells, days, strict=True)], dtype=np.int64)
