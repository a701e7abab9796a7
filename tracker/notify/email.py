"""``email``: one SMTP message per run listing the new alerts, as text and HTML.

Standard library ``smtplib`` with implicit TLS (``ssl``, port 465) or STARTTLS
(port 587, the default); the password comes only from the environment variable
named by ``password_env`` and appears in no message or log line. A password is
never sent over an unencrypted connection except to a loopback relay. The HTML part
is rendered by Jinja2 with autoescaping, so a company name cannot inject markup.

(The module is named ``email`` after the notifier type; absolute imports keep
``email.message`` below the standard library's.)
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from jinja2 import Environment, StrictUndefined
from pydantic import Field, model_validator

from tracker.errors import NotifyError
from tracker.notify.base import (
    Notifier,
    NotifierSettings,
    NotifyContext,
    alert_line,
    company_label,
    corroboration_text,
    count,
    day_text,
    event_headline,
    event_line,
    events,
    headline,
    is_loopback,
    join_names,
    ordered,
    pct,
)
from tracker.records import Alert
from tracker.sources.http_values import REDACTOR, clip, read_secret

log = logging.getLogger(__name__)
log.addFilter(REDACTOR)

_HTML = Environment(autoescape=True, undefined=StrictUndefined).from_string("""\
<!doctype html>
<html><body style="font-family: sans-serif">
<h2 style="font-size: 16px">{{ title }}</h2>
<table style="border-collapse: collapse" cellpadding="4">
<tr style="text-align: left; border-bottom: 1px solid #999">
<th>Company</th><th>Kind</th><th>Change</th><th>Before</th><th>After</th><th>Date</th>
<th>Severity</th><th>Verdict</th><th>Source</th><th>Sources agreeing</th><th>Event</th>
<th>Alert</th></tr>
{% for a in alerts %}<tr style="border-bottom: 1px solid #ddd">
<td><b>{{ a.company }}</b></td><td>{{ a.kind }}</td><td>{{ a.change }}</td>
<td style="text-align: right">{{ a.before }}</td><td style="text-align: right">{{ a.after }}</td>
<td>{{ a.date }}</td>
<td style="color: {{ 'red' if a.severity == 'critical' else '#b60' }}">{{ a.severity }}</td>
<td>{{ a.verdict }}</td><td>{{ a.source }}</td><td>{{ a.agreeing }}</td><td>{{ a.event }}</td>
<td>{{ a.id }}</td></tr>
{% endfor %}</table>
{% if more %}<p>and {{ more }} more: <code>tracker alerts --since {{ since }}</code></p>{% endif %}
{% for note in notes %}<p>{{ note }}</p>{% endfor %}
{% if report_url %}<p><a href="{{ report_url }}">The day's report</a></p>{% endif %}
<p style="color: #666; font-size: 12px">Review with <code>tracker alerts</code> and mark them
with <code>tracker review ID</code>.</p>
</body></html>
""")


class EmailSettings(NotifierSettings):
    host: str = Field(min_length=1, description="SMTP server")
    port: int | None = Field(None, ge=1, le=65535,
                             description="default: 465 with ssl, 587 with starttls, else 25")
    starttls: bool = Field(True, description="Upgrade the connection with STARTTLS")
    ssl: bool = Field(False, description="Implicit TLS from the first byte (port 465)")
    username: str | None = None
    password_env: str | None = Field(None, description="Environment variable with the password")
    sender: str = Field(min_length=3, description="From address")
    to: list[str] = Field(min_length=1, description="Recipient addresses")
    subject_prefix: str = "[tracker]"
    timeout: float = Field(30.0, gt=0, description="Seconds per SMTP operation")

    @model_validator(mode="after")
    def _coherent(self) -> EmailSettings:
        if self.ssl and self.starttls:
            raise ValueError("set either 'ssl' (implicit TLS, port 465) or 'starttls' (port "
                             "587), not both")
        if (self.username is None) != (self.password_env is None):
            raise ValueError("'username' and 'password_env' go together (the password is "
                             "read from that environment variable)")
        if self.username and not (self.ssl or self.starttls) and not is_loopback(self.host):
            raise ValueError(f"a password would be sent in clear to {self.host}; set "
                             "starttls = true or ssl = true")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (465 if self.ssl else 587 if self.starttls else 25)


def _rows(alerts: Sequence[Alert]) -> list[dict[str, Any]]:
    return [{
        "company": company_label(a), "kind": a.kind, "change": pct(a.change_pct),
        "before": count(a.value_before), "after": count(a.value_after),
        "date": day_text(a.date), "severity": a.severity,
        "verdict": a.verdict or "", "source": a.source,
        "agreeing": corroboration_text(a) or (a.sources_agreeing or 1),
        "event": a.event_id or "",
        "id": "" if a.id is None else f"#{a.id}",
    } for a in alerts]


def build_message(
    alerts: Sequence[Alert], context: NotifyContext, settings: EmailSettings
) -> EmailMessage:
    """The message with a plain-text and an HTML alternative."""
    items = ordered(alerts)
    shown, more = items[: settings.max_alerts], max(0, len(items) - settings.max_alerts)
    title = headline(items) if items else event_headline(context.events)
    since = min((day_text(a.date) for a in items), default="")
    notes = [f"{join_names(names)} moved together (event {eid}): likely a platform-wide "
             "change, not the companies themselves" for eid, names in events(items).items()]
    notes += [event_line(e) for e in context.events]
    text = [f"tracker: {title}", "", *(f"- {alert_line(a)}" for a in shown)]
    if more:
        text.append(f"- and {more} more: tracker alerts --since {since}")
    link = [f"Report: {context.report_url}"] if context.report_url else []
    text += ["", *notes, *link, "", "Review with `tracker alerts`, mark with `tracker review ID`."]
    msg = EmailMessage()
    msg["Subject"] = f"{settings.subject_prefix} {title}".strip()
    msg["From"] = settings.sender
    msg["To"] = ", ".join(settings.to)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain=settings.sender.rpartition("@")[2] or None)
    msg.set_content("\n".join(text) + "\n")
    msg.add_alternative(_HTML.render(title=title, alerts=_rows(shown), more=more, since=since,
                                     notes=notes, report_url=context.report_url),
                        subtype="html")
    return msg


class EmailNotifier(Notifier):
    """Send one message per run through an SMTP server."""

    name = "email"
    Settings = EmailSettings
    announces_events = True
    settings: EmailSettings

    def __init__(
        self, instance: str, settings: NotifierSettings, environ: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(instance, settings, os.environ if environ is None else environ)
        self.password: str | None = None
        if self.settings.password_env:
            self.password = read_secret(self.settings.password_env, self.environ,
                                        f"[notify.{instance}] password_env")

    def send(self, alerts: Sequence[Alert], context: NotifyContext) -> None:
        s = self.settings
        msg = build_message(alerts, context, s)
        where = f"email via {s.host}:{s.effective_port}"
        try:
            refused = self._deliver(msg)
        except smtplib.SMTPAuthenticationError as exc:
            raise NotifyError(f"{where}: login as {s.username!r} refused ({exc.smtp_code}); "
                              f"check the password in ${s.password_env}") from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise NotifyError(f"{where}: every recipient was refused: "
                              f"{', '.join(sorted(exc.recipients))}") from None
        except smtplib.SMTPNotSupportedError as exc:
            hint = "; set starttls = false for a relay without TLS" if s.starttls else ""
            raise NotifyError(f"{where}: {clip(str(exc), 160)}{hint}") from None
        except smtplib.SMTPResponseException as exc:
            message = exc.smtp_error.decode(errors="replace") if isinstance(
                exc.smtp_error, bytes) else str(exc.smtp_error)
            raise NotifyError(REDACTOR(
                f"{where}: server answered {exc.smtp_code} {clip(message, 160)}")) from None
        except (smtplib.SMTPException, OSError) as exc:  # refused, timeouts, TLS errors
            reason = "timed out" if isinstance(exc, TimeoutError) else (
                f"{type(exc).__name__}: {clip(str(exc), 160)}")
            raise NotifyError(REDACTOR(f"{where}: {reason} (timeout {s.timeout:g}s)")) from None
        if refused:
            log.warning("email %s: refused recipients %s", self.instance,
                        ", ".join(sorted(refused)))
        log.info("email %s: sent %d alert(s) to %d recipient(s)", self.instance, len(alerts),
                 len(s.to) - len(refused))

    def _deliver(self, msg: EmailMessage) -> dict[str, Any]:
        s = self.settings
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if s.ssl:
            smtp = smtplib.SMTP_SSL(s.host, s.effective_port, timeout=s.timeout, context=context)
        else:
            smtp = smtplib.SMTP(s.host, s.effective_port, timeout=s.timeout)
        with smtp:
            smtp.ehlo()
            if s.starttls:
                smtp.starttls(context=context)
                smtp.ehlo()
            if s.username and self.password is not None:
                smtp.login(s.username, self.password)
            return smtp.send_message(msg, from_addr=s.sender, to_addrs=list(s.to))
