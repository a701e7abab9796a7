"""Researchers' snapshots (issue 10.7): a folder of dated files, a collected_at column,
and an as-known replay that says why it found nothing.

The real CLI runs in a subprocess where the whole path matters (one process for a
folder, exit codes, one line per problem); the library is driven on SQLite and
PostgreSQL for what the store must hold afterwards.
"""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from helpers import tracker

from tracker.cli import main
from tracker.errors import InputError
from tracker.ingest import ImportOptions, import_file, import_snapshots, snapshot_files
from tracker.store import Store

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "samples" / "purge_2022.csv"
H = "company,date,count\n"
END_OF_DAY = (23, 59, 59, 999999)


def revisions(url: str) -> list[tuple[str, str, int, datetime]]:
    """Every stored row: (company, day, value, collected_at), in store order."""
    store = Store(url)
    try:
        obs = store.observations(revisions=True)
    finally:
        store.close()
    return [(r.company, f"{r.as_of:%Y-%m-%d}", int(r.value), r.collected_at.to_pydatetime())
            for r in obs.itertuples()]


def write(folder: Path, files: dict[str, str | bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        data = content if isinstance(content, bytes) else content.encode()
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def test_a_folder_imports_in_time_order_with_each_files_time(tmp_path: Path) -> None:
    """Names sort one way (2022..., snapshot_...) and times another: the older snapshot
    must go first, or a count it shares with the newer one is learned a day late."""
    snaps = write(tmp_path / "snaps", {
        "2022-10-10.csv": H + "Apple,2022-10-09,100\nApple,2022-10-10,90\n",
        "snapshot_20221009.csv": H + "Apple,2022-10-09,100\n",
        "2022-10-11T06:30:00Z.csv.gz": gzip.compress(
            (H + "Apple,2022-10-10,91\nApple,2022-10-11,92\n").encode(), mtime=0),
        "linkedin-2022-10-12T08:00:00+02:00.jsonl": json.dumps(
            {"name": "Apple", "employee_count_by_month": {"2022-10": 93}}) + "\n",
    })
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    done = tracker("--db", url, "import", "--snapshot-dir", str(snaps), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(" collected ")[0].rsplit("/", 1)[1] for line in lines] == [
        "snapshot_20221009.csv", "2022-10-10.csv", "2022-10-11T06:30:00Z.csv.gz",
        "linkedin-2022-10-12T08:00:00+02:00.jsonl"]
    assert "collected 2022-10-11T06:30:00Z: 2 rows (long), 2 new" in lines[2]
    assert "2022-10-10.csv collected 2022-10-10T23:59:59Z: 2 rows (long), 1 new, 1 unchanged" \
        in lines[1]
    assert sorted(revisions(url)) == [
        ("apple", "2022-10-01", 93, datetime(2022, 10, 12, 6)),
        ("apple", "2022-10-09", 100, datetime(2022, 10, 9, *END_OF_DAY)),
        ("apple", "2022-10-10", 90, datetime(2022, 10, 10, *END_OF_DAY)),
        ("apple", "2022-10-10", 91, datetime(2022, 10, 11, 6, 30)),
        ("apple", "2022-10-11", 92, datetime(2022, 10, 11, 6, 30)),
    ]



def test_the_library_writes_one_folder_on_sqlite_and_postgresql(store: Store,
                                                               tmp_path: Path) -> None:
    snaps = write(tmp_path / "snaps", {
        f"2022-10-{d:02d}.csv": H + "".join(f"Company {i},2022-10-{d:02d},{100 + i + d}\n"
                                            for i in range(50))
        for d in range(1, 11)
    })
    results = import_snapshots(store, snaps)
    assert [r.collected_at for r in results] == [
        datetime(2022, 10, d, *END_OF_DAY) for d in range(1, 11)]
    assert sum(r.inserted for r in results) == 500
    obs = store.observations(revisions=True)
    assert len(obs) == 500
    # each day was learned on its own day: what was known on 2022-10-05 ends there
    known = store.observations(known_at=datetime(2022, 10, 5, 23, 59, 59, 999999))
    assert known["as_of"].max() == pd.Timestamp("2022-10-05") and len(known) == 250


BAD_NAMES = [
    ("october.csv", "does not say when the snapshot was collected"),
    ("2022-10.csv", "YYYY-MM-DD.csv"),
    ("2022-02-30.csv", "'2022-02-30' in its name is not a real date or time"),
    ("2022-10-10_final.csv", "does not say when"),
    ("2022-10-10.xlsx", "not a snapshot file"),
    ("2099-01-01.csv", "in the future"),
]


@pytest.mark.parametrize(("name", "says"), BAD_NAMES, ids=[n for n, _ in BAD_NAMES])
def test_a_bad_name_is_an_error_naming_it_and_nothing_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        name: str, says: str) -> None:
    write(tmp_path / "snaps", {"2022-10-10.csv": H + "Apple,2022-10-10,5\n", name: H})
    monkeypatch.chdir(tmp_path)
    code = main(["--db", "sqlite:///db.sqlite", "import", "--snapshot-dir", "snaps"])
    err = capsys.readouterr().err
    assert code == 3
    lines = err.strip().splitlines()
    assert lines[0].startswith("error: snaps: 1 file(s)") and "nothing was imported" in lines[0]
    assert len(lines) == 2 and lines[1].startswith(f"  snaps/{name}: ") and says in lines[1]
    assert "Traceback" not in err
    assert revisions("sqlite:///" + str(tmp_path / "db.sqlite")) == []


def test_every_bad_name_is_listed_and_hidden_and_rejects_files_are_not_snapshots(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "snaps", {"a.csv": H, "notes.txt": "x", ".DS_Store": "x",
                               "2022-10-10.rejects.csv": "line,reason\n",
                               "sub/2022-10-11.csv": H + "Apple,2022-10-11,5\n"})
    monkeypatch.chdir(tmp_path)
    assert main(["--db", "sqlite:///db.sqlite", "import", "--snapshot-dir", "snaps"]) == 3
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("error: snaps: 2 file(s)")
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["snaps/a.csv",
                                                                  "snaps/notes.txt"]


def test_two_files_for_one_time_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "snaps", {"2022-10-10.csv": H + "Apple,2022-10-10,5\n",
                               "snapshot_20221010.csv": H + "Apple,2022-10-10,6\n"})
    monkeypatch.chdir(tmp_path)
    assert main(["--db", "sqlite:///db.sqlite", "import", "--snapshot-dir", "snaps"]) == 3
    err = capsys.readouterr().err
    assert "name the same time" in err and "2022-10-10.csv and snapshot_20221010.csv" in err
    assert revisions("sqlite:///" + str(tmp_path / "db.sqlite")) == []


