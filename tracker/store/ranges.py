"""The values of chosen series in chosen date ranges: what corroboration reads.

Corroboration looks at every source of a few series, each around its own alert
date, so the daily run's reads scale with its alerts, not with the store. The
wanted ranges travel to the database as one ``VALUES`` table joined to the
observations on the ``(series_id, source_id, as_of, ...)`` unique index, one
query for all of them (cut into chunks only past the databases' limit of bound
parameters). Overlapping ranges of one series are merged first, so a value is
read once however many alerts want it.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy import Date, Integer, column, select, values

from tracker.store.core import Store
from tracker.store.schema import observations, sources

#: Ranges per query: three bound parameters each, well under SQLite's 32,766.
_CHUNK = 5000
COLUMNS = ["series_id", "source_id", "source", "as_of", "value"]


def merged_ranges(ranges: pd.DataFrame) -> pd.DataFrame:
    """``ranges`` (series_id, first, last) with overlapping or touching ranges of a
    series joined into one; empty ranges (first > last) dropped."""
    r = ranges.loc[ranges["first"] <= ranges["last"], ["series_id", "first", "last"]]
    if r.empty:
        return r.reset_index(drop=True)
    r = r.sort_values(["series_id", "first"], kind="stable").reset_index(drop=True)
    sid = r["series_id"].to_numpy()
    lo = pd.to_datetime(r["first"]).to_numpy("datetime64[D]")
    hi = pd.to_datetime(r["last"]).to_numpy("datetime64[D]")
    reach = pd.Series(hi).groupby(sid).cummax().to_numpy("datetime64[D]")
    start = np.ones(len(r), dtype=bool)
    start[1:] = (sid[1:] != sid[:-1]) | (lo[1:] > reach[:-1] + np.timedelta64(1, "D"))
    group = np.cumsum(start) - 1
    out = pd.DataFrame({"series_id": sid, "first": lo, "last": hi}).groupby(group).agg(
        series_id=("series_id", "first"), first=("first", "min"), last=("last", "max"))
    return out.reset_index(drop=True)


def values_in_ranges(store: Store, ranges: pd.DataFrame, *,
                     known_at: datetime | None = None) -> pd.DataFrame:
    """The latest value per (series, source, day) of every source of the series in
    ``ranges`` (columns series_id, first, last: inclusive days), or the latest known
    at ``known_at`` (naive UTC) for a pass over a past state of knowledge.

    Columns :data:`COLUMNS`, ``as_of`` as datetime64; sorted by series, source, day.
    """
    wanted = merged_ranges(ranges)
    rows: list[tuple[object, ...]] = []
    if len(wanted):
        with store.reading("reading the values near alerts") as conn:
            for k in range(0, len(wanted), _CHUNK):
                part = wanted.iloc[k:k + _CHUNK]
                table = values(column("series_id", Integer), column("lo", Date),
                               column("hi", Date), name="wanted").data(list(zip(
                                   part["series_id"].astype(int).tolist(),
                                   part["first"].dt.date.tolist(), part["last"].dt.date.tolist(),
                                   strict=True))).cte("wanted")
                o = observations.c
                q = (select(o.series_id, o.source_id, sources.c.name, o.as_of, o.value,
                            o.collected_at)
                     .join(table, (table.c.series_id == o.series_id)
                           & (o.as_of >= table.c.lo) & (o.as_of <= table.c.hi))
                     .join(sources, sources.c.id == o.source_id))
                if known_at is not None:
                    q = q.where(o.collected_at <= known_at)
                rows += conn.execute(q).all()
    frame = pd.DataFrame(rows, columns=[*COLUMNS, "collected_at"])
    frame["as_of"] = pd.to_datetime(frame["as_of"])
    frame = frame.sort_values(["series_id", "source_id", "as_of", "collected_at"],
                              kind="stable")
    frame = frame.drop_duplicates(["series_id", "source_id", "as_of"], keep="last")
    return frame[COLUMNS].astype({"series_id": "int64", "source_id": "int64",
                                  "value": "float64"}).reset_index(drop=True)

