"""Shared HTTP machinery for sources that ask a web server one question per company.

Everything that is easy to get subtly wrong lives here once: a pooled
:class:`requests.Session` per source instance, connect/read timeouts, one retry loop
(connecting, the status and reading the body share its budget) with jittered
exponential backoff that honours (a capped) ``Retry-After`` and messages that count
the attempts made, a per-host token-bucket rate limit that also paces the retries,
secrets that come only from environment variables and are scrubbed from every
message and log line, and the translation of requests/urllib3 exceptions into
:mod:`tracker.errors` at the one place they can enter. Concrete sources
(``http_json``, ``html_page``, ``pdl``) only say which URL to ask and how to read
the answer.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from importlib import metadata
from typing import Annotated, Any
from urllib.parse import urlsplit

import requests
from pydantic import AfterValidator, BeforeValidator, Field, field_validator
from requests.adapters import HTTPAdapter
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.util.retry import Retry

from tracker.errors import FatalSourceError, RetriableSourceError, SourceError
from tracker.records import CompanyRef, Observation
from tracker.sources.base import PerCompanySource, SourceContext, SourceSettings
from tracker.sources.http_values import (
    DEFAULT_UNITS,
    REDACTOR,
    EnvSecret,
    clip,
    read_secret,
)

logger = logging.getLogger(__name__)

PROJECT_URL = "https://github.com/headcount-tracker/tracker"
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})

try:
    _VERSION = metadata.version("headcount-tracker")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    _VERSION = "0+unknown"
USER_AGENT = f"tracker/{_VERSION} (+{PROJECT_URL})"


def _one_number_for_both(value: Any) -> Any:
    """Let ``timeout = 10`` mean 10 s for both connecting and reading, ``[5, 30]`` the pair.

    Settings are strict (no value is guessed from another type), and a TOML array is
    a list, never a tuple: so these two documented forms are converted here and every
    other one (``"10"``, ``true``, a table) is refused naming both forms. The items of
    the pair are then validated strictly as numbers.
    """
    from pydantic_core import PydanticCustomError

    if isinstance(value, int | float) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, list | tuple):
        return tuple(value)
    raise PydanticCustomError(
        "timeout_type",
        "Input should be seconds: one number for both, or [connect, read], e.g. 10 or [5, 30]",
    )


def _positive(value: tuple[float, float]) -> tuple[float, float]:
    if min(value) <= 0:
        raise ValueError("both timeouts must be > 0 seconds")
    return value


#: (connect, read) seconds, as requests takes them; one number sets both, a TOML array
#: ``[connect, read]`` each (the deliberate exceptions to strict settings).
Timeout = Annotated[tuple[float, float], BeforeValidator(_one_number_for_both),
                    AfterValidator(_positive)]


class HttpSettings(SourceSettings):
    """HTTP knobs shared by every HTTP source; defaults suit a polite daily crawl."""

    timeout: Timeout = Field(default=(5.0, 30.0), description="(connect, read) s")
    retries: int = Field(default=3, ge=0, le=20)
    backoff: float = Field(default=0.5, ge=0, description="backoff factor, s * 2**n")
    backoff_max: float = Field(default=30.0, ge=0)
    backoff_jitter: float = Field(default=0.25, ge=0, description="random extra wait, s")
    retry_after_max: float = Field(default=60.0, ge=0, description="cap on Retry-After, s")
    rate_limit: float | None = Field(default=None, gt=0, description="requests/s per host")
    burst: int = Field(default=1, ge=1, description="token-bucket capacity")
    workers: int = Field(default=4, ge=1, le=64)
    max_bytes: int = Field(default=5_000_000, ge=1024)
    verify: bool = True
    user_agent: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    header_env: dict[str, str | EnvSecret] = Field(default_factory=dict)
    params: dict[str, str] = Field(default_factory=dict)
    params_env: dict[str, str | EnvSecret] = Field(default_factory=dict)
    units: list[str] = Field(
        default_factory=lambda: list(DEFAULT_UNITS),
        description="words a count may be followed by ('12,345 employees'); [] for none",
    )

    @field_validator("units")
    @classmethod
    def _unit_words(cls, value: list[str]) -> list[str]:
        """A unit is words, not digits or '+': '500+' must stay a size band, not a count."""
        words = [" ".join(unit.split()) for unit in value]
        for unit in words:
            if not unit or any(c.isdigit() or c in "+-.,~" for c in unit):
                raise ValueError(f"unit {unit!r} must be a word such as 'employees'")
        return words


class TokenBucket:
    """Thread-safe token bucket; callers reserve a slot under the lock and sleep outside it."""

    def __init__(self, rate: float, burst: int = 1) -> None:
        self.rate, self.capacity = rate, float(burst)
        self._tokens, self._stamp = float(burst), time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, waiting if needed; returns the seconds waited."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)
        return wait


class HostLimiter:
    """One token bucket per ``scheme://host:port``, created on first use."""

    def __init__(self, rate: float | None, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def acquire(self, host: str) -> None:
        if self.rate is None:
            return
        with self._lock:
            bucket = self._buckets.setdefault(host, TokenBucket(self.rate, self.burst))
        bucket.acquire()


def host_key(scheme: str, host: str | None, port: int | None) -> str:
    port = port or (443 if scheme == "https" else 80)
    return f"{scheme}://{(host or '').lower()}:{port}"


class PacedRetry(Retry):
    """urllib3 Retry that caps Retry-After and takes a rate-limit token before each retry.

    For callers that let urllib3 retry inside the adapter, out of their sight (the
    webhook notifier); the HTTP sources run their own loop (:class:`HttpClient`),
    because a body read after urllib3 returned is outside urllib3's loop.
    """

    limiter: HostLimiter | None = None
    retry_after_max: float = 60.0
    host: str = ""

    def new(self, **kw: Any) -> PacedRetry:
        retry = super().new(**kw)
        retry.limiter, retry.retry_after_max = self.limiter, self.retry_after_max
        retry.host = self.host
        return retry

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> PacedRetry:
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        if _pool is not None:
            retry.host = host_key(_pool.scheme, _pool.host, _pool.port)
        cause = f"HTTP {response.status}" if response is not None else type(error).__name__
        logger.debug("retrying %s %s after %s", method, REDACTOR(str(url)), cause)
        return retry

    def get_backoff_time(self) -> float:
        """Back off before the first retry too: urllib3 retries at once, so a provider's
        brief 5xx would be hit again by every worker in the same millisecond."""
        errors = len(self.history)  # requests follows redirects itself; these are all errors
        if errors == 0:
            return 0.0
        value = self.backoff_factor * 2 ** (errors - 1) + random.random() * self.backoff_jitter
        return float(max(0.0, min(self.backoff_max, value)))

    def parse_retry_after(self, retry_after: str) -> float:
        seconds = super().parse_retry_after(retry_after)
        if seconds > self.retry_after_max:
            logger.info("Retry-After %.0f s capped to %.0f s", seconds, self.retry_after_max)
        return min(seconds, self.retry_after_max)

    def sleep(self, response: Any = None) -> None:
        super().sleep(response)
        if self.limiter is not None and self.host:
            self.limiter.acquire(self.host)


@dataclass(frozen=True, slots=True)
class Fetched:
    """A successful (2xx) response, already read within ``max_bytes``.

    ``url`` is the final URL (after redirects) with secrets redacted, ready to show.
    """

    url: str
    status: int
    content_type: str
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


_FATAL_REQUEST_ERRORS = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidHeader,
    requests.exceptions.TooManyRedirects,
    requests.exceptions.InvalidJSONError,
    requests.exceptions.ContentDecodingError,  # a corrupt gzip body: it will not mend
)
_TIMEOUTS = (requests.exceptions.Timeout, TimeoutError, Urllib3Timeout)
_STATUS_HINTS = {
    401: "; the credentials were rejected, check the key's environment variable",
    403: "; access denied, check the key's permissions",
    404: "; the company is unknown there, check its external_ids",
    402: "; the account is out of credits",
}


