"""Stored reference headcounts: replace in bulk, read back.

A reference is keyed by (company, day): a second figure for the same day (a
corrected annual report, or config restating a CSV's figure) replaces the first,
which is what "the official headcount on that day" means. Writes delete the keys
they bring and insert the rows with one executemany each, inside the caller's
transaction when given one, so an import is all or nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, bindparam, delete, insert, select

from tracker.store.companies import now_utc
from tracker.store.core import Store
from tracker.store.schema import companies, reference_counts

if TYPE_CHECKING:
    import pandas as pd

#: Columns of a reference as read back, in listing order.
COLUMNS = ("company", "company_name", "as_of", "count", "source", "imported_at")


def replace(conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    """Write references (company_id, as_of, count, source), replacing those of the
    same company and day; returns how many rows were written."""
    if not rows:
        return 0
    stamp = now_utc()
    conn.execute(delete(reference_counts).where(and_(
        reference_counts.c.company_id == bindparam("cid"),
        reference_counts.c.as_of == bindparam("day"))),
        [{"cid": r["company_id"], "day": r["as_of"]} for r in rows])
    conn.execute(insert(reference_counts), [
        {"company_id": r["company_id"], "as_of": r["as_of"], "count": int(r["count"]),
         "source": r["source"], "imported_at": stamp} for r in rows])
    return len(rows)


def load(store: Store, company_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """References by company then day (``COLUMNS``), of all companies or of some."""
    import pandas as pd

    q = (select(reference_counts.c.company_id.label("company"),
                companies.c.name.label("company_name"), reference_counts.c.as_of,
                reference_counts.c.count, reference_counts.c.source,
                reference_counts.c.imported_at)
         .join(companies, companies.c.id == reference_counts.c.company_id)
         .order_by(reference_counts.c.company_id, reference_counts.c.as_of))
    if company_ids is not None:
        q = q.where(reference_counts.c.company_id.in_(list(company_ids)))
    with store.reading("reading reference headcounts") as conn:
        rows = conn.execute(q).all()
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["as_of"] = pd.to_datetime(frame["as_of"])
    frame["count"] = frame["count"].astype("int64")
    return frame


def company_tags(store: Store) -> dict[str, dict[str, str]]:
    """Company id -> its tags (``industry``, ...): the fallback cohort of inflation."""
    with store.reading("reading company tags") as conn:
        return {r[0]: dict(r[1] or {}) for r in conn.execute(select(companies.c.id,
                                                                    companies.c.tags))}
