"""observations partitioned by quarter of as_of on PostgreSQL

Revision ID: 0009
Revises: 0005
Create Date: 2026-12-03 16:45:00

PostgreSQL only (SQLite keeps its one table: nothing changes there). The plain
table is renamed aside, a table partitioned by range of ``as_of`` takes its name,
constraints and indexes (its primary key becomes ``(id, as_of)``: a partitioned
table needs the partition key in every unique constraint), one partition per
calendar quarter that holds data is created (plus the current and the next
quarter), every row is copied with its id, and the old table is dropped. All in
the migration's one transaction: an interrupted upgrade leaves the plain table as
it was. Copying takes time and disk in proportion to the rows (see README,
"Running at scale": run ``tracker db upgrade`` by hand, once, for a large store).
See ``tracker/store/partitions.py`` for why quarters.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from alembic import op
from sqlalchemy import text

from tracker.store import partitions

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None

_UQ = "uq_observations_series_id_source_id_as_of_collected_at"
_INDEXES = {"ix_observations_collected_at": "collected_at",
            "ix_observations_as_of_series_id_source_id_value":
                "as_of, series_id, source_id, value"}
_COLUMNS = "id, series_id, source_id, as_of, value, collected_at, run_id"


def _create(partitioned: bool) -> None:
    pk = "id, as_of" if partitioned else "id"
    tail = " PARTITION BY RANGE (as_of)" if partitioned else ""
    op.execute(
        "CREATE TABLE observations ("
        " id BIGINT NOT NULL DEFAULT nextval('observations_id_seq'),"
        " series_id INTEGER NOT NULL, source_id INTEGER NOT NULL, as_of DATE NOT NULL,"
        " value BIGINT NOT NULL, collected_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,"
        " run_id BIGINT,"
        f" CONSTRAINT pk_observations PRIMARY KEY ({pk}),"
        f" CONSTRAINT {_UQ} UNIQUE (series_id, source_id, as_of, collected_at),"
        " CONSTRAINT fk_observations_run_id_runs FOREIGN KEY (run_id) REFERENCES runs (id),"
        " CONSTRAINT fk_observations_series_id_series FOREIGN KEY (series_id)"
        " REFERENCES series (id),"
        " CONSTRAINT fk_observations_source_id_sources FOREIGN KEY (source_id)"
        " REFERENCES sources (id))" + tail
    )
    for name, cols in _INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON observations ({cols})")
    op.execute("ALTER SEQUENCE observations_id_seq OWNED BY observations.id")


def _rename_aside() -> None:
    op.execute("ALTER TABLE observations RENAME TO observations_old")
    op.execute("ALTER TABLE observations_old RENAME CONSTRAINT pk_observations "
               "TO pk_observations_old")
    op.execute(f"ALTER TABLE observations_old RENAME CONSTRAINT {_UQ} TO uq_observations_old")
    for name in _INDEXES:
        op.execute(f"ALTER INDEX {name} RENAME TO {name}_old")


def _quarters_with_data() -> list[date]:
    """The first day of each quarter holding rows, by one index probe per quarter
    (a skip scan of the as_of index), not a scan of the table."""
    rows = op.get_bind().execute(text(
        "WITH RECURSIVE q(d) AS (SELECT min(as_of) FROM observations_old UNION ALL "
        "SELECT (SELECT min(as_of) FROM observations_old WHERE as_of >= "
        "(date_trunc('quarter', q.d) + interval '3 months')::date) FROM q WHERE q.d IS NOT NULL) "
        "SELECT d FROM q WHERE d IS NOT NULL")).scalars().all()
    return list(rows)


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql" or partitions.is_partitioned(conn):
        return
    _rename_aside()
    _create(partitioned=True)
    today = datetime.now(UTC).date()
    partitions.ensure(conn, [*_quarters_with_data(), today])
    op.execute(f"INSERT INTO observations ({_COLUMNS}) SELECT {_COLUMNS} FROM observations_old")
    op.execute("DROP TABLE observations_old")
    op.execute("ANALYZE observations")


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql" or not partitions.is_partitioned(conn):
        return
    names = sorted(partitions.existing(conn))
    _rename_aside()
    _create(partitioned=False)
    op.execute(f"INSERT INTO observations ({_COLUMNS}) SELECT {_COLUMNS} FROM observations_old")
    op.execute("DROP TABLE observations_old")
    for name in names:  # dropped with their parent already; say so for the reader
        op.execute(f'DROP TABLE IF EXISTS "{name}"')
