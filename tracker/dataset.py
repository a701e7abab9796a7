"""Detection straight from a Parquet dataset, without a store.

A researcher with years of a million companies' counts as a Parquet dataset (``tracker
export --format parquet``, or their own with the columns a Parquet import takes) can
replay them without importing 10^9 rows into a database first: :func:`detect_dataset`
judges the dataset's series with the detection code every other path runs, on the
configured engine. On ``engine = "dask"`` each task reads only its own companies
(:func:`read_part`): the dataset is split into ranges of company keys, and a range
filter lets pyarrow skip every row group whose statistics lie outside it, so a task
reads its share of the files and no process holds the whole matrix.

Why ranges of company keys, not series ids: a dataset has no ids, and company keys
are what its files are sorted by (tracker's export sorts each file by metric,
company, source, day), so the row groups' min/max statistics (the files' footers,
read without touching the data) give the cut points. A company's rows all fall in
one range whatever the statistics say (the filter is exact; the statistics only
choose where to cut), so a range is a partition of series as the store's id ranges
are.

The values are those the store would hold after ``tracker import DIR``: the latest
per (company, metric, source, day), by ``collected_at`` when the dataset has it (an
export with ``--revisions``), else the dataset's last row of the cell; metric and
source default as an import's do. The checks are the ones detection needs (every
row has a company, day and value; no count is negative); ``tracker import`` still
reports every bad row with its line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tracker.detect import detect
from tracker.detect.engine import empty_frame
from tracker.detect.settings import DetectSettings
from tracker.errors import InputError
from tracker.ingest import sniff
from tracker.ingest.parquetfile import _COMPANY, _COUNT, _DATE, _pick
from tracker.parquet import require_pyarrow
from tracker.records import DEFAULT_METRIC
from tracker.store.slices import Slice

if TYPE_CHECKING:
    import pyarrow.dataset as pads

KEY_COLUMNS = ["company", "metric", "source"]
#: a Parquet import's source when the dataset has no source column
DEFAULT_SOURCE = "parquet"
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class Part:
    """The companies with keys in [lo, hi) (None: unbounded on that side)."""

    lo: str | None = None
    hi: str | None = None


@dataclass(frozen=True)
class Columns:
    """Which of a dataset's columns hold what detection reads."""

    company: str
    day: str
    value: str
    metric: str | None
    source: str | None
    collected: str | None


@dataclass(frozen=True)
class PartSlice:
    """A part's latest values (series ids are its columns, in key order) and each
    column's (company, metric, source)."""

    slice: Slice
    keys: pd.DataFrame


def _files(path: Path) -> list[Path]:
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    files = sniff.parquet_files(path) if path.is_dir() else [path]
    if not files or (path.is_file() and not sniff.is_parquet(path)):
        raise InputError(f"{path}: no Parquet files in the folder" if path.is_dir()
                         else f"{path}: not a Parquet file")
    return files


def open_dataset(path: str | Path) -> tuple[pads.Dataset, Columns, list[Path]]:
    """The dataset at ``path`` (a file or a folder of files), and its columns."""
    require_pyarrow()
    import pyarrow as pa
    import pyarrow.dataset as ds

    path = Path(path)
    files = _files(path)
    try:
        dataset = ds.dataset([str(f) for f in files], format="parquet")
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        detail = str(exc).strip().splitlines()[0]
        raise InputError(f"{path}: not a readable Parquet dataset ({detail}); its files "
                         "must share one schema") from exc
    names = list(dataset.schema.names)
    ccol, dcol, vcol = _pick(names, _COMPANY), _pick(names, _DATE), _pick(names, _COUNT)
    missing = [what for what, col in (("company", ccol), ("as_of", dcol), ("value", vcol))
               if col is None]
    if missing:
        raise InputError(f"{path}: no {', '.join(missing)} column (columns: "
                         f"{', '.join(names)}); detection from a dataset needs company, "
                         "as_of and value")
    assert ccol and dcol and vcol
    types = dataset.schema
    for col in (ccol, "metric", "source"):
        if col in names and not _is_text(types.field(col).type):
            raise InputError(f"{path}: column {col} is {types.field(col).type}, not text "
                             "(tracker import DIR reads other types as text)")
    if not (pa.types.is_date(types.field(dcol).type) or pa.types.is_timestamp(
            types.field(dcol).type) or _is_text(types.field(dcol).type)):
        raise InputError(f"{path}: column {dcol} is {types.field(dcol).type}, not a date")
    if "collected_at" in names and not (pa.types.is_timestamp(types.field("collected_at").type)
                                        or pa.types.is_date(types.field("collected_at").type)):
        raise InputError(f"{path}: column collected_at is {types.field('collected_at').type}, "
                         "not a timestamp")
    if not (pa.types.is_integer(types.field(vcol).type)
            or pa.types.is_floating(types.field(vcol).type)):
        raise InputError(f"{path}: column {vcol} is {types.field(vcol).type}, not a number")
    return dataset, Columns(ccol, dcol, vcol, "metric" if "metric" in names else None,
                            "source" if "source" in names else None,
                            "collected_at" if "collected_at" in names else None), files


