"""Notify: send the new alerts through the configured ``[notify.NAME]`` notifiers.

The main job calls :func:`notify_step` after detection. What to send is read back
from the alerts table rather than handed over by the detection step, so one rule
covers both today's alerts and the retry of yesterday's failed send:

    open alerts, not yet notified (``notified_at`` is null), first detected within
    ``[alerts] fresh_days`` of the run's day (older ones are backfill), at or above
    each notifier's ``min_severity`` and matching its ``companies`` / ``kinds``,
    and covered by no silence (``tracker silence``).

Delivery is recorded only after a successful send: per notifier in a small state
table (so a broken email server never makes the working webhook repeat itself), and
as the alert's ``notified_at`` once every notifier that wants the alert has sent it.
A failing notifier costs nothing but its own message: its alerts stay pending for
the next run, and the run's summary line says ``notify NAME failed: reason``.

When the verdict of a notified alert changes (the provisional drop is confirmed,
turns out a glitch, or corrected data withdraw it), the next run sends that change
once, as an *update* in a message of its own, to the notifiers that got the alert
(selected by the kind and severity it was notified with). What each notification
said is kept with the alert (``notified_verdict``), so an update is sent once, and
its per-notifier delivery is remembered like an alert's (key ``FINGERPRINT@VERDICT``).

:func:`send_test_messages` (``tracker notify --test``) proves each channel with one
marked test message (:meth:`Notifier.send_test`), touching no alert.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from tracker.errors import ConfigError, TrackerError
from tracker.notify.base import (
    GROUP,
    Notifier,
    NotifierSettings,
    NotifyContext,
    available_notifiers,
    load_notifier_class,
)
from tracker.records import Alert, PopulationEvent, StepOutcome

if TYPE_CHECKING:
    from tracker.workspace import Workspace

__all__ = [
    "GROUP",
    "Notifier",
    "NotifierOutcome",
    "NotifierSettings",
    "NotifyContext",
    "NotifyReport",
    "available_notifiers",
    "build_notifiers",
    "load_notifier_class",
    "notify_step",
    "pending_alerts",
    "pending_updates",
    "send_notifications",
    "send_test_messages",
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
    updates: int | None = None  # alert updates (changed verdicts) sent


@dataclass
class NotifyReport:
    """What a notify pass did: per notifier, and which alerts are now fully notified."""

    outcomes: list[NotifierOutcome] = field(default_factory=list)
    notified: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)  # alerts whose update is delivered
    events: list[str] = field(default_factory=list)  # population events announced

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
            elif o.sent or o.updates:
                what = [f"{o.sent} alert(s)"] if o.sent else []
                what += [f"{o.updates} alert update(s)"] if o.updates else []
                notes.append(f"notify {o.name}: sent {' and '.join(what)}")
        if self.events:
            notes.append(f"notify: announced {len(self.events)} platform event(s)")
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
    """Open alerts not yet notified whose detected_on is within fresh_days of ``day``,
    and that no silence covers (``tracker.silences``): a silenced alert is held, not
    marked notified, so removing its silence releases it while it is still fresh."""
    from tracker.silences import unsilenced
    from tracker.store import notifications as store

    since = day - timedelta(days=ws.settings.alerts.fresh_days)
    return unsilenced(ws, store.pending_alerts(ws.store, since, day))


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
    updates = pending_updates(ws, day)
    default = ws.settings.alerts.min_severity
    wanted = {n.instance: [a for a in pending if n.wants(a, default)] for n in notifiers}
    # an update goes where its alert went: selected by what the notification said
    wanted_updates = {n.instance: [u for u in updates if n.wants(as_notified(u), default)]
                      for n in notifiers}
    sent_before = store.sent_fingerprints(ws.store, [n.instance for n in notifiers])
    from tracker.report import report_url  # pandas: not at import time

    announce = _pending_events(ws, day)
    # notify runs before the report is written, but its address depends on the day only
    context = NotifyContext(day=day, run_id=run_id, environ=env,
                            report_url=report_url(ws.settings, day), events=announce)
    plain = replace(context, events=())
    has = dict(sent_before)
    try:
        for notifier in notifiers:
            name = notifier.instance
            batches = [
                [a for a in wanted[name] if a.fingerprint not in sent_before[name]],
                [u for u in wanted_updates[name] if update_key(u) not in sent_before[name]],
            ]
            owed = tuple(e for e in announce if _event_key(e) not in sent_before[name]
                         and notifier.wants_event(e))
            context = replace(plain, events=owed)
            alone = bool(owed) and not batches[0] and notifier.announces_events
            if not any(batches) and not alone:
                report.outcomes.append(NotifierOutcome(name, "idle"))
                continue
            outcome = NotifierOutcome(name, "ok")
            for batch, key, is_update in ((batches[0], _fingerprint, False),
                                          (batches[1], update_key, True)):
                if not batch and not (alone and not is_update):
                    continue
                try:
                    # population events go with the new alerts (or alone), once
                    notifier.send(batch, plain if is_update else context)
                except TrackerError as exc:
                    log.warning("notify %s failed: %s", name, exc)
                    outcome.status, outcome.reason = "failed", str(exc)
                    outcome.pending += len(batch)
                    continue
                except Exception as exc:  # a plugin bug must not cost the run or the others
                    log.exception("notifier %s crashed", name)
                    outcome.status, outcome.reason = "failed", f"unexpected error: {exc!r}"
                    outcome.pending += len(batch)
                    continue
                keys = [key(a) for a in batch]
                if not is_update and (batch or alone):
                    keys += [_event_key(e) for e in owed]
                if keys:
                    store.record_sent(ws.store, name, keys)
                has[name] = has[name] | set(keys)
                if is_update:
                    outcome.updates = len(batch)
                else:
                    outcome.sent = len(batch)
            report.outcomes.append(outcome)
    finally:
        for notifier in notifiers:
            try:
                notifier.close()
            except Exception:  # closing must not hide what happened
                log.exception("closing notifier %s", notifier.instance)
    # An alert is notified once every notifier that selects it has sent it; a notifier
    # that could not even be built blocks nothing it never selected, and is retried.
    broken = {o.name for o in report.outcomes if o.status == "failed" and o.pending == 0}
    done = [] if broken else _delivered(pending, wanted, has, _fingerprint)
    # an update nobody selects is settled too: no notifier will ever owe it
    told = [] if broken else _delivered(updates, wanted_updates, has, update_key,
                                        unowned=True)
    store.settle(ws.store, done, told)
    report.notified = [a.id for a in done if a.id is not None]
    report.updated = [a.id for a in told if a.id is not None]
    # an event is announced once every notifier that can announce it alone has it
    told_events = [e for e in announce if not broken and all(
        _event_key(e) in has[n.instance] for n in notifiers
        if n.announces_events and n.wants_event(e))]
    if told_events:
        from tracker.store import events as event_store

        event_store.mark_notified(ws.store, [e.id for e in told_events])
    report.events = [e.id for e in announce if any(
        _event_key(e) in has[n] - sent_before[n] for n in has)]
    for outcome in report.outcomes:  # a notifier that could not be built: count its backlog
        if outcome.status == "failed" and outcome.pending == 0:
            outcome.pending = len(pending) - len(done)
    return report


def _pending_events(ws: Workspace, day: date) -> tuple[PopulationEvent, ...]:
    """Population events not yet announced whose last day is within fresh_days of
    ``day`` (an import of 2022 announces nothing)."""
    from tracker.population import population_events
    from tracker.store import events as event_store

    since = day - timedelta(days=ws.settings.alerts.fresh_days)
    ids = set(event_store.pending(ws.store, since, day)["id"])
    if not ids:
        return ()
    from tracker.silences import unsilenced_events

    return unsilenced_events(ws, [e for e in population_events(ws, since=since, until=day)
                                  if e.id in ids])


def _event_key(event: PopulationEvent) -> str:
    """The per-notifier delivery key of a population event."""
    return f"event:{event.id}"


def _fingerprint(alert: Alert) -> str:
    return alert.fingerprint


def _delivered(alerts: list[Alert], wanted: Mapping[str, list[Alert]],
               has: Mapping[str, set[str]], key: Callable[[Alert], str],
               unowned: bool = False) -> list[Alert]:
    """The alerts every notifier that selected them has sent (``unowned``: and those
    no notifier selects)."""
    selected = {name: {key(a) for a in chosen} for name, chosen in wanted.items()}
    out = []
    for alert in alerts:
        k = key(alert)
        owners = [name for name, keys in selected.items() if k in keys]
        if (owners and all(k in has[o] for o in owners)) or (unowned and not owners):
            out.append(alert)
    return out


def pending_updates(ws: Workspace, day: date) -> list[Alert]:
    """Notified alerts whose verdict changed since their notification (confirmed, a
    glitch, withdrawn, found again): each is sent once, as an update, like
    Alertmanager's "resolved". Their ``previous_*`` fields say what was notified.
    A silence holds updates back too: it is how an operator says "stop telling me"."""
    from tracker.silences import unsilenced
    from tracker.store import alerts as alert_store

    return unsilenced(ws, alert_store.pending_updates(ws.store, day))


def as_notified(update: Alert) -> Alert:
    """An update with the kind and severity its notification had, which decide which
    notifiers get it: a drop paged at warning becomes an info glitch, and whoever got
    the drop must hear of the glitch."""
    return replace(update, kind=update.previous_kind or update.kind,
                   severity=update.previous_severity or update.severity)


def update_key(update: Alert) -> str:
    """The per-notifier delivery key of an update (see :attr:`Alert.update_key`)."""
    return update.update_key


def send_test_messages(
    tables: Mapping[str, Mapping[str, Any]], day: date, *, only: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[NotifierOutcome]:
    """Send one marked test message through each enabled notifier (``tracker notify
    --test``), or through those named in ``only`` (enabled or not: asked for by name).

    Nothing is read from or written to the store: a test proves the channel, not the
    alerts. Every notifier gets its outcome in config order, ``ok`` or ``failed`` with
    the reason (already free of secrets; redacted once more, as it is meant for a
    terminal). Raises ConfigError when nothing is configured or ``only`` names an
    unknown notifier.
    """
    from tracker.sources.http_values import REDACTOR

    if only:
        unknown = [n for n in only if n not in tables]
        if unknown:
            raise ConfigError(f"no [notify.{unknown[0]}] in the configuration; configured: "
                              f"{', '.join(tables) or 'none'}")
        tables = {n: {**tables[n], "enabled": True} for n in tables if n in only}
    elif not any(t.get("enabled", True) is not False for t in tables.values()):
        raise ConfigError("no enabled [notify.NAME] table in the configuration: nothing to "
                          "test (see the README, [notify.NAME])")
    env = os.environ if environ is None else environ
    notifiers, failed = build_notifiers(tables, env)
    outcomes = {o.name: o for o in failed}
    context = NotifyContext(day=day, environ=env)
    for notifier in notifiers:
        outcome = NotifierOutcome(notifier.instance, "ok", sent=1)
        try:
            notifier.send_test(context)
        except TrackerError as exc:
            outcome = NotifierOutcome(notifier.instance, "failed", reason=str(exc))
        except Exception as exc:  # a plugin bug: this notifier's failure, not the command's
            log.exception("notifier %s crashed", notifier.instance)
            outcome = NotifierOutcome(notifier.instance, "failed",
                                      reason=f"unexpected error: {exc!r}")
        finally:
            try:
                notifier.close()
            except Exception:  # closing must not hide what happened
                log.exception("closing notifier %s", notifier.instance)
        outcomes[notifier.instance] = outcome
    for outcome in outcomes.values():
        outcome.reason = outcome.reason and REDACTOR(outcome.reason)
    return [outcomes[n] for n in tables if n in outcomes]


def notify_step(ws: Workspace, day: date, run_id: int) -> StepOutcome:
    """The main job's notify step: sends, returns no new alerts, adds summary notes."""
    report = send_notifications(ws, day, run_id=run_id)
    details = {"notify": report.details()} if report.outcomes else {}
    return StepOutcome(notes=report.notes(), details=details)
