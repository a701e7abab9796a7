"""``http_json``: one GET per company against any JSON API, configured not coded.

Most head-count providers (and in-house scrapers exposing a small API) answer a URL
that contains a company identifier with a JSON document that contains a number
somewhere. Describing "which URL" as a template and "where the number is" as a
path covers them without a plugin per provider; presets such as ``pdl`` subclass
this for the few that need request logic.

Example::

    [sources.acme_api]
    type = "http_json"
    url = "https://api.example.com/companies/{external_id}?date={day}"
    value_path = "data.employee_count"          # or "/data/employee_count"
    date_path = "data.as_of"                    # optional; else the requested day
    header_env = { Authorization = { env = "ACME_TOKEN", prefix = "Bearer " } }
    rate_limit = 5                              # requests per second per host

Role segments: ``metric = "employees:security"`` files the count under that series
instead of ``employees``. When one answer holds several counts (the whole company
and its roles), ``metrics`` maps each series to its path, one request for all::

    value_path = "data.employee_count"          # the source's metric (employees)
    metrics = { "employees:security" = "data.roles.security", "employees:ml" = "data.roles.ml" }

Every path must be in the answer: a missing one fails the company (its other
counts are not stored either), as a missing ``value_path`` does.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from pydantic import Field, field_validator, model_validator

from tracker.errors import FatalSourceError
from tracker.metrics import metric_problem
from tracker.records import CompanyRef, Observation
from tracker.sources.http import Fetched, HttpSettings, HttpSource
from tracker.sources.http_values import check_template, clip, expand, lookup, parse_count, parse_day


class HttpJsonSettings(HttpSettings):
    """``[sources.NAME]`` of type ``http_json``; see the module docstring for an example."""

    url: str = Field(min_length=1)
    value_path: str | None = Field(default=None, min_length=1)
    date_path: str | None = None
    #: More series from the same answer: metric name -> path of its count.
    metrics: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _paths(self) -> HttpJsonSettings:
        if self.value_path is None and not self.metrics:
            raise ValueError("value_path (the path of the count) is required, or metrics "
                             '(e.g. metrics = { "employees:security" = "data.roles.security" })')
        for name, path in self.metrics.items():
            problem = metric_problem(name)
            if problem is not None:
                raise ValueError(f"metrics: {problem}")
            if not path.strip():
                raise ValueError(f"metrics: the path of {name!r} is empty")
        if self.value_path is not None and self.metric in self.metrics:
            raise ValueError(f"metrics: {self.metric!r} is the source's metric, read from "
                             "value_path already; remove it from metrics or value_path")
        return self

    @field_validator("url")
    @classmethod
    def _template(cls, value: str) -> str:
        if not value.startswith(("http://", "https://", "{")):
            raise ValueError(f"url {value!r} must start with http:// or https://")
        return check_template(value)

    @field_validator("params")
    @classmethod
    def _param_templates(cls, value: dict[str, str]) -> dict[str, str]:
        for template in value.values():
            check_template(template)
        return value


def decode_json(fetched: Fetched) -> Any:
    """Parse a body as JSON, saying *why* it is not JSON when it is not.

    "HTML where JSON was expected" usually means a login wall, a captcha or a
    provider error page, which is a different fix from a truncated transfer.
    """
    if not fetched.body.strip():
        raise FatalSourceError(f"GET {fetched.url}: empty response body, expected JSON")
    try:
        return json.loads(fetched.body)
    except ValueError as exc:
        text = fetched.text()
        if "html" in fetched.content_type.lower() or text.lstrip().startswith("<"):
            # clip() redacts the whole text before cutting it: a key the page echoes
            # must not survive as the half that fits
            raise FatalSourceError(
                f"GET {fetched.url}: expected JSON but got HTML "
                f"(Content-Type {clip(fetched.content_type, 80) or 'not set'}), "
                f"starting {clip(text, 60)!r}; is the URL right, or is a login/captcha page "
                "in the way?"
            ) from None
        raise FatalSourceError(
            f"GET {fetched.url}: response is not valid JSON ({exc}; "
            f"{len(fetched.body)} bytes, truncated?)"
        ) from None


class HttpJsonSource(HttpSource):
    """Reads one count per company from a JSON API described by a URL template and a path."""

    name = "http_json"
    Settings = HttpJsonSettings
    settings: HttpJsonSettings

    def request(self, company: CompanyRef, day: date) -> tuple[str, dict[str, str]]:
        url = expand(self.settings.url, company, day)
        params = {
            key: expand(template, company, day, quote_values=False)
            for key, template in self.settings.params.items()
        }
        return url, params

    def parse(self, fetched: Fetched, company: CompanyRef, day: date
              ) -> Observation | list[Observation]:
        payload = decode_json(fetched)
        first = self.read_payload(payload, fetched, company, day) \
            if self.settings.value_path else None
        if not self.settings.metrics:
            assert first is not None
            return first
        as_of = first.as_of if first is not None else self._as_of(payload, fetched, day)
        found = [] if first is None else [first]
        for metric, path in self.settings.metrics.items():
            value = self._count(payload, fetched, path, f"metrics.{metric!r}")
            found.append(Observation(company.id, as_of, value, metric=metric,
                                     source=self.instance))
        return found

    def read_payload(
        self, payload: Any, fetched: Fetched, company: CompanyRef, day: date
    ) -> Observation:
        """Pick the count (and the as-of date, if configured) out of a decoded payload."""
        assert self.settings.value_path is not None
        value = self._count(payload, fetched, self.settings.value_path, "value_path")
        return self.observation(company, self._as_of(payload, fetched, day), value)

    def _count(self, payload: Any, fetched: Fetched, path: str, setting: str) -> int:
        where = f"GET {fetched.url}: {setting}"
        try:
            raw = lookup(payload, path)
        except FatalSourceError as exc:
            raise FatalSourceError(f"{where} {exc}") from None
        return parse_count(raw, f"{where} {path!r}", self.settings.units)

    def _as_of(self, payload: Any, fetched: Fetched, day: date) -> date:
        if not self.settings.date_path:
            return day
        try:
            found = lookup(payload, self.settings.date_path)
        except FatalSourceError as exc:
            raise FatalSourceError(f"GET {fetched.url}: date_path {exc}") from None
        return parse_day(found, f"date_path {self.settings.date_path!r}")
