"""Charts drawn from a real SQLite store holding the 2022 sample.

The assertions look at the artists, not at pixels: a line per source whose data are
the stored values, a NaN where a day is missing, the alert drawn at its day in the
style of its verdict. Saved files are decoded to check they are real images of the
promised size.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import matplotlib.dates as mdates
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from helpers import python_env
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure

from tracker import plots
from tracker.alerts import list_alerts
from tracker.config import Settings
from tracker.detection import build_matrix, run_detection
from tracker.errors import InputError, NotFoundError
from tracker.ingest import import_file
from tracker.store import Store
from tracker.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "samples" / "purge_2022.csv"
PURGE = date(2022, 10, 11)


def _workspace(folder: Path, until: date | None = None) -> Workspace:
    ws = Workspace(Settings(base_dir=folder), Store(f"sqlite:///{folder / 'tracker.db'}"))
    import_file(ws.store, SAMPLE)
    run_detection(ws, until=until)
    return ws


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """The whole sample, detected over its whole history (alerts confirmed)."""
    with _workspace(tmp_path_factory.mktemp("full")) as w:
        yield w


@pytest.fixture(scope="module")
def replay_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """The sample detected as of the purge day: Apple's drop is still provisional."""
    with _workspace(tmp_path_factory.mktemp("replay"), until=PURGE) as w:
        yield w


def _obs(ws: Workspace, company: str) -> pd.DataFrame:
    return ws.store.observations([ws.store.company_id(company)], metric="employees")


def _alert_artists(fig: Figure, kind: str) -> list:
    ax = fig.axes[0]
    return [a for a in [*ax.collections, *ax.patches]
            if (a.get_gid() or "").startswith(f"alert:{kind}:")]


def _num(day: date) -> float:
    return float(mdates.date2num(pd.Timestamp(day)))


# -- series figure ------------------------------------------------------------------

def test_one_line_per_source_with_the_stored_values(ws: Workspace) -> None:
    obs = _obs(ws, "Apple")
    fig = plots.plot_company(ws, "Apple")
    lines = fig.axes[0].get_lines()
    assert len(lines) == obs["source"].nunique() == 1
    x = np.asarray(lines[0].get_xdata(), dtype="datetime64[ns]")
    y = np.asarray(lines[0].get_ydata(), dtype="float64")
    seen = ~np.isnan(y)
    assert np.array_equal(y[seen], obs["value"].to_numpy(dtype="float64"))
    assert np.array_equal(x[seen], obs["as_of"].to_numpy(dtype="datetime64[ns]"))


def test_several_sources_are_several_lines_and_alerts_follow_their_source() -> None:
    days = pd.date_range("2022-06-01", periods=30, freq="D")
    obs = pd.concat([
        pd.DataFrame({"company": "acme", "metric": "employees", "source": src,
                      "as_of": days, "value": base + np.arange(30)})
        for src, base in (("linkedin", 1000), ("pdl", 1200), ("website", 900))
    ])
    alerts = pd.DataFrame([
        {"company": "acme", "metric": "employees", "source": "pdl", "date": date(2022, 6, 10),
         "detected_on": date(2022, 6, 10), "confirmed_on": None, "verdict": "provisional",
         "kind": "spike", "change_pct": 12.5},
        {"company": "other", "metric": "employees", "source": "pdl",
         "date": date(2022, 6, 12), "detected_on": date(2022, 6, 12), "confirmed_on": None,
         "verdict": "confirmed", "kind": "drop", "change_pct": -40.0},
    ])
    fig = plots.series_figure(obs, alerts)
    ax = fig.axes[0]
    assert sorted(line.get_label() for line in ax.get_lines()) == ["linkedin", "pdl", "website"]
    spikes = _alert_artists(fig, "spike")
    assert len(spikes) == 1 and not _alert_artists(fig, "drop")  # another company's alert
    assert spikes[0].get_segments()[0][0][0] == pytest.approx(_num(date(2022, 6, 10)))
    assert ax.get_title(loc="left") == "acme"


def test_confirmed_drop_is_a_solid_line_at_the_purge_day_with_its_change(
    ws: Workspace,
) -> None:
    fig = plots.plot_company(ws, "Apple")
    drops = _alert_artists(fig, "drop")
    assert len(drops) == 1
    line = drops[0]
    assert isinstance(line, LineCollection)
    assert line.get_gid() == "alert:drop:confirmed:2022-10-11"
    (segment,) = line.get_segments()
    assert segment[0][0] == pytest.approx(_num(PURGE))
    assert line.get_linestyle()[0][1] is None  # solid: no dash pattern
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any("drop -50.6%" in t and "576,562 → 284,991" in t for t in texts), texts
    # the data's last day, not today's date
    assert fig.axes[0].get_title(loc="left") == "Apple, data through 2022-12-31"


