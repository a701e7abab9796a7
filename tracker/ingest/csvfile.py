"""Reading headcount CSVs in the layouts people actually have, validated as arrays.

Three layouts are recognised from the header: long (one row per company and day),
wide (a date column and one column per company) and the Thinknum LinkedIn dataset.
Every check is a vectorized mask over the whole file, so a million-row file is
validated in well under a second, and every rejected row keeps its file line so
the error can point at it.
"""

from __future__ import annotations

import csv
import difflib
import lzma
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from tracker.errors import InputError
from tracker.ingest import sniff
from tracker.ingest.cells import (
    FIRST_DAY,
    LAST_DAY,
    MAX_COUNT,
    SEPARATORS,
    parse_counts,
    parse_dates,
    scientific,
)
from tracker.metrics import SEPARATOR, metric_reasons, with_segment
from tracker.records import DEFAULT_METRIC
from tracker.store.companies import is_blank

Layout = Literal["auto", "long", "wide", "thinknum"]

COMPANY_NAMES = ("company", "company_name", "name", "organization", "organisation", "org")
DATE_NAMES = ("date", "as_of_date", "as_of", "day", "snapshot_date")
COUNT_NAMES = (
    "count", "employees", "employee_count", "employees_on_platform", "headcount", "value",
)
THINKNUM_MARKERS = ("as_of_date", "company_name", "employees_on_platform")
#: Size of the database columns holding company ids, metric and source names.
MAX_NAME = 200
MAX_SHOWN = 20
#: A column saying, per row, when the value was learned (an ``export --revisions``
#: file has it): the alternative to one ``--collected-at`` for the whole file.
COLLECTED_COL = "collected_at"
#: A long file's column naming each row's role segment (``security``: the metric
#: ``employees:security``; empty: ``employees``), see :mod:`tracker.metrics`.
SEGMENT_COL = "segment"
TIMESTAMP_EXAMPLE = "2022-10-10T06:00:00Z"


def learned_at(text: str, now: datetime) -> datetime:
    """When a value was learned, from an ISO 8601 text, as naive UTC.

    The rule of ``--collected-at`` (:func:`tracker.workspace.parse_timestamp`: an
    offset converted to UTC, none meaning UTC, a bare date the end of that day),
    so a snapshot file, a column and the flag mean the same by the same words. Two
    additions, because a stamp here is stored for good and orders every later
    revision: a bare date of today means now (the end of the day has not come),
    and a time after ``now`` is refused, since it would hide every value collected
    until then. Raises InputError with the reason only (the caller names the place).
    """
    from tracker.workspace import parse_timestamp

    text = text.strip()
    try:
        stamp = parse_timestamp(text, "")
    except InputError:
        raise InputError(f"{text!r} is not a timestamp (expected e.g. {TIMESTAMP_EXAMPLE} "
                         "or a date, YYYY-MM-DD)") from None
    assert stamp is not None
    if len(text) == 10 and stamp.date() == now.date():
        stamp = now
    if stamp > now:
        raise InputError(f"{text!r} is in the future (now is {now:%Y-%m-%dT%H:%M:%S}Z); "
                         "a value cannot be learned before it is collected")
    return stamp


def parse_collected(cells: pd.Series, now: datetime) -> tuple[np.ndarray, np.ndarray]:
    """Each row's collected_at (datetime64, naive UTC; NaT when bad) and its reason.

    Judged once per distinct text: a snapshot file repeats one stamp on every row.
    """
    codes, uniques = pd.factorize(cells)
    stamps = np.full(len(uniques) + 1, np.datetime64("NaT"), dtype="datetime64[us]")
    why = np.full(len(uniques) + 1, "", dtype=object)
    where = f"column {COLLECTED_COL!r}"
    for i, text in enumerate(uniques):
        if not str(text).strip():
            why[i] = (f"{where}: empty; give the UTC time the value was learned "
                      f"(e.g. {TIMESTAMP_EXAMPLE})")
            continue
        try:
            stamps[i] = np.datetime64(learned_at(str(text), now), "us")
        except InputError as exc:
            why[i] = f"{where}: value {exc}"
    why[-1] = f"{where}: empty"  # code -1: a missing cell
    return stamps[codes].astype("datetime64[ns]"), why[codes]


