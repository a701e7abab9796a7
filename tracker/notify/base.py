"""The notifier plugin seam, mirroring the source seam.

A notifier is deliberately small: a ``name``, a pydantic ``Settings`` model that
validates its ``[notify.NAME]`` table (unknown keys are errors), and
``send(alerts, context)``, which delivers one message about a list of
:class:`~tracker.records.Alert` records (typed, so a notifier reads attributes and
never depends on the store's column names) or raises
:class:`~tracker.errors.NotifyError`. Choosing *which* alerts to send (severity,
companies, kinds, fresh and not yet sent) and remembering what was sent is the
job's business (:mod:`tracker.notify`), so a notifier only formats and delivers.

Third-party notifiers register under the entry-point group ``tracker.notifiers``;
the built-ins (``webhook``, ``email``) register the same way in pyproject.toml.
The helpers at the end format an alert the same way for every channel.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from importlib.metadata import EntryPoint
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from tracker.config import SETTINGS_CONFIG, validate_table
from tracker.plugins import GROUPS, available, load
from tracker.records import Alert, PopulationEvent

GROUP = GROUPS["notifier"]
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
#: The alert kinds (same as ``tracker.alerts.KINDS``; a test keeps them equal).
Kind = Literal["drop", "spike", "glitch", "drift_up", "drift_down", "inflated", "ratio_jump"]
Severity = Literal["info", "warning", "critical"]


class NotifierSettings(BaseModel):
    """Settings every notifier accepts; subclasses add their own fields.

    Strict like every settings model (:data:`tracker.config.SETTINGS_CONFIG`): a
    misspelt key is an error instead of a silent default, and a value of the wrong
    TOML type is an error instead of a guess (``max_alerts = "10"`` is not 10).
    """

    model_config = SETTINGS_CONFIG

    type: str
    enabled: bool = True
    min_severity: Severity | None = Field(
        None, description="Least severity sent; default: [alerts] min_severity"
    )
    companies: list[str] | None = Field(None, description="Only alerts about these company ids")
    kinds: list[Kind] | None = Field(None, description="Only alerts of these kinds")
    max_alerts: int = Field(
        25, ge=1, le=40, description="Alerts listed in one message; the rest as 'and N more'"
    )


@dataclass(frozen=True)
class NotifyContext:
    """What the job lends a notifier: the run's day and id, and the environment."""

    day: date
    run_id: int | None = None
    environ: Mapping[str, str] = field(default_factory=dict)
    #: The day's HTML report (``[report] base_url``), linked from each message; None if unset.
    report_url: str | None = None
    #: New population (platform-wide) events to announce with this message, once.
    events: tuple[PopulationEvent, ...] = ()