def test_provisional_drop_is_dashed_and_says_so(replay_ws: Workspace) -> None:
    fig = plots.plot_company(replay_ws, "Apple", until=PURGE)
    (line,) = _alert_artists(fig, "drop")
    assert line.get_gid() == "alert:drop:provisional:2022-10-11"
    assert line.get_linestyle()[0][1] is not None  # a dash pattern
    assert any("(provisional)" in t.get_text() for t in fig.axes[0].texts)
    x = np.asarray(fig.axes[0].get_lines()[0].get_xdata(), dtype="datetime64[D]")
    assert x.max() == np.datetime64(PURGE)


def test_missing_days_break_the_line_instead_of_being_interpolated(ws: Workspace) -> None:
    fig = plots.plot_company(ws, "Fabrikam Foods")  # 2022-11-14..18 missing
    (line,) = fig.axes[0].get_lines()
    x = np.asarray(line.get_xdata(), dtype="datetime64[D]")
    y = np.asarray(line.get_ydata(), dtype="float64")
    i = int(np.flatnonzero(x == np.datetime64("2022-11-14"))[0])
    assert np.isnan(y[i])
    assert x[i - 1] == np.datetime64("2022-11-13") and not np.isnan(y[i - 1])
    assert x[i + 1] == np.datetime64("2022-11-19") and not np.isnan(y[i + 1])
    assert np.isnan(y).sum() == 1  # exactly one outage in this series
    apple_y = np.asarray(plots.plot_company(ws, "Apple").axes[0].get_lines()[0].get_ydata())
    assert np.isnan(apple_y).sum() == 2  # 2022-07-04 and 2022-11-25


def test_isolated_point_between_gaps_gets_a_marker() -> None:
    days = pd.to_datetime(["2022-06-01", "2022-06-02", "2022-06-05", "2022-06-08",
                           "2022-06-09"])
    obs = pd.DataFrame({"source": "s", "as_of": days, "value": [5, 6, 7, 8, 9]})
    (line,) = plots.series_figure(obs).axes[0].get_lines()
    y = np.asarray(line.get_ydata(), dtype="float64")
    assert np.isnan(y).sum() == 2
    marked = np.asarray(line.get_markevery())
    assert list(y[marked]) == [7.0]


def test_glitch_is_a_filled_marker_on_the_glitch_point(ws: Workspace) -> None:
    fig = plots.plot_company(ws, "Contoso Logistics")
    (marker,) = _alert_artists(fig, "glitch")
    assert isinstance(marker, PathCollection)
    (x, y), = marker.get_offsets()
    assert x == pytest.approx(_num(date(2022, 8, 17)))
    assert y == 1509
    assert marker.get_facecolor()[0][3] == 1  # decided: filled, not hollow
    assert marker.get_gid() == "alert:glitch:glitch:2022-08-17"
    assert not _alert_artists(fig, "drop")


# -- charts of the past (issue 10.3) ------------------------------------------------

def test_a_chart_of_the_past_shows_the_verdict_of_that_day(ws: Workspace) -> None:
    """Detected over the whole history, Contoso's move is a glitch, decided after
    its day: drawn --until its day, it is the provisional drop that was paged."""
    glitch = date(2022, 8, 17)
    fig = plots.plot_company(ws, "Contoso Logistics", until=glitch)
    (line,) = _alert_artists(fig, "drop")
    assert line.get_gid() == f"alert:drop:provisional:{glitch}"
    assert not _alert_artists(fig, "glitch")
    assert any("(provisional)" in t.get_text() for t in fig.axes[0].texts)
    assert fig.axes[0].get_title(loc="left") == (
        f"Contoso Logistics, data through {glitch} as known on {glitch}")
    later = plots.plot_company(ws, "Contoso Logistics", until=date(2022, 8, 25))
    (marker,) = _alert_artists(later, "glitch")
    assert marker.get_gid() == f"alert:glitch:glitch:{glitch}"
    # nothing is drawn before it was detected
    assert not _alert_artists(plots.plot_company(ws, "Apple", until=PURGE - timedelta(days=1)),
                              "drop")