class _AttemptFailed(Exception):
    """One attempt failed; :meth:`HttpClient.get` decides whether to try again.

    ``again``: worth another attempt now (429, most 5xx, timeouts, dropped connections,
    bodies cut off mid-transfer). ``retriable``: worth trying on the next run when the
    attempts are used up.
    """

    def __init__(
        self,
        message: str,
        *,
        again: bool = False,
        retriable: bool = False,
        retry_after: float | None = None,
        hint: str = "",
    ) -> None:
        super().__init__(message)
        self.message, self.again, self.retriable = message, again, retriable or again
        self.retry_after, self.hint = retry_after, hint


def _attempts(n: int) -> str:
    return f"after {n} attempt" + ("s" if n != 1 else "")


def shown_url(url: str) -> str:
    """A URL as it may appear in a message: secrets redacted, then shortened."""
    return clip(url, 240)


class _Session(requests.Session):
    """Strips secret headers on a redirect to another host, as requests does for Authorization.

    Without this an ``X-Api-Key`` would follow a redirect to whatever host the
    server names.
    """

    secret_headers: frozenset[str] = frozenset()

    def rebuild_auth(self, prepared_request: Any, response: Any) -> None:
        super().rebuild_auth(prepared_request, response)
        if self.should_strip_auth(response.request.url, prepared_request.url):
            for name in self.secret_headers:
                prepared_request.headers.pop(name, None)


