"""The evaluation of issue 9: the sliced scorer on hand-made frames, the suite's generators.

Why: the detector is tuned against these numbers, so the scorer must count a hit, a
false alarm, a miss and a mistyped alert exactly as stated, and every label a
generator writes must point at a change that is really in its matrix.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tracker.detect.evaluate import (
    band,
    drift_onsets,
    false_alert_rate,
    glitch_typing,
    match,
    quiet_days,
    table,
)
from tracker.detect.synthetic import (
    SUITE_LABEL_COLUMNS,
    generate_drifts,
    generate_moderate,
    generate_platform,
    generate_quiet,
    generate_short,
    generate_small,
    suite,
)

D = pd.Timestamp("2022-01-01")


def day(n: int) -> pd.Timestamp:
    return D + pd.Timedelta(days=n)


def labels(rows: list[tuple]) -> pd.DataFrame:
    """(series, kind, start, end, level[, counted, tolerance_days])."""
    out = []
    for r in rows:
        s, k, a, b, lvl, *rest = r
        out.append({"series": s, "kind": k, "start": day(a), "end": day(b), "size_pct": -10.0,
                    "level": lvl, "counted": rest[0] if rest else True,
                    "tolerance_days": rest[1] if len(rest) > 1 else 3, "slack_days": 60,
                    "set": "t", "class": k})
    return pd.DataFrame(out)


def dets(rows: list[tuple]) -> pd.DataFrame:
    """(series, kind, date, detected_on, value_before)."""
    return pd.DataFrame([{"series": s, "kind": k, "date": day(a), "detected_on": day(b),
                          "confirmed_on": day(b + 2), "value_before": v}
                         for s, k, a, b, v in rows])


def test_hit_false_alarm_miss_and_mistyped() -> None:
    lab = labels([("a", "drop", 10, 10, 1000), ("b", "spike", 20, 20, 200),
                  ("c", "glitch", 30, 31, 50_000)])
    det = dets([("a", "drop", 11, 11, 990),     # hit, one day late: within tolerance
                ("b", "drop", 20, 20, 200),     # right day, wrong direction: mistyped
                ("q", "spike", 40, 40, 7000),   # on a quiet series: false alarm
                ("a", "drop", 60, 60, 900)])    # far from the label: false alarm
    m = match(det, lab)
    assert m.det["outcome"].tolist() == ["tp", "mistyped", "fp", "fp"]
    t = table(m).set_index("kind")
    assert t.loc["drop", "precision"] == pytest.approx(1 / 3)
    assert t.loc["drop", "recall"] == 1.0
    assert t.loc["spike", "recall"] == 0.0 and t.loc["spike", "precision"] == 0.0
    assert t.loc["glitch", "recall"] == 0.0 and t.loc["glitch", "detections"] == 0
    assert t.loc["shift", "labels"] == 2 and t.loc["shift", "tp"] == 1
    assert t.loc["all", "f1"] == pytest.approx(2 * 0.25 * (1 / 3) / (0.25 + 1 / 3))
    assert t.loc["drop", "median_delay"] == 1.0 and t.loc["drop", "median_verdict"] == 3.0


def test_tolerance_is_per_label_and_matching_one_to_one() -> None:
    lab = labels([("m", "drop", 0, 0, 500, True, 31), ("d", "drop", 0, 0, 500)])
    det = dets([("m", "drop", 25, 25, 500), ("d", "drop", 5, 5, 500),
                ("m", "drop", 1, 1, 500)])  # two detections, one label: the closer wins
    m = match(det, lab)
    assert m.det["outcome"].tolist() == ["fp", "fp", "tp"]
    assert m.lab["hit"].tolist() == [True, False]


def test_uncounted_labels_are_neither_hits_nor_false_alarms() -> None:
    lab = labels([("p", "drop", 10, 10, 800, False), ("p2", "drop", 10, 10, 800)])
    m = match(dets([("p", "drop", 10, 10, 800), ("p2", "drop", 10, 10, 800)]), lab)
    assert m.det["outcome"].tolist() == ["ignored", "tp"]
    t = table(m).set_index("kind")
    assert t.loc["drop", "labels"] == 1 and t.loc["drop", "detections"] == 1
    assert t.loc["drop", "f1"] == 1.0


def test_drift_onset_error_and_detection_window() -> None:
    lab = labels([("x", "drift_up", 100, 160, 5000), ("y", "drift_down", 100, 130, 5000),
                  ("z", "drift_up", 100, 130, 5000)])
    det = dets([("x", "drift_up", 105, 140, 5000),    # hit, dated 5 days after the onset
                ("y", "drift_down", 60, 150, 5000),   # hit, dated 40 days early
                ("z", "drift_up", 100, 95, 5000)])    # knowable before the onset: false
    m = match(det, lab)
    assert m.det["outcome"].tolist() == ["tp", "tp", "fp"]
    assert m.lab["onset_error_days"].tolist()[:2] == [5.0, 40.0]
    on = drift_onsets(m)
    assert on["drifts"] == 3 and on["detected"] == 2
    assert on["share_within_all"] == pytest.approx(1 / 3)
    assert on["share_within_found"] == pytest.approx(0.5)
    assert on["median_onset_error"] == 22.5
    late = match(dets([("y", "drift_down", 100, 130 + 61, 5000)]), lab)
    assert late.det["outcome"].tolist() == ["fp"]  # past end + slack_days


def test_size_bands_for_labels_and_unmatched_detections() -> None:
    got = band([0, 299, 300, 4999, 5000, 99_999, 100_000, np.nan])
    assert got.tolist() == ["<300", "<300", "300-5k", "300-5k", "5k-100k", "5k-100k", ">100k",
                            "?"]
    lab = labels([("a", "drop", 10, 10, 290), ("b", "drop", 10, 10, 200_000)])
    # the hit takes its label's band even though its value_before is over 300
    m = match(dets([("a", "drop", 10, 10, 310), ("c", "drop", 10, 10, 6000)]), lab)
    assert m.det["band"].tolist() == ["<300", "5k-100k"]
    t = table(m, "band", ("drop",), ["<300", "300-5k", "5k-100k", ">100k"]).set_index("band")
    assert t.loc["<300", "f1"] == 1.0
    assert t.loc["5k-100k", "precision"] == 0.0 and t.loc["5k-100k", "labels"] == 0
    assert t.loc[">100k", "recall"] == 0.0
    assert t.loc["300-5k", "labels"] == 0 and np.isnan(t.loc["300-5k", "f1"])


def test_glitch_typing_and_quiet_rate() -> None:
    lab = labels([("g1", "glitch", 10, 10, 900), ("g2", "glitch", 10, 11, 900),
                  ("g3", "glitch", 10, 10, 900)])
    m = match(dets([("g1", "glitch", 10, 10, 900), ("g2", "drop", 10, 10, 900)]), lab)
    assert glitch_typing(m) == (0.5, 2)
    idx = pd.date_range(D, periods=100, freq="D")
    matrix = pd.DataFrame({"g1": 1.0, "q1": 1.0, "q2": np.where(np.arange(100) < 50, 1.0, np.nan)},
                          index=idx)
    quiet, n_days = quiet_days(matrix, lab)
    assert quiet == ["q1", "q2"] and n_days == 150
    rate, n = false_alert_rate(dets([("q1", "drop", 5, 5, 1), ("g1", "drop", 50, 50, 1)]),
                               quiet, n_days)
    assert n == 1 and rate == pytest.approx(1e4 / 150)


def _obs(matrix: pd.DataFrame, series: str) -> pd.Series:
    return matrix[series].dropna()


@pytest.fixture(scope="module")
def cases() -> dict:
    return {c.name: c for c in (
        generate_moderate(120, 500, seed=3), generate_small(100, 500, seed=3),
        generate_drifts(80, 600, seed=3), generate_platform(200, 600, seed=3),
        generate_short(60, 40, seed=3), generate_quiet(60, 400, seed=3))}


def test_labels_have_every_column_and_start_on_an_observed_day(cases: dict) -> None:
    for c in cases.values():
        assert list(c.labels.columns) == SUITE_LABEL_COLUMNS, c.name
        assert (c.labels["set"] == c.name).all()
        for s, t in zip(c.labels["series"], c.labels["start"], strict=True):
            assert np.isfinite(c.matrix.at[t, s]), (c.name, s, t)
        assert (c.matrix.fillna(0) >= 0).all().all()
        assert np.array_equal(c.matrix.fillna(0), np.round(c.matrix.fillna(0)))  # whole people
        assert set(c.info["series"]) == set(c.matrix.columns)
        assert not c.info.loc[c.info["quiet"], "series"].isin(set(c.labels["series"])).any()


def _ratio(matrix: pd.DataFrame, series: str, start: pd.Timestamp, k: int = 10) -> float:
    col = _obs(matrix, series)
    before = col[col.index < start].iloc[-k:]
    after = col[col.index >= start].iloc[:k]
    return float(np.log(after.median() / before.median()))


def test_shift_labels_point_at_level_changes(cases: dict) -> None:
    for name in ("moderate", "small", "platform"):
        c = cases[name]
        lab = c.labels[c.labels["kind"].isin(["drop", "spike"])]
        assert len(lab) > 10, name
        for r in lab.itertuples():
            got = _ratio(c.matrix, r.series, r.start)
            want = np.log1p(r.size_pct / 100)
            assert np.sign(got) == np.sign(want), (name, r.series)
            assert abs(got - want) < max(0.5 * abs(want), 0.03), (name, r.series, got, want)
    mod = cases["moderate"]
    gap = mod.labels[mod.labels["class"] == "moderate_after_gap"]
    assert len(gap) and all(np.isnan(mod.matrix.at[t - pd.Timedelta(days=1), s])
                            for s, t in zip(gap["series"], gap["start"], strict=True))
    assert mod.labels.loc[mod.labels["kind"] != "glitch", "size_pct"].abs().between(5, 10).all()
    small = cases["small"].labels
    assert small["level"].between(30, 320).all()
    assert small["size_pct"].abs().between(20, 50).all()


def test_glitches_come_back(cases: dict) -> None:
    c = cases["moderate"]
    for r in c.labels[c.labels["kind"] == "glitch"].itertuples():
        col = _obs(c.matrix, r.series)
        before = col[col.index < r.start].iloc[-10:].median()
        after = col[col.index > r.end].iloc[:10].median()
        assert abs(np.log(after / before)) < 0.05
        assert abs(col[r.start] / before - 1) > 0.04


def test_drift_onsets_are_where_the_trend_changes(cases: dict) -> None:
    c = cases["drift"]
    assert len(c.labels) > 20
    for r in c.labels.itertuples():
        col = np.log(_obs(c.matrix, r.series))
        t = col.index
        pre = col[(t < r.start) & (t >= r.start - pd.Timedelta(days=120))]
        post = col[(t >= r.start) & (t <= min(r.end, r.start + pd.Timedelta(days=90)))]
        slope = [np.polyfit((s.index - r.start).days, s.to_numpy(), 1)[0] for s in (pre, post)]
        assert np.sign(slope[1] - slope[0]) == (1 if r.kind == "drift_up" else -1), r.series


def test_platform_days_and_members(cases: dict) -> None:
    c = cases["platform"]
    assert len(c.events) == 2
    for e in c.events.itertuples():
        members = c.labels[c.labels["start"] == e.date]
        assert set(members["series"]) == set(e.members)
        assert 0.15 < e.n_members / c.matrix.shape[1] < 0.35
        assert members["size_pct"].between(-12, -3).all()
        assert (members["counted"] == (members["size_pct"] <= -5)).all()
        assert e.n_counted == members["counted"].sum()


def test_short_series_lengths_and_labels(cases: dict) -> None:
    c = cases["short"]
    n_obs = c.matrix.notna().sum()
    mon = [s for s in c.matrix.columns if s.startswith("mon")]
    ann = [s for s in c.matrix.columns if s.startswith("ann")]
    assert n_obs[mon].between(24, 60).all() and n_obs[ann].between(6, 15).all()
    assert all(c.matrix[s].dropna().index.month.unique().tolist() == [1] for s in ann)
    for r in c.labels[c.labels["kind"].isin(["drop", "spike"])].itertuples():
        col = np.log(_obs(c.matrix, r.series))
        step = col.diff()
        jump = step[r.start] - step.drop(r.start).median()  # the step beyond the usual growth
        assert np.sign(jump) == np.sign(r.size_pct), r.series
        assert abs(jump - np.log1p(r.size_pct / 100)) < 0.15, r.series
    assert set(c.labels["cadence"]) == {"monthly", "annual"}
    assert {"monthly_shift", "monthly_trend", "annual_shift", "annual_trend"} <= set(
        c.labels["class"])


def test_suite_is_reproducible_and_quiet_set_is_quiet() -> None:
    a, b = suite(7, quick=True, n_days=400), suite(7, quick=True, n_days=400)
    assert [c.name for c in a] == ["legacy", "moderate", "small", "drift", "platform", "short",
                                   "quiet"]
    for x, y in zip(a, b, strict=True):
        pd.testing.assert_frame_equal(x.matrix, y.matrix)
        pd.testing.assert_frame_equal(x.labels, y.labels)
    quiet = a[-1]
    assert quiet.labels.empty and quiet.info["quiet"].all()
    assert quiet.info["size"].min() < 100 and quiet.info["size"].max() > 100_000
    sub = a[1].subset(30, seed=1)
    assert sub.matrix.shape[1] == 30 and sub.labels["series"].isin(sub.matrix.columns).all()
    assert set(a[1].subset(10, seed=1).matrix.columns) <= set(sub.matrix.columns)


def test_peers_return_detections_the_scorer_reads() -> None:
    pytest.importorskip("ruptures")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import baselines

    rng = np.random.default_rng(0)
    idx = pd.date_range(D, periods=200, freq="D")
    v = 10_000 * np.exp(rng.normal(0, 0.003, 200))
    v[120:] *= 0.7
    matrix = pd.DataFrame({"co/employees/x": np.round(v)}, index=idx)
    lab = labels([("co/employees/x", "drop", 120, 120, 10_000)])
    lab["start"] = idx[120]
    lab["end"] = idx[120]
    for name, (fn, _, _) in baselines.PEERS.items():
        found = fn(matrix, workers=1)
        m = match(found, lab)
        assert m.lab["hit"].all(), name
        assert (found.loc[found["date"] == idx[120], "change_pct"] < -25).all(), name
