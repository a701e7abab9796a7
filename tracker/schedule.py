"""``tracker schedule``: run the main job every day at ``[schedule] daily_at``.

APScheduler wiring only; the job itself is :func:`tracker.job.run_once`.

* The daily trigger is a cron trigger at ``daily_at`` in ``[schedule] timezone``
  (a ``ZoneInfo``), so "06:00 Europe/Berlin" stays 06:00 local across DST changes.
* ``coalesce`` and ``max_instances=1``: a process never runs the job twice at once,
  and fire times missed while it was busy or suspended collapse into one run if
  they are at most ``misfire_grace_hours`` late.
* APScheduler 3's memory job store forgets missed runs across restarts, so
  :func:`serve` catches up itself: if the most recent scheduled time (within the
  grace period) is later than the last finished ``run`` in the ``runs`` table, the
  job runs once right away. A first start on an empty database counts as missed.
* Across processes and hosts the database lease in :mod:`tracker.job` keeps runs
  apart: a second scheduler's run reports LockHeldError (exit code 3 in its
  :class:`~tracker.job.RunResult`) or waits, per ``[schedule] on_lock``.
* SIGTERM and SIGINT set the stop event; the scheduler is then shut down, waiting
  for a running job, and :func:`serve` returns. A second signal while waiting gets
  the default behaviour back (SIGINT raises KeyboardInterrupt, SIGTERM kills).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from tracker.collect import require_sources
from tracker.config import ScheduleSettings
from tracker.job import EXIT_CRITICAL, EXIT_FAILED, EXIT_OK, EXIT_WARNING, RunResult, run_once
from tracker.store import run_history
from tracker.workspace import Workspace

log = logging.getLogger(__name__)

JOB_ID = "tracker-run"
_LEVELS = {EXIT_OK: logging.INFO, EXIT_WARNING: logging.WARNING,
           EXIT_CRITICAL: logging.WARNING, EXIT_FAILED: logging.ERROR}
_MAX_STEPS = 100_000  # bound on walking a trigger's fire times through the grace window


def daily_trigger(schedule: ScheduleSettings) -> CronTrigger:
    """The cron trigger for ``daily_at`` in the schedule's timezone."""
    at = schedule.daily_at
    return CronTrigger(hour=at.hour, minute=at.minute, second=at.second,
                       timezone=ZoneInfo(schedule.timezone))


def grace_seconds(schedule: ScheduleSettings) -> int:
    """``misfire_grace_hours`` in whole seconds (APScheduler's default would be 1 s)."""
    return max(1, round(schedule.misfire_grace_hours * 3600))


def _zone(schedule: ScheduleSettings, trigger: BaseTrigger | None) -> Any:
    return getattr(trigger, "timezone", None) or ZoneInfo(schedule.timezone)


def next_fire_time(schedule: ScheduleSettings, now: datetime | None = None,
                   trigger: BaseTrigger | None = None) -> datetime | None:
    """When the next scheduled run is due (aware, in the schedule's timezone)."""
    trigger = trigger or daily_trigger(schedule)
    now = (now or datetime.now(UTC)).astimezone(_zone(schedule, trigger))
    return trigger.get_next_fire_time(None, now)


def describe_next(schedule: ScheduleSettings, now: datetime | None = None,
                  trigger: BaseTrigger | None = None) -> str:
    """E.g. ``next run at 2026-11-23 06:00 Europe/Berlin``, for the CLI and the log."""
    when = next_fire_time(schedule, now, trigger)
    if when is None:
        return "no further run is scheduled"
    zone = _zone(schedule, trigger)
    seconds = f":{when:%S}" if when.second else ""
    return f"next run at {when:%Y-%m-%d %H:%M}{seconds} {getattr(zone, 'key', zone)}"


def previous_fire_time(trigger: BaseTrigger, now: datetime, since: datetime) -> datetime | None:
    """The latest fire time of ``trigger`` in ``[since, now]``, or None."""
    latest = None
    fire = trigger.get_next_fire_time(None, since)
    for _ in range(_MAX_STEPS):
        if fire is None or fire > now:
            break
        latest = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
    return latest


def last_finished_run(ws: Workspace) -> datetime | None:
    """When the last main-job run (kind ``run``) finished, aware UTC; None if never."""
    stamp = run_history.last_finished(ws.store, "run")
    return stamp.replace(tzinfo=UTC) if stamp is not None else None


