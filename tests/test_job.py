"""The main job: exit codes, the run lease (a SIGKILLed holder: see test_lease.py), the
heartbeat against a real local HTTP server, ``status()``, and the real CLI entry
point (``tracker run``, ``tracker collect``, ``tracker status``) in subprocesses."""

from __future__ import annotations

import threading
import time
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from helpers import no_traceback, open_ws, tracker
from httpfixtures import FakeHttpServer, fake_http  # noqa: F401
from sqlalchemy import insert, select
from test_monitoring import HeartbeatServer, heartbeat  # noqa: F401

from tracker.job import LOCK_NAME, run_once
from tracker.records import ALERT_FIELDS, Alert, StepOutcome
from tracker.status import status
from tracker.store import Store
from tracker.store.companies import now_utc
from tracker.store.schema import locks, runs
from tracker.workspace import Workspace

TODAY = date(2026, 11, 20)


def flat_csv(company: str, last: date, days: int = 5, value: int = 1000) -> str:
    """A series with nothing to detect, ending on ``last``."""
    rows = [f"{company},{last - timedelta(days=i)},{value}" for i in range(days)]
    return "company,date,employees\n" + "\n".join(sorted(rows)) + "\n"


def write_config(
    root: Path, db_url: str, *, sources: str | None = None, run: str = "", schedule: str = ""
) -> Path:
    if sources is None:
        sources = '[sources.files]\ntype = "csv_folder"\npath = "drop"\n'
    cfg = root / "config.toml"
    cfg.write_text(
        f'[database]\nurl = "{db_url}"\n\n[schedule]\n{schedule}\n\n[run]\n{run}\n\n{sources}\n',
        encoding="utf-8",
    )
    return cfg


@pytest.fixture
def project(tmp_path: Path) -> Path:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "acme.csv").write_text(flat_csv("Acme", TODAY))
    return tmp_path




def hold_lease(ws: Workspace, owner: str, expires_in: timedelta) -> None:
    now = now_utc()
    with ws.store.transaction() as conn:
        conn.execute(
            insert(locks).values(
                name=LOCK_NAME, owner=owner, acquired_at=now, expires_at=now + expires_in
            )
        )


def run_rows(ws: Workspace) -> list:
    with ws.store.reading() as conn:
        return list(conn.execute(select(runs).order_by(runs.c.id)).all())


def lock_rows(ws: Workspace) -> list:
    with ws.store.reading() as conn:
        return list(conn.execute(select(locks)).all())


# -- exit codes --------------------------------------------------------------------


def test_run_exits_0_and_again_with_nothing_new(
    project: Path, db_url: str, workspaces: list[Workspace]
) -> None:
    ws = open_ws(write_config(project, db_url), workspaces)
    first = run_once(ws, TODAY, steps=[])
    assert first.exit_code == 0 and first.error is None
    assert first.collected is not None and first.collected.inserted == 5
    second = run_once(ws, TODAY, steps=[])
    assert second.exit_code == 0
    assert second.summary() == (
        f"OK: {TODAY}; 0 new observations from 1 source(s); 0 new critical, 0 new warning alert(s)"
    )
    rows = run_rows(ws)
    assert [(r.kind, r.status, r.details["exit_code"]) for r in rows] == [("run", "ok", 0)] * 2
    assert rows[1].summary == second.summary()
    assert lock_rows(ws) == []  # released


def test_unreachable_database_exits_3_and_pings_3(
    project: Path,
    sqlite_url: str,
    heartbeat: HeartbeatServer,  # noqa: F811
    workspaces: list[Workspace],
) -> None:
    db_dir = project / "db"
    cfg = write_config(
        project,
        f"sqlite:///{db_dir / 'tracker.db'}",
        run=f'heartbeat_url = "{heartbeat.url}"',
    )
    ws = open_ws(cfg, workspaces)
    ws.store.engine.dispose()
    db_dir.rename(project / "db-moved")  # the database vanishes under a long-lived process

    result = run_once(ws, TODAY, steps=[])
    assert result.exit_code == 3 and result.run_id is None
    assert "database" in (result.error or "") and "tracker.db" in (result.error or "")
    assert result.summary().startswith("UNKNOWN: run failed: database")
    assert heartbeat.paths() == ["/3"]  # the run never started: no /start


def test_unreachable_postgresql_exits_3(project: Path, workspaces: list[Workspace]) -> None:
    settings = open_ws(write_config(project, f"sqlite:///{project / 'ok.db'}"), workspaces).settings
    ws = Workspace(settings, Store("postgresql+psycopg://postgres@127.0.0.1:1/nope", migrate=False))
    workspaces.append(ws)
    result = run_once(ws, TODAY, steps=[])
    assert result.exit_code == 3
    assert "127.0.0.1:1" in (result.error or "") and "taking the run lock" in (result.error or "")


