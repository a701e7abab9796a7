"""Issue 10.5: the report tells the whole day.

A real ``tracker run`` (in-process CLI) over real sources (a CSV folder, a missing
folder, a real local HTTP API that knows one company) writes the report, which is
opened in headless Chromium: the run's sources, what failed and why, stale
companies, every open alert (glitches too) with score, first-seen and confirmed
days, thumbnails that link to full-size charts, the events. Reviews and notes, a
report of an earlier day, charts of companies that left the report, and the link
that notifications carry are checked on the written files.
"""

from __future__ import annotations

import os
import shutil
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from bs4 import BeautifulSoup
from helpers import open_ws
from httpfixtures import FakeHttpServer, fake_http  # noqa: F401
from test_report import headless_chromium

from tracker.alerts import list_alerts, set_status
from tracker.cli import main
from tracker.config import ReportSettings, Settings
from tracker.detection import run_detection
from tracker.report import THUMB_WIDTH, build_report, report_url
from tracker.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "samples" / "purge_2022.csv"
DAY = date(2022, 10, 11)
BASE = "https://reports.example.org/tracker/"


def _flat(name: str, last: date, days: int = 20) -> str:
    rows = [f"{name},{last - timedelta(days=i)},1000" for i in reversed(range(days))]
    return "company,date,employees\n" + "\n".join(rows) + "\n"


@pytest.fixture
def project(tmp_path: Path, sqlite_url: str, fake_http: FakeHttpServer) -> Path:  # noqa: F811
    """config.toml with a CSV folder, a folder that is not there, and an HTTP API
    that knows acme only; initech is configured but never observed, oldco stopped."""
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "acme.csv").write_text(_flat("Acme", DAY))
    (drop / "oldco.csv").write_text(_flat("Oldco", date(2022, 9, 30)))
    fake_http.add_company("acme", 1000)
    (tmp_path / "config.toml").write_text(
        f'[database]\nurl = "{sqlite_url}"\n\n'
        '[sources.files]\ntype = "csv_folder"\npath = "drop"\n\n'
        '[sources.gone]\ntype = "csv_folder"\npath = "missing"\n\n'
        f'[sources.api]\ntype = "http_json"\nurl = "{fake_http.url}/api/companies/{{company}}"\n'
        'value_path = "data.employee_count"\nretries = 0\n\n'
        f'[report]\nbase_url = "{BASE}"\n\n'
        '[companies.acme]\nname = "Acme"\n[companies.globex]\nname = "Globex"\n'
        '[companies.initech]\nname = "Initech"\n',
        encoding="utf-8")
    return tmp_path


