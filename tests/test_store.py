"""The observation store on a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from tracker.errors import NotFoundError, StoreError
from tracker.store import Store
from tracker.store import companies as company_ops
from tracker.store.engine import head_revision
from tracker.store.schema import comparison_options, metadata


def frame(rows: list[tuple[str, str, int]], source: str = "csv") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "company": [r[0] for r in rows],
            "metric": "employees",
            "source": source,
            "as_of": pd.to_datetime([r[1] for r in rows]),
            "value": [r[2] for r in rows],
        }
    )


def write(store: Store, rows: list[tuple[str, str, int]], **kw):  # type: ignore[no-untyped-def]
    with store.transaction() as conn:
        ids = company_ops.resolve(conn, {r[0] for r in rows})
        data = frame(rows)
        data["company"] = data["company"].map(ids)
        return store.write_frame(conn, data, **kw)


def test_round_trip_and_idempotence(store: Store) -> None:
    rows = [
        ("Apple", "2022-10-10", 576562),
        ("Apple", "2022-10-11", 284991),
        ("Amazon", "2022-10-10", 1249921),
    ]
    first = write(store, rows)
    again = write(store, rows)
    assert (first.inserted, again.inserted, again.unchanged) == (3, 0, 3)
    got = store.observations()
    assert list(got["company"]) == ["amazon", "apple", "apple"]
    assert list(got["value"]) == [1249921, 576562, 284991]
    assert got["as_of"].dt.strftime("%Y-%m-%d").tolist() == [
        "2022-10-10",
        "2022-10-10",
        "2022-10-11",
    ]
    assert str(got["value"].dtype) == "int64"


def test_revision_is_kept_and_point_in_time_reads(store: Store) -> None:
    t1 = datetime(2022, 10, 11, 6, 0)
    t2 = t1 + timedelta(days=1)
    write(store, [("Apple", "2022-10-11", 284991)], collected_at=t1)
    revised = write(store, [("Apple", "2022-10-11", 290000)], collected_at=t2)
    assert revised.inserted == 1
    latest = store.observations()
    assert latest["value"].tolist() == [290000]
    before = store.observations(known_at=t1 + timedelta(hours=1))
    assert before["value"].tolist() == [284991]
    assert store.observations(known_at=t1 - timedelta(seconds=1)).empty
    every = store.observations(revisions=True)
    assert every["value"].tolist() == [284991, 290000]
    # going back to the first value is a new revision too: latest must follow it
    write(store, [("Apple", "2022-10-11", 284991)], collected_at=t2 + timedelta(days=1))
    assert store.observations()["value"].tolist() == [284991]
    assert len(store.observations(revisions=True)) == 3


def test_filters(store: Store) -> None:
    write(
        store,
        [("Apple", "2022-10-09", 1), ("Apple", "2022-10-10", 2), ("Binance", "2022-10-10", 3)],
    )
    apple = store.company_id("APPLE")
    assert store.observations([apple])["value"].tolist() == [1, 2]
    since = store.observations(since=pd.Timestamp("2022-10-10").date())
    assert sorted(since["value"].tolist()) == [2, 3]
    assert store.observations(metric="followers").empty
    assert store.observations([]).empty


def test_unknown_company_is_a_clear_error(store: Store) -> None:
    with pytest.raises(NotFoundError, match="unknown company 'nope'"):
        store.company_id("nope")


def test_failed_transaction_writes_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction() as conn:
        ids = company_ops.resolve(conn, ["Apple"])
        data = frame([("Apple", "2022-10-10", 5)])
        data["company"] = data["company"].map(ids)
        store.write_frame(conn, data)
        raise RuntimeError("killed half-way")
    assert store.observations().empty
    assert store.companies_summary().empty


def test_migrations_create_exactly_the_schema(store: Store) -> None:
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts=comparison_options(conn.dialect.name))
        assert ctx.get_current_revision() == head_revision()
        diff = compare_metadata(ctx, metadata)
    assert diff == []


def test_company_aliases(store: Store) -> None:
    store.upsert_company("apple", name="Apple Inc.", aliases=["AAPL"], tags={"industry": "tech"})
    assert store.company_id("aapl") == "apple"
    assert store.company_id("Apple Inc.") == "apple"
    with store.transaction() as conn:
        assert company_ops.resolve(conn, ["AAPL", "apple inc."]) == {
            "AAPL": "apple",
            "apple inc.": "apple",
        }


def test_companies_summary(store: Store) -> None:
    write(
        store,
        [("Apple", "2022-10-10", 10), ("Apple", "2022-10-12", 12), ("Amazon", "2022-10-11", 7)],
    )
    summary = store.companies_summary().set_index("id")
    assert summary.loc["apple", "last_value"] == 12
    assert str(summary.loc["apple", "first_day"]) == "2022-10-10"
    assert str(summary.loc["apple", "last_day"]) == "2022-10-12"
    assert summary.loc["apple", "observations"] == 2


def test_slugify() -> None:
    assert company_ops.slugify("Apple Inc.") == "apple-inc"
    assert company_ops.slugify("Nestlé S.A.") == "nestle-s-a"
    assert company_ops.slugify("  AT&T ") == "at-t"
    assert company_ops.slugify("株式会社テスト") == "zhushihuishetesuto_d46fbbrd"
    assert company_ops.slugify("   ") == company_ops.slugify("\u200b") == ""
    # same words, other encoding or case: one id; other words: another id
    assert company_ops.slugify("ｿﾆｰ") == company_ops.slugify("ソニー")
    assert company_ops.slugify("ΟΤΕ") == company_ops.slugify("οτε")
    assert company_ops.slugify("אל על") != company_ops.slugify("על אל")
    assert company_ops.slugify("東京 2") != company_ops.slugify("大阪 2")
    # a 200-character name whose ASCII fold would pass the id column: hashed, short
    long_fold = "\u3392" * 200  # each '㎒' folds to 'MHz'
    assert len(company_ops.slugify(long_fold)) <= company_ops.MAX_ID


def test_alias_key_folds_case_space_and_encoding() -> None:
    assert company_ops.alias_key("  Apple   INC ") == "apple inc"
    assert company_ops.alias_key("ΣΌΝΙ") == company_ops.alias_key("Σόνι")
    assert company_ops.alias_key("ｿﾆｰ") == company_ops.alias_key("ソニー")
    assert company_ops.alias_key("Nestle\u0301") == company_ops.alias_key("Nestlé")


def test_resolve_names_a_new_company_by_its_first_spelling(store: Store) -> None:
    with store.transaction() as conn:
        ids = company_ops.resolve(conn, ["Apple Inc", "APPLE INC", "apple inc.", " ", ""])
    assert ids == {"Apple Inc": "apple-inc", "APPLE INC": "apple-inc", "apple inc.": "apple-inc"}
    assert company_ops.name_of(store, "apple-inc") == "Apple Inc"


def test_latin_names_resolve_as_they_always_did(store: Store) -> None:
    """'STRASSE' is not 'Straße' to the ASCII rule ('strasse', 'strae'): it stays so,
    even though casefold equates them, because existing databases hold both."""
    with store.transaction() as conn:
        first = company_ops.resolve(conn, ["Straße"])
    with store.transaction() as conn:
        second = company_ops.resolve(conn, ["STRASSE"])
    assert (first, second) == ({"Straße": "strae"}, {"STRASSE": "strasse"})


def test_find_tries_the_typed_id_before_the_id_made_from_it(store: Store) -> None:
    with store.transaction() as conn:
        ids = company_ops.resolve(conn, ["!!!", "5BGFHDT7"])
    assert ids == {"!!!": "_5bgfhdt7", "5BGFHDT7": "5bgfhdt7"}
    assert store.company_id("_5bgfhdt7") == "_5bgfhdt7"
    assert store.company_id("!!!") == "_5bgfhdt7"
    assert store.company_id("5bgfhdt7") == "5bgfhdt7"
    with pytest.raises(NotFoundError):
        store.company_id("\u200b")


def test_sqlite_runs_in_wal_mode_with_busy_timeout(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    store.close()


WRITER = """
import sys, time
import pandas as pd
from tracker.store import Store
from tracker.store import companies as co
store = Store(sys.argv[1])
for i in range(int(sys.argv[2])):
    with store.transaction() as conn:
        ids = co.resolve(conn, ["Apple"])
        days = pd.date_range("2020-01-01", periods=200) + pd.Timedelta(days=200 * i)
        f = pd.DataFrame({"company": ["apple"] * 200, "metric": "employees", "source": "w",
                          "as_of": days, "value": range(200)})
        store.write_frame(conn, f)
        time.sleep(0.01)