def test_one_bad_row_in_one_snapshot_writes_nothing_and_names_file_and_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "snaps", {"2022-10-10.csv": H + "Apple,2022-10-10,5\n",
                               "2022-10-11.csv": H + "Apple,2022-10-11,5\nAmazon,2022-10-11,x\n"})
    monkeypatch.chdir(tmp_path)
    assert main(["--db", "sqlite:///db.sqlite", "import", "--snapshot-dir", "snaps"]) == 3
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert lines[0] == ("error: snaps/2022-10-11.csv: 1 bad row(s); nothing from snaps was "
                        "written (use --skip-bad to import the good rows):")
    assert lines[1].startswith("  snaps/2022-10-11.csv:3: column 'count': value 'x'")
    assert out == "" and revisions("sqlite:///" + str(tmp_path / "db.sqlite")) == []
    # with --skip-bad the rejects file lands beside the snapshot and is no snapshot itself
    for _ in range(2):
        assert main(["--db", "sqlite:///db.sqlite", "import", "--snapshot-dir", "snaps",
                     "--skip-bad"]) == 0
    assert (tmp_path / "snaps" / "2022-10-11.rejects.csv").exists()
    assert len(revisions("sqlite:///" + str(tmp_path / "db.sqlite"))) == 2


@pytest.mark.parametrize(("argv", "says"), [
    (["--snapshot-dir", "snaps", "--collected-at", "2022-10-10"], "each snapshot's time"),
    (["--snapshot-dir", "snaps", "a.csv"], "not both"),
    ([], "not neither"),
    (["--snapshot-dir", "nope"], "nope: no such folder"),
    (["--snapshot-dir", "a.csv"], "a.csv: is a file"),
    (["--snapshot-dir", "empty"], "empty: no snapshot files"),
])
def test_flags_that_do_not_go_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str], argv: list[str],
                                       says: str) -> None:
    write(tmp_path / "snaps", {"2022-10-10.csv": H + "Apple,2022-10-10,5\n"})
    (tmp_path / "empty").mkdir()
    (tmp_path / "a.csv").write_text(H + "Apple,2022-10-10,5\n")
    monkeypatch.chdir(tmp_path)
    assert main(["--db", "sqlite:///db.sqlite", "import", *argv]) == 3
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert revisions("sqlite:///" + str(tmp_path / "db.sqlite")) == []