@dataclass
class ParsedFile:
    """Rows of one file after validation, ready to resolve and write.

    ``good`` has columns company (as written), metric, source, as_of, value, line;
    ``rejects`` holds the raw fields of bad rows plus ``line`` and ``reason``.
    ``good_raw`` holds the raw fields of the good rows (row i of it is row i of
    ``good``), so rows found bad later (after company resolution) can still be saved
    as written; ``conflicts`` keeps the rows already rejected as conflicting
    duplicates (columns of ``good``), so a good row that turns out to be the same
    company and day once names are resolved is rejected with them.
    """

    path: Path
    layout: str
    good: pd.DataFrame
    rejects: pd.DataFrame
    problems: list[str] = field(default_factory=list)
    company_tags: dict[str, dict[str, str]] = field(default_factory=dict)
    company_ids: dict[str, dict[str, str]] = field(default_factory=dict)
    good_raw: pd.DataFrame | None = None
    conflicts: pd.DataFrame | None = None
    #: display names by company as written, from a ``company_name`` column beside a
    #: ``company`` id column (tracker's own export): the id stays the id
    company_names: dict[str, str] = field(default_factory=dict)


def _norm(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def _pick(columns: dict[str, str], names: tuple[str, ...], given: str | None, what: str,
          path: Path) -> str | None:
    if given is not None:
        if given in columns.values():
            return given
        if _norm(given) in columns:
            return columns[_norm(given)]
        raise InputError(
            f"{path}: no column {given!r} for the {what} (columns: {', '.join(columns.values())})"
        )
    return next((columns[n] for n in names if n in columns), None)


_READ_OPTIONS = {"dtype": str, "keep_default_na": False, "skipinitialspace": True}
#: A column after the header's last one: cells there are fields a row has too many.
EXTRA = "\x00extra"
_TOO_MANY = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_OPEN_QUOTE = re.compile(r"EOF inside string starting at row (\d+)")


def _read(path: Path, kind: sniff.FileKind, **options: object) -> pd.DataFrame:
    """pandas.read_csv with every failure turned into one line about the file."""
    try:
        return pd.read_csv(path, **_READ_OPTIONS, encoding=kind.encoding,  # type: ignore[call-overload]
                           compression=kind.compression, **options)
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"{path}: the file is empty (expected a header line)") from exc
    except pd.errors.ParserError as exc:
        raise _parser_error(path, exc) from exc
    except UnicodeDecodeError as exc:
        raise sniff.decode_error(path, kind, exc) from exc
    except (OSError, EOFError, csv.Error, lzma.LZMAError, zlib.error) as exc:
        raise sniff.read_error(path, exc) from exc
    except ValueError as exc:  # e.g. a .zip holding several files
        raise InputError(f"{path}: cannot read: {exc}") from exc


def _parser_error(path: Path, exc: pd.errors.ParserError) -> InputError:
    text = str(exc)
    if m := _TOO_MANY.search(text):
        header = int(m.group(1)) - 1  # the extra column is ours
        return InputError(
            f"{path}:{m.group(2)}: {m.group(3)} fields, the header has {header}; check the "
            "delimiter and that fields holding it are quoted"
        )
    if m := _OPEN_QUOTE.search(text):
        return InputError(
            f"{path}:{int(m.group(1)) + 1}: a quote opened here is never closed (a stray "
            '" in a field? write it as "" inside a quoted field)'
        )
    return InputError(f"{path}: not a readable CSV: {text.strip()}")


def _header_names(fields: list[str]) -> list[str]:
    """Column names as pandas gives them: blanks 'Unnamed: i', repeats 'name.1'."""
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, name in enumerate(fields):
        name = name if name.strip() else f"Unnamed: {i}"
        if name in seen:
            seen[name] += 1
            name = f"{name}.{seen[name]}"
        seen.setdefault(name, 0)
        out.append(name)
    return out


