"""The ``tracker`` command: parse, call one library function, print.

Every error the library raises on purpose (:class:`TrackerError`) becomes one line
on stderr and exit code 3 (Nagios "UNKNOWN": the command could not do its job).
Usage mistakes exit 3 too rather than click's 2, because for ``tracker run`` exit
code 2 means "new critical alerts" and cron monitors must never confuse the two.

Start-up must stay fast (``tracker --help`` and ``tracker status`` well under half
a second): this module imports only typer, rich's console and tracker's light
modules. pandas, SQLAlchemy and everything a command needs are imported inside
that command; tests/test_cli.py fails if a heavy module creeps back in here.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import traceback
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.text import Text

from tracker.errors import TrackerError
from tracker.records import ALERT_KINDS, ALERT_STATUSES
from tracker.workspace import Workspace, local_today, open_workspace, parse_day, parse_timestamp

if TYPE_CHECKING:
    import pandas as pd

    from tracker.config import Settings

EXIT_FAILED = 3


def _plain_type_labels() -> None:
    """Help shows what to type, not Python's types.

    typer 0.29 labels every value with its annotation (``FILE... <list[Path]>``,
    ``--note <str>``), and an argument's label ignores its metavar. An argument's
    name already says what it is, so it gets no label; an option's label reads the
    way click's did (TEXT, INTEGER, NUMBER, PATH, DATE), its choices stay as they are.
    """
    from typer.core import TyperArgument, TyperOption

    plain = {"<str>": "TEXT", "<int>": "INTEGER", "<float>": "NUMBER", "<path>": "PATH",
             "<list[str]>": "TEXT", "<list[int]>": "INTEGER", "<list[Path]>": "PATH",
             "<datetime>": "DATE"}
    days = {"since", "until", "day", "start", "end"}  # parse_day: YYYY-MM-DD
    option_type = TyperOption.display_type

    def display_type(self: TyperOption, ctx: object) -> str:
        label = option_type(self, ctx)  # type: ignore[arg-type]
        if label == "<str>" and self.name in days:
            return "YYYY-MM-DD"
        if label == "<str>" and self.name == "known_at":
            return "TIME"
        return plain.get(label, label)

    TyperOption.display_type = display_type  # type: ignore[method-assign]
    TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]


_plain_type_labels()

# Plain help (no rich markup): "[schedule] daily_at" in a docstring is config, not a style.
app = typer.Typer(
    rich_markup_mode=None,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Watch daily employee counts per company and flag moves that should not happen.",
)
db_app = typer.Typer(rich_markup_mode=None, no_args_is_help=True, help="Database maintenance.")
app.add_typer(db_app, name="db")
err = Console(stderr=True, highlight=False)


class Layout(StrEnum):
    auto = "auto"
    long = "long"
    wide = "wide"
    thinknum = "thinknum"


class TableFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


class FileFormat(StrEnum):
    csv = "csv"
    json = "json"
    parquet = "parquet"


#: The commands that may create the database; every other one only reads an existing
#: store (a missing one is an error naming where it was looked for, and nothing is
#: created). The one place this rule lives. ``db upgrade`` opens its own store.
CREATES_DATABASE = frozenset({"import", "collect", "run", "detect", "schedule"})


def _settings(ctx: typer.Context) -> Settings:
    """This invocation's settings, loaded once (before any database is opened)."""
    from tracker.config import load_settings

    obj = ctx.find_root().obj
    if obj.get("settings") is None:
        obj["settings"] = load_settings(obj.get("config"))
    return obj["settings"]


def _workspace(ctx: typer.Context) -> Workspace:
    """The workspace for this invocation, opened on first use and closed at exit;
    created only for the commands in CREATES_DATABASE."""
    obj = ctx.find_root().obj
    if obj.get("ws") is None:
        obj["ws"] = open_workspace(_settings(ctx), obj.get("db"),
                                   create=ctx.info_name in CREATES_DATABASE)
        ctx.find_root().call_on_close(obj["ws"].close)
    return obj["ws"]


