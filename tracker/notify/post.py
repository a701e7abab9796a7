"""The JSON POST every HTTP notifier shares (``webhook``, ``alertmanager``).

One place for what is easy to get subtly wrong: the receiver's URL is a credential
(anyone holding it can post), so it normally comes from an environment variable
(``url_env``) and is never shown beyond its scheme and host; it is registered with
the shared redactor the moment it is read, which also scrubs urllib3's own debug log
lines. Secret headers come from the environment too. Retries reuse the HTTP sources'
machinery (:class:`tracker.sources.http.PacedRetry`): urllib3 retries connection
errors, 408/429/5xx with exponential backoff that honours a capped ``Retry-After``,
and every failure leaves as one :class:`~tracker.errors.NotifyError` sentence that
counts the attempts made. A subclass only builds the JSON body (and may add
secret headers, :meth:`JsonPostNotifier.secret_headers`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
from pydantic import Field, model_validator
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from tracker.errors import NotifyError
from tracker.notify.base import Notifier, NotifierSettings
from tracker.sources.http import RETRY_STATUSES, USER_AGENT, PacedRetry, Timeout, root_cause
from tracker.sources.http_values import REDACTOR, EnvSecret, clip, read_secret

log = logging.getLogger(__name__)
log.addFilter(REDACTOR)


class PostSettings(NotifierSettings):
    """Where and how to POST: the keys every HTTP notifier accepts."""

    url: str | None = Field(None, description="Receiver URL (prefer url_env: it is a secret)")
    url_env: str | None = Field(None, description="Environment variable holding the URL")
    timeout: Timeout = Field((5.0, 30.0), description="(connect, read) seconds")
    retries: int = Field(3, ge=0, le=10)
    backoff: float = Field(1.0, ge=0, description="backoff factor, s * 2**n")
    backoff_max: float = Field(30.0, ge=0)
    retry_after_max: float = Field(60.0, ge=0, description="cap on Retry-After, s")
    verify: bool = True
    headers: dict[str, str] = Field(default_factory=dict)
    header_env: dict[str, str | EnvSecret] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_url(self) -> PostSettings:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("set exactly one of 'url' and 'url_env' (preferred: the URL is "
                             "a secret, e.g. url_env = \"SLACK_WEBHOOK_URL\")")
        if self.url is not None and urlsplit(self.url).scheme not in ("http", "https"):
            raise ValueError("'url' must start with https:// (or http://)")
        return self


def shown_url(url: str) -> str:
    """``https://hooks.slack.com/…``: scheme and host only, never the secret path."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…"


class JsonPostNotifier(Notifier):
    """Base of the notifiers that POST one JSON document per message."""

    Settings: ClassVar[type[NotifierSettings]] = PostSettings
    settings: PostSettings
    #: The keys that carry credentials, named when the receiver refuses them.
    credential_keys: ClassVar[str] = "header_env"

    def __init__(
        self, instance: str, settings: NotifierSettings, environ: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(instance, settings, os.environ if environ is None else environ)
        s = self.settings
        where = f"[notify.{instance}]"
        self.url = s.url if s.url is not None else read_secret(s.url_env or "", self.environ,
                                                                f"{where} url_env")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise NotifyError(f"{where}: the {self.name} URL from {s.url_env or 'url'} is not "
                              "an http(s) URL")
        REDACTOR.add(self.url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        REDACTOR.add(path)  # urllib3 logs the request line (path and query) at DEBUG
        self.shown = shown_url(self.url)
        secret_headers = {k: read_secret(v, self.environ, f"{where} header_env.{k}")
                          for k, v in s.header_env.items()}
        secret_headers.update(self.secret_headers(where))
        for value in secret_headers.values():
            REDACTOR.add(value)
        retry = PacedRetry(
            total=s.retries, connect=s.retries, read=s.retries, status=s.retries, other=0,
            backoff_factor=s.backoff, backoff_max=s.backoff_max, backoff_jitter=0.1,
            status_forcelist=RETRY_STATUSES, allowed_methods=frozenset({"POST"}),
            respect_retry_after_header=True, raise_on_status=False, raise_on_redirect=False,
        )
        retry.retry_after_max = s.retry_after_max
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy or .netrc surprises in a cron job
        self.session.max_redirects = 0  # a redirected receiver is misconfigured; never follow
        self.session.verify = s.verify
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))
        self.session.headers.update({"User-Agent": USER_AGENT, **s.headers, **secret_headers})

    def secret_headers(self, where: str) -> dict[str, str]:
        """Headers built from secrets (e.g. ``Authorization``) beyond ``header_env``; read
        from ``self.environ``, a missing variable being a ConfigError naming it."""
        return {}

    def post(self, payload: Any, alerts: int) -> None:
        """POST ``payload`` as JSON or raise NotifyError; ``alerts`` is for the log line."""
        s = self.settings
        body = json.dumps(payload, ensure_ascii=False).encode()
        where = f"{self.name} POST {self.shown}"
        try:
            response = self.session.post(
                self.url, data=body, timeout=s.timeout, allow_redirects=False,
                headers={"Content-Type": "application/json; charset=utf-8"},
            )
        except requests.exceptions.RequestException as exc:
            cause = root_cause(exc)
            timeouts = (requests.exceptions.Timeout, TimeoutError, Urllib3Timeout)
            if isinstance(exc, timeouts) or isinstance(cause, timeouts):
                reason = f"timed out (timeout {s.timeout[0]:g}s connect / {s.timeout[1]:g}s read)"
            else:
                reason = f"{type(cause).__name__}: {clip(str(cause), 160)}"
            raise NotifyError(REDACTOR(f"{where}: {reason}, {_attempts(exc, s.retries)}")) from None
        with response:
            if 200 <= response.status_code < 300:
                log.info("%s %s: sent %d alert(s) to %s", self.name, self.instance, alerts,
                         self.shown)
                return
            detail = clip(response.text or "", 120)
            hint = {
                301: "; the URL redirects, configure the final URL",
                302: "; the URL redirects, configure the final URL",
                400: "; the receiver rejected the payload",
                401: f"; the receiver wants credentials ({self.credential_keys})",
                403: "; the URL was revoked or the credentials are wrong",
                404: f"; the {self.name} URL is wrong or was deleted",
                410: f"; the {self.name} URL was deleted",
            }.get(response.status_code, "")
            history = getattr(getattr(response.raw, "retries", None), "history", ())
            retried = (f" after {_plural(len(history) + 1)}"
                       if response.status_code in RETRY_STATUSES else "")
            raise NotifyError(REDACTOR(
                f"{where}: HTTP {response.status_code} {response.reason or ''}".rstrip()
                + (f" ({detail})" if detail else "") + retried + hint
            ))

    def close(self) -> None:
        self.session.close()


def _plural(attempts: int) -> str:
    return f"{attempts} attempt" + ("" if attempts == 1 else "s")


def _attempts(exc: BaseException, retries: int) -> str:
    """How many tries a failed POST really made: urllib3 wraps the last error in a
    MaxRetryError only once the budget is spent; any other error came on the first."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        if isinstance(seen, MaxRetryError):
            return f"after {_plural(retries + 1)}"
        seen = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) \
            else seen.__cause__ or seen.__context__
    return f"after {_plural(1)}"
