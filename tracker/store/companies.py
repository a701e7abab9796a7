"""Company identity: stable ids, aliases, and resolution of free-text names.

Imports name companies however the provider spelt them ("Apple", "Apple Inc.",
"APPLE INC", "株式会社テスト"). Each name resolves through the alias table first,
then through its id (:func:`slugify`), then through the names already stored;
unknown names create a company under that id, so the same spelling always lands
on the same series and ids stay readable ASCII in URLs, file names and CLIs. The
name itself is stored as written.
"""

from __future__ import annotations

import base64
import hashlib
import re
import unicodedata
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from anyascii import anyascii
from sqlalchemy import Connection, bindparam, func, insert, select

from tracker.records import DEFAULT_METRIC, CompanyRef
from tracker.store.schema import companies, company_aliases, observations, series

if TYPE_CHECKING:
    from tracker.store.core import Store

_NON_SLUG = re.compile(r"[^a-z0-9]+")
#: what the ASCII rule gives back unchanged: slugify(x) == alias_key(x) == x
_SLUG_SHAPED = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
#: companies.id is a String(200).
MAX_ID = 200
#: The transliterated part of a hashed id is a hint for people, not the identity:
#: kept short so ids stay typeable.
_READABLE = 48
#: 8 base32 characters = 40 bits of sha256: among names with the same readable
#: part, a collision needs about a million of them.
_DIGEST = 8
#: Letters and digits that an ASCII fold may drop only at the cost of the id's meaning.
#: Unassigned code points (Cn) count as letters: a newer Python's Unicode may assign
#: them to a script, and an id must not change with the Python that computes it.
_WORDLIKE = frozenset({"Lu", "Ll", "Lt", "Lo", "Nd", "Nl", "No", "Cn"})
#: Characters that show nothing: a name made only of these is empty.
_INVISIBLE = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


def is_blank(name: str) -> bool:
    """True when nothing visible is left: spaces, zero-width and control characters only.

    Such a "name" is a provider's empty cell, not a company; giving it an id would
    file every empty cell of every file under one invented company.
    """
    return all(ch.isspace() or unicodedata.category(ch) in _INVISIBLE for ch in name)