def emit(frame: pd.DataFrame, fmt: str, output: Path | None = None) -> None:
    """Print (or write) a frame as a plain table, CSV or JSON records.

    Printed or written, CSV goes through tracker.output, the one CSV writer (cells
    that a spreadsheet would run as formulas are neutralized; JSON stays exact), and
    a file through its one atomic write (a failed write leaves the old file whole).
    """
    import pandas as pd

    from tracker.output import csv_text, write_file

    if fmt not in ("csv", "json"):
        rows = frame.astype(object).where(frame.notna(), None).to_numpy().tolist()
        text = table_text([str(c) for c in frame.columns], rows)
        if output is None:
            sys.stdout.write(text)
        else:
            write_file(output, text)
        return
    frame = frame.copy()
    for col in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[col]):
            only_dates = (frame[col].dropna().dt.normalize() == frame[col].dropna()).all()
            # the store keeps naive UTC: say so, as ISO 8601 does, with a Z
            pattern = "%Y-%m-%d" if only_dates else "%Y-%m-%dT%H:%M:%S.%fZ"
            frame[col] = frame[col].dt.strftime(pattern)
        elif pd.api.types.is_float_dtype(frame[col]):
            known = frame[col].dropna()
            if len(known) and (known == known.round()).all() and known.abs().max() < 2**53:
                frame[col] = frame[col].astype("Int64")  # counts: 576562, not 576562.0
        elif frame[col].dtype == object:
            frame[col] = [v.isoformat() if isinstance(v, date | datetime) else v
                          for v in frame[col]]
    if fmt == "csv":
        text = csv_text(frame)
    else:
        text = frame.to_json(orient="records", date_format="iso", indent=1,
                             force_ascii=False) + "\n"  # names in every script, as written
    if output is None:
        sys.stdout.write(text)
    else:
        write_file(output, text)


def emit_rows(
    columns: Sequence[str], rows: Sequence[Sequence[object]],
    types: Mapping[str, type] | None = None,
) -> None:
    """Print rows as the plain table ``emit`` prints, without importing pandas.

    For start-up time (``tracker status``): both go through :func:`table_text`, so a
    command moved to rows changes no byte of its output. ``types`` is accepted for
    callers that declare column types; the table needs none (a missing value is blank
    whatever its column).
    """
    sys.stdout.write(table_text(columns, rows))


_ESCAPES = str.maketrans({"\t": "\\t", "\n": "\\n", "\r": "\\r"})


def table_text(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """The plain table every command prints: for people, not for parsing.

    Numbers right-aligned (a count is a whole number, never 576562.0; other decimals
    to two places), text left-aligned, a missing value blank (not None, NaN or NaT),
    days as dates, times as UTC with a Z. CSV and JSON keep every value exact.
    """
    if not rows:
        return "(nothing)\n"
    cols = []
    for i, name in enumerate(columns):
        cells, numeric = _cells([row[i] for row in rows])
        width = max(len(name), *(len(c) for c in cells))
        align = str.rjust if numeric else str.ljust
        cols.append([align(name, width), *(align(c, width) for c in cells)])
    lines = (" ".join(line).rstrip() for line in zip(*cols, strict=True))
    return "\n".join(lines) + "\n"


def _missing(value: object) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN, NaT, pd.NA
    except (TypeError, ValueError):
        return False


def _cells(values: list[object]) -> tuple[list[str], bool]:
    """One column's cells as text, and whether it is numeric (right-aligned)."""
    present = [v for v in values if not _missing(v)]
    numeric = bool(present) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in present)
    if numeric:
        whole = all(float(v).is_integer() for v in present)
        return ["" if _missing(v) else (str(int(v)) if whole else f"{v:.2f}")
                for v in values], True
    stamps = [v for v in present if isinstance(v, datetime)]
    midnight = bool(stamps) and all(
        v.hour == v.minute == v.second == v.microsecond == 0 and v.tzinfo is None
        for v in stamps)
    out = []
    for v in values:
        if _missing(v):
            out.append("")
        elif isinstance(v, datetime):
            out.append(v.strftime("%Y-%m-%d") if midnight else _utc(v))
        elif isinstance(v, date):
            out.append(v.isoformat())
        elif isinstance(v, dict):  # a change log ({field: [old, new]}) or a mapping
            out.append("; ".join(_change_text(k, x) for k, x in v.items()).translate(_ESCAPES))
        else:
            out.append(str(v).translate(_ESCAPES))
    return out, False


def _change_text(key: object, value: object) -> str:
    """``status open -> acknowledged`` for an [old, new] pair, ``key=value`` otherwise."""
    if isinstance(value, list | tuple) and len(value) == 2:
        old, new = ("" if _missing(x) else x for x in value)
        return f"{key} {old} -> {new}" if old != "" else f"{key} -> {new}"
    return f"{key}={value}"


