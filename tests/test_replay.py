"""Replays: verdicts on the day they were reachable; evaluation against labels."""

from __future__ import annotations

import subprocess
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import tracker

from tracker.alerts import list_alerts
from tracker.config import Settings
from tracker.detection import run_detection
from tracker.errors import InputError
from tracker.ingest import ImportOptions, import_file
from tracker.records import ALERT_VERDICTS
from tracker.replay import evaluate, read_labels, timeline
from tracker.store import Store
from tracker.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "samples" / "purge_2022.csv"
LABELS = ROOT / "data" / "labels" / "purge_2022.csv"


@pytest.fixture
def ws(sqlite_url: str, sample_ws) -> Workspace:  # type: ignore[no-untyped-def]
    return sample_ws(sqlite_url)


def test_timeline_orders_verdicts_by_the_day_they_were_reached(ws: Workspace) -> None:
    events = timeline(ws, start=date(2022, 8, 1), end=date(2022, 10, 31))
    got = [(str(r.day.date()), r.verdict, r.company, r.kind) for r in events.itertuples()]
    severities = {(r.verdict, r.company): r.severity for r in events.itertuples()}
    # the glitch looked like a critical 70% drop on its day; info once it came back
    assert severities[("provisional", "contoso-logistics")] == "critical"
    assert severities[("glitch", "contoso-logistics")] == "info"
    # one vocabulary: the verdict words of the stored alerts
    assert set(events["verdict"]) <= set(ALERT_VERDICTS)
    assert got == [
        ("2022-08-17", "provisional", "contoso-logistics", "drop"),
        ("2022-08-18", "glitch", "contoso-logistics", "glitch"),
        ("2022-09-04", "provisional", "binance", "drop"),
        ("2022-09-07", "confirmed", "binance", "drop"),
        ("2022-10-11", "provisional", "amazon", "drop"),
        ("2022-10-11", "provisional", "apple", "drop"),
        ("2022-10-14", "confirmed", "amazon", "drop"),
        ("2022-10-14", "confirmed", "apple", "drop"),
    ]


def test_replay_matches_what_daily_runs_stored(ws: Workspace) -> None:
    """The replay's 'provisional' day is when a daily run first stored the alert."""
    for day in pd.date_range("2022-10-09", "2022-10-12"):
        run_detection(ws, until=day.date())
    stored = list_alerts(ws, since=date(2022, 10, 1))
    replayed = timeline(ws, start=date(2022, 10, 9), end=date(2022, 10, 12))
    reported = replayed[replayed["verdict"] == "provisional"]
    assert sorted(stored["company"]) == sorted(reported["company"])
    assert set(stored["detected_on"].astype(str)) == {"2022-10-11"}


def test_replay_writes_nothing(ws: Workspace) -> None:
    timeline(ws)
    assert list_alerts(ws).empty


def test_evaluate_against_the_sample_labels(ws: Workspace) -> None:
    scores = evaluate(ws, read_labels(LABELS))
    per_kind = scores.per_kind.set_index("kind")
    assert per_kind.loc["drop", "recall"] == 1.0
    assert per_kind.loc["drop", "precision"] == 1.0
    assert per_kind.loc["glitch", "recall"] == 1.0
    assert scores.classification_accuracy == 1.0
    assert scores.false_alerts_per_10k_quiet_days == 0.0