def test_a_collected_at_column_gives_each_row_its_time(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    path.write_text("company,date,count,collected_at\n"
                    "Apple,2022-10-10,5,2022-10-10T06:00:00Z\n"
                    "Apple,2022-10-10,6,2022-10-12\n"          # a correction, two days on
                    "Apple,2022-10-11,6,2022-10-11T08:00:00+02:00\n"
                    "Apple,2022-10-12,6,2022-10-12T06:00:00\n")
    result = import_file(store, path)
    assert (result.rows, result.inserted) == (4, 4)
    got = sorted((f"{r.as_of:%Y-%m-%d}", int(r.value), r.collected_at.to_pydatetime())
                 for r in store.observations(revisions=True).itertuples())
    assert got == [("2022-10-10", 5, datetime(2022, 10, 10, 6)),
                   ("2022-10-10", 6, datetime(2022, 10, 12, *END_OF_DAY)),
                   ("2022-10-11", 6, datetime(2022, 10, 11, 6)),
                   ("2022-10-12", 6, datetime(2022, 10, 12, 6))]
    known = store.observations(known_at=datetime(2022, 10, 11, 12))
    assert known.set_index("as_of")["value"].to_dict() == {
        pd.Timestamp("2022-10-10"): 5, pd.Timestamp("2022-10-11"): 6}
    with pytest.raises(InputError, match="collected_at column, and a time for the whole"):
        import_file(store, path, ImportOptions(collected_at=datetime(2022, 10, 1)))


def test_a_history_imported_again_adds_nothing(store: Store, tmp_path: Path) -> None:
    """Idempotence holds for files of the past too: the 2022-10-10 count (5) is again
    compared with what was known on 2022-10-10 (5), not with the later correction (6)."""
    path = tmp_path / "history.csv"
    path.write_text("company,date,count,collected_at\n"
                    "Apple,2022-10-10,5,2022-10-10T06:00:00Z\n"
                    "Apple,2022-10-10,6,2022-10-12\n")
    snaps = write(tmp_path / "snaps", {"2022-10-10.csv": H + "Amazon,2022-10-10,7\n",
                                       "2022-10-11.csv": H + "Amazon,2022-10-10,8\n"})
    assert import_file(store, path).inserted == 2
    assert sum(r.inserted for r in import_snapshots(store, snaps)) == 2
    assert import_file(store, path).inserted == 0
    assert sum(r.inserted for r in import_snapshots(store, snaps)) == 0
    assert len(store.observations(revisions=True)) == 4


def test_bad_collected_at_cells_are_bad_rows_with_their_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.csv").write_text(
        "company,date,count,collected_at\n"
        "Apple,2022-10-10,5,2022-10-10T06:00:00Z\n"
        "Apple,2022-10-11,5,yesterday\n"
        "Apple,2022-10-12,5,\n"
        "Apple,2022-10-13,5,2099-01-01T00:00:00Z\n"
        "Apple,2022-10-14,5,2022-10-14\n"
        "Apple,2022-10-14,6,2022-10-15\n")  # two revisions of one day: fine
    monkeypatch.chdir(tmp_path)
    assert main(["--db", "sqlite:///db.sqlite", "import", "a.csv"]) == 3
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("error: a.csv: 3 bad row(s); nothing from this file")
    assert lines[1].startswith("  a.csv:3: column 'collected_at': value 'yesterday' is not a "
                               "timestamp")
    assert lines[2].startswith("  a.csv:4: column 'collected_at': empty")
    assert lines[3].startswith("  a.csv:5: column 'collected_at': value "
                               "'2099-01-01T00:00:00Z' is in the future")
    assert len(lines) == 4
    assert revisions("sqlite:///" + str(tmp_path / "db.sqlite")) == []


