"""A configured tracker: settings plus the store they point at.

This is the object notebooks and the CLI share, so a command is a few lines over a
method here and a notebook can do exactly what the CLI does.

Importing this module stays cheap (no pandas, SQLAlchemy or readers) because the
CLI imports it to start at all; what a method needs is imported by that method.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracker.errors import InputError, NotFoundError

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd

    from tracker.config import Settings
    from tracker.ingest import ImportOptions, ImportResult, Progress
    from tracker.parquet import ParquetExport
    from tracker.records import CompanyRef
    from tracker.store import Store


@dataclass
class Workspace:
    """Settings and an open, migrated store."""

    settings: Settings
    store: Store

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def today(self) -> date:
        """'Today' in the schedule's timezone: the day a daily run collects for."""
        return local_today(self.settings)

    def sync_companies(self) -> int:
        """Create or update the companies declared under [companies.ID] in config, and
        the references they declare (``tracker.references``)."""
        from tracker.references import config_rows
        from tracker.store import references as reference_store

        declared = self.settings.companies
        if not declared:
            return 0
        with self.store.transaction("saving configured companies") as conn:
            for cid, spec in declared.items():
                self.store.upsert_company(
                    cid, name=spec.name, aliases=spec.aliases, tags=spec.tags,
                    external_ids=spec.external_ids, reference_count=spec.reference_count,
                    reference_date=spec.reference_date, conn=conn,
                )
            # config references are upserted with their companies, on every open
            reference_store.replace(conn, config_rows(declared))
        return len(declared)

    def company_refs(self) -> list[CompanyRef]:
        """Every known company, as sources need them."""
        from tracker.store import companies as company_ops

        with self.store.reading("listing companies") as conn:
            return company_ops.refs(conn)

    def import_files(
        self, paths: list[str | Path], options: ImportOptions | None = None,
        progress: Progress | None = None,
        done: Callable[[ImportResult], None] | None = None,
    ) -> list[ImportResult]:
        from tracker.ingest import import_files

        return import_files(self.store, paths, options, progress=progress, done=done)

    def companies(self) -> pd.DataFrame:
        return self.store.companies_summary()

    def series(
        self,
        company: str,
        *,
        metric: str = "employees",
        source: str | None = None,
        since: date | None = None,
        known_at: datetime | None = None,
    ) -> pd.DataFrame:
        """One company's observations with the day-over-day change per source."""
        from tracker.metrics import check_metric

        check_metric(metric, "--metric")
        cid = self.store.company_id(company)
        frame = self.store.observations([cid], metric=metric, source=source, since=since,
                                        known_at=known_at)
        if frame.empty:
            raise NotFoundError(
                f"no {metric!r} observations for {company!r}"
                + (f" from source {source!r}" if source else "")
                + (f" since {since}" if since else "")
            )
        frame["change_pct"] = frame.groupby("source")["value"].pct_change() * 100
        return frame

    def export(
        self,
        *,
        companies_: list[str] | None = None,
        metric: str | None = None,
        since: date | None = None,
        known_at: datetime | None = None,
        revisions: bool = False,
    ) -> pd.DataFrame:
        """Observations (``OBS_COLUMNS``) with each company's name in ``company_name``.

        The id alone is opaque for a name like '株式会社テスト'; the name goes last so
        that readers of the existing columns by position keep working.
        """
        from tracker.metrics import check_metric
        from tracker.store import companies as company_ops

        if metric is not None:
            check_metric(metric, "--metric")
        ids = [self.store.company_id(c) for c in companies_] if companies_ else None
        frame = self.store.observations(ids, metric=metric, since=since, known_at=known_at,
                                        revisions=revisions)
        frame["company_name"] = frame["company"].map(company_ops.names(self.store))
        return frame

    def export_parquet(self, path: str | Path, **filters: Any) -> ParquetExport:
        """:meth:`export` (same ``filters``) as a Parquet dataset in folder ``path``
        (see :mod:`tracker.parquet`); ``revisions=True`` keeps what a replay as known
        needs."""
        from tracker.parquet import require_pyarrow, write_dataset

        require_pyarrow()  # before reading the store: a missing extra fails at once
        return write_dataset(self.export(**filters), path)


def local_today(settings: Settings) -> date:
    """'Today' in the schedule's timezone, for commands that need no database."""
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo(settings.schedule.timezone)).date()


def open_workspace(
    config: str | Path | Settings | None = None, db: str | None = None, *, create: bool = True
) -> Workspace:
    """Load config, open (and migrate) the database, sync declared companies.

    ``create=False`` is for commands that only read: a database that does not exist
    (or holds no tracker tables) is then an error naming what was looked for where,
    and nothing is created, so a typo'd ``--db`` cannot leave an empty store behind
    and print "(nothing)" as if the store were empty.
    """
    from tracker.config import Settings, load_settings
    from tracker.store import Store
    from tracker.store.engine import MissingDatabaseError

    settings = config if isinstance(config, Settings) else load_settings(config)
    try:
        store = Store(settings.database_url(db), create=create)
    except MissingDatabaseError as exc:
        raise MissingDatabaseError(
            f"{exc} ({database_origin(settings, db)}); nothing was created: a database "
            "is created by 'tracker import', 'tracker collect' or 'tracker run'"
        ) from None
    ws = Workspace(settings, store)
    try:
        ws.sync_companies()
    except BaseException:
        store.close()
        raise
    return ws


def database_origin(settings: Settings, db: str | None = None) -> str:
    """Where the database URL came from, in the precedence ``Settings.database_url``
    applies, so an error can say which setting to fix."""
    import os

    from tracker.config import DATABASE_ENV

    if db:
        return "from --db"
    if os.environ.get(DATABASE_ENV):
        return f"from {DATABASE_ENV}"
    if settings.database.url:
        return f"from [database] url in {settings.config_path}"
    if settings.config_path is not None:
        return f"the default of {settings.config_path}, which sets no [database] url"
    return (f"the default: no config.toml in {settings.base_dir}; "
            "pass --config PATH or --db URL")


def parse_day(value: str | None, flag: str) -> date | None:
    """A CLI date flag, with an error naming the flag."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InputError(f"{flag}: {value!r} is not a date (expected YYYY-MM-DD)") from None


def parse_timestamp(value: str | None, flag: str) -> datetime | None:
    """A CLI timestamp flag (ISO 8601; an offset is converted to naive UTC)."""
    if value is None:
        return None
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(
            f"{flag}: {value!r} is not a timestamp (expected e.g. 2022-10-12T00:00:00Z)"
        ) from None
    if stamp.tzinfo is not None:
        from datetime import UTC

        stamp = stamp.astimezone(UTC).replace(tzinfo=None)
    if len(value) == 10:  # a bare date means the end of that day
        stamp = stamp.replace(hour=23, minute=59, second=59, microsecond=999999)
    return stamp
