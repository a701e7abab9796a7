"""Cross-company events: many companies shifting on the same day is itself a signal.

The 2022 LinkedIn purge hit Apple and Amazon within the same 24 hours; a run of
drops at unrelated companies within a day of each other points at the platform
(a purge, a scraper change), not at the companies. Grouping is single-linkage on
days per direction, so a purge that rolls out over two nights stays one event.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

import numpy as np
import pandas as pd

EVENT_COLUMNS = ["event_id", "kind", "first_date", "last_date", "n_companies",
                 "median_change_pct", "companies", "series"]


def company_of(series: Hashable) -> str:
    """Company part of a series key such as ``"apple/employees/linkedin"``."""
    return str(series).split("/", 1)[0]


def events(anomalies: pd.DataFrame, min_companies: int = 3, tolerance_days: int = 1,
           kinds: Iterable[str] = ("drop", "spike"),
           company: Callable[[Hashable], str] = company_of) -> pd.DataFrame:
    """Group shifts of at least ``min_companies`` companies within ``tolerance_days`` of each other.

    Returns one row per event (columns ``EVENT_COLUMNS``); ``event_id`` is stable for
    the same input: ``<kind>-<first date>``.
    """
    a = anomalies[anomalies["kind"].isin(list(kinds))].copy()
    if a.empty:
        return pd.DataFrame(columns=EVENT_COLUMNS)
    a["company"] = [company(s) for s in a["series"]]
    rows = []
    for kind, grp in a.groupby("kind", sort=True):
        grp = grp.sort_values("date")
        dates = grp["date"].to_numpy(dtype="datetime64[D]").astype(np.int64)
        cluster = np.concatenate([[0], np.cumsum(np.diff(dates) > tolerance_days)])
        for _, members in grp.groupby(cluster):
            companies = sorted(set(members["company"]))
            if len(companies) < min_companies:
                continue
            first = members["date"].min()
            rows.append({"event_id": f"{kind}-{first:%Y-%m-%d}", "kind": kind,
                         "first_date": first, "last_date": members["date"].max(),
                         "n_companies": len(companies),
                         "median_change_pct": float(members["change_pct"].median()),
                         "companies": companies, "series": list(members["series"])})
    out = pd.DataFrame(rows, columns=EVENT_COLUMNS)
    return out.sort_values(["first_date", "kind"]).reset_index(drop=True)
