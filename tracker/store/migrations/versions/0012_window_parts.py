"""the detection window stored per part: the whole store's, or one Dask partition's

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 05:00:00

The Dask engine's daily run read every partition's whole trailing window from the
observations each day (the largest part of its time at a million series: see
README, "Running at scale"). Each partition now keeps its own window as the local
engine does, under its own ``part`` (the partition's first series id; 0 is the
local engine's window of the whole store) and ``last_series`` (its last id, so a
partition whose range changed is read afresh). The tables are a pure cache of the
observations, so they are dropped and made anew, not converted: the first run after
the upgrade reads its windows afresh, as after any lost window.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_TABLES = ("detect_window_days", "detect_window_columns", "detect_window_meta")


def _tables(parts: bool) -> None:
    key = [sa.Column("part", sa.BigInteger(), autoincrement=False, nullable=False)] \
        if parts else [sa.Column("id", sa.Integer(), autoincrement=False, nullable=False)]
    head = ["part"] if parts else ["id"]
    op.create_table(
        "detect_window_meta",
        *key,
        *([sa.Column("last_series", sa.BigInteger(), nullable=False)] if parts else []),
        sa.Column("first_day", sa.Integer(), nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("columns", sa.Integer(), nullable=False),
        sa.Column("last_observation", sa.BigInteger(), nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint(*head, name=op.f("pk_detect_window_meta")),
    )
    rest = ["part"] if parts else []
    op.create_table(
        "detect_window_columns",
        *([sa.Column("part", sa.BigInteger(), autoincrement=False, nullable=False)]
          if parts else []),
        sa.Column("chunk", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("series", sa.LargeBinary(), nullable=False),
        sa.Column("sources", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint(*rest, "chunk", name=op.f("pk_detect_window_columns")),
    )
    op.create_table(
        "detect_window_days",
        *([sa.Column("part", sa.BigInteger(), autoincrement=False, nullable=False)]
          if parts else []),
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("columns", sa.Integer(), nullable=False),
        sa.Column("width", sa.SmallInteger(), nullable=False),
        sa.Column("counts", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint(*rest, "day", name=op.f("pk_detect_window_days")),
    )


def upgrade() -> None:
    for t in _TABLES:
        op.drop_table(t)
    _tables(parts=True)


def downgrade() -> None:
    for t in _TABLES:
        op.drop_table(t)
    _tables(parts=False)