def _utc(value: datetime) -> str:
    """A time as UTC with a Z: the store keeps naive UTC, listings may give aware times."""
    from datetime import UTC

    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _print_version(value: bool) -> None:
    """``tracker --version``: which tracker a cron log or a bug report came from."""
    if value:
        from tracker import __version__

        typer.echo(f"tracker {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="config.toml (default: ./config.toml)")
    ] = None,
    db: Annotated[
        str | None,
        typer.Option("--db", help="Database URL; overrides TRACKER_DATABASE_URL and config"),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version,
                     help="Print the version and exit"),
    ] = False,
) -> None:
    """Global options shared by every command."""
    ctx.obj = {"config": config, "db": db, "ws": None}


@app.command("import")
def import_cmd(
    ctx: typer.Context,
    files: Annotated[
        list[Path] | None,
        typer.Argument(metavar="FILE...", help=".csv, .csv.gz, .json or .jsonl files, Parquet "
                       "files or Parquet dataset folders"),
    ] = None,
    snapshot_dir: Annotated[
        Path | None,
        typer.Option(help="Folder of snapshots, each collected when its name says "
                     "(2022-10-10.csv, 2022-10-10T06:00:00Z.csv, snapshot_20221010.csv)"),
    ] = None,
    layout: Annotated[Layout, typer.Option("--format", help="File layout")] = Layout.auto,
    company_col: Annotated[str | None, typer.Option(help="Column holding the company")] = None,
    date_col: Annotated[str | None, typer.Option(help="Column holding the date")] = None,
    count_col: Annotated[str | None, typer.Option(help="Column holding the count")] = None,
    metric: Annotated[str | None, typer.Option(
        help="Metric for every row (employees, employees:security)")] = None,
    segment: Annotated[str | None, typer.Option(
        help="Role segment for every row: metric employees:S (or METRIC:S)")] = None,
    source: Annotated[str | None, typer.Option(help="Source name for every row")] = None,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Import good rows, save bad ones to a rejects CSV")
    ] = False,
    rejects_dir: Annotated[
        Path | None, typer.Option(help="Folder for rejects CSVs (default: beside each file)")
    ] = None,
    collected_at: Annotated[
        str | None,
        typer.Option(help="When these values were learned (UTC; load snapshots in order)"),
    ] = None,
) -> None:
    """Import headcount CSVs (long, wide, Thinknum) or provider JSON exports; idempotent.

    A collected_at column, --collected-at or --snapshot-dir say when the values were
    learned, so replays as known see history as it was.
    """
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from tracker.ingest import ImportOptions, ImportResult, import_snapshots, snapshot_files

    if bool(files) == (snapshot_dir is not None):
        raise TrackerError("give either files to import or --snapshot-dir DIR, not "
                           + ("both" if files else "neither"))
    ws = _workspace(ctx)
    options = ImportOptions(layout.value, company_col, date_col, count_col, metric, source,
                            skip_bad, rejects_dir,
                            parse_timestamp(collected_at, "--collected-at"), segment)
    interactive = err.is_terminal
    bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                   TimeElapsedColumn(), console=err, transient=True)
    lines: list[str] = []

    def done(r: ImportResult) -> None:
        when = f" collected {r.collected_at:%Y-%m-%dT%H:%M:%S}Z" if snapshot_dir else ""
        line = (f"{r.path}{when}: {r.rows:,} rows ({r.layout}), {r.inserted:,} new, "
                f"{r.unchanged:,} unchanged, {r.rejected:,} rejected, {r.companies:,} companies")
        if r.rejects_path:
            line += f"; rejected rows saved to {r.rejects_path}"
        lines.append(line)

    try:
        with bar if interactive else nullcontext():
            task = None
            if interactive:
                count = len(snapshot_files(snapshot_dir)) if snapshot_dir else len(files or ())
                task = bar.add_task("importing", total=count * 3)

            def progress(path: Path, stage: str) -> None:
                if task is not None:
                    bar.update(task, advance=1, description=f"{path.name}: {stage}")

            if snapshot_dir is not None:
                import_snapshots(ws.store, snapshot_dir, options, progress=progress, done=done)
            else:
                ws.import_files(list(files or ()), options, progress=progress, done=done)
    finally:  # files imported before one that fails are said to be in
        for line in lines:
            typer.echo(line)


@app.command("companies")
def companies_cmd(
    ctx: typer.Context,
    fmt: Annotated[TableFormat, typer.Option("--format")] = TableFormat.table,
) -> None:
    """List companies: id, name, first and last day, last value, observations, metrics."""
    emit(_workspace(ctx).companies(), fmt.value)


