"""observations' parents checked once per append on PostgreSQL, not per row

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 19:00:00

PostgreSQL only (SQLite keeps its foreign keys: nothing changes there). The three
foreign keys of ``observations`` (``series_id``, ``source_id``, ``run_id``) are
checked by PostgreSQL one row at a time: a trigger per inserted row per key, each an
index probe plus a ``FOR KEY SHARE`` lock on the parent row, which dirties every
``series`` page a daily append touches. At a million companies that was the largest
part of a day's append (see README, "Bulk writes"). The store is the only writer of
observations, and it checks the same thing set-wise instead: the append first
anti-joins the staged batch against ``series``, ``sources`` and ``runs`` and refuses
the whole batch, writing nothing, if any id has no parent
(``tracker/store/core.py``, ``Store._check_parents``). Nothing deletes a series, a
source or a run, so the lock the row-wise check took (against a concurrent delete of
the parent) guards nothing here.

The downgrade adds the keys back, which validates every stored row (a scan of the
table: minutes at 10^8 rows).
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

#: constraint name -> (column, parent table)
KEYS = {
    "fk_observations_series_id_series": ("series_id", "series"),
    "fk_observations_source_id_sources": ("source_id", "sources"),
    "fk_observations_run_id_runs": ("run_id", "runs"),
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in KEYS:
        # on a partitioned table the partitions' copies of the key go with it
        op.execute(f"ALTER TABLE observations DROP CONSTRAINT IF EXISTS {name}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, (column, parent) in KEYS.items():
        op.execute(f"ALTER TABLE observations ADD CONSTRAINT {name} "
                   f"FOREIGN KEY ({column}) REFERENCES {parent} (id)")