def test_a_chart_of_the_past_draws_the_values_known_then(tmp_path: Path) -> None:
    """A correction made after the day is not on the chart of that day; a withdrawn
    alert is grey and dotted on today's chart, and as it was on the chart of then."""
    with _workspace(tmp_path) as w:
        run_detection(w)
        before = plots.plot_company(w, "Apple", until=PURGE)
        fix = tmp_path / "fix.csv"
        days = pd.date_range(PURGE, "2022-12-31").strftime("%Y-%m-%d")
        pd.DataFrame({"company": "Apple", "date": days, "employees": 576000,
                      "source": "linkedin"}).to_csv(
            fix, index=False)
        import_file(w.store, fix)  # collected now: after 2022-10-11
        run_detection(w)
        assert list_alerts(w, company="apple")["verdict"].tolist() == ["withdrawn"]
        then = plots.plot_company(w, "Apple", until=PURGE)
        y_then = np.asarray(then.axes[0].get_lines()[0].get_ydata(), dtype="float64")
        y_before = np.asarray(before.axes[0].get_lines()[0].get_ydata(), dtype="float64")
        np.testing.assert_array_equal(y_then, y_before)  # 284,991 as known then
        (line,) = _alert_artists(then, "drop")
        assert line.get_gid() == f"alert:drop:provisional:{PURGE}"
        now = plots.plot_company(w, "Apple")
        (gone,) = _alert_artists(now, "drop")
        assert gone.get_gid() == f"alert:drop:withdrawn:{PURGE}"
        assert gone.get_linestyle()[0][1] is not None and tuple(
            gone.get_color()[0][:3]) == pytest.approx((0x9a / 255,) * 3)
        assert 576000 in np.asarray(now.axes[0].get_lines()[0].get_ydata())
        plots.save(then, tmp_path / "then.png")
        plots.save(now, tmp_path / "now.png")


def test_drift_is_a_shaded_span_from_its_start_to_its_detection() -> None:
    days = pd.date_range("2022-06-01", periods=90, freq="D")
    obs = pd.DataFrame({"source": "linkedin", "as_of": days,
                        "value": np.linspace(1000, 1150, 90).round()})
    alerts = pd.DataFrame([{"date": date(2022, 7, 1), "detected_on": date(2022, 7, 28),
                            "confirmed_on": date(2022, 7, 28), "verdict": "confirmed",
                            "kind": "drift_up", "change_pct": 9.0}])
    fig = plots.series_figure(obs, alerts, title="drifting")
    (span,) = _alert_artists(fig, "drift_up")
    (path,) = span.get_paths()
    xs = path.vertices[:, 0]
    assert xs.min() == pytest.approx(_num(date(2022, 7, 1)))
    assert xs.max() == pytest.approx(_num(date(2022, 7, 28)))
    assert fig.axes[0].get_title(loc="left") == "drifting"


def test_a_chart_with_hundreds_of_alerts_draws_them_all_and_labels_the_worst() -> None:
    """A noisy series with 600 alerts: one artist per kind and verdict holding every
    alert, the MAX_LABELS most severe and largest labelled, and a note of the rest."""
    rng = np.random.default_rng(5)
    days = pd.date_range("2020-01-01", periods=1500, freq="D")
    obs = pd.DataFrame({"source": "s", "as_of": days,
                        "value": (1000 * np.exp(np.cumsum(rng.normal(0, 0.01, 1500)))).round()})
    at = np.sort(rng.choice(1500, 600, replace=False))
    kinds = np.array(["drop", "spike", "glitch"])[at % 3]
    alerts = pd.DataFrame({"date": days[at], "detected_on": days[at], "kind": kinds,
                           "verdict": np.where(kinds == "glitch", "glitch", "confirmed"),
                           "change_pct": np.where(kinds == "drop", -5.0, 5.0),
                           "severity": "warning", "value_before": 1000.0,
                           "value_after": 950.0})
    alerts.loc[100, ["severity", "change_pct"]] = ["critical", -42.0]  # the one that matters
    fig = plots.series_figure(obs, alerts)
    ax = fig.axes[0]
    drawn = {k: _alert_artists(fig, k) for k in ("drop", "spike", "glitch")}
    assert all(len(v) == 1 for v in drawn.values())  # one artist per kind and verdict
    (drops,), (glitches,) = drawn["drop"], drawn["glitch"]
    assert len(drops.get_segments()) == (kinds == "drop").sum()
    assert len(glitches.get_offsets()) == (kinds == "glitch").sum()
    assert drops.get_gid().count(",") == (kinds == "drop").sum() - 1  # every day named
    labels = [t.get_text() for t in ax.texts if "\n" in t.get_text() or "%" in t.get_text()]
    assert len(labels) == plots.MAX_LABELS
    assert any("-42.0%" in t for t in labels)  # the critical one is labelled
    assert any(f"{600 - plots.MAX_LABELS} more alert(s)" in t.get_text() for t in ax.texts)


def test_axes_are_readable(ws: Workspace) -> None:
    fig = plots.plot_company(ws, "Amazon")
    ax = fig.axes[0]
    assert isinstance(ax.xaxis.get_major_formatter(), mdates.ConciseDateFormatter)
    assert ax.yaxis.get_major_formatter()(1249921, 0) == "1,249,921"
    log_ax = plots.plot_company(ws, "Amazon", log=True).axes[0]
    assert log_ax.get_yscale() == "log"
    assert log_ax.yaxis.get_major_formatter()(1_000_000, 0) == "1,000,000"


