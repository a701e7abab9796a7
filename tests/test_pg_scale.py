"""The bulk append (binary COPY on PostgreSQL, executemany on SQLite), quarterly
partitions, and the upgrade of a store holding data to the partitioned table."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from alembic import command
from sqlalchemy import text

from tests.helpers import tracker
from tracker.errors import ImportValidationError, StoreError
from tracker.ingest import ImportOptions, import_file
from tracker.store import Store, partitions
from tracker.store import companies as company_ops
from tracker.store.engine import _alembic_config, head_revision, lock_for_writing
from tracker.store.latest import latest_values

T0 = datetime(2022, 10, 10, 6)


def write(store: Store, rows: list[tuple[str, str, int]], at: datetime) -> int:
    with store.transaction() as conn:
        ids = company_ops.resolve(conn, {r[0] for r in rows})
        frame = pd.DataFrame({"company": [ids[r[0]] for r in rows], "metric": "employees",
                              "source": "csv", "as_of": pd.to_datetime([r[1] for r in rows]),
                              "value": [r[2] for r in rows]})
        return store.write_frame(conn, frame, collected_at=at).inserted


def cells(store: Store) -> list[tuple[str, str, int, datetime]]:
    got = store.observations(revisions=True)
    return [(c, f"{d:%Y-%m-%d}", int(v), t.to_pydatetime()) for c, d, v, t in
            zip(got["company"], got["as_of"], got["value"], got["collected_at"], strict=True)]


def test_the_append_rule_on_both_dialects(store: Store) -> None:
    day = [("Apple", "2022-10-10", 100), ("Apple", "2022-10-11", 50), ("Amazon", "2022-10-10", 9)]
    assert write(store, day, T0) == 3
    assert write(store, day, T0 + timedelta(hours=1)) == 0  # duplicates add nothing
    # a correction is a new revision, the first value stays in history
    assert write(store, [("Apple", "2022-10-11", 60)], T0 + timedelta(days=1)) == 1
    # an older snapshot imported late is compared with what was known at ITS time:
    # 50 was known at T0 + 2h, so nothing; 70 was not, so it is a revision at its time
    assert write(store, [("Apple", "2022-10-11", 50)], T0 + timedelta(hours=2)) == 0
    assert write(store, [("Apple", "2022-10-11", 70)], T0 + timedelta(hours=3)) == 1
    assert cells(store) == [
        ("amazon", "2022-10-10", 9, T0),
        ("apple", "2022-10-10", 100, T0),
        ("apple", "2022-10-11", 50, T0),
        ("apple", "2022-10-11", 70, T0 + timedelta(hours=3)),
        ("apple", "2022-10-11", 60, T0 + timedelta(days=1)),
    ]
    assert store.observations()["value"].tolist() == [9, 100, 60]


def test_a_bad_file_writes_nothing(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("company,date,employees\nApple,2022-10-10,100\nApple,2022-10-11,-5\n")
    with pytest.raises(ImportValidationError, match=r"bad\.csv:3: column 'employees'"):
        import_file(store, path)
    assert store.observations().empty


def test_a_failing_append_leaves_nothing_behind(pg_url: str) -> None:
    """Two different values for one cell at the same collected_at: the database
    refuses the second; its transaction (rows and the partitions it made) is undone."""
    store = Store(pg_url)
    write(store, [("Apple", "2031-05-01", 1)], T0)
    with store.reading() as conn:
        made = partitions.existing(conn)
    with pytest.raises(StoreError, match="unique"):
        write(store, [("Apple", "2040-01-01", 5), ("Apple", "2031-05-01", 2)], T0)
    with store.reading() as conn:
        assert partitions.existing(conn) == made  # 2040's partition was rolled back
    assert store.observations()["value"].tolist() == [1]
    store.close()


def test_partitions_are_made_for_new_quarters_and_one_ahead(pg_url: str) -> None:
    store = Store(pg_url)
    with store.reading() as conn:
        assert partitions.is_partitioned(conn)
        fresh = partitions.existing(conn)
    today = partitions.quarter_start(datetime.now().date())
    # a new store has this quarter and the next, so a daily run needs no DDL
    assert {partitions.partition_name(today),
            partitions.partition_name(partitions.next_quarter(today))} <= fresh
    write(store, [("Apple", "2029-12-31", 1), ("Apple", "2030-01-01", 2),
                  ("Amazon", "2019-02-03", 3), ("Amazon", "1985-06-30", 4)], T0)
    with store.reading() as conn:
        now = partitions.existing(conn)
        placed = dict(conn.execute(text(
            "SELECT as_of::text, tableoid::regclass::text FROM observations")).all())
    # one ahead of the latest quarter written, not of every one (2019q2 is not made)
    assert now - fresh == {"observations_1985q2", "observations_2019q1", "observations_2029q4",
                           "observations_2030q1", "observations_2030q2"}
    assert placed == {"2029-12-31": "observations_2029q4", "2030-01-01": "observations_2030q1",
                      "2019-02-03": "observations_2019q1",
                      "1985-06-30": "observations_1985q2"}  # before 2000: COPY's day zero
    # a trailing-window read of a slice of series touches only its quarters
    with store.reading() as conn:
        plan = "\n".join(conn.execute(text(
            "EXPLAIN SELECT value FROM observations o WHERE o.as_of >= DATE '2030-01-01' "
            "AND o.series_id = ANY(CAST('{1}' AS integer[]))")).scalars())
    assert "observations_2030q1" in plan and "observations_2029q4" not in plan
    slice_ = latest_values(store, since=date(2029, 12, 1), series=[1])
    assert slice_.value.tolist() == [1, 2]
    store.close()


def _store_at_0005(url: str) -> Store:
    store = Store(url, migrate=False)
    with store.engine.connect() as conn, conn.begin():
        lock_for_writing(conn)
        command.upgrade(_alembic_config(conn), "0005")
    return store


def test_db_upgrade_migrates_a_0005_store_holding_data(db_url: str, tmp_path: Path) -> None:
    store = _store_at_0005(db_url)
    csv = tmp_path / "old.csv"
    csv.write_text("company,date,employees\nApple,2021-12-31,10\nApple,2022-10-10,11\n"
                   "Amazon,2022-10-10,20\n")
    import_file(store, csv, ImportOptions(collected_at=T0))
    with store.reading() as conn:
        ids = sorted(conn.execute(text("SELECT id FROM observations")).scalars())
        assert not partitions.is_partitioned(conn)
    before = cells(store)
    store.close()

    proc = tracker("--db", db_url, "db", "upgrade", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"upgraded from 0005 to revision {head_revision()}" in proc.stdout

    store = Store(db_url)
    assert cells(store) == before
    with store.reading() as conn:
        assert sorted(conn.execute(text("SELECT id FROM observations")).scalars()) == ids
        assert partitions.is_partitioned(conn) == (store.dialect == "postgresql")
        if store.dialect == "postgresql":
            assert {"observations_2021q4", "observations_2022q4"} <= partitions.existing(conn)
    # the id sequence carries on after the copied rows, and the append works
    assert write(store, [("Apple", "2023-03-01", 12)], T0 + timedelta(days=200)) == 1
    with store.reading() as conn:
        assert max(conn.execute(text("SELECT id FROM observations")).scalars()) > max(ids)
    store.close()
    again = tracker("--db", db_url, "db", "upgrade", cwd=tmp_path)
    assert "already at revision" in again.stdout


def test_db_upgrade_creates_the_quarters_ahead(pg_url: str, tmp_path: Path) -> None:
    store = Store(pg_url)
    today = partitions.quarter_start(datetime.now().date())
    ahead = partitions.partition_name(partitions.next_quarter(today))
    with store.transaction() as conn:
        conn.exec_driver_sql(f'DROP TABLE "{ahead}"')
    store.close()
    proc = tracker("--db", pg_url, "db", "upgrade", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"already at revision {head_revision()}; created partitions {ahead}" in proc.stdout


def _observation_keys(conn) -> set[str]:  # type: ignore[no-untyped-def]
    """The foreign keys on observations (on PostgreSQL: the parent and every partition)."""
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql("PRAGMA foreign_key_list(observations)").fetchall()
        return {f"{row[3]}->{row[2]}" for row in rows}
    return set(conn.execute(text(
        "SELECT c.conrelid::regclass::text || ':' || c.conname FROM pg_constraint c "
        "WHERE c.contype = 'f' AND c.conrelid::regclass::text LIKE 'observations%'"
    )).scalars())


def test_observations_parents_are_checked_once_per_batch(store: Store) -> None:
    """PostgreSQL has no row-wise foreign keys on observations (migration 0011); the
    append's set-wise check refuses a batch naming a missing series, source or run,
    writing nothing. SQLite keeps its keys."""
    import numpy as np

    assert write(store, [("Apple", "2022-10-10", 100)], T0) == 1
    with store.reading() as conn:
        keys = _observation_keys(conn)
    if store.dialect == "sqlite":
        assert keys == {"series_id->series", "source_id->sources", "run_id->runs"}
        return
    assert keys == set()
    with store.reading() as conn:
        series_id, source_id = conn.execute(
            text("SELECT series_id, source_id FROM observations")).one()
    day = np.array(["2022-10-11"], dtype="datetime64[D]")
    for bad, (sid, src, run) in {
        "1 staged rows name a series that does not exist": (series_id + 1000, source_id, None),
        "1 staged rows name a source that does not exist": (series_id, source_id + 1000, None),
        "names run 424242, which does not exist": (series_id, source_id, 424242),
    }.items():
        with pytest.raises(StoreError, match=bad), store.transaction() as conn:
            store._stage(conn, np.array([sid]), np.array([src]), day, np.array([5]))
            store._check_parents(conn, run)
    # the public path refuses a missing run the same way, and writes nothing
    with pytest.raises(StoreError, match="run 424242"), store.transaction() as conn:
        ids = company_ops.resolve(conn, ["Apple"])
        frame = pd.DataFrame({"company": [ids["Apple"]], "metric": "employees",
                              "source": "csv", "as_of": pd.to_datetime(["2022-10-12"]),
                              "value": [7]})
        store.write_frame(conn, frame, collected_at=T0, run_id=424242)
    assert len(cells(store)) == 1


def test_migration_0011_down_restores_the_keys_and_up_drops_them(pg_url: str) -> None:
    store = Store(pg_url)
    assert write(store, [("Apple", "2022-10-10", 100)], T0) == 1
    with store.engine.connect() as conn, conn.begin():
        lock_for_writing(conn)
        command.downgrade(_alembic_config(conn), "0010")
    with store.reading() as conn:
        restored = _observation_keys(conn)
    assert {k.split(":")[1] for k in restored} == {
        "fk_observations_series_id_series", "fk_observations_source_id_sources",
        "fk_observations_run_id_runs"}
    assert "observations_2022q4:fk_observations_series_id_series" in restored
    with store.engine.connect() as conn, conn.begin():
        lock_for_writing(conn)
        command.upgrade(_alembic_config(conn), "head")
    with store.reading() as conn:
        assert _observation_keys(conn) == set()
    assert write(store, [("Apple", "2022-10-11", 90)], T0) == 1
    store.close()