def test_the_run_day_in_headless_chromium(project: Path, workspaces: list[Workspace]) -> None:
    cfg = str(project / "config.toml")
    assert main(["--config", cfg, "import", str(SAMPLE)]) == 0
    assert main(["--config", cfg, "run", "--day", DAY.isoformat()]) == 2  # apple, amazon
    page = project / "reports" / DAY.isoformat() / "index.html"
    ws = open_ws(project / "config.toml", workspaces)
    browser = headless_chromium()
    try:
        browser.get(page.as_uri())

        def cells(selector: str) -> list[list[str]]:
            return [[td.text for td in row.find_elements("css selector", "td")]
                    for row in browser.find_elements("css selector", f"{selector} tr")[1:]]

        def alerts(table: str) -> list[dict[str, str]]:
            """Rows of an alert table by field (each cell's class is f-FIELD)."""
            return [{td.get_attribute("class").split("f-")[1]: td.text
                     for td in row.find_elements("css selector", "td")}
                    for row in browser.find_elements("css selector", f"#{table} tr[data-id]")]

        # the run: every source with what it did, and why the failing ones failed
        assert browser.find_element("id", "run-line").text.startswith("This run: #")
        sources = {row[0]: row for row in cells("#sources")}
        assert sources.keys() == {"api", "files", "gone"}
        assert sources["files"][1] == "ok" and sources["files"][4] == "40"
        assert sources["gone"][1] == "failed" and "missing" in sources["gone"][5]
        assert sources["api"][1] == "partial" and sources["api"][2] == "1"
        api_failures = browser.find_element("id", "failures-api").text
        assert "globex:" in api_failures and "404" in api_failures
        assert browser.find_element("id", "count-failed").text.startswith("1\n")
        assert not browser.find_elements("id", "failures-gone")  # its reason says it all
        # stale by the report's day: never observed, or quiet since 30 September
        stale = {row[1]: row for row in cells("#stale")}
        assert stale["initech"][2] == "never" and stale["globex"][2] == "never"
        assert stale["oldco"][2:] == ["2022-09-30", "11"]
        assert "acme" not in stale and "apple" not in stale
        # new today: the purge; binance and the August glitch were backfill
        new = alerts("alerts-new")
        assert {r["company"] for r in new} == {"Apple", "Amazon"}
        assert {r["verdict"] for r in new} == {"provisional"}
        assert {r["confirmed_on"] for r in new} == {""}  # not yet
        assert {r["values"] for r in new} == {"576,562 → 284,991", "1,249,921 → 838,601"}
        assert browser.find_element("id", "backfill").text.startswith("2 more alert(s)")
        events = cells("#events")
        # the purge's alerts are members of the population event: they carry its id
        eid = "pop-employees-down-2022-10-11"
        assert events[0][:5] == [eid, "2022-10-11", "drop", "Amazon, Apple", "2"]
        # an alert of an event links to it
        assert len(browser.find_elements("css selector",
                                         f"#alerts-new a[href='#event-{eid}']")) == 2
        browser.find_element("id", f"event-{eid}")
        assert cells("#platform-events")[0][:5] == [eid, "2022-10-11", "employees", "down",
                                                   "2 of 9"]  # + acme
        # every open alert, whatever its severity, as the store has them
        open_ids = set(list_alerts(ws, status="open")["id"])
        assert {int(r["id"]) for r in alerts("alerts-open")} == open_ids
    finally:
        browser.quit()

    # an analyst keeps the glitch open with a note; the report of the day is rebuilt
    glitch = int(list_alerts(ws, kind="glitch")["id"].iloc[0])
    note = "<i>kept open</i>: the source had the same dip last year"
    assert main(["--config", cfg, "review", str(glitch), "--status", "open", "--note", note,
                 "--author", "ana"]) == 0
    assert main(["--config", cfg, "report", "--day", DAY.isoformat()]) == 0
    browser = headless_chromium()
    try:
        browser.get(page.as_uri())
        text = browser.find_element("tag name", "body").text
        assert browser.find_element("id", "run-line").text.startswith("Latest run: #")
        # without a run's ids, new means first seen on the report's day
        assert {r["company"] for r in alerts("alerts-new")} == {"Apple", "Amazon"}
        rows = alerts("alerts-open")
        assert {int(r["id"]) for r in rows} == set(list_alerts(ws, status="open")["id"])
        row = next(r for r in rows if int(r["id"]) == glitch)  # info level, and shown
        assert row["company"] == "Contoso Logistics" and row["kind"] == "glitch"
        assert [row["date"], row["detected_on"], row["confirmed_on"]] == [
            "2022-08-17", "2022-08-17", "2022-08-18"]
        assert row["score"] == "259.75" and row["severity"] == "info"
        assert row["review"].startswith("open\nby ana\n20") and row["note"] == note
        assert row["series"] == "linkedin" and row["change_pct"] == "-69.8%"
        assert rows[-1]["severity"] == "info"  # most severe first
        assert ">nan<" not in browser.page_source and "None" not in text
        # thumbnails on the page, each a link to the full-size chart
        links = browser.find_elements("css selector", ".charts figure > a")
        assert len(links) == 4
        full = []
        for link in links:
            img = link.find_element("tag name", "img")
            assert browser.execute_script("return arguments[0].naturalWidth", img) == THUMB_WIDTH
            assert img.get_attribute("src").endswith(".thumb.png")
            assert not link.get_attribute("href").endswith(".thumb.png")
            full.append(link.get_attribute("href"))
        # a company name in the alert tables jumps to its chart
        browser.find_element("css selector", "#alerts-open a[href='#chart-contoso-logistics']")
        shot = project / "report.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
        if os.environ.get("TRACKER_SCREENSHOT"):  # to look at it: TRACKER_SCREENSHOT=x.png
            shutil.copy(shot, os.environ["TRACKER_SCREENSHOT"])
        browser.get(full[0])
        width = browser.execute_script("return document.images[0].naturalWidth")
        assert width > THUMB_WIDTH * 1.5, width
    finally:
        browser.quit()
    assert report_url(ws.settings, DAY) == f"{BASE}2022-10-11/index.html"