@dataclass
class RawTable:
    """A CSV as read: every field a string (``frame``), the header as written, and
    which rows had more fields than the header (``surplus``, row i of ``frame``)."""

    frame: pd.DataFrame
    header: list[str]
    surplus: np.ndarray


def read_table(path: Path) -> RawTable:
    """All fields as strings, blank lines kept so row i sits on file line i + 2.

    The compression, encoding and delimiter come from the file's bytes
    (:mod:`.sniff`). Rows with more fields than the header are not folded into an
    index column (pandas' habit) but marked, so each is a bad row of its own.
    """
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; pass the CSV files inside it")
    kind = sniff.inspect(path)
    first = sniff.first_line(path, kind)
    if not first.strip():
        raise InputError(f"{path}: the file is empty (expected a header line)")
    sep = sniff.delimiter(first)
    header = next(csv.reader([first], delimiter=sep, skipinitialspace=True), [])
    raw = _read(path, kind, sep=sep, header=None, skiprows=1,
                names=[*_header_names(header), EXTRA], skip_blank_lines=False)
    surplus = (raw.pop(EXTRA) != "").to_numpy()
    return RawTable(raw, header, surplus)


def read_raw(path: Path) -> pd.DataFrame:
    """:func:`read_table`'s fields only, for readers of small side files (labels)."""
    return read_table(path).frame


def _duplicated_columns(header: list[str]) -> list[str]:
    """Header names that appear more than once (their copies are named ``X.1``)."""
    names = pd.Series(header, dtype=object).astype(str).str.strip()
    return names[names.duplicated()].unique().tolist()


def _blank_or_header(raw: pd.DataFrame) -> np.ndarray:
    """Rows to ignore silently: empty lines and a header repeated inside the file.

    A repeated header may start with a BOM: files concatenated with ``cat`` keep
    the BOM of every part.
    """
    blank = np.ones(len(raw), dtype=bool)
    header = np.ones(len(raw), dtype=bool)
    for i, name in enumerate(raw.columns):
        col = raw[name]
        blank &= (col == "").to_numpy()
        same = col == name
        if i == 0:
            same |= col == "\ufeff" + name
        header &= same.to_numpy()
    return blank | header


def _text_columns(raw: pd.DataFrame, dcol: str) -> list[str]:
    """Columns besides the date whose cells are mostly not numbers (first 1000 rows)."""
    out = []
    sample = raw.iloc[:1000]
    for name in raw.columns:
        if name == dcol:
            continue
        cells = sample[name].str.strip()
        cells = cells[cells != ""]
        if not len(cells):
            continue
        numeric = pd.to_numeric(cells.str.replace(SEPARATORS, "", regex=True), errors="coerce")
        if numeric.isna().mean() > 0.5:
            out.append(str(name))
    return out