@app.command("show")
def show_cmd(
    ctx: typer.Context,
    company: Annotated[str, typer.Argument(help="Company id, name or alias")],
    metric: Annotated[str, typer.Option(help="Metric")] = "employees",
    source: Annotated[str | None, typer.Option(help="Only this source")] = None,
    since: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD")] = None,
    known_at: Annotated[
        str | None, typer.Option(help="Show what was known at this UTC time (replay)")
    ] = None,
    fmt: Annotated[TableFormat, typer.Option("--format")] = TableFormat.table,
) -> None:
    """Show one company's daily series with day-over-day change."""
    first, known = parse_day(since, "--since"), parse_timestamp(known_at, "--known-at")
    frame = _workspace(ctx).series(company, metric=metric, source=source, since=first,
                                   known_at=known)
    frame["change_pct"] = frame["change_pct"].round(2)
    from tracker.inflation import with_ratio

    shown = with_ratio(_workspace(ctx), frame[["as_of", "source", "value", "change_pct"]],
                       company, metric=metric)
    emit(shown, fmt.value)


@app.command("export")
def export_cmd(
    ctx: typer.Context,
    fmt: Annotated[FileFormat, typer.Option("--format")] = FileFormat.csv,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="File (default stdout); a folder for --format parquet")] = None,
    company: Annotated[list[str] | None, typer.Option(help="Only these companies")] = None,
    metric: Annotated[str | None, typer.Option(help="Only this metric")] = None,
    since: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD")] = None,
    known_at: Annotated[str | None, typer.Option(help="As known at this UTC time")] = None,
    revisions: Annotated[bool, typer.Option(help="Every stored revision, not the latest")]
    = False,
) -> None:
    """Export observations as CSV, JSON or a Parquet dataset (a folder, by year).

    --revisions keeps every stored revision with its collected_at: what a replay
    --as-known of an imported copy needs.
    """
    filters = {"companies_": company, "metric": metric, "since": parse_day(since, "--since"),
               "known_at": parse_timestamp(known_at, "--known-at"), "revisions": revisions}
    if fmt is FileFormat.parquet:
        if output is None:
            raise TrackerError("--format parquet writes a folder: give it with -o DIR")
        done = _workspace(ctx).export_parquet(output, **filters)
        typer.echo(f"{done.path}: {done.rows:,} rows in {done.files:,} Parquet file(s)")
        return
    emit(_workspace(ctx).export(**filters), fmt.value, output)


@app.command("collect")
def collect_cmd(
    ctx: typer.Context,
    day: Annotated[str | None, typer.Option(help="Day to collect for (default: today)")] = None,
    source: Annotated[list[str] | None, typer.Option(help="Only these configured sources")]
    = None,
) -> None:
    """Run every configured source once and store what they return."""
    from tracker.collect import collect, require_sources

    require_sources(_settings(ctx), source)  # nothing to collect: exit 3, nothing created
    result = collect(_workspace(ctx), parse_day(day, "--day"), source)
    for o in result.outcomes:
        line = f"{o.source}: {o.status}, {o.ok:,} observations ({o.inserted:,} new)"
        if o.failures:
            line += f", {len(o.failures):,} failed"
        if o.reason:
            line += f": {o.reason}"
        typer.echo(line)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


@app.command("run")
def run_cmd(
    ctx: typer.Context,
    day: Annotated[str | None, typer.Option(help="Day to run for (default: today)")] = None,
) -> int:
    """The main job: collect, detect, alert, notify, report; exit 0/1/2/3 like Nagios."""
    from tracker.collect import require_sources
    from tracker.job import EXIT_FAILED as RUN_FAILED
    from tracker.job import ping_failure, run_once

    try:
        require_sources(_settings(ctx))  # before the store: a run of nothing creates nothing
        ws = _workspace(ctx)
    except TrackerError as exc:  # cron reads stdout and the exit code: say UNKNOWN there too
        line = f"UNKNOWN: run failed: {exc}"
        problems = ping_failure(ctx.find_root().obj.get("settings")
                                or ctx.find_root().obj.get("config"), line)
        typer.echo("; ".join([line, *problems]))
        return RUN_FAILED
    result = run_once(ws, parse_day(day, "--day"))
    typer.echo(result.summary())
    return result.exit_code


@app.command("schedule")
def schedule_cmd(ctx: typer.Context) -> None:
    """Run the main job daily at [schedule] daily_at until SIGTERM or Ctrl-C."""
    import logging

    from tracker.collect import require_sources
    from tracker.schedule import describe_next, serve

    require_sources(_settings(ctx))  # before a database is opened (or created)
    ws = _workspace(ctx)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    typer.echo(describe_next(ws.settings.schedule))
    sys.stdout.flush()  # seen now under systemd or a terminal, not at exit
    serve(ws)


