"""Cell-level parsing of counts and dates, as whole-column array operations.

Kept apart from the layout logic in csvfile.py because these rules (what a count
or a day may look like) are the contract every import path shares, and they are
where speed matters: each runs once over a million cells.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from tracker.counts import MAX_COUNT, SEPARATOR_CHARS

SEPARATORS = re.compile(f"[{SEPARATOR_CHARS}]")
#: A count written with thousands separators: groups of exactly three digits, one
#: separator throughout ("1,234", "1 234 567", "1'234"), optionally ".0". "12,5" (a
#: decimal comma) and "1,2,3" do not match. Character classes, not escapes, so the
#: pattern means the same to RE2 (pyarrow strings) and to Python's re.
GROUPED = (
    r"\d{1,3}(?:"
    + "|".join(f"(?:[{c}]\\d{{3}})+" for c in SEPARATOR_CHARS)
    + r")(?:\.\d+)?"
)
#: A date cell: YYYY-MM-DD, optionally followed by a time part (ignored).
DATE_SHAPE = r"\d{4}-\d{2}-\d{2}(?:[T ].*)?"

_SCIENTIFIC = re.compile(r"\d[eE][+-]?\d")


def scientific(raw: pd.Series) -> np.ndarray:
    """Cells written in scientific notation ("1.25E+06").

    A spreadsheet writes a large count that way after rounding it to a few digits, so
    the number it stands for is not the count that was exported: refused, never read.
    """
    cells = raw.to_numpy(dtype=object, na_value="")
    # One search over the joined column first: the common file has no such cell, and a
    # per-cell regex costs as much as parsing the numbers.
    joined = "\n".join(cells)
    if ("e" not in joined and "E" not in joined) or not _SCIENTIFIC.search(joined):
        return np.zeros(len(cells), dtype=bool)
    return np.fromiter((_SCIENTIFIC.search(c) is not None for c in cells), bool, len(cells))


def parse_counts(raw: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values, a bad-mask and a too-large mask (a subset of bad).

    Counts are whole numbers >= 0, optionally with thousands separators in groups
    of three, never in scientific notation (see :func:`scientific`). Plain digits
    take the fast path; only cells that fail it go through the grouping check. Only
    valid cells are cast to int64.
    """
    numbers = pd.to_numeric(raw, errors="coerce").to_numpy(dtype="float64", na_value=np.nan,
                                                           copy=True)
    numbers[scientific(raw)] = np.nan
    retry = np.flatnonzero(np.isnan(numbers))
    if len(retry):
        cells = raw.iloc[retry].str.strip()
        grouped = cells.str.fullmatch(GROUPED).to_numpy(dtype=bool, na_value=False)
        if grouped.any():
            cleaned = cells[grouped].str.replace(SEPARATORS, "", regex=True)
            numbers[retry[grouped]] = pd.to_numeric(cleaned, errors="coerce").to_numpy(
                dtype="float64", na_value=np.nan)
    finite = np.isfinite(numbers)
    whole = np.zeros(len(numbers), dtype=bool)
    seen = numbers[finite]
    whole[finite] = (seen >= 0) & (seen == np.round(seen))
    too_large = np.zeros(len(numbers), dtype=bool)
    too_large[whole] = numbers[whole] > MAX_COUNT
    valid = whole & ~too_large
    values = np.zeros(len(numbers), dtype="int64")
    values[valid] = numbers[valid].astype("int64")
    # float64 is exact only up to 2**53: read the (absurd) counts above that as integers.
    near = np.flatnonzero(valid & (numbers >= 2.0**53))
    if len(near):
        exact = pd.to_numeric(raw.iloc[near].str.replace(SEPARATORS, "", regex=True),
                              errors="coerce")
        if exact.dtype.kind in "iu":
            ints = exact.to_numpy()
            big = ints > MAX_COUNT
            too_large[near[big]] = True
            values[near[big]] = 0
            values[near[~big]] = ints[~big].astype("int64")
    return values, ~whole | too_large, too_large


#: Days the store can hold: it reads dates as nanosecond timestamps.
FIRST_DAY = pd.Timestamp.min.ceil("D")
LAST_DAY = pd.Timestamp.max.floor("D")


def parse_dates(raw: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """The calendar day as written: the leading YYYY-MM-DD, any time or offset ignored.

    Returns the days, a bad mask and an out-of-range mask (a subset of bad). Each
    distinct string is checked once (a file repeats each date many times).
    """
    codes, uniques = pd.factorize(raw)
    text = pd.Series(uniques, dtype="str").str.strip()
    shaped = text.str.fullmatch(DATE_SHAPE).to_numpy(dtype=bool, na_value=False)
    days = pd.to_datetime(text.str.slice(0, 10), format="%Y-%m-%d", errors="coerce")
    days = days.where(shaped)
    far = ((days < FIRST_DAY) | (days > LAST_DAY)).to_numpy()
    # A trailing entry for code -1 (a missing cell, should one ever get through).
    days = np.append(days.where(~far).to_numpy(), np.datetime64("NaT"))
    far = np.append(far, False)[codes]
    parsed = pd.Series(days[codes], index=raw.index)
    return parsed, parsed.isna().to_numpy(), far