def parse(
    path: Path,
    *,
    layout: Layout = "auto",
    company_col: str | None = None,
    date_col: str | None = None,
    count_col: str | None = None,
    metric: str | None = None,
    source: str | None = None,
    segment: str | None = None,
) -> ParsedFile:
    """Read and validate one file; nothing touches the database here.

    ``metric`` and ``segment`` (``--metric``, ``--segment``) name the metric of every
    row; a long file may name its own in ``metric`` and ``segment`` columns instead.
    """
    table = read_table(path)
    raw = table.frame
    columns = {_norm(c): c for c in raw.columns}
    requested = layout
    if layout == "auto":
        if (columns.keys() >= set(THINKNUM_MARKERS) and company_col is None
                and count_col is None):
            layout = "thinknum"
        elif _pick(columns, COMPANY_NAMES, company_col, "company", path) is None:
            layout = "wide"
        else:
            layout = "long"
    if layout == "thinknum":
        missing = [m for m in THINKNUM_MARKERS if m not in columns]
        if missing:
            raise InputError(
                f"{path}: not a Thinknum file: no column {', '.join(missing)} "
                f"(columns: {', '.join(map(str, raw.columns))}); "
                "leave out --format thinknum to import it as a long or wide file"
            )
    lines = pd.Series(np.arange(len(raw)) + 2, index=raw.index)
    keep = ~_blank_or_header(raw)
    surplus = pd.Series(table.surplus, index=raw.index)[keep]
    raw, lines = raw[keep], lines[keep]
    if surplus.any() and layout != "long":
        raise InputError(
            f"{path}:{lines[surplus].iloc[0]}: more fields than the header's "
            f"{len(table.header)}; check the delimiter and that fields holding it are quoted"
        )
    dcol = _pick(columns, DATE_NAMES, date_col, "date", path)
    kcol = columns.get(COLLECTED_COL)
    if dcol is None:
        raise InputError(
            f"{path}: no date column found (looked for {', '.join(DATE_NAMES)}); "
            "name it with --date-col" + _did_you_mean(columns, DATE_NAMES, "date")
        )
    duplicated = _duplicated_columns(table.header)
    if layout == "wide":
        if duplicated:
            raise InputError(
                f"{path}: column {duplicated[0]!r} appears more than once in the header; "
                "in a wide file each company needs exactly one column"
            )
        if requested == "auto":
            text = _text_columns(raw.drop(columns=[kcol]) if kcol else raw, dcol)
            if text:
                raise InputError(
                    f"{path}: no company column found (looked for {', '.join(COMPANY_NAMES)}); "
                    "name it with --company-col, or use --format wide for one column per "
                    f"company (column {text[0]!r} holds text, not counts)"
                    + _did_you_mean(columns, COMPANY_NAMES, "company")
                )
        return _parse_wide(path, raw, lines, dcol, with_segment(metric, segment), source, kcol)
    if layout == "thinknum":
        _check_unique(path, duplicated, [columns[m] for m in columns if m in (
            *THINKNUM_MARKERS, "followers_count", "link", "industry", COLLECTED_COL)])
        return _parse_thinknum(path, raw, lines, columns, source)
    ccol = _pick(columns, COMPANY_NAMES, company_col, "company", path)
    vcol = _pick(columns, COUNT_NAMES, count_col, "count", path)
    if ccol is None or vcol is None:
        what = "company" if ccol is None else "count"
        names = COMPANY_NAMES if ccol is None else COUNT_NAMES
        raise InputError(
            f"{path}: no {what} column found (looked for {', '.join(names)}); "
            f"name it with --{what}-col" + _did_you_mean(columns, names, what)
        )
    scol = columns.get("source")
    mcol = columns.get("metric")
    gcol = columns.get(SEGMENT_COL)
    _check_unique(path, duplicated, [c for c in (ccol, dcol, vcol, scol, mcol, gcol, kcol) if c])
    metrics, where = _row_metrics(raw, mcol, gcol, metric, segment)
    frame = pd.DataFrame({
        "company": _as_written(raw[ccol]),
        "metric": metrics,
        "source": _as_written(raw[scol]) if scol and source is None else (source or "csv"),
    }, index=raw.index)
    parsed = validate(path, "long", raw, lines, frame, raw[dcol], raw[vcol], dcol, vcol,
                      surplus=surplus.to_numpy(), fields=len(table.header),
                      collected=raw[kcol] if kcol else None, metric_where=where)
    ncol = columns.get("company_name")
    if ncol is not None and ncol != ccol:  # an export: ids in 'company', names beside
        named = pd.DataFrame({"id": frame["company"], "name": _as_written(raw[ncol])})
        named = named[(named["id"] != "") & (named["name"] != "")]
        parsed.company_names = dict(named.drop_duplicates("id", keep="last").itertuples(
            index=False, name=None))
    return parsed


def _row_metrics(raw: pd.DataFrame, mcol: str | None, gcol: str | None, metric: str | None,
                 segment: str | None) -> tuple[pd.Series | str, str]:
    """Each row's metric in a long file, and where it came from (for a bad one's reason).

    The metric is ``--metric``, else the ``metric`` column, else ``employees``; a
    ``segment`` cell (unless ``--segment`` is given) makes it ``metric:segment``, an
    empty one leaves it whole, so one file can hold a company's count and its
    role segments side by side.
    """
    if segment is not None:
        return with_segment(metric, segment) or DEFAULT_METRIC, "--segment"
    base: pd.Series | str = (_as_written(raw[mcol]) if mcol and metric is None
                             else (metric or DEFAULT_METRIC))
    where = f"column {mcol!r}" if mcol and metric is None else (
        "--metric" if metric else "the default metric")
    if gcol is None:
        return base, where
    cells = _as_written(raw[gcol])
    joined = pd.Series(np.where(cells == "", base, base + SEPARATOR + cells), index=raw.index,
                       dtype=object)
    return joined, f"column {gcol!r}" if mcol is None or metric else f"columns {mcol!r}/{gcol!r}"