def _ascii_slug(name: str) -> str:
    """The original rule: NFKD, drop what is not ASCII, runs of the rest become '-'."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return _NON_SLUG.sub("-", folded.lower()).strip("-")


def _drops_other_scripts(name: str) -> bool:
    """Would the ASCII fold silently drop a letter or digit of a non-Latin script?

    Latin letters it drops (ß, ø, ł, æ) and symbols (™ is kept as 'tm'; ©, emoji
    go) leave a Latin name its meaning, and those ids are in existing databases. A
    dropped Cyrillic, Greek, kana or Arabic letter, or an Arabic-Indic digit, means
    the id would describe only the Latin remainder: 'Sony ソニー' would merge with
    'Sony', '東京 2' and '大阪 2' would both be '2'.
    """
    for ch in unicodedata.normalize("NFKD", name):
        if (not ch.isascii() and unicodedata.category(ch) in _WORDLIKE
                and not unicodedata.name(ch, "").startswith("LATIN ")):
            return True
    return False


def _identity(name: str) -> str:
    """What the hash of a non-Latin name is taken over: its words, case-folded.

    Mirrors what the Latin rule ignores (case, spacing, punctuation between words:
    'Apple, Inc' is 'Apple Inc.'), and nothing more: NFKC folds only different
    encodings of the same text (half-width ｿﾆｰ is ソニー, a decomposed é is é).
    A name without letters or digits ('🚀', '!!!') is identified by all of it.
    """
    key = alias_key(name)
    words: list[str] = []
    current: list[str] = []
    for ch in key:
        category = unicodedata.category(ch)
        if category[0] in "LMN" or category == "Cn":
            current.append(ch)
        elif current:
            words.append("".join(current))
            current = []
    if current:
        words.append("".join(current))
    return "-".join(words) or key


def slugify(name: str) -> str:
    """The company id made from a name; '' only for a blank name (see :func:`is_blank`).

    Two rules, chosen so that no id of a name that worked before changes:

    * A name whose letters and digits are Latin keeps the original ASCII slug:
      'Apple Inc.' -> 'apple-inc', 'Nestlé' -> 'nestle', 'Straße AG' -> 'strae-ag'.
      Existing databases hold these ids and config, scripts and URLs name them.
    * Any other name (Japanese, Greek, Arabic, Hebrew, emoji, mixed with Latin, or
      whose slug would pass the column's 200 characters) gets a readable
      transliteration plus a hash of its exact words: '株式会社テスト' ->
      'zhushihuishetesuto_d46fbbrd', 'Яндекс' -> 'yandeks_iacm6wki', '!!!' ->
      '_5bgfhdt7'. The transliteration (anyascii: ISC-licensed, current Unicode,
      emoji by name) is only a hint: it is lossy and sometimes misleading (kanji
      become Chinese pinyin even in a Japanese name; unvowelled Hebrew 'אל על' and
      'על אל' both read 'l-l'), so the hash of the name is what tells companies
      apart and two different names can never merge into one series. The '_'
      cannot occur in an ASCII slug, so the two kinds of id never collide.

    The hash is sha256, never Python's hash(): ids are the same in every process,
    on every machine, in every database. The readable part comes from anyascii's
    tables, so its version is pinned (tests/test_names.py pins ids too); a
    database made under another rule or version still finds its companies by
    their stored names (see :func:`resolve`).
    """
    if is_blank(name):
        return ""
    slug = _ascii_slug(name)
    if slug and len(slug) <= MAX_ID and not _drops_other_scripts(name):
        return slug
    readable = _NON_SLUG.sub("-", anyascii(unicodedata.normalize("NFKC", name)).lower())
    readable = readable.strip("-")[:_READABLE].rstrip("-")
    digest = base64.b32encode(hashlib.sha256(_identity(name).encode()).digest())
    return f"{readable}_{digest.decode()[:_DIGEST].lower()}"


def alias_key(name: str) -> str:
    """Case-, space- and encoding-insensitive key under which aliases are stored.

    NFKC before and after casefold (the Unicode recipe for caseless matching), so
    'ΣΌΝΙ' finds 'Σόνι' and half-width 'ｿﾆｰ' finds 'ソニー'; for ASCII it is the
    lower-cased, space-collapsed name it always was.
    """
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return " ".join(folded.split())


def now_utc() -> datetime:
    """Naive UTC 'now': the store keeps every timestamp as naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def _changed_rule(name: str, slug: str) -> bool:
    """Does ``name`` get another id than the original ASCII-slug rule gave it?

    Only such names ('Sony ソニー', '東京 2', a name that was refused) may be stored
    under an id that today's rule no longer makes; every other name resolves
    exactly as it always did.
    """
    return slug != _ascii_slug(name)


def _by_stored_name(rows: Iterable[tuple[str, str]]) -> dict[str, str]:
    """alias_key(stored name) -> id, for keys that only one company has.

    Companies created before the id rule learnt other scripts sit under the old
    rule's ids ('Sony ソニー' under 'sony'); their stored name still finds them, so
    an existing database keeps filing that name under the id it already has. A key
    two companies share is ambiguous and finds neither.
    """
    found: dict[str, str | None] = {}
    for cid, name in rows:
        key = alias_key(name)
        found[key] = cid if found.get(key, cid) == cid else None
    return {key: cid for key, cid in found.items() if cid is not None}


def resolve(conn: Connection, names: Iterable[str], *, create: bool = True) -> dict[str, str]:
    """Map each raw name to a company id, creating missing companies in bulk.

    A name resolves through an alias, else its id (:func:`slugify`) when that
    company exists, else (for a name the id rule changed for) a company already
    stored under that name. Unknown names
    are left out of the result when ``create`` is false, so the caller decides
    whether an unknown company is an error; blank names are always left out. A new
    company is named by the first of its spellings in ``names`` (file order), so
    the display name does not depend on set order.
    """
    wanted = [n for n in dict.fromkeys(names) if n and not is_blank(n)]
    if not wanted:
        return {}
    aliases = dict(
        conn.execute(select(company_aliases.c.alias, company_aliases.c.company_id)).all()
    )
    stored = [(r[0], r[1]) for r in conn.execute(select(companies.c.id, companies.c.name))]
    known_ids = {cid for cid, _ in stored}
    by_name: dict[str, str] | None = None  # built on the first miss only
    out: dict[str, str] = {}
    new: dict[str, str] = {}
    for name in wanted:
        # a name that is already an id (what files and providers keyed by id send) is
        # its own alias key and slug: a million of them need no Unicode folding
        plain = len(name) <= MAX_ID and _SLUG_SHAPED.fullmatch(name) is not None
        key = name if plain else alias_key(name)
        if key in aliases:
            out[name] = aliases[key]
            continue
        slug = name if plain else slugify(name)
        if slug in known_ids or slug in new:
            out[name] = slug
            continue
        if _changed_rule(name, slug):
            if by_name is None:
                by_name = _by_stored_name(stored)
            if key in by_name:
                out[name] = by_name[key]
                continue
        if create:
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


_GENERATED_ID = re.compile(rf"[a-z0-9-]*_[a-z2-7]{{{_DIGEST}}}")


def is_id(value: str) -> bool:
    """Whether ``value`` is a company id as :func:`slugify` makes them (either kind)."""
    return bool(value) and len(value) <= MAX_ID and (
        slugify(value) == value or _GENERATED_ID.fullmatch(value) is not None)


def resolve_ids(conn: Connection, named: dict[str, str]) -> dict[str, str]:
    """Company ids for a file that carries them (tracker's own export: ``company`` is the
    id, ``named`` maps it to the display name): an existing id or alias is that
    company; a well-formed id that does not exist yet is created under exactly that id
    and name. Why: resolving an id like a name re-slugs it ('zhushihuishetesuto_d46f..'
    became 'zhushihuishetesuto-d46f..'), so an export did not import back as itself.
    Values that are not ids are left to :func:`resolve`."""
    if not named:
        return {}
    aliases = dict(conn.execute(
        select(company_aliases.c.alias, company_aliases.c.company_id)).all())
    known = set(conn.execute(select(companies.c.id)).scalars())
    out: dict[str, str] = {}
    new: dict[str, str] = {}
    for cid, shown in named.items():
        if cid in known:
            out[cid] = cid
        elif alias_key(cid) in aliases:
            out[cid] = aliases[alias_key(cid)]
        elif is_id(cid):
            out[cid] = cid
            new[cid] = shown.strip() or cid
    if new:
        stamp = now_utc()
        conn.execute(insert(companies), [
            {"id": cid, "name": label, "tags": {}, "external_ids": {}, "created_at": stamp}
            for cid, label in sorted(new.items())])
    return out


def name_unnamed(conn: Connection, names: dict[str, str]) -> None:
    """Give companies still named by their id (as a company created from an id is)
    the display name ``names`` has for them, findable by it as a name given in config
    is (an alias); a company someone named keeps its name."""
    wanted = {cid: label.strip() for cid, label in names.items()
              if label and not is_blank(label) and label.strip() != cid}
    if not wanted:
        return
    unnamed = {r[0] for r in conn.execute(select(companies.c.id).where(
        companies.c.id.in_(list(wanted)), companies.c.name == companies.c.id))}
    rows = [{"cid": cid, "label": wanted[cid]} for cid in sorted(unnamed)]
    if not rows:
        return
    conn.execute(companies.update().where(companies.c.id == bindparam("cid"))
                 .values(name=bindparam("label")), rows)
    taken = {r[0] for r in conn.execute(select(company_aliases.c.alias))}
    aliases = {alias_key(r["label"]): r["cid"] for r in rows}
    new = [{"alias": key, "company_id": cid} for key, cid in aliases.items() if key not in taken]
    if new:
        conn.execute(insert(company_aliases), new)


def find(conn: Connection, name: str) -> str | None:
    """The id of the company called ``name`` (alias, id, or name), else None.

    The order of :func:`resolve`, with the id as typed tried before the id made
    from it: '_5bgfhdt7' is an id, while the id made from it would be '5bgfhdt7'.
    """
    hit = conn.execute(
        select(company_aliases.c.company_id).where(company_aliases.c.alias == alias_key(name))
    ).scalar()
    if hit:
        return hit
    slug = slugify(name)
    for candidate in dict.fromkeys((name, slug)):
        if candidate:
            hit = conn.execute(select(companies.c.id).where(companies.c.id == candidate)).scalar()
            if hit:
                return hit
    if not slug or not _changed_rule(name, slug):
        return None
    stored = conn.execute(select(companies.c.id, companies.c.name)).all()
    return _by_stored_name((r[0], r[1]) for r in stored).get(alias_key(name))


def refs(conn: Connection) -> list[CompanyRef]:
    """Every known company, ordered by id, with what sources need to look it up."""
    rows = conn.execute(
        select(companies.c.id, companies.c.name, companies.c.external_ids)
        .order_by(companies.c.id)
    ).all()
    return [CompanyRef(r.id, r.name, dict(r.external_ids or {})) for r in rows]


def stale(conn: Connection, until: date, cutoff: date, metric: str = DEFAULT_METRIC
          ) -> list[tuple[str, str, date | None]]:
    """(id, name, last day of ``metric`` observed on or before ``until``) of each company
    with no such observation after ``cutoff`` (None: none at all), by id: the stale
    companies of ``tracker status`` and of the report.

    The fresh series come from the days after ``cutoff`` only (the ``(as_of, ...)``
    index), and only the stale companies' last days are looked up: a grouped maximum
    over every observation read the whole table (51 s at 10^8 rows).
    """
    o = observations.alias("o")
    fresh = (select(o.c.series_id).where(o.c.as_of > cutoff, o.c.as_of <= until)
             .distinct().subquery())
    fresh_company = (select(series.c.id).join(fresh, fresh.c.series_id == series.c.id)
                     .where(series.c.company_id == companies.c.id, series.c.metric == metric)
                     .exists())
    last = (select(func.max(observations.c.as_of))
            .join(series, series.c.id == observations.c.series_id)
            .where(series.c.company_id == companies.c.id, series.c.metric == metric,
                   observations.c.as_of <= until)
            .scalar_subquery())
    rows = conn.execute(select(companies.c.id, companies.c.name, last)
                        .where(~fresh_company).order_by(companies.c.id)).all()
    return [(r[0], r[1], _as_date(r[2])) for r in rows]


def _as_date(value: object) -> date | None:
    """A day as the driver returns it (SQLite hands aggregates of dates back as text)."""
    if value is None:
        return None
    if isinstance(value, str):
        return date.fromisoformat(value[:10])
    if isinstance(value, datetime):
        return value.date()
    assert isinstance(value, date)
    return value


def count(store: Store) -> int:
    """How many companies are tracked: the report says it without reading observations."""
    with store.reading("counting companies") as conn:
        return int(conn.execute(select(func.count()).select_from(companies)).scalar() or 0)


def name_of(store: Store, company_id: str) -> str | None:
    """One company's display name (a chart title needs no listing of every company)."""
    with store.reading("reading a company") as conn:
        return conn.execute(select(companies.c.name).where(companies.c.id == company_id)
                            ).scalar()


def names(store: Store) -> dict[str, str]:
    """id -> display name of every company: exports put the name beside the id.

    One read of the companies table, mapped onto the rows by the caller, rather
    than a join per observation: a million-row export maps a few thousand names.
    """
    with store.reading("reading company names") as conn:
        return {r[0]: r[1] for r in conn.execute(select(companies.c.id, companies.c.name))}
