"""Values that enter HTTP sources from outside: URL templates, payload fields, secrets.

Shared by every HTTP source and kept apart from the transport in ``http.py`` because
these are small pure functions, easy to table-test with no sockets involved. Secrets
are registered with :data:`REDACTOR` the moment they are read, so no message built
later can carry one. The rule that matters most lives in :func:`parse_count`: a
missing, zero or negative count is a failed fetch, never an observation, because a
provider that lost track of a company often answers 0, which would look like a purge.
"""

from __future__ import annotations

import logging
import math
import re
import string
from collections.abc import Mapping
from datetime import date
from typing import Any
from urllib.parse import quote, quote_plus

from pydantic import BaseModel, ConfigDict, Field

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


_NUMBER = re.compile(
    r"(?<![\w.])(\d{1,3}(?:[,\u00a0\u202f' ]\d{3})+|\d+)(\.\d+)?\s*([kKmMbB](?![a-zA-Z]))?"
)
_SCALE = {"k": 1_000, "m": 1_000_000, "b": 1_000_000_000}


def parse_count(value: Any, what: str) -> int:
    """Turn a payload value into a positive head count, or raise FatalSourceError.

    Zero, negative, missing and non-numeric values are failures, never observations:
    a provider that lost a company often answers 0, and storing it would look like a purge.
    """
    if value is None:
        raise FatalSourceError(f"{what} is null")
    if isinstance(value, bool):
        raise FatalSourceError(f"{what} is a boolean ({value}), not a count")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise FatalSourceError(f"{what} is {value}, not a count")
        number = round(value)
    elif isinstance(value, str):
        text = value.strip()
        negative = text.startswith(("-", "\u2212"))
        match = _NUMBER.search(text)
        if not match:
            raise FatalSourceError(f"{what} {clip(text)!r} contains no number")
        digits, fraction, suffix = match.groups()
        amount = float(re.sub(r"\D", "", digits) + (fraction or ""))
        number = round(amount * _SCALE.get((suffix or "").lower(), 1))
        number = -number if negative else number
    else:
        raise FatalSourceError(f"{what} is a {type(value).__name__}, not a number")
    if number <= 0:
        raise FatalSourceError(f"{what} is {number}; a count must be positive")
    return number


def clip(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
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
                raise FatalSourceError(f"{path!r}: no key {step!r} at {where} (keys: {keys})")
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


class Redactor(logging.Filter):
    """Replaces known secret values (and their URL-encoded forms) with ``***``.

    Installed as a filter on the urllib3 loggers too, because urllib3 logs request
    URLs at DEBUG and a secret query parameter would otherwise reach the log file.
    """

    def __init__(self) -> None:
        super().__init__()
        self._secrets: tuple[str, ...] = ()  # replaced, never mutated: readers need no lock

    def add(self, secret: str) -> None:
        if len(secret) >= 4:  # masking "a" everywhere would garble every message
            forms = {*self._secrets, secret, quote(secret, safe=""), quote_plus(secret)}
            self._secrets = tuple(sorted(forms, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            clean = self(message)
            if clean != message:
                record.msg, record.args = clean, ()
        return True


REDACTOR = Redactor()
# Logger filters do not apply to child loggers, hence every name. urllib3 logs request
# URLs (query strings included) at DEBUG, so it is scrubbed as well.
for _name in (
    "tracker.sources.http",
    "tracker.sources.http_json",
    "tracker.sources.html_page",
    "tracker.sources.pdl",
    "urllib3.connectionpool",
    "urllib3.util.retry",
):
    logging.getLogger(_name).addFilter(REDACTOR)


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
    if not value:
        raise ConfigError(
            f"{where} reads environment variable {secret.env}, which is not set or empty; "
            f"export {secret.env}=... before running"
        )
    REDACTOR.add(value)
    return secret.prefix + value