@app.command("status")
def status_cmd(
    ctx: typer.Context,
    runs: Annotated[int, typer.Option(min=1, help="How many recent runs to show")] = 5,
    max_age: Annotated[
        float | None,
        typer.Option("--max-age", min=0, metavar="HOURS",
                     help="CRITICAL when the last successful run is older (default 36)"),
    ] = None,
) -> int:
    """Health check, exit 0/1/2/3 like Nagios: recent runs, failing sources, stale data."""
    from tracker.status import STALE_COLUMNS, status
    from tracker.store.runs import RUN_COLUMNS, SOURCE_COLUMNS

    try:
        report = status(_workspace(ctx), runs, max_age_hours=max_age)
    except TrackerError as exc:  # a check that cannot look is UNKNOWN (3), said on stdout
        typer.echo(f"UNKNOWN: {str(exc).splitlines()[0]}")
        raise
    typer.echo(report.headline)
    typer.echo("Recent runs:")
    emit_rows(RUN_COLUMNS, report.run_rows)
    typer.echo("Sources in the last run:")
    emit_rows(SOURCE_COLUMNS, report.source_rows)
    typer.echo(f"Stale companies (no observation for {report.stale_days}+ days):")
    emit_rows(STALE_COLUMNS, report.stale_rows, types={"last_day": date, "days_since": int})
    return report.exit_code


#: Choices for --status and --kind, from the alert contract in tracker.records.
Status = StrEnum("Status", {s: s for s in ALERT_STATUSES})  # type: ignore[misc]
Kind = StrEnum("Kind", {k: k for k in ALERT_KINDS})  # type: ignore[misc]


@app.command("detect")
def detect_cmd(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(help="Store anomalies from this day on")] = None,
    company: Annotated[list[str] | None, typer.Option(help="Only these companies")] = None,
    known_at: Annotated[
        str | None, typer.Option(help="Use only what was known at this UTC time (replay)")
    ] = None,
    day: Annotated[
        str | None, typer.Option(help="Judge the days up to this one (default: today)")
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Re-detect over the whole history, not only new days")
    ] = False,
    fmt: Annotated[TableFormat, typer.Option("--format")] = TableFormat.table,
) -> None:
    """Detect abnormal moves and store them as alerts: the days new since the last
    detection (as `tracker run` does), or the whole history with a filter or --full."""
    from tracker.detection import detect_new, run_detection

    ws = _workspace(ctx)
    until = parse_day(day, "--day")
    if full or since or company or known_at:
        result = run_detection(ws, companies=company, since=parse_day(since, "--since"),
                               known_at=parse_timestamp(known_at, "--known-at"), until=until)
    else:
        result = detect_new(ws, until or ws.today())
    if full and ws.settings.population.enabled:
        from tracker.population import find_population_events

        found = find_population_events(ws, until=until)
        err.print(f"{len(found.events):,} population event(s)", highlight=False)
    err.print(f"{result.series:,} series checked: {len(result.anomalies):,} anomalies, "
              f"{len(result.new):,} new alert(s), {result.updated:,} updated, "
              f"{len(result.events):,} cross-company event(s)", highlight=False)
    if len(result.new):
        cols = ["company", "metric", "source", "date", "detected_on", "kind", "change_pct",
                "severity", "verdict"]
        shown = result.new[cols].copy()
        shown["change_pct"] = shown["change_pct"].round(2)
        emit(shown, fmt.value)


@app.command("events")
def events_cmd(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(help="Events lasting to this day or later")] = None,
    until: Annotated[str | None, typer.Option(help="Events starting on this day or earlier")
                     ] = None,
    metric: Annotated[str | None, typer.Option(help="Only this metric, e.g. employees")] = None,
    cohort: Annotated[str | None, typer.Option(
        help="Only this cohort ([cohorts.NAME], or industry:TAG)")] = None,
    members: Annotated[str | None, typer.Option(
        "--members", help="List the members of this event instead", metavar="EVENT_ID")] = None,
    fmt: Annotated[TableFormat, typer.Option("--format")] = TableFormat.table,
) -> None:
    """List population (platform-wide) events: an abnormal share of the series of a
    metric, cohort or industry moving the same way on the same days."""
    from tracker.population import event_members, list_events

    ws = _workspace(ctx)
    if members is not None:
        emit(event_members(ws, members), fmt.value)
        return
    emit(list_events(ws, since=parse_day(since, "--since"), until=parse_day(until, "--until"),
                     metric=metric, cohort=cohort), fmt.value)


