"""Corroboration by a second source: 2022 again, with two providers.

In October 2022 LinkedIn showed Apple -50%; a second provider, whose counts wobble
by about 0.5% a day, showed -8% on the same days: unprecedented for it, and what
made the story credible. Every case goes through the real import into a real
database (SQLite and PostgreSQL) and the real detection.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import no_traceback, tracker

from tracker.alerts import alert_history, alerts_as_of, list_alerts
from tracker.config import Settings
from tracker.detect.corroborate import AGREES, NO_DATA, SILENT, judge, lookback_days
from tracker.detect.settings import DetectSettings
from tracker.detection import detect_new, run_detection
from tracker.ingest import ImportOptions, import_file
from tracker.notify.base import alert_line
from tracker.report import build_report
from tracker.store import Store
from tracker.store import alerts as alert_store
from tracker.store.notifications import pending_alerts
from tracker.store.ranges import merged_ranges, values_in_ranges
from tracker.workspace import Workspace

PURGE = pd.Timestamp("2022-10-11")
DAYS = pd.date_range("2022-06-01", "2022-10-31")

#: company -> (source A's move, source B's move, B's daily wobble, B's missing days)
CASES: dict[str, tuple[float, float, float, tuple[str, str] | None]] = {
    "apple": (-0.50, -0.08, 0.005, None),       # B saw it, smaller
    "amazon": (-0.50, 0.0, 0.005, None),        # B flat: possible source error
    "meta": (-0.50, 0.0, 0.005, ("2022-10-03", "2022-10-20")),  # B has no data then
    "google": (-0.50, +0.08, 0.005, None),      # B moved the other way
    "netflix": (-0.50, -0.03, 0.0015, None),    # B's move too small to alert alone
}


def two_sources_csv(path: Path, cases: dict = CASES, days: pd.DatetimeIndex = DAYS,
                    seed: int = 7) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for company, (move_a, move_b, wobble_b, gap_b) in cases.items():
        after = days >= PURGE
        a = 150_000 * (1 + rng.normal(0, 0.002, len(days))) * np.where(after, 1 + move_a, 1)
        b = 120_000 * (1 + rng.normal(0, wobble_b, len(days))) * np.where(after, 1 + move_b, 1)
        keep_b = np.ones(len(days), dtype=bool) if gap_b is None else \
            ~((days >= gap_b[0]) & (days <= gap_b[1]))
        rows += [(company, d.strftime("%Y-%m-%d"), int(v), "linkedin")
                 for d, v in zip(days, a, strict=True)]
        rows += [(company, d.strftime("%Y-%m-%d"), int(v), "signalhire")
                 for d, v, k in zip(days, b, keep_b, strict=True) if k]
    pd.DataFrame(rows, columns=["company", "date", "employees", "source"]).to_csv(
        path, index=False)
    return path


@pytest.fixture
def ws(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    w = Workspace(Settings(base_dir=tmp_path), Store(db_url))
    yield w
    w.close()


def purge_alerts(ws: Workspace) -> dict[str, dict]:
    """LinkedIn's alert about the purge day, per company."""
    listed = list_alerts(ws, since=date(2022, 10, 1))
    mine = listed[(listed["source"] == "linkedin") & (listed["date"] == PURGE.date())]
    return {r["company"]: r for r in mine.to_dict("records")}


def test_2022_with_two_sources(ws: Workspace, tmp_path: Path) -> None:
    import_file(ws.store, two_sources_csv(tmp_path / "two.csv"))
    run_detection(ws)
    got = purge_alerts(ws)
    assert set(got) == set(CASES)

    apple = got["apple"]  # corroborated: credible, may be critical
    assert apple["sources_seen"] == "linkedin, signalhire"
    assert apple["sources_agreeing"] == 2
    assert pd.isna(apple["sources_silent"]) and pd.isna(apple["sources_no_data"])
    assert not apple["possible_source_error"]
    assert apple["severity"] == "critical"

    amazon = got["amazon"]  # only its own source saw it: capped
    assert amazon["sources_seen"] == "linkedin" and amazon["sources_silent"] == "signalhire"
    assert amazon["sources_agreeing"] == 1
    assert amazon["possible_source_error"]
    assert amazon["severity"] == "warning"

    meta = got["meta"]  # nothing to compare with is no evidence against the move
    assert meta["sources_no_data"] == "signalhire" and pd.isna(meta["sources_silent"])
    assert not meta["possible_source_error"]
    assert meta["severity"] == "critical"

    google = got["google"]  # the other way is not agreement
    assert google["sources_seen"] == "linkedin" and google["sources_silent"] == "signalhire"
    assert google["possible_source_error"] and google["severity"] == "warning"

    netflix = got["netflix"]  # -3% is a lot for a provider that wobbles by 0.15%
    assert netflix["sources_seen"] == "linkedin, signalhire"
    listed = list_alerts(ws, company="netflix")
    assert set(listed["source"]) == {"linkedin"}, "B's move alone is below its alert bar"


