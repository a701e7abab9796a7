"""Parquet datasets: export, read back by researchers' tools, import again, replay."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from tests.helpers import SAMPLE, no_traceback, python_env, tracker
from tracker.config import Settings
from tracker.ingest import ImportOptions, import_file
from tracker.replay import timeline
from tracker.store import Store
from tracker.workspace import Workspace

COLUMNS = ["company", "company_name", "metric", "source", "as_of", "value", "collected_at"]


def _history(tmp_path: Path, url: str) -> Store:
    """The sample learned in two steps (Apple's purge two days late) plus a revision,
    so collected_at differs between rows and one cell has two values."""
    rows = pd.read_csv(SAMPLE)
    late = (rows["company"] == "Apple") & (rows["date"] >= "2022-10-11")
    early_csv, late_csv, fix_csv = (tmp_path / n for n in ("early.csv", "late.csv", "fix.csv"))
    rows[~late].to_csv(early_csv, index=False)
    rows[late].to_csv(late_csv, index=False)
    fix = rows[(rows["company"] == "Amazon") & (rows["date"] == "2022-10-12")].copy()
    fix["employees"] += 7
    fix.to_csv(fix_csv, index=False)
    store = Store(url)
    import_file(store, early_csv, ImportOptions(collected_at=datetime(2022, 6, 1)))
    import_file(store, late_csv, ImportOptions(collected_at=datetime(2022, 10, 13, 7)))
    import_file(store, fix_csv, ImportOptions(collected_at=datetime(2022, 10, 20, 8, 30, 0,
                                                                    123456)))
    store.upsert_company("apple", name="Apple Inc.")
    return store


def test_round_trip_keeps_every_observation_and_collected_at(db_url: str,
                                                             tmp_path: Path) -> None:
    store = _history(tmp_path, db_url)
    before = store.observations(revisions=True)
    store.close()
    out = tmp_path / "dataset"
    proc = tracker("--db", db_url, "export", "--revisions", "--format", "parquet", "-o",
                   str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"{len(before):,} rows" in proc.stdout
    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    proc = tracker("--db", copy, "import", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"{len(before):,} new" in proc.stdout
    again = Store(copy)
    after = again.observations(revisions=True)
    pd.testing.assert_frame_equal(before, after)
    names = dict(zip(again.companies_summary()["id"], again.companies_summary()["name"],
                     strict=True))
    assert names["apple"] == "Apple Inc." and names["amazon"] == "Amazon"  # names came along
    assert (after["value"].groupby([after["company"], after["as_of"]]).size() > 1).sum() == 1
    again.close()
    # importing the same dataset again adds nothing
    proc = tracker("--db", copy, "import", str(out), cwd=tmp_path)
    assert " 0 new," in proc.stdout, proc.stdout


def test_pandas_pyarrow_and_dask_read_it_with_one_schema(tmp_path: Path) -> None:
    store = _history(tmp_path, f"sqlite:///{tmp_path / 't.db'}")
    ws = Workspace(Settings(base_dir=tmp_path), store)
    frame = ws.export(revisions=True)
    # a second year, so there are two partitions to prune
    extra = frame.iloc[:3].assign(as_of=pd.Timestamp("2023-01-02"))
    from tracker.parquet import write_dataset

    done = write_dataset(pd.concat([frame, extra], ignore_index=True), tmp_path / "ds")
    assert done.files == 2
    assert sorted(p.name for p in (tmp_path / "ds").iterdir() if p.is_dir()) == [
        "year=2022", "year=2023"]

    dataset = ds.dataset(tmp_path / "ds", format="parquet", partitioning="hive")
    assert dataset.schema.names == [*COLUMNS, "year"]
    types = {f.name: f.type for f in dataset.schema}
    assert types["as_of"] == pa.date32() and types["value"] == pa.int64()
    assert types["collected_at"] == pa.timestamp("us", tz="UTC")
    later = dataset.to_table(filter=ds.field("year") == 2023)
    assert later.num_rows == 3

    read = pd.read_parquet(tmp_path / "ds")
    assert len(read) == len(frame) + 3
    assert str(read["collected_at"].dtype) in ("datetime64[us, UTC]", "datetime64[ns, UTC]")
    stamps = read["collected_at"].dt.tz_localize(None).astype("datetime64[ns]")
    assert set(stamps) == set(frame["collected_at"])
    one_file = pd.read_parquet(next((tmp_path / "ds" / "year=2022").glob("*.parquet")))
    assert list(one_file.columns) == COLUMNS  # every column is in the files themselves

    import dask.dataframe as dd

    lazy = dd.read_parquet(str(tmp_path / "ds"), filters=[("year", "==", 2022)])
    assert int(lazy["value"].count().compute()) == len(frame)


def test_duckdb_and_polars_when_installed(tmp_path: Path) -> None:
    store = _history(tmp_path, f"sqlite:///{tmp_path / 't.db'}")
    ws = Workspace(Settings(base_dir=tmp_path), store)
    n = ws.export_parquet(tmp_path / "ds", revisions=True).rows
    readers = 0
    try:
        import duckdb
    except ImportError:
        duckdb = None
    if duckdb is not None:
        got = duckdb.sql(f"SELECT count(*) FROM read_parquet('{tmp_path}/ds/**/*.parquet', "
                         "hive_partitioning = true) WHERE year = 2022").fetchone()
        assert got == (n,)
        readers += 1
    try:
        import polars as pl
    except ImportError:
        pl = None
    if pl is not None:
        assert pl.scan_parquet(f"{tmp_path}/ds/**/*.parquet").collect().height == n
        readers += 1
    if not readers:
        pytest.skip("neither duckdb nor polars is installed (not dependencies of tracker)")


def test_export_replaces_its_own_dataset_and_refuses_other_folders(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    assert tracker("--db", db, "import", str(SAMPLE), cwd=tmp_path).returncode == 0
    out = tmp_path / "ds"
    assert tracker("--db", db, "export", "--format", "parquet", "-o", str(out),
                   cwd=tmp_path).returncode == 0
    first = pd.read_parquet(out)
    proc = tracker("--db", db, "export", "--format", "parquet", "-o", str(out), "--since",
                   "2022-10-01", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_parquet(out)) < len(first)  # replaced, not added to
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ds.")]  # no leftovers

    theirs = tmp_path / "mine"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("keep me")
    proc = tracker("--db", db, "export", "--format", "parquet", "-o", str(theirs), cwd=tmp_path)
    assert proc.returncode == 3
    no_traceback(proc)
    assert "not written by tracker" in proc.stderr
    assert [p.name for p in theirs.iterdir()] == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".mine.")]

    proc = tracker("--db", db, "export", "--format", "parquet", cwd=tmp_path)
    assert proc.returncode == 3 and "-o DIR" in proc.stderr


def test_a_bad_row_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    table = pa.table({"company": ["Apple", "Apple", "Amazon"],
                      "as_of": pa.array([date(2022, 10, 10), date(2022, 10, 11),
                                         date(2022, 10, 10)], pa.date32()),
                      "value": pa.array([576562, -3, None], pa.int64())})
    path = tmp_path / "counts.csv"  # misnamed: the magic bytes say Parquet
    pq.write_table(table, path)
    db = f"sqlite:///{tmp_path / 't.db'}"
    proc = tracker("--db", db, "import", str(path), cwd=tmp_path)
    assert proc.returncode == 3
    no_traceback(proc)
    assert f"{path}:2: column 'value': value '-3' is not a whole number >= 0" in proc.stderr
    assert f"{path}:3:" in proc.stderr
    store = Store(db)
    assert store.observations().empty
    store.close()
    good = tracker("--db", db, "import", str(path), "--skip-bad", cwd=tmp_path)
    assert good.returncode == 0 and "1 new" in good.stdout, good.stderr
    assert (tmp_path / "counts.rejects.csv").exists()


def test_replay_from_an_imported_dataset_matches_the_original(tmp_path: Path) -> None:
    """The documented path: import the dataset into a scratch database, replay there."""
    store = _history(tmp_path, f"sqlite:///{tmp_path / 'orig.db'}")
    ws = Workspace(Settings(base_dir=tmp_path), store)
    ws.export_parquet(tmp_path / "ds", revisions=True)
    scratch = Store(f"sqlite:///{tmp_path / 'scratch.db'}")
    import_file(scratch, tmp_path / "ds")
    copy = Workspace(Settings(base_dir=tmp_path), scratch)
    span = {"start": date(2022, 10, 9), "end": date(2022, 10, 16), "as_known": True}
    want, got = timeline(ws, **span), timeline(copy, **span)
    assert len(want) >= 4  # Apple's late purge day is among them
    pd.testing.assert_frame_equal(want, got)


def test_missing_pyarrow_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    assert tracker("--db", db, "import", str(SAMPLE), cwd=tmp_path).returncode == 0
    shutil.copy(SAMPLE, tmp_path / "x.csv")
    code = ("import sys; sys.modules['pyarrow'] = None; from tracker.cli import main; "
            f"sys.exit(main(['--db', {db!r}, 'export', '--format', 'parquet', '-o', 'out']))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, env=python_env(), timeout=60)
    assert proc.returncode == 3
    no_traceback(proc)
    assert "install headcount-tracker[parquet]" in proc.stderr
    assert not (tmp_path / "out").exists()
