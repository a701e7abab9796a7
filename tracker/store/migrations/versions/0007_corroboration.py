"""corroboration: which sources saw an alert's move, and possible source errors

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-03 17:00:00

``sources_agreeing`` keeps counting the sources that saw a move (the alert's own
included); the names are added beside it: ``sources_seen`` (its own source first),
``sources_silent`` (had data near the date and did not move) and
``sources_no_data`` (comma-separated; null when none). ``possible_source_error``
marks a move only its own source saw while another with data did not; such an
alert is never critical. Existing alerts get no names and no flag: the daily run
fills them in for the alerts of its last month when it re-links them, and
``tracker detect`` for all.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sources_seen", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("sources_silent", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("sources_no_data", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("possible_source_error", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_column("possible_source_error")
        batch_op.drop_column("sources_no_data")
        batch_op.drop_column("sources_silent")
        batch_op.drop_column("sources_seen")
