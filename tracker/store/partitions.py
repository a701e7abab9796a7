"""PostgreSQL only: observations partitioned by calendar quarter of ``as_of``.

Why quarters. At 10^9 rows (a million companies for three years) the daily
append writes one row per series into the current partition's unique index
``(series_id, source_id, as_of, collected_at)``: one new entry per series, so it
touches nearly every leaf page of that index. A quarter of a million series is
~90 million rows, an index of a few GB that stays in memory; the whole table's
would be ~40 GB, and the append would become a million random reads. The trailing
window read (``as_of >= D``) is pruned to the two to five partitions it spans, and
old quarters can be vacuumed, archived or detached on their own. Years would keep
too big a hot index; months would triple the partitions each id-range read probes
(``id > mark`` has no partition key) for no gain in the append.

The partition key must be part of every unique constraint: the unique key
already starts with ``as_of``'s companions and holds it, and the primary key
becomes ``(id, as_of)``. ``id`` still comes from one sequence, so it stays unique
in practice, and the reads by id range (the detection mark) keep an index in
every partition.

Partitions are made when needed: the append path creates the quarters of the
rows it is about to write, and the next quarter ahead, before it inserts;
``tracker db upgrade`` (migration 0009) creates those of the existing data and the
current and next quarter. A new partition is built empty beside the table and then
attached (``ATTACH PARTITION`` takes a lock that blocks other writers, which the
store serializes anyway, but not readers; ``CREATE TABLE ... PARTITION OF`` would
block readers too until the writing transaction ends).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from sqlalchemy import Connection, text

TABLE = "observations"
#: Vacuum and analyze a partition after about 1% new rows, not PostgreSQL's 20%: an
#: append-only quarter of 90 million rows would otherwise wait ~18 million rows
#: (18 days) for the vacuum that marks pages all-visible, and the trailing-window
#: read's index-only scans would visit the heap for every recent day; the planner
#: would not know the new days either. (A partitioned parent takes no such settings.)
AUTOVACUUM = "autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.01"


def quarter_start(day: date) -> date:
    return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def next_quarter(start: date) -> date:
    return date(start.year + 1, 1, 1) if start.month == 10 else date(start.year,
                                                                     start.month + 3, 1)


def partition_name(start: date) -> str:
    """``observations_2022q4`` for the quarter starting on ``start``."""
    return f"{TABLE}_{start.year:04d}q{(start.month - 1) // 3 + 1}"


def is_partition(name: str) -> bool:
    """A table name this module makes (Alembic's comparisons leave them out)."""
    head, _, tail = name.rpartition("_")
    return (head == TABLE and len(tail) == 6 and tail[:4].isdigit() and tail[4] == "q"
            and tail[5] in "1234")


def is_partitioned(conn: Connection) -> bool:
    """Whether ``observations`` is a partitioned table (False on SQLite)."""
    if conn.dialect.name != "postgresql":
        return False
    return bool(conn.execute(text(
        "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = "
        "p.partrelid WHERE c.relname = :t AND c.relnamespace = to_regnamespace("
        "current_schema())::oid)"), {"t": TABLE}).scalar())


def existing(conn: Connection) -> set[str]:
    """Names of the partitions attached to ``observations``."""
    rows = conn.execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :t "
        "AND p.relnamespace = to_regnamespace(current_schema())::oid"), {"t": TABLE})
    return {r[0] for r in rows}


def ensure(conn: Connection, days: Iterable[date], *, ahead: bool = True) -> list[str]:
    """Create the missing partitions for the quarters of ``days`` (and, with ``ahead``,
    the quarter after the latest of them); returns the names created.

    Runs inside the caller's transaction, so a failed write also takes back the
    partitions it made.
    """
    starts = {quarter_start(d) for d in days}
    if ahead and starts:
        starts.add(next_quarter(max(starts)))
    have = existing(conn)
    made = []
    for start in sorted(starts):
        name = partition_name(start)
        if name in have:
            continue
        conn.exec_driver_sql(f'CREATE TABLE "{name}" (LIKE {TABLE}) WITH ({AUTOVACUUM})')
        conn.exec_driver_sql(
            f"ALTER TABLE {TABLE} ATTACH PARTITION \"{name}\" FOR VALUES FROM "
            f"('{start:%Y-%m-%d}') TO ('{next_quarter(start):%Y-%m-%d}')")
        made.append(name)
    return made
