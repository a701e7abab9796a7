"""The main job, ``tracker run``: collect -> detect -> alert -> notify -> report, once.

Its exit code follows the Nagios plugin convention so cron and monitoring systems
can act on it without parsing output: 0 nothing new, 1 new warning alerts, 2 new
critical alerts, 3 the run itself failed. Only one run may work at a time across
processes and hosts: a lease in the database (see ``store.runs``) makes a second
``tracker run`` or scheduler exit with 3, or wait, as configured. A holder killed on
this machine is taken over at once and its run marked abandoned; one on another
host is waited out until its lease expires.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import requests

from tracker.collect import CollectResult, collect
from tracker.errors import LockHeldError, TrackerError
from tracker.records import Alert, StepOutcome
from tracker.store import runs as run_ops
from tracker.workspace import Workspace

log = logging.getLogger(__name__)

LOCK_NAME = "main-job"
LEASE_TTL = timedelta(minutes=10)
EXIT_OK, EXIT_WARNING, EXIT_CRITICAL, EXIT_FAILED = 0, 1, 2, 3


#: A step after collection: receives the workspace, the day and the run id and
#: returns the new alerts it produced, or a StepOutcome carrying them plus notes and
#: details. Alerts may still come as mappings (the detection step's rows), which
#: :func:`run_once` turns into :class:`~tracker.records.Alert` records.
Step = Callable[[Workspace, date, int],
                "Sequence[Alert | Mapping[str, Any]] | StepOutcome"]


@dataclass
class RunResult:
    run_id: int | None
    day: date
    collected: CollectResult | None = None
    new_alerts: list[Alert] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def fresh_alerts(self) -> list[Alert]:
        """New alerts that are news (not backfill of old history)."""
        return [a for a in self.new_alerts if a.fresh]

    @property
    def exit_code(self) -> int:
        if self.error is not None:
            return EXIT_FAILED
        severities = {a.severity for a in self.fresh_alerts}
        if "critical" in severities:
            return EXIT_CRITICAL
        if "warning" in severities:
            return EXIT_WARNING
        return EXIT_OK

    def summary(self) -> str:
        """The one line cron mails and monitoring systems show."""
        label = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}[self.exit_code]
        if self.error is not None:
            return f"{label}: run failed: {self.error}"
        c = self.collected
        crit = sum(a.severity == "critical" for a in self.fresh_alerts)
        warn = sum(a.severity == "warning" for a in self.fresh_alerts)
        backfill = len(self.new_alerts) - len(self.fresh_alerts)
        parts = [f"{label}: {self.day}"]
        if c is not None:
            # a source that answers for some companies only is not "failed", so the
            # companies it could not fetch are counted on their own: else cron's line
            # would say all is well while companies silently go without data
            failed = len(c.failed_sources)
            parts.append(f"{c.inserted} new observations from {len(c.outcomes)} source(s)"
                         + (f", {failed} failed" if failed else ""))
            # a failure without a company is the whole source's, counted just above
            companies = sum(f.company is not None for o in c.outcomes for f in o.failures)
            if companies:
                parts.append(f"{companies} company {'fetch' if companies == 1 else 'fetches'}"
                             " failed")
        parts.append(f"{crit} new critical, {warn} new warning alert(s)")
        if backfill:
            parts.append(f"{backfill} alert(s) about older history stored (tracker alerts)")
        parts += self.notes
        return "; ".join(parts)


def _ping(url: str | None, ok: bool) -> None:
    """healthchecks.io-style heartbeat: URL on success, URL/fail on failure."""
    if not url:
        return
    target = url if ok else url.rstrip("/") + "/fail"
    try:
        requests.get(target, timeout=10, headers={"User-Agent": "tracker heartbeat"})
    except requests.RequestException as exc:  # a monitoring hiccup must not fail the run
        log.warning("heartbeat %s failed: %s", target.split("?")[0], exc)


def ping_failure(config: object = None) -> None:
    """Send the failure heartbeat when the run could not even open its workspace.

    The config may be fine while the database is down; if the config itself is
    broken there is no URL to ping and nothing more to do.
    """
    from tracker.config import load_settings

    try:
        url = load_settings(config).run.heartbeat_url  # type: ignore[arg-type]
    except TrackerError:
        return
    _ping(url, ok=False)


def _hold_lease(ws: Workspace) -> tuple[str, threading.Event]:
    """Take the run lease (waiting if configured) and renew it until the event is set."""
    sched = ws.settings.schedule
    deadline = time.monotonic() + (sched.lock_wait_seconds if sched.on_lock == "wait" else 0)
    while True:
        try:
            owner = run_ops.acquire_lease(ws.store, LOCK_NAME, LEASE_TTL)
            break
        except LockHeldError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(min(1.0, max(0.1, deadline - time.monotonic())))
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(LEASE_TTL.total_seconds() / 3):
            try:
                if not run_ops.renew_lease(ws.store, LOCK_NAME, owner, LEASE_TTL):
                    log.error("the run lease was lost (expired and taken by another run)")
            except TrackerError:
                log.exception("could not renew the run lease")

    threading.Thread(target=renew, name="lease-renewer", daemon=True).start()
    return owner, stop


def run_once(ws: Workspace, day: date | None = None, steps: list[Step] | None = None) -> RunResult:
    """The whole main job once; never raises for a failed run, it reports it."""

    day = day or ws.today()
    result = RunResult(None, day)
    try:
        owner, stop = _hold_lease(ws)
    except LockHeldError as exc:
        # the run holding the lock reports for itself: pinging /fail here would mark a
        # healthy job down
        result.error = str(exc)
        return result
    except TrackerError as exc:
        result.error = str(exc)
        _ping(ws.settings.run.heartbeat_url, ok=False)
        return result
    try:
        result.run_id = run_ops.start_run(ws.store, "run", owner=owner, lease=LOCK_NAME)
        result.collected = collect(ws, day, run_id=result.run_id)
        for step in steps if steps is not None else default_steps():
            produced = step(ws, day, result.run_id)
            if isinstance(produced, StepOutcome):
                result.notes += produced.notes
                result.details.update(produced.details)
                produced = produced.new_alerts
            # the detection step still hands over rows as dicts; records from here on
            result.new_alerts += [a if isinstance(a, Alert) else Alert.from_mapping(a)
                                  for a in produced]
        status = "ok"
        outcomes = result.collected.outcomes
        if outcomes and all(o.status == "failed" for o in outcomes):
            # detection still ran on what was stored, but no new data came in: the
            # run did not do its job, and cron must hear it (exit 3), not "OK"
            reasons = "; ".join(f"{o.source}: {o.reason or 'failed'}" for o in outcomes)
            result.error = f"every source failed ({reasons})"
            status = "failed"
    except TrackerError as exc:
        result.error = str(exc)
        status = "failed"
    except Exception as exc:  # a bug in a step: record the run as failed, not as ok
        log.exception("the run crashed")
        result.error = f"unexpected error: {exc!r}"
        status = "failed"
    finally:
        stop.set()
        try:
            if result.run_id is not None:
                run_ops.finish_run(ws.store, result.run_id,
                                   "failed" if result.error else "ok", result.summary(),
                                   {**result.details, "exit_code": result.exit_code})
        except TrackerError as exc:  # e.g. the database went away mid-run
            result.error = result.error or str(exc)
            status = "failed"
        finally:
            try:
                run_ops.release_lease(ws.store, LOCK_NAME, owner)
            except TrackerError as exc:  # the lease then expires after LEASE_TTL
                result.error = result.error or str(exc)
                status = "failed"
    _ping(ws.settings.run.heartbeat_url, ok=status == "ok")
    return result


def default_steps() -> list[Step]:
    """The steps after collection, in order."""
    from tracker.detection import detect_step
    from tracker.notify import notify_step
    from tracker.report import report_step

    return [detect_step, notify_step, report_step]
