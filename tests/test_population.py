"""Population (platform-wide) events: the rule on synthetic histories, the store, the CLI."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import no_traceback, sample_project, tracker

from tracker.config import Settings
from tracker.detect import DetectSettings, detect, synthetic
from tracker.detect.population import link_alerts, population_pass
from tracker.detection import run_detection
from tracker.population import (
    event_members,
    find_population_events,
    list_events,
    population_events,
    population_step,
)
from tracker.store import events as event_store
from tracker.workspace import Workspace


def _keyed(matrix: pd.DataFrame, metric: str | list[str] = "employees"
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    keys = pd.DataFrame({"company": [str(c) for c in matrix.columns], "metric": metric,
                         "source": "linkedin"})
    m = matrix.copy()
    m.columns = range(m.shape[1])
    return m, keys


@pytest.mark.parametrize("seed", [0, 1])
def test_a_platform_day_is_found_with_its_members(seed: int) -> None:
    """25% of 400 companies drop 3-12% on one day: one event on that day, its members
    listed; on that day most of them had not alerted (the detector reports a moderate
    move only once it held, days later, if at all)."""
    case = synthetic.generate_platform(400, 730, seed=seed, n_events=1)
    truth = case.events.iloc[0]
    matrix, keys = _keyed(case.matrix)
    daily, events, members = population_pass(matrix, keys, DetectSettings())
    assert list(events["id"]) == [f"pop-employees-down-{truth['date']:%Y-%m-%d}"]
    ev = events.iloc[0]
    assert ev["first_date"] == ev["last_date"] == truth["date"]
    listed = set(members["company"])
    hit = listed & set(truth["members"])
    assert len(hit) / len(truth["members"]) >= 0.8  # recall of members
    assert len(hit) / len(listed) >= 0.85  # and few bystanders
    assert -12 <= ev["median_change_pct"] <= -3
    alerts = detect(matrix, DetectSettings()).join(keys, on="series")
    alerts = alerts.assign(id=np.arange(len(alerts)))
    on_the_day = alerts[alerts["detected_on"] <= truth["date"]]
    assert link_alerts(members, events, on_the_day).notna().mean() < 0.5
    assert (daily[daily["event"]]["date"] == truth["date"]).all()


def test_a_daily_window_judges_its_days_as_the_full_pass() -> None:
    """What the daily step reads (a detection window plus the shares' baseline before
    the judged day, scoring only the baseline's days) gives the full pass's shares,
    events and members for the days it judges."""
    from tracker.detect.engine import window_days
    from tracker.detect.population import baseline_reach

    case = synthetic.generate_platform(300, 730, seed=3, n_events=3)
    matrix, keys = _keyed(case.matrix)
    s, ps = DetectSettings(), Settings().population
    full_daily, full_ev, full_mem = population_pass(matrix, keys, s, ps)
    checked = 0
    for day in case.events["date"]:
        start = pd.Timestamp(day)
        lo = start - pd.Timedelta(days=window_days(s) + baseline_reach(ps))
        if lo < matrix.index[0]:
            continue
        window = matrix.loc[lo:start]
        daily, ev, mem = population_pass(window, keys, s, ps, judge_from=start)
        judged = daily[daily["date"] >= start - pd.Timedelta(days=1)].reset_index(drop=True)
        want = full_daily[(full_daily["date"] >= start - pd.Timedelta(days=1))
                          & (full_daily["date"] <= start)].reset_index(drop=True)
        pd.testing.assert_frame_equal(judged, want)
        assert list(ev[ev["last_date"] >= start]["id"]) == \
            list(full_ev[(full_ev["last_date"] >= start) & (full_ev["first_date"] <= start)]["id"])
        got = mem[mem["date"] == start].reset_index(drop=True)
        pd.testing.assert_frame_equal(
            got, full_mem[full_mem["date"] == start].reset_index(drop=True))
        assert len(ev) >= 1 and len(got) >= 1  # the injected platform day was found
        checked += 1
    assert checked >= 1


@pytest.mark.parametrize("seed", [0, 1])
def test_a_purge_among_noisy_companies_is_found_though_most_never_alert(seed: int) -> None:
    """The same purge laid over quiet companies of every noise level (whole-people
    counts, weekday patterns): most members never alert alone, the event is found,
    and it lists members that did not alert with their change."""
    quiet = synthetic.generate_quiet(400, 730, seed=seed).matrix
    purged, truth = synthetic.with_purge(quiet, 500, seed=seed)
    matrix, keys = _keyed(purged)
    _, events, members = population_pass(matrix, keys, DetectSettings())
    assert list(events["id"]) == [f"pop-employees-down-{matrix.index[500]:%Y-%m-%d}"]
    alerts = detect(matrix, DetectSettings()).join(keys, on="series")
    alerts = alerts.assign(id=np.arange(len(alerts)))
    moved = alerts[alerts["company"].isin(truth) & (alerts["change_pct"] < 0)
                   & (alerts["date"] >= matrix.index[499]) & (alerts["date"] <= matrix.index[501])]
    assert moved["company"].nunique() < len(truth) / 2, "most members never alert alone"
    listed = set(members["company"])
    assert len(listed & set(truth)) / len(listed) >= 0.85
    assert len(listed & set(truth)) / len(truth) >= 0.5  # the visible ones
    silent = members[link_alerts(members, events, alerts).isna()]
    assert len(silent) >= 15 and (silent["change_pct"] < -1).all()


@pytest.mark.parametrize("seed,weekly", [(0, 0.15), (1, 0.15), (2, 0.4)])
def test_quiet_histories_open_no_event_in_two_years(seed: int, weekly: float) -> None:
    """400 quiet companies of every size (whole-people counts, weekday patterns,
    missing days, outages, stale stretches): no event in 730 days."""
    case = synthetic.generate_quiet(400, 730, seed=seed, weekly_fraction=weekly)
    matrix, keys = _keyed(case.matrix)
    daily, events, _ = population_pass(matrix, keys, DetectSettings())
    assert events.empty, events
    judged = daily["score"].notna()
    assert judged.sum() > 2 * 600  # both directions were judged on most days


def _drop(matrix: pd.DataFrame, cols: np.ndarray, day: int, pct: float) -> None:
    matrix.iloc[day:, cols] = (matrix.iloc[day:, cols] * (1 - pct / 100)).round()


def test_a_purge_rolling_over_two_nights_stays_one_event() -> None:
    case = synthetic.generate_quiet(400, 400, seed=3)
    matrix, keys = _keyed(case.matrix)
    big = np.flatnonzero(matrix.iloc[300].to_numpy() > 2000)
    _drop(matrix, big[:40], 300, 8)
    _drop(matrix, big[40:80], 301, 8)
    _, events, members = population_pass(matrix, keys, DetectSettings())
    assert len(events) == 1
    ev = events.iloc[0]
    assert (ev["first_date"], ev["last_date"]) == (matrix.index[300], matrix.index[301])
    assert set(members["date"]) == {matrix.index[300], matrix.index[301]}
    assert len(set(keys["company"][big[:80]]) & set(members["company"])) >= 70


def test_segments_cohorts_and_industries_are_their_own_populations() -> None:
    """A network-security drop of 7% across companies is a segment event; a cohort's
    drop is found within the cohort although the whole metric barely moved."""
    a = synthetic.generate_quiet(300, 400, seed=4).matrix
    b = synthetic.generate_quiet(100, 400, seed=5).matrix
    b.columns = [f"sec{i}" for i in range(b.shape[1])]
    both = pd.concat([a, b], axis=1)
    matrix, keys = _keyed(both, ["employees"] * 300 + ["employees:security"] * 100)
    big = np.flatnonzero(matrix.iloc[320].to_numpy() > 2000)
    sec = big[big >= 300][:30]
    _drop(matrix, sec, 320, 7)
    cohort = [str(c) for c in a.columns[:60]]
    hit = [i for i in big if i < 60][:15]
    _drop(matrix, np.asarray(hit), 350, 6)
    industries = {str(c): "Software" for c in a.columns[100:160]}
    soft = [i for i in big if 100 <= i < 160][:15]
    _drop(matrix, np.asarray(soft), 370, 6)
    _, events, members = population_pass(matrix, keys, DetectSettings(),
                                         cohorts={"fintech": cohort}, industries=industries)
    ids = set(events["id"])
    day = matrix.index
    assert f"pop-employees:security-down-{day[320]:%Y-%m-%d}" in ids
    assert f"pop-employees-down-{day[350]:%Y-%m-%d}-fintech" in ids
    assert f"pop-employees-down-{day[370]:%Y-%m-%d}-industry-software" in ids
    assert not any(i.startswith(f"pop-employees-down-{day[320]:%Y-%m-%d}") for i in ids)
    seg = members[members["event_id"].str.startswith("pop-employees:security")]
    assert set(seg["metric"]) == {"employees:security"}
    assert len(set(seg["company"]) & set(keys["company"][sec])) >= 27


def test_a_tiny_population_needs_two_exceptional_moves() -> None:
    """Eight companies: one company's 30% drop is its own alert, not a platform's."""
    case = synthetic.generate_quiet(8, 200, seed=6)
    matrix, keys = _keyed(case.matrix)
    matrix = matrix.clip(lower=5000)
    _drop(matrix, np.asarray([0]), 150, 30)
    _, events, _ = population_pass(matrix, keys, DetectSettings())
    assert events.empty
    _drop(matrix, np.asarray([1]), 150, 20)
    _, events, _ = population_pass(matrix, keys, DetectSettings())
    assert list(events["id"]) == [f"pop-employees-down-{matrix.index[150]:%Y-%m-%d}"]


def test_two_giants_purged_the_same_night_are_an_event_by_headcount() -> None:
    """2022: Apple and Amazon among many small companies. Two of 400 series by count,
    most of the profiles by headcount: an event with both as members. Two small
    companies dropping alike are two alerts, not a platform event."""
    case = synthetic.generate_quiet(400, 400, seed=8)
    matrix, keys = _keyed(case.matrix)
    quiet = matrix.copy()
    sizes = matrix.iloc[300].fillna(0).to_numpy()
    giants = np.argsort(sizes)[-2:]
    matrix.iloc[:, giants] = matrix.iloc[:, giants] * (0.4 * sizes.sum() / sizes[giants].sum())
    matrix.iloc[:, giants] = matrix.iloc[:, giants].round()
    _drop(matrix, giants, 300, 40)
    _, events, members = population_pass(matrix, keys, DetectSettings())
    assert list(events["id"]) == [f"pop-employees-down-{matrix.index[300]:%Y-%m-%d}"]
    assert events.iloc[0]["n_members"] <= 5 and events.iloc[0]["weighted_share"] > 0.25
    assert set(keys["company"][giants]) <= set(members["company"])
    small = np.argsort(np.where(sizes > 200, sizes, np.inf))[:2]
    _drop(quiet, small, 300, 40)
    _, events, _ = population_pass(quiet, keys, DetectSettings())
    assert events.empty, events


@pytest.fixture
def ws(db_url: str, sample_ws) -> Workspace:  # type: ignore[no-untyped-def]
    return sample_ws(db_url)


def test_events_round_trip_through_the_store(ws: Workspace) -> None:
    """SQLite and PostgreSQL: saved, read back as records, member alerts linked, and a
    recomputation keeps the event (and that it was announced)."""
    run_detection(ws)
    found = find_population_events(ws)
    assert list(found.new) == ["pop-employees-down-2022-10-11"]
    [ev] = population_events(ws)
    assert (ev.first_date, ev.last_date, ev.direction) == (date(2022, 10, 11),) * 2 + ("down",)
    assert {m.company for m in ev.members} == {"apple", "amazon"}
    assert ev.n_alerted == 2 and ev.n_silent == 0 and len(ev.member_alerts) == 2
    assert ev.weighted_share > 0.8
    from tracker.alerts import list_alerts

    alerts = list_alerts(ws).set_index("id")
    assert set(alerts.loc[list(ev.member_alerts), "event_id"]) == {ev.id}
    event_store.mark_notified(ws.store, [ev.id])
    again = find_population_events(ws)
    assert again.new == [] and again.deleted == 0
    [ev2] = population_events(ws)
    assert ev2.notified_at is not None and ev2.members == ev.members
    # a detection pass afterwards keeps the population event's id on its alerts
    run_detection(ws)
    alerts = list_alerts(ws).set_index("id")
    assert set(alerts.loc[list(ev.member_alerts), "event_id"]) == {ev.id}
    listed = list_events(ws, since=date(2022, 10, 1), metric="employees")
    assert list(listed["id"]) == [ev.id] and list(listed["n_alerted"]) == [2]
    assert list_events(ws, until=date(2022, 10, 10)).empty
    members = event_members(ws, ev.id)
    assert list(members["company"]) == ["apple", "amazon"] and members["alerted"].all()


def test_daily_steps_give_the_full_pass_events(sqlite_url: str, sample_ws) -> None:  # type: ignore[no-untyped-def]
    ws = sample_ws(sqlite_url)
    for d in pd.date_range("2022-10-08", "2022-10-14"):
        run_detection(ws, until=d.date())
        outcome = population_step(ws, d.date(), 0)
        if d == pd.Timestamp("2022-10-11"):
            assert outcome.details == {"population_events": ["pop-employees-down-2022-10-11"]}
        else:
            assert outcome.details == {}
    daily = [(e.id, e.members) for e in population_events(ws)]
    find_population_events(ws)
    assert [(e.id, e.members) for e in population_events(ws)] == daily


def test_unknown_cohort_company_is_named(sample_ws, sqlite_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tracker.errors import ConfigError

    ws = sample_ws(sqlite_url)
    ws.settings = Settings(base_dir=tmp_path, cohorts={"big": {"companies": ["apple", "nope"]}})
    with pytest.raises(ConfigError, match=r"\[cohorts.big\] companies: 'nope'"):
        find_population_events(ws)


def test_cli_lists_the_sample_purge(tmp_path: Path) -> None:
    project = sample_project(tmp_path)
    run = tracker("run", cwd=project)
    assert run.returncode == 0, run.stderr
    assert "1 population event(s) about older history stored (tracker events)" in run.stdout
    listed = tracker("events", "--format", "json", cwd=project)
    assert listed.returncode == 0, listed.stderr
    [ev] = json.loads(listed.stdout)
    assert ev["id"] == "pop-employees-down-2022-10-11" and ev["n_members"] == 2
    assert ev["first_date"] == "2022-10-11" and ev["cohort"] is None
    csv = tracker("events", "--format", "csv", "--since", "2022-10-01", cwd=project)
    assert csv.stdout.splitlines()[0].startswith("id,metric,cohort,direction,first_date")
    assert len(csv.stdout.splitlines()) == 2
    table = tracker("events", "--metric", "followers", cwd=project)
    assert table.returncode == 0 and "pop-" not in table.stdout
    members = tracker("events", "--members", ev["id"], "--format", "csv", cwd=project)
    rows = members.stdout.splitlines()
    assert rows[0] == ("event_id,company,metric,source,date,change_pct,score,value_before,"
                       "alerted,alert_id")
    assert [r.split(",")[1] for r in rows[1:]] == ["apple", "amazon"]
    assert all(",True," in r for r in rows[1:])
    unknown = tracker("events", "--members", "pop-nothing", cwd=project)
    no_traceback(unknown)
    assert unknown.returncode == 3 and "no population event 'pop-nothing'" in unknown.stderr
    bad = tracker("events", "--since", "2022-13-01", cwd=project)
    no_traceback(bad)
    assert bad.returncode == 3


def test_population_and_cohort_keys_are_documented() -> None:
    from tracker.detect.population_settings import PopulationSettings

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    start = readme.index("### `[population]`")
    section = readme[start:readme.index("\n### ", start + 1)]
    assert [k for k in PopulationSettings.model_fields if f"`{k}`" not in section] == []
    assert "### `[cohorts.NAME]`" in readme and "`companies = [" in readme


def test_migration_0006_upgrades_a_0005_database_and_back(db_url: str) -> None:
    """A store at 0005 with an alert whose event_id is a cross-company id: the upgrade
    adds the event tables and keeps the alert; the downgrade drops them again and
    clears only population ids, which do not fit the old column."""
    from alembic import command
    from sqlalchemy import create_engine, inspect, text

    from tracker.store.engine import _alembic_config

    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), "0005")
            conn.execute(text("INSERT INTO companies (id, name, tags, external_ids, created_at)"
                              " VALUES ('apple', 'Apple', '{}', '{}', '2022-10-11')"))
            conn.execute(text("INSERT INTO series (id, company_id, metric) "
                              "VALUES (1, 'apple', 'employees')"))
            conn.execute(text("INSERT INTO sources (id, name) VALUES (1, 'linkedin')"))
            for i, eid in ((1, "drop-2022-10-11"), (2, None)):
                conn.execute(text(
                    "INSERT INTO alerts (id, fingerprint, series_id, source_id, date, "
                    "detected_on, kind, change_pct, score, severity, status, verdict, event_id,"
                    " sources_agreeing, created_at, updated_at) VALUES (:i, :fp, 1, 1, "
                    "'2022-10-11', '2022-10-11', 'drop', -50, -99, 'critical', 'open', "
                    "'confirmed', :e, 1, '2022-10-11', '2022-10-11')"),
                    {"i": i, "fp": f"fp{i}", "e": eid})
            command.upgrade(_alembic_config(conn), "0006")
        assert {"population_events", "population_event_members"} <= set(
            inspect(engine).get_table_names())
        long_id = "pop-employees:security-down-2022-10-11-industry-computer-network-security"
        with engine.begin() as conn:
            conn.execute(text("UPDATE alerts SET event_id = :e WHERE id = 2"), {"e": long_id})
            assert conn.execute(text("SELECT event_id FROM alerts ORDER BY id")).scalars().all(
            ) == ["drop-2022-10-11", long_id]
            command.downgrade(_alembic_config(conn), "0005")
        assert "population_events" not in inspect(engine).get_table_names()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT event_id FROM alerts ORDER BY id")).scalars().all(
            ) == ["drop-2022-10-11", None]
    finally:
        engine.dispose()


def test_the_share_chart_marks_the_event_days() -> None:
    from tracker.plots import population_figure, render

    case = synthetic.generate_platform(400, 500, seed=0, n_events=1)
    daily, events, _ = population_pass(*_keyed(case.matrix), DetectSettings())
    whole = daily[daily["cohort"].isna()]
    fig = population_figure(whole)
    ax = fig.axes[0]
    marks = {c.get_gid(): c.get_offsets() for c in ax.collections}
    assert len(marks["events:down"]) == 1 and len(marks["events:up"]) == 0
    share = float(events["peak_share"].iloc[0])
    assert marks["events:down"][0][1] == pytest.approx(-100 * share)
    assert {line.get_gid() for line in ax.lines} >= {"share:down", "share:up"}
    assert render(fig, "png")[:4] == b"\x89PNG"


def test_chunked_scores_give_the_one_piece_verdicts(monkeypatch: pytest.MonkeyPatch) -> None:
    """At a million series the pass scores column chunks in forked workers and keeps
    only their sums, scoring an event's days again for its members: the shares,
    events and members must be those of one piece, to the bit, cohorts included."""
    from tracker.detect import engine

    case = synthetic.generate_platform(1200, 400, seed=5, n_events=3)
    matrix, keys = _keyed(case.matrix)
    cohorts = {"first": [str(c) for c in case.matrix.columns[:500]]}
    s = DetectSettings(workers=2)
    ps = Settings().population
    judge = pd.Timestamp(case.events["date"].iloc[-1])
    monkeypatch.setattr(engine, "_CHUNK_CELLS", 10**9)
    assert len(engine._chunks(len(matrix), matrix.shape[1], 2)) == 1
    whole = population_pass(matrix, keys, s, ps, cohorts=cohorts)
    since = population_pass(matrix, keys, s, ps, cohorts=cohorts, judge_from=judge)
    monkeypatch.setattr(engine, "_CHUNK_CELLS", 40_000)
    assert len(engine._chunks(len(matrix), matrix.shape[1], 2)) >= 4  # forked workers
    for want, got in ((whole, population_pass(matrix, keys, s, ps, cohorts=cohorts)),
                      (since, population_pass(matrix, keys, s, ps, cohorts=cohorts,
                                              judge_from=judge))):
        for a, b in zip(want, got, strict=True):
            pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert len(whole[1]) >= 3 and (whole[1]["cohort"] == "first").any()
    assert set(since[1]["id"]) < set(whole[1]["id"])  # only events lasting to the judged days
