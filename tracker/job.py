"""The main job, ``tracker run``: collect -> detect -> alert -> notify -> report, once.

Its exit code follows the Nagios plugin convention so cron and monitoring systems
can act on it without parsing output: 0 nothing new, 1 new warning alerts or a
failed source, 2 new critical alerts, 3 the run itself failed (no source to collect
from, every source failed, the database or the lock unavailable). ``[run]
heartbeat_url`` gets healthchecks.io's ``/start`` and ``/<exit code>`` pings (see
:class:`Heartbeat`). Only one run may work at a time across
processes and hosts: a lease in the database (see ``store.runs``) makes a second
``tracker run`` or scheduler exit with 3, or wait, as configured. A holder killed on
this machine is taken over at once and its run marked abandoned; one on another
host is waited out until its lease expires.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from tracker import silences as silence_ops
from tracker.collect import CollectResult, collect
from tracker.detect.engine import fork_quiet
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
    #: fresh alerts a silence covers (``tracker.silences``): stored, not paged
    silenced: list[Alert] = field(default_factory=list)

    @property
    def fresh_alerts(self) -> list[Alert]:
        """New alerts that are news (not backfill of old history)."""
        return [a for a in self.new_alerts if a.fresh]

    @property
    def paging_alerts(self) -> list[Alert]:
        """Fresh alerts no silence covers: what the exit code and the summary count."""
        muted = {id(a) for a in self.silenced}
        return [a for a in self.fresh_alerts if id(a) not in muted]

    @property
    def exit_code(self) -> int:
        """3 when the run failed; else by fresh alerts, and at least 1 (WARNING) when a
        source failed: a run that lost a source did not fully do its job, and cron
        must hear it even on a day without alerts."""
        if self.error is not None:
            return EXIT_FAILED
        severities = {a.severity for a in self.paging_alerts}
        if "critical" in severities:
            return EXIT_CRITICAL
        if "warning" in severities or (self.collected and self.collected.failed_sources):
            return EXIT_WARNING
        return EXIT_OK

    def summary(self) -> str:
        """The one line cron mails and monitoring systems show."""
        label = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}[self.exit_code]
        if self.error is not None:
            return f"{label}: run failed: {self.error}"
        c = self.collected
        crit = sum(a.severity == "critical" for a in self.paging_alerts)
        warn = sum(a.severity == "warning" for a in self.paging_alerts)
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
        if self.silenced:
            parts.append(f"{len(self.silenced)} new alert(s) silenced (tracker silence list)")
        if backfill:
            parts.append(f"{backfill} alert(s) about older history stored (tracker alerts)")
        parts += self.notes
        return "; ".join(parts)


class Heartbeat:
    """healthchecks.io-style pings of ``[run] heartbeat_url``: ``URL/start`` when a run
    starts, ``URL/<exit code>`` when it ends (healthchecks reads 0 as success, any
    other code as failure), both with the same ``rid`` so the service pairs them and
    times the run; the end ping POSTs the summary line, which healthchecks keeps in
    its log. See https://healthchecks.io/docs/http_api/.

    The URL is a secret (whoever has it can report the job healthy), so a problem
    names only its scheme and host. A ping that fails (4xx/5xx, unreachable, timeout)
    never fails the run: it is logged and kept in :attr:`problems` for the summary,
    because a dead-man's switch that silently stopped hearing from us is worth
    knowing about.
    """

    TIMEOUT = 10.0

    def __init__(self, url: str | None) -> None:
        self.url = url or None
        self.rid = str(uuid.uuid4())
        self.problems: list[str] = []

    def start(self) -> None:
        self._send("start", "")

    def finish(self, exit_code: int, summary: str) -> None:
        self._send(str(exit_code), summary)

    def target(self, signal: str) -> str:
        """The URL of one signal: the path gets ``/signal``, the query ``rid``."""
        assert self.url is not None
        parts = urlsplit(self.url)
        query = "&".join(q for q in (parts.query, f"rid={self.rid}") if q)
        return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{signal}",
                                         query=query))

    def where(self) -> str:
        """The service without the secret: scheme and host (and port) only."""
        assert self.url is not None
        parts = urlsplit(self.url)
        host = parts.hostname or "?"
        return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")

    def _send(self, signal: str, body: str) -> None:
        if self.url is None:
            return
        try:
            reply = requests.post(self.target(signal), data=body.encode("utf-8"),
                                  timeout=self.TIMEOUT,
                                  headers={"User-Agent": "tracker heartbeat",
                                           "Content-Type": "text/plain; charset=utf-8"})
        except requests.Timeout:
            problem = f"no answer within {self.TIMEOUT:g} s"
        except (requests.RequestException, ValueError) as exc:
            # the exception's text quotes the URL: name only its kind
            problem = f"could not be reached ({type(exc).__name__})"
        else:
            if reply.status_code < 400:
                return
            problem = f"answered HTTP {reply.status_code}"
        message = f"heartbeat /{signal} to {self.where()} {problem}"
        log.warning("%s", message)
        self.problems.append(message)


def ping_failure(config: object, summary: str) -> list[str]:
    """Send the failure heartbeat (``/3``) when the run could not even start, e.g. its
    workspace did not open; the problems of that ping, for the summary line.

    The config may be fine while the database is down; if the config itself is
    broken there is no URL to ping and nothing more to do.
    """
    from tracker.config import Settings, load_settings

    try:
        settings = config if isinstance(config, Settings) else load_settings(config)  # type: ignore[arg-type]
    except TrackerError:
        return []
    beat = Heartbeat(settings.run.heartbeat_url)
    beat.finish(EXIT_FAILED, summary)
    return beat.problems


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
    busy = threading.Lock()

    def renew() -> None:
        while not stop.wait(LEASE_TTL.total_seconds() / 3):
            with busy:
                try:
                    if not run_ops.renew_lease(ws.store, LOCK_NAME, owner, LEASE_TTL):
                        log.error("the run lease was lost (expired and taken by another run)")
                except TrackerError:
                    log.exception("could not renew the run lease")

    renewer = threading.Thread(target=renew, name="lease-renewer", daemon=True)
    fork_quiet(renewer, busy)  # detection may fork its workers while it waits
    renewer.start()
    return owner, stop


def run_once(ws: Workspace, day: date | None = None, steps: list[Step] | None = None) -> RunResult:
    """The whole main job once; never raises for a failed run, it reports it.

    Heartbeats: ``/start`` once the run holds the lease (a run refused by the lock
    pings nothing: the holder reports for itself, and a ``/start`` without its end
    would page), ``/<exit code>`` when it is over, including a run that could not
    start for want of a database. A workspace without sources is a detection-only
    run here (notebooks run the job over imported data); ``tracker run`` and
    ``tracker schedule`` refuse it first (``collect.require_sources``).
    """
    day = day or ws.today()
    result = RunResult(None, day)
    beat = Heartbeat(ws.settings.run.heartbeat_url)
    try:
        owner, stop = _hold_lease(ws)
    except LockHeldError as exc:
        result.error = str(exc)
        return result
    except TrackerError as exc:
        result.error = str(exc)
        beat.finish(result.exit_code, result.summary())
        result.notes += beat.problems
        return result
    beat.start()
    result.notes += beat.problems
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
        fresh = result.fresh_alerts
        result.silenced = [fresh[i] for i in sorted(silence_ops.silenced(ws, fresh))]
        outcomes = result.collected.outcomes
        if outcomes and all(o.status == "failed" for o in outcomes):
            # detection still ran on what was stored, but no new data came in: the
            # run did not do its job, and cron must hear it (exit 3), not "OK"
            reasons = "; ".join(f"{o.source}: {o.reason or 'failed'}" for o in outcomes)
            result.error = f"every source failed ({reasons})"
    except TrackerError as exc:
        result.error = str(exc)
    except Exception as exc:  # a bug in a step: record the run as failed, not as ok
        log.exception("the run crashed")
        result.error = f"unexpected error: {exc!r}"
    finally:
        stop.set()
        try:
            _record(ws, result)
        except TrackerError as exc:  # e.g. the database went away mid-run
            result.error = result.error or str(exc)
        finally:
            try:
                run_ops.release_lease(ws.store, LOCK_NAME, owner)
            except TrackerError as exc:  # the lease then expires after LEASE_TTL
                result.error = result.error or str(exc)
    known = len(beat.problems)
    beat.finish(result.exit_code, result.summary())
    if len(beat.problems) > known:
        # the record was written before the end ping could be tried: say it there too
        result.notes += beat.problems[known:]
        try:
            _record(ws, result)
        except TrackerError as exc:  # best effort: the summary line and the log have it
            log.warning("could not add the heartbeat problem to run %s: %s",
                        result.run_id, exc)
    return result


def _record(ws: Workspace, result: RunResult) -> None:
    """Write the run's outcome (status, summary line, exit code) into its record."""
    if result.run_id is not None:
        run_ops.finish_run(ws.store, result.run_id, "failed" if result.error else "ok",
                           result.summary(), {**result.details, "exit_code": result.exit_code})


def default_steps() -> list[Step]:
    """The steps after collection, in order."""
    from tracker.detection import detect_step
    from tracker.inflation import inflation_step
    from tracker.notify import notify_step
    from tracker.population import population_step
    from tracker.report import report_step

    return [detect_step, inflation_step, population_step, notify_step, report_step]
