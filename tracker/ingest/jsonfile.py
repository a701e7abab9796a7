"""Provider JSON exports: company records with a monthly headcount history.

People-data providers deliver company records rather than tables; People Data
Labs' company schema, for one, carries ``employee_count_by_month`` as
``{"2022-01": 1234, ...}``. Each month becomes an observation dated the first of
that month, so the detector (which infers each series' cadence) treats the series
as monthly. The records are flattened into the same string columns a long CSV
has and validated by the same code, so errors read the same: file, record, field,
value and reason.
"""

from __future__ import annotations

import json
import lzma
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tracker.errors import InputError
from tracker.ingest import sniff
from tracker.ingest.csvfile import ParsedFile, validate

NAME_KEYS = ("display_name", "name", "company", "company_name")
MONTHLY_KEYS = ("employee_count_by_month", "headcount_by_month")
_MONTH = re.compile(r"\d{4}-\d{2}")


def _records(path: Path) -> list[tuple[int, Any]]:
    """(position, record) pairs: the line for JSON Lines, the 1-based index otherwise."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; pass the JSON files inside it")
    kind = sniff.inspect(path)  # compression from the bytes, as for CSV files
    try:
        with sniff.text_stream(path, kind) as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise sniff.decode_error(path, kind, exc) from exc
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise sniff.read_error(path, exc) from exc
    if ".jsonl" in path.suffixes:
        out = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    out.append((number, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{number}: not valid JSON: {exc.msg}") from exc
        return out
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    if isinstance(data, dict):
        data = data.get("data", [data])
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a list of company records (or {{\"data\": [...]}})")
    return list(enumerate(data, start=1))


def _a(value: object) -> str:
    """'a number', 'a list', ...: what a JSON value is, in the words of JSON."""
    kind = {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", type(None): "null"}.get(type(value), type(value).__name__)
    return kind


def _text(value: object) -> str:
    return "" if value is None else str(value)


def parse_json(path: Path, *, metric: str | None = None, source: str | None = None
               ) -> ParsedFile:
    """Flatten company records into one row per month, then validate like a CSV."""
    rows: list[tuple[int, str, str, str]] = []
    ids: dict[str, dict[str, str]] = {}
    for position, record in _records(path):
        if not isinstance(record, dict):
            raise InputError(
                f"{path}:{position}: record {position} is {_a(record)}, not an object (a "
                f"company record with a name and {MONTHLY_KEYS[0]})"
            )
        name = next((_text(record[k]).strip() for k in NAME_KEYS if record.get(k)), "")
        monthly = next((record[k] for k in MONTHLY_KEYS if isinstance(record.get(k), dict)),
                       None)
        if monthly is None:
            raise InputError(
                f"{path}: record {position} has no monthly headcounts "
                f"(looked for {', '.join(MONTHLY_KEYS)})"
            )
        external = {key: _text(record[field]) for key, field in
                    (("website", "website"), ("linkedin", "linkedin_url")) if record.get(field)}
        if name and external:
            ids[name] = external
        for month, count in monthly.items():
            day = f"{month}-01" if _MONTH.fullmatch(str(month)) else str(month)
            rows.append((position, name, day, _text(count)))
    if not rows:
        raise InputError(f"{path}: no company records")
    raw = pd.DataFrame(rows, columns=["record", "company", "date", "count"]).drop(
        columns="record")
    lines = pd.Series(np.array([r[0] for r in rows]), index=raw.index)
    frame = pd.DataFrame({"company": raw["company"], "metric": metric or "employees",
                          "source": source or "json"}, index=raw.index)
    parsed = validate(path, "monthly_json", raw, lines, frame, raw["date"], raw["count"],
                      "month", "count", metric_where="--metric")
    parsed.company_ids = ids
    return parsed