def test_held_lease_exits_3_naming_the_holder(
    project: Path,
    db_url: str,
    heartbeat: HeartbeatServer,  # noqa: F811
    workspaces: list[Workspace],
) -> None:
    cfg = write_config(project, db_url, run=f'heartbeat_url = "{heartbeat.url}"')
    ws = open_ws(cfg, workspaces)
    hold_lease(ws, "otherhost:4242:cafe", timedelta(minutes=5))
    result = run_once(ws, TODAY, steps=[])
    assert result.exit_code == 3
    assert "holds the lock" in (result.error or "")
    assert "held by pid 4242 on host otherhost since " in (result.error or "")
    assert "; expires at " in (result.error or "")  # another host: waited out, not presumed dead
    assert run_rows(ws) == []  # nothing started
    assert [r.owner for r in lock_rows(ws)] == ["otherhost:4242:cafe"]  # not stolen
    assert heartbeat.pings == []  # the holder reports for itself; /3 would mark it down

    with ws.store.transaction() as conn:  # the other run finishes
        conn.execute(locks.delete())
    assert run_once(ws, TODAY, steps=[]).exit_code == 0
    assert heartbeat.paths() == ["/start", "/0"]


def test_on_lock_wait_waits_for_the_holder_then_runs(
    project: Path, sqlite_url: str, workspaces: list[Workspace]
) -> None:
    cfg = write_config(project, sqlite_url, schedule='on_lock = "wait"\nlock_wait_seconds = 1')
    ws = open_ws(cfg, workspaces)
    hold_lease(ws, "otherhost:1:x", timedelta(minutes=5))
    start = time.monotonic()
    gave_up = run_once(ws, TODAY, steps=[])
    assert gave_up.exit_code == 3 and time.monotonic() - start >= 0.9  # waited, then gave up

    def release() -> None:
        time.sleep(0.3)
        with ws.store.transaction() as conn:
            conn.execute(locks.delete())

    releaser = threading.Thread(target=release)
    releaser.start()
    waited = run_once(ws, TODAY, steps=[])
    releaser.join()
    assert waited.exit_code == 0 and waited.collected is not None
    assert waited.collected.inserted == 5


def test_summary_counts_failed_companies_beside_failed_sources(
    project: Path,
    sqlite_url: str,
    fake_http: FakeHttpServer,  # noqa: F811
    workspaces: list[Workspace],
) -> None:
    """A source that answers for some companies only is "ok" or "partial", not "failed":
    without the company count, cron's line would hide that two companies got no data."""
    fake_http.add_company("acme", 1000)  # globex and initech are unknown to it: 404
    sources = (
        '[sources.files]\ntype = "csv_folder"\npath = "drop"\n'
        '[sources.gone]\ntype = "csv_folder"\npath = "missing"\n'
        f'[sources.api]\ntype = "http_json"\n'
        f'url = "{fake_http.url}/api/companies/{{company}}"\n'
        'value_path = "data.employee_count"\nretries = 0\n'
        '[companies.acme]\nname = "Acme"\n[companies.globex]\nname = "Globex"\n'
        '[companies.initech]\nname = "Initech"\n'
    )
    ws = open_ws(write_config(project, sqlite_url, sources=sources), workspaces)
    result = run_once(ws, TODAY, steps=[])
    assert result.exit_code == 1, result.summary()  # a failed source: at least WARNING
    assert result.summary() == (
        f"WARNING: {TODAY}; 6 new observations from 3 source(s), 1 failed; "
        "2 company fetches failed; 0 new critical, 0 new warning alert(s)"
    )
    assert run_rows(ws)[0].summary == result.summary()

    fake_http.add_company("globex", 500)  # the next day only initech fails
    one = run_once(ws, TODAY + timedelta(days=1), steps=[])
    assert "3 source(s), 1 failed; 1 company fetch failed; 0 new critical" in one.summary()


def _alert(fingerprint: str, severity: str, **extra: object) -> dict[str, object]:
    return {"fingerprint": fingerprint, "company": "acme", "metric": "employees",
            "source": "files", "date": TODAY, "detected_on": TODAY, "kind": "drop",
            "change_pct": -30.0, "score": 12.0, "severity": severity, **extra}


