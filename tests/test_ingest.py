"""CSV import: layouts, edge cases, validation, all-or-nothing files, SIGKILL."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tracker.errors import ImportValidationError, InputError
from tracker.ingest import ImportOptions, import_file
from tracker.store import Store

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "samples" / "purge_2022.csv"


def values(store: Store, company: str | None = None) -> dict[tuple[str, str], int]:
    obs = store.observations()
    if company:
        obs = obs[obs["company"] == company]
    return {(r.company, r.as_of.strftime("%Y-%m-%d")): int(r.value) for r in obs.itertuples()}


EDGE_CASES = [
    pytest.param(
        "company,date,count\nApple,2022-10-10,576562\n",
        {("apple", "2022-10-10"): 576562},
        id="plain",
    ),
    pytest.param(
        "\ufeffcompany,date,count\nApple,2022-10-10,5\n", {("apple", "2022-10-10"): 5}, id="bom"
    ),
    pytest.param(
        "company,date,count\r\nApple,2022-10-10,5\r\nAmazon,2022-10-10,6\r\n",
        {("apple", "2022-10-10"): 5, ("amazon", "2022-10-10"): 6},
        id="crlf",
    ),
    pytest.param(
        'company,date,count\n"Apple, Inc.",2022-10-10,"1,234"\n',
        {("apple-inc", "2022-10-10"): 1234},
        id="quoted-and-thousands",
    ),
    pytest.param(
        "company,date,count\nApple,2022-10-10,1 234 567\nAmazon,2022-10-10,1_000\n",
        {("apple", "2022-10-10"): 1234567, ("amazon", "2022-10-10"): 1000},
        id="space-and-underscore-separators",
    ),
    pytest.param(
        "company,date,count\n\nApple,2022-10-10,5\n\n\nAmazon,2022-10-11,6\n\n",
        {("apple", "2022-10-10"): 5, ("amazon", "2022-10-11"): 6},
        id="blank-lines",
    ),
    pytest.param(
        "company,date,count\nApple,2022-10-10,5\ncompany,date,count\nApple,2022-10-11,6\n",
        {("apple", "2022-10-10"): 5, ("apple", "2022-10-11"): 6},
        id="repeated-header",
    ),
    pytest.param(
        "Company Name,As Of Date,Employee Count\nApple,2022-10-10,5\n",
        {("apple", "2022-10-10"): 5},
        id="header-spellings",
    ),
    pytest.param(
        "name,day,headcount\nApple,2022-10-10T00:00:00,5\n",
        {("apple", "2022-10-10"): 5},
        id="timestamp-as-date",
    ),
    pytest.param(
        "company,date,count\nApple,2022-10-10,5\nApple,2022-10-10,5\n",
        {("apple", "2022-10-10"): 5},
        id="identical-duplicates-are-fine",
    ),
    pytest.param(
        "company,date,count\nApple,2022-10-10,5.0\n",
        {("apple", "2022-10-10"): 5},
        id="integral-float",
    ),
]


@pytest.mark.parametrize(("content", "expected"), EDGE_CASES)
def test_edge_cases(store: Store, write_csv, content: str, expected: dict) -> None:  # type: ignore[no-untyped-def]
    path = write_csv("in.csv", content)
    result = import_file(store, path)
    assert values(store) == expected
    assert result.inserted == len(expected)


def test_gzip(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "in.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("company,date,count\nApple,2022-10-10,5\n")
    import_file(store, path)
    assert values(store) == {("apple", "2022-10-10"): 5}


def test_wide_layout(store: Store, write_csv) -> None:  # type: ignore[no-untyped-def]
    path = write_csv(
        "wide.csv", "date,Apple,Amazon\n2022-10-10,576562,\n2022-10-11,284991,838601\n"
    )
    result = import_file(store, path)
    assert result.layout == "wide"
    assert values(store) == {
        ("apple", "2022-10-10"): 576562,
        ("apple", "2022-10-11"): 284991,
        ("amazon", "2022-10-11"): 838601,
    }


def test_wide_layout_bad_cell_names_line_and_column(store: Store, write_csv) -> None:  # type: ignore[no-untyped-def]
    path = write_csv("wide.csv", "date,Apple,Amazon\n2022-10-10,576562,12\n2022-10-11,oops,9\n")
    with pytest.raises(ImportValidationError) as info:
        import_file(store, path)
    assert f"{path}:3: column 'Apple': value 'oops'" in str(info.value)
    assert store.observations().empty


def test_thinknum_layout(store: Store, write_csv) -> None:  # type: ignore[no-untyped-def]
    content = (
        "dataset_id,as_of_date,company_name,followers_count,employees_on_platform,link,"
        "industry,date_added,date_updated\n"
        "1,2022-10-10,Apple,100,576562,https://www.linkedin.com/company/apple,"
        "Consumer Electronics,2018-01-01,2022-10-10\n"
        "1,2022-10-11,Apple,101,284991,https://www.linkedin.com/company/apple,"
        "Consumer Electronics,2018-01-01,2022-10-11\n"
    )
    result = import_file(store, write_csv("tn.csv", content))
    assert result.layout == "thinknum"
    obs = store.observations()
    assert set(obs["metric"]) == {"employees", "followers"}
    assert set(obs["source"]) == {"thinknum"}
    emp = obs[obs["metric"] == "employees"]["value"].tolist()
    assert emp == [576562, 284991]
    with store.engine.connect() as conn:
        row = conn.exec_driver_sql("SELECT tags, external_ids FROM companies").one()
    assert "Consumer Electronics" in str(row[0])
    assert "linkedin.com/company/apple" in str(row[1])


def test_explicit_columns_metric_and_source(store: Store, write_csv) -> None:  # type: ignore[no-untyped-def]
    path = write_csv("x.csv", "org_label,when,n\nApple,2022-10-10,7\n")
    with pytest.raises(InputError, match="no company column"):
        import_file(store, path, ImportOptions(layout="long", date_col="when"))
    options = ImportOptions(
        company_col="org_label",
        date_col="when",
        count_col="n",
        metric="employees:security",
        source="recruiter",
    )
    import_file(store, path, options)
    obs = store.observations()
    assert obs[["metric", "source", "value"]].values.tolist() == [
        ["employees:security", "recruiter", 7]
    ]


def test_missing_named_column_lists_the_columns(store: Store, write_csv) -> None:  # type: ignore[no-untyped-def]
    path = write_csv("x.csv", "company,date,count\nApple,2022-10-10,7\n")
    with pytest.raises(InputError, match=r"no column 'nope' for the count \(columns: company"):
        import_file(store, path, ImportOptions(count_col="nope"))


BAD = (
    "company,date,count\n"
    "Apple,2022-10-10,5\n"  # 2 ok
    "Apple,10/11/2022,5\n"  # 3 bad date
    "Amazon,2022-10-10,12a\n"  # 4 not a number
    "Amazon,2022-10-11,-3\n"  # 5 negative
    ",2022-10-11,3\n"  # 6 empty company
    "Binance,2022-09-03,7846\n"  # 7 conflicts with 8
    "Binance,2022-09-03,7800\n"  # 8
    "Binance,2022-09-04,2.5\n"  # 9 not whole
    "Binance,2022-09-05,6102\n"  # 10 ok
)


def test_validation_lists_every_problem_and_writes_nothing(store: Store, write_csv) -> None:  # type: ignore[no-untyped-def]
    path = write_csv("bad.csv", BAD)
    with pytest.raises(ImportValidationError) as info:
        import_file(store, path)
    message = str(info.value)
    assert info.value.total == 7
    for fragment in (
        f"{path}:3: column 'date': value '10/11/2022' is not a date",
        f"{path}:4: column 'count': value '12a' is not a whole number",
        f"{path}:5: column 'count': value '-3'",
        f"{path}:6: column 'company': empty company name",
        f"{path}:7: conflicting duplicate rows for 'Binance' on 2022-09-03: "
        "values 7846 (line 7), 7800 (line 8)",
        f"{path}:9: column 'count': value '2.5'",
    ):
        assert fragment in message
    assert "nothing from this file was written" in message
    assert store.observations().empty


def test_only_first_twenty_problems_are_listed(store: Store, write_csv) -> None:  # type: ignore[no-untyped-def]
    rows = "".join(f"Apple,2022-01-{d:02d},x\n" for d in range(1, 31))
    with pytest.raises(ImportValidationError) as info:
        import_file(store, write_csv("many.csv", "company,date,count\n" + rows))
    assert len(info.value.problems) == 20
    assert "... and 10 more" in str(info.value)


def test_skip_bad_writes_good_rows_and_a_rejects_file(
    store: Store, write_csv, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    path = write_csv("bad.csv", BAD)
    result = import_file(store, path, ImportOptions(skip_bad=True))
    assert (result.rows, result.rejected, result.inserted) == (2, 7, 2)
    assert values(store) == {("apple", "2022-10-10"): 5, ("binance", "2022-09-05"): 6102}
    rejects = pd.read_csv(result.rejects_path, dtype=str, keep_default_na=False)
    assert result.rejects_path == tmp_path / "bad.rejects.csv"
    assert rejects["line"].tolist() == ["3", "4", "5", "6", "7", "8", "9"]
    assert list(rejects.columns) == ["line", "company", "date", "count", "reason"]
    assert rejects.loc[1, "count"] == "12a"
    assert "not a whole number" in rejects.loc[1, "reason"]


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("", "the file is empty"),
        ("company,date,count\n", "no data rows"),
        ("a,b\n1,2\n", "no date column found"),
    ],
)
def test_unusable_files(store: Store, write_csv, content: str, error: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=error):
        import_file(store, write_csv("u.csv", content))


def test_not_utf8_and_missing_file(store: Store, write_csv, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_csv("latin.csv", "company,date,count\nNestl\xe9,2022-01-01,5\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        import_file(store, path)
    with pytest.raises(InputError, match="no such file"):
        import_file(store, tmp_path / "absent.csv")


def test_sample_import_is_idempotent(store: Store) -> None:
    first = import_file(store, SAMPLE)
    second = import_file(store, SAMPLE)
    assert first.inserted == first.rows > 1000
    assert second.inserted == 0
    assert len(store.observations()) == first.rows


def _big_csv(path: Path, companies: int = 400, days: int = 500) -> int:
    dates = pd.date_range("2020-01-01", periods=days).strftime("%Y-%m-%d")
    frame = pd.DataFrame(
        {
            "company": [f"Company {i}" for i in range(companies)] * days,
            "date": [d for d in dates for _ in range(companies)],
            "count": 1000,
        }
    )
    frame.to_csv(path, index=False)
    return len(frame)


def test_sigkilled_import_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    db = tmp_path / "kill.db"
    url = f"sqlite:///{db}"
    csv = tmp_path / "big.csv"
    rows = _big_csv(csv)
    Store(url).close()
    cmd = [sys.executable, "-m", "tracker", "--db", url, "import", str(csv)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wal = Path(str(db) + "-wal")
    start_size = wal.stat().st_size if wal.exists() else 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if wal.exists() and wal.stat().st_size > start_size + 1_000_000:
            break  # it is writing the observations now
        time.sleep(0.005)
    assert proc.poll() is None, "import finished before it could be killed; make the file larger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = Store(url)
    assert len(store.observations()) == 0
    assert store.companies_summary().empty
    result = import_file(store, csv)
    assert result.inserted == rows
    assert len(store.observations()) == rows
    store.close()