_NEUTRALIZED = re.compile(r"^'(?=[=+\-@\t\r])")


def _as_written(cells: pd.Series) -> pd.Series:
    """Names stripped, and the quote tracker's CSV writer puts before a formula-like
    name (``'=X``, see tracker.output) taken off again, so an exported or rejected
    file imports back under the same names."""
    return cells.str.strip().str.replace(_NEUTRALIZED, "", regex=True)


def _did_you_mean(columns: Mapping[str, str], names: tuple[str, ...], what: str) -> str:
    """'; did you mean ...' when a header is a near miss of a known name ('Cuont')."""
    for key, original in columns.items():
        close = difflib.get_close_matches(key, names, n=1, cutoff=0.75)
        if close:
            return (f"; column {original!r} looks like a misspelt {close[0]!r}: rename it, "
                    f"or pass --{what}-col {original!r}")
    return ""


def _check_unique(path: Path, duplicated: list[str], used: list[str]) -> None:
    clash = [c for c in used if c in duplicated]
    if clash:
        raise InputError(
            f"{path}: column {clash[0]!r} appears more than once in the header; "
            "rename one of them so it is clear which to read"
        )


def _conflict_reasons(rows: pd.DataFrame, key: list[str],
                      label: Callable[[pd.DataFrame], list[str]]) -> pd.Series:
    """Reasons for rows sharing ``key`` with different values, indexed like ``rows``.

    ``rows`` needs value and line; ``label`` names the company and day of the
    conflicting rows for the message. Only duplicated keys are grouped, so this is
    cheap when the file has none.
    """
    dup = rows.duplicated(key, keep=False)
    if not dup.any():
        return pd.Series([], dtype=object)
    candidates = rows[dup]
    clashes = candidates.groupby(key, sort=False)["value"].transform("nunique") > 1
    conflicted = candidates[clashes]
    if conflicted.empty:
        return pd.Series([], dtype=object)
    listing = conflicted.groupby(key, sort=False).apply(
        lambda g: ", ".join(f"{v} (line {ln})" for v, ln in zip(g["value"], g["line"],
                                                               strict=True)),
        include_groups=False,
    )
    values = conflicted.set_index(key).index.map(listing)
    return pd.Series(
        [f"conflicting duplicate rows for {what}: values {lst}"
         for what, lst in zip(label(conflicted), values, strict=True)],
        index=conflicted.index, dtype=object,
    )


def _blank(names: pd.Series) -> np.ndarray:
    """Mask of names with nothing visible (spaces, zero-width or control characters).

    Judged once per distinct name, by the rule that makes ids
    (:func:`tracker.store.companies.is_blank`): a name that passes here always
    gets a company id.
    """
    distinct = names.unique()
    blank = [n for n in distinct if is_blank(n)]
    return names.isin(blank).to_numpy() if blank else np.zeros(len(names), dtype=bool)


#: C0 and C1 control characters (TAB included: it has no place in a name either).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _controls(names: pd.Series) -> np.ndarray:
    """Mask of names holding a control character, judged once per distinct name.

    A NUL cannot be stored in PostgreSQL, and an escape sequence in a name would
    rewrite the terminal of whoever lists the companies.
    """
    distinct = names.unique()
    bad = [n for n in distinct if isinstance(n, str) and _CONTROL.search(n)]
    return names.isin(bad).to_numpy() if bad else np.zeros(len(names), dtype=bool)