@pytest.fixture
def ws(db_url: str, sample_ws) -> Workspace:  # type: ignore[no-untyped-def]
    """The sample on SQLite and on PostgreSQL: the report's reads run on both."""
    return sample_ws(db_url)


def _soup(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


def _column(soup: BeautifulSoup, table: str, field: str) -> list[str]:
    found = soup.find(id=table)
    if found is None:
        return []
    return [td.get_text() for td in found.select(f"tr[data-id] td.f-{field}")]


def test_reviews_and_their_notes_are_shown(ws: Workspace, tmp_path: Path) -> None:
    run_detection(ws)  # over the whole sample: the analyst reviews with data to 12-31
    binance = int(list_alerts(ws, company="binance")["id"].iloc[0])
    note = "<b>real</b>: layoffs\nconfirmed by the press"
    set_status(ws, [binance], "acknowledged", note)
    report = build_report(ws, date(2022, 12, 31), output_dir=tmp_path)
    soup = _soup(report.path)
    still_open = list_alerts(ws, status="open")
    expected = still_open[still_open["company"] != "binance"]["id"].tolist()
    assert sorted(map(int, _column(soup, "alerts-open", "id"))) == sorted(expected)
    assert _column(soup, "alerts-reviewed", "id") == [str(binance)]
    assert _column(soup, "alerts-reviewed", "review")[0].startswith("acknowledged")
    assert _column(soup, "alerts-reviewed", "note") == [note]  # text, never markup
    assert "<b>real</b>" not in report.path.read_text()
    assert report.open == len(expected)  # binance was reviewed
    # the report of a day before the review shows binance as it was then: open
    before = _soup(build_report(ws, date(2022, 9, 20), output_dir=tmp_path).path)
    assert str(binance) in _column(before, "alerts-open", "id")
    assert before.find(id="alerts-reviewed") is None or not _column(
        before, "alerts-reviewed", "id")


def test_a_report_of_an_earlier_day_shows_what_was_known(ws: Workspace, tmp_path: Path) -> None:
    run_detection(ws)  # every alert of 2022 is stored, October's purge included
    report = build_report(ws, date(2022, 9, 10), output_dir=tmp_path)
    soup = _soup(report.path)
    known = list_alerts(ws, status="open")
    known = known[pd.to_datetime(known["detected_on"]) <= pd.Timestamp(2022, 9, 10)]
    assert set(known["company"]) >= {"binance"}
    assert sorted(map(int, _column(soup, "alerts-open", "id"))) == sorted(known["id"])
    assert "Apple" not in _column(soup, "alerts-open", "company")
    assert soup.find(id="events") is None  # the purge of 11 October was not known yet
    assert "No run recorded yet" in soup.find(id="run-line").get_text()
    # by that day every sample company had data: none is stale
    assert soup.find(id="stale").name == "p"


def test_charts_of_companies_gone_from_the_report_are_removed(
    ws: Workspace, tmp_path: Path
) -> None:
    run_detection(ws)
    day = date(2022, 12, 31)
    folder = tmp_path / day.isoformat()
    build_report(ws, day, output_dir=tmp_path)
    assert {p.name for p in folder.glob("*.png")} == {
        f"{c}{suffix}.png" for c in ("amazon", "apple", "binance", "contoso-logistics")
        for suffix in ("", ".thumb")}
    done = list_alerts(ws, company="binance")["id"].tolist() \
        + list_alerts(ws, company="contoso-logistics")["id"].tolist()
    set_status(ws, done, "resolved")
    report = build_report(ws, day, output_dir=tmp_path)
    assert report.charts == 2
    assert {p.name for p in folder.glob("*.png")} == {
        "amazon.png", "amazon.thumb.png", "apple.png", "apple.thumb.png"}
    html = report.path.read_text()
    assert "binance.png" not in html and "contoso-logistics.png" not in html
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporaries


def test_report_url_follows_base_url(tmp_path: Path) -> None:
    def url(**report: object) -> str | None:
        settings = Settings(base_dir=tmp_path, report=ReportSettings(**report))  # type: ignore[arg-type]
        return report_url(settings, DAY)

    assert url() is None
    assert url(base_url="https://r.example.org") == "https://r.example.org/2022-10-11/index.html"
    assert url(base_url="https://r.example.org/a/") == "https://r.example.org/a/2022-10-11/index.html"
    assert url(base_url="https://r.example.org/", enabled=False) is None  # no page: no link


def test_the_run_summary_on_both_databases(ws: Workspace, tmp_path: Path) -> None:
    from tracker.job import run_once

    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "acme.csv").write_text(_flat("Acme", DAY))
    settings = Settings(
        base_dir=tmp_path,
        sources={"files": {"type": "csv_folder", "path": str(drop)},
                 "gone": {"type": "csv_folder", "path": str(tmp_path / "missing")}},
        report=ReportSettings(output_dir=str(tmp_path / "out"), base_url=BASE))
    result = run_once(Workspace(settings, ws.store), DAY)
    assert result.details["report_url"] == f"{BASE}2022-10-11/index.html"
    soup = _soup(tmp_path / "out" / "2022-10-11" / "index.html")
    assert soup.find(id="run-line").get_text().startswith(f"This run: #{result.run_id} (run)")
    rows = {tr.find_all("td")[0].get_text(): [td.get_text() for td in tr.find_all("td")]
            for tr in soup.find(id="sources").find_all("tr")[1:]}
    assert rows["files"][1:5] == ["ok", "20", "0", "20"]
    assert rows["gone"][1] == "failed" and "does not exist" in rows["gone"][5]
    stale = [tr.find_all("td")[1].get_text() for tr in soup.find(id="stale").find_all("tr")[1:]]
    assert stale == []  # the sample ends after the day, acme on it