def _is_text(t: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _day_scalar(col_type: Any, day: date) -> Any:
    import pyarrow as pa

    if _is_text(col_type):
        return day.isoformat()
    if pa.types.is_timestamp(col_type):
        return pa.scalar(datetime(day.year, day.month, day.day, 23, 59, 59, 999999),
                         type=pa.timestamp("us", tz=col_type.tz))
    return pa.scalar(day, type=pa.date32())


def _filter(dataset: pads.Dataset, cols: Columns, part: Part, until: date | None,
            companies: list[str] | None) -> Any:
    import pyarrow.dataset as ds

    conds = []
    company = ds.field(cols.company)
    if part.lo is not None:
        conds.append(company >= part.lo)
    if part.hi is not None:
        conds.append(company < part.hi)
    if companies is not None:
        conds.append(company.isin(companies))
    if until is not None:
        conds.append(ds.field(cols.day) <= _day_scalar(dataset.schema.field(cols.day).type,
                                                       until))
    out = None
    for c in conds:
        out = c if out is None else out & c
    return out


def _day_numbers(arr: Any, where: str) -> np.ndarray:
    """Days since 1970 of a date, timestamp or ISO-text column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if _is_text(arr.type):
        try:
            arr = pc.cast(arr, pa.date32())
        except pa.ArrowInvalid as exc:
            raise InputError(f"{where}: a day is not a date (expected YYYY-MM-DD): "
                             f"{str(exc).splitlines()[0]}") from None
    elif pa.types.is_timestamp(arr.type):
        arr = pc.cast(arr, pa.timestamp("us", tz=arr.type.tz)).cast(pa.date32()) \
            if arr.type.tz is None else pc.cast(pc.local_timestamp(arr), pa.date32())
    elif arr.type != pa.date32():
        arr = pc.cast(arr, pa.date32())
    return np.asarray(arr.cast(pa.int32()), dtype=np.int64)


def _ranked(arr: Any) -> tuple[np.ndarray, np.ndarray]:
    """Each row's rank among the column's distinct strings (code point order), and those
    strings in that order: factorized by Arrow, never one Python string per row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    enc = pc.dictionary_encode(arr)
    uniques = enc.dictionary
    order = np.asarray(pc.array_sort_indices(uniques), dtype=np.int64)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank[np.asarray(enc.indices, dtype=np.int64)], \
        np.asarray(uniques.take(pa.array(order)).to_pylist(), dtype=object)


def read_part(path: str | Path, part: Part = Part(), *, until: date | None = None,
              companies: list[str] | None = None) -> PartSlice:
    """The latest value of every (company, metric, source, day) in ``part``, to ``until``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    dataset, cols, _ = open_dataset(path)
    wanted = [c for c in (cols.company, cols.day, cols.value, cols.metric, cols.source,
                          cols.collected) if c is not None]
    # one thread: a filtered scan of a few row groups was twice as fast without the
    # pool (and a Dask worker has one core to itself)
    table = dataset.to_table(columns=wanted, filter=_filter(dataset, cols, part, until,
                                                            companies), use_threads=False)
    where = f"{path}" + ("" if part == Part() else
                         f" (companies [{part.lo or ''}, {part.hi or '...'}))")
    n = table.num_rows
    if not n:
        return PartSlice(Slice(*(np.zeros(0, dtype=np.int64) for _ in range(3)),
                               np.zeros(0)), pd.DataFrame(columns=KEY_COLUMNS))
    for c in (cols.company, cols.day, cols.value):
        if table[c].null_count:
            raise InputError(f"{where}: {table[c].null_count:,} row(s) with no {c}; "
                             "drop them (`tracker import` names each row)")
    value = table[cols.value].combine_chunks()
    if pc.min(value).as_py() < 0:
        raise InputError(f"{where}: {cols.value} has negative counts; a count is 0 or more")
    names = {}
    ranks = []
    for key, col, default in (("company", cols.company, None),
                              ("metric", cols.metric, DEFAULT_METRIC),
                              ("source", cols.source, DEFAULT_SOURCE)):
        if col is None:
            ranks.append(np.zeros(n, dtype=np.int64))
            names[key] = np.asarray([default], dtype=object)
        else:
            r, u = _ranked(pc.fill_null(table[col].combine_chunks(), default or ""))
            ranks.append(r)
            names[key] = u
    sizes = [names[k].size for k in KEY_COLUMNS]
    triple = (ranks[0] * sizes[1] + ranks[1]) * sizes[2] + ranks[2]
    # hashed, not sorted: a part has ~10^4 series in ~10^7 rows
    codes, uniq = pd.factorize(triple)
    rank = np.empty(uniq.size, dtype=np.int64)
    by_key = np.argsort(uniq)
    rank[by_key] = np.arange(uniq.size)
    col, uniq = rank[codes], uniq[by_key]
    day = _day_numbers(table[cols.day].combine_chunks(), where)
    span = int(day.max() - day.min()) + 1
    cell = col * span + (day - day.min())
    keep: slice | np.ndarray = slice(None)
    if cell.size > 1 and not bool(np.all(cell[1:] > cell[:-1])):
        # stable: a file's rows are in order already, and timsort merges such runs
        unsorted = cell
        order = np.argsort(cell, kind="stable")
        cell = cell[order]
        if cols.collected is not None and bool(np.any(cell[1:] == cell[:-1])):
            # revisions: the latest collected wins (the file's last row on a tie)
            stamps = np.asarray(pc.cast(pc.cast(table[cols.collected].combine_chunks(),
                                                pa.timestamp("us", tz="UTC")), pa.int64())
                                .fill_null(np.iinfo(np.int64).min), dtype=np.int64)
            order = np.lexsort((stamps, unsorted))  # the same sorted cells
        last = np.ones(cell.size, dtype=bool)
        last[:-1] = cell[1:] != cell[:-1]
        keep = order[last]
    values = np.asarray(value.cast("float64"), dtype=np.float64)
    c = uniq // sizes[2]
    keys = pd.DataFrame({"company": names["company"][c // sizes[1]],
                         "metric": names["metric"][c % sizes[1]],
                         "source": names["source"][uniq % sizes[2]]})
    sid = col[keep]
    return PartSlice(Slice(sid, np.zeros(sid.size, dtype=np.int64), day[keep], values[keep]),
                     keys)


def _stat_date(v: Any) -> date:
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    return date.fromisoformat(str(v)[:10])


def parts(path: str | Path, size: int, *, until: date | None = None,
          companies: list[str] | None = None) -> list[Part]:
    """Ranges of about ``size`` series each (rows of ``size`` series over the dataset's
    days), cut at row-group boundaries from the files' statistics; without statistics,
    from the distinct companies (one column read)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    dataset, cols, files = open_dataset(path)
    if companies is not None:
        wanted = sorted(set(companies))
        return [Part(None if i == 0 else wanted[i], wanted[i + size] if i + size < len(wanted)
                     else None) for i in range(0, max(len(wanted), 1), size)]
    groups: list[tuple[str, int]] | None = []
    first = last = None
    for f in files:
        md = pq.ParquetFile(f).metadata
        at = {md.schema.column(i).path: i for i in range(md.num_columns)}
        for g in range(md.num_row_groups):
            rg = md.row_group(g)
            cs, ds_ = (rg.column(at[cols.company]).statistics,
                       rg.column(at[cols.day]).statistics)
            if groups is None or cs is None or not cs.has_min_max or ds_ is None \
                    or not ds_.has_min_max:
                groups = None
                break
            groups.append((str(cs.min), rg.num_rows))
            lo, hi = _stat_date(ds_.min), _stat_date(ds_.max)
            first = lo if first is None else min(first, lo)
            last = hi if last is None else max(last, hi)
    if groups:
        assert first is not None and last is not None
        days = max((min(last, until or last) - first).days + 1, 1)
        target = size * days
        groups.sort()
        cuts: list[str] = []
        rows = 0
        for key, n in groups:
            if rows >= target and (not cuts or key > cuts[-1]):
                cuts.append(key)
                rows = 0
            rows += n
    else:
        seen: set[str] = set()
        for batch in dataset.to_batches(columns=[cols.company]):
            seen.update(pc.unique(batch.column(0)).to_pylist())
        ordered = sorted(k for k in seen if k is not None)
        cuts = ordered[size::size]
    bounds: list[str | None] = [None, *cuts, None]
    return [Part(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


def first_day(path: str | Path, *, until: date | None = None,
              companies: list[str] | None = None) -> int | None:
    """The first day (day number) of the whole matrix, as a store's would start: every
    part's matrix starts there (weekly blocks and drift's grid count from it)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    dataset, cols, _ = open_dataset(path)
    lows = [pc.min(b.column(0)).as_py() for b in dataset.to_batches(
        columns=[cols.day], filter=_filter(dataset, cols, Part(), until, companies))
        if b.num_rows]
    if not lows:
        return None
    return int(_day_numbers(pa.array(lows, type=dataset.schema.field(cols.day).type),
                            str(path)).min())


def judge_part(path: str, part: Part, until: date | None, first: int, s: DetectSettings,
               companies: list[str] | None = None) -> tuple[pd.DataFrame, int]:
    """A part's verdicts over its whole history, with their company, metric and source
    (a Dask worker runs this, or the client for the local engine)."""
    ps = read_part(path, part, until=until, companies=companies)
    if not len(ps.slice):
        return _none(), 0
    from tracker.dask_engine import frame

    d = ps.slice.dense([first])
    found = detect(frame(d), s)
    at = d.series_id[found["series"].to_numpy(dtype=np.int64)]
    for k in KEY_COLUMNS:
        found[k] = ps.keys[k].to_numpy()[at]
    return found.drop(columns="series"), d.values.shape[1]


def _none() -> pd.DataFrame:
    return empty_frame().drop(columns="series").assign(
        **{c: pd.Series(dtype=object) for c in KEY_COLUMNS})


def detect_dataset(path: str | Path, s: DetectSettings, *, until: date | None = None,
                   companies: list[str] | None = None) -> tuple[pd.DataFrame, int]:
    """Every verdict over a dataset's history (to ``until``), ordered by day and keys,
    and the number of (company, metric, source) series judged. ``engine = "dask"``
    spreads the parts over the cluster; the local engine reads the dataset whole."""
    path = Path(path).resolve()
    first = first_day(path, until=until, companies=companies)
    if first is None:
        return _none(), 0
    if s.engine == "dask":
        from tracker.dask_engine import client

        ranges = parts(path, s.partition_size, until=until, companies=companies)
        one = s.model_copy(update={"workers": 1})
        with client(s) as c:
            done = c.gather(c.map(judge_part, [str(path)] * len(ranges), ranges, until=until,
                                  first=first, s=one, companies=companies, pure=False))
    else:
        done = [judge_part(str(path), Part(), until, first, s, companies)]
    found = pd.concat([f[0] for f in done], ignore_index=True)
    # the text dtype a store's keys have (a part with no verdicts has object columns)
    found[KEY_COLUMNS] = found[KEY_COLUMNS].astype(str)
    found = found.sort_values(["date", "detected_on", *KEY_COLUMNS], kind="stable")
    return found.reset_index(drop=True), sum(f[1] for f in done)