class HttpClient:
    """One pooled, retrying, rate-limited Session; every failure leaves as a SourceError.

    The retry loop is ours rather than urllib3's: with ``stream=True`` the body is read
    after urllib3 has returned, so a transfer cut off mid-body (IncompleteRead) was
    never retried, and urllib3 cannot say how many attempts it made, so messages gave
    the configured number instead. Here one budget of ``retries`` and one backoff cover
    connecting, the status and reading the body, and every message counts the attempts
    really made. Each attempt takes a rate-limit token, so retries obey the limit too.
    """

    def __init__(
        self, settings: HttpSettings, headers: Mapping[str, str], secret_headers: frozenset[str]
    ) -> None:
        self.settings = settings
        self.limiter = HostLimiter(settings.rate_limit, settings.burst)
        adapter = HTTPAdapter(
            pool_connections=4, pool_maxsize=settings.workers, pool_block=True, max_retries=0
        )
        self.session = _Session()
        self.session.secret_headers = secret_headers
        self.session.max_redirects = 5
        self.session.trust_env = False  # no ~/.netrc or proxy env surprises in a cron job
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update({"User-Agent": settings.user_agent or USER_AGENT})
        self.session.headers.update(headers)
        self.session.verify = settings.verify

    def get(self, url: str, params: Mapping[str, str], company: str) -> Fetched:
        """GET ``url``; raise Retriable/FatalSourceError with a secret-free message."""
        parts = urlsplit(url)
        host = host_key(parts.scheme, parts.hostname, parts.port)
        attempt = 0
        while True:
            attempt += 1
            self.limiter.acquire(host)
            try:
                return self._attempt(url, params)
            except _AttemptFailed as failed:
                if failed.again and attempt <= self.settings.retries:
                    wait = self._backoff(attempt, failed.retry_after)
                    logger.debug("%s; attempt %d of %d, next in %.2f s", failed.message,
                                 attempt, self.settings.retries + 1, wait)
                    time.sleep(wait)
                    continue
                message = failed.message
                if failed.retriable or attempt > 1:
                    message += f", {_attempts(attempt)}"
                error = RetriableSourceError if failed.retriable else FatalSourceError
                raise error(message + failed.hint, company) from None

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before attempt ``attempt + 1``: the server's (capped) Retry-After if it
        gave one, else exponential backoff with jitter, so workers do not retry in step."""
        if retry_after:
            return min(retry_after, self.settings.retry_after_max)
        s = self.settings
        value = s.backoff * 2 ** (attempt - 1) + random.random() * s.backoff_jitter
        return float(max(0.0, min(s.backoff_max, value)))

    def _attempt(self, url: str, params: Mapping[str, str]) -> Fetched:
        """One request, redirects included; any failure leaves as :class:`_AttemptFailed`."""
        shown = shown_url(url)
        try:
            with self.session.get(
                url, params=params, timeout=self.settings.timeout, stream=True
            ) as response:
                shown = shown_url(response.url)
                if not 200 <= response.status_code < 300:
                    raise self._refused(response, shown)
                body = self._read(response, shown)
                content_type = response.headers.get("Content-Type", "")
                return Fetched(shown, response.status_code, content_type, body)
        except _AttemptFailed:
            raise
        except _FATAL_REQUEST_ERRORS as exc:
            raise _AttemptFailed(f"GET {shown}: {clip(str(exc), 200)}") from None
        except requests.exceptions.SSLError as exc:
            if "certificate" in str(exc).lower():  # configuration, not bad luck: no retry
                raise _AttemptFailed(
                    f"GET {shown}: {self._describe(exc)}",
                    hint="; the server's certificate was refused (see the 'verify' setting)",
                ) from None
            raise _AttemptFailed(f"GET {shown}: {self._describe(exc)}", again=True) from None
        except requests.exceptions.RequestException as exc:
            raise _AttemptFailed(f"GET {shown}: {self._describe(exc)}", again=True) from None

    def _describe(self, exc: BaseException) -> str:
        cause = root_cause(exc)
        if isinstance(exc, _TIMEOUTS) or isinstance(cause, _TIMEOUTS):
            connect, read = self.settings.timeout
            return f"timed out (timeout {connect:g}s connect / {read:g}s read)"
        return f"{type(cause).__name__}: {clip(str(cause), 160)}"

    def _refused(self, response: requests.Response, shown: str) -> _AttemptFailed:
        """A non-2xx answer as a failed attempt, quoting the start of its body, which is
        where providers say what is wrong ("unknown field", "quota exceeded")."""
        status = response.status_code
        detail = f"HTTP {status} {clip(response.reason or '', 60)}".strip() + f" from GET {shown}"
        try:
            head = next(response.iter_content(2048), b"").decode("utf-8", errors="replace")
        except requests.exceptions.RequestException:
            head = ""
        if head.strip():
            detail += f" ({clip(head, 120)})"
        if status in RETRY_STATUSES:
            after = response.headers.get("Retry-After")
            hint = f"; server asked to retry after {clip(after, 40)}" if after else ""
            return _AttemptFailed(detail, again=True, retry_after=self._retry_after(after),
                                  hint=hint)
        if status >= 500 and status not in (501, 505):
            return _AttemptFailed(detail, retriable=True, hint=f" (HTTP {status} is not retried)")
        return _AttemptFailed(detail, hint=_STATUS_HINTS.get(status, ""))

    def _retry_after(self, value: str | None) -> float | None:
        """Seconds a Retry-After header asks for (delta or HTTP date); None if unreadable."""
        if not value:
            return None
        try:
            seconds = float(Retry().parse_retry_after(value))
        except Exception:  # urllib3 raises InvalidHeader; a bad header is no reason to fail
            return None
        if seconds > self.settings.retry_after_max:
            logger.info("Retry-After %.0f s capped to %.0f s", seconds,
                        self.settings.retry_after_max)
        return seconds

    def _read(self, response: requests.Response, shown: str) -> bytes:
        chunks, size = [], 0
        try:
            for chunk in response.iter_content(64 * 1024):
                size += len(chunk)
                if size > self.settings.max_bytes:
                    raise _AttemptFailed(
                        f"GET {shown}: response larger than max_bytes={self.settings.max_bytes}"
                    )
                chunks.append(chunk)
        except _FATAL_REQUEST_ERRORS:
            raise
        except requests.exceptions.RequestException as exc:
            reason = self._describe(exc)
            if reason.startswith("timed out"):
                message = f"GET {shown}: {reason} reading the body ({size:,} bytes read)"
            else:
                message = f"GET {shown}: the body was cut off mid-transfer after {size:,} bytes"
                message += f" ({reason})"
            raise _AttemptFailed(message, again=True) from None
        return b"".join(chunks)

    def close(self) -> None:
        self.session.close()


def root_cause(exc: BaseException) -> BaseException:
    """The innermost cause ('Connection refused'), not requests' 300-character wrapper."""
    seen: BaseException = exc
    for _ in range(10):
        inner = getattr(seen, "reason", None)
        if not isinstance(inner, BaseException):
            inner = seen.__cause__ or seen.__context__
        if inner is None or inner is seen:
            break
        seen = inner
    return seen


