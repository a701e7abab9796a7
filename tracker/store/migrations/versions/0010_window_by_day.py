"""the detection window stored one row per day instead of one matrix

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 04:00:00

The old ``detect_window`` held the whole window in column chunks, rewritten by
every daily run (2.8 GB a day at a million series). It is a pure cache of the
observations, so it is dropped, not converted: the first run after the upgrade
reads its window afresh from the observations, as after any lost window.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("detect_window")
    op.create_table(
        "detect_window_meta",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("first_day", sa.Integer(), nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("columns", sa.Integer(), nullable=False),
        sa.Column("last_observation", sa.BigInteger(), nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_detect_window_meta")),
    )
    op.create_table(
        "detect_window_columns",
        sa.Column("chunk", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("series", sa.LargeBinary(), nullable=False),
        sa.Column("sources", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("chunk", name=op.f("pk_detect_window_columns")),
    )
    op.create_table(
        "detect_window_days",
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("columns", sa.Integer(), nullable=False),
        sa.Column("width", sa.SmallInteger(), nullable=False),
        sa.Column("counts", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_detect_window_days")),
    )


def downgrade() -> None:
    op.drop_table("detect_window_days")
    op.drop_table("detect_window_columns")
    op.drop_table("detect_window_meta")
    op.create_table(
        "detect_window",
        sa.Column("chunk", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("first_day", sa.Integer(), nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("last_observation", sa.BigInteger(), nullable=False),
        sa.Column("series", sa.LargeBinary(), nullable=False),
        sa.Column("sources", sa.LargeBinary(), nullable=False),
        sa.Column("counts", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("chunk", name=op.f("pk_detect_window")),
    )
