"""``alertmanager``: the alerts as Prometheus Alertmanager's webhook JSON (version 4).

Routing and on-call tools (Alertmanager-compatible receivers: Grafana OnCall,
Keep, Alerta's ``/webhooks/prometheus``, PagerDuty/Opsgenie bridges, a team's own
router) already read this payload, so they can page, group, deduplicate and resolve
tracker alerts like any other. The body is what Alertmanager's ``webhook_config``
POSTs (``notify/webhook/webhook.go`` and ``template.Data`` upstream)::

    {"version": "4", "groupKey": "{}:{alertname=\"HeadcountAnomaly\"}",
     "truncatedAlerts": 0, "status": "firing", "receiver": "oncall",
     "groupLabels": {...}, "commonLabels": {...}, "commonAnnotations": {...},
     "externalURL": "...", "alerts": [{"status": "firing", "labels": {...},
     "annotations": {...}, "startsAt": "2022-10-11T00:00:00Z",
     "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "...", "fingerprint": "..."}]}

The rules, as upstream: an alert is ``resolved`` (with ``endsAt`` set) once it is
over, here when its verdict is glitch or withdrawn or an analyst resolved or
dismissed it; a provisional or confirmed move keeps ``firing`` with the zero
``endsAt``. The message is ``firing`` if any alert in it is; ``commonLabels`` and
``commonAnnotations`` are the pairs every listed alert shares; ``max_alerts``
truncates the list and ``truncatedAlerts`` counts the rest. One POST per group of
``group_by`` labels (by default one per message, all under ``alertname``); if one
POST of several fails, the message failed and the next run sends all its groups again
(receivers deduplicate by ``fingerprint``).

An alert's ``fingerprint`` is derived from its tracker fingerprint (company, metric,
source, day and kind of move), so it stays the same from firing to resolved however its verdict
changes, and receivers close what they opened. For the same reason an update's
``kind`` and ``severity`` labels are those it was first notified with, and route
where the firing alert went; the new verdict is the ``verdict`` label, the whole
story the ``description``. Delivery (URL from the environment, secret headers,
retries, messages) is the shared JSON POST's (:mod:`tracker.notify.post`); the
credentials are a bearer token or basic auth, read from environment variables only.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from pydantic import Field, model_validator

from tracker.errors import ConfigError
from tracker.notify.base import (
    NotifyContext,
    alert_line,
    company_label,
    day_text,
    is_loopback,
    make_test_alert,
    ordered,
    pct,
)
from tracker.notify.post import JsonPostNotifier, PostSettings
from tracker.records import Alert
from tracker.sources.http_values import REDACTOR, read_secret

#: Alertmanager's endsAt of an alert still firing: Go's zero time.
ZERO_TIME = "0001-01-01T00:00:00Z"
#: The verdicts and review statuses that mean a move is over.
OVER_VERDICTS = frozenset({"glitch", "withdrawn"})
OVER_STATUSES = frozenset({"resolved", "dismissed"})
#: The labels every alert carries (``event`` only with a cross-company event).
OWN_LABELS = ("alertname", "company", "metric", "source", "day", "kind", "severity",
              "verdict", "event")
#: How long receivers that honour endsAt keep the firing test alert of notify --test.
TEST_EXPIRY = timedelta(minutes=5)
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class AlertmanagerSettings(PostSettings):
    max_alerts: int = Field(  # Alertmanager's meaning (0 = all), not the 1-40 of a chat message
        0, ge=0, description="Alerts per POST, 0 for all; the rest count in truncatedAlerts")
    receiver: str | None = Field(None, description="The 'receiver' field; default: NAME")
    alertname: str = Field("HeadcountAnomaly", min_length=1, description="The alertname label")
    labels: dict[str, str] = Field(default_factory=dict,
                                   description="Static labels on every alert, e.g. team")
    group_by: list[str] = Field(default_factory=lambda: ["alertname"],
                                description="Labels whose values split alerts into POSTs")
    external_url: str = Field("", description="The 'externalURL' field")
    bearer_token_env: str | None = Field(None, description="Env var holding a bearer token")
    username: str | None = Field(None, description="Basic auth user; needs password_env")
    password_env: str | None = Field(None, description="Env var holding the basic auth password")

    @model_validator(mode="after")
    def _coherent(self) -> AlertmanagerSettings:
        if (self.username is None) != (self.password_env is None):
            raise ValueError("'username' and 'password_env' go together (basic auth; the "
                             "password is read from that environment variable)")
        if self.username is not None and self.bearer_token_env is not None:
            raise ValueError("set either 'bearer_token_env' or 'username'/'password_env', "
                             "not both")
        for name in self.labels:
            if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
                raise ValueError(f"label name {name!r} is not a Prometheus label name "
                                 "(letters, digits and _, not starting with a digit or __)")
            if name in OWN_LABELS:
                raise ValueError(f"label {name!r} is set by the tracker; pick another name")
        known = [*OWN_LABELS, *self.labels]
        unknown = [g for g in self.group_by if g not in known]
        if unknown:
            raise ValueError(f"group_by: unknown label(s) {', '.join(unknown)}; labels are "
                             f"{', '.join(known)}")
        return self


def rfc3339(day: date) -> str:
    """Midnight UTC of ``day``: tracker days are calendar days, Alertmanager wants instants."""
    return f"{day.isoformat()}T00:00:00Z"


def is_over(alert: Alert) -> bool:
    """Whether the move is over (sent as ``resolved``): a glitch, withdrawn, or closed by
    an analyst; a provisional or confirmed move is still happening."""
    return alert.verdict in OVER_VERDICTS or alert.status in OVER_STATUSES


def ends_at(alert: Alert, day: date) -> str:
    """When a resolved alert ended: the day its glitch was decided, else the run's day
    (a withdrawal or a review is learned by that run); never before it started."""
    ended = alert.confirmed_on if alert.verdict == "glitch" and alert.confirmed_on else day
    return rfc3339(max(ended, alert.date + timedelta(days=1)))


def _labels(alert: Alert, alertname: str, static: Mapping[str, str]) -> dict[str, str]:
    notified_kind = alert.previous_kind or alert.kind  # as routed when it fired
    notified_severity = alert.previous_severity or alert.severity
    labels = {"alertname": alertname, "company": alert.company, "metric": alert.metric,
              "source": alert.source, "day": day_text(alert.date), "kind": notified_kind,
              "severity": notified_severity, "verdict": alert.verdict or "",
              "event": alert.event_id or "", **static}
    return {k: str(v) for k, v in labels.items() if v}  # upstream drops empty labels


def _annotations(alert: Alert, firing: bool, report_url: str | None) -> dict[str, str]:
    notes = {"summary": f"{company_label(alert)}: {alert.kind} {pct(alert.change_pct)} "
                        f"on {day_text(alert.date)}",
             "description": alert_line(alert)}
    if report_url:
        notes["report_url"] = report_url
        if firing:  # the report charts the companies with new and open alerts
            folder = report_url.rsplit("/", 1)[0]
            notes["chart"] = f"{folder}/{quote(alert.company)}.png"
    return notes


def alert_record(alert: Alert, context: NotifyContext, alertname: str = "HeadcountAnomaly",
                 static: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One alert as an element of the payload's ``alerts``."""
    firing = not is_over(alert)
    anchor = f"#chart-{quote(alert.company)}"
    return {
        "status": "firing" if firing else "resolved",
        "labels": _labels(alert, alertname, static or {}),
        "annotations": _annotations(alert, firing, context.report_url),
        "startsAt": rfc3339(alert.date),
        "endsAt": ZERO_TIME if firing else ends_at(alert, context.day),
        "generatorURL": f"{context.report_url}{anchor}" if context.report_url else "",
        "fingerprint": fingerprint(alert),
    }