Severity = StrEnum("Severity", {s: s for s in ("info", "warning", "critical")})  # type: ignore[misc]


@app.command("alerts")
def alerts_cmd(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(help="Alerts from this day on")] = None,
    status: Annotated[Status | None, typer.Option(help="Only this status")] = None,
    open_only: Annotated[bool, typer.Option(
        "--open", help="Only open alerts (not yet reviewed)")] = False,
    kind: Annotated[Kind | None, typer.Option(help="Only this kind")] = None,
    company: Annotated[str | None, typer.Option(help="Only this company")] = None,
    severity: Annotated[Severity | None, typer.Option(
        help="Only this severity and above")] = None,
    limit: Annotated[int | None, typer.Option(
        min=1, help="Only the N most recent alerts", metavar="N")] = None,
    metric: Annotated[str | None, typer.Option(
        help="Only this metric (employees:security: a segment's alerts)")] = None,
    ids: Annotated[list[int] | None, typer.Option(
        "--id", help="Only this alert (repeatable)", metavar="ID")] = None,
    history: Annotated[bool, typer.Option(
        "--history", help="Instead of the alerts, every recorded change of them: verdict, "
        "status and values, when (UTC), for which day of data, and why")] = False,
    fmt: Annotated[TableFormat, typer.Option("--format")] = TableFormat.table,
) -> None:
    """List stored alerts: the alert record, when it was notified, who reviewed it and
    when, and the note."""
    from tracker.alerts import alert_history, list_alerts

    ws = _workspace(ctx)
    frame = list_alerts(ws, since=parse_day(since, "--since"),
                        status=status.value if status else None, open_only=open_only,
                        kind=kind.value if kind else None, company=company,
                        min_severity=severity.value if severity else None, limit=limit,
                        ids=ids or None, metric=metric)
    if history:
        frame = alert_history(ws, [int(i) for i in frame["id"]])
    emit(frame, fmt.value)


@app.command("review")
def review_cmd(
    ctx: typer.Context,
    ids: Annotated[list[int], typer.Argument(metavar="ID",
                                             help="Alert ids (see 'tracker alerts')")],
    status: Annotated[Status, typer.Option(help="New status")] = Status.acknowledged,
    note: Annotated[str | None, typer.Option(help="A note kept with the alert")] = None,
    author: Annotated[str | None, typer.Option(
        help="Who reviewed (default: the OS user)")] = None,
) -> None:
    """Mark alerts reviewed: acknowledged, dismissed, resolved (or open again)."""
    from tracker.alerts import set_status

    count = set_status(_workspace(ctx), sorted(set(ids)), status.value, note, author)
    typer.echo(f"{count} alert(s) marked {status.value}")


silence_app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                          help="Mute a company's or a kind's alerts until a day.")
app.add_typer(silence_app, name="silence")


@silence_app.command("add")
def silence_add_cmd(
    ctx: typer.Context,
    until: Annotated[str, typer.Option(
        help="Last day silenced, YYYY-MM-DD (inclusive)", metavar="DAY")],
    note: Annotated[str, typer.Option(help="Why (kept with the silence)", metavar="TEXT")],
    company: Annotated[str | None, typer.Argument(
        help="Company id, name or alias (omit to silence a --kind everywhere)")] = None,
    kind: Annotated[Kind | None, typer.Option(help="Only alerts of this kind")] = None,
    author: Annotated[str | None, typer.Option(help="Who (default: the OS user)")] = None,
) -> None:
    """Silence alerts: not notified, not in tracker run's exit code, still listed."""
    from tracker.silences import add_silence

    day = parse_day(until, "--until")
    assert day is not None
    made = add_silence(_workspace(ctx), company=company, kind=kind.value if kind else None,
                       until=day, note=note, author=author)
    what = " ".join(p for p in (made.company, made.kind and f"{made.kind} alerts") if p)
    typer.echo(f"silence {made.id}: {what} silenced through {made.until} by {made.author}")


@silence_app.command("list")
def silence_list_cmd(
    ctx: typer.Context,
    active: Annotated[bool, typer.Option("--active", help="Only active silences")] = False,
    fmt: Annotated[TableFormat, typer.Option("--format")] = TableFormat.table,
) -> None:
    """List silences, active and expired."""
    from tracker.silences import list_silences

    emit(list_silences(_workspace(ctx), active_only=active), fmt.value)


