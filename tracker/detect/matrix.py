"""Turning a dates x series matrix into per-series observation sequences.

Detection works in observation order rather than calendar order: a daily series
with holes and a monthly provider export are then the same problem (each change is
judged against the gap it spans), and trailing windows count observations, so a
monthly series gets a year of history where a daily one gets two months.
The "packed" layout keeps this vectorized: column c holds series c's observations
pushed to the top, padded with NaN, with a parallel array of their day numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Day number used for padding; later than any real day and safe to subtract from.
PAD_DAY = np.int64(2**40)
#: Counts are logged after flooring at this, so a glitch to 0 is a finite (huge) drop.
LOG_FLOOR = 0.5


def day_numbers(index: pd.Index) -> np.ndarray:
    """Days since 1970-01-01 as int64; the detector's only notion of time."""
    return np.asarray(pd.DatetimeIndex(index).values.astype("datetime64[D]").astype(np.int64))


def to_timestamps(days: np.ndarray) -> pd.DatetimeIndex:
    """Inverse of :func:`day_numbers` (NaT where the input is the padding day)."""
    arr = np.asarray(days, dtype=np.int64)
    out = arr.astype("datetime64[D]").astype("datetime64[ns]")
    out[arr >= PAD_DAY] = np.datetime64("NaT")
    return pd.DatetimeIndex(out)


def log_counts(values: np.ndarray) -> np.ndarray:
    """Log of counts; negative or non-finite counts are treated as missing."""
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.log(np.maximum(values, LOG_FLOOR))  # NaN stays NaN, inf becomes inf
        out[~np.isfinite(out) | (values < 0)] = np.nan
    return out


def week_start(days: np.ndarray) -> np.ndarray:
    """Monday on or before each day (1970-01-05 was a Monday): the stats anchor."""
    return days - ((days - 4) % 7)


@dataclass
class Packed:
    """Observations of every series pushed to the top of its column.

    ``y`` are (possibly seasonally adjusted) log counts, ``value`` the raw counts,
    ``day`` the day numbers (PAD_DAY below the last observation), ``count`` the number
    of observations per column.
    """

    y: np.ndarray
    value: np.ndarray
    day: np.ndarray
    count: np.ndarray

    @property
    def n(self) -> int:
        return int(self.y.shape[0])


def pack(y_cal: np.ndarray, v_cal: np.ndarray, days: np.ndarray, tail: int | None = None) -> Packed:
    """Pack calendar arrays (rows = ``days``) into observation order.

    Without ``tail`` observations are pushed to the top (padding below, day PAD_DAY).
    With ``tail`` only the last ``tail`` observations of each series are kept and
    pushed to the bottom (padding above, day -PAD_DAY), so every series' latest
    observation sits on the last row: what an incremental run looks at.
    """
    valid = ~np.isnan(y_cal)
    count = valid.sum(axis=0).astype(np.int64)
    if tail is None:
        order = np.argsort(~valid, axis=0, kind="stable")
        rows = int(count.max()) if count.size else 0
        order = order[:rows]
        pad = np.arange(rows)[:, None] >= count[None, :]
        pad_day = PAD_DAY
    else:
        order = np.argsort(valid, axis=0, kind="stable")[-tail:]
        count = np.minimum(count, tail)
        rows = order.shape[0]
        pad = np.arange(rows)[:, None] < (rows - count)[None, :]
        pad_day = -PAD_DAY
    y = np.take_along_axis(y_cal, order, axis=0)
    value = np.take_along_axis(v_cal, order, axis=0)
    day = days[order]
    y[pad] = np.nan
    value[pad] = np.nan
    day[pad] = pad_day
    return Packed(y=y, value=value, day=day, count=count)


def is_real(day: np.ndarray) -> np.ndarray:
    """True where a packed cell holds an observation rather than padding."""
    return np.abs(day) < PAD_DAY


def rows_at_or_after(day: np.ndarray, cols: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """First packed row of column ``cols[k]`` whose day is >= ``targets[k]``, for every k.

    Columns of ``day`` are sorted, so offsetting column c by c * BIG makes one flat
    sorted array: a single vectorized searchsorted answers all the questions.
    """
    n, m = day.shape
    big = np.int64(2**42)
    flat = (day + np.arange(m, dtype=np.int64)[None, :] * big).T.ravel()
    pos = np.searchsorted(flat, targets + cols * big, side="left")
    return pos - cols * n
