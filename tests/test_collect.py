"""The collector with real sources: a csv_folder over real files, http_json against a
real local HTTP server, plugins through the real entry-point registry, and a
collection SIGKILLed part-way in a subprocess. Idempotence runs on SQLite and
PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from helpers import open_ws
from httpfixtures import FakeHttpServer, fake_http  # noqa: F401
from sqlalchemy import func, select

from tracker.collect import CollectResult, collect
from tracker.records import CompanyRef, Failure, Observation
from tracker.sources.base import Source
from tracker.sources.registry import GROUP, available_sources
from tracker.store.schema import observations, run_sources, runs, source_state
from tracker.workspace import Workspace

DAY = date(2026, 11, 20)
ROWS_A = ("company,date,employees\n"
          "Acme,2026-11-18,1000\nAcme,2026-11-19,1002\nAcme,2026-11-20,1001\n")


def write_config(root: Path, db_url: str, sources: str, extra: str = "") -> Path:
    cfg = root / "config.toml"
    cfg.write_text(f'[database]\nurl = "{db_url}"\n\n{extra}\n{sources}\n', encoding="utf-8")
    return cfg


def folder_source(name: str = "files", path: str = "drop") -> str:
    return f'[sources.{name}]\ntype = "csv_folder"\npath = "{path}"\n'


def http_source(url: str, name: str = "api", timeout: float = 2.0) -> str:
    return (f'[sources.{name}]\ntype = "http_json"\n'
            f'url = "{url}/api/companies/{{company}}?date={{day}}"\n'
            f'value_path = "data.employee_count"\ndate_path = "data.as_of"\n'
            f"timeout = {timeout}\nretries = 0\n")


COMPANIES = "".join(f'[companies.{c}]\nname = "{c.title()}"\n'
                    for c in ("acme", "globex", "umbrella"))




def outcome(result: CollectResult, source: str):  # type: ignore[no-untyped-def]
    return next(o for o in result.outcomes if o.source == source)


def count_obs(ws: Workspace) -> int:
    with ws.store.reading() as conn:
        return int(conn.execute(select(func.count()).select_from(observations)).scalar_one())


def distinct_obs(ws: Workspace) -> int:
    """Distinct (series, source, day, value): a second copy of one fact would not add here."""
    q = select(observations.c.series_id, observations.c.source_id, observations.c.as_of,
               observations.c.value).distinct().subquery()
    with ws.store.reading() as conn:
        return int(conn.execute(select(func.count()).select_from(q)).scalar_one())


def state_keys(ws: Workspace, source: str) -> set[str]:
    with ws.store.reading() as conn:
        return set(conn.execute(select(source_state.c.key)
                                .where(source_state.c.source == source)).scalars())


# -- csv_folder --------------------------------------------------------------------


def test_csv_folder_imports_each_file_version_once(
        tmp_path: Path, db_url: str, workspaces: list[Workspace]) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "a.csv").write_text(ROWS_A)
    ws = open_ws(write_config(tmp_path, db_url, folder_source()), workspaces)

    first = outcome(collect(ws, DAY), "files")
    assert (first.status, first.ok, first.inserted) == ("ok", 3, 3)
    assert state_keys(ws, "files") == {"a.csv"}

    again = outcome(collect(ws, DAY), "files")
    assert (again.status, again.ok, again.inserted) == ("ok", 0, 0)  # not even read
    os.utime(drop / "a.csv", (time.time() + 60, time.time() + 60))  # touched, same content
    assert outcome(collect(ws, DAY), "files").ok == 0

    (drop / "b.csv").write_text("company,date,employees\nGlobex,2026-11-20,500\n")
    third = outcome(collect(ws, DAY), "files")
    assert (third.ok, third.inserted) == (1, 1)
    assert count_obs(ws) == distinct_obs(ws) == 4
    assert ws.export()["company"].tolist().count("acme") == 3

    with ws.store.reading() as conn:
        rows = conn.execute(select(runs.c.kind, runs.c.status)).all()
    assert [tuple(r) for r in rows] == [("collect", "ok")] * 4


def test_changed_file_is_read_again_and_changes_become_revisions(
        tmp_path: Path, sqlite_url: str, workspaces: list[Workspace]) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "a.csv").write_text(ROWS_A)
    ws = open_ws(write_config(tmp_path, sqlite_url, folder_source()), workspaces)
    collect(ws, DAY)
    (drop / "a.csv").write_text(ROWS_A.replace("1002", "1200"))

    changed = outcome(collect(ws, DAY), "files")
    assert (changed.ok, changed.inserted) == (3, 1)  # read again, one value changed
    history = ws.export(revisions=True)
    day19 = history[history["as_of"].astype(str).str.startswith("2026-11-19")]
    assert sorted(day19["value"]) == [1002, 1200]
    latest = ws.export()
    assert latest.loc[latest["as_of"].astype(str).str.startswith("2026-11-19"),
                      "value"].tolist() == [1200]


def test_bad_row_fails_the_file_naming_file_and_line_until_fixed(
        tmp_path: Path, sqlite_url: str, workspaces: list[Workspace]) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "a.csv").write_text(ROWS_A)
    bad = drop / "bad.csv"
    bad.write_text("company,date,employees\nGlobex,2026-11-19,500\nGlobex,2026-11-20,lots\n")
    ws = open_ws(write_config(tmp_path, sqlite_url, folder_source()), workspaces)

    result = collect(ws, DAY)
    files = outcome(result, "files")
    assert files.status == "partial" and files.inserted == 3
    assert len(files.failures) == 1
    assert f"{bad}:3" in files.failures[0].reason and "lots" in files.failures[0].reason
    assert state_keys(ws, "files") == {"a.csv"}  # bad.csv is not marked imported
    with ws.store.reading() as conn:
        stored = conn.execute(select(run_sources.c.status, run_sources.c.failed,
                                     run_sources.c.failures)
                              .where(run_sources.c.run_id == result.run_id)).one()
    assert stored.status == "partial" and stored.failed == 1
    assert "bad.csv:3" in stored.failures[0]["reason"]

    assert outcome(collect(ws, DAY), "files").failures  # still bad: reported again

    bad.write_text("company,date,employees\nGlobex,2026-11-19,500\nGlobex,2026-11-20,501\n")
    fixed = outcome(collect(ws, DAY), "files")
    assert (fixed.status, fixed.ok, fixed.inserted) == ("ok", 2, 2)
    assert state_keys(ws, "files") == {"a.csv", "bad.csv"}


def test_missing_folder_is_a_failed_source_not_a_crash(
        tmp_path: Path, sqlite_url: str, workspaces: list[Workspace]) -> None:
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "a.csv").write_text(ROWS_A)
    cfg = write_config(tmp_path, sqlite_url,
                       folder_source("gone", "no/such/folder") + folder_source())
    ws = open_ws(cfg, workspaces)
    result = collect(ws, DAY)
    gone = outcome(result, "gone")
    assert gone.status == "failed" and "does not exist" in (gone.reason or "")
    assert outcome(result, "files").inserted == 3
    assert result.failed_sources == ["gone"]
    with ws.store.reading() as conn:
        assert conn.execute(select(runs.c.status).where(runs.c.id == result.run_id)
                            ).scalar_one() == "failed"  # collect exits 3 when a source failed


# -- http_json against a real local server ----------------------------------------


def test_http_json_one_company_404_is_partial_with_failures_per_company(
        tmp_path: Path, sqlite_url: str, fake_http: FakeHttpServer,  # noqa: F811
        workspaces: list[Workspace]) -> None:
    fake_http.add_company("acme", 1234)
    fake_http.add_company("umbrella", 777)  # globex is unknown to the server: 404
    fake_http.inject("umbrella", status=503, times=1)  # retries = 0: a retriable failure
    ws = open_ws(write_config(tmp_path, sqlite_url, http_source(fake_http.url), COMPANIES),
                 workspaces)

    result = collect(ws, DAY)
    api = outcome(result, "api")
    assert (api.status, api.ok, api.inserted) == ("partial", 1, 1)
    assert ws.export()[["company", "value"]].values.tolist() == [["acme", 1234]]
    with ws.store.reading() as conn:
        row = conn.execute(select(run_sources).where(run_sources.c.run_id == result.run_id)).one()
    by_company = {f["company"]: f for f in row.failures}
    assert set(by_company) == {"globex", "umbrella"} and row.failed == 2
    assert "404" in by_company["globex"]["reason"] and not by_company["globex"]["retriable"]
    assert "503" in by_company["umbrella"]["reason"] and by_company["umbrella"]["retriable"]
    assert {r.company for r in fake_http.log} == {"acme", "globex", "umbrella"}

    again = outcome(collect(ws, DAY), "api")  # umbrella recovered, acme unchanged
    assert (again.status, again.ok, again.inserted) == ("partial", 2, 1)


# -- plugins through the real registry ---------------------------------------------


class BoomSource(Source):
    """A third-party plugin with a bug."""

    name = "boom"

    def fetch(self, companies: Sequence[CompanyRef], day: date) -> Iterable[Observation | Failure]:
        raise RuntimeError("kaput")


class SloppySource(Source):
    """A plugin yielding counts the store must not accept: 0 and negative."""

    name = "sloppy"

    def fetch(self, companies: Sequence[CompanyRef], day: date) -> Iterable[Observation | Failure]:
        values = {"acme": 1500, "globex": 0, "umbrella": -3}
        for c in companies:
            yield Observation(c.id, day, values[c.id], source=self.instance)


class LongMetricSource(Source):
    """Emits a source name longer than the column: PostgreSQL refuses it, SQLite does not.
    (A too-long metric is refused before the store: see the misnamed-metric test.)"""

    name = "longmetric"

    def fetch(self, companies: Sequence[CompanyRef], day: date) -> Iterable[Observation | Failure]:
        for c in companies:
            yield Observation(c.id, day, 10, source="s" * 300)


class MisnamedMetricSource(Source):
    """Yields metrics no command could name: each such row is a failure, not a series."""

    name = "misnamed"

    def fetch(self, companies: Sequence[CompanyRef], day: date) -> Iterable[Observation | Failure]:
        for c in companies:
            yield Observation(c.id, day, 10, metric="Employees", source=self.instance)
            yield Observation(c.id, day, 3, metric="employees:security", source=self.instance)


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register this module's sources the way an installed plugin registers."""
    registry = available_sources()
    for cls in (BoomSource, SloppySource, LongMetricSource, MisnamedMetricSource):
        ep = EntryPoint(name=cls.name, value=f"{__name__}:{cls.__name__}", group=GROUP)
        monkeypatch.setitem(registry, cls.name, ep)


