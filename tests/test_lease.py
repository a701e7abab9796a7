"""The run lease and run accounting after a kill, for real.

A ``tracker run`` subprocess is made to hold the lease (its HTTP source waits on a
slow local server) and is SIGKILLed; ``tracker status`` must then show the run
abandoned and the next ``tracker run`` must take over at once, on a SQLite file and
on PostgreSQL. A live holder is refused with its pid, host, start and expiry. The
unit cases build owners by hand: a reused pid (same number, other start time), a
zombie, another host, another machine of the same name, an older tracker's owner.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from helpers import no_traceback, open_ws, python_env, tracker, tracker_command
from httpfixtures import FakeHttpServer, fake_http  # noqa: F401
from sqlalchemy import insert, select, update

from tracker.errors import LockHeldError
from tracker.job import LOCK_NAME, run_once
from tracker.status import status
from tracker.store import Store
from tracker.store import runs as run_ops
from tracker.store.companies import now_utc
from tracker.store.schema import locks, runs
from tracker.workspace import Workspace

HOST = socket.gethostname()
TTL = timedelta(minutes=10)
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"


def write_config(root: Path, db_url: str, server: FakeHttpServer) -> Path:
    """One HTTP source for one company: a slow answer keeps the run in collection."""
    cfg = root / "config.toml"
    cfg.write_text(
        f'[database]\nurl = "{db_url}"\n\n'
        f'[sources.api]\ntype = "http_json"\n'
        f'url = "{server.url}/api/companies/{{company}}"\n'
        'value_path = "data.employee_count"\ntimeout = 60\nretries = 0\n\n'
        '[companies.acme]\nname = "Acme"\n',
        encoding="utf-8",
    )
    return cfg


@pytest.fixture
def holder_process(tmp_path: Path) -> Iterator[list[subprocess.Popen]]:
    """Processes a test starts; whatever is still alive at the end is SIGKILLed."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def start_holding_run(cfg: Path, server: FakeHttpServer, ws: Workspace,
                      started: list[subprocess.Popen]) -> subprocess.Popen:
    """``tracker run`` in a subprocess, returned once it holds the lease and is inside
    collection (its request reached the slow server)."""
    server.add_company("acme", 1000)
    server.inject("acme", delay=30.0, times=1)
    proc = subprocess.Popen(tracker_command("--config", str(cfg), "run"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=python_env())
    started.append(proc)
    deadline = time.monotonic() + 60
    while not (server.requests_for("acme") and lock_rows(ws)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never reached its source"
        time.sleep(0.05)
    return proc


def run_rows(ws: Workspace) -> list:
    with ws.store.reading() as conn:
        return list(conn.execute(select(runs).order_by(runs.c.id)).all())


def lock_rows(ws: Workspace) -> list:
    with ws.store.reading() as conn:
        return list(conn.execute(select(locks)).all())


def recent_runs_part(stdout: str) -> str:
    return stdout.split("Recent runs:")[1].split("Sources in the last run:")[0]


def shown_status(stdout: str, run_id: int) -> str:
    """The status column of run ``run_id`` in ``tracker status``'s table."""
    lines = recent_runs_part(stdout).splitlines()
    header = next(line for line in lines if line.startswith("id "))
    at = header.index("status")  # text columns are left-aligned under their header
    for line in lines:
        cells = line.split()
        if cells and cells[0] == str(run_id):
            return line[at:].split()[0]
    raise AssertionError(f"run {run_id} not shown:\n{stdout}")


# -- the real thing: subprocesses, SIGKILL, the CLI -------------------------------------


def test_a_sigkilled_run_is_abandoned_and_the_next_run_takes_over_at_once(
    tmp_path: Path, db_url: str, fake_http: FakeHttpServer,  # noqa: F811
    workspaces: list[Workspace], holder_process: list[subprocess.Popen],
) -> None:
    cfg = write_config(tmp_path, db_url, fake_http)
    ws = open_ws(cfg, workspaces)
    proc = start_holding_run(cfg, fake_http, ws, holder_process)
    (killed,) = run_rows(ws)
    assert killed.status == "running"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert [lock.owner.split(":")[:2] for lock in lock_rows(ws)] == [[HOST, str(proc.pid)]]

    shown = tracker("--config", str(cfg), "status", cwd=tmp_path)
    no_traceback(shown)
    assert shown.returncode == 2  # CRITICAL: the last run was abandoned
    assert shown_status(shown.stdout, killed.id) == "abandoned", shown.stdout
    recent = recent_runs_part(shown.stdout)
    assert f"pid {proc.pid} on host {HOST}" in recent and "no longer running" in recent
    (marked,) = run_rows(ws)
    assert marked.status == "abandoned" and marked.finished_at is None  # it never finished
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+", marked.details["abandoned_at"])
    assert "no longer running" in marked.details["abandoned_because"]

    fake_http.clear()
    begun = time.monotonic()
    nxt = tracker("--config", str(cfg), "run", cwd=tmp_path)
    no_traceback(nxt)
    assert nxt.returncode == 0, nxt.stdout + nxt.stderr
    assert nxt.stdout.startswith("OK: ") and "1 new observations" in nxt.stdout
    assert time.monotonic() - begun < TTL.total_seconds() / 2  # did not wait for expiry
    assert [(r.id, r.status) for r in run_rows(ws)] == [(killed.id, "abandoned"),
                                                        (killed.id + 1, "ok")]
    assert lock_rows(ws) == []


def test_the_next_run_itself_marks_the_killed_run_and_takes_over(
    tmp_path: Path, sqlite_url: str, fake_http: FakeHttpServer,  # noqa: F811
    workspaces: list[Workspace], holder_process: list[subprocess.Popen],
) -> None:
    cfg = write_config(tmp_path, sqlite_url, fake_http)
    ws = open_ws(cfg, workspaces)
    proc = start_holding_run(cfg, fake_http, ws, holder_process)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    fake_http.clear()

    result = run_once(ws)  # no tracker status in between
    assert result.exit_code == 0, result.summary()
    first, second = run_rows(ws)
    assert (first.status, second.status) == ("abandoned", "ok")
    assert f"pid {proc.pid} on host {HOST}" in first.summary
    assert lock_rows(ws) == []


def test_a_live_holder_is_refused_saying_it_still_runs_and_when_it_expires(
    tmp_path: Path, db_url: str, fake_http: FakeHttpServer,  # noqa: F811
    workspaces: list[Workspace], holder_process: list[subprocess.Popen],
) -> None:
    cfg = write_config(tmp_path, db_url, fake_http)
    ws = open_ws(cfg, workspaces)
    proc = start_holding_run(cfg, fake_http, ws, holder_process)

    second = tracker("--config", str(cfg), "run", cwd=tmp_path)
    no_traceback(second)
    assert second.returncode == 3
    (line,) = second.stdout.splitlines()
    assert re.fullmatch(
        rf"UNKNOWN: run failed: another run holds the lock 'main-job': held by pid "
        rf"{proc.pid} on host {re.escape(HOST)} since {STAMP}, which is still running; "
        rf"expires at {STAMP}; not starting a second one", line), line
    shown = tracker("--config", str(cfg), "status", cwd=tmp_path)
    (running,) = run_rows(ws)
    assert shown_status(shown.stdout, running.id) == "running", shown.stdout
    assert running.status == "running"  # not taken over, not marked
    assert proc.poll() is None


def test_a_killed_collect_without_a_lease_is_abandoned(
    tmp_path: Path, sqlite_url: str, fake_http: FakeHttpServer,  # noqa: F811
    workspaces: list[Workspace], holder_process: list[subprocess.Popen],
) -> None:
    """``tracker collect`` takes no lease: only its dead process can tell it is gone."""
    cfg = write_config(tmp_path, sqlite_url, fake_http)
    ws = open_ws(cfg, workspaces)
    fake_http.add_company("acme", 1000)
    fake_http.inject("acme", delay=30.0, times=1)
    proc = subprocess.Popen(tracker_command("--config", str(cfg), "collect"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=python_env())
    holder_process.append(proc)
    deadline = time.monotonic() + 60
    while not fake_http.requests_for("acme"):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    report = status(ws)
    assert [(r[1], r[4]) for r in report.run_rows] == [("collect", "abandoned")]
    assert f"pid {proc.pid} on host {HOST}" in report.run_rows[0][5]


# -- owners built by hand ----------------------------------------------------------------


def proc_stat(pid: int) -> list[str]:
    """Fields 3 on of /proc/PID/stat (state first, start time at index 19)."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def own_owner(**replace: str) -> str:
    """This process's owner string with some of its parts replaced."""
    host, pid, tag, start, machine = run_ops.owner_id().split(":")
    parts = {"host": host, "pid": pid, "tag": tag, "start": start, "machine": machine,
             **replace}
    return ":".join(parts[k] for k in ("host", "pid", "tag", "start", "machine"))


def put_lease(ws: Workspace, owner: str, expires_in: timedelta = TTL) -> None:
    now = now_utc()
    with ws.store.transaction() as conn:
        conn.execute(locks.delete())
        conn.execute(insert(locks).values(name=LOCK_NAME, owner=owner, acquired_at=now,
                                          expires_at=now + expires_in))


@pytest.fixture
def ws(tmp_path: Path, sqlite_url: str, fake_http: FakeHttpServer,  # noqa: F811
       workspaces: list[Workspace]) -> Workspace:
    return open_ws(write_config(tmp_path, sqlite_url, fake_http), workspaces)


def test_owner_records_host_pid_and_process_start() -> None:
    host, pid, tag, start, machine = run_ops.owner_id().split(":")
    assert (host, int(pid)) == (HOST, os.getpid())
    assert start == proc_stat(os.getpid())[19]
    assert re.fullmatch(r"[0-9a-f]{8}", tag) and re.fullmatch(r"[0-9a-f]{12}", machine)
    assert run_ops.owner_id() != run_ops.owner_id()  # two holders in one process differ


def test_a_reused_pid_does_not_keep_a_dead_holder_alive(ws: Workspace) -> None:
    """The pid exists (it is ours) but started at another time: not the holder."""
    start = int(own_owner().split(":")[3])
    put_lease(ws, own_owner(tag="deadbeef", start=str(start + 1)))
    owner = run_ops.acquire_lease(ws.store, LOCK_NAME, TTL)
    assert [lock.owner for lock in lock_rows(ws)] == [owner]


def test_a_zombie_holder_is_dead(ws: Workspace) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = proc_stat(child.pid)[19]
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while proc_stat(child.pid)[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        put_lease(ws, own_owner(pid=str(child.pid), start=start))  # not reaped yet
        run_ops.acquire_lease(ws.store, LOCK_NAME, TTL)
    finally:
        child.wait(10)


def test_a_live_holder_in_this_process_is_still_running(ws: Workspace) -> None:
    put_lease(ws, own_owner(tag="0000cafe"))
    with pytest.raises(LockHeldError, match=rf"held by pid {os.getpid()} on host "
                       rf"{re.escape(HOST)} since {STAMP}, which is still running; "
                       rf"expires at {STAMP}"):
        run_ops.acquire_lease(ws.store, LOCK_NAME, TTL)


@pytest.mark.parametrize("owner", [
    "otherhost:999999:cafe0000:12345:0123456789ab",  # another host
    f"{HOST}:999999:cafe0000:12345:0123456789ab",  # same name, another machine (boot, ns)
    f"{HOST}:999999:cafe",  # an older tracker's owner: no process start recorded
    "otherhost:4242:cafe",
])
def test_a_holder_that_cannot_be_checked_is_never_presumed_dead(
        ws: Workspace, owner: str) -> None:
    put_lease(ws, owner)
    pid, host = owner.split(":")[1], owner.split(":")[0]
    with pytest.raises(LockHeldError, match=rf"held by pid {pid} on host {host} since "
                       rf"{STAMP}, which cannot be checked from here \(.+\); "
                       rf"expires at {STAMP}"):
        run_ops.acquire_lease(ws.store, LOCK_NAME, TTL)
    assert [lock.owner for lock in lock_rows(ws)] == [owner]
    with ws.store.transaction() as conn:  # ... until its lease expires
        conn.execute(update(locks).values(expires_at=now_utc() - timedelta(seconds=1)))
    assert lock_rows(ws)[0].owner == owner
    new = run_ops.acquire_lease(ws.store, LOCK_NAME, TTL)
    assert [lock.owner for lock in lock_rows(ws)] == [new]


def test_status_marks_only_the_runs_that_are_gone(ws: Workspace) -> None:
    dead = own_owner(pid="999999")  # this machine, no such process
    far = "otherhost:4242:cafe0000:12345:0123456789ab"
    alive = run_ops.owner_id()
    now = now_utc()
    with ws.store.transaction() as conn:
        conn.execute(insert(locks), [
            {"name": LOCK_NAME, "owner": alive, "acquired_at": now, "expires_at": now + TTL},
            {"name": "expired", "owner": far, "acquired_at": now - TTL,
             "expires_at": now - timedelta(seconds=1)},
            {"name": "held", "owner": far, "acquired_at": now, "expires_at": now + TTL},
            {"name": "taken", "owner": "otherhost:1:beef", "acquired_at": now,
             "expires_at": now + TTL},
        ])
        # an older tracker's runs, with no owner: one from before every live lease, one
        # started after the main lease was taken, which may be that lease's run
        conn.execute(insert(runs), [
            {"kind": "run", "started_at": now - 2 * TTL, "status": "running", "details": {}},
            {"kind": "run", "started_at": now + timedelta(seconds=1), "status": "running",
             "details": {}}])
    made = {key: run_ops.start_run(ws.store, "run", owner=owner, lease=lease)
            for key, owner, lease in [
                ("dead", dead, None), ("dead_lease", dead, LOCK_NAME),
                ("alive", alive, LOCK_NAME), ("far_collect", far, None),
                ("far_expired", far, "expired"), ("far_held", far, "held"),
                ("far_taken", far, "taken")]}
    report = status(ws, last=20)
    states = {r[0]: (r[4], r[5]) for r in report.run_rows}
    assert {k: states[v][0] for k, v in made.items()} == {
        "dead": "abandoned", "dead_lease": "abandoned", "alive": "running",
        "far_collect": "running",  # another host, no lease: never presumed dead
        "far_expired": "abandoned", "far_held": "running", "far_taken": "abandoned"}
    assert (states[1][0], states[2][0]) == ("abandoned", "running")
    assert "pid 999999 on host" in states[made["dead"]][1]
    assert "no longer running" in states[made["dead"]][1]
    assert "expired at" in states[made["far_expired"]][1]
    assert "taken over" in states[made["far_taken"]][1]
    assert status(ws, last=20).run_rows == report.run_rows  # marked once, stable


def test_status_does_not_write_when_nothing_is_gone(
        tmp_path: Path, db_url: str, fake_http: FakeHttpServer,  # noqa: F811
        workspaces: list[Workspace]) -> None:
    """The check is a read: status must not queue behind a writer on a healthy database."""
    ws = open_ws(write_config(tmp_path, db_url, fake_http), workspaces)
    assert run_once(ws, steps=[]).exit_code == 3  # the source fails: a finished run
    done: list[object] = []
    with ws.store.transaction():  # another process's long write
        reader = threading.Thread(target=lambda: done.append(status(ws)), daemon=True)
        begun = time.monotonic()
        reader.start()
        reader.join(10)
        assert done and time.monotonic() - begun < 5


def test_a_run_marked_abandoned_still_records_its_real_end(ws: Workspace) -> None:
    """Another host's run that lost its lease may only have been slow: when it does
    finish, its own outcome replaces the mark."""
    far = "otherhost:4242:cafe0000:12345:0123456789ab"
    run_id = run_ops.start_run(ws.store, "run", owner=far, lease=LOCK_NAME)
    assert run_ops.reap_abandoned(ws.store) == [
        (run_id, f"its lease {LOCK_NAME!r} was released or taken over by another run "
                 "before it finished")]
    run_ops.finish_run(ws.store, run_id, "ok", "done")
    assert [(r.status, r.summary) for r in run_rows(ws)] == [("ok", "done")]
    assert run_ops.reap_abandoned(ws.store) == []


def test_status_of_a_read_only_database_still_reports(
        ws: Workspace, sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Marking is a courtesy of the reader: a database it may not write is still shown."""
    run_id = run_ops.start_run(ws.store, "collect", owner=own_owner(pid="999999"))
    path = sqlite_url.removeprefix("sqlite:///")
    read_only = Workspace(ws.settings, Store(f"sqlite:///file:{path}?mode=ro&uri=true"))
    try:
        with caplog.at_level("WARNING", logger="tracker.status"):
            report = status(read_only)
    finally:
        read_only.close()
    assert [(r[0], r[4]) for r in report.run_rows] == [(run_id, "running")]
    assert "could not mark abandoned runs" in caplog.text and "readonly" in caplog.text