def validate(
    path: Path, layout: str, raw: pd.DataFrame, lines: pd.Series, frame: pd.DataFrame,
    dates: pd.Series, counts: pd.Series, dcol: str, vcol: str | pd.Series,
    surplus: np.ndarray | None = None, fields: int | None = None,
    collected: pd.Series | None = None, now: datetime | None = None,
    metric_where: str = "column 'metric'",
) -> ParsedFile:
    """Every rule of a good row as a mask; rows failing one keep their line and reason.

    ``surplus`` marks rows with more fields than the header: their cells cannot be
    trusted to sit in the right columns, so they are bad whatever they hold.
    ``collected`` holds each row's collected_at cell, when the file has that
    column: ``good`` then has a ``collected_at`` column, and a day may appear once
    per collected_at (a file of revisions), not only once. ``metric_where`` names
    where the metric came from (a column, ``--metric``) in a bad metric's reason.
    """
    as_of, bad_date, far_date = parse_dates(dates)
    values, bad_count, too_large = parse_counts(counts)
    sci = scientific(counts) & bad_count
    frame = frame.assign(as_of=as_of.to_numpy(), value=values, line=lines.to_numpy())
    reason = np.full(len(frame), "", dtype=object)
    vnames = vcol if isinstance(vcol, pd.Series) else pd.Series(vcol, index=frame.index)
    too_long = f"longer than {MAX_NAME} characters"
    for mask, text in (
        (frame["source"].str.len().gt(MAX_NAME).to_numpy(),
         f"column 'source': source name {too_long}"),
        (frame["source"].eq("").to_numpy(), "column 'source': empty source name"),
        (bad_count & ~too_large & ~sci,
         "{col}: value {value} is not a whole number >= 0"),
        (too_large, f"{{col}}: value {{value}} is too large for a count (at most {MAX_COUNT:,})"),
        (bad_date & ~far_date,
         f"column {dcol!r}: value {{}} is not a date (expected YYYY-MM-DD)"),
        (far_date, f"column {dcol!r}: value {{}} is outside the supported dates "
                   f"({FIRST_DAY:%Y-%m-%d} to {LAST_DAY:%Y-%m-%d})"),
        (frame["company"].str.len().gt(MAX_NAME).to_numpy(),
         f"column 'company': company name {too_long}"),
        (_blank(frame["company"]), "column 'company': empty company name"),
        *[(_controls(frame[col]), f"column {col!r}: {what} name holds a control character "
           "(such as NUL or a terminal escape); remove it")
          for col, what in (("company", "company"), ("source", "source"))],
        (np.zeros(len(frame), dtype=bool) if surplus is None else surplus,
         f"more fields than the header's {fields or len(raw.columns)}; check "
         "the delimiter and that fields holding it are quoted"),
        (sci,
         "{col}: value {value} is in scientific notation; write the count in full "
         "(a spreadsheet rounds large numbers written this way)"),
    ):
        if not mask.any():
            continue
        idx = np.flatnonzero(mask)
        if "{col}" in text:
            reason[idx] = [
                text.format(col=f"column {c!r}", value=repr(v))
                for c, v in zip(vnames.iloc[idx], counts.iloc[idx], strict=True)
            ]
        elif "{}" in text:
            reason[idx] = [text.format(repr(v)) for v in dates.iloc[idx]]
        else:
            reason[idx] = text
    bad_metric = metric_reasons(frame["metric"], metric_where)
    reason = np.where((reason == "") & (bad_metric != ""), bad_metric, reason)
    key = ["company_key", "metric", "source", "as_of"]
    if collected is not None:
        from tracker.store.companies import now_utc

        stamps, why = parse_collected(collected, now or now_utc())
        frame = frame.assign(collected_at=stamps)
        reason = np.where(why != "", why, reason)
        key.append("collected_at")
    ok = reason == ""
    candidates = frame[ok].assign(company_key=frame.loc[ok, "company"].str.casefold())
    clashing = _conflict_reasons(candidates, key, lambda rows: [
        f"{c!r} on {d:%Y-%m-%d}" for c, d in zip(rows["company"], rows["as_of"], strict=True)
    ])
    conflicts = frame.iloc[:0]
    if len(clashing):
        reason[frame.index.get_indexer(clashing.index)] = clashing.to_numpy()
        conflicts = frame.loc[clashing.index]
        ok = reason == ""
    bad = ~ok
    # a rejects file imported again has these columns already: they are replaced
    rejects = raw[bad].drop(columns=["line", "reason"], errors="ignore")
    rejects.insert(0, "line", frame["line"].to_numpy()[bad])
    rejects["reason"] = reason[bad]
    problems = [f"{path}:{ln}: {why}" for ln, why in zip(rejects["line"], rejects["reason"],
                                                        strict=True)]
    good = frame[ok].reset_index(drop=True)
    good_raw = raw if ok.all() else raw[ok]
    return ParsedFile(path, layout, good, rejects.reset_index(drop=True), problems,
                      good_raw=good_raw, conflicts=conflicts.reset_index(drop=True))


