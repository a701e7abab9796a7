"""engine = "dask" stores exactly what engine = "local" stores, full pass and daily run.

Why: the Dask engine exists to judge more series than one process can hold, by
giving each worker process a partition of series that it reads from the database
itself. If a partition's verdicts differed from the local engine's (a different
first day, a lost series at a partition edge, a verdict judged twice), alerts would
depend on the cluster. A real LocalCluster of two worker processes, real SQLite
files and the real PostgreSQL; partitions small enough that every run has several.
"""

from __future__ import annotations

import contextlib
import io
import textwrap
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.helpers import no_traceback, tracker
from tracker.alerts import list_alerts
from tracker.config import Settings
from tracker.dask_engine import detect_history
from tracker.detect import detect
from tracker.detect.settings import DetectSettings
from tracker.detect.synthetic import generate
from tracker.detection import build_matrix, detect_new, run_detection
from tracker.errors import ConfigError
from tracker.ingest import ImportOptions, import_file
from tracker.store import Store
from tracker.workspace import Workspace

distributed = pytest.importorskip("distributed")

COMPARED = ["company", "metric", "source", "date", "detected_on", "confirmed_on", "verdict",
            "kind", "change_pct", "value_before", "value_after", "score", "severity",
            "event_id", "sources_agreeing"]
ROW_KEYS = ["company", "metric", "source", "date", "detected_on", "kind"]