@silence_app.command("remove")
def silence_remove_cmd(
    ctx: typer.Context,
    silence_id: Annotated[int, typer.Argument(metavar="ID",
                                              help="Silence id (see 'tracker silence list')")],
) -> None:
    """Remove a silence: its alerts notify again while they are fresh."""
    from tracker.silences import remove_silence

    gone = remove_silence(_workspace(ctx), silence_id)
    typer.echo(f"silence {gone.id} removed")


@app.command("notify")
def notify_cmd(
    ctx: typer.Context,
    test: Annotated[bool, typer.Option(
        "--test", help="Send one marked test message through each notifier")] = False,
    only: Annotated[list[str] | None, typer.Option(
        "--only", metavar="NAME", help="Only [notify.NAME] (repeatable; even if disabled)")]
    = None,
) -> int:
    """Test the notifiers: one line per notifier, ok or failed and why; exit 0 or 3."""
    from tracker.errors import InputError
    from tracker.notify import send_test_messages

    if not test:
        raise InputError("tracker notify needs --test (alerts are sent by tracker run); "
                         "e.g. tracker notify --test --only slack")
    settings = _settings(ctx)
    outcomes = send_test_messages(settings.notify, local_today(settings), only=only)
    for o in outcomes:
        typer.echo(f"{o.name}: ok" if o.status == "ok" else f"{o.name}: failed: {o.reason}")
    bad = [o.name for o in outcomes if o.status != "ok"]
    typer.echo(f"{len(outcomes) - len(bad)} of {len(outcomes)} notifier(s) ok"
               + (f"; failed: {', '.join(bad)}" if bad else ""))
    return EXIT_FAILED if bad else 0


references_app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                             help="Official headcounts to compare claimed profiles with.")
app.add_typer(references_app, name="references")


@references_app.command("import")
def references_import_cmd(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE",
                                         help="CSV: company,date,count,source")],
) -> None:
    """Import reference headcounts (all rows or none); a company's day given again
    replaces the stored one."""
    from tracker.references import import_references

    done = import_references(_workspace(ctx), file)
    typer.echo(f"{done.path}: {done.rows} reference(s) of {done.companies} company(ies)")


@references_app.command("list")
def references_list_cmd(
    ctx: typer.Context,
    company: Annotated[str | None, typer.Argument(help="Company id, name or alias")] = None,
    fmt: Annotated[TableFormat, typer.Option("--format")] = TableFormat.table,
) -> None:
    """List reference headcounts by company and day, with their source."""
    from tracker.references import list_references

    emit(list_references(_workspace(ctx), company), fmt.value)


@app.command("plot")
def plot_cmd(
    ctx: typer.Context,
    company: Annotated[
        str | None, typer.Argument(help="Company id, name or alias (omit for an overview)")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help=".png or .svg")] = None,
    since: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD")] = None,
    until: Annotated[str | None, typer.Option(help="Last day (draw a replay)")] = None,
    metric: Annotated[str, typer.Option(help="Metric")] = "employees",
    log: Annotated[bool, typer.Option(help="Logarithmic y axis")] = False,
    ratio: Annotated[bool, typer.Option(
        "--ratio", help="Also the ratio claimed / reference headcount (second axis)")] = False,
) -> None:
    """Chart a company's series with its alerts (and its reference headcount), or an
    overview of companies with alerts."""
    from tracker.metrics import chart_key
    from tracker.plots import plot_company, plot_overview, save

    ws = _workspace(ctx)
    first, last = parse_day(since, "--since"), parse_day(until, "--until")
    if company:
        fig = plot_company(ws, company, since=first, until=last, metric=metric, log=log,
                           ratio=ratio)
    else:
        fig = plot_overview(ws, since=first, until=last, metric=metric)
    # the file is named after the company's id, never after what was typed: a name
    # may hold '/' or '..' (or be in any script), an id is a safe file name
    name = chart_key(ws.store.company_id(company) if company else "overview", metric)
    target = output or ws.settings.resolve(ws.settings.report.output_dir) / f"{name}.png"
    typer.echo(str(save(fig, target)))


