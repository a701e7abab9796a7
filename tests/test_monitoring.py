"""Monitoring conventions (issue 10, items 1 and 6): a run that did nothing is not OK,
read commands never create a database, ``tracker status`` is a Nagios check,
healthchecks.io-style heartbeats against a real local HTTP server, ``--version``.

Everything goes through real SQLite files (and PostgreSQL where it differs), a real
HTTP server on 127.0.0.1 and the real CLI, in-process (``tracker.cli.main``) or in a
subprocess where the process boundary is the point (stdout vs stderr, exit codes).
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from helpers import ROOT, open_ws, tracker
from sqlalchemy import create_engine, inspect, select, update

from tracker.cli import main
from tracker.job import run_once
from tracker.status import status
from tracker.store.schema import runs
from tracker.workspace import Workspace

TODAY = date(2026, 11, 20)
SECRET = "6f1c2a9e-hc-secret-3b7d"  # stands for the check's UUID in the ping URL


# -- a real heartbeat receiver ------------------------------------------------------


@dataclass(frozen=True)
class Ping:
    method: str
    path: str
    query: dict[str, list[str]]
    body: str


class HeartbeatServer:
    """A healthchecks.io stand-in on 127.0.0.1: records every ping (method, path,
    query, body) and answers ``status`` (200 "OK" unless a test says otherwise)."""

    def __init__(self) -> None:
        self.pings: list[Ping] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                split = urlsplit(self.path)
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size).decode("utf-8") if size else ""
                receiver.pings.append(Ping(self.command, split.path, parse_qs(split.query),
                                           body))
                payload = b"OK" if receiver.status < 400 else b"not found"
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_HEAD = _answer

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def base(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        """The check's ping URL, with its secret."""
        return f"{self.base}/ping/{SECRET}"

    def paths(self) -> list[str]:
        return [p.path.removeprefix(f"/ping/{SECRET}") for p in self.pings]

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def heartbeat() -> Iterator[HeartbeatServer]:
    server = HeartbeatServer()
    try:
        yield server
    finally:
        server.stop()


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- projects ------------------------------------------------------------------------


def flat_csv(company: str, last: date, days: int = 5, value: int = 1000) -> str:
    rows = [f"{company},{last - timedelta(days=i)},{value}" for i in range(days)]
    return "company,date,employees\n" + "\n".join(sorted(rows)) + "\n"


FILES = '[sources.files]\ntype = "csv_folder"\npath = "drop"\n'
GONE = '[sources.gone]\ntype = "csv_folder"\npath = "missing"\n'


def project(root: Path, db_url: str | None, sources: str = FILES, run: str = "",
            last: date = TODAY) -> Path:
    """A folder with config.toml and a drop folder of one quiet company."""
    (root / "drop").mkdir(exist_ok=True)
    (root / "drop" / "acme.csv").write_text(flat_csv("Acme", last))
    database = f'[database]\nurl = "{db_url}"\n\n' if db_url else ""
    cfg = root / "config.toml"
    cfg.write_text(f"{database}[run]\n{run}\n\n{sources}\n", encoding="utf-8")
    return cfg


def run_records(ws: Workspace) -> list[Any]:
    with ws.store.reading() as conn:
        return list(conn.execute(select(runs).order_by(runs.c.id)).all())


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# -- heartbeats ------------------------------------------------------------------------


def test_a_run_pings_start_then_its_exit_code_with_one_run_id_and_the_summary(
    tmp_path: Path, db_url: str, heartbeat: HeartbeatServer, workspaces: list[Workspace]
) -> None:
    ws = open_ws(project(tmp_path, db_url, run=f'heartbeat_url = "{heartbeat.url}"'),
                 workspaces)
    result = run_once(ws, TODAY, steps=[])
    assert result.exit_code == 0, result.summary()
    assert heartbeat.paths() == ["/start", "/0"]
    start, end = heartbeat.pings
    assert start.query["rid"] == end.query["rid"]  # healthchecks pairs them by run id
    assert re.fullmatch(r"[0-9a-f-]{36}", start.query["rid"][0])
    assert end.method == "POST" and end.body == result.summary()  # kept in its log
    assert "heartbeat" not in result.summary()  # nothing went wrong, nothing said


