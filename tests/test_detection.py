"""The daily, incremental detection stores exactly what one full pass stores.

Why: the daily run reads a trailing window (and the whole history of only the few
series that need it) and judges only the days that can have changed since its
mark. If any of that were inexact, an operator's alerts would depend on when and
how often the job ran.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tracker.alerts import list_alerts
from tracker.config import Settings
from tracker.detect.engine import window_days
from tracker.detect.population import baseline_reach
from tracker.detect.synthetic import generate
from tracker.detection import detect_new, plan, run_detection
from tracker.ingest import ImportOptions, import_file
from tracker.store import Store, window_cache
from tracker.store import alerts as alert_store
from tracker.store.latest import latest_values
from tracker.store.slices import read_slice
from tracker.workspace import Workspace

COMPARED = ["company", "metric", "source", "date", "detected_on", "confirmed_on", "verdict",
            "kind", "change_pct", "value_before", "value_after", "score", "severity",
            "event_id", "sources_agreeing"]


def _long_csv(m: pd.DataFrame, path: Path) -> Path:
    long = m.stack().dropna().rename("employees").reset_index()
    long.columns = ["date", "series", "employees"]
    long["company"] = long["series"].str.split("/").str[0]
    long["date"] = long["date"].dt.strftime("%Y-%m-%d")
    long["employees"] = long["employees"].round().astype("int64")
    long[["company", "date", "employees"]].to_csv(path, index=False)
    return path


def _workspace(tmp_path: Path, name: str, url: str | None = None) -> Workspace:
    store = Store(url or f"sqlite:///{tmp_path / name}.db")
    return Workspace(Settings(base_dir=tmp_path, sources={}), store)


def _table(ws: Workspace) -> pd.DataFrame:
    return (list_alerts(ws)[COMPARED].sort_values(["company", "date", "kind"])
            .reset_index(drop=True))


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    """Over a window and a half of daily, weekly-patterned and monthly series with events."""
    m, _ = generate(36, 540, seed=21, quiet_fraction=0.2, weekly_fraction=0.3,
                    monthly_fraction=0.15, events_per_series=(2, 4))
    assert len(m) > window_days(Settings().detect) + 60
    return m


def test_daily_runs_store_what_one_full_pass_stores(history: pd.DataFrame, tmp_path: Path,
                                                    db_url: str) -> None:
    csv = _long_csv(history, tmp_path / "history.csv")
    full, daily = _workspace(tmp_path, "full"), _workspace(tmp_path, "daily", db_url)
    for ws in (full, daily):
        import_file(ws.store, csv, ImportOptions(collected_at=datetime(2020, 1, 1)))
    days = history.index
    run_detection(full)
    run_detection(daily, until=days[-61].date())
    for day in days[-60:]:
        assert plan(daily, day.date()).start == day.date()  # one day, not the history
        detect_new(daily, day.date())
    want = _table(full)
    assert len(want) >= 40 and want["kind"].nunique() >= 4
    pd.testing.assert_frame_equal(_table(daily), want)
    assert alert_store.load_mark(daily.store).through == days[-1].date()

    # a correction of an old day reaches the alerts through the next daily run
    old = days[-30]
    series = history.columns[history.loc[old].notna().to_numpy()][0]
    fix = tmp_path / "fix.csv"
    pd.DataFrame({"company": [series.split("/")[0]], "date": [f"{old:%Y-%m-%d}"],
                  "employees": [int(history.at[old, series] * 0.4)]}).to_csv(fix, index=False)
    for ws in (full, daily):
        import_file(ws.store, fix)
    assert plan(daily, days[-1].date()).start == old.date()
    result = detect_new(daily, days[-1].date())
    assert any((result.new["date"] == old) & (result.new["kind"] == "glitch"))
    # the kept window, brought up to date run after run, is what a fresh read gives
    kept = window_cache.load(daily.store)
    assert kept is not None and kept.last_observation == \
        alert_store.load_mark(daily.store).last_observation
    lo = date.fromordinal(date(1970, 1, 1).toordinal() + kept.first_day)
    # the detection's window, and the population step's baseline before it
    assert lo == old.date() - pd.Timedelta(days=window_days(daily.settings.detect) - 1
                                           + baseline_reach(daily.settings.population) + 1)
    fresh = window_cache.Window.of(latest_values(daily.store, since=lo),
                                   kept.first_day, kept.last_observation)
    np.testing.assert_array_equal(kept.series_id, fresh.series_id)
    np.testing.assert_array_equal(kept.values[: len(fresh.values)], fresh.values)
    run_detection(full)
    pd.testing.assert_frame_equal(_table(daily), _table(full))
    full.close()
    daily.close()


def test_plan_falls_back_to_a_full_pass(history: pd.DataFrame, tmp_path: Path) -> None:
    """No mark yet, or more new days than a window (an import of years): everything."""
    ws = _workspace(tmp_path, "p")
    import_file(ws.store, _long_csv(history.iloc[:100], tmp_path / "a.csv"))
    first = history.index[99].date()
    assert plan(ws, first).start is None
    detect_new(ws, first)
    assert alert_store.load_mark(ws.store).through == first
    assert plan(ws, first).start == first  # nothing new: only the day itself
    later = history.index[100 + window_days(ws.settings.detect)].date()
    assert plan(ws, later).start is None
    assert plan(ws, date.fromordinal(first.toordinal() + 5)).start == \
        date.fromordinal(first.toordinal() + 1)
    ws.close()


def test_fast_reader_gives_the_latest_known_values(tmp_path: Path, db_url: str) -> None:
    """The covering-index reader equals the general one, revisions included: a later
    correction wins, and so does a value re-imported with an earlier collected_at."""
    from tracker.detection import build_matrix, matrix_of

    ws = _workspace(tmp_path, "r", db_url)
    rows = pd.DataFrame({"company": ["Acme"] * 4 + ["Globex"] * 2,
                         "date": ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04",
                                  "2024-01-01", "2024-01-03"],
                         "employees": [100, 101, 102, 103, 50, 51]})
    rows.to_csv(tmp_path / "a.csv", index=False)
    import_file(ws.store, tmp_path / "a.csv", ImportOptions(collected_at=datetime(2024, 2, 1)))
    rows.assign(employees=rows["employees"] + 7).iloc[[1]].to_csv(tmp_path / "b.csv",
                                                                  index=False)
    import_file(ws.store, tmp_path / "b.csv", ImportOptions(collected_at=datetime(2024, 3, 1)))
    rows.assign(employees=rows["employees"] - 9).iloc[[2]].to_csv(tmp_path / "c.csv",
                                                                  index=False)
    import_file(ws.store, tmp_path / "c.csv", ImportOptions(collected_at=datetime(2024, 1, 5)))
    fast, keys = build_matrix(ws)
    general, general_keys = matrix_of(ws.store.observations())
    pd.testing.assert_frame_equal(keys, general_keys)
    pd.testing.assert_frame_equal(fast, general)
    acme = fast[int(keys.index[keys["company"] == "acme"][0])]
    assert acme.tolist() == [100, 108, 102, 103]  # the March fix; not the older January one
    window, _ = build_matrix(ws, since=date(2024, 1, 2), until=date(2024, 1, 3),
                             companies=["globex"])
    assert window.shape == (1, 1) and window.iloc[0, 0] == 51
    # a worker's slice (grouped by series on PostgreSQL, not by day) reads the same cells
    whole = latest_values(ws.store)
    ids = np.unique(whole.series_id)
    part = read_slice(ws.store.url, int(ids[0]), int(ids[-1]), since=date(2024, 1, 2))
    keep = (whole.day >= (date(2024, 1, 2) - date(1970, 1, 1)).days)
    for name in ("series_id", "source_id", "day", "value"):
        np.testing.assert_array_equal(getattr(part, name), getattr(whole, name)[keep])
    assert len(part) == 4 and 108 in part.value and 93 not in part.value  # the revisions
    ws.close()



def test_a_slice_spanning_many_read_blocks_reads_every_cell_once(
        db_url: str, tmp_path: Path) -> None:
    """A slice of 300 series (on PostgreSQL read in blocks of 64 series ids, not one
    group per series), with a revision of every fifth series: exactly the latest cells
    of its id range, in the same order as the whole-store read."""
    ws = _workspace(tmp_path, "blocks", db_url)
    days = pd.date_range("2024-01-01", periods=5).strftime("%Y-%m-%d")
    names = [f"Co{i:03d}" for i in range(300)]
    first = pd.DataFrame([(c, d, 1000 + 10 * i + k) for i, c in enumerate(names)
                          for k, d in enumerate(days)], columns=["company", "date", "employees"])
    first.to_csv(tmp_path / "a.csv", index=False)
    import_file(ws.store, tmp_path / "a.csv", ImportOptions(collected_at=datetime(2024, 2, 1)))
    fixes = first.iloc[::7].assign(employees=lambda f: f["employees"] + 5)
    fixes.to_csv(tmp_path / "b.csv", index=False)
    import_file(ws.store, tmp_path / "b.csv", ImportOptions(collected_at=datetime(2024, 3, 1)))
    whole = latest_values(ws.store)
    ids = np.unique(whole.series_id)
    lo, hi = int(ids[20]), int(ids[270])
    part = read_slice(ws.store.url, lo, hi, since=date(2024, 1, 2))
    keep = ((whole.series_id >= lo) & (whole.series_id <= hi)
            & (whole.day >= (date(2024, 1, 2) - date(1970, 1, 1)).days))
    assert keep.sum() == 251 * 4
    for name in ("series_id", "source_id", "day", "value"):
        np.testing.assert_array_equal(getattr(part, name), getattr(whole, name)[keep])
    # the revisions are the values read (a fixed value ends in 5-9, a first one in 0-4)
    sliced = {whole.series_names[int(i)][0] for i in ids[20:271]}
    fixed = fixes[fixes["company"].str.lower().isin(sliced) & (fixes["date"] >= "2024-01-02")]
    assert len(fixed) > 30 and (part.value % 10 >= 5).sum() == len(fixed)
    ws.close()

def test_daily_runs_long_after_the_data(history: pd.DataFrame, tmp_path: Path) -> None:
    """Data that stopped long ago leaves the window empty: runs still work, day after day."""
    ws = _workspace(tmp_path, "stale")
    import_file(ws.store, _long_csv(history.iloc[:200], tmp_path / "s.csv"))
    later = history.index[199].date() + pd.Timedelta(days=3 * window_days(ws.settings.detect))
    first = detect_new(ws, later)  # no mark: the full pass
    assert len(first.new) > 0
    for k in range(1, 3):
        again = detect_new(ws, later + pd.Timedelta(days=k))
        assert again.new.empty and again.series == 0
        assert alert_store.load_mark(ws.store).through == later + pd.Timedelta(days=k)
    ws.close()