def _free_name(taken: pd.Index, name: str) -> str:
    while name in taken:
        name += "_"
    return name


def _parse_wide(path: Path, raw: pd.DataFrame, lines: pd.Series, dcol: str,
                metric: str | None, source: str | None, kcol: str | None = None) -> ParsedFile:
    companies = [c for c in raw.columns if c not in (dcol, kcol)]
    if not companies:
        raise InputError(f"{path}: wide layout needs one column per company besides {dcol!r}")
    # Melt into private names: a company may be called "company" or "count".
    cname, vname = _free_name(raw.columns, "__company__"), _free_name(raw.columns, "__count__")
    long = raw.melt(id_vars=[dcol, *([kcol] if kcol else [])], value_vars=companies,
                    var_name=cname,
                    value_name=vname, ignore_index=False)
    long = long[long[vname].str.strip() != ""]
    unnamed = long[cname].astype(str).str.fullmatch(r"Unnamed: \d+")
    if unnamed.any():
        position = raw.columns.get_loc(long[cname][unnamed].iloc[0])
        raise InputError(
            f"{path}: column {position + 1} has values but no name in the header; "
            "in a wide file each column is named after its company"
        )
    long_lines = lines.loc[long.index]
    long = long.reset_index(drop=True)
    long_lines = long_lines.reset_index(drop=True)
    frame = pd.DataFrame({
        "company": long[cname].astype(str).str.strip(),
        "metric": metric or DEFAULT_METRIC,
        "source": source or "csv",
    })
    cells = pd.DataFrame({"date": long[dcol], "company": long[cname].astype(str),
                          "count": long[vname],
                          **({COLLECTED_COL: long[kcol]} if kcol else {})})
    return validate(path, "wide", cells, long_lines, frame, long[dcol], long[vname], dcol,
                    long[cname].astype(str), collected=long[kcol] if kcol else None,
                    metric_where="--metric")


def _parse_thinknum(path: Path, raw: pd.DataFrame, lines: pd.Series, columns: dict[str, str],
                    source: str | None) -> ParsedFile:
    """Thinknum's LinkedIn dataset: two metrics per row, industry as a tag."""
    metrics = [("employees", columns["employees_on_platform"])]
    if "followers_count" in columns:
        metrics.append(("followers", columns["followers_count"]))
    parts = []
    for metric, col in metrics:
        rows = raw[raw[col].str.strip() != ""]
        frame = pd.DataFrame({
            "company": rows[columns["company_name"]].str.strip(),
            "metric": metric,
            "source": source or "thinknum",
        }, index=rows.index)
        kcol = columns.get(COLLECTED_COL)
        parts.append(validate(path, "thinknum", rows, lines.loc[rows.index], frame,
                              rows[columns["as_of_date"]], rows[col], columns["as_of_date"], col,
                              collected=rows[kcol] if kcol else None))
    good = pd.concat([p.good for p in parts], ignore_index=True)
    rejects = (pd.concat([p.rejects for p in parts], ignore_index=True)
               .sort_values("line", kind="stable").reset_index(drop=True))
    problems = [f"{path}:{ln}: {why}" for ln, why in zip(rejects["line"], rejects["reason"],
                                                        strict=True)]
    result = ParsedFile(
        path, "thinknum", good, rejects, problems,
        good_raw=pd.concat([p.good_raw for p in parts if p.good_raw is not None]),
        conflicts=pd.concat([p.conflicts for p in parts if p.conflicts is not None],
                            ignore_index=True),
    )
    latest = raw.drop_duplicates(columns["company_name"], keep="last")
    names = latest[columns["company_name"]].str.strip()
    if "industry" in columns:
        result.company_tags = {
            n: {"industry": i.strip()}
            for n, i in zip(names, latest[columns["industry"]], strict=True) if n and i.strip()
        }
    if "link" in columns:
        result.company_ids = {
            n: {"linkedin": u.strip()}
            for n, u in zip(names, latest[columns["link"]], strict=True) if n and u.strip()
        }
    return result


