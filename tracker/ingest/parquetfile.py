"""Parquet files and datasets (``tracker export --format parquet``, or a researcher's own).

A Parquet file is recognised by its magic bytes (:func:`sniff.is_parquet`), a
dataset by the Parquet files in its folder (hive folders such as ``year=2022/``
are read through; their names are not columns here, every column tracker needs is
in the files). The columns are those of a long CSV (company, as_of or date, value
or count; metric, source and collected_at optional) and go through the very same
validation as a CSV's cells: they are turned into the text a CSV would hold
(dates ``YYYY-MM-DD``, UTC times with a ``Z``), so a bad value is rejected with
the same sentence, and ``collected_at`` is kept, so an export imported into a new
database gives back the same observations. A row's "line" is its position in the
dataset (1-based, files in path order).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tracker.errors import InputError
from tracker.ingest import sniff
from tracker.ingest.csvfile import COLLECTED_COL, ParsedFile, validate
from tracker.parquet import require_pyarrow
from tracker.records import DEFAULT_METRIC

_COMPANY = ("company", "company_id", "company_name")
_DATE = ("as_of", "date", "day")
_COUNT = ("value", "count", "employees", "headcount")


def _pick(names: list[str], wanted: tuple[str, ...]) -> str | None:
    return next((n for n in wanted if n in names), None)


def _text(col: pd.Series, kind: str) -> pd.Series:
    """A column as the strings a CSV would hold; missing values become empty cells."""
    if kind == "date" and pd.api.types.is_datetime64_any_dtype(col):
        out = col.dt.strftime("%Y-%m-%d")
    elif kind == "time" and pd.api.types.is_datetime64_any_dtype(col):
        stamps = col.dt.tz_convert("UTC").dt.tz_localize(None) if col.dt.tz is not None else col
        out = stamps.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    else:
        out = col.astype(object).where(col.notna(), None).map(
            lambda v: "" if v is None else str(v))
    return out.fillna("").astype(object)


def read_frame(path: Path) -> pd.DataFrame:
    """Every row of a Parquet file or dataset folder as a DataFrame (pyarrow types)."""
    require_pyarrow()
    import pyarrow as pa
    import pyarrow.dataset as ds

    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    files = sniff.parquet_files(path) if path.is_dir() else [path]
    if not files:
        raise InputError(f"{path}: no Parquet files in the folder")
    try:
        table = ds.dataset([str(f) for f in files], format="parquet").to_table()
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        detail = str(exc).strip().splitlines()[0]
        raise InputError(f"{path}: not a readable Parquet dataset ({detail}); its files "
                         "must share one schema") from exc
    # dates as datetime64 (not one Python object per row), formatted in one call;
    # integers with a missing value stay integers (not floats spelled '576562.0')
    ints = {t: pd.Int64Dtype() for t in (pa.int8(), pa.int16(), pa.int32(), pa.int64(),
                                          pa.uint8(), pa.uint16(), pa.uint32())}
    return table.to_pandas(date_as_object=False, types_mapper=ints.get)


def parse_parquet(path: Path, *, metric: str | None = None, source: str | None = None
                  ) -> ParsedFile:
    """Read and validate a Parquet file or dataset like a long CSV; nothing is written."""
    raw_frame = read_frame(path)
    names = [str(c) for c in raw_frame.columns]
    ccol, dcol, vcol = _pick(names, _COMPANY), _pick(names, _DATE), _pick(names, _COUNT)
    missing = [what for what, col in (("company", ccol), ("as_of", dcol), ("value", vcol))
               if col is None]
    if missing:
        raise InputError(f"{path}: no {', '.join(missing)} column (columns: {', '.join(names)}); "
                         "a Parquet import needs company, as_of and value")
    assert ccol and dcol and vcol
    raw = pd.DataFrame({ccol: _text(raw_frame[ccol], "name"),
                        dcol: _text(raw_frame[dcol], "date"),
                        vcol: _text(raw_frame[vcol], "count")})
    for col in ("metric", "source"):
        if col in names:
            raw[col] = _text(raw_frame[col], "name")
    if COLLECTED_COL in names:
        raw[COLLECTED_COL] = _text(raw_frame[COLLECTED_COL], "time")
    lines = pd.Series(np.arange(len(raw)) + 1, index=raw.index)
    frame = pd.DataFrame({
        "company": raw[ccol].str.strip(),
        "metric": raw["metric"] if "metric" in raw and metric is None
        else (metric or DEFAULT_METRIC),
        "source": raw["source"] if "source" in raw and source is None else (source or "parquet"),
    }, index=raw.index)
    parsed = validate(path, "parquet", raw, lines, frame, raw[dcol], raw[vcol], dcol, vcol,
                      collected=raw.get(COLLECTED_COL))
    if "company_name" in names and ccol != "company_name":
        named = (raw_frame.loc[:, [ccol, "company_name"]].dropna()
                 .drop_duplicates(ccol, keep="last"))
        parsed.company_names = dict(zip(named[ccol].astype(str),
                                        named["company_name"].astype(str), strict=True))
    return parsed
