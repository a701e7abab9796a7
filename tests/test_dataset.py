"""Detection and replay straight from a Parquet dataset judge what the store would.

Why: a researcher replays years of a million companies from a dataset without
importing it; if the dataset path read a cell's value differently (an older
revision, a default metric or source of its own, a lost company at a part's edge, a
different first day) its verdicts would silently differ from those of the same data
imported. Real Parquet files, real SQLite stores, a real LocalCluster of two worker
processes.
"""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers import no_traceback, tracker
from tracker.config import Settings
from tracker.dataset import Part, detect_dataset, parts, read_part
from tracker.detect import detect
from tracker.detect.settings import DetectSettings
from tracker.detect.synthetic import generate
from tracker.detection import build_matrix
from tracker.errors import InputError
from tracker.ingest import ImportOptions, import_file
from tracker.replay import dataset_timeline
from tracker.store import Store
from tracker.workspace import Workspace

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
distributed = pytest.importorskip("distributed")

ROW_KEYS = ["company", "metric", "source", "date", "detected_on", "kind"]


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    """Two years of 150 series with shifts, glitches and drifts (daily and weekly)."""
    m, labels = generate(150, 450, seed=11, quiet_fraction=0.3, weekly_fraction=0.2)
    assert labels["kind"].nunique() >= 3
    long = m.stack().dropna().rename("employees").reset_index()
    long.columns = ["date", "series", "employees"]
    long["company"] = long["series"].str.split("/").str[0]
    long["date"] = long["date"].dt.strftime("%Y-%m-%d")
    long["employees"] = long["employees"].round().astype("int64")
    return long[["company", "date", "employees"]]


def _ws(tmp_path: Path, name: str, **detect_keys: object) -> Workspace:
    return Workspace(Settings(base_dir=tmp_path, sources={},
                              detect=DetectSettings(partition_size=40, **detect_keys)),
                     Store(f"sqlite:///{tmp_path / name}"))


def _store_verdicts(ws: Workspace, until: datetime | None = None) -> pd.DataFrame:
    matrix, keys = build_matrix(ws, until=None if until is None else until.date())
    return _sorted(detect(matrix, ws.settings.detect).join(keys, on="series")
                   .drop(columns="series"))


def _sorted(found: pd.DataFrame) -> pd.DataFrame:
    return found.sort_values(ROW_KEYS).reset_index(drop=True)


def test_an_exported_dataset_is_judged_as_its_store(rows: pd.DataFrame, scheduler: str,
                                                    tmp_path: Path) -> None:
    """With revisions (the latest wins), two metrics, two years of files, on both engines."""
    csv = tmp_path / "h.csv"
    rows.to_csv(csv, index=False)
    ws = _ws(tmp_path, "s.db")
    import_file(ws.store, csv, ImportOptions(collected_at=datetime(2021, 1, 1)))
    # a later revision of some cells, and a second metric for some companies
    fixed = rows.iloc[::7].assign(employees=lambda f: f["employees"] * 2 + 1)
    fixed.to_csv(tmp_path / "fix.csv", index=False)
    import_file(ws.store, tmp_path / "fix.csv", ImportOptions(collected_at=datetime(2023, 1, 1)))
    other = rows[rows["company"] < "co000030"]
    other.to_csv(tmp_path / "eng.csv", index=False)
    import_file(ws.store, tmp_path / "eng.csv", ImportOptions(metric="employees:engineering"))
    out = tmp_path / "ds"
    ws.export_parquet(out, revisions=True)
    assert len(list(out.rglob("*.parquet"))) >= 2  # a file per year

    want = _store_verdicts(ws)
    assert len(want) >= 60 and want["metric"].nunique() == 2
    local, n = detect_dataset(out, ws.settings.detect)
    assert n == 180
    pd.testing.assert_frame_equal(_sorted(local), want, check_exact=True)

    ranges = parts(out, 40)
    assert len(ranges) >= 3 and ranges[0].lo is None and ranges[-1].hi is None
    dask = ws.settings.detect.model_copy(update={"engine": "dask", "scheduler": scheduler})
    got, n = detect_dataset(out, dask)
    assert n == 180
    pd.testing.assert_frame_equal(_sorted(got), want, check_exact=True)
    # the parts hold every series once: none lost or judged twice at an edge
    keys = pd.concat([read_part(out, p).keys for p in ranges], ignore_index=True)
    assert len(keys) == 180 and not keys.duplicated().any()

    until = datetime(2021, 9, 30)
    cut, _ = detect_dataset(out, dask, until=until.date())
    pd.testing.assert_frame_equal(_sorted(cut), _store_verdicts(ws, until), check_exact=True)
    ws.close()


def test_a_researchers_own_dataset_with_its_own_columns(rows: pd.DataFrame, scheduler: str,
                                                        tmp_path: Path) -> None:
    """company/date/count columns, ISO dates as text, small row groups, days in reverse:
    parts cut at the row groups' statistics; no metric or source: an import's defaults."""
    own = rows.rename(columns={"employees": "count"}).sort_values(
        ["company", "date"], ascending=[True, False])
    # the last companies start a month late: their part's matrix still starts on the
    # whole dataset's first day, as the store's does (weekly blocks count from it)
    late = (own["company"] >= "co000120") & (own["date"] < "2021-02-01")
    own = own[~late]
    assert late.sum() > 0 and own["date"].min() < "2021-02-01"
    table = pa.table({"company": own["company"].to_numpy(), "date": own["date"].to_numpy(),
                      "count": own["count"].to_numpy().astype(np.int32)})
    pq.write_table(table, tmp_path / "own.parquet", row_group_size=3_000)
    ws = _ws(tmp_path, "s.db")
    import_file(ws.store, tmp_path / "own.parquet")
    want = _store_verdicts(ws)
    assert len(want) >= 40 and set(want["source"]) == {"parquet"}

    ranges = parts(tmp_path / "own.parquet", 40)
    meta = pq.ParquetFile(tmp_path / "own.parquet").metadata
    mins = {meta.row_group(g).column(0).statistics.min for g in range(meta.num_row_groups)}
    assert len(ranges) >= 3 and all(p.lo in mins for p in ranges[1:])
    dask = ws.settings.detect.model_copy(update={"engine": "dask", "scheduler": scheduler})
    got, _ = detect_dataset(tmp_path / "own.parquet", dask)
    pd.testing.assert_frame_equal(_sorted(got), want, check_exact=True)

    some = ["co000003", "co000100"]
    only, n = detect_dataset(tmp_path / "own.parquet", dask.model_copy(
        update={"partition_size": 1}), companies=some)
    assert n == 2
    pd.testing.assert_frame_equal(_sorted(only), want[want["company"].isin(some)]
                                  .reset_index(drop=True), check_exact=True)
    ws.close()


