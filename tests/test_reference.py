"""Reference headcounts and inflation: references from CSV and config, bad files, the
ratio as a step function, cohort-abnormal (``inflated``) and ``ratio_jump`` alerts, the
detector and the inflation pass leaving each other's alerts alone, the chart's
reference line, SQLite and PostgreSQL, and the real CLI in a subprocess."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import ROOT, no_traceback, sample_project, tracker
from matplotlib.collections import LineCollection

from tracker.alerts import list_alerts
from tracker.config import Settings, load_settings
from tracker.detection import run_detection
from tracker.errors import ConfigError, InputError
from tracker.inflation import detect_inflation, ratio_series, ratios, with_ratio
from tracker.ingest import import_file
from tracker.plots import plot_company
from tracker.references import import_references, list_references
from tracker.store import Store
from tracker.workspace import Workspace, open_workspace

REFERENCES = ROOT / "data" / "references" / "headcounts_2022.csv"
START = date(2022, 1, 1)
DAYS = 120


def _history(levels: dict[str, float], *, seed: int = 7,
             moves: dict[str, tuple[int, float]] | None = None) -> pd.DataFrame:
    """Daily counts with 0.3% noise; ``moves`` multiplies a company's level from a day on."""
    rng = np.random.default_rng(seed)
    rows = []
    for company, level in levels.items():
        factor = np.ones(DAYS)
        if moves and company in moves:
            day, by = moves[company]
            factor[day:] = by
        values = np.round(level * factor * np.exp(rng.normal(0, 0.003, DAYS))).astype(int)
        rows += [{"company": company, "date": (START + timedelta(days=i)).isoformat(),
                  "employees": int(v), "source": "linkedin"} for i, v in enumerate(values)]
    return pd.DataFrame(rows)


