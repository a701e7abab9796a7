"""Alerts: detection on stored data, fingerprints, lifecycle, exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tracker.alerts import LISTING_FIELDS, list_alerts, set_status
from tracker.config import Settings
from tracker.detection import run_detection
from tracker.errors import InputError, NotFoundError
from tracker.ingest import import_file
from tracker.job import run_once
from tracker.records import ALERT_FIELDS
from tracker.store import Store
from tracker.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "samples" / "purge_2022.csv"


@pytest.fixture
def ws(db_url: str, sample_ws) -> Workspace:  # type: ignore[no-untyped-def]
    return sample_ws(db_url)


def by_company(frame: pd.DataFrame) -> dict[str, dict]:
    return {r["company"]: r for r in frame.to_dict("records")}


def test_sample_gives_exactly_the_reported_events(ws: Workspace) -> None:
    result = run_detection(ws)
    assert len(result.new) == 4
    stored = by_company(list_alerts(ws))
    assert set(stored) == {"apple", "amazon", "binance", "contoso-logistics"}
    expected = {
        "apple": ("drop", "2022-10-11", -50.6),
        "amazon": ("drop", "2022-10-11", -32.9),
        "binance": ("drop", "2022-09-04", -22.2),
        "contoso-logistics": ("glitch", "2022-08-17", -69.8),
    }
    for company, (kind, day, pct) in expected.items():
        alert = stored[company]
        assert alert["kind"] == kind
        assert str(alert["date"]) == day
        assert alert["change_pct"] == pytest.approx(pct, abs=0.2)
        # one vocabulary: a move that came back has the verdict glitch
        assert alert["verdict"] == ("glitch" if kind == "glitch" else "confirmed")
        assert alert["status"] == "open"  # found as a glitch at once: nobody was paged
    assert stored["apple"]["severity"] == "critical"
    assert stored["apple"]["event_id"] == stored["amazon"]["event_id"] is not None
    assert pd.isna(stored["binance"]["event_id"])


def test_rerunning_never_duplicates(ws: Workspace) -> None:
    run_detection(ws)
    again = run_detection(ws)
    assert len(again.new) == 0 and again.updated == 0
    assert len(list_alerts(ws)) == 4


def test_provisional_shift_is_confirmed_in_place(ws: Workspace) -> None:
    first = run_detection(ws, until=date(2022, 10, 11))
    apple = by_company(first.new)["apple"]
    assert apple["verdict"] == "provisional" and pd.isna(apple["confirmed_on"])
    before = by_company(list_alerts(ws))["apple"]["id"]
    later = run_detection(ws, until=date(2022, 10, 20))
    assert "apple" not in set(later.new["company"])
    alert = by_company(list_alerts(ws))["apple"]
    assert alert["id"] == before
    assert alert["verdict"] == "confirmed"
    assert date(2022, 10, 12) <= alert["confirmed_on"] <= date(2022, 10, 14)


def test_glitch_reclassification_updates_the_same_alert(ws: Workspace) -> None:
    run_detection(ws, until=date(2022, 8, 17))
    provisional = by_company(list_alerts(ws))["contoso-logistics"]
    assert provisional["kind"] == "drop" and provisional["verdict"] == "provisional"
    run_detection(ws, until=date(2022, 8, 25))
    rows = list_alerts(ws, company="contoso-logistics")
    assert len(rows) == 1
    assert rows.loc[0, "id"] == provisional["id"]
    assert rows.loc[0, "kind"] == "glitch"


def test_review_status_survives_redetection(ws: Workspace) -> None:
    run_detection(ws)
    apple = by_company(list_alerts(ws))["apple"]["id"]
    assert set_status(ws, [apple], "acknowledged", note="LinkedIn purge, known") == 1
    run_detection(ws)
    assert by_company(list_alerts(ws))["apple"]["status"] == "acknowledged"
    assert len(list_alerts(ws, status="acknowledged")) == 1
    with pytest.raises(NotFoundError, match="no alert with id 999"):
        set_status(ws, [999], "dismissed")
    with pytest.raises(InputError, match="not one of"):
        set_status(ws, [apple], "ignored")


def test_filters(ws: Workspace) -> None:
    run_detection(ws)
    assert set(list_alerts(ws, kind="glitch")["company"]) == {"contoso-logistics"}
    assert set(list_alerts(ws, since=date(2022, 10, 1))["company"]) == {"apple", "amazon"}
    assert list(list_alerts(ws).columns) == list(LISTING_FIELDS)
    assert LISTING_FIELDS[:len(ALERT_FIELDS)] == ALERT_FIELDS  # the record, then its review


def test_second_source_corroborates(ws: Workspace, tmp_path: Path) -> None:
    """SignalHire-like second source: smaller but unprecedented drops on the same day."""
    days = pd.date_range("2022-08-01", "2022-10-31")
    rng = np.random.default_rng(3)
    rows = []
    for company, level in (("Apple", 160000), ("Amazon", 900000)):
        noise = 1 + rng.normal(0, 0.002, len(days))
        values = level * noise * np.where(days >= "2022-10-11", 0.91, 1.0)
        rows += [
            (company, d.strftime("%Y-%m-%d"), int(v), "signalhire")
            for d, v in zip(days, values, strict=True)
        ]
    path = tmp_path / "signalhire.csv"
    pd.DataFrame(rows, columns=["company", "date", "employees", "source"]).to_csv(path, index=False)
    import_file(ws.store, path)
    run_detection(ws)
    alerts = list_alerts(ws, since=date(2022, 10, 1))
    apple = alerts[alerts["company"] == "apple"]
    assert set(apple["source"]) == {"linkedin", "signalhire"}
    assert (apple["sources_agreeing"] == 2).all()


def test_job_exit_codes_replaying_the_purge_day(ws: Workspace, tmp_path: Path) -> None:
    ws = Workspace(Settings(base_dir=tmp_path, sources={}), ws.store)
    day_before = run_once(ws, date(2022, 10, 10))
    assert day_before.exit_code == 0, day_before.summary()
    purge = run_once(ws, date(2022, 10, 11))
    assert purge.exit_code == 2
    assert purge.summary().startswith("CRITICAL: 2022-10-11")
    assert "2 new critical" in purge.summary()
    after = run_once(ws, date(2022, 10, 12))
    assert after.exit_code == 0  # nothing new: the purge was already reported


def test_cli_detect_and_alerts(tmp_path: Path) -> None:
    import os
    import sys

    shutil.copy(ROOT / "config.toml", tmp_path / "config.toml")
    (tmp_path / "data" / "samples").mkdir(parents=True)
    shutil.copy(SAMPLE, tmp_path / "data" / "samples")
    # this checkout's tracker, whatever console script or install is on PATH
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "tracker", *args], cwd=tmp_path, capture_output=True,
            text=True, timeout=120, env=env,
        )

    first = run("run")
    assert first.returncode == 0, first.stderr
    assert "4 alert(s) about older history stored" in first.stdout
    assert len(first.stdout.strip().splitlines()) == 1
    listed = json.loads(run("alerts", "--format", "json").stdout)
    assert [a["company"] for a in listed] == ["contoso-logistics", "binance", "amazon", "apple"]
    assert list(listed[0]) == list(LISTING_FIELDS)
    csv = run("alerts", "--kind", "drop", "--format", "csv").stdout.splitlines()
    assert csv[0] == ",".join(LISTING_FIELDS) and len(csv) == 4
    apple = next(a for a in listed if a["company"] == "apple")
    review = run("review", str(apple["id"]), "--status", "dismissed")
    assert review.returncode == 0 and "1 alert(s) marked dismissed" in review.stdout
    dismissed = json.loads(run("alerts", "--status", "dismissed", "--format", "json").stdout)
    assert [a["company"] for a in dismissed] == ["apple"]
    bad = run("alerts", "--kind", "wobble")
    assert bad.returncode == 3 and "Traceback" not in bad.stderr
    detect = run("detect")
    assert detect.returncode == 0
    assert "0 new alert(s)" in detect.stderr


def test_replaying_an_earlier_day_does_not_undo_a_verdict(ws: Workspace) -> None:
    run_detection(ws)
    replay = run_detection(ws, until=date(2022, 10, 11))
    assert replay.updated == 0
    apple = by_company(list_alerts(ws))["apple"]
    assert apple["verdict"] == "confirmed" and not pd.isna(apple["confirmed_on"])


def test_monthly_provider_export_end_to_end(tmp_path: Path) -> None:
    """A provider's employee_count_by_month: the monthly cadence is inferred and a
    purge in month 20 is a drop dated the first of that month."""
    rng = np.random.default_rng(5)
    months = pd.period_range("2021-01", periods=24, freq="M")
    counts = 20000 * (1 + rng.normal(0, 0.004, 24)) * np.where(np.arange(24) >= 19, 0.7, 1.0)
    record = {"display_name": "Globex", "employee_count_by_month":
              {str(m): int(c) for m, c in zip(months, counts, strict=True)}}
    path = tmp_path / "globex.json"
    path.write_text(json.dumps([record]))
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    import_file(store, path)
    ws = Workspace(Settings(base_dir=tmp_path), store)
    run_detection(ws)
    alerts = list_alerts(ws)
    assert alerts[["company", "kind"]].values.tolist() == [["globex", "drop"]]
    assert str(alerts.loc[0, "date"]) == "2022-08-01"
    assert alerts.loc[0, "change_pct"] == pytest.approx(-30, abs=2)
    store.close()


def test_listing_shows_who_reviewed_when_and_the_note(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOGNAME", "ana")
    monkeypatch.setenv("USER", "ana")
    run_detection(ws)
    apple, amazon = (by_company(list_alerts(ws))[c]["id"] for c in ("apple", "amazon"))
    before = pd.Timestamp.now(tz="UTC")
    set_status(ws, [apple], "acknowledged", note="LinkedIn purge, known")
    set_status(ws, [amazon], "dismissed", author="bo")
    rows = by_company(list_alerts(ws))
    assert (rows["apple"]["reviewed_by"], rows["apple"]["note"]) == ("ana",
                                                                   "LinkedIn purge, known")
    assert rows["amazon"]["reviewed_by"] == "bo" and pd.isna(rows["amazon"]["note"])
    stamp = rows["apple"]["reviewed_at"]
    assert stamp.tzinfo is not None and before <= stamp <= pd.Timestamp.now(tz="UTC")
    assert pd.isna(rows["binance"]["reviewed_by"]) and pd.isna(rows["binance"]["reviewed_at"])
    assert all(pd.isna(r["notified_at"]) for r in rows.values())  # backfill: never sent
    assert str(rows["apple"]["detected_on"]) == "2022-10-11"
    assert date(2022, 10, 12) <= rows["apple"]["confirmed_on"] <= date(2022, 10, 14)
    # a second review keeps the note unless it gives one, and records its own author
    set_status(ws, [apple], "resolved", author="cy")
    again = by_company(list_alerts(ws))["apple"]
    assert (again["status"], again["reviewed_by"], again["note"]) == (
        "resolved", "cy", "LinkedIn purge, known")
    assert again["reviewed_at"] >= stamp


def test_open_limit_and_severity(ws: Workspace) -> None:
    run_detection(ws)
    every = list_alerts(ws)
    assert every["company"].tolist() == ["contoso-logistics", "binance", "amazon", "apple"]
    set_status(ws, [int(every.loc[1, "id"])], "dismissed")
    assert list_alerts(ws, open_only=True)["company"].tolist() == [
        "contoso-logistics", "amazon", "apple"]
    # the most recent N, still oldest first; the limit applies after the filters
    assert list_alerts(ws, limit=2)["company"].tolist() == ["amazon", "apple"]
    assert list_alerts(ws, limit=1, kind="glitch")["company"].tolist() == ["contoso-logistics"]
    assert list_alerts(ws, open_only=True, limit=3, min_severity="critical")[
        "company"].tolist() == ["amazon", "apple"]
    assert len(list_alerts(ws, min_severity="warning")) == 3  # at least warning
    assert len(list_alerts(ws, min_severity="info")) == 4
    with pytest.raises(InputError, match="contradicts --status dismissed"):
        list_alerts(ws, open_only=True, status="dismissed")
    with pytest.raises(InputError, match="--limit: 0 must be 1 or more"):
        list_alerts(ws, limit=0)
    with pytest.raises(InputError, match="--severity: 'loud' is not one of"):
        list_alerts(ws, min_severity="loud")


def test_cli_alerts_show_reviews_in_every_format(tmp_path: Path) -> None:
    from helpers import tracker

    shutil.copy(ROOT / "config.toml", tmp_path / "config.toml")
    (tmp_path / "data" / "samples").mkdir(parents=True)
    shutil.copy(SAMPLE, tmp_path / "data" / "samples")
    assert tracker("run", cwd=tmp_path).returncode == 0
    review = tracker("review", "4", "--note", "purge; known", "--author", "ana", cwd=tmp_path)
    assert review.returncode == 0, review.stderr
    listed = json.loads(tracker("alerts", "--format", "json", cwd=tmp_path).stdout)
    apple = next(a for a in listed if a["id"] == 4)
    assert (apple["company"], apple["reviewed_by"], apple["note"]) == ("apple", "ana",
                                                                     "purge; known")
    assert apple["reviewed_at"].startswith(str(date.today().year))
    assert apple["notified_at"] is None
    assert (apple["detected_on"], apple["confirmed_on"]) == ("2022-10-11", "2022-10-14")
    csv = tracker("alerts", "--format", "csv", "--company", "apple", cwd=tmp_path).stdout
    header, row = csv.splitlines()
    cells = dict(zip(header.split(","), row.split(","), strict=True))
    assert (cells["reviewed_by"], cells["note"], cells["notified_at"]) == (
        "ana", "purge; known", "")
    assert cells["detected_on"] == "2022-10-11" and cells["confirmed_on"] == "2022-10-14"
    table = tracker("alerts", cwd=tmp_path).stdout.splitlines()
    assert all(col in table[0] for col in ("notified_at", "reviewed_by", "reviewed_at", "note"))
    assert "purge; known" in table[-1] and "ana" in table[-1]
    recent = json.loads(tracker("alerts", "--open", "--limit", "2", "--severity", "critical",
                                "--format", "json", cwd=tmp_path).stdout)
    assert [a["company"] for a in recent] == ["binance", "amazon"]  # apple is acknowledged
    for bad, needle in ((["--limit", "0"], "--limit"), (["--severity", "loud"], "--severity"),
                        (["--open", "--status", "resolved"], "contradicts")):
        out = tracker("alerts", *bad, cwd=tmp_path)
        assert out.returncode == 3 and "Traceback" not in out.stderr, out.stderr
        assert needle in out.stderr