@pytest.mark.usefixtures("plugins")
def test_a_crashing_source_does_not_stop_another(
        tmp_path: Path, sqlite_url: str, workspaces: list[Workspace]) -> None:
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "a.csv").write_text(ROWS_A)
    cfg = write_config(tmp_path, sqlite_url,
                       '[sources.broken]\ntype = "boom"\n' + folder_source())
    ws = open_ws(cfg, workspaces)
    result = collect(ws, DAY)
    broken = outcome(result, "broken")
    assert broken.status == "failed"
    assert "unexpected error" in (broken.reason or "") and "kaput" in (broken.reason or "")
    assert outcome(result, "files").inserted == 3
    assert [o.source for o in result.outcomes] == ["broken", "files"]  # config order kept


@pytest.mark.usefixtures("plugins")
def test_zero_and_negative_counts_from_a_plugin_are_failures(
        tmp_path: Path, sqlite_url: str, workspaces: list[Workspace]) -> None:
    cfg = write_config(tmp_path, sqlite_url, '[sources.sloppy]\ntype = "sloppy"\n', COMPANIES)
    ws = open_ws(cfg, workspaces)
    sloppy = outcome(collect(ws, DAY), "sloppy")
    assert (sloppy.status, sloppy.ok, sloppy.inserted) == ("partial", 1, 1)
    reasons = {f.company: f.reason for f in sloppy.failures}
    assert set(reasons) == {"globex", "umbrella"}
    assert "invalid value 0" in reasons["globex"] and "-3" in reasons["umbrella"]
    assert ws.export()["value"].tolist() == [1500]