def test_wrong_input_is_a_sentence(ws: Workspace) -> None:
    both = ws.store.observations([ws.store.company_id("Apple"), ws.store.company_id("Amazon")])
    with pytest.raises(InputError, match="overview_figure"):
        plots.series_figure(both)
    with pytest.raises(InputError, match="missing value"):
        plots.series_figure(pd.DataFrame({"as_of": []}))
    with pytest.raises(NotFoundError):
        plots.plot_company(ws, "No Such Company")
    with pytest.raises(NotFoundError, match="since 2030-01-01"):
        plots.plot_company(ws, "Apple", since=date(2030, 1, 1))


# -- overview -----------------------------------------------------------------------

def _panels(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_visible()]


def test_overview_has_a_panel_per_company_with_alerts_indexed_to_100(ws: Workspace) -> None:
    alerts = list_alerts(ws)
    with_alerts = set(alerts["company"])
    assert with_alerts == {"apple", "amazon", "binance", "contoso-logistics"}
    fig = plots.overview_figure(ws.store.observations(metric="employees"), alerts)
    panels = _panels(fig)
    assert len(panels) == len(with_alerts)
    for ax in panels:
        (line,) = ax.get_lines()
        assert np.asarray(line.get_ydata())[0] == pytest.approx(100.0)
    titles = [ax.get_title(loc="left") for ax in panels]
    assert titles[0].startswith("apple") and "-50.6%" in titles[0]  # most severe first
    apple = panels[0]
    drops = [c for c in apple.collections if (c.get_gid() or "").startswith("alert:drop:")]
    assert drops[0].get_segments()[0][0][0] == pytest.approx(_num(PURGE))


def test_overview_accepts_the_detection_matrix_and_caps_panels(ws: Workspace) -> None:
    alerts = list_alerts(ws)
    fig = plots.overview_figure(build_matrix(ws), alerts, max_panels=2)
    assert len(_panels(fig)) == 2
    assert "2 more not shown" in fig.get_suptitle()
    named = plots.plot_overview(ws)
    assert [ax.get_title(loc="left").split("   ")[0] for ax in _panels(named)] == [
        "Apple", "Amazon", "Binance", "Contoso Logistics"]
    chosen = plots.overview_figure(build_matrix(ws), alerts, companies=["wingtip-studio"])
    assert len(_panels(chosen)) == 1
    empty = plots.overview_figure(build_matrix(ws), alerts.iloc[0:0])
    assert not empty.axes and "no companies" in empty.texts[0].get_text()


# -- files --------------------------------------------------------------------------

def test_saved_png_decodes_at_the_promised_size(ws: Workspace, tmp_path: Path) -> None:
    path = plots.save(plots.plot_company(ws, "Apple"), tmp_path / "deep" / "apple.png")
    assert path == tmp_path / "deep" / "apple.png" and path.stat().st_size > 20_000
    image = mpimg.imread(path)
    width, height = plots.SERIES_SIZE
    assert image.shape[:2] == (round(height * plots.DPI), round(width * plots.DPI))
    assert image[..., :3].std() > 0.05  # not a blank canvas
    over = plots.save(plots.plot_overview(ws), tmp_path / "overview.png")
    assert mpimg.imread(over).shape[:2] == (round((2 * plots.PANEL_SIZE[1] + 0.5) * plots.DPI),
                                            round(2 * plots.PANEL_SIZE[0] * plots.DPI))


def test_svg_and_bad_suffix(ws: Workspace, tmp_path: Path) -> None:
    fig = plots.plot_company(ws, "Binance")
    svg = plots.save(fig, tmp_path / "binance.SVG")
    text = svg.read_text(encoding="utf-8")
    assert "<svg" in text and "2022-09-04" in text  # the annotation is text, not paths
    again = plots.save(plots.plot_company(ws, "Binance"), tmp_path / "again.svg")
    assert again.read_text(encoding="utf-8") == text  # no timestamp: same chart, same file
    with pytest.raises(InputError, match=r"\.png or \.svg"):
        plots.save(fig, tmp_path / "binance.jpg")


def test_works_headless_without_pyplot(tmp_path: Path) -> None:
    code = (
        "import sys, pandas as pd\n"
        "from tracker import plots\n"
        "obs = pd.DataFrame({'source': 'x', 'as_of': pd.date_range('2022-01-01', periods=9),"
        " 'value': range(9)})\n"
        "plots.save(plots.series_figure(obs), sys.argv[1])\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    env = {k: v for k, v in python_env().items() if k not in ("DISPLAY", "MPLBACKEND")}
    out = tmp_path / "x.png"
    done = subprocess.run([sys.executable, "-c", code, str(out)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 1000
