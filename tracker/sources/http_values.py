"""Values that enter HTTP sources from outside: URL templates, payload fields, secrets.

Shared by every HTTP source and kept apart from the transport in ``http.py`` because
these are small pure functions, easy to table-test with no sockets involved. Secrets
are registered with :data:`REDACTOR` the moment they are read, so no message built
later can carry one, and :func:`clip`, the one way outside text is shown, redacts
before it shortens. The rule that matters most lives in :func:`parse_count`: only a
value that is wholly a count becomes an observation; an error string, a decimal, a
size band, a zero or a negative count is a failed fetch, because one wrong value in
the append-only history looks like a purge.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
import string
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any
from urllib.parse import quote, quote_plus

from pydantic import BaseModel, ConfigDict, Field

from tracker.counts import MAX_COUNT, SEPARATOR_CHARS
from tracker.errors import ConfigError, FatalSourceError
from tracker.records import CompanyRef


def check_template(template: str) -> str:
    """Reject an unbalanced ``{`` at config time rather than on the first company."""
    try:
        list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"bad template {template!r}: {exc}") from None
    return template


class _UrlValue(str):
    """A placeholder value: URL-quoted by default, verbatim with ``{key:raw}``."""

    __slots__ = ()

    def __format__(self, spec: str) -> str:
        if spec == "raw":
            return str(self)
        if spec:
            raise ValueError(f"unknown format {spec!r} (only ':raw' is supported)")
        return quote(str(self), safe="")


def expand(template: str, company: CompanyRef, day: date, *, quote_values: bool = True) -> str:
    """Fill ``{company} {name} {day} {<external id key>}``; missing ones are fatal."""
    wrap = _UrlValue if quote_values else str
    values: dict[str, Any] = {k: wrap(v) for k, v in company.external_ids.items()}
    values.update(company=wrap(company.id), name=wrap(company.name), day=day)
    try:
        return template.format_map(values)
    except KeyError as exc:
        key = exc.args[0]
        known = ", ".join(sorted(company.external_ids)) or "none"
        raise FatalSourceError(
            f"template {template!r} needs {{{key}}} but company {company.id!r} has no "
            f"external_ids.{key} (it has: {known}); add it to the company or change the template",
            company.id,
        ) from None
    except (ValueError, IndexError) as exc:
        raise FatalSourceError(f"template {template!r}: {exc}", company.id) from None


#: Unit words an HTTP source accepts after a count unless its ``units`` setting says otherwise.
DEFAULT_UNITS = ("employees", "employee", "people", "staff")

_SEP = f"[{SEPARATOR_CHARS}]"
#: The number at the start of a value: digits in strict groups of three with one separator
#: throughout (tried first, so "1,234" is not read as "1" followed by ",234"), or plain
#: digits; then an optional fraction and an optional K/M suffix that is a word of its own.
_LEADING_COUNT = re.compile(
    rf"(?P<sign>[-\u2212])?"
    rf"(?P<int>\d{{1,3}}(?P<sep>{_SEP})\d{{3}}(?:(?P=sep)\d{{3}})*(?!\d)|\d+)"
    r"(?:\.(?P<frac>\d+))?"
    r"(?:\s?(?P<suffix>[kKmM])(?![^\W\d_]))?"
)
_SCALE = {"k": 1_000, "m": 1_000_000}


def parse_count(value: Any, what: str, units: Sequence[str] = ()) -> int:
    """Turn a payload value into a positive head count, or raise FatalSourceError.

    The WHOLE value must be a count: a JSON integer (or a whole float such as 1200.0), or
    a string holding only digits in strict thousands groups ("12,345", "12 345"), an
    optional fraction and K/M suffix that together make a whole number ("1.2K"), and one
    of ``units`` ("12,345 employees"). Anything else is a failure quoting the value:
    taking the first number out of "error 429: rate limited" stored 429 as a head count,
    and one wrong value in the append-only history pages someone about a drop that never
    happened. "500+" is a lower bound (a size band), not a count, and "1.234" is refused
    as ambiguous. Zero and negative counts are refused as well: a provider that lost a
    company often answers 0, and storing it would look like a purge.
    """
    if value is None:
        raise FatalSourceError(f"{what} is null")
    if isinstance(value, bool):
        raise FatalSourceError(f"{what} is a boolean ({value}), not a count")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise FatalSourceError(f"{what} is {value}, not a count")
        if not value.is_integer():
            raise FatalSourceError(f"{what} is {value}, not a whole number")
        number = int(value)
    elif isinstance(value, str):
        number = _count_in_text(value, what, units)
    else:
        raise FatalSourceError(f"{what} is a {type(value).__name__}, not a number")
    if number <= 0:
        raise FatalSourceError(f"{what} is {number}; a count must be positive")
    if number > MAX_COUNT:
        raise FatalSourceError(f"{what} is {number}, too large to be a count")
    return number


def _count_in_text(value: str, what: str, units: Sequence[str]) -> int:
    """The count a string spells, or a FatalSourceError quoting it and saying why not."""
    # Redacted before it is parsed: a key that starts with digits ("8HYyf...") would
    # otherwise be split into a number and a rest, and the rest quoted unrecognised.
    text = REDACTOR(value).strip()
    if not text:
        raise FatalSourceError(f"{what} is empty, not a count")

    def refuse(why: str) -> FatalSourceError:
        return FatalSourceError(f"{what} {clip(text)!r} is not a count: {why}")

    match = _LEADING_COUNT.match(text)
    if match is None:
        raise refuse("it does not start with a number")
    digits, frac, suffix = match["int"], match["frac"] or "", match["suffix"]
    rest = text[match.end():].strip()
    if rest.startswith("+"):
        raise refuse("it is a lower bound (a size band such as '10,001+'), not a count")
    if frac and not suffix and not match["sep"] and len(digits) <= 3 and len(frac) == 3:
        raise refuse(
            "it is ambiguous ('1.234' is 1.234 in English, 1234 in German); "
            "a count is written 1234 or 1,234"
        )
    if rest and " ".join(rest.split()).casefold() not in {u.casefold() for u in units}:
        hint = ""
        if rest.isalpha():  # a word: perhaps a unit the config should declare
            hint = (f" and is not one of the declared units ({', '.join(units)})" if units
                    else " and the source declares no units (its 'units' setting)")
        raise refuse(f"{clip(rest, 40)!r} follows the number{hint}")
    scaled = int(re.sub(r"\D", "", digits) + frac) * _SCALE.get((suffix or "").lower(), 1)
    number, remainder = divmod(scaled, 10 ** len(frac))
    if remainder:
        raise refuse("it is not a whole number")
    if len(str(number)) > len(str(MAX_COUNT)):  # int() of 10,000 digits costs; say so early
        raise refuse("it is too large to be a count")
    return -number if match["sign"] else number


def clip(text: str, limit: int = 80) -> str:
    """Redact secrets, THEN fold whitespace and shorten: how any outside text is shown.

    In this order because a secret cut in half by clipping can no longer be recognised,
    and the surviving half (the first 57 characters of a body that echoed the key) was
    printed and stored in the run record. Every body, header, URL, value or exception
    text that reaches a message or a log goes through here.
    """
    text = " ".join(REDACTOR(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def lookup(payload: Any, path: str) -> Any:
    """Follow a dotted path (``data.items.0.count``) or a JSON pointer (``/data/count``).

    A missing step is a FatalSourceError that says where the path broke and what
    was there instead, which is what one needs to fix a ``value_path`` in config.
    """
    if path.startswith("/"):
        steps = [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]
    else:
        steps = path.split(".") if path else []
    node, walked = payload, []
    for step in steps:
        where = "/".join(walked) or "the top level"
        if isinstance(node, dict):
            if step not in node:
                keys = ", ".join(sorted(map(str, node))[:12]) or "none"
                raise FatalSourceError(
                    f"{path!r}: no key {step!r} at {clip(where, 80)} (keys: {clip(keys, 160)})"
                )
            node = node[step]
        elif isinstance(node, list):
            try:
                node = node[int(step)]
            except (ValueError, IndexError):
                raise FatalSourceError(
                    f"{path!r}: {step!r} is not an index into the {len(node)}-item list at {where}"
                ) from None
        else:
            raise FatalSourceError(
                f"{path!r}: cannot take {step!r} of a {type(node).__name__} at {where}"
            )
        walked.append(step)
    return node


def parse_day(value: Any, what: str) -> date:
    """An ISO date or datetime string (``2022-10-12``, ``2022-10-12T08:00:00Z``) -> date."""
    if isinstance(value, str) and len(value) >= 10:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            pass
    raise FatalSourceError(f"{what} {clip(str(value))!r} is not an ISO date (YYYY-MM-DD)")


class EnvSecret(BaseModel):
    """A value read from an environment variable, e.g. ``{env = "TOKEN", prefix = "Bearer "}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str = Field(min_length=1)
    prefix: str = ""


def _written_forms(secret: str) -> set[str]:
    """The ways a secret can come back: as sent in a query string or path (percent-encoded
    either way, upper- or lower-case hex), inside a JSON string, or HTML-escaped in a page."""
    encoded = {quote(secret, safe=""), quote(secret), quote_plus(secret)}
    encoded |= {re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), form) for form in encoded}
    in_json = json.dumps(secret)[1:-1]
    return {secret, *encoded, in_json, in_json.replace("/", "\\/"),
            json.dumps(secret, ensure_ascii=False)[1:-1], html.escape(secret)}