def test_an_export_of_revisions_imports_back_as_the_same_history(tmp_path: Path) -> None:
    """`export --revisions` is a collected_at-column file: a store can be moved whole."""
    src, dst = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    snaps = write(tmp_path / "snaps", {
        "2022-10-10.csv": H + "Apple,2022-10-10,5\nAmazon,2022-10-10,7\n",
        "2022-10-11T06:00:00Z.csv": H + "Apple,2022-10-10,4\nApple,2022-10-11,3\n",
    })
    assert tracker("--db", src, "import", "--snapshot-dir", str(snaps),
                   cwd=tmp_path).returncode == 0
    exported = tracker("--db", src, "export", "--revisions", "-o", "rev.csv", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    back = tracker("--db", dst, "import", "rev.csv", cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert sorted(revisions(dst)) == sorted(revisions(src)) and len(revisions(src)) == 4


def test_as_known_replay_says_why_it_found_nothing(tmp_path: Path) -> None:
    """The sample imported today is known only from today: the replay says so, with the
    count, the day and the way out, on stderr (stdout stays the empty result)."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert tracker("--db", url, "import", str(SAMPLE), cwd=tmp_path).returncode == 0
    today = datetime.now(UTC)
    done = tracker("--db", url, "replay", "--as-known", "--start", "2022-06-01", "--end",
                   "2022-12-31", "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    rows = len(pd.read_csv(SAMPLE))
    note = done.stderr.strip()
    assert note.startswith(f"note: all {rows:,} observations were collected on ")
    assert "after the replayed range 2022-06-01..2022-12-31: import snapshots with their " \
           "collected_at (tracker import --snapshot-dir DIR" in note
    assert f"collected on {today:%Y-%m-%d}, after" in note and "\n" not in note


def test_the_sample_as_daily_snapshots_replays_the_purge_as_known(tmp_path: Path) -> None:
    """The researcher's flow end to end: the sample cut into one snapshot per day, one
    import, then an as-known replay reports Apple's drop on the day it happened."""
    sample = pd.read_csv(SAMPLE)
    folder = tmp_path / "snaps"
    folder.mkdir()
    for day, rows in sample.groupby("date"):
        rows.to_csv(folder / f"snapshot_{day.replace('-', '')}.csv", index=False)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    done = tracker("--db", url, "import", "--snapshot-dir", str(folder), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == sample["date"].nunique()
    replay = tracker("--db", url, "replay", "--as-known", "--start", "2022-10-01", "--end",
                     "2022-10-20", "--company", "apple", "--format", "json", cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr
    assert "note:" not in replay.stderr
    first = json.loads(replay.stdout)[0]
    assert (first["company"], first["day"][:10], first["kind"]) == ("apple", "2022-10-11", "drop")


def test_snapshot_files_lists_oldest_first(tmp_path: Path) -> None:
    write(tmp_path, {"b_2022-10-02.csv": H, "a_2022-10-03.csv": H, "2022-10-01T23:00Z.csv": H})
    assert [s.path.name for s in snapshot_files(tmp_path)] == [
        "2022-10-01T23:00Z.csv", "b_2022-10-02.csv", "a_2022-10-03.csv"]
