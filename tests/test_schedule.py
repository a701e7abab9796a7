"""``tracker.schedule`` with the real APScheduler, the real job and real stores.

Short real triggers (an interval of 1 s) run :func:`tracker.job.run_once` against a
SQLite file with a csv_folder source; catch-up after downtime, the cross-process
lease and SIGTERM/SIGINT handling in a subprocess are exercised as they happen in
production. Nothing in APScheduler is mocked.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.interval import IntervalTrigger
from helpers import open_ws
from httpfixtures import FakeHttpServer, fake_http  # noqa: F401
from sqlalchemy import insert, select

from tracker.config import ScheduleSettings
from tracker.job import RunResult
from tracker.schedule import (
    build_scheduler,
    daily_trigger,
    describe_next,
    grace_seconds,
    missed_fire_time,
    next_fire_time,
    serve,
)
from tracker.store.schema import locks, runs
from tracker.workspace import Workspace

CSV = "company,date,employees\nAcme,2026-11-18,1000\nAcme,2026-11-19,1000\n"


def write_config(root: Path, db_url: str, *, schedule: str = "", sources: str | None = None
                 ) -> Path:
    if sources is None:
        (root / "drop").mkdir(exist_ok=True)
        (root / "drop" / "a.csv").write_text(CSV)
        sources = '[sources.files]\ntype = "csv_folder"\npath = "drop"\n'
    cfg = root / "config.toml"
    cfg.write_text(f'[database]\nurl = "{db_url}"\n\n[schedule]\n{schedule}\n\n{sources}\n',
                   encoding="utf-8")
    return cfg




class Serving:
    """serve() in a thread, its results collected, stopped and joined at the end."""

    def __init__(self, ws: Workspace, trigger=None, stop_after: int | None = None,  # type: ignore[no-untyped-def]
                 on_result: Callable[[RunResult], None] | None = None) -> None:
        self.results: list[tuple[float, RunResult]] = []
        self.stop = threading.Event()
        self.got = threading.Condition()
        self.stop_after = stop_after
        self.extra = on_result
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, args=(ws, trigger), daemon=True)
        self.thread.start()

    def _serve(self, ws: Workspace, trigger) -> None:  # type: ignore[no-untyped-def]
        try:
            serve(ws, stop_event=self.stop, trigger=trigger, on_result=self._collect)
        except BaseException as exc:
            self.error = exc

    def _collect(self, result: RunResult) -> None:
        if self.extra is not None:
            self.extra(result)
        with self.got:
            self.results.append((time.monotonic(), result))
            if self.stop_after is not None and len(self.results) >= self.stop_after:
                self.stop.set()
            self.got.notify_all()

    def wait_for(self, count: int, timeout: float) -> list[RunResult]:
        with self.got:
            self.got.wait_for(lambda: len(self.results) >= count, timeout)
        return [r for _, r in self.results]

    def close(self, timeout: float = 10.0) -> None:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "serve() did not return after the stop event"
        if self.error is not None:
            raise self.error


def run_rows(ws: Workspace) -> list:
    with ws.store.reading() as conn:
        return list(conn.execute(select(runs).where(runs.c.kind == "run")
                                 .order_by(runs.c.id)).all())


# -- the trigger and its helpers ---------------------------------------------------


@pytest.mark.parametrize(("now", "expected_local", "expected_utc"), [
    ("2026-11-22T09:00:00+00:00", "2026-11-23 06:00", "2026-11-23T05:00:00+00:00"),  # CET
    ("2026-11-22T04:59:00+00:00", "2026-11-22 06:00", "2026-11-22T05:00:00+00:00"),  # today
    ("2026-03-28T12:00:00+00:00", "2026-03-29 06:00", "2026-03-29T04:00:00+00:00"),  # to CEST
])
def test_next_fire_time_is_daily_at_in_the_schedule_timezone(
        now: str, expected_local: str, expected_utc: str) -> None:
    schedule = ScheduleSettings(daily_at="06:00", timezone="Europe/Berlin")
    when = next_fire_time(schedule, datetime.fromisoformat(now))
    assert when is not None
    assert when.astimezone(UTC) == datetime.fromisoformat(expected_utc)
    assert describe_next(schedule, datetime.fromisoformat(now)) == (
        f"next run at {expected_local} Europe/Berlin")


def test_the_job_is_daily_at_coalesced_single_instance_with_grace() -> None:
    schedule = ScheduleSettings(daily_at="23:45", timezone="Asia/Kolkata", misfire_grace_hours=1.5)
    trigger = daily_trigger(schedule)
    assert trigger.timezone == ZoneInfo("Asia/Kolkata")
    fire = trigger.get_next_fire_time(None, datetime(2026, 1, 1, tzinfo=UTC))
    assert fire is not None and (fire.hour, fire.minute) == (23, 45)

    scheduler = build_scheduler(schedule, lambda: None)
    scheduler.start(paused=True)
    try:
        (job,) = scheduler.get_jobs()
        assert (job.coalesce, job.max_instances) == (True, 1)
        assert job.misfire_grace_time == grace_seconds(schedule) == 5400  # not 1 s
        assert str(job.trigger) == str(trigger)
        assert job.next_run_time.tzinfo == ZoneInfo("Asia/Kolkata")
        assert (job.next_run_time.hour, job.next_run_time.minute) == (23, 45)
    finally:
        scheduler.shutdown(wait=False)
    catching_up = build_scheduler(schedule, lambda: None, run_now=True)
    catching_up.start(paused=True)
    try:
        (job,) = catching_up.get_jobs()
        assert abs((job.next_run_time - datetime.now(UTC)).total_seconds()) < 5
    finally:
        catching_up.shutdown(wait=False)


def _finished_run(ws: Workspace, finished: datetime | None, kind: str = "run") -> None:
    stamp = None if finished is None else finished.astimezone(UTC).replace(tzinfo=None)
    with ws.store.transaction() as conn:
        conn.execute(insert(runs).values(
            kind=kind, started_at=(stamp or datetime(2026, 1, 1)) - timedelta(minutes=1),
            finished_at=stamp, status="running" if stamp is None else "ok", details={}))


NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)  # 10:30 in Berlin
DUE = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)  # daily_at 10:00 Berlin


@pytest.mark.parametrize(("grace", "history", "owed"), [
    (12, [], True),  # never ran: the first start runs at once
    (12, [("run", DUE - timedelta(days=1))], True),  # yesterday's run only: missed today
    (12, [("run", DUE + timedelta(minutes=5))], False),  # today's run happened
    (12, [("run", None)], True),  # a run that never finished (SIGKILLed) does not count
    (12, [("collect", DUE + timedelta(minutes=5))], True),  # a bare collect is not the job
    (0.25, [("run", DUE - timedelta(days=1))], False),  # 30 min late > 15 min grace
])
def test_missed_fire_time(tmp_path: Path, sqlite_url: str, workspaces: list[Workspace],
                          grace: float, history: list, owed: bool) -> None:
    cfg = write_config(tmp_path, sqlite_url, schedule=(
        f'daily_at = "10:00"\ntimezone = "Europe/Berlin"\nmisfire_grace_hours = {grace}'))
    ws = open_ws(cfg, workspaces)
    for kind, finished in history:
        _finished_run(ws, finished, kind)
    missed = missed_fire_time(ws, now=NOW)
    assert missed == (DUE if owed else None)


# -- serve() with real triggers ----------------------------------------------------


def test_interval_trigger_runs_the_real_job_and_records_runs(
        tmp_path: Path, sqlite_url: str, workspaces: list[Workspace]) -> None:
    ws = open_ws(write_config(tmp_path, sqlite_url), workspaces)

    def drop_a_file(result: RunResult) -> None:  # new data arrives between the runs
        (tmp_path / "drop" / "b.csv").write_text("company,date,employees\nGlobex,2026-11-19,7\n")

    started = time.monotonic()
    serving = Serving(ws, IntervalTrigger(seconds=1), stop_after=2, on_result=drop_a_file)
    results = serving.wait_for(2, timeout=15)
    serving.close()
    assert time.monotonic() - started < 10
    assert [r.exit_code for r in results] == [0, 0]
    assert [r.collected.inserted for r in results if r.collected] == [2, 1]
    rows = run_rows(ws)
    assert [r.id for r in rows] == [r.run_id for r in results]
    assert all(r.status == "ok" and r.finished_at is not None for r in rows)


def _berlin_now() -> datetime:
    return datetime.now(ZoneInfo("Europe/Berlin"))


def test_catch_up_on_start_runs_once_within_grace(
        tmp_path: Path, sqlite_url: str, workspaces: list[Workspace]) -> None:
    daily_at = (_berlin_now() - timedelta(hours=1)).strftime("%H:%M")
    cfg = write_config(tmp_path, sqlite_url, schedule=(
        f'daily_at = "{daily_at}"\ntimezone = "Europe/Berlin"\nmisfire_grace_hours = 12'))
    ws = open_ws(cfg, workspaces)
    _finished_run(ws, _berlin_now() - timedelta(hours=3))  # the last run was before it

    serving = Serving(ws)
    assert len(serving.wait_for(1, timeout=10)) == 1
    time.sleep(1.2)  # ... and only once
    serving.close()
    assert len(serving.results) == 1 and serving.results[0][1].exit_code == 0
    assert len(run_rows(ws)) == 2
    assert missed_fire_time(ws) is None  # owed no more


def test_no_catch_up_outside_grace(tmp_path: Path, sqlite_url: str,
                                   workspaces: list[Workspace]) -> None:
    daily_at = (_berlin_now() - timedelta(hours=3)).strftime("%H:%M")
    cfg = write_config(tmp_path, sqlite_url, schedule=(
        f'daily_at = "{daily_at}"\ntimezone = "Europe/Berlin"\nmisfire_grace_hours = 1'))
    ws = open_ws(cfg, workspaces)
    serving = Serving(ws)
    time.sleep(1.5)
    serving.close()
    assert serving.results == [] and run_rows(ws) == []


# -- never two runs at once --------------------------------------------------------


def _slow_api(server: FakeHttpServer, delay: float) -> str:
    server.add_company("acme", 1000)
    server.inject("acme", delay=delay)
    return (f'[sources.api]\ntype = "http_json"\n'
            f'url = "{server.url}/api/companies/{{company}}"\n'
            'value_path = "data.employee_count"\ntimeout = 30\nretries = 0\n'
            '[companies.acme]\nname = "Acme"\n')


def _assert_no_overlap(rows: list) -> None:
    spans = sorted((r.started_at, r.finished_at) for r in rows)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end is not None and end <= start, f"runs overlapped: {spans}"


def test_two_schedulers_never_run_together(
        tmp_path: Path, sqlite_url: str, fake_http: FakeHttpServer,  # noqa: F811
        workspaces: list[Workspace]) -> None:
    cfg = write_config(tmp_path, sqlite_url, sources=_slow_api(fake_http, 1.2))
    first = Serving(open_ws(cfg, workspaces), IntervalTrigger(seconds=1))
    second = Serving(open_ws(cfg, workspaces), IntervalTrigger(seconds=1))

    def codes() -> list[int]:
        return [r.exit_code for _, r in first.results + second.results]

    deadline = time.monotonic() + 15
    while (codes().count(0) < 2 or 3 not in codes()) and time.monotonic() < deadline:
        time.sleep(0.1)
    first.close()
    second.close()
    results = [r for _, r in first.results + second.results]
    refused = [r for r in results if r.exit_code == 3]
    assert refused and all("holds the lock" in (r.error or "") for r in refused)
    assert sum(r.exit_code == 0 for r in results) >= 2
    rows = run_rows(open_ws(cfg, workspaces))
    assert len(rows) == sum(r.exit_code == 0 for r in results)
    _assert_no_overlap(rows)


def test_a_run_started_by_hand_waits_for_the_scheduled_one(
        tmp_path: Path, sqlite_url: str, fake_http: FakeHttpServer,  # noqa: F811
        workspaces: list[Workspace]) -> None:
    from tracker.job import run_once

    cfg = write_config(tmp_path, sqlite_url, sources=_slow_api(fake_http, 1.0),
                       schedule='on_lock = "wait"\nlock_wait_seconds = 20')
    ws = open_ws(cfg, workspaces)
    serving = Serving(ws, IntervalTrigger(seconds=1), stop_after=1)
    deadline = time.monotonic() + 10
    while not fake_http.requests_for("acme"):  # the scheduled run is working
        assert time.monotonic() < deadline
        time.sleep(0.05)
    by_hand = run_once(open_ws(cfg, workspaces), steps=[])
    serving.close()
    assert by_hand.exit_code == 0, by_hand.error
    assert serving.results and serving.results[0][1].exit_code == 0
    rows = run_rows(ws)
    assert len(rows) >= 2
    _assert_no_overlap(rows)


# -- signals in a real process -----------------------------------------------------

SERVE = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
from apscheduler.triggers.interval import IntervalTrigger
from tracker.schedule import serve
from tracker.workspace import open_workspace
ws = open_workspace(sys.argv[1])
serve(ws, trigger=IntervalTrigger(seconds=1) if sys.argv[2] == "interval" else None)
ws.close()
"""