def fingerprint(alert: Alert) -> str:
    """Sixteen hex digits, as upstream's, derived from the tracker's fingerprint (company,
    metric, source, day, kind of move) and not from the labels: a verdict change must
    not make a receiver see a new alert."""
    return hashlib.sha256(alert.fingerprint.encode()).hexdigest()[:16]


def group_key(group_labels: Mapping[str, str]) -> str:
    """``{}:{alertname="HeadcountAnomaly"}``: the root route's key and the group's labels,
    written as Alertmanager writes a label set (sorted, values quoted and escaped)."""
    pairs = ", ".join(f'{k}="{_quoted(v)}"' for k, v in sorted(group_labels.items()))
    return "{}:{" + pairs + "}"


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """The pairs every map has with the same value."""
    if not maps:
        return {}
    first, rest = maps[0], maps[1:]
    return {k: v for k, v in sorted(first.items()) if all(m.get(k) == v for m in rest)}


def build_payloads(alerts: Sequence[Alert], context: NotifyContext,
                   settings: AlertmanagerSettings, receiver: str) -> list[dict[str, Any]]:
    """One payload per group of ``group_by`` label values, most severe move first."""
    records = [alert_record(a, context, settings.alertname, settings.labels)
               for a in ordered(alerts)]
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for record in records:
        key = tuple(record["labels"].get(g, "") for g in settings.group_by)
        groups.setdefault(key, []).append(record)
    payloads = []
    for key, members in groups.items():
        limit = settings.max_alerts or len(members)
        shown = members[:limit]
        labels = {g: v for g, v in zip(settings.group_by, key, strict=True) if v}
        payloads.append({
            "version": "4",
            "groupKey": group_key(labels),
            "truncatedAlerts": len(members) - len(shown),
            "status": "firing" if any(r["status"] == "firing" for r in shown) else "resolved",
            "receiver": receiver,
            "groupLabels": labels,
            "commonLabels": _common([r["labels"] for r in shown]),
            "commonAnnotations": _common([r["annotations"] for r in shown]),
            "externalURL": settings.external_url,
            "alerts": shown,
        })
    return payloads


