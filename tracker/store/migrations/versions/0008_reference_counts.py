"""reference headcounts: official counts to compare claimed profiles with

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-03 17:00:00

One row per company and day (``as_of``): the official headcount then (an annual
report's figure), where it came from (``source``) and when it was imported. A
company's ``reference_count`` and ``reference_date`` columns stay (config still
writes them); the references of the companies that have both are copied here, so
nothing declared before this revision is lost.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reference_counts",
        sa.Column("company_id", sa.String(length=200), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.Column("imported_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"],
                                name=op.f("fk_reference_counts_company_id_companies")),
        sa.PrimaryKeyConstraint("company_id", "as_of", name=op.f("pk_reference_counts")),
    )
    companies = sa.table("companies", sa.column("id"), sa.column("reference_count"),
                         sa.column("reference_date"))
    refs = sa.table("reference_counts", sa.column("company_id"), sa.column("as_of"),
                    sa.column("count"), sa.column("source"), sa.column("imported_at"))
    stamp = datetime.now(UTC).replace(tzinfo=None)
    op.execute(refs.insert().from_select(
        ["company_id", "as_of", "count", "source", "imported_at"],
        sa.select(companies.c.id, companies.c.reference_date, companies.c.reference_count,
                  sa.literal("config"), sa.literal(stamp, sa.DateTime()))
        .where(companies.c.reference_count.is_not(None),
               companies.c.reference_date.is_not(None))))


def downgrade() -> None:
    op.drop_table("reference_counts")
