"""Run records, per-source state and the run lease.

The lease is a row in ``locks`` rather than a file lock because the thing to
protect is the database: a cron ``tracker run`` on one host and a ``tracker
schedule`` on another must not collect together, and both can see the database.
A lease expires, so a run that was SIGKILLed blocks the next one only until its
lease runs out; a live run renews its lease while it works.

Listings return plain rows, not DataFrames: ``tracker status`` prints them and must
start without importing pandas.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from tracker.errors import LockHeldError
from tracker.store.companies import now_utc
from tracker.store.schema import locks, run_sources, runs, source_state

if TYPE_CHECKING:
    from tracker.store.core import Store

#: Fields of the rows :func:`recent_runs` and :func:`source_results` return.
RUN_COLUMNS: tuple[str, ...] = ("id", "kind", "started_at", "finished_at", "status", "summary")
SOURCE_COLUMNS: tuple[str, ...] = ("run_id", "source", "status", "ok", "failed", "inserted",
                                   "reason")


def owner_id() -> str:
    """host:pid plus a random tag: two runs in one process (a scheduler and a notebook
    thread) must not share an owner, or one could renew or release the other's lease."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def start_run(store: Store, kind: str) -> int:
    with store.transaction("recording a run") as conn:
        result = conn.execute(
            insert(runs).values(kind=kind, started_at=now_utc(), status="running", details={})
        )
        return int(result.inserted_primary_key[0])


def finish_run(store: Store, run_id: int, status: str, summary: str,
               details: dict[str, Any] | None = None) -> None:
    with store.transaction("recording a run") as conn:
        conn.execute(update(runs).where(runs.c.id == run_id).values(
            finished_at=now_utc(), status=status, summary=summary,
            details=json.loads(json.dumps(details or {}, default=str)),
        ))


def record_source(conn: Connection, run_id: int, source: str, status: str, *, ok: int = 0,
                  failed: int = 0, inserted: int = 0, reason: str | None = None,
                  failures: list[dict[str, Any]] | None = None) -> None:
    conn.execute(insert(run_sources).values(
        run_id=run_id, source=source, status=status, ok=ok, failed=failed, inserted=inserted,
        reason=reason, failures=failures or [],
    ))


def load_state(store: Store, source: str) -> dict[str, str]:
    with store.reading("reading source state") as conn:
        rows = conn.execute(select(source_state.c.key, source_state.c.value)
                            .where(source_state.c.source == source)).all()
    return dict(rows)


def save_state(conn: Connection, source: str, state: dict[str, str],
               before: dict[str, str]) -> None:
    """Write the keys that changed, inside the caller's transaction."""
    stamp = now_utc()
    for key, value in state.items():
        if before.get(key) == value:
            continue
        conn.execute(delete(source_state).where(and_(source_state.c.source == source,
                                                     source_state.c.key == key)))
        conn.execute(insert(source_state).values(source=source, key=key, value=value,
                                                 updated_at=stamp))


def acquire_lease(store: Store, name: str, ttl: timedelta, owner: str | None = None) -> str:
    """Take the named lease or raise LockHeldError saying who holds it."""
    owner = owner or owner_id()
    now = now_utc()
    try:
        with store.transaction("taking the run lock") as conn:
            conn.execute(delete(locks).where(and_(locks.c.name == name,
                                                  locks.c.expires_at < now)))
            conn.execute(insert(locks).values(name=name, owner=owner, acquired_at=now,
                                              expires_at=now + ttl))
    except Exception as exc:
        if not isinstance(getattr(exc, "__cause__", None), IntegrityError) and not isinstance(
                exc, IntegrityError):
            raise
        holder = lease_holder(store, name)
        since = f" since {holder[1]:%Y-%m-%d %H:%M:%S} UTC" if holder else ""
        who = holder[0] if holder else "another process"
        raise LockHeldError(
            f"another run holds the lock {name!r} ({who}{since}); not starting a second one"
        ) from None
    return owner


def lease_holder(store: Store, name: str) -> tuple[str, datetime] | None:
    with store.reading("reading the run lock") as conn:
        row = conn.execute(select(locks.c.owner, locks.c.acquired_at)
                           .where(locks.c.name == name)).first()
    return (row[0], row[1]) if row else None


def renew_lease(store: Store, name: str, owner: str, ttl: timedelta) -> bool:
    with store.transaction("renewing the run lock") as conn:
        result = conn.execute(update(locks).where(and_(locks.c.name == name,
                                                       locks.c.owner == owner))
                              .values(expires_at=now_utc() + ttl))
    return bool(result.rowcount)


def release_lease(store: Store, name: str, owner: str) -> None:
    with store.transaction("releasing the run lock") as conn:
        conn.execute(delete(locks).where(and_(locks.c.name == name, locks.c.owner == owner)))


def recent_runs(store: Store, limit: int = 10) -> list[tuple[Any, ...]]:
    """The latest runs, newest first, as RUN_COLUMNS tuples."""
    with store.reading("listing runs") as conn:
        rows = conn.execute(select(*[runs.c[c] for c in RUN_COLUMNS])
                            .order_by(runs.c.id.desc()).limit(limit)).all()
    return [tuple(r) for r in rows]


def source_results(store: Store, run_ids: list[int]) -> list[tuple[Any, ...]]:
    """What each source did in the given runs, as SOURCE_COLUMNS tuples."""
    if not run_ids:
        return []
    with store.reading("listing source results") as conn:
        rows = conn.execute(select(*[run_sources.c[c] for c in SOURCE_COLUMNS])
                            .where(run_sources.c.run_id.in_(run_ids))).all()
    return [tuple(r) for r in rows]
