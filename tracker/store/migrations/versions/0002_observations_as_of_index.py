"""a covering index of observations by day, for the daily run's trailing-window read

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 12:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("observations", schema=None) as batch_op:
        batch_op.create_index("ix_observations_as_of_series_id_source_id_value",
                              ["as_of", "series_id", "source_id", "value"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("observations", schema=None) as batch_op:
        batch_op.drop_index("ix_observations_as_of_series_id_source_id_value")
