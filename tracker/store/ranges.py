"""The values of chosen series in chosen date ranges: what corroboration reads.

Corroboration looks at every source of a few series, each around its own alert
date, so the daily run's reads scale with its alerts, not with the store. The
wanted ranges travel to the database as one table joined to the observations on
the ``(series_id, source_id, as_of, ...)`` unique index, one query for all of them:
on PostgreSQL four arrays ``unnest``-ed into rows (27,249 alerts' ranges on the
million-company store: 0.7-1.0 s, against 2.6-7.5 s as a ``VALUES`` list of bound
parameters, whose conversion in the driver cost more than the query), on SQLite a
``VALUES`` list cut into chunks under its limit of bound parameters (plain SQL:
compiling a ``VALUES`` construct of thousands of rows costs more than running it).
Overlapping ranges of one series are merged first, so a value is read once however
many alerts want it; an alert's own source is not read at all.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy import DateTime, bindparam, select, text

from tracker.store.core import Store
from tracker.store.latest import _DAY_SQL
from tracker.store.schema import sources

#: Ranges per query: four bound parameters each, well under SQLite's 32,766.
_CHUNK = 5000
COLUMNS = ["series_id", "source_id", "source", "day", "value"]
_KEY = ["series_id", "other_than"]


def merged_ranges(ranges: pd.DataFrame) -> pd.DataFrame:
    """``ranges`` (series_id, other_than, first, last) with the overlapping or touching
    ranges of a (series, other_than) joined into one; empty ones (first > last) dropped."""
    r = ranges.loc[ranges["first"] <= ranges["last"], [*_KEY, "first", "last"]]
    if r.empty:
        return r.reset_index(drop=True)
    r = r.sort_values([*_KEY, "first"], kind="stable").reset_index(drop=True)
    key = r["series_id"].to_numpy(dtype=np.int64) * np.int64(2**31) \
        + r["other_than"].to_numpy(dtype=np.int64)
    lo = pd.to_datetime(r["first"]).to_numpy("datetime64[D]")
    hi = pd.to_datetime(r["last"]).to_numpy("datetime64[D]")
    reach = pd.Series(hi).groupby(key).cummax().to_numpy("datetime64[D]")
    start = np.ones(len(r), dtype=bool)
    start[1:] = (key[1:] != key[:-1]) | (lo[1:] > reach[:-1] + np.timedelta64(1, "D"))
    group = np.cumsum(start) - 1
    out = r.assign(first=lo, last=hi).groupby(group).agg(
        series_id=("series_id", "first"), other_than=("other_than", "first"),
        first=("first", "min"), last=("last", "max"))
    return out.reset_index(drop=True)


def values_in_ranges(store: Store, ranges: pd.DataFrame, *,
                     known_at: datetime | None = None) -> pd.DataFrame:
    """The latest value per (series, source, day) in ``ranges`` (columns series_id,
    other_than, first, last: inclusive days) of every source of the series but
    ``other_than`` (an alert's own source, whose values it does not need), or the
    latest known at ``known_at`` (naive UTC) for a pass over a past state of knowledge.

    Columns :data:`COLUMNS`, ``day`` as days since 1970-01-01; sorted by series,
    source, day. Each (range, source) is one seek on the unique index (series_id,
    source_id, as_of, ...) (``CROSS JOIN`` keeps SQLite to that order), so a series
    with one source costs a seek that finds nothing. Raw DBAPI rows and days
    computed by the database: building row objects and parsing dates would cost ten
    times the query.
    """
    wanted = merged_ranges(ranges)
    chunks: list[np.ndarray] = []
    sqlite = store.dialect == "sqlite"
    day = _DAY_SQL.get(store.dialect, _DAY_SQL["sqlite"])
    # PostgreSQL takes the ranges as four arrays, whatever their number (see above)
    step = _CHUNK if sqlite else max(len(wanted), 1)
    with store.reading("reading the values near alerts") as conn:
        for k in range(0, len(wanted), step):
            part = wanted.iloc[k:k + step]
            sids = part["series_id"].astype(int).tolist()
            others = part["other_than"].astype(int).tolist()
            los, his = part["first"].dt.date.tolist(), part["last"].dt.date.tolist()
            params: dict[str, object] = {}
            if sqlite:  # dates as ISO text, as SQLite keeps them
                rows = []
                for i, (sid, other, lo, hi) in enumerate(zip(sids, others, los, his,
                                                            strict=True)):
                    params |= {f"s{i}": sid, f"x{i}": other, f"l{i}": lo.isoformat(),
                               f"h{i}": hi.isoformat()}
                    rows.append(f"(:s{i}, :x{i}, :l{i}, :h{i})")
                table = f"VALUES {', '.join(rows)}"
            else:
                params |= {"s": sids, "x": others, "l": los, "h": his}
                table = ("SELECT * FROM unnest(CAST(:s AS integer[]), CAST(:x AS integer[]), "
                         "CAST(:l AS date[]), CAST(:h AS date[]))")
            known = ""
            if known_at is not None:
                known = " AND o.collected_at <= :known"
                params["known"] = known_at
            sql = text(
                f"WITH wanted(series_id, other_than, lo, hi) AS ({table}) "
                f"SELECT o.series_id, o.source_id, {day}, o.value "
                "FROM wanted w CROSS JOIN sources s CROSS JOIN observations o "
                "WHERE s.id <> w.other_than AND o.series_id = w.series_id "
                "AND o.source_id = s.id AND o.as_of >= w.lo AND o.as_of <= w.hi"
                f"{known} ORDER BY o.series_id, o.source_id, o.as_of, o.collected_at")
            if known_at is not None:
                sql = sql.bindparams(bindparam("known", type_=DateTime()))
            cursor = conn.execute(sql, params).cursor
            assert cursor is not None
            if batch := cursor.fetchall():
                chunks.append(np.asarray(batch, dtype=np.int64))
        names = dict(conn.execute(select(sources.c.id, sources.c.name)).all())
    got = np.concatenate(chunks) if chunks else np.zeros((0, 4), dtype=np.int64)
    order = np.lexsort((got[:, 2], got[:, 1], got[:, 0]))  # stable: revisions stay last
    got = got[order]
    last = np.ones(len(got), dtype=bool)
    last[:-1] = (np.diff(got[:, :3], axis=0) != 0).any(axis=1)  # the latest revision
    got = got[last]
    return pd.DataFrame({"series_id": got[:, 0], "source_id": got[:, 1],
                         "source": pd.Series(got[:, 1]).map(names).to_numpy(dtype=object),
                         "day": got[:, 2], "value": got[:, 3].astype(np.float64)})