def test_zero_in_a_dropped_file_follows_the_import_rules(
        tmp_path: Path, sqlite_url: str, workspaces: list[Workspace]) -> None:
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "z.csv").write_text("company,date,employees\nTiny,2026-11-20,0\n")
    ws = open_ws(write_config(tmp_path, sqlite_url, folder_source()), workspaces)
    files = outcome(collect(ws, DAY), "files")
    assert (files.status, files.inserted) == ("ok", 1)


# -- a collection killed part-way --------------------------------------------------


def _wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_killed_collect_then_rerun_stores_each_observation_once(
        tmp_path: Path, db_url: str, fake_http: FakeHttpServer,  # noqa: F811
        workspaces: list[Workspace]) -> None:
    for i, c in enumerate(("acme", "globex", "umbrella")):
        fake_http.add_company(c, 1000 + i)
    fake_http.inject("umbrella", delay=30.0)  # hangs until the process is killed
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "a.csv").write_text(ROWS_A)
    (drop / "b.csv").write_text("company,date,employees\nGlobex,2026-11-20,500\n")
    # the slow source is listed first: the fast one must not wait for it to be written
    cfg = write_config(tmp_path, db_url, http_source(fake_http.url, timeout=60) +
                       folder_source(), COMPANIES)
    ws = open_ws(cfg, workspaces)
    code = ("import sys; from datetime import date; from tracker.collect import collect; "
            "from tracker.workspace import open_workspace; "
            "collect(open_workspace(sys.argv[1]), date(2026, 11, 20))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def files_written() -> bool:
            with ws.store.reading() as conn:
                return conn.execute(select(run_sources.c.source)
                                    .where(run_sources.c.source == "files")).first() is not None

        _wait_for(files_written, 30, "the csv_folder source to be written")
        _wait_for(lambda: bool(fake_http.requests_for("umbrella")), 10, "the slow request")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL

    assert count_obs(ws) == 4  # the files; nothing from the api, whose transaction never ran
    with ws.store.reading() as conn:
        killed = conn.execute(select(runs.c.status, runs.c.finished_at)).one()
    assert killed.status == "running" and killed.finished_at is None

    fake_http.clear()
    rerun = collect(ws, DAY)
    assert outcome(rerun, "files").ok == 0  # already imported, not read again
    assert (outcome(rerun, "api").status, outcome(rerun, "api").inserted) == ("ok", 3)
    assert count_obs(ws) == distinct_obs(ws) == 7
    assert collect(ws, DAY).inserted == 0
    assert count_obs(ws) == 7
    assert ws.export(since=DAY - timedelta(days=5))["as_of"].nunique() == 3


@pytest.mark.usefixtures("plugins")
def test_a_source_the_database_refuses_does_not_stop_another(
        tmp_path: Path, db_url: str, workspaces: list[Workspace]) -> None:
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "a.csv").write_text(ROWS_A)
    cfg = write_config(tmp_path, db_url, '[sources.long]\ntype = "longmetric"\n'
                       + folder_source(), COMPANIES)
    ws = open_ws(cfg, workspaces)
    result = collect(ws, DAY)
    assert outcome(result, "files").inserted == 3
    long = outcome(result, "long")
    if db_url.startswith("postgresql"):
        assert long.status == "failed" and "could not be stored" in (long.reason or "")
    else:
        assert long.status == "ok"