def test_a_ping_url_with_a_query_keeps_it(
    tmp_path: Path, sqlite_url: str, heartbeat: HeartbeatServer, workspaces: list[Workspace]
) -> None:
    """A slug URL (``/ping/<key>/<slug>?create=1``) keeps its query beside ``rid``."""
    url = f"{heartbeat.url}/?create=1"
    ws = open_ws(project(tmp_path, sqlite_url, run=f'heartbeat_url = "{url}"'), workspaces)
    run_once(ws, TODAY, steps=[])
    assert heartbeat.paths() == ["/start", "/0"]
    assert all(p.query["create"] == ["1"] and "rid" in p.query for p in heartbeat.pings)


@pytest.mark.parametrize("answer", [404, 500])
def test_a_heartbeat_that_answers_an_error_is_reported_without_failing_the_run(
    tmp_path: Path, sqlite_url: str, heartbeat: HeartbeatServer, workspaces: list[Workspace],
    caplog: pytest.LogCaptureFixture, answer: int,
) -> None:
    heartbeat.status = answer
    ws = open_ws(project(tmp_path, sqlite_url, run=f'heartbeat_url = "{heartbeat.url}"'),
                 workspaces)
    with caplog.at_level(logging.WARNING, logger="tracker.job"):
        result = run_once(ws, TODAY, steps=[])
    assert result.exit_code == 0
    assert heartbeat.paths() == ["/start", "/0"]  # both tried
    line = result.summary()
    assert line.startswith("OK: ")
    assert f"heartbeat /start to {heartbeat.base} answered HTTP {answer}" in line
    assert f"heartbeat /0 to {heartbeat.base} answered HTTP {answer}" in line
    (record,) = run_records(ws)
    assert record.status == "ok" and record.summary == line  # the record says it too
    logged = [r.getMessage() for r in caplog.records]
    assert sum(f"answered HTTP {answer}" in m for m in logged) == 2
    assert SECRET not in line + "".join(logged) + str(record.details)


def test_an_unreachable_heartbeat_is_reported_and_never_shows_its_url(
    tmp_path: Path, sqlite_url: str, workspaces: list[Workspace],
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}/ping/{SECRET}"
    ws = open_ws(project(tmp_path, sqlite_url, run=f'heartbeat_url = "{url}"'), workspaces)
    with caplog.at_level(logging.WARNING):
        result = run_once(ws, TODAY, steps=[])
    assert result.exit_code == 0
    line = result.summary()
    assert f"heartbeat /start to http://127.0.0.1:{port} could not be reached" in line
    assert f"heartbeat /0 to http://127.0.0.1:{port} could not be reached" in line
    assert SECRET not in line + caplog.text


def test_a_failed_source_makes_the_run_a_warning_and_pings_1(
    tmp_path: Path, sqlite_url: str, heartbeat: HeartbeatServer, workspaces: list[Workspace]
) -> None:
    cfg = project(tmp_path, sqlite_url, sources=FILES + GONE,
                  run=f'heartbeat_url = "{heartbeat.url}"')
    ws = open_ws(cfg, workspaces)
    result = run_once(ws, TODAY, steps=[])
    assert result.exit_code == 1
    assert result.summary().startswith(f"WARNING: {TODAY}; 5 new observations from 2 "
                                       "source(s), 1 failed;")
    assert heartbeat.paths() == ["/start", "/1"]
    (record,) = run_records(ws)
    assert (record.status, record.details["exit_code"]) == ("ok", 1)