def test_replay_of_a_dataset_is_the_replay_of_its_import(rows: pd.DataFrame,
                                                         tmp_path: Path) -> None:
    csv = tmp_path / "h.csv"
    rows.to_csv(csv, index=False)
    db = f"sqlite:///{tmp_path / 's.db'}"
    assert tracker("--db", db, "import", str(csv), cwd=tmp_path).returncode == 0
    out = tmp_path / "ds"
    assert tracker("--db", db, "export", "--format", "parquet", "-o", str(out),
                   cwd=tmp_path).returncode == 0
    args = ["replay", "--start", "2021-03-01", "--end", "2021-12-31", "--format", "csv"]
    stored = tracker("--db", db, *args, cwd=tmp_path)
    assert stored.returncode == 0, stored.stderr
    none = f"sqlite:///{tmp_path / 'none.db'}"  # no store at all: none is opened or made
    replayed = tracker("--db", none, *args, "--dataset", str(out), cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    table = pd.read_csv(io.StringIO(replayed.stdout))
    assert len(table) >= 20 and {"provisional", "confirmed"} <= set(table["verdict"])
    assert replayed.stdout == stored.stdout
    assert not (tmp_path / "none.db").exists()

    one = dataset_timeline(DetectSettings(), out, companies=["co000001"])
    assert len(one) and one["company"].eq("co000001").all()


def test_a_cell_is_its_latest_revision_whatever_the_file_order(tmp_path: Path) -> None:
    path = tmp_path / "revised.parquet"
    stamps = pd.to_datetime(["2022-01-05", "2022-01-02", "2022-01-03", "2022-01-02"], utc=True)
    pq.write_table(pa.table({
        "company": ["a", "a", "a", "b"], "as_of": pd.to_datetime(
            ["2022-01-01", "2022-01-01", "2022-01-02", "2022-01-01"]).date,
        "value": [5, 3, 4, 7], "collected_at": stamps}), path)
    got = read_part(path)
    assert got.keys.to_dict("list") == {"company": ["a", "b"], "metric": ["employees"] * 2,
                                        "source": ["parquet"] * 2}
    assert got.slice.value.tolist() == [5.0, 4.0, 7.0]  # not 3: collected before the 5
    assert got.slice.series_id.tolist() == [0, 0, 1]


@pytest.mark.parametrize(("columns", "message"), [
    ({"company": ["a", "a"], "as_of": ["2022-01-01", "2022-01-02"]},
     r"no value column .*needs company, as_of and value"),
    ({"company": ["a", None], "as_of": ["2022-01-01", "2022-01-02"], "value": [1, 2]},
     r"1 row\(s\) with no company"),
    ({"company": ["a", "a"], "as_of": ["2022-01-01", "2022-01-02"], "value": [1, -2]},
     r"negative counts"),
    ({"company": ["a", "a"], "as_of": ["2022-01-01", "someday"], "value": [1, 2]},
     r"not a date"),
    ({"company": ["a", "a"], "as_of": [1.5, 2.5], "value": [1, 2]}, r"as_of is double"),
    ({"company": [1, 2], "as_of": ["2022-01-01", "2022-01-02"], "value": [1, 2]},
     r"company is int64, not text"),
    ({"company": ["a", "a"], "as_of": ["2022-01-01", "2022-01-01"], "value": [1, 2],
      "collected_at": ["2022-01-02", "2022-01-03"]}, r"collected_at is string, not a timestamp"),
])
def test_a_bad_dataset_is_one_clear_error(tmp_path: Path, columns: dict[str, list],
                                          message: str) -> None:
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table(columns), path)
    with pytest.raises(InputError, match=message) as err:
        detect_dataset(path, DetectSettings())
    assert str(path) in str(err.value)
    proc = tracker("--db", f"sqlite:///{tmp_path / 'x.db'}", "replay", "--dataset", str(path),
                   cwd=tmp_path)
    no_traceback(proc)
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_what_a_dataset_cannot_replay_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "ds.parquet"
    pq.write_table(pa.table({"company": ["a"], "as_of": ["2022-01-01"], "value": [1]}), path)
    db = f"sqlite:///{tmp_path / 'x.db'}"
    for extra in (["--as-known"], ["--labels", str(path)]):
        proc = tracker("--db", db, "replay", "--dataset", str(path), *extra, cwd=tmp_path)
        no_traceback(proc)
        assert proc.returncode != 0 and "import the dataset" in proc.stderr, proc.stderr
    missing = tracker("--db", db, "replay", "--dataset", str(tmp_path / "nope"), cwd=tmp_path)
    no_traceback(missing)
    assert "no such file or folder" in missing.stderr
    assert read_part(path, Part("b", None)).keys.empty