@pytest.fixture(scope="module")
def history_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few hundred series with shifts, glitches and drifts, daily, weekly and monthly."""
    m, labels = generate(200, 450, seed=7, quiet_fraction=0.3, weekly_fraction=0.2,
                         monthly_fraction=0.1)
    assert labels["kind"].nunique() >= 4
    long = m.stack().dropna().rename("employees").reset_index()
    long.columns = ["date", "series", "employees"]
    long["company"] = long["series"].str.split("/").str[0]
    long["date"] = long["date"].dt.strftime("%Y-%m-%d")
    long["employees"] = long["employees"].round().astype("int64")
    path = tmp_path_factory.mktemp("dask") / "history.csv"
    long[["company", "date", "employees"]].to_csv(path, index=False)
    return path


def _workspace(url: str, base: Path, **detect_keys: object) -> Workspace:
    detect_settings = DetectSettings(partition_size=60, **detect_keys)
    return Workspace(Settings(base_dir=base, sources={}, detect=detect_settings), Store(url))


def _table(ws: Workspace) -> pd.DataFrame:
    return (list_alerts(ws)[COMPARED].sort_values(["company", "date", "kind"])
            .reset_index(drop=True))


def _rows(found: pd.DataFrame) -> pd.DataFrame:
    return found.drop(columns="series").sort_values(ROW_KEYS).reset_index(drop=True)


def test_dask_verdicts_equal_local_ones(history_csv: Path, scheduler: str, tmp_path: Path,
                                        db_url: str) -> None:
    local = _workspace(f"sqlite:///{tmp_path / 'local.db'}", tmp_path)
    dask = _workspace(db_url, tmp_path, engine="dask", scheduler=scheduler)
    for ws in (local, dask):
        import_file(ws.store, history_csv, ImportOptions(collected_at=datetime(2020, 1, 1)))
    # the rows themselves, bitwise: same code on the same numbers
    matrix, keys = build_matrix(local)
    want = detect(matrix, local.settings.detect).join(keys, on="series")
    got, n_series, last = detect_history(dask)
    assert n_series == matrix.shape[1] > 2 * dask.settings.detect.partition_size
    assert last == matrix.index[-1].date()
    assert len(want) >= 100 and want["kind"].nunique() >= 4
    pd.testing.assert_frame_equal(_rows(got), _rows(want), check_exact=True)

    # the daily path: a full pass up to 12 days before the end, then one run per day
    days = matrix.index
    for ws in (local, dask):
        run_detection(ws, until=days[-13].date())
        for day in days[-12:]:
            detect_new(ws, day.date())
    stored = _table(local)
    assert len(stored) >= 100
    pd.testing.assert_frame_equal(_table(dask), stored, check_exact=True)
    local.close()
    dask.close()


def test_cli_detect_and_run_on_dask(history_csv: Path, scheduler: str, tmp_path: Path) -> None:
    """`tracker run` with the dask engine in config.toml (a local cluster it starts
    itself), then `tracker detect --full` on a running scheduler."""
    def project(name: str, engine: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.toml").write_text(textwrap.dedent(f"""\
            [database]
            url = "sqlite:///{folder / 'tracker.db'}"
            [detect]
            engine = "{engine}"
            workers = 2
            partition_size = 60
            [sources.history]
            type = "csv_folder"
            path = "data"
            """))
        (folder / "data").mkdir()
        (folder / "data" / "history.csv").write_bytes(history_csv.read_bytes())
        return folder

    local, dask = project("local", "local"), project("dask", "dask")
    tables, summaries = {}, {}
    for folder in (local, dask):
        run = tracker("run", cwd=folder)  # collect (imports the file), a first full pass
        assert run.returncode == 0, run.stdout + run.stderr  # old history: backfill
        summaries[folder] = run.stdout.split("; report ")[0]
        if folder == dask:  # and again on the module's cluster: nothing changes
            cfg = folder / "config.toml"
            cfg.write_text(cfg.read_text().replace(
                "partition_size = 60\n", f'partition_size = 60\nscheduler = "{scheduler}"\n'))
            out = tracker("detect", "--full", cwd=folder)
            assert out.returncode == 0 and "0 new alert(s)" in out.stderr, out.stderr
        listed = tracker("alerts", "--format", "csv", cwd=folder)
        assert listed.returncode == 0, listed.stderr
        table = pd.read_csv(io.StringIO(listed.stdout)).drop(columns="id")  # insertion order
        tables[folder] = table.sort_values(["company", "date", "kind"]).reset_index(drop=True)
    assert len(tables[local]) > 50
    assert summaries[dask] == summaries[local] and "alert(s) about older history" in \
        summaries[dask]
    pd.testing.assert_frame_equal(tables[dask], tables[local])


def test_unreachable_scheduler_is_one_line_exit_3(tmp_path: Path, history_csv: Path) -> None:
    ws = _workspace(f"sqlite:///{tmp_path / 'x.db'}", tmp_path, engine="dask",
                    scheduler="tcp://127.0.0.1:9", connect_timeout=2)
    import_file(ws.store, history_csv)
    with pytest.raises(ConfigError, match=r"tcp://127\.0\.0\.1:9.*within 2 s"):
        run_detection(ws)
    ws.close()
    (tmp_path / "config.toml").write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "x.db"}"\n'
        '[detect]\nengine = "dask"\nscheduler = "tcp://127.0.0.1:9"\nconnect_timeout = 2\n')
    out = tracker("detect", "--full", cwd=tmp_path)
    no_traceback(out)
    assert out.returncode == 3
    assert len(out.stderr.strip().splitlines()) == 1 and "dask scheduler" in out.stderr


def test_dask_population_events_equal_local_ones(scheduler: str, tmp_path: Path,
                                                 db_url: str) -> None:
    """Population events on Dask: each task scores its own slice and returns column
    sums; the client judges the shares and asks the tasks for the members of the
    days that opened an event. Shares, events and members must be the local pass's,
    to the bit, with a cohort, for a full pass and for a daily window."""
    from tracker.detect.synthetic import generate_platform
    from tracker.population import find_population_events

    case = generate_platform(260, 420, seed=4, n_events=2)
    long = case.matrix.stack().dropna().rename("employees").reset_index()
    long.columns = ["date", "company", "employees"]
    long["date"] = long["date"].dt.strftime("%Y-%m-%d")
    long["employees"] = long["employees"].round().astype("int64")
    csv = tmp_path / "platform.csv"
    long.to_csv(csv, index=False)
    spaces = []
    for url, keys in ((f"sqlite:///{tmp_path / 'local.db'}", {}),
                      (db_url, {"engine": "dask", "scheduler": scheduler})):
        ws = _workspace(url, tmp_path, **keys)
        import_file(ws.store, csv, ImportOptions(collected_at=datetime(2020, 1, 1)))
        companies = sorted(long["company"].unique())
        ws = Workspace(ws.settings.model_copy(update={"cohorts": Settings.model_validate(
            {"cohorts": {"early": {"companies": companies[:90]}}}).cohorts}), ws.store)
        spaces.append(ws)
    local, dask = spaces
    last = case.events["date"].max().date()
    for since in (None, last):
        want = find_population_events(local, since=since)
        got = find_population_events(dask, since=since)
        assert len(want.events) >= 1 and len(want.members) >= 20
        if since is None:
            assert (want.daily["cohort"] == "early").any()
        for a, b in ((want.daily, got.daily), (want.events, got.events),
                     (want.members, got.members)):
            pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True),
                                          check_exact=True)
    local.close()
    dask.close()


def _platform_days(tmp_path: Path, cut: int) -> tuple[Path, list[Path], list]:
    """A platform with population events; its history to ``cut`` days before the end
    as one CSV, and each later day as its own."""
    from tracker.detect.synthetic import generate_platform

    case = generate_platform(260, 420, seed=4, n_events=2)
    long = case.matrix.stack().dropna().rename("employees").reset_index()
    long.columns = ["date", "company", "employees"]
    long["employees"] = long["employees"].round().astype("int64")
    last = case.events["date"].max()  # the daily runs reach the last event
    long = long[long["date"] <= last + pd.Timedelta(days=cut // 2)]
    days = sorted(long["date"].unique())
    assert days[-cut] <= last
    old = tmp_path / "old.csv"
    long[long["date"] < days[-cut]].assign(date=lambda f: f["date"].dt.strftime("%Y-%m-%d")
                                           ).to_csv(old, index=False)
    later = []
    for d in days[-cut:]:
        path = tmp_path / f"{pd.Timestamp(d):%Y-%m-%d}.csv"
        long[long["date"] == d].assign(date=lambda f: f["date"].dt.strftime("%Y-%m-%d")
                                       ).to_csv(path, index=False)
        later.append(path)
    return old, later, [pd.Timestamp(d).date() for d in days[-cut:]]


def test_daily_dask_run_reads_each_slice_once_for_both_steps(
        scheduler: str, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daily job's detection on Dask asks its tasks for the population step's sums
    too (each slice read once for both steps: on PostgreSQL the read is most of a
    task's time), and the population step takes them instead of reading again, but
    only while nothing was written in between. Sums equal a separate read's; events
    and members equal the local engine's."""
    from tracker import dask_engine
    from tracker.population import event_members, list_events, next_reads, population_step
    from tracker.store.slices import series_ids

    old, later, days = _platform_days(tmp_path, cut=30)
    spaces = []
    for url, keys in ((f"sqlite:///{tmp_path / 'local.db'}", {}),
                      (db_url, {"engine": "dask", "scheduler": scheduler})):
        ws = _workspace(url, tmp_path, **keys)
        import_file(ws.store, old, ImportOptions(collected_at=datetime(2020, 1, 1)))
        run_detection(ws)
        population_step(ws, days[0] - pd.Timedelta(days=1), 0)
        spaces.append(ws)
    local, dask = spaces
    one = dask.settings.detect.model_copy(update={"workers": 1})
    mapped: list[str] = []  # the tasks the engine sends to the (real) cluster
    real = dask_engine.client

    @contextlib.contextmanager
    def spied(s: Any) -> Iterator[Any]:
        with real(s) as c:
            class Spy:
                def __getattr__(self, name: str) -> Any:
                    return getattr(c, name)

                def map(self, task: Any, *args: Any, **kwargs: Any) -> Any:
                    mapped.append(task.__name__)
                    return c.map(task, *args, **kwargs)
            yield Spy()

    monkeypatch.setattr(dask_engine, "client", spied)
    checked = 0
    for i, (path, day) in enumerate(zip(later, days, strict=True)):
        for ws in spaces:
            import_file(ws.store, path, ImportOptions(collected_at=datetime(2020, 1, 2)))
        detect_new(local, day)
        detect_new(dask, day, population_next=True)
        assert dask_engine._ahead is not None
        reads = next_reads(dask, day)
        assert reads is not None and reads.judge_from is not None
        ask = dask_engine._ask(dask, reads)
        assert ask is not None
        ranges = dask_engine.partitions(series_ids(dask.store), one.partition_size)
        last_id = dask_engine.alert_store.last_observation_id(dask.store)
        if i % 10 == 0:  # the sums of the shared read are a separate read's
            key, parts = dask_engine._ahead
            assert key == dask_engine._ahead_key(dask, ask, ranges, last_id)
            assert len(parts) == len(ranges) > 2
            for (lo, hi), part in zip(ranges, parts, strict=True):
                alone = dask_engine.population_task(dask.store.url, lo, hi, ask.reach,
                                                    ask.groups, one, dask.settings.population)
                assert part.labels == alone.labels
                for a, b in ((part.sizes, alone.sizes), (part.seen, alone.seen),
                             (part.tally.n, alone.tally.n), (part.tally.k, alone.tally.k),
                             (part.tally.total, alone.tally.total),
                             (part.tally.w, alone.tally.w)):
                    np.testing.assert_array_equal(a, b)
                checked += 1
        if i == 20:  # a revision between the steps: the sums are stale, read again
            revised = pd.read_csv(path).head(40).assign(employees=lambda f: f["employees"] * 3)
            for ws in spaces:
                revised.to_csv(tmp_path / "revised.csv", index=False)
                import_file(ws.store, tmp_path / "revised.csv",
                            ImportOptions(collected_at=datetime(2020, 1, 3)))
            assert dask_engine.alert_store.last_observation_id(dask.store) != last_id
        population_step(local, day, 0)
        mapped.clear()
        population_step(dask, day, 0)
        assert dask_engine._ahead is None  # taken (or dropped as stale) by the step
        assert ("population_task" in mapped) == (i == 20), (i, mapped)
    assert checked >= 2
    want, got = list_events(local), list_events(dask)
    assert len(want) >= 1 and (pd.to_datetime(want["last_date"]) >= pd.Timestamp(days[0])).any()
    # row ids differ: the engines write alerts (so events) in a different order
    pd.testing.assert_frame_equal(got.drop(columns="id"), want.drop(columns="id"),
                                  check_exact=True)
    for mine, theirs in zip(got["id"], want["id"], strict=True):
        pd.testing.assert_frame_equal(event_members(dask, mine).drop(columns="alert_id"),
                                      event_members(local, theirs).drop(columns="alert_id"),
                                      check_exact=True)
    local.close()
    dask.close()