def test_steps_may_hand_over_rows_or_records_and_backfill_is_not_counted(
    project: Path, sqlite_url: str, workspaces: list[Workspace]
) -> None:
    """The detection step still returns rows (dicts, with DataFrame NaNs and extra
    columns); the job turns them into Alert records, and only fresh ones set the code."""
    ws = open_ws(write_config(project, sqlite_url), workspaces)

    def rows_step(ws: Workspace, day: date, run_id: int) -> list[dict[str, object]]:
        return [_alert("f1", "warning", fresh=True, event_id=float("nan"), series=3),
                _alert("f2", "critical", fresh=False)]

    def records_step(ws: Workspace, day: date, run_id: int) -> StepOutcome:
        return StepOutcome(new_alerts=[Alert.from_mapping(_alert("f3", "info"))],
                           notes=["records step ran"], details={"records": 1})

    result = run_once(ws, TODAY, steps=[rows_step, records_step])
    assert all(isinstance(a, Alert) for a in result.new_alerts)
    assert [a.fingerprint for a in result.new_alerts] == ["f1", "f2", "f3"]
    assert result.new_alerts[0].event_id is None  # NaN from a DataFrame is no event
    assert [a.fingerprint for a in result.fresh_alerts] == ["f1", "f3"]
    assert result.exit_code == 1  # the critical one is backfill
    assert result.summary().endswith(
        "0 new critical, 1 new warning alert(s); 1 alert(s) about older history stored "
        "(tracker alerts); records step ran")
    assert run_rows(ws)[0].details == {"records": 1, "exit_code": 1}


def test_alert_record_from_a_mapping() -> None:
    row = _alert("f1", "warning", id=4, company_name=None, confirmed_on=pd.NaT,
                 value_before=float("nan"), created_at="ignored", series_id=9)
    alert = Alert.from_mapping(row)
    assert set(ALERT_FIELDS) <= set(alert.as_dict())
    assert (alert.id, alert.confirmed_on, alert.value_before, alert.status) == (4, None, None, None)
    assert alert.fresh is True and "created_at" not in alert.as_dict()
    assert Alert.from_mapping(alert.as_dict()) == alert
    with pytest.raises(ValueError, match="an alert needs severity"):
        Alert.from_mapping({k: v for k, v in row.items() if k != "severity"})


def test_a_crashing_step_fails_the_run_instead_of_recording_ok(
    project: Path,
    sqlite_url: str,
    heartbeat: HeartbeatServer,  # noqa: F811
    workspaces: list[Workspace],
) -> None:
    cfg = write_config(project, sqlite_url, run=f'heartbeat_url = "{heartbeat.url}"')
    ws = open_ws(cfg, workspaces)

    def broken_step(ws: Workspace, day: date, run_id: int) -> list[dict]:
        raise ZeroDivisionError("a bug")

    result = run_once(ws, TODAY, steps=[broken_step])
    assert result.exit_code == 3 and "ZeroDivisionError" in (result.error or "")
    (row,) = run_rows(ws)
    assert (row.status, row.details["exit_code"]) == ("failed", 3)
    assert lock_rows(ws) == []
    assert heartbeat.paths() == ["/start", "/3"]


def test_database_lost_mid_run_is_reported_not_raised(
    project: Path,
    heartbeat: HeartbeatServer,  # noqa: F811
    workspaces: list[Workspace],
) -> None:
    db_dir = project / "db"
    cfg = write_config(
        project, f"sqlite:///{db_dir / 'tracker.db'}", run=f'heartbeat_url = "{heartbeat.url}"'
    )
    ws = open_ws(cfg, workspaces)

    def pull_the_plug(ws: Workspace, day: date, run_id: int) -> list[dict]:
        ws.store.engine.dispose()
        db_dir.rename(project / "db-gone")
        return []

    result = run_once(ws, TODAY, steps=[pull_the_plug])
    assert result.exit_code == 3 and "recording a run" in (result.error or "")
    assert heartbeat.paths() == ["/start", "/3"]


def test_two_lease_holders_in_one_process_have_different_owners(sqlite_url: str) -> None:
    from tracker.errors import LockHeldError
    from tracker.store import runs as run_ops

    with Store(sqlite_url) as store:
        first = run_ops.acquire_lease(store, "x", timedelta(minutes=1))
        with pytest.raises(LockHeldError, match="holds the lock 'x'"):
            run_ops.acquire_lease(store, "x", timedelta(minutes=1))
        run_ops.release_lease(store, "x", run_ops.owner_id())  # another caller, same process
        assert run_ops.lease_holder(store, "x") is not None  # ... cannot release it
        run_ops.release_lease(store, "x", first)
        assert run_ops.lease_holder(store, "x") is None


# -- status ------------------------------------------------------------------------