def test_the_report_of_a_past_day_shows_the_verdicts_of_that_day(tmp_path: Path) -> None:
    """Detected over the whole sample, Apple's purge is confirmed; the report rebuilt
    for 2022-10-11 shows it as that day's run did: a provisional drop, not yet
    confirmed, and still open although it was dismissed since."""
    from helpers import sample_project, tracker

    project = sample_project(tmp_path)
    assert tracker("run", cwd=project).returncode == 0
    from tracker.workspace import open_workspace

    ws = open_workspace(project / "config.toml")
    try:
        apple = list_alerts(ws, company="apple").iloc[0]
        assert apple["verdict"] == "confirmed" and pd.notna(apple["confirmed_on"])
        set_status(ws, [int(apple["id"])], "dismissed", note="known purge", author="ana")
    finally:
        ws.close()
    out = tmp_path / "past"
    done = tracker("report", "--day", "2022-10-11", "--output-dir", str(out), cwd=project)
    assert done.returncode == 0, done.stderr
    soup = BeautifulSoup((out / "2022-10-11" / "index.html").read_text(encoding="utf-8"),
                         "html.parser")
    row = soup.select_one(f"#alerts-new tr[data-id='{apple['id']}']")
    assert row is not None, "Apple's drop is not among the day's new alerts"
    assert row.select_one(".f-verdict").get_text(strip=True) == "provisional"
    assert row.select_one(".f-confirmed_on").get_text(strip=True) == ""
    assert soup.select_one(f"#alerts-open tr[data-id='{apple['id']}']") is not None
    # and today's report has today's word
    today = tracker("report", "--output-dir", str(out), cwd=project)
    assert today.returncode == 0, today.stderr
    page = next(p for p in out.glob("*/index.html") if p.parent.name != "2022-10-11")
    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    assert soup.select_one(f"#alerts-open tr[data-id='{apple['id']}']") is None  # dismissed