class AlertmanagerNotifier(JsonPostNotifier):
    """POST the alerts as Alertmanager's webhook payload, one per group."""

    name = "alertmanager"
    Settings = AlertmanagerSettings
    settings: AlertmanagerSettings
    credential_keys = "bearer_token_env, or username and password_env"

    def secret_headers(self, where: str) -> dict[str, str]:
        """``Authorization`` from the environment, never over plain HTTP to another host."""
        s = self.settings
        if s.bearer_token_env is None and s.password_env is None:
            return {}
        parts = urlsplit(self.url)
        if parts.scheme != "https" and not is_loopback(parts.hostname or ""):
            raise ConfigError(f"{where}: credentials would be sent in clear to "
                              f"{parts.hostname}; use an https:// URL")
        if s.bearer_token_env is not None:
            token = read_secret(s.bearer_token_env, self.environ, f"{where} bearer_token_env")
            return {"Authorization": f"Bearer {token}"}
        password = read_secret(s.password_env or "", self.environ, f"{where} password_env")
        pair = base64.b64encode(f"{s.username}:{password}".encode()).decode()
        REDACTOR.add(pair)
        return {"Authorization": f"Basic {pair}"}

    @property
    def receiver(self) -> str:
        return self.settings.receiver or self.instance

    def send(self, alerts: Sequence[Alert], context: NotifyContext) -> None:
        for payload in build_payloads(alerts, context, self.settings, self.receiver):
            self.post(payload, len(payload["alerts"]))

    def send_test(self, context: NotifyContext) -> None:
        """A firing test alert labelled ``test="true"`` whose ``endsAt`` is a few minutes
        away: a receiver that honours endsAt (as Alertmanager does) closes it by itself,
        so a test never leaves an incident open."""
        (payload,) = build_payloads([make_test_alert(context.day)], context, self.settings,
                                    self.receiver)
        until = (datetime.now(UTC) + TEST_EXPIRY).replace(microsecond=0)
        for record in payload["alerts"]:
            record["labels"]["test"] = "true"
            record["endsAt"] = until.isoformat().replace("+00:00", "Z")
        payload["commonLabels"]["test"] = "true"
        self.post(payload, 1)
