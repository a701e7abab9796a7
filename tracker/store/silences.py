"""Stored silences: insert, read, delete.

A silence row names a company id, a kind, or both, and the last day it covers
(``until``, inclusive). Matching silences to alerts is ``tracker.silences``' job:
silences are few (an operator types each one), so the store hands them over whole
and never joins them into the alert queries that notifications and listings run.
Expired rows are kept, so ``tracker silence list`` can show what was muted, by
whom and why, until someone removes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from sqlalchemy import delete, insert, select

from tracker.errors import NotFoundError
from tracker.store.companies import now_utc
from tracker.store.core import Store
from tracker.store.schema import companies, silences

#: Columns of a silence as read back, in listing order.
COLUMNS = ("id", "company", "company_name", "kind", "until", "author", "note", "created_at")


def add(store: Store, *, company_id: str | None, kind: str | None, until: date,
        author: str, note: str) -> dict[str, Any]:
    """Insert one silence and return it as read back (with its id and created_at)."""
    with store.transaction("saving a silence") as conn:
        result = conn.execute(insert(silences).values(
            company_id=company_id, kind=kind, until=until, author=author, note=note,
            created_at=now_utc()))
        new_id = int(result.inserted_primary_key[0])
        row = conn.execute(_select().where(silences.c.id == new_id)).mappings().one()
    return dict(row)


def load(store: Store, *, covering_from: date | None = None) -> list[dict[str, Any]]:
    """Silences by id; with ``covering_from``, only those whose ``until`` is that day or
    later (the only ones that can cover an alert first detected on or after it)."""
    query = _select().order_by(silences.c.id)
    if covering_from is not None:
        query = query.where(silences.c.until >= covering_from)
    with store.reading("reading silences") as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def remove(store: Store, silence_id: int) -> Mapping[str, Any]:
    """Delete one silence and return what it was; an unknown id is NotFoundError."""
    with store.transaction("removing a silence") as conn:
        row = conn.execute(_select().where(silences.c.id == silence_id)).mappings().first()
        if row is None:
            raise NotFoundError(f"no silence with id {silence_id} (see 'tracker silence list')")
        conn.execute(delete(silences).where(silences.c.id == silence_id))
    return dict(row)


def _select():  # type: ignore[no-untyped-def]
    # a LEFT JOIN: the company name is for display, and a silence on a kind has none
    return (select(silences.c.id, silences.c.company_id.label("company"),
                   companies.c.name.label("company_name"), silences.c.kind, silences.c.until,
                   silences.c.author, silences.c.note, silences.c.created_at)
            .select_from(silences.outerjoin(companies, companies.c.id == silences.c.company_id)))