class HttpSource(PerCompanySource):
    """Base of per-company HTTP sources: builds the client, subclasses build and parse."""

    Settings = HttpSettings
    settings: HttpSettings

    def __init__(
        self,
        instance: str,
        settings: SourceSettings,
        context: SourceContext,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(instance, settings, context)
        env = os.environ if environ is None else environ
        where = f"[sources.{instance}]"
        secrets = {
            key: read_secret(spec, env, f"{where} header_env.{key}")
            for key, spec in self.settings.header_env.items()
        }
        secrets.update(self.secret_headers(env))
        self.secret_params = {
            k: read_secret(v, env, f"{where} params_env.{k}")
            for k, v in self.settings.params_env.items()
        }
        self.workers = self.settings.workers
        headers = {**self.settings.headers, **secrets}
        self.client = HttpClient(self.settings, headers, frozenset(secrets))

    def secret_headers(self, environ: Mapping[str, str]) -> dict[str, str]:
        """Secret headers a preset adds to the configured ones (e.g. an API key)."""
        return {}

    @abstractmethod
    def request(self, company: CompanyRef, day: date) -> tuple[str, dict[str, str]]:
        """Return the URL and query parameters to ask about ``company`` on ``day``."""

    @abstractmethod
    def parse(self, fetched: Fetched, company: CompanyRef, day: date
              ) -> Observation | list[Observation]:
        """Read the observation out of a successful response or raise FatalSourceError."""

    def fetch_company(self, company: CompanyRef, day: date) -> Observation | list[Observation]:
        try:
            url, params = self.request(company, day)
            fetched = self.client.get(url, {**params, **self.secret_params}, company.id)
            return self.parse(fetched, company, day)
        except SourceError as exc:
            raise type(exc)(REDACTOR(str(exc)), company.id) from None
        except Exception as exc:  # a bug must cost one company, not the whole run
            logger.exception("%s: unexpected error for %s", self.instance, company.id)
            raise FatalSourceError(
                REDACTOR(f"internal error {type(exc).__name__}: {exc}"), company.id
            ) from None

    def observation(self, company: CompanyRef, as_of: date, value: int) -> Observation:
        return Observation(
            company.id, as_of, value, metric=self.settings.metric, source=self.instance
        )

    def close(self) -> None:
        self.client.close()