"""


def test_reader_and_writer_in_two_processes_do_not_fail_each_other(
    sqlite_url: str, tmp_path: Path
) -> None:
    Store(sqlite_url).close()
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.Popen(
        [sys.executable, str(script), sqlite_url, "30"], stderr=subprocess.PIPE, text=True
    )
    reader = Store(sqlite_url)
    reads = 0
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        frame_ = reader.observations()
        assert len(frame_) % 200 == 0  # never a half-written transaction
        reads += 1
    _, errors = proc.communicate(timeout=60)
    assert proc.returncode == 0, errors
    assert reads > 0
    assert len(reader.observations()) == 30 * 200
    reader.close()


def test_bad_url_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not valid"):
        Store("not a url")
    with pytest.raises(StoreError, match="unsupported dialect"):
        Store("nosuchdb://x/y")


def test_unreachable_postgres_is_a_store_error_without_password() -> None:
    with pytest.raises(StoreError) as info:
        Store("postgresql+psycopg://user:s3cret@127.0.0.1:1/db?connect_timeout=2")
    assert "s3cret" not in str(info.value)
    assert "127.0.0.1" in str(info.value)


def test_point_in_time_sql_on_raw_rows(store: Store) -> None:
    """The stored rows themselves carry the timestamps that replays depend on."""
    t1 = datetime(2022, 1, 1, 12)
    write(store, [("Apple", "2022-01-01", 1)], collected_at=t1)
    with store.engine.connect() as conn:
        stamp = conn.execute(text("SELECT collected_at FROM observations")).scalar()
    assert pd.Timestamp(stamp) == pd.Timestamp(t1)


def _parallel(cmds: list[list[str]]) -> list[subprocess.CompletedProcess]:
    procs = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds
    ]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=180)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def test_concurrent_imports_store_each_value_once(db_url: str, tmp_path: Path) -> None:
    """Two imports of the same file at once: both succeed, nothing is stored twice."""
    csv = tmp_path / "same.csv"
    days = pd.date_range("2020-01-01", periods=300).strftime("%Y-%m-%d")
    pd.DataFrame(
        {
            "company": [f"C{i}" for i in range(100)] * 300,
            "date": [d for d in days for _ in range(100)],
            "count": 7,
        }
    ).to_csv(csv, index=False)
    Store(db_url).close()  # migrate first; the migration race has its own test
    cmd = [sys.executable, "-m", "tracker", "--db", db_url, "import", str(csv)]
    results = _parallel([cmd, cmd, cmd])
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
    news = sorted(
        int(r.stdout.split(" new")[0].rsplit(" ", 1)[1].replace(",", "")) for r in results
    )
    assert news == [0, 0, 30_000]
    store = Store(db_url)
    assert len(store.observations(revisions=True)) == 30_000
    store.close()


def test_concurrent_first_use_migrates_once(db_url: str) -> None:
    # a command that may create the store: read commands refuse a missing one
    cmd = [sys.executable, "-m", "tracker", "--db", db_url, "db", "upgrade"]
    results = _parallel([cmd, cmd, cmd])
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]


def test_stale_companies_are_those_quiet_since_the_cutoff(store: Store) -> None:
    """The report's stale list reads the days after the cutoff, not every observation:
    it must name exactly the companies without an ``employees`` observation in
    (cutoff, until] (never observed: no last day), with their last day by ``until``;
    a fresh segment metric or a value after ``until`` does not make a company fresh."""
    from datetime import date

    from tracker.store.report_data import stale_companies

    write(store, [("Fresh", "2022-10-01", 5), ("Fresh", "2022-10-09", 6),
                  ("Oldco", "2022-09-20", 7), ("Oldco", "2022-09-30", 8),
                  ("Later", "2022-09-29", 9), ("Later", "2022-10-20", 9),
                  ("Edge", "2022-10-02", 4)])
    with store.transaction() as conn:
        company_ops.resolve(conn, {"Never"})
        seg = frame([("Oldco", "2022-10-08", 3)]).assign(metric="employees:security",
                                                        company="oldco")
        store.write_frame(conn, seg)
    got = stale_companies(store, date(2022, 10, 10), date(2022, 10, 2))
    assert got == [("edge", "Edge", date(2022, 10, 2)), ("later", "Later", date(2022, 9, 29)),
                   ("never", "Never", None), ("oldco", "Oldco", date(2022, 9, 30))]
    assert [c for c, _, _ in stale_companies(store, date(2022, 10, 10), date(2022, 10, 1))] \
        == ["later", "never", "oldco"]


def test_series_names_are_read_once_then_only_the_new_ids(store: Store) -> None:
    from tracker.store.latest import key_names, names

    write(store, [("Apple", "2022-10-10", 10), ("Amazon", "2022-10-10", 7)])
    first = names(store)
    assert sorted(c for c, _ in first[0].values()) == ["amazon", "apple"]
    assert names(store)[0] is first[0]  # kept, not read again
    with store.transaction() as conn:
        data = frame([("Meta", "2022-10-10", 3)], source="scrape")
        data["company"] = data["company"].map(company_ops.resolve(conn, ["Meta"]))
        store.write_frame(conn, data)
    grown = names(store)
    assert grown[0] is first[0] and "scrape" in grown[1].values()
    with store.reading() as conn:
        assert grown == key_names(conn)
    # a database changed under the process in a way the store never does (here: a
    # series deleted, as a restore would): the counts disagree, so all is read again
    with store.transaction() as conn:
        conn.execute(text("DELETE FROM observations WHERE series_id IN "
                          "(SELECT id FROM series WHERE company_id = 'meta')"))
        conn.execute(text("DELETE FROM series WHERE company_id = 'meta'"))
    again = names(store)
    assert again[0] is not first[0]
    assert sorted(c for c, _ in again[0].values()) == ["amazon", "apple"]