def reject_resolved_conflicts(parsed: ParsedFile, ids: Mapping[str, str | None]) -> ParsedFile:
    """Move good rows that clash once company names are resolved to ids into the rejects.

    ``Apple Inc.`` = 100 and ``Apple, Inc`` = 999 on one day are different labels but
    one company: both rows are rejected, as are good rows that resolve to a company
    and day already rejected as conflicting. ``ids`` maps each name in ``parsed.good``
    to its company id; every name :func:`validate` accepts has one, so a name
    without one (a ``ParsedFile`` built elsewhere) is rejected as empty. Only
    rows of names sharing an id with another name are examined, so the common case
    (every name its own company) costs a pass over the distinct names.
    """
    good = parsed.good
    if good.empty:
        return parsed
    conflicts = parsed.conflicts if parsed.conflicts is not None else good.iloc[:0]
    mapped = pd.Series({n: i for n, i in ids.items() if i}, dtype=object)
    reason = np.full(len(good), "", dtype=object)
    resolvable = good["company"].isin(mapped.index).to_numpy()
    if not resolvable.all():
        missing = np.flatnonzero(~resolvable)
        reason[missing] = "column 'company': empty company name"
    shared = mapped[mapped.groupby(mapped).transform("size").to_numpy() > 1].index
    stamped = [COLLECTED_COL] if COLLECTED_COL in good.columns else []
    if len(shared):
        mine = np.flatnonzero(good["company"].isin(shared).to_numpy())
        cols = ["company", "metric", "source", "as_of", *stamped, "value", "line"]
        pool = pd.concat([
            good.iloc[mine][cols].assign(pos=mine),
            conflicts.loc[conflicts["company"].isin(shared), cols].assign(pos=-1),
        ], ignore_index=True).sort_values("line", kind="stable")
        pool["company_id"] = pool["company"].map(mapped)
        spellings = pool.groupby("company_id")["company"].agg(
            lambda names: " and ".join(repr(n) for n in pd.unique(names)))
        clashing = _conflict_reasons(pool, ["company_id", "metric", "source", "as_of",
                                            *stamped],
                                     lambda rows: [
            f"company {cid!r} (written {spellings[cid]}) on {d:%Y-%m-%d}"
            for cid, d in zip(rows["company_id"], rows["as_of"], strict=True)
        ])
        pos = pool.loc[clashing.index, "pos"].to_numpy()
        fresh = (pos >= 0)
        fresh[fresh] = reason[pos[fresh]] == ""
        reason[pos[fresh]] = clashing.to_numpy()[fresh]
    bad = reason != ""
    if not bad.any():
        return parsed
    good_raw = parsed.good_raw
    if good_raw is None:  # parsed elsewhere: save what is known
        good_raw = good.drop(columns=["line"])
    new = good_raw.iloc[np.flatnonzero(bad)].copy()
    new.insert(0, "line", good["line"].to_numpy()[bad])
    new["reason"] = reason[bad]
    rejects = (pd.concat([parsed.rejects, new], ignore_index=True)
               .sort_values("line", kind="stable").reset_index(drop=True))
    problems = [f"{parsed.path}:{ln}: {why}"
                for ln, why in zip(rejects["line"], rejects["reason"], strict=True)]
    return ParsedFile(
        parsed.path, parsed.layout, good[~bad].reset_index(drop=True), rejects, problems,
        parsed.company_tags, parsed.company_ids, good_raw.iloc[np.flatnonzero(~bad)],
        pd.concat([conflicts, good[bad]], ignore_index=True), parsed.company_names,
    )