def test_the_alerts_of_the_second_source_are_corroborated_the_same_way(
        ws: Workspace, tmp_path: Path) -> None:
    import_file(ws.store, two_sources_csv(tmp_path / "two.csv"))
    run_detection(ws)
    listed = list_alerts(ws, company="apple")
    b = listed[(listed["source"] == "signalhire") & (listed["date"] == PURGE.date())]
    assert len(b) == 1
    assert b.iloc[0]["sources_seen"] == "signalhire, linkedin"
    assert not b.iloc[0]["possible_source_error"]


def test_a_single_source_series_is_not_judged(ws: Workspace, tmp_path: Path) -> None:
    import_file(ws.store, two_sources_csv(tmp_path / "one.csv", {"apple": CASES["apple"]}))
    frame = pd.read_csv(tmp_path / "one.csv")
    frame[frame["source"] == "linkedin"].to_csv(tmp_path / "alone.csv", index=False)
    with Workspace(Settings(base_dir=tmp_path), Store(
            f"sqlite:///{tmp_path / 'alone.db'}")) as alone:
        import_file(alone.store, tmp_path / "alone.csv")
        run_detection(alone)
        apple = purge_alerts(alone)["apple"]
    assert apple["sources_seen"] == "linkedin" and apple["sources_agreeing"] == 1
    assert pd.isna(apple["sources_silent"]) and pd.isna(apple["sources_no_data"])
    assert not apple["possible_source_error"] and apple["severity"] == "critical"


def _part(path: Path, out: Path, *, until: str, source: str | None = None,
          since: str | None = None) -> Path:
    frame = pd.read_csv(path)
    keep = frame["date"] <= until
    if since is not None:
        keep &= frame["date"] >= since
    if source is not None:
        keep &= frame["source"] == source
    frame[keep].to_csv(out, index=False)
    return out


def test_the_daily_run_re_evaluates_when_the_late_source_reports(
        ws: Workspace, tmp_path: Path) -> None:
    """B reports a day late: on the purge day it has no data yet (no flag, critical);
    when its flat counts arrive the next day's run marks the alert a possible source
    error and caps it, and the change is in the alert's history."""
    full = two_sources_csv(tmp_path / "two.csv", {"amazon": CASES["amazon"]})
    import_file(ws.store, _part(full, tmp_path / "h.csv", until="2022-10-10"))
    run_detection(ws, until=date(2022, 10, 10))
    import_file(ws.store, _part(full, tmp_path / "d.csv", since="2022-10-11",
                                until="2022-10-11", source="linkedin"))
    detect_new(ws, date(2022, 10, 11))
    first = purge_alerts(ws)["amazon"]
    assert first["verdict"] == "provisional"
    assert first["sources_no_data"] == "signalhire" and not first["possible_source_error"]
    assert first["severity"] == "critical"

    import_file(ws.store, _part(full, tmp_path / "e.csv", since="2022-10-11",
                                until="2022-10-12"))
    detect_new(ws, date(2022, 10, 12))
    later = purge_alerts(ws)["amazon"]
    assert later["sources_silent"] == "signalhire" and later["possible_source_error"]
    assert later["severity"] == "warning"
    changes = alert_history(ws, [int(later["id"])])
    assert changes["changes"].map(lambda c: "possible_source_error" in c).any()
    # what a run on the purge day knew is kept
    then = alerts_as_of(ws, date(2022, 10, 11), company="amazon")
    row = then[then["id"] == later["id"]].iloc[0]
    assert not row["possible_source_error"] and row["severity"] == "critical"