@app.command("replay")
def replay_cmd(
    ctx: typer.Context,
    start: Annotated[str | None, typer.Option(help="First day of the replay")] = None,
    end: Annotated[str | None, typer.Option(help="Last day (data after it is not used)")]
    = None,
    company: Annotated[list[str] | None, typer.Option(help="Only these companies")] = None,
    labels: Annotated[
        Path | None, typer.Option(help="CSV of annotated events (company,date,kind[,end])")
    ] = None,
    tolerance: Annotated[int, typer.Option(help="Days a detection may be off a label")] = 3,
    as_known: Annotated[
        bool, typer.Option("--as-known", help="Each day from only what was known by then")
    ] = False,
    dataset: Annotated[
        Path | None, typer.Option(help="Replay a Parquet dataset (file or folder), not the store")
    ] = None,
    fmt: Annotated[TableFormat, typer.Option("--format")] = TableFormat.table,
) -> None:
    """Replay history: each verdict on the day a daily run would have reached it.

    With --labels, score the detector against annotated events instead; with
    --dataset, replay a Parquet dataset without importing it (on the configured
    engine). Nothing is written to the store.
    """
    from tracker.detect.evaluate import report
    from tracker.replay import dataset_timeline, evaluate, read_labels, timeline

    first, last = parse_day(start, "--start"), parse_day(end, "--end")
    if first and last and first > last:
        raise TrackerError(f"--start {first} is after --end {last}")
    if dataset is not None:  # no store involved: nothing to open
        if labels is not None or as_known:
            raise TrackerError(f"{'--labels' if labels else '--as-known'} reads the store: "
                               "import the dataset into a scratch database first "
                               "(tracker --db sqlite:///scratch.db import DIR)")
        emit(dataset_timeline(_settings(ctx).detect, dataset, start=first, end=last,
                              companies=company), fmt.value)
        return
    ws = _workspace(ctx)
    if labels is not None:
        typer.echo(report(evaluate(ws, read_labels(labels), tolerance=tolerance, end=last)))
        return
    found = timeline(ws, start=first, end=last, companies=company, as_known=as_known)
    emit(found, fmt.value)
    if as_known and found.empty and first and last:
        from tracker.replay import why_nothing_known

        if why := why_nothing_known(ws, first, last, company):
            err.print(f"note: {why}", markup=False, soft_wrap=True)


@app.command("report")
def report_cmd(
    ctx: typer.Context,
    day: Annotated[str | None, typer.Option(help="Day of the report (default: today)")] = None,
    output_dir: Annotated[
        Path | None, typer.Option(help="Folder (default: [report] output_dir)")
    ] = None,
) -> None:
    """Write the HTML report (alerts, events, charts) for a day; prints its path."""
    from tracker.report import build_report

    ws = _workspace(ctx)
    report = build_report(ws, parse_day(day, "--day") or ws.today(), output_dir=output_dir)
    typer.echo(str(report.path))


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply pending schema migrations (also done automatically on first use); on
    PostgreSQL also create the partitions of this quarter and the next."""
    from tracker.config import load_settings
    from tracker.store import Store
    from tracker.store.engine import redact

    obj = ctx.find_root().obj
    settings = load_settings(obj.get("config"))
    url = settings.database_url(obj.get("db"))
    store = Store(url, migrate=False)
    try:
        before, after, made = store.upgrade()
    finally:
        store.close()
    state = "already at" if before == after else f"upgraded from {before or 'empty'} to"
    typer.echo(f"{redact(url)}: {state} revision {after}"
               + (f"; created partitions {', '.join(made)}" if made else ""))


@app.command("plugins")
def plugins_cmd(
    fmt: Annotated[TableFormat, typer.Option("--format")] = TableFormat.table,
) -> None:
    """List installed plugins (sources, notifiers) with their versions."""
    from dataclasses import asdict

    import pandas as pd

    from tracker.plugins import installed

    emit(pd.DataFrame([asdict(p) for p in installed()]), fmt.value)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the process exit code."""
    if hasattr(signal, "SIGXFSZ"):
        # past a file-size limit, write() then fails with EFBIG, which tracker.output
        # turns into one clear line, instead of the signal killing the process
        with contextlib.suppress(ValueError):  # not the main thread: leave it as it is
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        result = app(args=argv, standalone_mode=False, prog_name="tracker")
    except typer.Exit as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except typer.Abort:
        err.print("aborted")
        return EXIT_FAILED
    except typer.TyperException as exc:  # usage errors: bad flag, missing argument
        show = getattr(exc, "show", None)
        if callable(show):
            show(file=sys.stderr)
        else:
            err.print(f"error: {exc}", markup=False)
        return EXIT_FAILED
    except TrackerError as exc:
        err.print(Text.assemble(("error: ", "bold red"), str(exc)), soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return EXIT_FAILED
    except Exception:  # a bug: show it, but still exit 3 so cron reads "UNKNOWN", not 1
        from tracker.sources.http_values import REDACTOR  # an exception may quote a key

        sys.stderr.write(REDACTOR(traceback.format_exc()))
        err.print("error: internal error (a bug in tracker; please report the traceback above)",
                  markup=False, highlight=False)
        return EXIT_FAILED
    return result if isinstance(result, int) else 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
