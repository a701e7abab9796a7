"""The kept detection window: stored one row per day, written only where it changed.

Why: at a million series a year's window is over a gigabyte; a daily run that
rewrote it all would spend its time budget on a cache. These tests prove that a
save writes the header, new column chunks and the dirty days only, that rows
stored before columns were added read back with those columns missing, that
values beyond int32 survive, and that the in-process copy is never used once
another writer has replaced the stored window.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select, text

from tracker.store import Store, window_cache
from tracker.store.schema import detect_window_days

NAN = np.nan


def _window() -> window_cache.Window:
    values = np.array([[10.0, NAN], [12.0, float(2**40)], [NAN, 7.0]])
    return window_cache.Window(100, np.array([1, 2]), np.array([1, 1]), values, 5,
                               dirty={100, 101, 102})


def _save(store: Store, win: window_cache.Window) -> None:
    with store.transaction("test") as conn:
        window_cache.save(conn, store, win)


def _stored_days(store: Store) -> dict[int, tuple[int, int, bytes]]:
    with store.reading() as conn:
        t = detect_window_days
        return {r.day: (r.columns, r.width, r.counts)
                for r in conn.execute(select(t.c.day, t.c.columns, t.c.width, t.c.counts))}


@pytest.fixture
def store(db_url: str) -> Store:
    s = Store(db_url)
    yield s
    window_cache._kept = None
    s.close()


def test_round_trip_with_wide_values_and_gaps(store: Store) -> None:
    win = _window()
    _save(store, win)
    days = _stored_days(store)
    assert sorted(days) == [100, 101, 102]
    assert days[100][1] == 4 and days[101][1] == 8  # int32 unless a value needs more
    window_cache._kept = None  # as a new process would
    got = window_cache.load(store)
    assert got is not None and got is not win
    np.testing.assert_array_equal(got.values, _window().values)
    np.testing.assert_array_equal(got.series_id, [1, 2])
    assert (got.first_day, got.last_observation, got.stored_columns) == (100, 5, 2)
    assert not got.dirty


def test_a_save_writes_only_what_changed(store: Store) -> None:
    win = _window()
    _save(store, win)
    before = _stored_days(store)
    # a new day with a series seen for the first time, and the oldest day dropped
    win.series_id, win.source_id = np.array([1, 2, 3]), np.array([1, 1, 1])
    win.values = np.vstack([np.hstack([win.values, np.full((3, 1), NAN)]),
                            [[13.0, 8.0, 40.0]]])
    win.dirty = {103}
    win.last_observation = 9
    win.trim(101)
    _save(store, win)
    after = _stored_days(store)
    assert sorted(after) == [101, 102, 103]
    assert after[101] == before[101] and after[102] == before[102]  # not rewritten
    assert after[103][0] == 3
    window_cache._kept = None
    got = window_cache.load(store)
    assert got is not None
    expected = np.array([[12.0, float(2**40), NAN], [NAN, 7.0, NAN], [13.0, 8.0, 40.0]])
    np.testing.assert_array_equal(got.values, expected)
    np.testing.assert_array_equal(got.series_id, [1, 2, 3])


def test_the_kept_copy_yields_to_another_writer(store: Store) -> None:
    win = _window()
    _save(store, win)
    assert window_cache.load(store) is win  # the steps after detection read no blob
    with store.transaction("another process") as conn:
        conn.execute(text("UPDATE detect_window_meta SET token = 'other'"))
        conn.execute(text("UPDATE detect_window_days SET counts = :c WHERE day = 100"),
                     {"c": np.array([11, 1], dtype=np.int32).tobytes()})
    got = window_cache.load(store)
    assert got is not win and got is not None
    np.testing.assert_array_equal(got.values[0], [11.0, 1.0])


def test_an_incomplete_window_is_not_used(store: Store) -> None:
    _save(store, _window())
    with store.transaction("damage") as conn:
        conn.execute(text("UPDATE detect_window_meta SET columns = 3"))
    window_cache._kept = None
    assert window_cache.load(store) is None  # rebuilt from the observations instead


def test_latest_indexing_matches_a_sort_of_every_row() -> None:
    """``Latest.columns``/``day_rows`` index the sorted rows in one linear pass; they
    must give what sorting every row would (``np.unique``), with series that share a
    source, sources that share a series, gaps in the days and a lone last row."""
    from tracker.store.latest import Latest

    rng = np.random.default_rng(7)
    pairs = sorted({(int(s), int(r)) for s, r in rng.integers(1, 40, size=(60, 2))})
    rows = [(s, r, int(d)) for s, r in pairs
            for d in np.sort(rng.choice(np.arange(19_000, 19_400), size=int(rng.integers(1, 9)),
                                        replace=False))]
    a = np.asarray(rows, dtype=np.int64)
    latest = Latest(a[:, 0], a[:, 1], a[:, 2], np.arange(len(a)), {}, {})
    series_id, source_id, col = latest.columns()
    code = a[:, 0] * 2**31 + a[:, 1]
    uniq, inverse = np.unique(code, return_inverse=True)
    assert np.array_equal(series_id, uniq // 2**31)
    assert np.array_equal(source_id, uniq % 2**31)
    assert np.array_equal(col, inverse)
    days, row = latest.day_rows()
    want_days, want_row = np.unique(a[:, 2], return_inverse=True)
    assert np.array_equal(days, want_days) and np.array_equal(row, want_row)
    empty = Latest(*(np.zeros(0, dtype=np.int64),) * 4, {}, {})
    assert [x.size for x in (*empty.columns(), *empty.day_rows())] == [0] * 5


def _revised_store(db_url: str, tmp_path) -> tuple[Store, pd.DataFrame]:
    """Two sources, companies first seen late (new columns), a day with no data at
    all (2024-01-18), and revisions both ways (a later collection wins; one imported
    later but collected earlier does not); returns the store and the later fixes."""
    from datetime import datetime

    from tracker.ingest import ImportOptions, import_file

    rng = np.random.default_rng(11)
    days = pd.date_range("2024-01-01", periods=40)
    frames = []
    for k in range(30):
        start = 0 if k < 20 else int(rng.integers(10, 35))  # ten first seen late
        seen = rng.random(40) > 0.2
        seen[:start] = False
        seen[17] = False  # a day with no data at all
        frames.append(pd.DataFrame({"company": f"co{k}", "date": days[seen].strftime("%Y-%m-%d"),
                                    "employees": rng.integers(100, 5000, seen.sum())}))
    rows = pd.concat(frames)
    store = Store(db_url)
    for source, part in (("a", rows.iloc[::2]), ("b", rows.iloc[1::2]), ("b", rows.iloc[::5])):
        part.to_csv(tmp_path / "x.csv", index=False)
        import_file(store, tmp_path / "x.csv",
                    ImportOptions(source=source, collected_at=datetime(2024, 3, 1)))
    # within a day the covering index orders a cell's rows by value: the revisions
    # that must win are the smaller ones, the one that must not the larger
    fixes = rows.iloc[[3, 30, 31, 200, 300, 402]].assign(employees=lambda f: f["employees"] - 7)
    fixes.to_csv(tmp_path / "later.csv", index=False)
    import_file(store, tmp_path / "later.csv",
                ImportOptions(source="a", collected_at=datetime(2024, 4, 1)))
    old = rows.iloc[[30, 44, 300, 402]].assign(employees=10**6)
    old.to_csv(tmp_path / "older.csv", index=False)
    import_file(store, tmp_path / "older.csv",
                ImportOptions(source="a", collected_at=datetime(2024, 1, 20)))

    return store, fixes


def test_a_window_read_day_by_day_is_the_one_read_at_once(db_url: str, tmp_path) -> None:
    """``Window.read`` (day by day on PostgreSQL, never all rows at once) gives what
    ``Window.of`` makes of every row read together: two sources, companies first seen
    late in the window (new columns), a day with no data, days before the window, and
    revisions both ways (a later collection wins; one imported later but collected
    earlier does not)."""
    from datetime import date

    from tracker.store.latest import day_number, latest_values

    store, fixes = _revised_store(db_url, tmp_path)
    first = day_number(date(2024, 1, 5))
    want = window_cache.Window.of(latest_values(store, since=date(2024, 1, 5)), first, 99)
    got = window_cache.Window.read(store, first, 99)
    assert got.values.shape == want.values.shape == (36, want.series_id.size)
    assert want.series_id.size > 30  # columns of both sources
    np.testing.assert_array_equal(got.series_id, want.series_id)
    np.testing.assert_array_equal(got.source_id, want.source_id)
    np.testing.assert_array_equal(got.values, want.values)
    assert got.dirty == want.dirty and got.last_observation == 99
    assert np.isnan(got.values[17 - 4]).all()  # the day without data
    seen = got.values[np.isfinite(got.values)]
    assert 10**6 not in seen  # the older collection never wins
    assert set(fixes["employees"]) & set(seen.astype(int))  # the later one does
    store.close()


@pytest.mark.parametrize("bounds", [(None, None), ("2024-01-05", None), (None, "2024-02-03"),
                                    ("2024-01-10", "2024-01-30")])
def test_a_whole_store_matrix_is_read_day_by_day_and_ordered_in_place(
        db_url: str, tmp_path, bounds: tuple[str | None, str | None]) -> None:
    """``build_matrix`` over the whole store (the local engine's full passes and the
    population step's first run) reads day by day and puts its one matrix in key order
    in place; it must be exactly the matrix of every row read at once, bounds or not,
    with the day without data dropped as that one drops it."""
    from datetime import date

    from tracker.config import Settings
    from tracker.detection import _matrix_of_latest, build_matrix
    from tracker.store.latest import latest_values
    from tracker.workspace import Workspace

    store, _ = _revised_store(db_url, tmp_path)
    since, until = (None if b is None else date.fromisoformat(b) for b in bounds)
    ws = Workspace(Settings(base_dir=tmp_path), store)
    want, want_keys = _matrix_of_latest(latest_values(store, since=since, until=until))
    got, keys = build_matrix(ws, since=since, until=until)
    assert want.shape[1] > 30 and pd.Timestamp("2024-01-18") not in got.index
    pd.testing.assert_frame_equal(keys, want_keys)
    pd.testing.assert_frame_equal(got, want)
    assert got.index[0] >= pd.Timestamp(since or "2024-01-01")
    assert got.index[-1] <= pd.Timestamp(until or "2024-02-09")
    store.close()


def test_a_partition_window_gives_the_matrix_its_cells_would() -> None:
    """A Dask task judges its kept window directly (no cells in between): the matrix
    must be the one a read of the same days would give, row for row and column for
    column, including columns appended out of id order, empty days, the empty row of
    the whole matrix's first day and ranges reaching past the window's ends."""
    from datetime import date

    from tracker.store.latest import date_of
    from tracker.store.slices import Slice, window_dense

    rng = np.random.default_rng(7)
    n_cells = 400
    sid = rng.integers(1, 40, n_cells)
    oid = rng.integers(1, 3, n_cells)
    day = rng.integers(1000, 1060, n_cells)
    day[day % 7 == 3] = 1001  # some days have nothing at all
    key = np.unique(np.stack([sid, oid, day], axis=1), axis=0)  # one value per cell
    sid, oid, day = key[:, 0], key[:, 1], key[:, 2]
    value = rng.integers(1, 10**6, sid.size).astype(np.int64)
    sl = Slice(sid, oid, day, value)
    built = window_cache.Window.of_cells(sid, oid, day, value, 1000, 9, part=1,
                                         last_series=40)
    # a kept window's columns are in the order they were first seen, not id order
    perm = rng.permutation(built.series_id.size)
    win = window_cache.Window(1000, built.series_id[perm], built.source_id[perm],
                              built.values[:, perm], 9, part=1, last_series=40)
    assert (np.diff(win.series_id) < 0).any()
    spans: list[tuple[date | None, date | None, int]] = [
        (None, None, 1000), (date_of(1010), date_of(1030), 990),
        (date_of(1005), None, 1005), (date_of(1040), date_of(1100), 1000),
        (None, date_of(1001), 1001), (date_of(1200), None, 1000)]
    for since, until, first in spans:
        want = sl.days(since, until).dense([first])
        got = window_dense(win, since, until, [first])
        for a, b in ((got.days, want.days), (got.series_id, want.series_id),
                     (got.source_id, want.source_id), (got.values, want.values)):
            np.testing.assert_array_equal(a, b)
        assert got.days.dtype == want.days.dtype == np.int64
    assert window_dense(win, date_of(1200), None, [1000]).empty