def test_values_in_ranges_reads_every_source_of_the_series_once(
        ws: Workspace, tmp_path: Path) -> None:
    import_file(ws.store, two_sources_csv(tmp_path / "two.csv", {"apple": CASES["apple"]}))
    ids, _ = alert_store.series_source_ids(ws.store, pd.DataFrame(
        {"company": ["apple"], "metric": ["employees"], "source": ["linkedin"]}))
    sid = int(ids[0])
    ranges = pd.DataFrame({"series_id": [sid, sid, sid], "other_than": [0, 0, 0],
                           "first": pd.to_datetime(["2022-10-01", "2022-10-04", "2022-10-20"]),
                           "last": pd.to_datetime(["2022-10-05", "2022-10-06", "2022-10-19"])})
    merged = merged_ranges(ranges)
    assert len(merged) == 1  # overlapping joined, the empty one dropped
    got = values_in_ranges(ws.store, ranges)
    assert set(got["source"]) == {"linkedin", "signalhire"}
    assert got.groupby("source").size().to_dict() == {"linkedin": 6, "signalhire": 6}
    own = int(got.loc[got["source"] == "linkedin", "source_id"].iloc[0])
    others = values_in_ranges(ws.store, ranges.assign(other_than=own))
    assert set(others["source"]) == {"signalhire"}  # an alert's own source is not read
    days = got["day"].to_numpy().astype("datetime64[D]")
    assert days.min() == np.datetime64("2022-10-01") and days.max() == np.datetime64("2022-10-06")