def test_a_run_of_disabled_sources_fails_pings_3_and_creates_nothing(
    tmp_path: Path, heartbeat: HeartbeatServer, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project(tmp_path, None, sources=FILES + "enabled = false\n",
            run=f'heartbeat_url = "{heartbeat.url}"')
    monkeypatch.chdir(tmp_path)
    assert main(["run"]) == 3
    assert capsys.readouterr().out == (
        "UNKNOWN: run failed: nothing to collect: every source is disabled (enabled = false) "
        f"in {tmp_path / 'config.toml'}: files\n")
    assert heartbeat.paths() == ["/3"]  # no /start: the run did not start
    assert not (tmp_path / "data").exists() and not (tmp_path / "reports").exists()


def test_the_scheduler_refuses_to_serve_without_a_source(
    tmp_path: Path, sqlite_url: str, workspaces: list[Workspace]
) -> None:
    from tracker.errors import ConfigError
    from tracker.schedule import serve

    ws = open_ws(project(tmp_path, sqlite_url, sources=""), workspaces)
    with pytest.raises(ConfigError, match="nothing to collect: no source is configured in "):
        serve(ws, stop_event=threading.Event())
    assert run_records(ws) == []


def test_a_library_run_without_sources_is_a_detection_run(
    tmp_path: Path, sqlite_url: str, heartbeat: HeartbeatServer, workspaces: list[Workspace]
) -> None:
    """Notebooks run the job over imported data; only the commands refuse it."""
    ws = open_ws(project(tmp_path, sqlite_url, sources="",
                         run=f'heartbeat_url = "{heartbeat.url}"'), workspaces)
    result = run_once(ws, TODAY, steps=[])
    assert result.exit_code == 0 and "from 0 source(s)" in result.summary()
    assert heartbeat.paths() == ["/start", "/0"]


# -- a run or collect of nothing, on the real CLI ---------------------------------------


def test_cli_run_in_a_folder_without_config_fails_and_creates_nothing(tmp_path: Path) -> None:
    proc = tracker("run", cwd=tmp_path)
    assert proc.returncode == 3
    assert proc.stdout.splitlines() == [
        "UNKNOWN: run failed: nothing to collect: no source is configured (no config.toml "
        f"found in {tmp_path}; pass --config PATH); add a [sources.NAME] table "
        "(see README, Configuration)"]
    assert "Traceback" not in proc.stderr
    assert tree(tmp_path) == set()  # no data/tracker.db, no reports/


def test_cli_run_with_no_source_pings_3_and_collect_says_why(
    tmp_path: Path, heartbeat: HeartbeatServer
) -> None:
    (tmp_path / "config.toml").write_text(f'[run]\nheartbeat_url = "{heartbeat.url}"\n')
    before = tree(tmp_path)
    proc = tracker("run", cwd=tmp_path)
    assert proc.returncode == 3
    assert proc.stdout.startswith("UNKNOWN: run failed: nothing to collect: no source is "
                                  f"configured in {tmp_path / 'config.toml'}")
    assert len(proc.stdout.splitlines()) == 1
    assert heartbeat.paths() == ["/3"]
    assert heartbeat.pings[0].body == proc.stdout.strip()

    coll = tracker("collect", cwd=tmp_path)
    assert coll.returncode == 3 and coll.stdout == ""
    assert coll.stderr.splitlines() == [
        f"error: nothing to collect: no source is configured in {tmp_path / 'config.toml'}; "
        "add a [sources.NAME] table (see README, Configuration)"]
    assert tree(tmp_path) == before  # nothing created by either
    assert heartbeat.paths() == ["/3"]  # collect has no heartbeat


def test_collect_of_a_disabled_source_by_name_is_an_error(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    project(tmp_path, None, sources=FILES + GONE + "enabled = false\n")
    monkeypatch.chdir(tmp_path)
    assert main(["collect", "--source", "gone"]) == 3
    assert "source(s) gone are disabled (enabled = false)" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_a_collect_that_exits_3_is_recorded_as_failed(
    tmp_path: Path, sqlite_url: str, workspaces: list[Workspace],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = project(tmp_path, sqlite_url, sources=FILES + GONE)
    monkeypatch.chdir(tmp_path)
    assert main(["collect", "--day", str(TODAY)]) == 3
    ws = open_ws(cfg, workspaces)
    (record,) = run_records(ws)
    assert (record.kind, record.status, record.details["exit_code"]) == ("collect", "failed", 3)
    assert main(["collect", "--day", str(TODAY), "--source", "files"]) == 0
    assert [(r.status, r.details["exit_code"]) for r in run_records(ws)] == [
        ("failed", 3), ("ok", 0)]


# -- read commands never create a database -------------------------------------------------

READ_COMMANDS = [("alerts",), ("companies",), ("show", "apple"), ("export",), ("status",),
                 ("plot", "apple"), ("replay",), ("report",), ("review", "1")]


@pytest.mark.parametrize("args", READ_COMMANDS, ids=[a[0] for a in READ_COMMANDS])
def test_a_read_command_against_a_missing_database_is_an_error_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["--db", "sqlite:///data/trackr.db", *args])
    out, err = capsys.readouterr()
    assert code == 3
    assert err.splitlines() == [
        f"error: no database file {tmp_path / 'data' / 'trackr.db'} (from --db); nothing was "
        "created: a database is created by 'tracker import', 'tracker collect' or "
        "'tracker run'"]
    assert tree(tmp_path) == set()  # neither the file nor its folder
    if args[0] == "status":
        assert out.startswith("UNKNOWN: no database file ")


def test_the_missing_database_error_says_where_the_url_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["alerts"]) == 3
    assert ("(the default: no config.toml in " f"{tmp_path}; pass --config PATH or --db URL)"
            ) in capsys.readouterr().err
    (tmp_path / "config.toml").write_text('[database]\nurl = "sqlite:///x/t.db"\n')
    assert main(["alerts"]) == 3
    assert f"from [database] url in {tmp_path / 'config.toml'}" in capsys.readouterr().err
    monkeypatch.setenv("TRACKER_DATABASE_URL", "sqlite:///y.db")
    assert main(["alerts"]) == 3
    assert f"no database file {tmp_path / 'y.db'} (from TRACKER_DATABASE_URL)" in (
        capsys.readouterr().err)
    assert tree(tmp_path) == {"config.toml"}


def test_writing_commands_still_create_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project(tmp_path, None)
    monkeypatch.chdir(tmp_path)
    assert main(["collect", "--day", str(TODAY)]) == 0
    assert (tmp_path / "data" / "tracker.db").is_file()
    capsys.readouterr()
    assert main(["companies", "--format", "csv"]) == 0  # and read commands then read it
    assert "acme,Acme," in capsys.readouterr().out


def test_a_read_command_against_a_postgresql_database_without_tracker_tables(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An existing but empty database (a DBA made it; a typo'd name on a shared server
    fails to connect anyway) is not turned into a tracker store by a listing."""
    monkeypatch.chdir(tmp_path)
    assert main(["--db", pg_url, "companies"]) == 3
    err = capsys.readouterr().err
    assert "holds no tracker data (no tracker tables) (from --db)" in err
    engine = create_engine(pg_url)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


# -- tracker status as a Nagios check -------------------------------------------------------


def _age_runs(ws: Workspace, hours: float) -> None:
    """Move every recorded run ``hours`` into the past."""
    with ws.store.transaction() as conn:
        for row in conn.execute(select(runs.c.id, runs.c.started_at, runs.c.finished_at)).all():
            conn.execute(update(runs).where(runs.c.id == row.id).values(
                started_at=row.started_at - timedelta(hours=hours),
                finished_at=row.finished_at - timedelta(hours=hours)))


def test_status_verdicts_follow_the_runs_and_the_data(
    tmp_path: Path, db_url: str, workspaces: list[Workspace]
) -> None:
    cfg = project(tmp_path, db_url, sources=FILES + GONE)
    ws = open_ws(cfg, workspaces)
    never = status(ws, today=TODAY)
    assert never.exit_code == 2
    assert never.headline.startswith("CRITICAL: no run recorded")

    run_once(ws, TODAY, steps=[])  # gone fails
    warn = status(ws, today=TODAY)
    assert warn.exit_code == 1
    assert warn.headline.startswith("WARNING: 1 source(s) failed in run 1: gone")

    (tmp_path / "config.toml").write_text(cfg.read_text().replace(GONE, ""))
    ws = open_ws(cfg, workspaces)
    run_once(ws, TODAY, steps=[])
    ok = status(ws, today=TODAY)
    assert ok.exit_code == 0, ok.headline
    assert ok.headline.startswith("OK: last run (run 2) ok, finished ")

    later = status(ws, today=TODAY + timedelta(days=5))  # acme's last day is TODAY
    assert later.exit_code == 1
    assert later.headline == ("WARNING: 1 stale company (no observation for 3+ days): "
                              "acme (5 days)")

    _age_runs(ws, 40)
    old = status(ws, today=TODAY)
    assert old.exit_code == 2
    assert old.headline.startswith("CRITICAL: no successful run for more than 36 hours "
                                   "(last: run 2, finished ")
    assert status(ws, today=TODAY, max_age_hours=48).exit_code == 0

    def crash(ws: Workspace, day: date, run_id: int) -> list[dict[str, Any]]:
        raise RuntimeError("a bug")

    run_once(ws, TODAY, steps=[crash])
    failed = status(ws, today=TODAY)
    assert failed.exit_code == 2
    assert re.match(r"CRITICAL: last run \(run 3, started .* UTC, \d+ min ago\) failed: "
                    r"unexpected error: RuntimeError\('a bug'\)", failed.headline), failed.headline


def test_cli_status_exit_codes_and_first_line(tmp_path: Path, sqlite_url: str) -> None:
    cfg = str(project(tmp_path, sqlite_url, sources=FILES + GONE, last=date.today()))
    missing = tracker("--config", cfg, "status", cwd=tmp_path)
    assert missing.returncode == 3
    assert missing.stdout.splitlines()[0].startswith("UNKNOWN: no database file ")
    assert missing.stderr.startswith("error: no database file ")
    assert not (tmp_path / "tracker.db").exists()

    assert tracker("--config", cfg, "collect", cwd=tmp_path).returncode == 3
    crit = tracker("--config", cfg, "status", cwd=tmp_path)
    assert crit.returncode == 2, crit.stdout + crit.stderr
    first = crit.stdout.splitlines()[0]
    assert first.startswith("CRITICAL: last collect (run 1, started ")
    assert "failed: files: ok (5 ok, 0 failed, 5 new); gone: failed" in first
    assert "Recent runs:" in crit.stdout  # the tables follow the verdict line

    run = tracker("--config", cfg, "run", cwd=tmp_path)
    assert run.returncode == 1 and run.stdout.startswith("WARNING: ")
    warn = tracker("--config", cfg, "status", cwd=tmp_path)
    assert warn.returncode == 1
    assert warn.stdout.startswith("WARNING: 1 source(s) failed in run 2: gone\n")

    old = tracker("--config", cfg, "status", "--max-age", "0", cwd=tmp_path)
    assert old.returncode == 2
    assert old.stdout.startswith("CRITICAL: no successful run for more than 0 hours")
    bad = tracker("--config", cfg, "status", "--max-age", "-1", cwd=tmp_path)
    assert bad.returncode == 3 and "Traceback" not in bad.stderr


def test_status_judges_the_last_finished_run_not_a_running_one(
    tmp_path: Path, sqlite_url: str, workspaces: list[Workspace]
) -> None:
    from tracker.store import runs as run_ops

    ws = open_ws(project(tmp_path, sqlite_url), workspaces)
    run_once(ws, TODAY, steps=[])
    run_ops.start_run(ws.store, "run")  # this process: alive, so not abandoned
    report = status(ws, today=TODAY)
    assert report.exit_code == 0 and "run 1" in report.headline
    assert [r[0] for r in report.run_rows] == [2, 1]
    assert [r[0] for r in report.source_rows] == [1]  # the judged run's sources


# -- --version ----------------------------------------------------------------------------


def test_version_is_the_distribution_version(tmp_path: Path) -> None:
    proc = tracker("--version", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == ""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert proc.stdout == f"tracker {declared}\n"
    assert tree(tmp_path) == set()


def test_status_timestamps_are_naive_utc_like_the_store(
    tmp_path: Path, sqlite_url: str, workspaces: list[Workspace]
) -> None:
    """``now`` given explicitly moves the verdict the way the clock would."""
    ws = open_ws(project(tmp_path, sqlite_url), workspaces)
    run_once(ws, TODAY, steps=[])
    finished = run_records(ws)[0].finished_at
    assert status(ws, today=TODAY, now=finished + timedelta(hours=35)).exit_code == 0
    at = finished + timedelta(hours=37)
    assert isinstance(at, datetime)
    late = status(ws, today=TODAY, now=at)
    assert late.exit_code == 2 and "37.0 h ago" in late.headline
