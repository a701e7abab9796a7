"""Role segments (issue 11.3): ``employees:security`` is a series like any other.

Imports read a ``segment`` column, ``--metric`` and ``--segment``; bad metric names are
one clear error and nothing is written; sources file counts under their ``metric``
(http_json can read several from one answer, here from a real local HTTP server);
detection judges a segment on its own scale; show, plot, alerts, export, companies and
the report name the metric. SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import ROOT, no_traceback, open_ws, tracker
from test_report import headless_chromium

from tracker.collect import collect
from tracker.config import load_settings
from tracker.detection import run_detection
from tracker.errors import ConfigError, ImportValidationError, InputError
from tracker.ingest import ImportOptions, import_file
from tracker.metrics import chart_key, check_metric, metric_label, with_segment
from tracker.plots import plot_company
from tracker.report import build_report
from tracker.store import Store
from tracker.workspace import Workspace

SEGMENTS = ROOT / "data" / "samples" / "purge_2022_segments.csv"
LABELS = ROOT / "data" / "labels" / "purge_2022_segments.csv"
DROP = date(2022, 10, 4)


def _noisy(level: float, days: int, seed: int, drop_at: int | None = None,
           drop: float = 0.07) -> np.ndarray:
    """A count with ~0.3% daily noise, losing ``drop`` from day ``drop_at`` on."""
    rng = np.random.default_rng(seed)
    values = level * (1 + rng.normal(0, 0.003, days))
    if drop_at is not None:
        values[drop_at:] *= 1 - drop
    return np.round(values).astype(int)


def _segment_file(path: Path, days: int = 90, drop_at: int = 70) -> Path:
    """Acme: 100,000 employees, flat; its 1,000 security profiles lose 7% on day 70."""
    first = date(2022, 7, 26)
    dates = [first + timedelta(days=i) for i in range(days)]
    whole, security = _noisy(100_000, days, 1), _noisy(1_000, days, 2, drop_at)
    rows = [("Acme", d, v, "") for d, v in zip(dates, whole, strict=True)]
    rows += [("Acme", d, v, "security") for d, v in zip(dates, security, strict=True)]
    pd.DataFrame(rows, columns=["company", "date", "count", "segment"]).to_csv(path, index=False)
    return path


def test_the_metric_rules() -> None:
    assert with_segment(None, "security") == "employees:security"
    assert with_segment("followers", "ml") == "followers:ml"
    assert with_segment("employees", "") == "employees" and with_segment("x", None) == "x"
    assert metric_label("employees:security") == "employees (security)"
    assert chart_key("apple", "employees") == "apple"
    assert chart_key("apple", "employees:security") == "apple.employees.security"
    for good in ("employees", "employees:security", "employees:ml_ops-2", "followers"):
        assert check_metric(good, "--metric") == good
    with pytest.raises(InputError, match=r"--metric: metric 'Employees' .*did you mean "
                                         r"'employees'"):
        check_metric("Employees", "--metric")


def test_segment_column_makes_one_series_per_segment(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "roles.csv"
    path.write_text("company,date,count,segment\nApple,2022-10-03,576000,\n"
                    "Apple,2022-10-03,9833,security\nApple,2022-10-04,9122,security\n"
                    "Apple,2022-10-03,4100, ml \nAmazon,2022-10-03,24144,security\n")
    result = import_file(store, path)
    assert (result.rows, result.inserted, result.companies) == (5, 5, 2)
    obs = store.observations()
    got = sorted(zip(obs["company"], obs["metric"], obs["value"], strict=True))
    assert got == [("amazon", "employees:security", 24144), ("apple", "employees", 576000),
                   ("apple", "employees:ml", 4100), ("apple", "employees:security", 9122),
                   ("apple", "employees:security", 9833)]
    summary = store.companies_summary().set_index("id")
    assert summary.loc["apple", "metrics"] == "employees employees:ml employees:security"
    assert summary.loc["amazon", "metrics"] == "employees:security"
    # --segment overrides the column; --metric and --segment combine
    other = tmp_path / "more.csv"
    other.write_text("company,date,count,segment\nApple,2022-10-03,7,security\n"
                     "Apple,2022-10-04,8,\n")
    import_file(store, other, ImportOptions(metric="followers", segment="x"))
    assert sorted(store.observations(metric="followers:x")["value"]) == [7, 8]
    import_file(store, other, ImportOptions(segment="", source="s2"))
    assert sorted(store.observations(metric="employees", source="s2")["value"]) == [7, 8]


def test_wide_file_with_metric(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("date,Apple,Amazon\n2022-10-03,9833,24144\n2022-10-04,9122,22429\n")
    import_file(store, path, ImportOptions(metric="employees:security"))
    obs = store.observations(metric="employees:security")
    assert sorted(obs["value"]) == [9122, 9833, 22429, 24144]
    assert store.observations(metric="employees").empty


@pytest.mark.parametrize(("cell", "fragment"), [
    ("Employees:Security", "metric 'employees:Employees:Security'"),
    ("security:ml", "metric 'employees:security:ml' is not a metric name"),
    ("net security", "metric 'employees:net security'"),
    ("s" * 60, "is 70 characters long"),
])
def test_bad_segment_is_one_clear_error_and_nothing_is_written(
        store: Store, tmp_path: Path, cell: str, fragment: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(f"company,date,count,segment\nApple,2022-10-03,5,security\n"
                    f"Apple,2022-10-04,5,{cell}\n")
    with pytest.raises(ImportValidationError) as info:
        import_file(store, path)
    assert info.value.total == 1
    problem = info.value.problems[0]
    assert problem.startswith(f"{path}:3: column 'segment': ") and fragment in problem
    assert "name[:segment] in lowercase letters" in problem
    assert store.observations().empty


@pytest.mark.parametrize(("options", "fragment"), [
    ({"metric": "Employees"}, "--metric: metric 'Employees' is not a metric name (did you mean"),
    ({"metric": "employees:"}, "--metric: metric 'employees:' is not a metric name"),
    ({"segment": "Net Sec"}, "--segment 'Net Sec' (metric 'employees:Net Sec')"),
    ({"metric": "employees:security", "segment": "ml"}, "metric 'employees:security:ml'"),
])
def test_bad_flags_are_refused_before_reading(options: dict[str, str], fragment: str) -> None:
    with pytest.raises(InputError) as info:
        ImportOptions(**options)
    assert fragment in str(info.value)


def test_cli_bad_metric_exits_3_with_one_line(tmp_path: Path) -> None:
    data = _segment_file(tmp_path / "acme.csv", days=5)
    db = f"sqlite:///{tmp_path / 't.db'}"
    proc = tracker("--db", db, "import", str(data), "--metric", "Head Count", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    no_traceback(proc)
    assert "--metric: metric 'Head Count' is not a metric name" in proc.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("company,date,count,metric\nAcme,2022-10-03,5,employees\n"
                   "Acme,2022-10-04,5,=HYPERLINK()\n")
    proc = tracker("--db", db, "import", str(bad), cwd=tmp_path)
    assert proc.returncode == 3
    no_traceback(proc)
    assert f"{bad}:3: column 'metric': metric '=HYPERLINK()'" in proc.stderr
    assert "nothing from this file was written" in proc.stderr


def _config(tmp_path: Path, db_url: str, sources: str) -> Path:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[database]\nurl = "{db_url}"\n\n{sources}\n'
                   '[companies.apple]\nname = "Apple"\n[companies.amazon]\nname = "Amazon"\n')
    return cfg


def test_sources_file_counts_under_their_metric(
        tmp_path: Path, db_url: str, httpserver, workspaces: list[Workspace]) -> None:  # type: ignore[no-untyped-def]
    for cid, whole, sec, ml in (("apple", 576_562, 9_833, 4_100), ("amazon", 1_249_921, 24_144,
                                                                     7_700)):
        httpserver.expect_request(f"/roles/{cid}").respond_with_json(
            {"data": {"count": whole, "roles": {"security": sec, "ml": ml}}})
        httpserver.expect_request(f"/security/{cid}").respond_with_json({"n": sec + 1})
    base = httpserver.url_for("")
    cfg = _config(tmp_path, db_url,
                  f'[sources.roles]\ntype = "http_json"\nurl = "{base}roles/{{company}}"\n'
                  'value_path = "data.count"\nretries = 0\n'
                  'metrics = { "employees:security" = "data.roles.security", '
                  '"employees:ml" = "data.roles.ml" }\n\n'
                  f'[sources.sec]\ntype = "http_json"\nurl = "{base}security/{{company}}"\n'
                  'value_path = "n"\nmetric = "employees:security"\nretries = 0\n')
    ws = open_ws(cfg, workspaces)
    result = collect(ws, date(2022, 10, 3))
    assert [(o.source, o.status, o.inserted) for o in result.outcomes] == [
        ("roles", "ok", 6), ("sec", "ok", 2)]
    obs = ws.export()
    got = sorted(zip(obs["company"], obs["metric"], obs["source"], obs["value"], strict=True))
    assert got == [
        ("amazon", "employees", "roles", 1_249_921), ("amazon", "employees:ml", "roles", 7_700),
        ("amazon", "employees:security", "roles", 24_144),
        ("amazon", "employees:security", "sec", 24_145),
        ("apple", "employees", "roles", 576_562), ("apple", "employees:ml", "roles", 4_100),
        ("apple", "employees:security", "roles", 9_833),
        ("apple", "employees:security", "sec", 9_834),
    ]
    # one request per company for all three series
    assert len([r for r, _ in httpserver.log if r.path.startswith("/roles/")]) == 2


def test_a_missing_segment_path_fails_that_company(
        tmp_path: Path, sqlite_url: str, httpserver, workspaces: list[Workspace]) -> None:  # type: ignore[no-untyped-def]
    httpserver.expect_request("/roles/apple").respond_with_json({"count": 5, "roles": {}})
    httpserver.expect_request("/roles/amazon").respond_with_json(
        {"count": 7, "roles": {"security": 2}})
    cfg = _config(tmp_path, sqlite_url,
                  f'[sources.roles]\ntype = "http_json"\n'
                  f'url = "{httpserver.url_for("")}roles/{{company}}"\nvalue_path = "count"\n'
                  'retries = 0\nmetrics = { "employees:security" = "roles.security" }\n')
    result = collect(open_ws(cfg, workspaces), date(2022, 10, 3))
    (outcome,) = result.outcomes
    assert outcome.status == "partial" and outcome.inserted == 2
    (failure,) = outcome.failures
    assert failure.company == "apple" and "metrics.'employees:security'" in failure.reason


@pytest.mark.parametrize(("table", "fragment"), [
    ('type = "http_json"\nurl = "http://x/{company}"\nvalue_path = "a"\nmetric = "Security"',
     "metric 'Security' is not a metric name"),
    ('type = "http_json"\nurl = "http://x/{company}"\nvalue_path = "a"\n'
     'metrics = { "employees:Sec" = "b" }', "metric 'employees:Sec' is not a metric name"),
    ('type = "http_json"\nurl = "http://x/{company}"\nvalue_path = "a"\n'
     'metrics = { "employees" = "b" }', "'employees' is the source's metric"),
    ('type = "http_json"\nurl = "http://x/{company}"', "value_path"),
    ('type = "csv_folder"\npath = "drop"\nmetric = "employees:"', "metric 'employees:'"),
])
def test_source_metric_settings_are_checked(tmp_path: Path, table: str, fragment: str) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f"[sources.s]\n{table}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert fragment in str(info.value) and "sources.s" in str(info.value)


def test_a_segment_drop_is_detected_on_its_own_scale(
        tmp_path: Path, db_url: str, workspaces: list[Workspace]) -> None:
    """70 lost security profiles are 7% of the segment and 0.07% of the company: only the
    segment's series has an alert, dated the drop's day, with the segment's values."""
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[database]\nurl = "{db_url}"\n')
    ws = open_ws(cfg, workspaces)
    import_file(ws.store, _segment_file(tmp_path / "acme.csv"))
    result = run_detection(ws)
    assert result.series == 2
    alerts = result.new
    assert list(zip(alerts["metric"], alerts["kind"], strict=True)) == [
        ("employees:security", "drop")]
    (row,) = alerts.itertuples()
    assert pd.Timestamp(row.date) == pd.Timestamp(date(2022, 7, 26) + timedelta(days=70))
    assert 900 < row.value_after < row.value_before < 1100 and -9 < row.change_pct < -5


