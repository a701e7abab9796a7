"""``pdl``: the People Data Labs Company Enrichment API as a ready-made source.

``GET {base_url}/v5/company/enrich`` with ``profile=<LinkedIn URL>`` or
``website=<domain>`` and the key in the ``X-Api-Key`` header; the count is the
documented top-level ``employee_count`` field. PDL answers 404 when it cannot match
a company, which is a per-company failure (fix the company's external_ids), and
charges a credit per 200, so retries are limited to what is actually transient.

Example::

    [sources.pdl]
    type = "pdl"
    api_key_env = "PDL_API_KEY"     # the variable's name; the key itself never goes in config
    rate_limit = 1                  # raise to your plan's per-minute limit / 60
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any, Literal

from pydantic import Field, field_validator

from tracker.errors import FatalSourceError
from tracker.records import CompanyRef, Observation
from tracker.sources.http import Fetched, HttpSettings, HttpSource
from tracker.sources.http_json import decode_json
from tracker.sources.http_values import clip, lookup, parse_count, read_secret

ENRICH_PATH = "/v5/company/enrich"


class PdlSettings(HttpSettings):
    """``[sources.NAME]`` of type ``pdl``; every HTTP setting applies as well."""

    api_key_env: str = Field(default="PDL_API_KEY", min_length=1)
    base_url: str = "https://api.peopledatalabs.com"
    prefer: Literal["linkedin", "website"] = "linkedin"
    min_likelihood: int | None = Field(default=None, ge=1, le=10)
    rate_limit: float | None = Field(default=1.0, gt=0, description="requests/s per host")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url {value!r} must start with http:// or https://")
        return value.rstrip("/")


class PeopleDataLabsSource(HttpSource):
    """Employee counts from PDL company enrichment, matched by LinkedIn URL or website."""

    name = "pdl"
    Settings = PdlSettings
    settings: PdlSettings

    def secret_headers(self, environ: Mapping[str, str]) -> dict[str, str]:
        where = f"[sources.{self.instance}] api_key_env"
        return {"X-Api-Key": read_secret(self.settings.api_key_env, environ, where)}

    def request(self, company: CompanyRef, day: date) -> tuple[str, dict[str, str]]:
        """Match on the LinkedIn profile when known: a domain can front several companies."""
        ids = company.external_ids
        order = (
            ("linkedin", "website")
            if self.settings.prefer == "linkedin"
            else ("website", "linkedin")
        )
        key = next((k for k in order if ids.get(k)), None)
        if key is None:
            raise FatalSourceError(
                f"company {company.id!r} has neither external_ids.linkedin nor "
                "external_ids.website, which PDL needs to find it; add one"
            )
        params = {"profile" if key == "linkedin" else "website": ids[key]}
        if self.settings.min_likelihood is not None:
            params["min_likelihood"] = str(self.settings.min_likelihood)
        params.update(self.settings.params)
        return self.settings.base_url + ENRICH_PATH, params

    def parse(self, fetched: Fetched, company: CompanyRef, day: date) -> Observation:
        payload: Any = decode_json(fetched)
        if not isinstance(payload, dict):
            raise FatalSourceError(f"GET {fetched.url}: expected a JSON object from PDL")
        status = payload.get("status", 200)
        if status != 200:
            raise FatalSourceError(
                f"GET {fetched.url}: PDL answered status {clip(repr(status), 40)}"
            )
        try:
            raw = lookup(payload, "employee_count")
        except FatalSourceError:
            raise FatalSourceError(
                f"GET {fetched.url}: PDL matched {clip(repr(payload.get('name')), 80)} but gave "
                "no employee_count"
            ) from None
        value = parse_count(raw, f"GET {fetched.url}: employee_count", self.settings.units)
        return self.observation(company, day, value)