def test_evaluate_counts_a_missed_label(ws: Workspace, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text(LABELS.read_text() + "Wingtip Studio,2022-07-01,drop,not real\n")
    scores = evaluate(ws, read_labels(labels))
    assert scores.per_kind.set_index("kind").loc["drop", "recall"] == pytest.approx(0.75)


def test_bad_labels_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("company,date,kind\nApple,2022-10-11,purge\nAmazon,someday,drop\n")
    with pytest.raises(InputError) as info:
        read_labels(path)
    assert f"{path}:2: kind 'purge' is not one of" in str(info.value)
    assert f"{path}:3: date is not a date" in str(info.value)
    (tmp_path / "cols.csv").write_text("firm,date\nApple,2022-10-11\n")
    with pytest.raises(InputError, match="labels need the column"):
        read_labels(tmp_path / "cols.csv")


def test_cli_replay(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"

    def run(*args: str) -> subprocess.CompletedProcess:
        return tracker("--db", db, *args, cwd=tmp_path)

    assert run("import", str(SAMPLE)).returncode == 0
    csv = run("replay", "--start", "2022-10-11", "--end", "2022-10-11", "--format", "csv")
    assert csv.returncode == 0, csv.stderr
    lines = csv.stdout.splitlines()
    assert lines[0].startswith("day,verdict,company")
    assert len(lines) == 3 and all(",provisional," in line for line in lines[1:])
    scored = run("replay", "--labels", str(LABELS))
    assert "glitch-vs-shift classification accuracy: 1.000" in scored.stdout


def test_as_known_replay_reports_late_data_when_it_arrived(tmp_path: Path) -> None:
    """Apple's purge-day value reached us two days late: the replay says so."""
    rows = pd.read_csv(SAMPLE)
    late = (rows["company"] == "Apple") & (rows["date"] >= "2022-10-11")
    early_csv, late_csv = tmp_path / "early.csv", tmp_path / "late.csv"
    rows[~late].to_csv(early_csv, index=False)
    rows[late].to_csv(late_csv, index=False)
    store = Store(f"sqlite:///{tmp_path / 'k.db'}")
    ws = Workspace(Settings(base_dir=tmp_path), store)
    import_file(store, early_csv, ImportOptions(collected_at=datetime(2022, 6, 1)))
    import_file(store, late_csv, ImportOptions(collected_at=datetime(2022, 10, 13, 7)))
    known = timeline(ws, start=date(2022, 10, 9), end=date(2022, 10, 16), as_known=True)
    got = [(str(r.day.date()), r.verdict, r.company, str(r.date.date()))
           for r in known.itertuples()]
    assert got == [
        ("2022-10-11", "provisional", "amazon", "2022-10-11"),
        ("2022-10-13", "provisional", "apple", "2022-10-11"),
        ("2022-10-14", "confirmed", "amazon", "2022-10-11"),
        ("2022-10-14", "confirmed", "apple", "2022-10-11"),
    ]
    hindsight = timeline(ws, start=date(2022, 10, 9), end=date(2022, 10, 16))
    assert ("2022-10-11", "apple") in {(str(r.day.date()), r.company)
                                       for r in hindsight.itertuples()}
    with pytest.raises(InputError, match="needs --start and --end"):
        timeline(ws, as_known=True)
    store.close()


def _as_known_reference(ws: Workspace, start: date, end: date) -> pd.DataFrame:
    """The definition, spelled out: a full detection per day over what was known by
    its end; a verdict is reported the first day it appears."""
    from tracker.detect import detect
    from tracker.detection import build_matrix
    from tracker.replay import TIMELINE_COLUMNS, _verdicts

    parts, seen = [], set()
    for day in pd.date_range(start, end):
        known = (day + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)).to_pydatetime()
        matrix, keys = build_matrix(ws, known_at=known, until=day.date())
        rows = _verdicts(detect(matrix, ws.settings.detect).join(keys, on="series"),
                         ws.settings.detect)
        rows = rows[rows["day"] <= day]
        key = list(zip(rows["company"], rows["date"], rows["verdict"], strict=True))
        fresh = np.array([k not in seen for k in key], dtype=bool)
        if day == pd.Timestamp(start):
            fresh &= (rows["day"] == day).to_numpy()
        seen.update(key)
        parts.append(rows[fresh].assign(day=day))
    out = pd.concat(parts, ignore_index=True).sort_values(["day", "company", "verdict"],
                                                          kind="stable")
    out["change_pct"] = out["change_pct"].round(2)
    return out[TIMELINE_COLUMNS].reset_index(drop=True)


def test_as_known_replay_equals_a_full_detection_per_day(tmp_path: Path) -> None:
    """Late values, a correction of an old day and a day with nothing new: the
    incremental replay says exactly what a full detection each day says."""
    rows = pd.read_csv(SAMPLE)
    late = (rows["company"] == "Apple") & (rows["date"] >= "2022-10-11")
    store = Store(f"sqlite:///{tmp_path / 'k.db'}")
    ws = Workspace(Settings(base_dir=tmp_path), store)
    batches = [(rows[~late & (rows["date"] < "2022-10-05")], datetime(2022, 6, 1))]
    for day in pd.date_range("2022-10-05", "2022-10-20"):
        if day == pd.Timestamp("2022-10-15"):
            continue  # the collector was down: that day's values come the next day
        on = rows[~late & (rows["date"] == f"{day:%Y-%m-%d}")]
        batches.append((on, (day + pd.Timedelta(hours=7)).to_pydatetime()))
    batches.append((rows[late], datetime(2022, 10, 13, 7)))
    batches.append((rows[~late & (rows["date"] == "2022-10-15")], datetime(2022, 10, 16, 8)))
    fix = rows[(rows["company"] == "Amazon") & (rows["date"] == "2022-10-08")].copy()
    fix["employees"] = (fix["employees"] * 0.6).round().astype(int)  # a bad old value
    batches.append((fix, datetime(2022, 10, 17, 9)))
    for k, (part, stamp) in enumerate(batches):
        path = tmp_path / f"b{k}.csv"
        part.to_csv(path, index=False)
        import_file(store, path, ImportOptions(collected_at=stamp))
    start, end = date(2022, 10, 6), date(2022, 10, 20)
    got = timeline(ws, start=start, end=end, as_known=True)
    assert len(got) >= 5 and "2022-10-08" in set(got["date"].astype(str).str[:10])
    want = _as_known_reference(ws, start, end)
    pd.testing.assert_frame_equal(got, want)
    store.close()


def test_as_known_replay_withdraws_a_drop_whose_data_were_corrected(tmp_path: Path) -> None:
    """A scrape of 2022-10-11 said 500 (a provisional drop, reported that day); the
    provider's correction (1,001) arrived on 10-12: that day the drop is withdrawn, as
    a daily run's alert would be, and nothing else is said about it."""
    rng = np.random.default_rng(4)
    days = pd.date_range("2022-01-01", "2022-10-15")
    base = pd.DataFrame({"company": "Zeta", "date": days.strftime("%Y-%m-%d"),
                         "count": (1000 * (1 + rng.normal(0, 0.003, len(days)))).round()})
    base.loc[base["date"] == "2022-10-11", "count"] = 500
    files = {"history": (base[base["date"] <= "2022-10-11"], datetime(2022, 10, 11, 20)),
             "later": (base[base["date"] > "2022-10-11"], datetime(2022, 10, 12, 8)),
             "fix": (pd.DataFrame({"company": ["Zeta"], "date": ["2022-10-11"],
                                   "count": [1001]}), datetime(2022, 10, 12, 8))}
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")
    ws = Workspace(Settings(base_dir=tmp_path), store)
    try:
        for name, (frame, at) in files.items():
            path = tmp_path / f"{name}.csv"
            frame.to_csv(path, index=False)
            import_file(store, path, ImportOptions(collected_at=at))
        known = timeline(ws, start=date(2022, 10, 9), end=date(2022, 10, 15), as_known=True)
        got = [(str(r.day.date()), r.verdict, r.kind, str(r.date.date()))
               for r in known.itertuples()]
        assert got == [("2022-10-11", "provisional", "drop", "2022-10-11"),
                       ("2022-10-12", "withdrawn", "drop", "2022-10-11")]
        # with today's best data there never was a drop
        assert timeline(ws, start=date(2022, 10, 9), end=date(2022, 10, 15)).empty
    finally:
        store.close()