def test_cli_show_plot_alerts_export_companies_filter_by_metric(tmp_path: Path) -> None:
    data = _segment_file(tmp_path / "acme.csv")
    db = f"sqlite:///{tmp_path / 't.db'}"

    def run(*args: str) -> subprocess.CompletedProcess:
        proc = tracker("--db", db, *args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        return proc

    run("import", str(data))
    run("detect", "--full")
    shown = list(csv.DictReader(io.StringIO(run("show", "Acme", "--metric",
                                                "employees:security", "--format", "csv").stdout)))
    assert len(shown) == 90 and all(900 < int(r["value"]) < 1100 for r in shown)
    whole = run("show", "Acme", "--format", "json").stdout
    assert all(r["value"] > 90_000 for r in json.loads(whole))
    listed = list(csv.DictReader(io.StringIO(run("alerts", "--metric", "employees:security",
                                                 "--format", "csv").stdout)))
    assert [(r["company"], r["metric"], r["kind"]) for r in listed] == [
        ("acme", "employees:security", "drop")]
    assert list(csv.DictReader(io.StringIO(run("alerts", "--metric", "employees",
                                               "--format", "csv").stdout))) == []
    for fmt in ("csv", "json"):
        out = run("export", "--metric", "employees:security", "--format", fmt).stdout
        rows = list(csv.DictReader(io.StringIO(out))) if fmt == "csv" else json.loads(out)
        assert len(rows) == 90 and {r["metric"] for r in rows} == {"employees:security"}
    companies = json.loads(run("companies", "--format", "json").stdout)
    assert [(c["id"], c["metrics"]) for c in companies] == [
        ("acme", "employees employees:security")]
    plotted = run("plot", "Acme", "--metric", "employees:security").stdout.strip()
    assert Path(plotted).name == "acme.employees.security.png"
    assert Path(plotted).stat().st_size > 10_000
    proc = tracker("--db", db, "show", "Acme", "--metric", "Employees", cwd=tmp_path)
    assert proc.returncode == 3 and "did you mean 'employees'" in proc.stderr
    no_traceback(proc)


def test_chart_title_names_the_segment(tmp_path: Path, sqlite_url: str,
                                       workspaces: list[Workspace]) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[database]\nurl = "{sqlite_url}"\n[companies.acme]\nname = "Acme"\n')
    ws = open_ws(cfg, workspaces)
    import_file(ws.store, _segment_file(tmp_path / "acme.csv"))
    titles = {m: plot_company(ws, "acme", metric=m).axes[0].get_title("left")
              for m in ("employees", "employees:security")}
    assert titles == {"employees": "Acme, data through 2022-10-23",
                      "employees:security": "Acme, employees (security), data through 2022-10-23"}


def test_report_shows_segment_alerts_and_their_charts(
        tmp_path: Path, sqlite_url: str, workspaces: list[Workspace]) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[database]\nurl = "{sqlite_url}"\n[companies.acme]\nname = "Acme"\n')
    ws = open_ws(cfg, workspaces)
    import_file(ws.store, _segment_file(tmp_path / "acme.csv"))
    run_detection(ws)
    report = build_report(ws, date(2022, 10, 23), output_dir=tmp_path / "reports")
    folder = report.path.parent
    assert {p.name for p in folder.glob("*.png")} == {
        "acme.employees.security.png", "acme.employees.security.thumb.png"}
    browser = headless_chromium()
    try:
        browser.get(report.path.as_uri())
        row = browser.find_element("css selector", "#alerts-open tr[data-id]")
        assert "employees:security" in row.find_element("css selector", ".f-series").text
        link = row.find_element("css selector", ".f-company a")
        assert link.get_attribute("href").endswith("#chart-acme.employees.security")
        figure = browser.find_element("id", "chart-acme.employees.security")
        assert "employees (security)" in figure.find_element("tag name", "figcaption").text
        img = figure.find_element("tag name", "img")
        assert browser.execute_script("return arguments[0].naturalWidth", img) > 0
    finally:
        browser.quit()


def test_bundled_segments_are_regenerated_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "purge_2022.csv"
    subprocess.run([sys.executable, str(ROOT / "data" / "generate_samples.py"), "--out",
                    str(out)], check=True, cwd=tmp_path)
    assert (tmp_path / SEGMENTS.name).read_bytes() == SEGMENTS.read_bytes()
    assert (tmp_path / "purge_2022_segments.labels.csv").read_bytes() == LABELS.read_bytes()


def test_bundled_security_segments_drop_together_before_the_purge() -> None:
    frame = pd.read_csv(SEGMENTS, keep_default_na=False, parse_dates=["date"])
    security = frame[frame["segment"] == "security"]
    wide = security.pivot(index="date", columns="company", values="employees")
    assert wide.shape[1] >= 20 and not wide.isna().any().any()
    change = wide.pct_change().iloc[1:]
    worst = change.idxmin()
    purged = {"Apple", "Amazon"}
    assert set(worst[worst == pd.Timestamp("2022-10-11")].index) == purged
    assert (worst.drop(list(purged)) == pd.Timestamp(DROP)).all()
    drop = -change.loc[pd.Timestamp(DROP)]
    assert drop.between(0.05, 0.09).all() and 0.065 < drop.mean() < 0.075
    quiet = change.drop([pd.Timestamp(DROP), pd.Timestamp("2022-10-11")])
    assert (quiet.abs() < 0.02).all().all() and (quiet.abs().median() > 0.0005).all()
    # every company with a segment has its whole count too (here or in the main sample)
    main = set(pd.read_csv(ROOT / "data" / "samples" / "purge_2022.csv")["company"])
    assert set(wide.columns) <= main | set(frame.loc[frame["segment"] == "", "company"])
