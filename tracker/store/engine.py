"""Opening a database: engine settings, migrations, error translation.

SQLite gets WAL and a busy timeout so that a cron ``tracker run`` writing and an
analyst's ``tracker show`` reading in another process never fail each other.
Migrations run automatically on first use, so a fresh clone needs no setup step.

Alembic is imported only when a migration is actually due: every command opens the
store, and importing Alembic (with its DDL modules for every dialect) would cost
more than the whole of ``tracker status``. An up-to-date schema is recognised with
one query of ``alembic_version`` against the head read from the revision files.
"""

from __future__ import annotations

import ast
import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from tracker.errors import StoreError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Alembic's default version table and column, which migrations/env.py keeps.
VERSION_TABLE = "alembic_version"


def _alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

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


#: The database backends the schema, the migrations and the bulk writes are tested on.
SUPPORTED_BACKENDS = frozenset({"sqlite", "postgresql"})


class MissingDatabaseError(StoreError):
    """A command that only reads was pointed at a database that does not exist (yet).

    Its own type so that the workspace can add where the URL came from (a typo'd
    ``--db``, the config, the default) before the one line reaches the user.
    """


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names; None for other backends, memory or URI filenames."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.query.get("uri"):
        return None
    db = parsed.database
    return Path(db) if db and db != ":memory:" else None


def create(url: str, *, create_missing: bool = True) -> Engine:
    """An engine for ``url``; a SQLite file's folder is created if missing.

    With ``create_missing=False`` a SQLite file that does not exist is a
    :class:`MissingDatabaseError` and nothing is created: connecting would create
    the file, and a read command must not leave an empty database (or its folder)
    behind a typo.
    """
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
    if backend not in SUPPORTED_BACKENDS:
        # SQLAlchemy would name a driver to install, but the schema and the bulk paths
        # are written and tested for these two only: say so instead of half-working.
        raise StoreError(
            f"database URL {redact(url)}: unsupported dialect {backend!r}; tracker stores its "
            "data in SQLite (sqlite:///path/to/file.db) or PostgreSQL "
            "(postgresql+psycopg://user@host:5432/db)"
        )
    kwargs: dict = {}
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        db = parsed.database
        file = sqlite_file(url)
        if file is not None and not create_missing and not file.is_file():
            raise MissingDatabaseError(f"no database file {file.resolve()}")
        if db and db != ":memory:" and create_missing:
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


def _declared_revisions(path: Path) -> tuple[str, set[str]] | None:
    """(revision, the revisions it follows) as a migration file states them literally.

    None when the file does not spell them as plain literals; the caller then asks
    Alembic rather than guess.
    """
    found: dict[str, object] = {}
    for node in ast.parse(path.read_text(encoding="utf-8"), str(path)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
            try:
                found[target.id] = ast.literal_eval(value)
            except ValueError:
                return None
    revision, down = found.get("revision"), found.get("down_revision")
    if not isinstance(revision, str):
        return None
    if down is None:
        return revision, set()
    if isinstance(down, str):
        return revision, {down}
    if isinstance(down, tuple | list) and all(isinstance(d, str) for d in down):
        return revision, set(down)
    return None


@functools.cache
def head_revision() -> str | None:
    """The newest migration, read from the revision files without importing Alembic.

    Falls back to Alembic's own answer when the files are anything but a plain
    history with one head (a merge point pending, a computed revision id), so the
    shortcut can only ever agree with Alembic.
    """
    declared = [_declared_revisions(p) for p in sorted((MIGRATIONS / "versions").glob("*.py"))]
    parsed = [d for d in declared if d is not None]
    if parsed and len(parsed) == len(declared):
        revisions = dict(parsed)
        followed = set().union(*revisions.values())
        heads = set(revisions) - followed
        if len(revisions) == len(parsed) and len(heads) == 1 and followed <= set(revisions):
            return heads.pop()
    return _alembic_head_revision()


def _alembic_head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def _stored_revision(conn: Connection) -> str | None:
    """The revision recorded in the database, None for an empty one."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(rows) <= 1:
        return rows[0] if rows else None
    # several heads stamped: let Alembic raise its own explanation
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def require_schema(engine: Engine) -> None:
    """Raise MissingDatabaseError when the database holds no tracker schema at all.

    For a read command: an existing but empty PostgreSQL database, or a SQLite file
    of another program, is not silently turned into a tracker store.
    """
    if current_revision(engine) is None:
        raise MissingDatabaseError(
            f"database {redact(engine.url.render_as_string(hide_password=False))} "
            "holds no tracker data (no tracker tables)"
        )


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return _stored_revision(conn)


def upgrade(engine: Engine) -> tuple[str | None, str | None]:
    """Apply pending migrations; returns (before, after) revisions."""
    from alembic import command

    with (translate(engine, "migrating"),
          engine.connect().execution_options(tracker_write=True) as conn, conn.begin()):
        # two processes starting on an empty database must not both create tables
        lock_for_writing(conn)
        before = _stored_revision(conn)
        command.upgrade(_alembic_config(conn), "head")
        after = _stored_revision(conn)
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
