"""verdicts follow the data: the change log of alerts, and what was notified

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10 12:00:00

An alert's verdict is one of provisional, confirmed, glitch, withdrawn. Before this
revision a glitch was told only by its kind (its verdict said "confirmed"), so the
existing glitches get the verdict "glitch". Every later change of a stored alert by
detection is a row of ``alert_changes``: when, the day of data that led to it, the
old and new verdict (and status, when it followed the verdict), the fields that
changed and why. ``notified_verdict``, ``notified_kind`` and ``notified_severity``
keep what the last notification said, so a later change is sent exactly once; the
alerts already notified are taken to have been notified in their present state.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "alert_changes",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("alert_id", big_id, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.Column("old_verdict", sa.String(length=20), nullable=False),
        sa.Column("new_verdict", sa.String(length=20), nullable=False),
        sa.Column("old_status", sa.String(length=20), nullable=True),
        sa.Column("new_status", sa.String(length=20), nullable=True),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"],
                                name=op.f("fk_alert_changes_alert_id_alerts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_changes")),
    )
    with op.batch_alter_table("alert_changes", schema=None) as batch_op:
        batch_op.create_index("ix_alert_changes_alert_id", ["alert_id"], unique=False)
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("notified_verdict", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("notified_kind", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("notified_severity", sa.String(length=10), nullable=True))
    alerts = sa.table("alerts", sa.column("kind"), sa.column("verdict"), sa.column("severity"),
                      sa.column("notified_at"), sa.column("notified_verdict"),
                      sa.column("notified_kind"), sa.column("notified_severity"))
    op.execute(alerts.update().where(alerts.c.kind == "glitch").values(verdict="glitch"))
    op.execute(alerts.update().where(alerts.c.notified_at.is_not(None)).values(
        notified_verdict=alerts.c.verdict, notified_kind=alerts.c.kind,
        notified_severity=alerts.c.severity))


def downgrade() -> None:
    alerts = sa.table("alerts", sa.column("verdict"))
    op.execute(alerts.update().where(alerts.c.verdict.in_(("glitch", "withdrawn")))
               .values(verdict="confirmed"))
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_column("notified_severity")
        batch_op.drop_column("notified_kind")
        batch_op.drop_column("notified_verdict")
    with op.batch_alter_table("alert_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_changes_alert_id")
    op.drop_table("alert_changes")
