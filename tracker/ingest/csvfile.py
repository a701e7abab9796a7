"""Reading headcount CSVs in the layouts people actually have, validated as arrays.

Three layouts are recognised from the header: long (one row per company and day),
wide (a date column and one column per company) and the Thinknum LinkedIn dataset.
Every check is a vectorized mask over the whole file, so a million-row file is
validated in well under a second, and every rejected row keeps its file line so
the error can point at it.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from tracker.errors import InputError
from tracker.records import DEFAULT_METRIC

Layout = Literal["auto", "long", "wide", "thinknum"]

COMPANY_NAMES = ("company", "company_name", "name", "organization", "organisation", "org")
DATE_NAMES = ("date", "as_of_date", "as_of", "day", "snapshot_date")
COUNT_NAMES = (
    "count", "employees", "employee_count", "employees_on_platform", "headcount", "value",
)
THINKNUM_MARKERS = {"as_of_date", "company_name", "employees_on_platform"}
_SEPARATORS = re.compile(r"[,_\s'\u00a0\u202f]")
MAX_SHOWN = 20


@dataclass
class ParsedFile:
    """Rows of one file after validation, ready to resolve and write.

    ``good`` has columns company (as written), metric, source, as_of, value, line;
    ``rejects`` holds the raw fields of bad rows plus ``line`` and ``reason``.
    """

    path: Path
    layout: str
    good: pd.DataFrame
    rejects: pd.DataFrame
    problems: list[str] = field(default_factory=list)
    company_tags: dict[str, dict[str, str]] = field(default_factory=dict)
    company_ids: dict[str, dict[str, str]] = field(default_factory=dict)


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


def read_raw(path: Path) -> pd.DataFrame:
    """All fields as strings, blank lines kept so row i sits on file line i + 2."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; pass the CSV files inside it")
    try:
        return pd.read_csv(
            path, dtype=str, keep_default_na=False, skip_blank_lines=False,
            encoding="utf-8-sig", compression="infer", skipinitialspace=True,
        )
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"{path}: the file is empty (expected a header line)") from exc
    except pd.errors.ParserError as exc:
        raise InputError(f"{path}: not a readable CSV: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except (OSError, EOFError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc


def _parse_counts(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Values and a bad-mask: whole numbers >= 0, thousands separators allowed.

    Plain digits take the fast path; only cells that fail it (separators, junk)
    go through the regex clean-up.
    """
    numbers = pd.to_numeric(raw, errors="coerce").to_numpy(dtype="float64", na_value=np.nan,
                                                           copy=True)
    retry = np.flatnonzero(np.isnan(numbers))
    if len(retry):
        cleaned = raw.iloc[retry].str.replace(_SEPARATORS, "", regex=True)
        numbers[retry] = pd.to_numeric(cleaned, errors="coerce").to_numpy(
            dtype="float64", na_value=np.nan)
    bad = ~np.isfinite(numbers) | (numbers < 0) | (numbers != np.round(numbers))
    return np.where(bad, 0, numbers).astype("int64"), bad


def _parse_dates(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    parsed = pd.to_datetime(raw.str.strip(), format="ISO8601", errors="coerce")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    parsed = parsed.dt.normalize()
    return parsed, parsed.isna().to_numpy()


def _blank_or_header(raw: pd.DataFrame) -> np.ndarray:
    """Rows to ignore silently: empty lines and a header repeated inside the file."""
    blank = np.ones(len(raw), dtype=bool)
    header = np.ones(len(raw), dtype=bool)
    for name in raw.columns:
        col = raw[name]
        blank &= (col == "").to_numpy()
        header &= (col == name).to_numpy()
    return blank | header


def parse(
    path: Path,
    *,
    layout: Layout = "auto",
    company_col: str | None = None,
    date_col: str | None = None,
    count_col: str | None = None,
    metric: str | None = None,
    source: str | None = None,
) -> ParsedFile:
    """Read and validate one file; nothing touches the database here."""
    raw = read_raw(path)
    columns = {_norm(c): c for c in raw.columns}
    if layout == "auto":
        if columns.keys() >= THINKNUM_MARKERS and company_col is None and count_col is None:
            layout = "thinknum"
        elif _pick(columns, COMPANY_NAMES, company_col, "company", path) is None:
            layout = "wide"
        else:
            layout = "long"
    lines = pd.Series(np.arange(len(raw)) + 2, index=raw.index)
    keep = ~_blank_or_header(raw)
    raw, lines = raw[keep], lines[keep]
    dcol = _pick(columns, DATE_NAMES, date_col, "date", path)
    if dcol is None:
        raise InputError(
            f"{path}: no date column found (looked for {', '.join(DATE_NAMES)}); "
            "name it with --date-col"
        )
    if layout == "wide":
        return _parse_wide(path, raw, lines, dcol, metric, source)
    if layout == "thinknum":
        return _parse_thinknum(path, raw, lines, columns, source)
    ccol = _pick(columns, COMPANY_NAMES, company_col, "company", path)
    vcol = _pick(columns, COUNT_NAMES, count_col, "count", path)
    if ccol is None or vcol is None:
        what = "company" if ccol is None else "count"
        names = COMPANY_NAMES if ccol is None else COUNT_NAMES
        raise InputError(
            f"{path}: no {what} column found (looked for {', '.join(names)}); "
            f"name it with --{what}-col"
        )
    scol = columns.get("source")
    mcol = columns.get("metric")
    frame = pd.DataFrame({
        "company": raw[ccol].str.strip(),
        "metric": raw[mcol].str.strip() if mcol and metric is None else (metric or DEFAULT_METRIC),
        "source": raw[scol].str.strip() if scol and source is None else (source or "csv"),
    }, index=raw.index)
    return _validate(path, "long", raw, lines, frame, raw[dcol], raw[vcol], dcol, vcol)


def _validate(
    path: Path, layout: str, raw: pd.DataFrame, lines: pd.Series, frame: pd.DataFrame,
    dates: pd.Series, counts: pd.Series, dcol: str, vcol: str | pd.Series,
) -> ParsedFile:
    as_of, bad_date = _parse_dates(dates)
    values, bad_count = _parse_counts(counts)
    frame = frame.assign(as_of=as_of.to_numpy(), value=values, line=lines.to_numpy())
    reason = np.full(len(frame), "", dtype=object)
    vnames = vcol if isinstance(vcol, pd.Series) else pd.Series(vcol, index=frame.index)
    for mask, text in (
        (frame["metric"].eq("").to_numpy(), "column 'metric': empty metric name"),
        (frame["source"].eq("").to_numpy(), "column 'source': empty source name"),
        (bad_count, None),
        (bad_date, f"column {dcol!r}: value {{}} is not a date (expected YYYY-MM-DD)"),
        (frame["company"].eq("").to_numpy(), "column 'company': empty company name"),
    ):
        if not mask.any():
            continue
        if text is None:
            idx = np.flatnonzero(mask)
            reason[idx] = [
                f"column {c!r}: value {v!r} is not a whole number >= 0"
                for c, v in zip(vnames.iloc[idx], counts.iloc[idx], strict=True)
            ]
        elif "{}" in text:
            idx = np.flatnonzero(mask)
            reason[idx] = [text.format(repr(v)) for v in dates.iloc[idx]]
        else:
            reason[mask] = text
    ok = reason == ""
    key = ["company_key", "metric", "source", "as_of"]
    candidates = frame[ok].assign(company_key=frame.loc[ok, "company"].str.casefold())
    dup = candidates.duplicated(key, keep=False)
    if dup.any():
        clashes = candidates[dup].groupby(key, sort=False)["value"].transform("nunique") > 1
        conflicted = candidates[dup][clashes]
        if len(conflicted):
            listing = conflicted.groupby(key, sort=False).apply(
                lambda g: ", ".join(f"{v} (line {ln})" for v, ln in zip(g["value"], g["line"],
                                                                       strict=True)),
                include_groups=False,
            )
            labels = conflicted.set_index(key).index.map(listing)
            pos = frame.index.get_indexer(conflicted.index)
            reason[pos] = [
                f"conflicting duplicate rows for {c!r} on {d:%Y-%m-%d}: values {lst}"
                for c, d, lst in zip(conflicted["company"], conflicted["as_of"], labels,
                                     strict=True)
            ]
            ok = reason == ""
    bad = ~ok
    rejects = raw[bad].copy()
    rejects.insert(0, "line", frame["line"].to_numpy()[bad])
    rejects["reason"] = reason[bad]
    problems = [f"{path}:{ln}: {why}" for ln, why in zip(rejects["line"], rejects["reason"],
                                                        strict=True)]
    good = frame[ok].reset_index(drop=True)
    return ParsedFile(path, layout, good, rejects.reset_index(drop=True), problems)


def _parse_wide(path: Path, raw: pd.DataFrame, lines: pd.Series, dcol: str,
                metric: str | None, source: str | None) -> ParsedFile:
    companies = [c for c in raw.columns if c != dcol]
    if not companies:
        raise InputError(f"{path}: wide layout needs one column per company besides {dcol!r}")
    long = raw.melt(id_vars=[dcol], value_vars=companies, var_name="company",
                    value_name="count", ignore_index=False)
    long = long[long["count"].str.strip() != ""]
    long_lines = lines.loc[long.index]
    long = long.reset_index(drop=True)
    long_lines = long_lines.reset_index(drop=True)
    frame = pd.DataFrame({
        "company": long["company"].astype(str).str.strip(),
        "metric": metric or DEFAULT_METRIC,
        "source": source or "csv",
    })
    cells = long.rename(columns={dcol: "date"})
    return _validate(path, "wide", cells, long_lines, frame, long["date"], long["count"], dcol,
                     long["company"].astype(str))


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
        parts.append(_validate(path, "thinknum", rows, lines.loc[rows.index], frame,
                               rows[columns["as_of_date"]], rows[col], columns["as_of_date"], col))
    good = pd.concat([p.good for p in parts], ignore_index=True)
    rejects = pd.concat([p.rejects for p in parts], ignore_index=True).sort_values("line")
    problems = [p for part in parts for p in part.problems]
    result = ParsedFile(path, "thinknum", good, rejects, problems)
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
