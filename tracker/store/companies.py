"""Company identity: stable slugs, aliases, and resolution of free-text names.

Imports name companies however the provider spelt them ("Apple", "Apple Inc.",
"APPLE INC"). Each name resolves through the alias table first, then through its
slug; unknown names create a company whose id is the slug, so the same spelling
always lands on the same series and ids stay readable in URLs and CLIs.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, func, insert, select

from tracker.records import DEFAULT_METRIC, CompanyRef
from tracker.store.schema import companies, company_aliases, observations, series

if TYPE_CHECKING:
    from tracker.store.core import Store

_NON_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(name: str) -> str:
    """'Apple Inc.' -> 'apple-inc'; accents folded so 'Nestlé' and 'Nestle' meet."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return _NON_SLUG.sub("-", folded.lower()).strip("-")


def alias_key(name: str) -> str:
    """Case- and space-insensitive key under which aliases are stored."""
    return " ".join(name.split()).casefold()


def now_utc() -> datetime:
    """Naive UTC 'now': the store keeps every timestamp as naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def resolve(conn: Connection, names: Iterable[str], *, create: bool = True) -> dict[str, str]:
    """Map each raw name to a company id, creating missing companies in bulk.

    Unknown names are left out of the result when ``create`` is false, so the
    caller decides whether an unknown company is an error.
    """
    wanted = {n for n in names if n}
    if not wanted:
        return {}
    aliases = dict(
        conn.execute(select(company_aliases.c.alias, company_aliases.c.company_id)).all()
    )
    known_ids = set(conn.execute(select(companies.c.id)).scalars())
    out: dict[str, str] = {}
    new: dict[str, str] = {}
    for name in wanted:
        key = alias_key(name)
        if key in aliases:
            out[name] = aliases[key]
            continue
        slug = slugify(name)
        if slug in known_ids or slug in new:
            out[name] = slug
        elif create and slug:
            new[slug] = name.strip()
            out[name] = slug
    if new:
        stamp = now_utc()
        conn.execute(
            insert(companies),
            [
                {"id": cid, "name": label, "tags": {}, "external_ids": {}, "created_at": stamp}
                for cid, label in sorted(new.items())
            ],
        )
    return out


def find(conn: Connection, name: str) -> str | None:
    """The id of the company called ``name`` (id, alias, or display name), else None."""
    key = alias_key(name)
    hit = conn.execute(
        select(company_aliases.c.company_id).where(company_aliases.c.alias == key)
    ).scalar()
    if hit:
        return hit
    for candidate in (name, slugify(name)):
        hit = conn.execute(select(companies.c.id).where(companies.c.id == candidate)).scalar()
        if hit:
            return hit
    return None


def refs(conn: Connection) -> list[CompanyRef]:
    """Every known company, ordered by id, with what sources need to look it up."""
    rows = conn.execute(
        select(companies.c.id, companies.c.name, companies.c.external_ids)
        .order_by(companies.c.id)
    ).all()
    return [CompanyRef(r.id, r.name, dict(r.external_ids or {})) for r in rows]


def last_days(conn: Connection, metric: str = DEFAULT_METRIC) -> list[tuple[str, str, date | None]]:
    """(id, name, last observed day of ``metric``) per company, by id; None if never observed.

    The day columns of ``Store.companies_summary`` without its pandas frame, for
    ``tracker status``, which must start without importing pandas.
    """
    rows = conn.execute(
        select(companies.c.id, companies.c.name, func.max(observations.c.as_of))
        .select_from(companies)
        .outerjoin(series, (series.c.company_id == companies.c.id) & (series.c.metric == metric))
        .outerjoin(observations, observations.c.series_id == series.c.id)
        .group_by(companies.c.id, companies.c.name)
        .order_by(companies.c.id)
    ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def count(store: Store) -> int:
    """How many companies are tracked: the report says it without reading observations."""
    with store.reading("counting companies") as conn:
        return int(conn.execute(select(func.count()).select_from(companies)).scalar() or 0)


def name_of(store: Store, company_id: str) -> str | None:
    """One company's display name (a chart title needs no listing of every company)."""
    with store.reading("reading a company") as conn:
        return conn.execute(select(companies.c.name).where(companies.c.id == company_id)
                            ).scalar()
