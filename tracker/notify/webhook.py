"""``webhook``: one Slack-compatible JSON POST per run summarising the new alerts.

The body is ``{"text": ..., "blocks": [...]}``: Slack (and Mattermost, Rocket.Chat,
Discord's ``/slack`` endpoint) render the blocks and use ``text`` for the push
notification; a generic receiver gets the same JSON, plus the alert records under
``"alerts"`` with ``include_alerts = true``.

A webhook URL is a credential (anyone holding it can post), so it normally comes
from an environment variable (``url_env``) and is never shown beyond its scheme and
host: it is registered with the shared redactor the moment it is read, which also
scrubs urllib3's own debug log lines. Retries reuse the HTTP sources' machinery:
urllib3 ``Retry`` on connection errors, 408/429/5xx, with exponential backoff that
honours a capped ``Retry-After``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import requests
from pydantic import Field, model_validator
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from tracker.errors import NotifyError
from tracker.notify.base import (
    Notifier,
    NotifierSettings,
    NotifyContext,
    alert_details,
    alert_line,
    company_label,
    count,
    day_text,
    event_headline,
    event_line,
    events,
    headline,
    join_names,
    ordered,
    pct,
)
from tracker.records import Alert
from tracker.sources.http import RETRY_STATUSES, USER_AGENT, PacedRetry, Timeout, root_cause
from tracker.sources.http_values import REDACTOR, EnvSecret, clip, read_secret

log = logging.getLogger(__name__)
log.addFilter(REDACTOR)

_SLACK_TEXT_MAX = 3000  # characters of one section or context text
_HEADER_MAX = 150  # characters of a header block
_MESSAGE_TEXT_MAX = 40_000  # Slack truncates the top-level text beyond this
#: The most characters each kind of block may carry, by its ``type``.
_BLOCK_LIMITS = {"header": _HEADER_MAX, "section": _SLACK_TEXT_MAX, "context": _SLACK_TEXT_MAX}
_ENTITY_MAX = len("&amp;")


class WebhookSettings(NotifierSettings):
    url: str | None = Field(None, description="Webhook URL (prefer url_env: it is a secret)")
    url_env: str | None = Field(None, description="Environment variable holding the URL")
    timeout: Timeout = Field((5.0, 30.0), description="(connect, read) seconds")
    retries: int = Field(3, ge=0, le=10)
    backoff: float = Field(1.0, ge=0, description="backoff factor, s * 2**n")
    backoff_max: float = Field(30.0, ge=0)
    retry_after_max: float = Field(60.0, ge=0, description="cap on Retry-After, s")
    verify: bool = True
    headers: dict[str, str] = Field(default_factory=dict)
    header_env: dict[str, str | EnvSecret] = Field(default_factory=dict)
    include_alerts: bool = Field(False, description="Add the alert records as 'alerts'")

    @model_validator(mode="after")
    def _one_url(self) -> WebhookSettings:
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


def slack_escape(text: str) -> str:
    """Slack's three control characters as entities, so data is only ever shown.

    Slack reads ``<!channel>``, ``<@U123>`` and ``<http://x|label>`` anywhere in a
    message (the top-level ``text`` as much as a block), so a company name could page
    a whole channel or disguise a link. ``&`` first, or the entities would be doubled.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cap(text: str, limit: int) -> str:
    """Truncate escaped text to ``limit`` characters, keeping line breaks (``clip``
    folds them) and never cutting an entity in half (``&am…`` would show as such)."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&", max(0, len(cut) - _ENTITY_MAX + 1))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _slack_safe(node: Any, limit: int = _MESSAGE_TEXT_MAX) -> Any:
    """The Slack part of a message with every string escaped, then capped to the limit
    of the block it is in.

    One pass over the finished message rather than an escape per place data is
    interpolated: a field added later is covered too (the top-level ``text`` once was
    not). Our own strings (block types, ``*bold*``, arrows) survive escaping
    unchanged or as entities Slack shows as written, and caps apply to what is sent,
    which escaping makes longer.
    """
    if isinstance(node, str):
        return _cap(slack_escape(node), limit)
    if isinstance(node, list):
        return [_slack_safe(item, limit) for item in node]
    if isinstance(node, dict):
        limit = _BLOCK_LIMITS.get(node.get("type"), limit)  # type: ignore[arg-type]
        return {key: _slack_safe(value, limit) for key, value in node.items()}
    return node


def _record(alert: Alert) -> dict[str, Any]:
    """An alert as plain JSON values (dates as ISO strings, NaN as null).

    ``fresh`` is left out: it is about the run's exit code, and everything sent is news.
    """
    out: dict[str, Any] = {}
    for key, value in alert.as_dict().items():
        if key == "fresh":
            continue
        if hasattr(value, "isoformat"):
            value = day_text(value)
        elif isinstance(value, float) and value != value:  # NaN
            value = None
        out[key] = value
    return out


def build_payload(
    alerts: Sequence[Alert], context: NotifyContext, max_alerts: int,
    include_alerts: bool = False,
) -> dict[str, Any]:
    """The JSON body: ``text`` (fallback, notification), ``blocks`` (Slack layout)."""
    items = ordered(alerts)
    shown, rest = items[:max_alerts], len(items) - max_alerts
    title = headline(items) if items else event_headline(context.events)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "emoji": False,
                                    "text": f"tracker: {title}"}},
    ]
    for alert in shown:
        line = (
            f"*{company_label(alert)}*: *{alert.kind}* "
            f"{pct(alert.change_pct)}, {count(alert.value_before)} → "
            f"{count(alert.value_after)} on {day_text(alert.date)}"
        )
        details = ", ".join(alert_details(alert))
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": f"{line}\n{details}"}})
    notes = [
        f"{join_names(names)} moved together (event `{eid}`): "
        "likely a platform-wide change, not the companies themselves"
        for eid, names in events(items).items()
    ]
    notes += [event_line(e) for e in context.events]
    if rest > 0:
        notes.append(f"and {rest} more: `tracker alerts --since "
                     f"{min(day_text(a.date) for a in items)}`")
    if context.report_url:
        notes.append(f"Report: {context.report_url}")  # escaped later: no <link|text>
    if notes:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": n} for n in notes[:10]]})
    text_lines = [f"tracker: {title}", *(alert_line(a) for a in shown),
                  *(event_line(e) for e in context.events)]
    if rest > 0:
        text_lines.append(f"and {rest} more (tracker alerts)")
    if context.report_url:
        text_lines.append(f"Report: {context.report_url}")
    payload: dict[str, Any] = _slack_safe({"text": "\n".join(text_lines), "blocks": blocks})
    if include_alerts:  # records for machines: exact values, as every JSON output
        payload["alerts"] = [_record(a) for a in items]
    return payload


class WebhookNotifier(Notifier):
    """POST one JSON message per run to a Slack-compatible incoming webhook."""

    name = "webhook"
    Settings = WebhookSettings
    announces_events = True
    settings: WebhookSettings

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
            raise NotifyError(f"{where}: the webhook URL from {s.url_env or 'url'} is not an "
                              "http(s) URL")
        REDACTOR.add(self.url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        REDACTOR.add(path)  # urllib3 logs the request line (path and query) at DEBUG
        self.shown = shown_url(self.url)
        secret_headers = {k: read_secret(v, self.environ, f"{where} header_env.{k}")
                          for k, v in s.header_env.items()}
        retry = PacedRetry(
            total=s.retries, connect=s.retries, read=s.retries, status=s.retries, other=0,
            backoff_factor=s.backoff, backoff_max=s.backoff_max, backoff_jitter=0.1,
            status_forcelist=RETRY_STATUSES, allowed_methods=frozenset({"POST"}),
            respect_retry_after_header=True, raise_on_status=False, raise_on_redirect=False,
        )
        retry.retry_after_max = s.retry_after_max
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy or .netrc surprises in a cron job
        self.session.max_redirects = 0  # a redirected webhook is misconfigured; never follow
        self.session.verify = s.verify
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))
        self.session.headers.update({"User-Agent": USER_AGENT, **s.headers, **secret_headers})

    def send(self, alerts: Sequence[Alert], context: NotifyContext) -> None:
        s = self.settings
        body = json.dumps(build_payload(alerts, context, s.max_alerts, s.include_alerts),
                          ensure_ascii=False).encode()
        where = f"webhook POST {self.shown}"
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
                log.info("webhook %s: sent %d alert(s) to %s", self.instance, len(alerts),
                         self.shown)
                return
            detail = clip(response.text or "", 120)
            hint = {
                301: "; the URL redirects, configure the final URL",
                302: "; the URL redirects, configure the final URL",
                400: "; the receiver rejected the payload",
                401: "; the receiver wants credentials (header_env)",
                403: "; the webhook was revoked or the credentials are wrong",
                404: "; the webhook URL is wrong or was deleted",
                410: "; the webhook was deleted",
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
