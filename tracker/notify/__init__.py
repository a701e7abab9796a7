"""Notify: send the new alerts through the configured ``[notify.NAME]`` notifiers.

The main job calls :func:`notify_step` after detection. What to send is read back
from the alerts table rather than handed over by the detection step, so one rule
covers both today's alerts and the retry of yesterday's failed send:

    open alerts, not yet notified (``notified_at`` is null), first detected within
    ``[alerts] fresh_days`` of the run's day (older ones are backfill), at or above
    each notifier's ``min_severity`` and matching its ``companies`` / ``kinds``.

Delivery is recorded only after a successful send: per notifier in a small state
table (so a broken email server never makes the working webhook repeat itself), and
as the alert's ``notified_at`` once every notifier that wants the alert has sent it.
A failing notifier costs nothing but its own message: its alerts stay pending for
the next run, and the run's summary line says ``notify NAME failed: reason``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from tracker.errors import TrackerError
from tracker.notify.base import (
    GROUP,
    Notifier,
    NotifierSettings,
    NotifyContext,
    available_notifiers,
    load_notifier_class,
)
from tracker.records import Alert, StepOutcome

if TYPE_CHECKING:
    from tracker.workspace import Workspace

__all__ = [
    "GROUP",
    "Notifier",
    "NotifierSettings",
    "NotifyContext",
    "NotifyReport",
    "available_notifiers",
    "build_notifiers",
    "load_notifier_class",
    "notify_step",
    "pending_alerts",
    "send_notifications",
]

log = logging.getLogger(__name__)


@dataclass
class NotifierOutcome:
    """What one notifier did in one run."""

    name: str
    status: str  # "ok", "failed" or "idle" (nothing selected)
    sent: int = 0
    pending: int = 0
    reason: str | None = None


@dataclass
class NotifyReport:
    """What a notify pass did: per notifier, and which alerts are now fully notified."""

    outcomes: list[NotifierOutcome] = field(default_factory=list)
    notified: list[int] = field(default_factory=list)

    @property
    def failed(self) -> list[NotifierOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def notes(self) -> list[str]:
        """Fragments of the run's summary line."""
        notes = []
        for o in self.outcomes:
            if o.status == "failed":
                kept = f" ({o.pending} alert(s) kept for the next run)" if o.pending else ""
                notes.append(f"notify {o.name} failed: {o.reason}{kept}")
            elif o.sent:
                notes.append(f"notify {o.name}: sent {o.sent} alert(s)")
        return notes

    def details(self) -> dict[str, Any]:
        """For the run record."""
        return {o.name: {k: v for k, v in vars(o).items() if k != "name" and v is not None}
                for o in self.outcomes}


def build_notifiers(
    tables: Mapping[str, Mapping[str, Any]], environ: Mapping[str, str] | None = None
) -> tuple[list[Notifier], list[NotifierOutcome]]:
    """Enabled notifiers from ``[notify.NAME]`` tables; one that cannot be built is an outcome.

    A missing secret or a broken plugin fails that notifier only, like a failed send.
    """
    env = os.environ if environ is None else environ
    built: list[Notifier] = []
    failed: list[NotifierOutcome] = []
    for name, table in tables.items():
        if table.get("enabled", True) is False:
            continue
        try:
            cls = load_notifier_class(str(table.get("type")))
            built.append(cls.from_config(name, table, env))
        except TrackerError as exc:
            failed.append(NotifierOutcome(name, "failed", reason=str(exc)))
        except Exception as exc:  # pydantic or a plugin bug: this notifier only
            failed.append(NotifierOutcome(name, "failed", reason=f"cannot be set up: {exc}"))
    return built, failed


def pending_alerts(ws: Workspace, day: date) -> list[Alert]:
    """Open alerts not yet notified whose detected_on is within fresh_days of ``day``."""
    from tracker.store import notifications as store

    since = day - timedelta(days=ws.settings.alerts.fresh_days)
    return store.pending_alerts(ws.store, since, day)


def send_notifications(
    ws: Workspace, day: date, *, run_id: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> NotifyReport:
    """Send every pending alert through every enabled notifier; never raises for a send.

    Store errors (the database went away) do raise: then nothing is marked and the
    next run sends again, which is the safe direction.
    """
    # the store (SQLAlchemy) is imported here, not at the top: loading the config
    # imports the notifier plugins, and so this package, on every CLI start
    from tracker.store import notifications as store

    report = NotifyReport()
    if not ws.settings.notify:
        return report
    env = os.environ if environ is None else environ
    notifiers, report.outcomes = build_notifiers(ws.settings.notify, env)
    pending = pending_alerts(ws, day)
    default = ws.settings.alerts.min_severity
    wanted = {n.instance: [a for a in pending if n.wants(a, default)] for n in notifiers}
    sent_before = store.sent_fingerprints(ws.store, [n.instance for n in notifiers])
    context = NotifyContext(day=day, run_id=run_id, environ=env)
    has = dict(sent_before)
    try:
        for notifier in notifiers:
            name = notifier.instance
            todo = [a for a in wanted[name] if a.fingerprint not in sent_before[name]]
            if not todo:
                report.outcomes.append(NotifierOutcome(name, "idle"))
                continue
            try:
                notifier.send(todo, context)
            except TrackerError as exc:
                log.warning("notify %s failed: %s", name, exc)
                report.outcomes.append(NotifierOutcome(name, "failed", pending=len(todo),
                                                       reason=str(exc)))
                continue
            except Exception as exc:  # a plugin bug must not cost the run or other notifiers
                log.exception("notifier %s crashed", name)
                report.outcomes.append(NotifierOutcome(
                    name, "failed", pending=len(todo), reason=f"unexpected error: {exc!r}"))
                continue
            store.record_sent(ws.store, name, [a.fingerprint for a in todo])
            has[name] = sent_before[name] | {a.fingerprint for a in todo}
            report.outcomes.append(NotifierOutcome(name, "ok", sent=len(todo)))
    finally:
        for notifier in notifiers:
            try:
                notifier.close()
            except Exception:  # closing must not hide what happened
                log.exception("closing notifier %s", notifier.instance)
    # An alert is notified once every notifier that selects it has sent it; a notifier
    # that could not even be built blocks nothing it never selected, and is retried.
    broken = {o.name for o in report.outcomes if o.status == "failed" and o.pending == 0}
    selected = {name: {a.fingerprint for a in chosen} for name, chosen in wanted.items()}
    done: list[Alert] = []
    for alert in pending if not broken else []:
        fp = alert.fingerprint
        owners = [name for name, fps in selected.items() if fp in fps]
        if owners and all(fp in has[o] for o in owners):
            done.append(alert)
    if done:
        store.mark_notified(ws.store, done)
        report.notified = [a.id for a in done if a.id is not None]
    for outcome in report.outcomes:  # a notifier that could not be built: count its backlog
        if outcome.status == "failed" and outcome.pending == 0:
            outcome.pending = len(pending) - len(done)
    return report


def notify_step(ws: Workspace, day: date, run_id: int) -> StepOutcome:
    """The main job's notify step: sends, returns no new alerts, adds summary notes."""
    report = send_notifications(ws, day, run_id=run_id)
    details = {"notify": report.details()} if report.outcomes else {}
    return StepOutcome(notes=report.notes(), details=details)