def test_series_ids_and_ranges_of_many_alerts_in_chunks(
        ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lookups past one query's worth of companies (here chunks of one) map every
    row, and a read as known at a time before the import finds nothing."""
    import_file(ws.store, two_sources_csv(tmp_path / "two.csv",
                                          {k: CASES[k] for k in ("apple", "amazon")}),
                ImportOptions(collected_at=datetime(2022, 11, 1)))
    keys = pd.DataFrame({"company": ["amazon", "apple", "amazon"], "metric": "employees",
                         "source": ["signalhire", "linkedin", "linkedin"]})
    whole = alert_store.series_source_ids(ws.store, keys)
    monkeypatch.setattr(alert_store, "_IDS_CHUNK", 1)
    chunked = alert_store.series_source_ids(ws.store, keys)
    for a, b in zip(whole, chunked, strict=True):
        np.testing.assert_array_equal(a, b)
    assert whole[0][0] == whole[0][2] != whole[0][1] and whole[1][0] != whole[1][2]
    ranges = pd.DataFrame({"series_id": whole[0][:2], "other_than": [0, 0],
                           "first": pd.to_datetime(["2022-10-01", "2022-10-03"]),
                           "last": pd.to_datetime(["2022-10-02", "2022-10-03"])})
    got = values_in_ranges(ws.store, ranges)
    assert len(got) == 2 * 2 + 1 * 2  # two sources each
    assert values_in_ranges(ws.store, ranges, known_at=datetime(2022, 12, 1)).equals(got)
    assert values_in_ranges(ws.store, ranges, known_at=datetime(2022, 10, 1)).empty

@pytest.mark.parametrize(("move", "wobble", "direction", "when", "expected"), [
    (-0.08, 0.005, -1, 0, AGREES),     # the 2022 case
    (-0.08, 0.005, -1, 2, AGREES),     # two days late
    (-0.08, 0.005, -1, -2, AGREES),    # two days early
    (-0.08, 0.005, -1, 4, SILENT),     # too late to be the same move
    (0.0, 0.005, -1, 0, SILENT),
    (+0.08, 0.005, -1, 0, SILENT),     # the other way
    (-0.08, 0.05, -1, 0, SILENT),      # within a noisy source's own variation
    (+0.08, 0.005, +1, 0, AGREES),     # a spike seen by both
])
def test_judge(move: float, wobble: float, direction: int, when: int, expected: str) -> None:
    s = DetectSettings()
    rng = np.random.default_rng(1)
    alert_day = np.array([19000])
    day = np.arange(19000 - lookback_days(s, 2), 19003)
    value = 50_000 * (1 + rng.normal(0, wobble, day.size)) * np.where(
        day >= 19000 + when, 1 + move, 1)
    state, score = judge(alert_day, np.array([direction]), np.zeros(day.size, dtype=int),
                         day, value, s, days=2, z=4.0)
    assert state[0] == expected, score


def test_judge_without_data_on_or_after_the_day_is_no_data() -> None:
    s = DetectSettings()
    day = np.arange(19000 - lookback_days(s, 2), 19000)  # stops the day before
    value = np.full(day.size, 1000.0)
    state, score = judge(np.array([19000]), np.array([-1]), np.zeros(day.size, dtype=int),
                         day, value, s, days=2, z=4.0)
    assert state[0] == NO_DATA and np.isnan(score[0])


def test_cli_lists_the_names_in_every_format(tmp_path: Path) -> None:
    two_sources_csv(tmp_path / "two.csv", {k: CASES[k] for k in ("apple", "amazon")})
    assert tracker("import", "two.csv", cwd=tmp_path).returncode == 0
    detect = tracker("detect", cwd=tmp_path)
    no_traceback(detect)
    assert detect.returncode == 0, detect.stderr

    listed = json.loads(tracker("alerts", "--since", "2022-10-11", "--format", "json",
                                cwd=tmp_path).stdout)
    mine = {a["company"]: a for a in listed
            if a["source"] == "linkedin" and a["date"] == "2022-10-11"}
    assert mine["apple"]["sources_seen"] == "linkedin, signalhire"
    assert mine["apple"]["possible_source_error"] is False
    assert mine["amazon"]["sources_silent"] == "signalhire"
    assert mine["amazon"]["possible_source_error"] is True

    text = tracker("alerts", "--since", "2022-10-11", "--format", "csv", cwd=tmp_path).stdout
    rows = {(r["company"], r["source"], r["date"]): r for r in csv.DictReader(io.StringIO(text))}
    amazon = rows["amazon", "linkedin", "2022-10-11"]
    assert amazon["sources_silent"] == "signalhire" and amazon["severity"] == "warning"
    assert rows["apple", "linkedin", "2022-10-11"]["sources_seen"] == "linkedin, signalhire"

    table = tracker("alerts", "--since", "2022-10-11", "--company", "amazon",
                    cwd=tmp_path).stdout
    header = table.splitlines()[0]
    for column in ("sources_seen", "sources_silent", "sources_no_data",
                   "possible_source_error"):
        assert column in header
    line = next(x for x in table.splitlines() if "linkedin" in x and "2022-10-11" in x)
    assert "signalhire" in line and "True" in line


def test_notifications_and_the_report_name_the_sources(ws: Workspace, tmp_path: Path) -> None:
    two_sources_csv(tmp_path / "two.csv", {k: CASES[k] for k in ("apple", "amazon", "meta")})
    import_file(ws.store, tmp_path / "two.csv")
    run_detection(ws)
    # what the notifiers are given: the records read back from the store
    sent = {a.company: a for a in pending_alerts(ws.store, PURGE.date(), PURGE.date())
            if a.source == "linkedin" and a.date == PURGE.date()}
    assert "seen by linkedin; not by signalhire (possible source error)" in alert_line(
        sent["amazon"])
    assert "seen by linkedin, signalhire" in alert_line(sent["apple"])
    assert "possible source error" not in alert_line(sent["apple"])
    assert "seen by linkedin; no data from signalhire" in alert_line(sent["meta"])

    report = build_report(ws, PURGE.date(), output_dir=tmp_path / "r")
    html = report.path.read_text()
    ids = purge_alerts(ws)

    def row(company: str) -> str:
        start = html.index(f'<tr data-id="{ids[company]["id"]}">')
        return html[start:html.index("</tr>", start)]

    assert "not by signalhire" in row("amazon") and "possible source error" in row("amazon")
    assert "seen by linkedin, signalhire" in row("apple")
    assert "possible source error" not in row("apple")


def test_a_pass_over_a_past_state_of_knowledge_reads_what_was_known(
        ws: Workspace, tmp_path: Path) -> None:
    """What was known on the evening of the purge day: LinkedIn's counts, not yet the
    second provider's (collected two days later), so no data, not a silent source."""
    full = two_sources_csv(tmp_path / "two.csv", {"amazon": CASES["amazon"]})
    options = ImportOptions(collected_at=datetime(2022, 10, 11, 23))
    import_file(ws.store, _part(full, tmp_path / "a.csv", until="2022-10-31",
                                source="linkedin"), options)
    import_file(ws.store, _part(full, tmp_path / "b0.csv", until="2022-10-10",
                                source="signalhire"), options)
    import_file(ws.store, _part(full, tmp_path / "b1.csv", since="2022-10-11",
                                until="2022-10-31", source="signalhire"),
                ImportOptions(collected_at=datetime(2022, 10, 13, 6)))
    run_detection(ws, known_at=datetime(2022, 10, 12), until=date(2022, 10, 11))
    then = purge_alerts(ws)["amazon"]
    assert then["sources_no_data"] == "signalhire" and not then["possible_source_error"]
    run_detection(ws)
    now = purge_alerts(ws)["amazon"]
    assert now["sources_silent"] == "signalhire" and now["possible_source_error"]