def missed_fire_time(ws: Workspace, trigger: BaseTrigger | None = None,
                     now: datetime | None = None) -> datetime | None:
    """The scheduled time a catch-up run is owed for, or None.

    That is the most recent fire time not after ``now`` and at most
    ``misfire_grace_hours`` ago, when no ``run`` has finished since it.
    """
    schedule = ws.settings.schedule
    trigger = trigger or daily_trigger(schedule)
    now = (now or datetime.now(UTC)).astimezone(_zone(schedule, trigger))
    due = previous_fire_time(trigger, now, now - timedelta(seconds=grace_seconds(schedule)))
    if due is None:
        return None
    finished = last_finished_run(ws)
    return due if finished is None or finished < due else None


def build_scheduler(schedule: ScheduleSettings, job: Callable[[], None],
                    trigger: BaseTrigger | None = None, *, run_now: bool = False
                    ) -> BackgroundScheduler:
    """A not yet started scheduler with ``job`` on ``trigger`` (default: daily_at).

    One job, so ``max_instances=1`` covers the catch-up run too (``run_now`` makes
    its first fire time now instead of the trigger's next one).
    """
    trigger = trigger or daily_trigger(schedule)
    zone = _zone(schedule, trigger)
    scheduler = BackgroundScheduler(timezone=zone)
    extra: dict[str, Any] = {"next_run_time": datetime.now(zone)} if run_now else {}
    scheduler.add_job(job, trigger, id=JOB_ID, name="tracker run", coalesce=True,
                      max_instances=1, misfire_grace_time=grace_seconds(schedule), **extra)
    return scheduler


def _install_signal_handlers(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM/SIGINT -> set ``stop``; returns a function restoring the old handlers.

    Python only allows handlers in the main thread; elsewhere (tests, an embedding
    application) nothing is installed and the caller's stop event is the way out.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: dict[int, Any] = {}

    def handler(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            return
        log.info("%s received: stopping after the running job, if any "
                 "(send it again to stop at once)", name)
        stop.set()
        signal.signal(signum, previous.get(signum) or signal.SIG_DFL)

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)

    return restore


def serve(ws: Workspace, *, stop_event: threading.Event | None = None,
          trigger: BaseTrigger | None = None,
          on_result: Callable[[RunResult], None] | None = None) -> None:
    """Run the main job on the schedule until ``stop_event`` is set or SIGTERM/SIGINT.

    Blocks. ``trigger`` replaces the daily cron trigger (tests use a short interval).
    Each run's summary line is logged (INFO when OK, WARNING for new alerts, ERROR
    when the run failed) and passed to ``on_result``. Raises StoreError when the
    database cannot be read at start-up, and ConfigError when no source is enabled:
    a scheduler that collects nothing would report a healthy job every day.
    """
    require_sources(ws.settings)
    schedule = ws.settings.schedule
    trigger = trigger or daily_trigger(schedule)
    stop = stop_event or threading.Event()
    missed = missed_fire_time(ws, trigger)

    def job() -> None:
        try:
            result = run_once(ws)
        except Exception as exc:  # run_once reports failures; this is a bug, keep serving
            log.exception("the scheduled run crashed")

            result = RunResult(None, ws.today(), error=f"unexpected error: {exc!r}")
        log.log(_LEVELS.get(result.exit_code, logging.ERROR), "%s", result.summary())
        if on_result is not None:
            try:
                on_result(result)
            except Exception:
                log.exception("on_result callback failed")
        if not stop.is_set():
            log.info("%s", describe_next(schedule, trigger=trigger))

    if missed is not None:
        log.info("the run scheduled for %s did not happen (no finished run since): "
                 "running it now", f"{missed:%Y-%m-%d %H:%M %Z}")
    scheduler = build_scheduler(schedule, job, trigger, run_now=missed is not None)
    restore = _install_signal_handlers(stop)
    try:
        scheduler.start()
        if missed is None:
            log.info("scheduler started; %s", describe_next(schedule, trigger=trigger))
        else:
            log.info("scheduler started")
        while not stop.wait(1.0):
            pass
        log.info("scheduler stopping (waiting for a running job to finish)")
    finally:
        if scheduler.running:
            scheduler.shutdown(wait=True)
        restore()
    log.info("scheduler stopped")


__all__ = ["build_scheduler", "daily_trigger", "describe_next", "grace_seconds",
           "last_finished_run", "missed_fire_time", "next_fire_time", "previous_fire_time",
           "serve"]