def _start(cfg: Path, mode: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SERVE, str(cfg), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _read_until(proc: subprocess.Popen, needle: str, timeout: float) -> str:
    seen: list[str] = []
    done = threading.Event()

    def reader() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if needle in line:
                done.set()
                return

    threading.Thread(target=reader, daemon=True).start()
    if not done.wait(timeout):
        proc.kill()
        raise AssertionError(f"never saw {needle!r}; stderr so far:\n{''.join(seen)}")
    return "".join(seen)


def test_sigterm_stops_an_idle_scheduler_cleanly(tmp_path: Path, sqlite_url: str) -> None:
    cfg = write_config(tmp_path, sqlite_url, schedule='daily_at = "06:00"\n'
                       'timezone = "Europe/Berlin"\nmisfire_grace_hours = 0.01')
    proc = _start(cfg, "daily")
    try:
        head = _read_until(proc, "scheduler started", timeout=30)
        assert "next run at" in head and "Europe/Berlin" in head
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert time.monotonic() - sent < 5
    assert "scheduler stopped" in rest and "Traceback" not in head + rest


def test_sigint_during_a_run_waits_for_it_then_exits_0(
        tmp_path: Path, sqlite_url: str, fake_http: FakeHttpServer,  # noqa: F811
        workspaces: list[Workspace]) -> None:
    cfg = write_config(tmp_path, sqlite_url, sources=_slow_api(fake_http, 1.0))
    ws = open_ws(cfg, workspaces)
    proc = _start(cfg, "interval")
    try:
        _read_until(proc, "scheduler started", timeout=30)
        deadline = time.monotonic() + 10
        while not fake_http.requests_for("acme"):  # a run is under way
            assert time.monotonic() < deadline, "no run started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, rest
    assert "Traceback" not in rest and "scheduler stopped" in rest
    assert rest.index("tracker.schedule OK: ") < rest.index("scheduler stopped")  # waited
    rows = run_rows(ws)
    assert len(rows) == 1 and rows[0].status == "ok"  # finished, not cut off
    with ws.store.reading() as conn:
        assert conn.execute(select(locks)).all() == []  # and the lease released