def test_partition_windows_are_kept_patched_and_read_afresh_only_when_they_must(
        history_csv: Path, scheduler: str, tmp_path: Path, db_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each partition keeps its window between daily runs and the next run patches it
    with the partition's new observations (read once by the client) instead of
    reading the partition's whole window again: the reads that were most of a Dask
    daily run. A patched window must hold what a fresh read gives, through a late
    correction of an old day, a series new in the last partition (whose id range
    grew: read afresh) and the days dropped off its start; verdicts stay the local
    engine's; partitions that no longer exist are forgotten."""
    from tracker.dask_engine import partitions
    from tracker.store import slices, window_cache
    from tracker.store.alerts import last_observation_id
    from tracker.store.latest import day_number

    local = _workspace(f"sqlite:///{tmp_path / 'local.db'}", tmp_path)
    dask = _workspace(db_url, tmp_path, engine="dask", scheduler=scheduler)
    for ws in (local, dask):
        import_file(ws.store, history_csv, ImportOptions(collected_at=datetime(2020, 1, 1)))
    days = build_matrix(local)[0].index
    for ws in (local, dask):
        run_detection(ws, until=days[-4].date())
        detect_new(ws, days[-3].date())  # the windows are read afresh and kept
    ranges = partitions(slices.series_ids(dask.store), dask.settings.detect.partition_size)
    assert len(ranges) > 2
    last_id = last_observation_id(dask.store)
    assert window_cache.parts(dask.store) == {lo: (hi, last_id) for lo, hi in ranges}

    history = pd.read_csv(history_csv)
    old_day = f"{days[-20]:%Y-%m-%d}"
    fix = history[history["date"] == old_day].head(5).assign(employees=lambda f: f["employees"] * 2)
    new = pd.DataFrame({"company": "zz-new", "date": [f"{d:%Y-%m-%d}" for d in days[-6:]],
                        "employees": [500, 505, 503, 120, 118, 119]})
    later = pd.concat([fix, new, history[history["date"] == f"{days[-2]:%Y-%m-%d}"]])
    later.to_csv(tmp_path / "later.csv", index=False)
    for ws in (local, dask):
        import_file(ws.store, tmp_path / "later.csv",
                    ImportOptions(collected_at=datetime(2020, 1, 2)))

    # one task's part, in this process: the patched windows equal fresh reads
    upto = last_observation_id(dask.store)
    now = partitions(slices.series_ids(dask.store), dask.settings.detect.partition_size)
    assert now[:-1] == ranges[:-1] and now[-1][1] > ranges[-1][1]  # the last one grew
    keep = day_number(days[-150].date())
    plans = slices.window_plans(dask.store, now, keep, upto)
    assert [p.mark for p in plans] == [last_id] * (len(now) - 1) + [None]
    assert sum(len(p.rows) for p in plans[:-1]) < len(later)  # only the new rows ship
    fresh_reads = []
    real_read = slices.read_slice

    def counted(url: str, lo: int, hi: int, **kw: Any) -> slices.Slice:
        fresh_reads.append(lo)
        return real_read(url, lo, hi, **kw)

    monkeypatch.setattr(slices, "read_slice", counted)
    since = days[-150].date()
    for (lo, hi), plan in zip(now, plans, strict=True):
        win = slices.part_window(dask.store.url, lo, hi, plan)
        assert (win.first_day, win.last_observation) == (keep, upto)
        want = real_read(dask.store.url, lo, hi, since=since).dense([keep])
        got = slices.window_dense(win, since, None, [keep])
        for a, b in ((got.series_id, want.series_id), (got.source_id, want.source_id),
                     (got.days, want.days), (got.values, want.values)):
            np.testing.assert_array_equal(a, b)
        stored = window_cache.load(dask.store, lo, hi)  # saved back by the task
        assert stored is not None and stored.last_observation == upto
        np.testing.assert_array_equal(stored.values, win.values)
    assert fresh_reads == [now[-1][0]]  # only the partition whose range changed

    # a whole daily run on the cluster from there: the local engine's verdicts
    for ws in (local, dask):
        detect_new(ws, days[-2].date())
    pd.testing.assert_frame_equal(_table(dask), _table(local), check_exact=True)
    assert set(window_cache.parts(dask.store)) == {lo for lo, _ in now}

    # another partitioning: the old windows are dropped, the partitions that are not
    # the same id range read afresh
    other = partitions(slices.series_ids(dask.store), 45)
    plans = slices.window_plans(dask.store, other, keep, upto)
    assert [p.mark is not None for p in plans] == [r in now for r in other]
    assert not all(r in now for r in other)
    assert set(window_cache.parts(dask.store)) <= {lo for lo, _ in other}
    local.close()
    dask.close()


def test_a_full_pass_stores_the_windows_the_next_daily_run_patches(
        history_csv: Path, scheduler: str, tmp_path: Path, db_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A full pass on Dask reads every partition's whole history anyway, so each task
    stores its partition's window too: the first daily run after it patches the
    windows with the day's rows instead of reading every partition again (at a
    million companies that first run took 246 s, over the 3-minute budget). A pass
    that stops before the last day must not store windows that lack later days."""
    from tracker.dask_engine import partitions
    from tracker.detection import _next_keep
    from tracker.store import slices, window_cache
    from tracker.store.alerts import last_observation_id
    from tracker.store.latest import date_of, day_number

    history = pd.read_csv(history_csv)
    last = history["date"].max()
    early = tmp_path / "early.csv"
    history[history["date"] < last].to_csv(early, index=False)
    local = _workspace(f"sqlite:///{tmp_path / 'local.db'}", tmp_path)
    dask = _workspace(db_url, tmp_path, engine="dask", scheduler=scheduler)
    for ws in (local, dask):
        import_file(ws.store, early, ImportOptions(collected_at=datetime(2020, 1, 1)))
    days = build_matrix(local)[0].index

    # a pass that stops before the last day stores no window
    run_detection(dask, until=days[-3].date())
    assert window_cache.parts(dask.store) == {}

    for ws in (local, dask):
        run_detection(ws)
    mark = last_observation_id(dask.store)
    ranges = partitions(slices.series_ids(dask.store), dask.settings.detect.partition_size)
    assert len(ranges) > 2
    assert window_cache.parts(dask.store) == {lo: (hi, mark) for lo, hi in ranges}
    keep = day_number(_next_keep(dask, days[-1].date()))
    for lo, hi in ranges:
        win = window_cache.load(dask.store, lo, hi)
        assert win is not None and win.first_day == keep
        want = slices.read_slice(dask.store.url, lo, hi, since=date_of(keep)).dense([keep])
        got = slices.window_dense(win, date_of(keep), None, [keep])
        for a, b in ((got.series_id, want.series_id), (got.days, want.days),
                     (got.values, want.values)):
            np.testing.assert_array_equal(a, b)

    # the next day: every partition's window is patched, none read afresh
    history[history["date"] == last].to_csv(tmp_path / "last.csv", index=False)
    for ws in (local, dask):
        import_file(ws.store, tmp_path / "last.csv",
                    ImportOptions(collected_at=datetime(2020, 1, 2)))
    upto = last_observation_id(dask.store)
    plans = slices.window_plans(dask.store, ranges, keep, upto)
    assert all(p.mark == mark for p in plans)
    fresh_reads: list[int] = []
    real_read = slices.read_slice

    def counted(url: str, lo: int, hi: int, **kw: Any) -> slices.Slice:
        fresh_reads.append(lo)
        return real_read(url, lo, hi, **kw)

    monkeypatch.setattr(slices, "read_slice", counted)
    for (lo, hi), plan in zip(ranges, plans, strict=True):
        assert slices.part_window(dask.store.url, lo, hi, plan).last_observation == upto
    assert fresh_reads == []
    monkeypatch.undo()

    # and the daily run on the cluster judges as the local engine does
    for ws in (local, dask):
        detect_new(ws, pd.Timestamp(last).date())
    pd.testing.assert_frame_equal(_table(dask), _table(local), check_exact=True)
    assert window_cache.parts(dask.store) == {lo: (hi, upto) for lo, hi in ranges}
    local.close()
    dask.close()
