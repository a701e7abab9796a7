"""Tables, as SQLAlchemy Core metadata shared by SQLite and PostgreSQL.

Core rather than ORM: every hot path is a bulk statement, and the tables are read
into DataFrames, never object graphs. The Alembic migrations in ``migrations/``
create exactly this schema; a test compares the two so they cannot drift.

Observations are append-only and keyed by (series, source, as_of, collected_at): a
corrected value is a new row with a later ``collected_at``, so any past state of
knowledge can be rebuilt. All timestamps are naive UTC.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

from tracker.store.partitions import is_partition

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: SQLite only auto-increments an INTEGER PRIMARY KEY, PostgreSQL wants BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")

companies = Table(
    "companies",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("name", String(300), nullable=False),
    Column("tags", JSON, nullable=False, default=dict),
    Column("external_ids", JSON, nullable=False, default=dict),
    Column("reference_count", BigInteger),
    Column("reference_date", Date),
    Column("created_at", DateTime, nullable=False),
)

company_aliases = Table(
    "company_aliases",
    metadata,
    Column("alias", String(300), primary_key=True),
    Column("company_id", String(200), ForeignKey("companies.id"), nullable=False, index=True),
)

sources = Table(
    "sources",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
)

series = Table(
    "series",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("company_id", String(200), ForeignKey("companies.id"), nullable=False),
    Column("metric", String(200), nullable=False),
    UniqueConstraint("company_id", "metric"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("kind", String(20), nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Column("status", String(20), nullable=False),
    Column("summary", Text),
    Column("details", JSON, nullable=False, default=dict),
)

run_sources = Table(
    "run_sources",
    metadata,
    Column("run_id", BigId, ForeignKey("runs.id"), primary_key=True),
    Column("source", String(200), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("ok", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("inserted", Integer, nullable=False, default=0),
    Column("reason", Text),
    Column("failures", JSON, nullable=False, default=list),
)

observations = Table(
    "observations",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("series_id", Integer, ForeignKey("series.id"), nullable=False),
    Column("source_id", Integer, ForeignKey("sources.id"), nullable=False),
    Column("as_of", Date, nullable=False),
    Column("value", BigInteger, nullable=False),
    Column("collected_at", DateTime, nullable=False),
    Column("run_id", BigId, ForeignKey("runs.id")),
    UniqueConstraint("series_id", "source_id", "as_of", "collected_at"),
    Index("ix_observations_collected_at", "collected_at"),
    # the daily run reads a trailing window of days, whatever the length of history,
    # from this index alone (it covers the columns read: no lookups into the table)
    Index("ix_observations_as_of_series_id_source_id_value",
          "as_of", "series_id", "source_id", "value"),
    # PostgreSQL (migration 0009): partitioned by quarter of as_of, one table per
    # quarter (tracker/store/partitions.py), and the primary key is (id, as_of) there,
    # since a partitioned table needs its key in every unique constraint
    postgresql_partition_by="RANGE (as_of)",
)

source_state = Table(
    "source_state",
    metadata,
    Column("source", String(200), primary_key=True),
    Column("key", String(1000), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

locks = Table(
    "locks",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("owner", String(300), nullable=False),
    Column("acquired_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("fingerprint", String(64), nullable=False, unique=True),
    Column("series_id", Integer, ForeignKey("series.id"), nullable=False),
    Column("source_id", Integer, ForeignKey("sources.id"), nullable=False),
    Column("date", Date, nullable=False),
    Column("detected_on", Date, nullable=False),
    Column("confirmed_on", Date),
    Column("kind", String(20), nullable=False),
    Column("change_pct", Float, nullable=False),
    Column("value_before", Float),
    Column("value_after", Float),
    Column("score", Float, nullable=False),
    Column("severity", String(10), nullable=False),
    Column("status", String(20), nullable=False),
    Column("verdict", String(20), nullable=False),
    Column("event_id", String(200)),
    Column("sources_agreeing", Integer, nullable=False, default=1),
    # corroboration: comma-separated source names (see tracker.corroboration)
    Column("sources_seen", Text),
    Column("sources_silent", Text),
    Column("sources_no_data", Text),
    Column("possible_source_error", Boolean, nullable=False, default=False,
           server_default=false()),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("notified_at", DateTime),
    Column("note", Text),
    Column("reviewed_by", String(200)),
    Column("reviewed_at", DateTime),
    # what the last notification said, so that a change is sent exactly once
    Column("notified_verdict", String(20)),
    Column("notified_kind", String(20)),
    Column("notified_severity", String(10)),
    Index("ix_alerts_date", "date"),
)

#: Every change detection made to a stored alert: ``day`` is the last day of data
#: the detection judged, ``changes`` maps each changed field to [old, new].
alert_changes = Table(
    "alert_changes",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("alert_id", BigId, ForeignKey("alerts.id"), nullable=False),
    Column("day", Date, nullable=False),
    Column("changed_at", DateTime, nullable=False),
    Column("old_verdict", String(20), nullable=False),
    Column("new_verdict", String(20), nullable=False),
    Column("old_status", String(20)),
    Column("new_status", String(20)),
    Column("changes", JSON, nullable=False),
    Column("reason", Text, nullable=False),
    Index("ix_alert_changes_alert_id", "alert_id"),
)

#: Silences mute the alerts of a company, of a kind, or of both, through ``until``
#: (inclusive): notifications skip them and ``tracker run``'s exit code ignores them.
#: Expired ones are kept, so a listing shows what was muted and by whom.
silences = Table(
    "silences",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("company_id", String(200), ForeignKey("companies.id")),
    Column("kind", String(20)),
    Column("until", Date, nullable=False),
    Column("author", String(200), nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Index("ix_silences_until", "until"),
)

#: The daily run's detection windows, a cache of the observations (see
#: ``store.window_cache``): per part (0: the whole store's; else a Dask partition's
#: first series id), a header, the column keys in chunks, one row per day.
detect_window_meta = Table(
    "detect_window_meta",
    metadata,
    Column("part", BigInteger, primary_key=True, autoincrement=False),
    Column("last_series", BigInteger, nullable=False),
    Column("first_day", Integer, nullable=False),
    Column("days", Integer, nullable=False),
    Column("columns", Integer, nullable=False),
    Column("last_observation", BigInteger, nullable=False),
    Column("token", String(32), nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

detect_window_columns = Table(
    "detect_window_columns",
    metadata,
    Column("part", BigInteger, primary_key=True, autoincrement=False),
    Column("chunk", Integer, primary_key=True, autoincrement=False),
    Column("series", LargeBinary, nullable=False),
    Column("sources", LargeBinary, nullable=False),
)

detect_window_days = Table(
    "detect_window_days",
    metadata,
    Column("part", BigInteger, primary_key=True, autoincrement=False),
    Column("day", Integer, primary_key=True, autoincrement=False),
    Column("columns", Integer, nullable=False),
    Column("width", SmallInteger, nullable=False),
    Column("counts", LargeBinary, nullable=False),
)

#: Population events (``tracker.population``): an abnormal share of a population (a
#: metric, or a cohort or industry within it) moving the same way on consecutive days.
population_events = Table(
    "population_events",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("metric", String(200), nullable=False),
    Column("cohort", String(200)),
    Column("direction", String(4), nullable=False),
    Column("first_date", Date, nullable=False),
    Column("last_date", Date, nullable=False),
    Column("n_series", Integer, nullable=False),
    Column("n_members", Integer, nullable=False),
    Column("share", Float, nullable=False),
    Column("weighted_share", Float, nullable=False),
    Column("peak_share", Float, nullable=False),
    Column("expected_share", Float, nullable=False),
    Column("score", Float, nullable=False),
    Column("median_change_pct", Float, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("notified_at", DateTime),
    Index("ix_population_events_first_date", "first_date"),
)

#: The series that moved with a population event; ``alert_id`` is the member's own
#: alert, null when it would not have alerted alone.
population_event_members = Table(
    "population_event_members",
    metadata,
    Column("event_id", String(200), ForeignKey("population_events.id"), primary_key=True),
    Column("series_id", Integer, ForeignKey("series.id"), primary_key=True),
    Column("source_id", Integer, ForeignKey("sources.id"), nullable=False),
    Column("date", Date, nullable=False),
    Column("change_pct", Float, nullable=False),
    Column("score", Float, nullable=False),
    Column("value_before", Float),
    Column("alert_id", BigId, ForeignKey("alerts.id")),
)

#: Official headcounts (annual reports, filings) to compare claimed profiles with: one
#: per company and day, whatever its origin (a CSV import or ``[companies.ID]`` in
#: config, ``source`` says which); a later import of the same day replaces it.
reference_counts = Table(
    "reference_counts",
    metadata,
    Column("company_id", String(200), ForeignKey("companies.id"), primary_key=True),
    Column("as_of", Date, primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("source", String(300), nullable=False),
    Column("imported_at", DateTime, nullable=False),
)

def include_name(name: str | None, type_: str, _parents: dict[str, str | None]) -> bool:
    """For Alembic's comparisons: the quarterly partitions of ``observations`` are not
    tables of their own in this metadata (their parent is)."""
    return not (type_ == "table" and name is not None and is_partition(name))


def comparison_options(dialect: str) -> dict[str, Any]:
    """Alembic's comparison filters for a database of ``dialect``: what this metadata
    declares that the migrations deliberately build otherwise there.

    On PostgreSQL ``observations`` has no foreign keys (migration 0011: the store
    checks the parents set-wise, once per append, instead of PostgreSQL's row-wise
    triggers); the metadata keeps them for SQLite, which enforces them.
    """

    def include_object(obj: Any, _name: str | None, type_: str, _reflected: bool,
                       _compare_to: Any) -> bool:
        return not (dialect == "postgresql" and type_ == "foreign_key_constraint"
                    and obj.table.name == observations.name)

    return {"include_name": include_name, "include_object": include_object}
