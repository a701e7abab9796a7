"""Importing files into the store: parse, validate, resolve companies, write.

One file is one transaction: either all of its good rows land or none do, so an
import killed part-way leaves the database as it was and simply runs again. By
default a single bad row stops the whole file (nothing written, every problem
listed); ``skip_bad`` writes the good rows and saves the bad ones, with a reason
column, to a rejects CSV for the user to fix and re-import.

When a value was learned (``collected_at``) comes from ``--collected-at`` for a
whole file, from a ``collected_at`` column per row, or, for a folder of historical
snapshots (:func:`import_snapshots`), from each file's name. A folder is read and
validated whole before one transaction writes it in time order, so 77 daily
snapshots cost one process and a few seconds, not 77 imports.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tracker.errors import ImportValidationError, InputError
from tracker.ingest import sniff
from tracker.ingest.csvfile import (
    COLLECTED_COL,
    MAX_SHOWN,
    Layout,
    ParsedFile,
    learned_at,
    parse,
    reject_resolved_conflicts,
)
from tracker.ingest.jsonfile import parse_json
from tracker.metrics import check_metric, with_segment
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
    #: The role segment of every row (``security``: metric ``employees:security``,
    #: or ``<metric>:security`` with ``metric``); overrides a ``segment`` column.
    segment: str | None = None

    def __post_init__(self) -> None:
        """Refuse a bad --metric/--segment before any file is opened: every row of
        every file would carry it."""
        if self.metric is not None:
            check_metric(self.metric, "--metric")
        if self.segment:
            combined = with_segment(self.metric, self.segment)
            assert combined is not None
            check_metric(combined, f"--segment {self.segment!r} (metric {combined!r})")


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
    #: When the values were learned, when one time holds for the whole file (a
    #: snapshot's name, ``--collected-at``); None: now, or per row.
    collected_at: datetime | None = None

    @property
    def unchanged(self) -> int:
        return self.rows - self.inserted


def is_json(path: Path) -> bool:
    """Provider JSON exports: .json, .jsonl, optionally gzipped."""
    return path.name.lower().removesuffix(".gz").endswith((".json", ".jsonl"))


def rejects_path_for(path: Path, rejects_dir: Path | None) -> Path:
    name = path.name.removesuffix(".gz").removesuffix(".parquet").removesuffix(".csv")
    name = name.removesuffix(".jsonl")
    name = name.removesuffix(".json") + ".rejects.csv"
    return (rejects_dir or path.parent) / name


def write_parsed(
    store: Store,
    conn: Connection,
    parsed: ParsedFile,
    *,
    collected_at: datetime | None = None,
    run_id: int | None = None,
    ids: Mapping[str, str] | None = None,
) -> tuple[int, int]:
    """Resolve companies and append the good rows inside the caller's transaction.

    Returns (inserted, companies). Rows that turn out to be the same company and day
    with different values once names are resolved (``Apple Inc.`` and ``Apple, Inc``)
    raise ImportValidationError before any observation is written; raised inside
    the caller's transaction, it also rolls back the companies created here.
    Callers that want such rows rejected instead run :func:`resolve_conflicts` first.
    ``ids`` are company ids a caller resolved in this transaction for several files
    at once (see :func:`import_snapshots`); by default this file's names are resolved.
    Rows with their own ``collected_at`` are written oldest first, one bulk write per
    distinct time, so each is compared with what was known just before it.
    """
    good = parsed.good
    if good.empty:
        return 0, 0
    _one_time(parsed, collected_at)
    if ids is None:
        given = company_ops.resolve_ids(conn, parsed.company_names)
        rest = [n for n in good["company"].unique() if n not in given]
        ids = {**company_ops.resolve(conn, rest), **given}
    else:
        ids = {n: ids[n] for n in good["company"].unique() if n in ids}
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
    company_ops.name_unnamed(conn, {ids[n]: shown for n, shown in parsed.company_names.items()
                                    if n in ids})
    frame = good.assign(company=good["company"].map(ids))
    if COLLECTED_COL not in frame.columns:
        result = store.write_frame(conn, frame, collected_at=collected_at, run_id=run_id)
        return result.inserted, frame["company"].nunique()
    inserted = 0
    for stamp, part in frame.groupby(COLLECTED_COL, sort=True):
        inserted += store.write_frame(conn, part.drop(columns=COLLECTED_COL),
                                      collected_at=stamp.to_pydatetime(),  # type: ignore[union-attr]
                                      run_id=run_id).inserted
    return inserted, frame["company"].nunique()


def _one_time(parsed: ParsedFile, collected_at: datetime | None) -> None:
    """Refuse a file whose rows carry their own collected_at when one is also given for
    the whole file: which one is meant cannot be guessed."""
    if collected_at is not None and COLLECTED_COL in parsed.good.columns:
        raise InputError(
            f"{parsed.path}: the file has a {COLLECTED_COL} column, and a time for the whole "
            "file was given too (--collected-at, or a snapshot's name); use one of them"
        )


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


def parse_file(path: Path, options: ImportOptions) -> ParsedFile:
    """Read and validate one CSV, JSON or Parquet file (or Parquet dataset folder) as
    ``options`` say; nothing is written."""
    if path.exists() and sniff.is_parquet(path):
        from tracker.ingest.parquetfile import parse_parquet

        given = [flag for flag, value in (("--format", options.layout != "auto"),
                                          ("--company-col", options.company_col),
                                          ("--date-col", options.date_col),
                                          ("--count-col", options.count_col)) if value]
        if given:
            raise InputError(f"{path}: {', '.join(given)} do(es) not apply to Parquet, whose "
                             "columns are named company, as_of and value; leave them out")
        return parse_parquet(path, metric=options.metric, source=options.source)
    if is_json(path):
        return parse_json(path, metric=with_segment(options.metric, options.segment),
                          source=options.source)
    return parse(
        path,
        layout=options.layout,
        company_col=options.company_col,
        date_col=options.date_col,
        count_col=options.count_col,
        metric=options.metric,
        source=options.source,
        segment=options.segment,
    )


def _accept(parsed: ParsedFile, options: ImportOptions, *, nothing: str) -> Path | None:
    """Refuse a file with bad rows (unless ``skip_bad``) or none at all; else write its
    rejects file, before any transaction (no rejects file, no import), and return it.

    ``nothing`` says what a refusal leaves unwritten ("this file", "DIR").
    """
    path, rejected = parsed.path, len(parsed.rejects)
    if rejected and not options.skip_bad:
        if nothing == "this file":
            raise ImportValidationError(str(path), parsed.problems[:MAX_SHOWN], rejected)
        shown = "\n  ".join(parsed.problems[:MAX_SHOWN])
        more = f"\n  ... and {rejected - MAX_SHOWN} more" if rejected > MAX_SHOWN else ""
        raise InputError(f"{path}: {rejected} bad row(s); nothing from {nothing} was written "
                         f"(use --skip-bad to import the good rows):\n  {shown}{more}")
    if not len(parsed.good) and not rejected:
        raise InputError(f"{path}: no data rows (only a header?)")
    if not rejected:
        return None
    rejects_path = rejects_path_for(path, options.rejects_dir)
    write_csv(rejects_path, parsed.rejects, parents=True)
    return rejects_path


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
    parsed = resolve_conflicts(store, parse_file(path, options))
    _one_time(parsed, options.collected_at)
    rejects_path = _accept(parsed, options, nothing="this file")
    notify(path, "writing")
    with store.transaction(f"importing {path}") as conn:
        inserted, n_companies = write_parsed(store, conn, parsed,
                                             collected_at=options.collected_at)
    notify(path, "done")
    return ImportResult(path, parsed.layout, len(parsed.good), inserted, len(parsed.rejects),
                        n_companies, rejects_path, options.collected_at)


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


# -- folders of snapshots ------------------------------------------------------------

#: What a snapshot file may be: a CSV (or TSV) or a JSON export, optionally compressed.
SNAPSHOT_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl")
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zip", ".zst")
#: The time in a snapshot's name: a day (2022-10-10, 20221010), optionally a UTC
#: time (T06:00, T06:00:00Z, T060000Z, T06:00:00+02:00), after an optional prefix
#: that ends in '_', '-', '.' or a space (snapshot_20221010, linkedin-2022-10-10).
_STAMP = re.compile(
    r"(?:(?P<prefix>.*[_\-. ]))??"
    r"(?P<y>\d{4})(?P<dsep>-?)(?P<m>\d{2})(?P=dsep)(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2})(?P<tsep>:?)(?P<M>\d{2})(?:(?P=tsep)(?P<S>\d{2})(?P<f>\.\d{1,6})?)?"
    r"(?P<zone>Z|[+-]\d{2}:?\d{2})?)?"
)
SNAPSHOT_NAMES = ("YYYY-MM-DD.csv, YYYYMMDD.csv or YYYY-MM-DDTHH:MM:SSZ.csv (a prefix "
                  "such as snapshot_ is allowed; .csv.gz, .tsv, .json and .jsonl too)")


@dataclass(frozen=True)
class Snapshot:
    """One file of a snapshot folder and when its values were learned (naive UTC)."""

    path: Path
    collected_at: datetime


def snapshot_time(name: str, now: datetime) -> datetime:
    """When a snapshot file's values were learned, from its name alone.

    A bare day means the end of that day (the snapshot was taken some time that
    day; claiming an earlier time would let a replay see it too soon), or now for
    today's; a time without a zone is UTC, as for ``--collected-at``. Raises
    InputError with the reason (the caller names the file).
    """
    lower = name.lower()
    stem = next((name[: -len(s + c)] for s in SNAPSHOT_SUFFIXES for c in ("", *COMPRESSED_SUFFIXES)
                 if lower.endswith(s + c)), None)
    if stem is None:
        raise InputError("not a snapshot file (expected .csv, .tsv, .json or .jsonl, "
                         "optionally compressed); move it out of the folder")
    m = _STAMP.fullmatch(stem)
    if m is None:
        raise InputError(f"the name does not say when the snapshot was collected; "
                         f"name it {SNAPSHOT_NAMES}")
    iso = f"{m['y']}-{m['m']}-{m['d']}"
    if m["H"] is not None:
        iso += f"T{m['H']}:{m['M']}:{m['S'] or '00'}{m['f'] or ''}"
        zone = m["zone"] or ""
        iso += zone if len(zone) != 5 else f"{zone[:3]}:{zone[3:]}"
    try:
        datetime.fromisoformat(iso)
    except ValueError:
        raise InputError(f"{iso!r} in its name is not a real date or time") from None
    try:
        return learned_at(iso, now)
    except InputError as exc:
        raise InputError(f"the time in its name, {exc}") from None


def snapshot_files(folder: str | Path, now: datetime | None = None) -> list[Snapshot]:
    """The snapshots in ``folder``, oldest first; every bad name is an error.

    Every file counts except hidden ones (``.DS_Store``) and tracker's own rejects
    files (``*.rejects.csv``, written beside each snapshot by ``--skip-bad``), so a
    workbook or a misnamed export is never skipped silently; subfolders are not read.
    Two files for the same time are refused: which one is the later word is unknown.
    """
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise InputError(f"{folder}: is a file; --snapshot-dir takes a folder of snapshots "
                         "(pass a single file without --snapshot-dir)")
    now = now or company_ops.now_utc()
    found, problems = [], []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.is_dir() or path.name.endswith(".rejects.csv"):
            continue
        try:
            found.append(Snapshot(path, snapshot_time(path.name, now)))
        except InputError as exc:
            problems.append(f"{path}: {exc}")
    if problems:
        raise InputError(f"{folder}: {len(problems)} file(s) are not snapshots tracker can "
                         "date; nothing was imported:\n  " + "\n  ".join(problems[:MAX_SHOWN]))
    if not found:
        raise InputError(f"{folder}: no snapshot files (expected names like {SNAPSHOT_NAMES})")
    found.sort(key=lambda s: s.collected_at)
    same = [(a, b) for a, b in itertools.pairwise(found)
            if a.collected_at == b.collected_at]
    if same:
        raise InputError(f"{folder}: {len(same)} pair(s) of files name the same time; keep "
                         "one snapshot per time:\n  " + "\n  ".join(
                             f"{a.path.name} and {b.path.name}: {a.collected_at:%Y-%m-%dT%H:%M:%S}Z"
                             for a, b in same[:MAX_SHOWN]))
    return found


def import_snapshots(
    store: Store,
    folder: str | Path,
    options: ImportOptions | None = None,
    *,
    progress: Progress | None = None,
    done: Callable[[ImportResult], None] | None = None,
) -> list[ImportResult]:
    """Import a folder of snapshots, each learned at the time its name says.

    Every file is read and validated first (as arrays, with the same rules, lines
    and rejects as :func:`import_file`); any bad file stops the import before a
    single row is written. Then one transaction resolves every company once and
    appends the snapshots oldest first with the store's bulk write, so each value is
    compared with what was known just before it and a repeated count adds nothing.
    ``done`` hears of each file once all are in.
    """
    options = options or ImportOptions()
    if options.collected_at is not None:
        raise InputError("--collected-at does not go with --snapshot-dir: each snapshot's "
                         "time comes from its file name")
    notify = progress or (lambda _p, _s: None)
    snapshots = snapshot_files(folder)
    parsed: list[ParsedFile] = []
    for snap in snapshots:
        notify(snap.path, "reading")
        parsed.append(parse_file(snap.path, options))
        _one_time(parsed[-1], snap.collected_at)
    # every name is looked up once, not once per snapshot that repeats it
    names = {n for p in parsed for n in (*p.good["company"].unique(), *_rejected_names(p))}
    with store.reading(f"reading companies for {folder}") as conn:
        preview = preview_ids(conn, names)
    parsed = [p if p.good.empty else reject_resolved_conflicts(p, {
        n: preview[n] for n in (*p.good["company"].unique(), *_rejected_names(p))})
        for p in parsed]
    rejects = [_accept(p, options, nothing=str(folder)) for p in parsed]
    results = []
    with store.transaction(f"importing {folder}") as conn:
        ids = company_ops.resolve(conn, dict.fromkeys(
            name for p in parsed for name in p.good["company"].unique()))
        for snap, one, rejects_path in zip(snapshots, parsed, rejects, strict=True):
            notify(snap.path, "writing")
            inserted, n_companies = write_parsed(store, conn, one, ids=ids,
                                                 collected_at=snap.collected_at)
            results.append(ImportResult(snap.path, one.layout, len(one.good), inserted,
                                        len(one.rejects), n_companies, rejects_path,
                                        snap.collected_at))
    for result in results:
        notify(result.path, "done")
        if done is not None:
            done(result)
    return results


__all__ = [
    "ImportOptions", "ImportResult", "Snapshot", "import_file", "import_files",
    "import_snapshots", "parse_file", "preview_ids", "resolve_conflicts", "snapshot_files",
    "snapshot_time", "write_parsed",
]
