"""Run records, per-source state and the run lease.

The lease is a row in ``locks`` rather than a file lock because the thing to
protect is the database: a cron ``tracker run`` on one host and a ``tracker
schedule`` on another must not collect together, and both can see the database.
A lease expires, and a live run renews it while it works.

A run killed (SIGKILL, OOM, a reboot) can neither finish its run record nor release
its lease, so both carry who holds them: the owner string is host, pid, a random
tag, and, where ``/proc`` tells them, the process's start time and a fingerprint of
the machine (boot id and pid namespace). From that, a holder on this machine whose
pid is gone, is a zombie, or now belongs to a later process (same pid, other start
time) is provably dead: its lease is taken over at once and its run is marked
``abandoned``. A holder on another host, or one that recorded no start time, cannot
be checked from here and is only given up when its lease expires.

Listings return plain rows, not DataFrames: ``tracker status`` prints them and must
start without importing pandas.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from tracker.errors import LockHeldError, StoreError
from tracker.store.companies import now_utc
from tracker.store.schema import locks, run_sources, runs, source_state

if TYPE_CHECKING:
    from sqlalchemy import Row

    from tracker.store.core import Store

log = logging.getLogger(__name__)

#: Fields of the rows :func:`recent_runs` and :func:`source_results` return.
RUN_COLUMNS: tuple[str, ...] = ("id", "kind", "started_at", "finished_at", "status", "summary")
SOURCE_COLUMNS: tuple[str, ...] = ("run_id", "source", "status", "ok", "failed", "inserted",
                                   "reason")


_HOST_MAX = 200  # of the owner column's 300 characters


# -- who holds a lease or runs a run -------------------------------------------------------


@dataclass(frozen=True)
class Holder:
    """A lease holder or run owner, as parsed from its owner string.

    ``start`` (clock ticks after boot, field 22 of ``/proc/PID/stat``) and ``machine``
    (see :func:`_machine`) are None for an owner written where ``/proc`` has neither,
    or by an older tracker: such a holder is never judged dead, only expired.
    """

    host: str
    pid: int
    start: int | None = None
    machine: str | None = None

    _PATTERN = re.compile(r"(?P<host>.+?):(?P<pid>\d+):(?P<tag>\w+)"
                          r"(?::(?P<start>\d+):(?P<machine>[0-9a-f]{12}))?")

    @classmethod
    def parse(cls, owner: str) -> Holder | None:
        match = cls._PATTERN.fullmatch(owner)
        if match is None:
            return None
        start = match["start"]
        return cls(match["host"], int(match["pid"]), int(start) if start else None,
                   match["machine"])

    def alive(self) -> bool | None:
        """True or False when this machine can tell, None when it cannot."""
        if self.start is None or self.machine is None or self.pid <= 0:
            return None
        if self.host != _hostname() or self.machine != _machine():
            return None
        return _runs_since(self.pid, self.start)

    def uncheckable(self) -> str:
        """Why :meth:`alive` cannot tell, for the refusal message."""
        if self.start is None or self.machine is None:
            return "its owner recorded no process start time"
        if self.host != _hostname():
            return "another host"
        return "another machine or container with the same host name"

    def __str__(self) -> str:
        return f"pid {self.pid} on host {self.host}"


def _hostname() -> str:
    return socket.gethostname()[:_HOST_MAX]


@cache
def _machine() -> str | None:
    """This kernel boot and pid namespace, hashed: only where both match is a pid
    number from the owner string the same process, or its absence proof of death.
    A same-named host (a clone, a container with the host's name) differs here."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            boot = file.read().strip()
    except OSError:
        return None
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return hashlib.sha256(f"{boot}/{namespace}".encode()).hexdigest()[:12]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a process from /proc, None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as file:
            text = file.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after it
    fields = text.rpartition(")")[2].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def _runs_since(pid: int, start: int) -> bool | None:
    """Whether the process ``pid`` that started at ``start`` still runs."""
    try:
        os.kill(pid, 0)  # signal 0: existence check only, also for /proc hidden pids
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    except OSError:
        return None
    stat = _stat(pid)
    if stat is None:  # exited just now, or /proc hides it (hidepid)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            pass
        return None
    state, started = stat
    if state in ("Z", "X"):  # killed, not yet reaped by its parent: holds nothing
        return False
    return started == start  # another start time: the pid was reused


@cache
def _process_start(pid: int) -> int | None:
    stat = _stat(pid)
    return stat[1] if stat else None


def owner_id() -> str:
    """host:pid:tag[:start:machine], the tag random: two runs in one process (a scheduler
    and a notebook thread) must not share an owner, or one could renew or release the
    other's lease. Start and machine let another process prove this one dead."""
    owner = f"{_hostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    start, machine = _process_start(os.getpid()), _machine()
    return owner if start is None or machine is None else f"{owner}:{start}:{machine}"


def _when(stamp: datetime) -> str:
    return f"{stamp:%Y-%m-%d %H:%M:%S} UTC"


def _describe(owner: str, acquired_at: datetime, expires_at: datetime) -> str:
    """``held by pid P on host H since T, which is still running; expires at T2``."""
    holder = Holder.parse(owner)
    if holder is None:
        return f"held by {owner} since {_when(acquired_at)}; expires at {_when(expires_at)}"
    state = {True: "which is still running", False: "which is no longer running",
             None: f"which cannot be checked from here ({holder.uncheckable()})"
             }[holder.alive()]
    return f"held by {holder} since {_when(acquired_at)}, {state}; expires at {_when(expires_at)}"


# -- runs --------------------------------------------------------------------------------


def start_run(store: Store, kind: str, *, owner: str | None = None,
              lease: str | None = None) -> int:
    """Record a run as running, with the process (``owner``, default this one) and the
    lease it holds, so that a later reader can tell when it is gone.

    Runs left behind by killed processes are marked abandoned first.
    """
    reap_abandoned(store)
    details = {"owner": owner or owner_id(), "lease": lease}
    with store.transaction("recording a run") as conn:
        result = conn.execute(
            insert(runs).values(kind=kind, started_at=now_utc(), status="running",
                                details=details)
        )
        return int(result.inserted_primary_key[0])


def reap_abandoned(store: Store) -> list[tuple[int, str]]:
    """Mark as ``abandoned`` every running run whose process is gone; (id, why) of each.

    Gone means: its process is provably dead (see :class:`Holder`), or it held a
    lease that expired or is no longer its own. A run whose process may still be
    alive on another host and which took no lease (``tracker collect``) stays
    running. The mark keeps ``finished_at`` empty (the run did not finish: the
    scheduler's catch-up must not count it) and says when and why in ``summary`` and
    ``details``; if the run does end after all, its own outcome replaces the mark.

    A read first, and a write only when there is something to mark, so a healthy
    ``tracker status`` never queues behind a writer.
    """
    with store.reading("checking for abandoned runs") as conn:
        if not _abandoned(conn, now_utc()):
            return []
    marked = []
    with store.transaction("marking abandoned runs") as conn:
        now = now_utc()
        for row, why in _abandoned(conn, now):  # again: one may have finished meanwhile
            details = {**(row.details or {}), "abandoned_at": now.isoformat(),
                       "abandoned_because": why}
            done = conn.execute(update(runs).where(runs.c.id == row.id,
                                                   runs.c.status == "running")
                                .values(status="abandoned", details=details,
                                        summary=f"noticed {_when(now)}: {why}"))
            if done.rowcount:
                marked.append((int(row.id), why))
    for run_id, why in marked:
        log.warning("run %d was abandoned: %s", run_id, why)
    return marked


def _abandoned(conn: Connection, now: datetime) -> list[tuple[Row, str]]:
    rows = conn.execute(select(runs.c.id, runs.c.started_at, runs.c.details)
                        .where(runs.c.status == "running")).all()
    if not rows:
        return []
    leases = {r.name: r for r in conn.execute(select(locks)).all()}
    found = []
    for row in rows:
        why = _why_abandoned(row, leases, now)
        if why is not None:
            found.append((row, why))
    return found


def _why_abandoned(run: Row, leases: dict[str, Row], now: datetime) -> str | None:
    details = run.details or {}
    owner = details.get("owner")
    if owner is None:  # recorded by a tracker that kept no owner: only leases tell
        live = [lease for lease in leases.values()
                if lease.expires_at >= now and lease.acquired_at <= run.started_at]
        return None if live else ("its process was not recorded and no lease held "
                                  "since it started is still valid")
    holder = Holder.parse(str(owner))
    alive = holder.alive() if holder else None
    if alive:
        return None
    if alive is False:
        return f"its process ({holder}) is no longer running"
    name = details.get("lease")
    if name is None:  # no lease to expire: another host's run is never presumed dead
        return None
    lease = leases.get(name)
    if lease is None or lease.owner != owner:
        return f"its lease {name!r} was released or taken over by another run before it finished"
    if lease.expires_at < now:
        return f"its lease {name!r} expired at {_when(lease.expires_at)} without being renewed"
    return None


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
    """Take the named lease or raise LockHeldError saying who holds it.

    An expired lease is taken; so is one whose holder is provably dead on this
    machine, at once rather than after its expiry (see :class:`Holder`).
    """
    owner = owner or owner_id()
    try:
        with store.transaction("taking the run lock") as conn:
            now = now_utc()
            row = conn.execute(select(locks).where(locks.c.name == name)).first()
            if row is not None:
                holder = Holder.parse(row.owner)
                dead = holder is not None and holder.alive() is False
                if row.expires_at >= now and not dead:
                    raise LockHeldError(f"another run holds the lock {name!r}: "
                                        f"{_describe(row.owner, row.acquired_at, row.expires_at)}"
                                        "; not starting a second one")
                conn.execute(delete(locks).where(and_(locks.c.name == name,
                                                      locks.c.owner == row.owner)))
                if dead and row.expires_at >= now:
                    log.warning("took over the lock %r from %s, which is no longer running "
                                "(its lease would have expired at %s)", name, holder,
                                _when(row.expires_at))
            conn.execute(insert(locks).values(name=name, owner=owner, acquired_at=now,
                                              expires_at=now + ttl))
    except StoreError as exc:
        if not isinstance(exc.__cause__, IntegrityError):
            raise
        # writers are serialized, so only a writer outside the store gets here
        holder_row = lease_holder(store, name)
        who = f"held by {holder_row[0]} since {_when(holder_row[1])}" if holder_row else (
            "taken by another process just now")
        raise LockHeldError(f"another run holds the lock {name!r}: {who}; "
                            "not starting a second one") from None
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
