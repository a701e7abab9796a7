"""population events: platform-wide moves and the series that moved with them

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 17:00:00

``population_events`` holds each abnormal share of a population (a metric, or a
cohort or industry within it) moving the same way (``tracker.population``);
``population_event_members`` the series that moved with it, each with its own alert
when it had one. ``alerts.event_id`` widens to 200 characters: a member alert
carries its population event's id, which names the metric and the cohort.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "population_events",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("metric", sa.String(length=200), nullable=False),
        sa.Column("cohort", sa.String(length=200), nullable=True),
        sa.Column("direction", sa.String(length=4), nullable=False),
        sa.Column("first_date", sa.Date(), nullable=False),
        sa.Column("last_date", sa.Date(), nullable=False),
        sa.Column("n_series", sa.Integer(), nullable=False),
        sa.Column("n_members", sa.Integer(), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("weighted_share", sa.Float(), nullable=False),
        sa.Column("peak_share", sa.Float(), nullable=False),
        sa.Column("expected_share", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("median_change_pct", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("notified_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_population_events")),
    )
    with op.batch_alter_table("population_events", schema=None) as batch_op:
        batch_op.create_index("ix_population_events_first_date", ["first_date"], unique=False)
    op.create_table(
        "population_event_members",
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("change_pct", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("value_before", sa.Float(), nullable=True),
        sa.Column("alert_id", big_id, nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"],
                                name=op.f("fk_population_event_members_alert_id_alerts")),
        sa.ForeignKeyConstraint(["event_id"], ["population_events.id"],
                                name=op.f("fk_population_event_members_event_id_population_events")),
        sa.ForeignKeyConstraint(["series_id"], ["series.id"],
                                name=op.f("fk_population_event_members_series_id_series")),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"],
                                name=op.f("fk_population_event_members_source_id_sources")),
        sa.PrimaryKeyConstraint("event_id", "series_id", name=op.f("pk_population_event_members")),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.alter_column("event_id", existing_type=sa.String(length=64),
                              type_=sa.String(length=200), existing_nullable=True)


def downgrade() -> None:
    alerts = sa.table("alerts", sa.column("event_id", sa.String()))
    op.execute(alerts.update().where(alerts.c.event_id.like("pop-%")).values(event_id=None))
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.alter_column("event_id", existing_type=sa.String(length=200),
                              type_=sa.String(length=64), existing_nullable=True)
    op.drop_table("population_event_members")
    with op.batch_alter_table("population_events", schema=None) as batch_op:
        batch_op.drop_index("ix_population_events_first_date")
    op.drop_table("population_events")