@pytest.mark.usefixtures("plugins")
def test_a_misnamed_metric_is_a_failure_not_a_series(
        tmp_path: Path, sqlite_url: str, workspaces: list[Workspace]) -> None:
    cfg = write_config(tmp_path, sqlite_url, '[sources.odd]\ntype = "misnamed"\n', COMPANIES)
    ws = open_ws(cfg, workspaces)
    odd = outcome(collect(ws, DAY), "odd")
    assert odd.status == "partial" and odd.inserted == odd.ok > 0
    assert odd.failures and all("metric 'Employees' is not a metric name" in f.reason
                                for f in odd.failures)
    assert set(ws.export()["metric"]) == {"employees:security"}


def test_two_spellings_of_one_company_with_different_values_are_not_guessed(
        tmp_path: Path, sqlite_url: str, workspaces: list[Workspace]) -> None:
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "x.csv").write_text(
        "company,date,employees\nApple Inc.,2022-10-10,100\n\"Apple, Inc\",2022-10-10,999\n"
        "Apple Inc.,2022-10-11,101\n")
    ws = open_ws(write_config(tmp_path, sqlite_url, folder_source()), workspaces)
    files = outcome(collect(ws, DAY), "files")
    assert files.status == "partial" and files.inserted == 1
    assert len(files.failures) == 2
    assert all("conflicting values for company 'apple-inc'" in f.reason for f in files.failures)
    assert ws.export()["value"].tolist() == [101]