def test_status_lists_stale_companies_and_failing_sources(
    project: Path, sqlite_url: str, workspaces: list[Workspace]
) -> None:
    (project / "drop" / "globex.csv").write_text(flat_csv("Globex", TODAY - timedelta(days=10)))
    sources = (
        '[sources.files]\ntype = "csv_folder"\npath = "drop"\n'
        '[sources.gone]\ntype = "csv_folder"\npath = "missing"\n'
        '[companies.initech]\nname = "Initech"\n'
    )
    ws = open_ws(write_config(project, sqlite_url, sources=sources), workspaces)
    result = run_once(ws, TODAY, steps=[])
    assert result.exit_code == 1 and "2 source(s), 1 failed;" in result.summary()

    report = status(ws, today=TODAY)
    assert report.runs["id"].tolist() == [result.run_id]
    by_source = report.sources.set_index("source")
    assert by_source.loc["gone", "status"] == "failed"
    assert "does not exist" in by_source.loc["gone", "reason"]
    assert by_source.loc["files", "status"] == "ok"
    stale = report.stale.set_index("id")
    assert sorted(stale.index) == ["globex", "initech"]  # acme is fresh
    assert stale.loc["globex", "days_since"] == 10
    assert stale.loc["initech", "days_since"] is pd.NA  # never observed
    assert str(stale["days_since"].dtype) == "Int64"  # printed as 10, not 10.0


def test_every_source_failing_is_a_failed_run(
    project: Path,
    sqlite_url: str,
    heartbeat: HeartbeatServer,  # noqa: F811
    workspaces: list[Workspace],
) -> None:
    sources = '[sources.gone]\ntype = "csv_folder"\npath = "missing"\n'
    cfg = write_config(project, sqlite_url, sources=sources,
                       run=f'heartbeat_url = "{heartbeat.url}"')
    ws = open_ws(cfg, workspaces)
    result = run_once(ws, TODAY, steps=[])
    assert result.exit_code == 3
    assert result.summary().startswith("UNKNOWN: run failed: every source failed (gone: folder")
    assert heartbeat.paths() == ["/start", "/3"]
    assert run_rows(ws)[0].status == "failed"


# -- the real CLI ------------------------------------------------------------------


def test_cli_run_collect_status(project: Path, sqlite_url: str) -> None:
    (project / "drop" / "acme.csv").write_text(flat_csv("Acme", date.today(), days=10))
    sources = (
        '[sources.files]\ntype = "csv_folder"\npath = "drop"\n'
        '[sources.gone]\ntype = "csv_folder"\npath = "missing"\n'
    )
    cfg = str(write_config(project, sqlite_url, sources=sources))

    run = tracker("--config", cfg, "run", cwd=project)
    no_traceback(run)
    assert run.returncode == 1, run.stderr  # a source failed
    lines = run.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("WARNING: ")
    assert "10 new observations from 2 source(s), 1 failed; 0 new critical" in lines[0]

    coll = tracker("--config", cfg, "collect", cwd=project)
    no_traceback(coll)
    assert coll.returncode == 3  # a configured source failed
    assert "gone: failed" in coll.stdout and "does not exist" in coll.stdout
    assert "files: ok, 0 observations (0 new)" in coll.stdout

    st = tracker("--config", cfg, "status", cwd=project)
    no_traceback(st)
    assert st.returncode == 2  # the collect that exited 3 is the last run: failed
    assert st.stdout.startswith("CRITICAL: last collect (run 2, ")
    assert "collect" in st.stdout and "run" in st.stdout
    sources_part = st.stdout.split("Sources in the last run:")[1].split("Stale companies")[0]
    assert "gone" in sources_part and "failed" in sources_part


def test_cli_run_lock_held_and_database_down_exit_3(
    project: Path, sqlite_url: str, workspaces: list[Workspace]
) -> None:
    cfg = write_config(project, sqlite_url)
    ws = open_ws(cfg, workspaces)
    hold_lease(ws, "otherhost:4242:cafe", timedelta(minutes=5))
    held = tracker("--config", str(cfg), "run", cwd=project)
    no_traceback(held)
    assert held.returncode == 3
    assert held.stdout.splitlines() == [held.stdout.strip()]
    assert held.stdout.startswith("UNKNOWN: run failed: another run holds the lock")

    down = tracker(
        "--config", str(cfg), "--db", "postgresql+psycopg://u@127.0.0.1:1/x", "run", cwd=project
    )
    no_traceback(down)
    assert down.returncode == 3
    assert "127.0.0.1:1" in down.stdout + down.stderr


def test_run_with_unreachable_database_says_unknown_on_stdout(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[database]\nurl = "postgresql+psycopg://u@127.0.0.1:1/db?connect_timeout=2"\n'
        '[sources.files]\ntype = "csv_folder"\npath = "drop"\n'
    )
    proc = tracker("run", cwd=tmp_path, timeout=60)
    assert proc.returncode == 3
    assert proc.stdout.startswith("UNKNOWN: run failed: database")
    assert "Traceback" not in proc.stderr