class Notifier(ABC):
    """Base class of every notifier."""

    name: ClassVar[str]
    Settings: ClassVar[type[NotifierSettings]] = NotifierSettings
    #: Whether ``send`` accepts a message of population events alone (no alerts): a
    #: purge of moves too small to alert is news too. Plugins that do not say so get
    #: the events only next to alerts (``context.events``).
    announces_events: ClassVar[bool] = False

    def __init__(
        self, instance: str, settings: NotifierSettings, environ: Mapping[str, str] | None = None
    ) -> None:
        """Build the notifier; secrets are read from ``environ`` here (ConfigError if missing)."""
        self.instance = instance
        self.settings = settings
        self.environ: Mapping[str, str] = os.environ if environ is None else environ

    @classmethod
    def from_config(
        cls, instance: str, raw: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> Notifier:
        """Validate a raw ``[notify.NAME]`` table, as strictly as load_settings did, and build."""
        return cls(instance, validate_table(cls.Settings, raw), environ)

    def wants(self, alert: Alert, default_min_severity: str) -> bool:
        """Whether this notifier's filters (severity, companies, kinds) select ``alert``."""
        s = self.settings
        least = SEVERITY_RANK[s.min_severity or default_min_severity]
        if SEVERITY_RANK.get(str(alert.severity), -1) < least:
            return False
        if s.companies is not None and alert.company not in s.companies:
            return False
        return s.kinds is None or alert.kind in s.kinds

    def wants_event(self, event: PopulationEvent) -> bool:
        """Whether the filters select a population event: a down event is a drop, an up
        one a spike (``kinds``), and one of its members must be in ``companies``."""
        s = self.settings
        kind = "drop" if event.direction == "down" else "spike"
        if s.kinds is not None and kind not in s.kinds:
            return False
        return s.companies is None or any(m.company in s.companies for m in event.members)

    @abstractmethod
    def send(self, alerts: Sequence[Alert], context: NotifyContext) -> None:
        """Deliver one message about ``alerts`` (never empty) or raise NotifyError."""

    def send_test(self, context: NotifyContext) -> None:
        """Deliver one clearly marked test message (``tracker notify --test``) or raise
        NotifyError. The default sends :func:`make_test_alert` like any alert, so the test
        goes through the very code that formats and delivers real ones; a notifier whose
        receiver would act on it (open an incident) overrides this to mark it as such."""
        self.send([make_test_alert(context.day)], context)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; called once by the job after sending."""


#: Who the test alert is about: no company id the tracker makes looks like it.
TEST_COMPANY = "tracker-notify-test"


def make_test_alert(day: date) -> Alert:
    """A made-up alert whose every shown field says it is a test, for ``notify --test``.

    ``id`` is None (no stored alert is meant) and the fingerprint is fixed, so a receiver
    that keys on it sees the same test alert each time rather than a new incident.
    """
    return Alert(
        id=None, fingerprint=hashlib.sha256(b"tracker notify --test").hexdigest()[:32],
        company=TEST_COMPANY, company_name="TEST MESSAGE from tracker notify --test "
        "(not a real alert)", metric="employees", source="test", date=day, detected_on=day,
        verdict="provisional", kind="drop", change_pct=-10.0, value_before=1000.0,
        value_after=900.0, score=0.0, severity="info", status="open", sources_agreeing=1,
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine: the one place a secret may travel unencrypted."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- discovery --------------------------------------------------------------------------


def available_notifiers() -> dict[str, EntryPoint]:
    """Notifier type -> entry point (the ``tracker.notifiers`` seam of tracker.plugins)."""
    return available("notifier")


def load_notifier_class(kind: str) -> type[Notifier]:
    """The class registered for ``kind``; a clear error if unknown or broken."""
    return load("notifier", kind)


# -- formatting shared by the channels ----------------------------------------------------


def ordered(alerts: Sequence[Alert]) -> list[Alert]:
    """Most severe first, then the largest move first, then by company."""
    return sorted(alerts, key=lambda a: (-SEVERITY_RANK.get(str(a.severity), -1),
                                         -abs(_number(a.change_pct) or 0.0),
                                         str(a.company)))


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def count(value: Any) -> str:
    """``576562.0`` -> ``576,562``; missing -> ``?``."""
    number = _number(value)
    return "?" if number is None else f"{round(number):,}"


def pct(value: Any) -> str:
    number = _number(value)
    return "?" if number is None else f"{number:+.1f}%"


def day_text(value: Any) -> str:
    """A date, datetime or pandas Timestamp as ``YYYY-MM-DD``."""
    if value is None:
        return "?"
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return text[:10]


def company_label(alert: Alert) -> str:
    return str(alert.company_name or alert.company)


def alert_details(alert: Alert) -> list[str]:
    """Severity, verdict, metric, source, corroboration, event and id of an alert.

    An update says what changed: ``now glitch (was provisional drop)``.
    """
    parts = [str(alert.severity)]
    if alert.previous_verdict:
        was = " ".join(dict.fromkeys(
            str(v) for v in (alert.previous_verdict, alert.previous_kind) if v))
        parts.append(f"now {alert.verdict} (was {was})")
    elif alert.verdict:
        parts.append(str(alert.verdict))
    if alert.metric not in (None, "employees"):
        parts.append(f"metric {alert.metric}")
    parts.append(f"source {alert.source}")
    agreeing = _number(alert.sources_agreeing) or 1
    parts.append(f"{int(agreeing)} source(s) agreeing")
    if corroboration := corroboration_text(alert):
        parts.append(corroboration)
    if alert.event_id:
        parts.append(f"event {alert.event_id}")
    if alert.id is not None:
        parts.append(f"alert #{alert.id}")
    return parts


def corroboration_text(alert: Alert) -> str:
    """``seen by A, B; not by C (possible source error)``, or "" for an alert of a
    series with one source (nothing to say beyond its source)."""
    if not (alert.sources_silent or alert.sources_no_data
            or _SEP in (alert.sources_seen or "")):
        return ""
    text = f"seen by {alert.sources_seen or alert.source}"
    if alert.sources_silent:
        text += f"; not by {alert.sources_silent}"
    if alert.sources_no_data:
        text += f"; no data from {alert.sources_no_data}"
    return text + (" (possible source error)" if alert.possible_source_error else "")


_SEP = ", "


def alert_line(alert: Alert) -> str:
    """One alert in one plain-text line, every field an analyst needs to triage it."""
    return ", ".join([
        f"{company_label(alert)}: {alert.kind} {pct(alert.change_pct)}",
        f"{count(alert.value_before)} -> {count(alert.value_after)} "
        f"on {day_text(alert.date)}",
        *alert_details(alert),
    ])


def events(alerts: Sequence[Alert]) -> dict[str, list[str]]:
    """Cross-company events among ``alerts``: event id -> company labels (2 or more)."""
    grouped: dict[str, list[str]] = {}
    for alert in ordered(alerts):
        if alert.event_id:
            grouped.setdefault(str(alert.event_id), []).append(company_label(alert))
    return {k: v for k, v in grouped.items() if len(v) > 1}


def headline(alerts: Sequence[Alert]) -> str:
    """``3 new alert(s) on 2022-10-11 (2 critical, 1 warning): Apple, Amazon, ...``.

    The day is when the alerts were first detected, not the run's day, so a message
    retried by a later run still says when the move was seen. A message of updates
    (changed verdicts) says so and counts the new verdicts:
    ``2 alert update(s) about 2022-10-11 (1 glitch, 1 confirmed): Apple, Amazon``.
    """
    days = sorted({day_text(a.detected_on or a.date) for a in alerts})
    when = days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"
    names = list(dict.fromkeys(company_label(a) for a in ordered(alerts)))
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    if alerts and all(a.previous_verdict for a in alerts):
        verdicts = dict.fromkeys(str(a.verdict) for a in alerts)
        counts = ", ".join(f"{sum(str(a.verdict) == v for a in alerts)} {v}" for v in verdicts)
        return f"{len(alerts)} alert update(s) about {when} ({counts}): {shown}"
    by = {s: sum(a.severity == s for a in alerts) for s in ("critical", "warning", "info")}
    counts = ", ".join(f"{n} {s}" for s, n in by.items() if n)
    return f"{len(alerts)} new alert(s) on {when} ({counts}): {shown}"


def join_names(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def event_line(event: PopulationEvent) -> str:
    """``Platform event pop-employees-down-2022-10-11: 25% of 8 employees series moved
    down on 2022-10-11 (median -41.7%); 0 of 2 too small to alert alone``."""
    days = day_text(event.first_date) if event.first_date == event.last_date else (
        f"{day_text(event.first_date)} to {day_text(event.last_date)}")
    scope = event.metric + (f" ({event.cohort})" if event.cohort else "")
    return (f"Platform event {event.id}: {round(100 * event.share)}% of {event.n_series} "
            f"{scope} series moved {event.direction} on {days} (median "
            f"{pct(event.median_change_pct)}); {event.n_silent} of {event.n_members} too small "
            "to alert alone")


def event_headline(events: Sequence[PopulationEvent]) -> str:
    """The title of a message of events alone."""
    days = sorted({day_text(e.first_date) for e in events})
    return f"{len(events)} new platform event(s) on {', '.join(days)}"
