"""Opening a database: engine settings, migrations, error translation.

SQLite gets WAL and a busy timeout so that a cron ``tracker run`` writing and an
analyst's ``tracker show`` reading in another process never fail each other.
Migrations run automatically on first use, so a fresh clone needs no setup step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from tracker.errors import StoreError

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


#: Key of the PostgreSQL advisory lock that serializes writing transactions, so two
#: concurrent imports cannot both decide that the same value is new.
PG_WRITE_LOCK = 0x7472_6163_6B65_72  # "tracker"


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    # Let SQLAlchemy's "begin" event emit BEGIN itself (see _sqlite_begin) instead of
    # pysqlite's implicit, deferred transactions.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    """Writing transactions take the write lock up front (BEGIN IMMEDIATE).

    A deferred transaction that reads first and writes later cannot upgrade its
    lock once another process has committed (SQLITE_BUSY_SNAPSHOT, which no busy
    timeout cures); taking the lock at BEGIN makes concurrent writers queue.
    Readers stay deferred so they never block behind a writer (WAL).
    """
    immediate = conn.get_execution_options().get("tracker_write")
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def lock_for_writing(conn: Connection) -> None:
    """Serialize writers on PostgreSQL, as BEGIN IMMEDIATE does on SQLite."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_WRITE_LOCK})")


def redact(url: str) -> str:
    """The URL with its password hidden, safe for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def create(url: str) -> Engine:
    """An engine for ``url``; a SQLite file's folder is created if missing."""
    try:
        parsed = make_url(url)
        parsed.port  # noqa: B018 - a non-numeric port only fails when read
    except (ArgumentError, ValueError) as exc:
        scheme = url.split(":", 1)[0] if ":" in url else "?"
        # never echo the URL: it may hold a password
        raise StoreError(
            f"database URL (scheme {scheme!r}) is not valid: expected e.g. "
            "sqlite:///path/to/file.db or postgresql+psycopg://user@host:5432/db"
        ) from exc
    backend = parsed.get_backend_name()
    kwargs: dict = {}
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        db = parsed.database
        if db and db != ":memory:":
            try:
                Path(db).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"database {db}: cannot create its folder: {exc}") from exc
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    try:
        engine = create_engine(parsed, **kwargs)
    except NoSuchModuleError as exc:
        raise StoreError(f"database URL {redact(url)}: unsupported dialect ({exc})") from exc
    except ModuleNotFoundError as exc:
        raise StoreError(
            f"database URL {redact(url)} needs the driver {exc.name!r}: "
            "pip install 'headcount-tracker[postgres]'"
        ) from exc
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str | None]:
    """Apply pending migrations; returns (before, after) revisions."""
    with (translate(engine, "migrating"),
          engine.connect().execution_options(tracker_write=True) as conn, conn.begin()):
        # two processes starting on an empty database must not both create tables
        lock_for_writing(conn)
        before = MigrationContext.configure(conn).get_current_revision()
        command.upgrade(_alembic_config(conn), "head")
        after = MigrationContext.configure(conn).get_current_revision()
    return before, after


@contextlib.contextmanager
def translate(engine: Engine, doing: str) -> Iterator[None]:
    """Turn driver and SQLAlchemy errors into a StoreError that names the database."""
    try:
        yield
    except StoreError:
        raise
    except (DBAPIError, SQLAlchemyError, OSError) as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StoreError(
            f"database {redact(engine.url.render_as_string(hide_password=False))}: "
            f"failed while {doing}: {detail}"
        ) from exc
