"""Importing files into the store: parse, validate, resolve companies, write.

One file is one transaction: either all of its good rows land or none do, so an
import killed part-way leaves the database as it was and simply runs again. By
default a single bad row stops the whole file (nothing written, every problem
listed); ``skip_bad`` writes the good rows and saves the bad ones, with a reason
column, to a rejects CSV for the user to fix and re-import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tracker.errors import ImportValidationError, InputError
from tracker.ingest.csvfile import (
    MAX_SHOWN,
    Layout,
    ParsedFile,
    parse,
    reject_resolved_conflicts,
)
from tracker.ingest.jsonfile import parse_json
from tracker.output import write_csv
from tracker.store import Connection, Store
from tracker.store import companies as company_ops

#: progress(path, stage) is called as each file moves through read/validate/write.
Progress = Callable[[Path, str], None]


@dataclass(frozen=True)
class ImportOptions:
    """How to read files whose layout or columns are not the usual ones."""

    layout: Layout = "auto"
    company_col: str | None = None
    date_col: str | None = None
    count_col: str | None = None
    metric: str | None = None
    source: str | None = None
    skip_bad: bool = False
    rejects_dir: Path | None = None
    #: When the values were learned (naive UTC). Default: now. Set it to load
    #: historical snapshots, in chronological order, so point-in-time reads and
    #: replays see them as they were known then.
    collected_at: datetime | None = None


@dataclass(frozen=True)
class ImportResult:
    """What one file contributed."""

    path: Path
    layout: str
    rows: int
    inserted: int
    rejected: int
    companies: int
    rejects_path: Path | None = None

    @property
    def unchanged(self) -> int:
        return self.rows - self.inserted


def is_json(path: Path) -> bool:
    """Provider JSON exports: .json, .jsonl, optionally gzipped."""
    return path.name.lower().removesuffix(".gz").endswith((".json", ".jsonl"))


def rejects_path_for(path: Path, rejects_dir: Path | None) -> Path:
    name = path.name.removesuffix(".gz").removesuffix(".csv").removesuffix(".jsonl")
    name = name.removesuffix(".json") + ".rejects.csv"
    return (rejects_dir or path.parent) / name


def write_parsed(
    store: Store,
    conn: Connection,
    parsed: ParsedFile,
    *,
    collected_at: datetime | None = None,
    run_id: int | None = None,
) -> tuple[int, int]:
    """Resolve companies and append the good rows inside the caller's transaction.

    Returns (inserted, companies). Rows that turn out to be the same company and day
    with different values once names are resolved (``Apple Inc.`` and ``Apple, Inc``)
    raise ImportValidationError before any observation is written; raised inside
    the caller's transaction, it also rolls back the companies created here.
    Callers that want such rows rejected instead run :func:`resolve_conflicts` first.
    """
    good = parsed.good
    if good.empty:
        return 0, 0
    ids = company_ops.resolve(conn, good["company"].unique())
    checked = reject_resolved_conflicts(parsed, {**preview_ids(conn, _rejected_names(parsed)),
                                                 **ids})
    if checked is not parsed:
        known = set(parsed.problems)
        problems = [p for p in checked.problems if p not in known]
        raise ImportValidationError(str(parsed.path), problems[:MAX_SHOWN], len(problems))
    for name, tags in parsed.company_tags.items():
        if name in ids:
            store.upsert_company(ids[name], tags=tags, conn=conn)
    for name, ext in parsed.company_ids.items():
        if name in ids:
            store.upsert_company(ids[name], external_ids=ext, conn=conn)
    frame = good.assign(company=good["company"].map(ids))
    result = store.write_frame(conn, frame, collected_at=collected_at, run_id=run_id)
    return result.inserted, frame["company"].nunique()


def preview_ids(conn: Connection, names: Iterable[str]) -> dict[str, str | None]:
    """The company id each name will resolve to, without creating anything.

    Same rules as :func:`tracker.store.companies.resolve`: an alias, else the slug
    (an existing company or the one that would be created); None only for a blank
    name, which validation has already rejected.
    """
    wanted = set(names)
    known = company_ops.resolve(conn, wanted, create=False)
    return {n: known.get(n) or company_ops.slugify(n) or None for n in wanted}


def _rejected_names(parsed: ParsedFile) -> set[str]:
    """Names of rows already rejected as conflicting: a good row may join their group."""
    return set() if parsed.conflicts is None else set(parsed.conflicts["company"].unique())


def resolve_conflicts(store: Store, parsed: ParsedFile) -> ParsedFile:
    """``parsed`` with rows that clash after company resolution moved to the rejects."""
    if parsed.good.empty:
        return parsed
    with store.reading(f"reading companies for {parsed.path}") as conn:
        ids = preview_ids(conn, {*parsed.good["company"].unique(), *_rejected_names(parsed)})
    return reject_resolved_conflicts(parsed, ids)


def import_file(
    store: Store,
    path: str | Path,
    options: ImportOptions | None = None,
    *,
    progress: Progress | None = None,
) -> ImportResult:
    """Import one file (CSV, or a provider's JSON export) in one transaction."""
    options = options or ImportOptions()
    path = Path(path)
    notify = progress or (lambda _p, _s: None)
    notify(path, "reading")
    if is_json(path):
        parsed = parse_json(path, metric=options.metric, source=options.source)
    else:
        parsed = parse(
            path,
            layout=options.layout,
            company_col=options.company_col,
            date_col=options.date_col,
            count_col=options.count_col,
            metric=options.metric,
            source=options.source,
        )
    parsed = resolve_conflicts(store, parsed)
    rejected = len(parsed.rejects)
    if rejected and not options.skip_bad:
        raise ImportValidationError(str(path), parsed.problems[:MAX_SHOWN], rejected)
    if not len(parsed.good) and not rejected:
        raise InputError(f"{path}: no data rows (only a header?)")
    rejects_path = None
    if rejected:
        rejects_path = rejects_path_for(path, options.rejects_dir)
        # before the import's transaction: no rejects file, no import (WriteError)
        write_csv(rejects_path, parsed.rejects, parents=True)
    notify(path, "writing")
    with store.transaction(f"importing {path}") as conn:
        inserted, n_companies = write_parsed(store, conn, parsed,
                                             collected_at=options.collected_at)
    notify(path, "done")
    return ImportResult(path, parsed.layout, len(parsed.good), inserted, rejected, n_companies,
                        rejects_path)


def import_files(
    store: Store,
    paths: Iterable[str | Path],
    options: ImportOptions | None = None,
    *,
    progress: Progress | None = None,
    done: Callable[[ImportResult], None] | None = None,
) -> list[ImportResult]:
    """Import several files, each in its own transaction, stopping at the first error.

    Files before the failing one stay imported: they were complete and valid, and
    re-running the same command skips them (imports are idempotent). ``done`` hears
    of each file as soon as it is in, so a caller can say so before a later file fails.
    """
    results = []
    for p in paths:
        results.append(import_file(store, p, options, progress=progress))
        if done is not None:
            done(results[-1])
    return results


__all__ = [
    "ImportOptions", "ImportResult", "import_file", "import_files", "preview_ids",
    "resolve_conflicts", "write_parsed",
]
