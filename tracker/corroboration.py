"""Which sources saw an alert's move, which did not, and what that does to its severity.

When a series (company + metric) is collected from two or more sources, an alert
names the other sources that moved the same way beyond their own normal variation
within ``[alerts] corroboration_days`` of its first day (``sources_seen``, the
alert's own source first), those that had data then and did not
(``sources_silent``), and those without data near the date (``sources_no_data``).
The test itself is :mod:`tracker.detect.corroborate`; the values it needs are read
in one query for all alerts (:func:`tracker.store.ranges.values_in_ranges`), so its
cost follows the number of alerts judged, not the number of series.

A move that only its own source saw while another source with data saw nothing is a
*possible source error* (a broken scraper, a re-mapped company, a provider's purge
of its own): it is never critical on its own. :func:`graded` is the one place that
caps it, used wherever a severity is (re)computed for stored alerts.

Drifts are not corroborated: their date is an estimated onset weeks before the
alarm, not a day on which another source can be checked (their fields name only
their own source).
"""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd

from tracker.config import Settings
from tracker.detect.corroborate import AGREES, NO_DATA, SILENT, judge, lookback_days
from tracker.detect.engine import severity
from tracker.detect.settings import DetectSettings
from tracker.store import ranges as range_store
from tracker.store.core import Store

#: The alert fields corroboration sets (besides ``sources_agreeing``), in record order.
FIELDS: tuple[str, ...] = ("sources_seen", "sources_silent", "sources_no_data",
                           "possible_source_error")
_SEP = ", "


def corroborate(store: Store, found: pd.DataFrame, settings: Settings, *,
                through: date | None = None, known_at: datetime | None = None
                ) -> pd.DataFrame:
    """``sources_agreeing`` and :data:`FIELDS` for alert rows (index of ``found``).

    ``found`` has the detector's columns plus ``series_id``, ``source_id`` and
    ``source``. Only values of days up to ``through`` (the last day judged: a replay
    of a past day must not see later data) and, with ``known_at``, collected by
    then are read.
    """
    out = pd.DataFrame({"sources_agreeing": 1, "sources_seen": found["source"].astype(str),
                        "sources_silent": None, "sources_no_data": None,
                        "possible_source_error": False}, index=found.index)
    moves = found[~found["kind"].astype(str).str.startswith("drift")]
    if moves.empty:
        return out
    days = settings.alerts.corroboration_days
    back = np.timedelta64(lookback_days(settings.detect, days), "D")
    day = moves["date"].to_numpy("datetime64[D]")
    last = day + np.timedelta64(days, "D")
    if through is not None:
        last = np.minimum(last, np.datetime64(through, "D"))
    wanted = pd.DataFrame({"alert": np.arange(len(moves)),
                           "series_id": moves["series_id"].to_numpy(dtype=np.int64),
                           "other_than": moves["source_id"].to_numpy(dtype=np.int64),
                           "first": day - back, "last": last})
    values = range_store.values_in_ranges(store, wanted, known_at=known_at)
    wanted["first"] = wanted["first"].to_numpy("datetime64[D]").astype(np.int64)
    wanted["last"] = wanted["last"].to_numpy("datetime64[D]").astype(np.int64)
    near = wanted.merge(values, on="series_id")
    near = near[(near["source_id"] != near["other_than"]) & (near["day"] >= near["first"])
                & (near["day"] <= near["last"])]
    if near.empty:
        return out
    pair = near["alert"].to_numpy(dtype=np.int64) * np.int64(2**31) \
        + near["source_id"].to_numpy(dtype=np.int64)
    pairs, first, case = np.unique(pair, return_index=True, return_inverse=True)
    alert_of = pairs // np.int64(2**31)
    day_number = day.astype(np.int64)
    direction = np.sign(moves["change_pct"].to_numpy(dtype=float))
    state, _score = judge(day_number[alert_of], direction[alert_of], case,
                          near["day"].to_numpy(dtype=np.int64),
                          near["value"].to_numpy(dtype=float), settings.detect,
                          days=days, z=settings.alerts.corroboration_z)
    judged = pd.DataFrame({"alert": alert_of, "source": near["source"].to_numpy()[first],
                           "state": state}).sort_values(["alert", "source"])
    names = judged.groupby(["alert", "state"])["source"].agg(_SEP.join).unstack("state")
    names = names.reindex(index=np.arange(len(moves)), columns=[AGREES, SILENT, NO_DATA])
    counts = judged.groupby(["alert", "state"]).size().unstack("state").reindex(
        index=np.arange(len(moves)), columns=[AGREES, SILENT], fill_value=0).fillna(0)
    own = moves["source"].astype(str).to_numpy()
    agreeing = names[AGREES].to_numpy(dtype=object)
    idx = moves.index
    out.loc[idx, "sources_seen"] = [o if pd.isna(a) else o + _SEP + a
                                    for o, a in zip(own, agreeing, strict=True)]
    out.loc[idx, "sources_silent"] = names[SILENT].where(names[SILENT].notna(), None).to_numpy()
    out.loc[idx, "sources_no_data"] = names[NO_DATA].where(names[NO_DATA].notna(),
                                                           None).to_numpy()
    out.loc[idx, "sources_agreeing"] = 1 + counts[AGREES].to_numpy(dtype=np.int64)
    out.loc[idx, "possible_source_error"] = ((counts[AGREES] == 0)
                                             & (counts[SILENT] > 0)).to_numpy()
    return out


def capped(sev: np.ndarray, possible_source_error: np.ndarray) -> np.ndarray:
    """A possible source error is at most a warning: one source alone is not a purge."""
    flag = np.asarray(possible_source_error, dtype=bool)
    return np.where(flag & (np.asarray(sev) == "critical"), "warning", sev).astype(object)


def graded(frame: pd.DataFrame, settings: DetectSettings) -> np.ndarray:
    """The severity of alert rows (kind, change_pct, score, possible_source_error):
    the detector's grading, capped for possible source errors. Computed afresh rather
    than read back, so an alert whose silent source later turns out to agree gets its
    full severity again."""
    from tracker.records import INFLATION_KINDS

    kind = frame["kind"].to_numpy(dtype=object)
    sev = severity(kind, frame["change_pct"].to_numpy(dtype=float),
                   frame["score"].to_numpy(dtype=float), settings.severity)
    # inflation alerts are graded by their own setting ([alerts] inflation_severity)
    if "severity" in frame:
        own = np.isin(kind.astype(str), list(INFLATION_KINDS))
        sev = np.where(own, frame["severity"].to_numpy(dtype=object), sev)
    flag = frame["possible_source_error"].fillna(False).to_numpy(dtype=bool) \
        if "possible_source_error" in frame else np.zeros(len(frame), dtype=bool)
    return capped(sev, flag)