def _refs(path: Path, rows: list[tuple[str, str, int, str]]) -> Path:
    lines = ["company,date,count,source", *(f"{c},{d},{n},{s}" for c, d, n, s in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def ws(db_url: str, tmp_path: Path) -> Iterator[Workspace]:
    w = Workspace(Settings(base_dir=tmp_path), Store(db_url))
    yield w
    w.close()


def _import(ws: Workspace, tmp_path: Path, history: pd.DataFrame) -> None:
    path = tmp_path / "history.csv"
    history.to_csv(path, index=False)
    import_file(ws.store, path)


# -- references -------------------------------------------------------------------------

def test_csv_references_are_stored_and_a_day_given_again_replaces_it(
        ws: Workspace, tmp_path: Path) -> None:
    done = import_references(ws, REFERENCES)
    assert (done.rows, done.companies) == (5, 3)
    listed = list_references(ws, "Apple")
    assert listed["count"].tolist() == [154000, 164000]
    assert listed["as_of"].tolist() == [date(2021, 9, 25), date(2022, 9, 24)]
    _refs(tmp_path / "fix.csv", [("apple", "2022-09-24", 161000, "Apple 10-K 2022 (restated)")])
    import_references(ws, tmp_path / "fix.csv")
    listed = list_references(ws, "apple")
    assert listed["count"].tolist() == [154000, 161000]
    assert listed["source"].iloc[-1] == "Apple 10-K 2022 (restated)"
    assert len(list_references(ws)) == 5


def test_config_references_are_upserted_when_the_workspace_opens(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[companies.apple]\nname = "Apple"\nreference_count = 164000\n'
                   'reference_date = 2022-09-24\nreference_source = "Apple 10-K 2022"\n',
                   encoding="utf-8")
    with open_workspace(cfg) as w:
        first = list_references(w)
    assert first[["company", "count", "source"]].values.tolist() == [
        ["apple", 164000, "Apple 10-K 2022"]]
    cfg.write_text(cfg.read_text().replace("164000", "165000"), encoding="utf-8")
    with open_workspace(cfg) as w:  # the config is the truth for its day: replaced
        assert list_references(w)["count"].tolist() == [165000]


@pytest.mark.parametrize("keys", ["reference_count = 164000", "reference_date = 2022-09-24"])
def test_a_config_reference_needs_its_count_and_its_date(tmp_path: Path, keys: str) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f"[companies.apple]\n{keys}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"companies\.apple.*needs reference_"):
        load_settings(cfg)


BAD = [
    ("company,date,count,source\napple,2022-09-24,164 000,10-K\n", r":2: field 'count'"),
    ("company,date,count,source\napple,2022-09-24,0,10-K\n", r":2: field 'count': '0'"),
    ("company,date,count,source\napple,24/09/2022,164000,10-K\n", r":2: field 'date'"),
    ("company,date,count,source\n,2022-09-24,164000,10-K\n", r":2: field 'company' is empty"),
    ("company,date,count,source\napple,2022-09-24,164000,\n", r":2: field 'source' is empty"),
    ("company,date,count\napple,2022-09-24,164000\n", r":1: the header .*missing source"),
    ("company,date,cuont,source\napple,2022-09-24,1,x\n", r":1: .*unknown cuont"),
    ("company,date,count,source\napple,2022-09-24,1,a,b\n", r":2: 5 cells"),
    ("company,date,count,source\napple,2022-09-24,1,a\nApple,2022-09-24,2,b\n",
     r":3: 'Apple' on 2022-09-24 is given twice \(also line 2\)"),
    ("company,date,count,source\n", r"no references in the file"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_a_bad_reference_file_names_file_line_and_field_and_writes_nothing(
        sqlite_url: str, tmp_path: Path, text: str, message: str) -> None:
    # validated whole before a transaction opens: SQLite stands for both stores here
    with Workspace(Settings(base_dir=tmp_path), Store(sqlite_url)) as ws:
        _refused(ws, tmp_path, text, message)


def _refused(ws: Workspace, tmp_path: Path, text: str, message: str) -> None:
    # a good row first: it must not be written either
    good = "amazon,2022-12-31,1541000,Amazon 10-K 2022\n"
    body = text if text.count("\n") < 2 or "twice" in text else text + good
    path = tmp_path / "refs.csv"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(InputError, match=message) as err:
        import_references(ws, path)
    assert str(path) in str(err.value)
    assert list_references(ws).empty


# -- the ratio ----------------------------------------------------------------------------

def test_the_ratio_carries_each_reference_forward_and_has_none_before_the_first() -> None:
    days = pd.date_range("2022-01-01", periods=10)
    obs = pd.DataFrame({"company": "a", "metric": "employees", "source": "linkedin",
                        "as_of": days, "value": np.arange(100, 110)})
    refs = pd.DataFrame({"company": ["a", "a"], "as_of": pd.to_datetime(
        ["2022-01-03", "2022-01-07"]), "count": [50, 100], "source": ["r1", "r2"]})
    out = ratios(obs, refs)
    assert out["as_of"].min() == pd.Timestamp("2022-01-03")  # none before the first
    expected = np.where(out["as_of"] < pd.Timestamp("2022-01-07"), 50, 100)
    assert out["reference"].tolist() == expected.tolist()
    assert np.allclose(out["ratio"], out["claimed"] / expected)
    assert set(out["reference_source"]) == {"r1", "r2"}


# -- alerts -------------------------------------------------------------------------------

PEERS = {"p1": 10_000, "p2": 20_000, "p3": 40_000, "p4": 8_000}


def _cohort(ws: Workspace, tmp_path: Path, *, industry: bool) -> None:
    """An outlier at 3.5x its reference among four peers at ~1.1x (+-5%)."""
    _import(ws, tmp_path, _history({"outlier": 35_000, **PEERS}))
    ratios_ = dict(zip(PEERS, [1.05, 1.1, 1.15, 1.1], strict=True))
    rows = [("outlier", "2021-12-31", 10_000, "annual report")] + [
        (c, "2021-12-31", round(level / ratios_[c]), "annual report")
        for c, level in PEERS.items()]
    import_references(ws, _refs(tmp_path / "refs.csv", rows))
    if industry:
        for c in ["outlier", *PEERS]:
            ws.store.upsert_company(c, tags={"industry": "retail"})


@pytest.mark.parametrize("industry", [True, False])
def test_a_company_at_3_5x_among_peers_at_1_1x_is_inflated_and_the_peers_are_not(
        ws: Workspace, tmp_path: Path, industry: bool) -> None:
    _cohort(ws, tmp_path, industry=industry)
    detect_inflation(ws)
    found = list_alerts(ws, kind="inflated")
    assert found["company"].tolist() == ["outlier"]  # one episode, the outlier's only
    row = found.iloc[0]
    assert row["date"] == START and row["verdict"] == "confirmed"
    assert row["value_after"] == pytest.approx(3.5, rel=0.02)
    assert row["value_before"] == pytest.approx(1.1, rel=0.05)
    assert row["score"] >= ws.settings.alerts.inflation_z
    detect_inflation(ws)  # judged again: nothing duplicated
    assert len(list_alerts(ws, kind="inflated")) == 1


def test_a_purge_is_a_ratio_jump_and_a_new_reference_is_not(ws: Workspace,
                                                           tmp_path: Path) -> None:
    purge_day, ref_day = 60, 70
    _import(ws, tmp_path, _history({"purged": 30_000, "steady": 12_000, **PEERS},
                                   moves={"purged": (purge_day, 0.5)}))
    rows = [("purged", "2021-12-31", 10_000, "AR 2021"), ("steady", "2021-12-31", 10_000, "AR"),
            # only the reference moves: the ratio halves on this day
            ("steady", (START + timedelta(days=ref_day)).isoformat(), 20_000, "AR 2022")]
    import_references(ws, _refs(tmp_path / "refs.csv", rows))
    detect_inflation(ws)
    jumps = list_alerts(ws, kind="ratio_jump")
    assert jumps["company"].tolist() == ["purged"]
    jump = jumps.iloc[0]
    assert jump["date"] == START + timedelta(days=purge_day)
    hold = ws.settings.alerts.ratio_jump_days
    assert jump["detected_on"] == START + timedelta(days=purge_day + hold - 1)  # causal
    assert jump["change_pct"] == pytest.approx(-50, abs=2)
    assert (jump["value_before"], jump["value_after"]) == (pytest.approx(3.0, rel=0.02),
                                                           pytest.approx(1.5, rel=0.02))
    steady = ratio_series(ws, "steady")
    assert steady["ratio"].iloc[-1] == pytest.approx(0.6, rel=0.02)  # the ratio did move


def test_the_detector_and_the_inflation_pass_leave_each_others_alerts_alone(
        ws: Workspace, tmp_path: Path) -> None:
    _import(ws, tmp_path, _history({"outlier": 35_000, **PEERS},
                                   moves={"outlier": (60, 0.5)}))
    import_references(ws, _refs(tmp_path / "refs.csv", [
        ("outlier", "2021-12-31", 10_000, "AR"),
        *((c, "2021-12-31", round(v / 1.1), "AR") for c, v in PEERS.items())]))
    detect_inflation(ws)
    run_detection(ws)
    detect_inflation(ws)
    alerts = list_alerts(ws, company="outlier")
    kinds = dict(zip(alerts["kind"], alerts["verdict"], strict=False))
    assert kinds.get("drop") == "confirmed"
    assert kinds.get("ratio_jump") == "confirmed"
    assert kinds.get("inflated") == "confirmed"
    assert "withdrawn" not in set(alerts["verdict"])


def test_an_inflation_alert_the_data_no_longer_show_is_withdrawn(ws: Workspace,
                                                                tmp_path: Path) -> None:
    _cohort(ws, tmp_path, industry=False)
    detect_inflation(ws)
    # the outlier's official headcount was 3.2x what was thought: it is not inflated
    import_references(ws, _refs(tmp_path / "fix.csv",
                                [("outlier", "2021-12-31", 32_000, "restated")]))
    detect_inflation(ws)
    assert list_alerts(ws, kind="inflated")["verdict"].tolist() == ["withdrawn"]


# -- show and chart -----------------------------------------------------------------------

def test_show_has_the_ratio_and_the_chart_draws_the_reference(sample_ws, db_url: str) -> None:  # type: ignore[no-untyped-def]
    w = sample_ws(db_url)
    import_references(w, REFERENCES)
    shown = with_ratio(w, w.series("Apple")[["as_of", "source", "value", "change_pct"]],
                       "Apple")
    before = shown[shown["as_of"] == date(2022, 9, 23)].iloc[0]  # the 2021 report's
    assert before["reference"] == 154000
    assert before["ratio"] == pytest.approx(before["value"] / 154000, abs=1e-3)
    day = shown[shown["as_of"] == date(2022, 10, 10)].iloc[0]  # the 2022 report's
    assert day["reference"] == 164000 and day["ratio"] == pytest.approx(576562 / 164000,
                                                                         abs=1e-3)
    fig = plot_company(w, "Apple", ratio=True)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["linkedin"]  # one per source
    ref = [c for c in ax.collections if isinstance(c, LineCollection)
           and c.get_gid() == "reference"]
    assert len(ref) == 1
    ys = sorted(set(ref[0].get_segments()[0][:, 1].round()))
    assert ys == [154000.0, 164000.0]  # both steps in the sample's window
    labels = [t.get_text() for t in ax.texts if t.get_gid() == "reference-label"]
    assert labels == ["Apple 10-K 2021: 154,000", "Apple 10-K 2022: 164,000"]
    twin = [a for a in fig.axes if a is not ax]
    assert twin and twin[0].get_lines()[0].get_gid() == "ratio:linkedin"
    assert max(twin[0].get_lines()[0].get_ydata()) == pytest.approx(3.75, abs=0.1)
    plain = plot_company(w, "Northwind Robotics")  # no reference: nothing drawn
    assert not [c for c in plain.axes[0].collections if c.get_gid() == "reference"]


# -- the CLI ------------------------------------------------------------------------------

def test_cli_imports_references_runs_and_shows_the_ratio(tmp_path: Path) -> None:
    project = sample_project(tmp_path)
    (project / "data" / "references").mkdir()
    shutil.copy(REFERENCES, project / "data" / "references" / REFERENCES.name)
    done = tracker("references", "import", "data/references/headcounts_2022.csv",
                   cwd=project)
    assert done.returncode == 0, done.stderr
    assert "5 reference(s) of 3 company(ies)" in done.stdout
    run = tracker("run", "--day", "2023-03-01", cwd=project)
    assert run.returncode == 0, run.stdout + run.stderr  # all backfill: exit 0
    listed = json.loads(tracker("alerts", "--kind", "inflated", "--format", "json",
                                cwd=project).stdout)
    assert {a["company"] for a in listed} == {"apple"}
    jumps = json.loads(tracker("alerts", "--kind", "ratio_jump", "--format", "json",
                               cwd=project).stdout)
    assert {a["company"] for a in jumps} == {"apple", "amazon", "binance"}
    show = tracker("show", "apple", "--since", "2022-10-10", "--format", "csv", cwd=project)
    header, first = show.stdout.splitlines()[:2]
    assert header.split(",")[-2:] == ["reference", "ratio"]
    assert first.split(",")[-2:] == ["164000", f"{576562 / 164000:.3f}"]
    refs = tracker("references", "list", "apple", "--format", "csv", cwd=project)
    assert refs.stdout.count("Apple 10-K") == 2
    report = tracker("report", "--day", "2022-12-31", cwd=project)
    html = Path(report.stdout.strip()).read_text(encoding="utf-8")
    assert 'id="inflated"' in html and "1.7" in html.split('id="inflated"')[1][:2000]
    import re  # ratios read as ratios in the alert tables, not as counts ("1 -> 4")

    assert re.search(r"\d\.\d\dx &rarr; \d\.\d\dx", html)
    bad = project / "bad.csv"
    bad.write_text("company,date,count,source\napple,2022-13-01,5,x\n", encoding="utf-8")
    refused = tracker("references", "import", "bad.csv", cwd=project)
    assert refused.returncode == 3
    no_traceback(refused)
    assert "bad.csv:2: field 'date': '2022-13-01'" in refused.stderr


def test_a_cohort_lookup_plugs_in_companies_inflated_alike_are_not_abnormal(
        ws: Workspace, tmp_path: Path) -> None:
    bigs = {"big1": 35_000, "big2": 70_000, "big3": 17_500}
    _import(ws, tmp_path, _history({**bigs, **PEERS}, seed=11))
    import_references(ws, _refs(tmp_path / "refs.csv", [
        *((c, "2021-12-31", round(v / 3.5), "AR") for c, v in bigs.items()),
        *((c, "2021-12-31", round(v / 1.1), "AR") for c, v in PEERS.items())]))
    detect_inflation(ws)  # against all companies: the three stand out
    assert sorted(list_alerts(ws, kind="inflated")["company"]) == sorted(bigs)
    detect_inflation(ws, cohort_lookup=lambda _ws: dict.fromkeys(bigs, "platform"))
    assert set(list_alerts(ws, kind="inflated")["verdict"]) == {"withdrawn"}


def test_a_large_cohort_is_judged_from_its_own_median_once() -> None:
    """Past LEAVE_ONE_OUT_MAX companies the cohort's stats are shared: the same verdicts."""
    from tracker.config import AlertSettings
    from tracker.inflation import LEAVE_ONE_OUT_MAX, inflated

    rng = np.random.default_rng(3)
    n, days = LEAVE_ONE_OUT_MAX + 10, pd.date_range("2022-01-01", periods=30)
    level = np.r_[3.5, rng.normal(1.1, 0.05, n - 1)]
    frame = pd.DataFrame({
        "company": np.repeat([f"c{i:02d}" for i in range(n)], len(days)),
        "metric": "employees", "source": "linkedin", "as_of": np.tile(days, n),
        "ratio": np.repeat(level, len(days)) * np.exp(rng.normal(0, 0.003, n * len(days)))})
    found = inflated(frame, {}, AlertSettings())
    assert found["company"].tolist() == ["c00"]
    assert found["value_before"].iloc[0] == pytest.approx(1.1, rel=0.03)


def test_a_segment_chart_does_not_draw_the_company_headcount(tmp_path: Path) -> None:
    """The reference is the company's headcount: drawn on its employees chart, never
    on a segment's (1,600,000 beside 22,000 security profiles flattens the series)."""
    project = sample_project(tmp_path)
    shutil.copy(ROOT / "data" / "samples" / "purge_2022_segments.csv",
                project / "data" / "samples")
    assert tracker("run", "--day", "2022-10-20", cwd=project).returncode == 0
    (project / "data" / "references").mkdir()
    shutil.copy(REFERENCES, project / "data" / "references" / REFERENCES.name)
    assert tracker("references", "import", "data/references/headcounts_2022.csv",
                   cwd=project).returncode == 0
    ws = open_workspace(project / "config.toml")
    try:
        whole = plot_company(ws, "amazon")
        segment = plot_company(ws, "amazon", metric="employees:security")
    finally:
        ws.close()

    def has_reference(fig: object) -> bool:
        ax = fig.axes[0]  # type: ignore[attr-defined]
        return any("reference" in str(a.get_gid() or a.get_label())
                   for a in [*ax.lines, *ax.collections, *ax.texts])
    assert has_reference(whole) and not has_reference(segment)
