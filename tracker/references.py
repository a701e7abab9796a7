"""Reference headcounts: the official count a company's claimed profiles are held against.

Two ways in, one table (``store.references``):

- a CSV file, ``company,date,count,source`` (``tracker references import FILE``): a
  company's headcounts over the years, from annual reports or filings;
- ``[companies.ID] reference_count`` / ``reference_date`` / ``reference_source`` in
  config, upserted each time a workspace opens (with the companies themselves), so
  the config is the truth for the day it names and a CSV for the others.

Either way a reference is (company, day) -> count: a second figure for the same day
replaces the first. A file is validated whole before anything is written, and is
then written in one transaction: a bad row names the file, line, field and value,
and nothing of that file is stored. Companies are resolved as an observation import
resolves them (id, alias or name; an unknown name becomes a new company), so a
reference file may come before the first collection.

Importing this module stays cheap (the workspace syncs config references on every
command, ``tracker status`` included): no pandas here.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracker.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from tracker.config import CompanySettings
    from tracker.workspace import Workspace

REQUIRED = ("company", "date", "count", "source")
#: Problems listed in one error; the count of the rest is said.
MAX_SHOWN = 10


@dataclass(frozen=True)
class ReferenceImport:
    """What an import wrote: rows, and the companies they are about."""

    path: Path
    rows: int
    companies: int


def config_rows(declared: Mapping[str, CompanySettings]) -> list[dict[str, Any]]:
    """The references declared in config, as ``store.references.replace`` rows."""
    return [{"company_id": cid, "as_of": spec.reference_date, "count": spec.reference_count,
             "source": spec.reference_source}
            for cid, spec in declared.items()
            if spec.reference_count is not None and spec.reference_date is not None]


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Validated rows (company as written, as_of, count, source) of a reference file.

    Every problem is collected, so a user fixes the file in one pass; a count must
    be a whole number above zero (a ratio to zero is no ratio), a day ISO
    ``YYYY-MM-DD``, a company and a source non-empty, and a company's day given once.
    """
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            _check_header(path, header)
            reader.fieldnames = header
            problems: list[str] = []
            rows: list[dict[str, Any]] = []
            seen: dict[tuple[str, date], int] = {}
            for raw in reader:
                line = reader.line_num
                row = _row(path, line, raw, problems)
                if row is None:
                    continue
                key = (row["company"].casefold(), row["as_of"])
                if key in seen:
                    problems.append(f"{path}:{line}: {row['company']!r} on {row['as_of']} is "
                                    f"given twice (also line {seen[key]}); keep one")
                    continue
                seen[key] = line
                rows.append(row)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read the reference file: {exc}") from None
    if problems:
        shown = "\n  ".join(problems[:MAX_SHOWN])
        more = f"\n  ... and {len(problems) - MAX_SHOWN} more" \
            if len(problems) > MAX_SHOWN else ""
        raise InputError(f"{path}: {len(problems)} bad row(s); nothing from this file was "
                         f"written:\n  {shown}{more}")
    if not rows:
        raise InputError(f"{path}: no references in the file (expected a header "
                         f"{','.join(REQUIRED)} and one row per company and day)")
    return rows


def _check_header(path: Path, header: list[str]) -> None:
    missing = [c for c in REQUIRED if c not in header]
    extra = [c for c in header if c not in REQUIRED]
    if missing or extra:
        found = ",".join(header) or "(nothing)"
        raise InputError(
            f"{path}:1: the header must be {','.join(REQUIRED)}; found {found}"
            + (f" (missing {', '.join(missing)})" if missing else "")
            + (f" (unknown {', '.join(extra)})" if extra else ""))


def _row(path: Path, line: int, raw: dict[str | None, Any],
         problems: list[str]) -> dict[str, Any] | None:
    """One validated row, or None after adding its problems."""
    if None in raw:  # more cells than the header has columns
        problems.append(f"{path}:{line}: {len(REQUIRED) + len(raw[None])} cells, the header "
                        f"has {len(REQUIRED)}; quote a value that holds a comma")
        return None
    cells = {k: (v or "").strip() for k, v in raw.items() if k is not None}
    bad = len(problems)
    for field in ("company", "source"):
        if not cells.get(field):
            problems.append(f"{path}:{line}: field '{field}' is empty")
    day = None
    try:
        day = date.fromisoformat(cells.get("date", ""))
        if len(cells["date"]) != 10:
            raise ValueError
    except ValueError:
        problems.append(f"{path}:{line}: field 'date': {cells.get('date', '')!r} is not a "
                        "day (expected YYYY-MM-DD, e.g. 2022-09-24)")
    count = cells.get("count", "")
    if not count.isdigit() or int(count) <= 0:
        problems.append(f"{path}:{line}: field 'count': {count!r} is not a whole number "
                        "above zero (e.g. 164000, without separators)")
    if len(problems) > bad:
        return None
    return {"company": cells["company"], "as_of": day, "count": int(count),
            "source": cells["source"]}


def import_references(ws: Workspace, path: str | Path) -> ReferenceImport:
    """Validate a reference CSV whole, then write it in one transaction."""
    from tracker.store import companies as company_ops
    from tracker.store import references as reference_store

    file = Path(path).expanduser()
    if not file.is_file():
        raise InputError(f"{file}: no such reference file")
    rows = read_csv(file)
    with ws.store.transaction(f"importing references from {file}") as conn:
        ids = company_ops.resolve(conn, [r["company"] for r in rows])
        stored = [{**r, "company_id": ids[r["company"]]} for r in rows]
        written = reference_store.replace(conn, stored)
    return ReferenceImport(file, written, len({r["company_id"] for r in stored}))


def list_references(ws: Workspace, company: str | None = None) -> pd.DataFrame:
    """Stored references (``store.references.COLUMNS``), of one company or all."""
    from tracker.store import references as reference_store

    ids = [ws.store.company_id(company)] if company else None
    frame = reference_store.load(ws.store, ids)
    frame["as_of"] = frame["as_of"].dt.date
    return frame
