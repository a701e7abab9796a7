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


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.close()


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
    except ArgumentError as exc:
        raise StoreError(f"database URL {url!r} is not valid: {exc}") from exc
    backend = parsed.get_backend_name()
    kwargs: dict = {}
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        db = parsed.database
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
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
    return engine


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str | None]:
    """Apply pending migrations; returns (before, after) revisions."""
    with translate(engine, "migrating"), engine.begin() as conn:
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