class Redactor(logging.Filter):
    """Replaces known secret values (and the forms they are written in) with ``***``.

    Every log record of the process passes through it (see :func:`_redact_records`),
    tracebacks included, because urllib3 logs request URLs at DEBUG and an exception's
    text may quote a body that echoed the key. It is also a logging.Filter for code that
    attaches it to a logger explicitly.
    """

    def __init__(self) -> None:
        super().__init__()
        self._secrets: tuple[str, ...] = ()  # replaced, never mutated: readers need no lock

    def add(self, secret: str) -> None:
        if len(secret) >= 4:  # masking "a" everywhere would garble every message
            forms = {*self._secrets, *(f for f in _written_forms(secret) if len(f) >= 4)}
            self._secrets = tuple(sorted(forms, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def scrub(self, record: logging.LogRecord) -> None:
        """Redact a record's message, traceback and stack in place."""
        if not self._secrets:
            return
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call: logging reports it when it is emitted
            return
        clean = self(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            if self(text) != text:
                record.exc_text = self(text)  # formatters print exc_text when it is set
        elif record.exc_text:
            record.exc_text = self(record.exc_text)
        if record.stack_info:
            record.stack_info = self(record.stack_info)

    def filter(self, record: logging.LogRecord) -> bool:
        self.scrub(record)
        return True


REDACTOR = Redactor()


def _redact_records() -> None:
    """Scrub every log record the process creates, whichever logger and handler it meets.

    A filter on named loggers misses their children, other libraries and tracebacks
    (``log.exception`` of an error whose text quotes a body); the record factory sees
    each record once, when it is made, before any handler formats it.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacts_secrets", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        REDACTOR.scrub(record)
        return record

    factory.redacts_secrets = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


_redact_records()


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: How environment variables are named in practice: upper case, short.
_CONVENTIONAL_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")


def read_secret(spec: str | EnvSecret, environ: Mapping[str, str], where: str) -> str:
    """Resolve an env-var reference; a missing variable is a ConfigError naming it."""
    secret = spec if isinstance(spec, EnvSecret) else EnvSecret(env=spec)
    if not _ENV_NAME.fullmatch(secret.env):
        # Probably the secret itself pasted into the config: never repeat it.
        REDACTOR.add(secret.env)
        raise ConfigError(
            f"{where}: the value given is not an environment variable name (letters, digits "
            "and _, e.g. ACME_TOKEN); put the secret in an environment variable and give "
            "its name here"
        )
    value = environ.get(secret.env)
    if not value and not _CONVENTIONAL_NAME.fullmatch(secret.env):
        # An unset "name" like sk_live_4eC39HqLyjWDarjtT1zdp7dc is a key pasted where
        # its variable's name belongs: say so without repeating it.
        REDACTOR.add(secret.env)
        raise ConfigError(
            f"{where}: the value given is not the name of a set environment variable and "
            "looks like a secret pasted in by mistake (not shown); put the secret in an "
            "environment variable and give its name here (e.g. ACME_TOKEN)"
        )
    if not value:
        raise ConfigError(
            f"{where} reads environment variable {secret.env}, which is not set or empty; "
            f"export {secret.env}=... before running"
        )
    REDACTOR.add(value)
    return secret.prefix + value
