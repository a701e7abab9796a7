"""The daily HTML report, rendered in a real headless Chromium."""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import pytest

from tracker.alerts import list_alerts
from tracker.config import Settings
from tracker.detection import run_detection
from tracker.report import build_report
from tracker.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "samples" / "purge_2022.csv"


@pytest.fixture
def ws(sqlite_url: str, sample_ws) -> Workspace:  # type: ignore[no-untyped-def]
    return sample_ws(sqlite_url)


def headless_chromium():  # type: ignore[no-untyped-def]
    """A headless Chromium driven by chromedriver, or a skip with the reason (also
    used by test_report_day.py)."""
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver must be installed under CI (.ci/run)")
        pytest.skip("needs the Debian packages chromium and chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,2000",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def test_report_content(ws: Workspace, tmp_path: Path) -> None:
    run_detection(ws, until=date(2022, 10, 11))
    new_ids = list_alerts(ws, since=date(2022, 10, 11))["id"].tolist()
    report = build_report(
        ws,
        date(2022, 10, 11),
        new_ids=new_ids,
        summary="CRITICAL: 2 new critical",
        output_dir=tmp_path / "r",
    )
    assert report.path == tmp_path / "r" / "2022-10-11" / "index.html"
    assert report.new == 2
    html = report.path.read_text()
    assert "Headcount anomalies, 2022-10-11" in html
    assert "drop-2022-10-11" in html  # the cross-company event
    assert "576,562" in html and "284,991" in html and "-50.6%" in html
    assert ">nan<" not in html
    for company in ("apple", "amazon"):
        assert (report.path.parent / f"{company}.png").stat().st_size > 10_000


def test_outside_text_is_escaped(ws: Workspace, tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    report = build_report(ws, date(2022, 10, 11), summary=evil, output_dir=tmp_path)
    html = report.path.read_text()
    assert evil not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_report_in_headless_chromium(ws: Workspace, tmp_path: Path) -> None:
    run_detection(ws)
    ids = list_alerts(ws)["id"].tolist()
    # new: the purge of 11 October (first seen within [alerts] fresh_days of the day)
    report = build_report(ws, date(2022, 10, 14), new_ids=ids[2:], output_dir=tmp_path)
    browser = headless_chromium()
    try:
        browser.get(report.path.as_uri())
        assert browser.title == "tracker report 2022-10-14"
        new_rows = browser.find_elements("css selector", "#alerts-new tr")
        assert len(new_rows) == 1 + 2
        open_rows = browser.find_elements("css selector", "#alerts-open tr td:nth-child(2)")
        # every open alert, the info-level glitch of contoso-logistics too
        assert {r.get_attribute("title") for r in open_rows} == {
            "apple", "amazon", "binance", "contoso-logistics"}
        images = browser.find_elements("css selector", ".charts img")
        assert len(images) == 4  # the new apple, amazon + the open glitch and binance
        widths = [browser.execute_script("return arguments[0].naturalWidth", i) for i in images]
        assert all(w > 500 for w in widths), widths  # every chart actually loaded
        shot = tmp_path / "report.png"
        assert browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 20_000
        keep = os.environ.get("TRACKER_SCREENSHOT")  # to look at it: TRACKER_SCREENSHOT=x.png
        if keep:
            shutil.copy(shot, keep)
    finally:
        browser.quit()


def test_main_job_writes_the_report(ws: Workspace, tmp_path: Path) -> None:
    from tracker.config import ReportSettings
    from tracker.job import run_once

    drop = tmp_path / "drop"  # a run needs a source: one with a quiet company
    drop.mkdir()
    (drop / "acme.csv").write_text("company,date,employees\nAcme,2022-10-11,1000\n")
    sources = {"files": {"type": "csv_folder", "path": str(drop)}}
    settings = Settings(
        base_dir=tmp_path, sources=sources,
        report=ReportSettings(output_dir=str(tmp_path / "out")),
    )
    result = run_once(Workspace(settings, ws.store), date(2022, 10, 11))
    page = tmp_path / "out" / "2022-10-11" / "index.html"
    assert result.exit_code == 2
    assert f"report {page}" in result.summary()
    html = page.read_text()
    assert html.count('title="apple"') == 2  # new today, and still open
    assert "This run: #" in html and "<td>files</td>" in html
    off = Settings(
        base_dir=tmp_path,
        sources=sources,
        report=ReportSettings(enabled=False, output_dir=str(tmp_path / "off")),
    )
    run_once(Workspace(off, ws.store), date(2022, 10, 12))
    assert not (tmp_path / "off").exists()


def test_report_shows_the_platform_event_in_chromium(ws: Workspace, tmp_path: Path) -> None:
    from tracker.population import find_population_events

    run_detection(ws)
    find_population_events(ws)
    report = build_report(ws, date(2022, 10, 14), output_dir=tmp_path)
    assert (report.path.parent / "population.png").stat().st_size > 10_000
    browser = headless_chromium()
    try:
        browser.get(report.path.as_uri())
        row = browser.find_element("css selector", "#platform-pop-employees-down-2022-10-11")
        cells = [c.text for c in row.find_elements("css selector", "td")]
        assert cells[:5] == ["pop-employees-down-2022-10-11", "2022-10-11", "employees",
                             "down", "2 of 8"]
        img = browser.find_element("css selector", "#platform-chart img")
        assert browser.execute_script("return arguments[0].naturalWidth", img) > 500
    finally:
        browser.quit()
    early = build_report(ws, date(2022, 10, 10), output_dir=tmp_path / "early")
    assert "platform-pop-" not in early.path.read_text()
