"""Detector behaviour on hand-built histories, the bundled 2022 sample, and causality.

Why: the detector is only useful if it fires on purges, stays quiet on noise,
seasonality and gaps, tells glitches from shifts, and gives the same answers day by
day as in one batch run (alerts replayed from history must equal the live ones).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from tracker.detect import COLUMNS, DetectSettings, detect, detect_day, events
from tracker.detect.evaluate import score
from tracker.detect.synthetic import generate

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "samples" / "purge_2022.csv"
DAYS = 240
EVENT = 180
IDX = pd.date_range("2022-01-01", periods=DAYS, freq="D")


def history(size: float, noise: float = 0.003, growth: float = 0.0, seed: int = 1) -> np.ndarray:
    """A plausible daily count: trend, log-normal noise, whole people."""
    rng = np.random.default_rng(seed)
    t = np.arange(DAYS)
    return size * np.exp(growth * t + rng.normal(0, noise, DAYS))


def _set(a: np.ndarray, sl: slice, f: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    a = a.copy()
    a[sl] = f(a[sl])
    return np.round(a)


def _weekly(a: np.ndarray) -> np.ndarray:
    dip = np.where(IDX.day_of_week >= 5, 0.95, 1.0)
    return np.round(a * dip)


def _gap(a: np.ndarray, sl: slice) -> np.ndarray:
    a = np.round(a)
    a[sl] = np.nan
    return a


CASES = [
    # name, values, expected [(kind, status, date offset, change_pct approx or None)]
    ("purge 50% at 576k", _set(history(576_562), slice(EVENT, None), lambda v: v * 0.5),
     [("drop", "confirmed", EVENT, -50.0)]),
    ("purge 22% at 7.8k", _set(history(7_846), slice(EVENT, None), lambda v: v * 0.78),
     [("drop", "confirmed", EVENT, -22.0)]),
    ("surge 30% at 5k", _set(history(5_000), slice(EVENT, None), lambda v: v * 1.3),
     [("spike", "confirmed", EVENT, 30.0)]),
    ("purge 12% at 600", _set(history(600, 0.002), slice(EVENT, None), lambda v: v * 0.88),
     [("drop", "confirmed", EVENT, -12.0)]),
    ("glitch to zero, 1 day", _set(history(50_000), slice(EVENT, EVENT + 1), lambda v: v * 0),
     [("glitch", "confirmed", EVENT, -100.0)]),
    ("glitch tenfold, 2 days", _set(history(50_000), slice(EVENT, EVENT + 2), lambda v: v * 10),
     [("glitch", "confirmed", EVENT, 900.0)]),
    ("glitch partial page, 3 days",
     _set(history(80_000), slice(EVENT, EVENT + 3), lambda v: v * np.array([0.5, 0.7, 0.45])),
     [("glitch", "confirmed", EVENT, -50.0)]),
    ("gap of 10 days while growing is not a drop",
     _gap(history(20_000, growth=0.004), slice(EVENT, EVENT + 10)), []),
    ("week-long outage", _gap(history(300_000), slice(EVENT, EVENT + 7)), []),
    ("40-person company moving by a few people",
     np.round(40 + np.random.default_rng(3).integers(-2, 3, DAYS)).astype(float), []),
    ("2M company moving 1% overnight",
     _set(history(2_000_000, 0.001), slice(EVENT, None), lambda v: v * 1.01), []),
    ("2M company moving 2.5% overnight stays under min_change_pct",
     _set(history(2_000_000, 0.001), slice(EVENT, None), lambda v: v * 0.975), []),
    ("weekly pattern of 5% weekend dips", _weekly(history(100_000, 0.002)), []),
    ("noisy mid-size company, heavy tails",
     np.round(30_000 * np.exp(0.004 * np.random.default_rng(5).standard_t(5, DAYS))), []),
]


@pytest.mark.parametrize(("name", "values", "expected"), CASES, ids=[c[0] for c in CASES])
def test_single_series_cases(name: str, values: np.ndarray, expected: list) -> None:
    out = detect(pd.DataFrame({"s": values}, index=IDX))
    got = [(r.kind, r.status, (r.date - IDX[0]).days) for r in out.itertuples()]
    assert got == [(k, s, d) for k, s, d, _ in expected], f"{name}: {out}"
    for (*_, pct), r in zip(expected, out.itertuples(), strict=True):
        assert abs(r.change_pct - pct) < 2.0 + 0.02 * abs(pct)
        assert r.confirmed_on > r.detected_on == r.date


def test_weekly_adjustment_keeps_sensitivity() -> None:
    """A weekly pattern inflates the robust scale; removing it first lets a 10% purge through."""
    values = _weekly(_set(history(100_000, 0.002), slice(EVENT, None), lambda v: v * 0.9))
    m = pd.DataFrame({"s": values}, index=IDX)
    assert detect(m).kind.tolist() == ["drop"]
    # without the adjustment only the slower level test of moderate moves could see it
    assert detect(m, DetectSettings(seasonal="off", soft_threshold=0)).empty


def test_provisional_on_its_day_and_glitch_reclassified_on_return() -> None:
    values = _set(history(50_000), slice(EVENT, EVENT + 2), lambda v: v * 0.3)
    m = pd.DataFrame({"s": values}, index=IDX)
    first = detect(m.iloc[: EVENT + 1])
    assert first[["kind", "status"]].values.tolist() == [["drop", "provisional"]]
    assert pd.isna(first.confirmed_on[0])
    final = detect(m)
    assert final[["kind", "status"]].values.tolist() == [["glitch", "confirmed"]]
    assert final.confirmed_on[0] == IDX[EVENT + 2]


def test_no_realert_after_a_shift() -> None:
    values = _set(history(200_000), slice(100, None), lambda v: v * 0.6)
    out = detect(pd.DataFrame({"s": values}, index=IDX))
    assert out.kind.tolist() == ["drop"]


def test_monthly_cadence() -> None:
    idx = pd.date_range("2019-01-01", periods=48, freq="MS")
    v = 12_000 * np.exp(0.01 * np.arange(48) + np.random.default_rng(2).normal(0, 0.01, 48))
    v[36:] *= 0.7
    out = detect(pd.DataFrame({"co/employees/pdl": np.round(v)}, index=idx))
    assert out[["kind", "status", "date"]].values.tolist() == [["drop", "confirmed", idx[36]]]
    assert abs(out.change_pct[0] + 30) < 4


@pytest.mark.parametrize(("total", "kind"), [(0.35, "drift_up"), (-0.3, "drift_down")])
def test_drift(total: float, kind: str) -> None:
    v = history(40_000, 0.002, growth=0.0002)
    ramp = np.clip((np.arange(DAYS) - 150) / 60, 0, 1) * np.log1p(total)
    out = detect(pd.DataFrame({"s": np.round(v * np.exp(ramp))}, index=IDX))
    assert out.kind.tolist() == [kind]
    assert 150 <= (out.detected_on[0] - IDX[0]).days <= 215
    assert abs((out.date[0] - IDX[150]).days) <= 14  # the onset, known weeks later
    assert out.detected_on[0] - out.date[0] >= pd.Timedelta(days=14)


def test_slow_drift_needs_the_long_horizon() -> None:
    """+18% over 120 days: too slow for `drift_days`, found over `drift_long_days`."""
    n = 500
    idx = pd.date_range("2021-01-01", periods=n, freq="D")
    rng = np.random.default_rng(1)
    ramp = np.clip((np.arange(n) - 250) / 120, 0, 1) * np.log1p(0.18)
    v = 40_000 * np.exp(0.0001 * np.arange(n) + rng.normal(0, 0.002, n) + ramp)
    m = pd.DataFrame({"s": np.round(v)}, index=idx)
    out = detect(m)
    assert out.kind.tolist() == ["drift_up"]
    assert 250 <= (out.detected_on[0] - idx[0]).days <= 430
    # dated at the onset of the new trend (day 250), not at the start of the horizon
    assert abs((out.date[0] - idx[250]).days) <= 14
    assert detect(m, DetectSettings(drift_long_days=0)).empty


def test_output_schema_and_input_validation() -> None:
    out = detect(pd.DataFrame({"s": history(1000)}, index=IDX))
    assert list(out.columns) == COLUMNS and out.empty
    with pytest.raises(ValueError, match="sorted"):
        detect(pd.DataFrame({"s": [1.0, 2.0]}, index=IDX[[1, 0]]))


def test_settings_forbid_unknown_keys_and_are_frozen() -> None:
    with pytest.raises(ValidationError):
        DetectSettings(thresold=3)  # type: ignore[call-arg]
    s = DetectSettings()
    with pytest.raises(ValidationError):
        s.threshold = 1.0  # type: ignore[misc]
    assert all(f.description for f in DetectSettings.model_fields.values())


def _replay(m: pd.DataFrame, s: DetectSettings) -> pd.DataFrame:
    latest: dict[tuple, pd.Series] = {}
    for day in m.index:
        for _, r in detect_day(m, day, s).iterrows():
            latest[(r.series, r.date, r.kind.startswith("drift"))] = r
    rows = pd.DataFrame(list(latest.values()), columns=COLUMNS)
    return rows.sort_values(["series", "date", "kind"]).reset_index(drop=True)


def test_day_by_day_equals_batch() -> None:
    """Replaying history one day at a time gives exactly the batch anomalies."""
    m, _ = generate(24, 330, seed=7, quiet_fraction=0.2, weekly_fraction=0.3,
                    monthly_fraction=0.1, events_per_series=(2, 3))
    s = DetectSettings(drift_days=28, drift_long_days=42, drift_baseline_days=56)
    batch = detect(m, s).sort_values(["series", "date", "kind"]).reset_index(drop=True)
    assert len(batch) >= 20 and batch.kind.nunique() >= 4
    pd.testing.assert_frame_equal(_replay(m, s), batch, check_dtype=False)
    for day in m.index[120::23]:
        full = detect(m.loc[:day], s)
        want = full[(full.detected_on == day) | (full.confirmed_on == day)]
        pd.testing.assert_frame_equal(detect_day(m, day, s).reset_index(drop=True),
                                      want.reset_index(drop=True))


def test_sample_purges_and_glitch() -> None:
    df = pd.read_csv(SAMPLE, parse_dates=["date"])
    m = df.pivot_table(index="date", columns="company", values="employees", aggfunc="last")
    out = detect(m)
    got = {(r.series, f"{r.date:%Y-%m-%d}", r.kind, r.status): r.change_pct
           for r in out.itertuples()}
    assert set(got) == {("Apple", "2022-10-11", "drop", "confirmed"),
                        ("Amazon", "2022-10-11", "drop", "confirmed"),
                        ("Binance", "2022-09-04", "drop", "confirmed"),
                        ("Contoso Logistics", "2022-08-17", "glitch", "confirmed")}
    assert abs(got[("Apple", "2022-10-11", "drop", "confirmed")] + 50.6) < 0.5
    assert abs(got[("Amazon", "2022-10-11", "drop", "confirmed")] + 32.9) < 0.5
    assert abs(got[("Binance", "2022-09-04", "drop", "confirmed")] + 22.2) < 0.5
    assert (out[out.kind == "drop"].severity == "critical").all()


def test_events_group_same_day_drops() -> None:
    rows = [(f"c{i}/employees/linkedin", pd.Timestamp("2022-10-11") + pd.Timedelta(days=i % 2))
            for i in range(4)] + [("lonely/employees/linkedin", pd.Timestamp("2022-05-01"))]
    a = pd.DataFrame({"series": [r[0] for r in rows], "date": [r[1] for r in rows],
                      "kind": "drop", "change_pct": -30.0})
    ev = events(a, min_companies=3)
    assert ev.n_companies.tolist() == [4]
    assert ev.event_id[0] == "drop-2022-10-11"
    assert events(a, min_companies=5).empty


def test_scorer_perfect_and_empty() -> None:
    m, labels = generate(30, 300, seed=1)
    perfect = pd.DataFrame({
        "series": labels.series, "date": labels.start, "detected_on": labels.start,
        "confirmed_on": labels.start, "kind": labels.kind, "status": "confirmed",
        "change_pct": labels.size_pct, "value_before": labels.level, "value_after": labels.level,
        "score": 10.0, "severity": "warning"})
    s = score(perfect, labels, m)
    assert (s.per_kind.dropna().recall == 1).all() and (s.per_kind.dropna().precision == 1).all()
    assert s.false_alerts_per_10k_quiet_days == 0
    assert score(perfect.iloc[:0], labels, m).big_shift_recall == 0


# -- short histories: annual series, the first months of a provider's history ---------------

def _annual(values: list[float]) -> pd.DataFrame:
    idx = pd.date_range("2012-01-01", periods=len(values), freq="YS")
    return pd.DataFrame({"co/employees/annual": np.round(values)}, index=idx)


def _grow(n: int, rate: float, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 20_000 * np.exp(np.log1p(rate) * np.arange(n) + rng.normal(0, noise, n))


def test_an_annual_level_shift_is_confirmed_by_the_next_point() -> None:
    v = _grow(10, 0.08, 0.02, 3)
    v[6:] *= 0.7  # a purge of 30% in year 7, and the level stays down
    out = detect(_annual(list(v)))
    idx = _annual(list(v)).index
    assert out[["kind", "status", "date", "detected_on"]].values.tolist() == [
        ["drop", "confirmed", idx[6], idx[7]]]
    assert abs(out.change_pct[0] + 30) < 8


def test_an_annual_trend_change_is_a_drift_dated_at_the_bend() -> None:
    years = np.arange(11)
    v = 20_000 * np.exp(np.log(1.1) * years - np.log(1.4) * np.clip(years - 6, 0, None))
    out = detect(_annual(list(v)))
    idx = _annual(list(v)).index
    assert out.kind.tolist() == ["drift_down"]
    assert out.date[0] == idx[6] and out.detected_on[0] == idx[8]


@pytest.mark.parametrize("seed", range(6))
def test_steady_growth_with_noise_and_a_blip_is_quiet(seed: int) -> None:
    v = _grow(14, 0.12, 0.025, seed)
    v[8] *= 1.05  # a one-point blip of 5% that comes back
    assert detect(_annual(list(v))).empty


def test_a_monthly_shift_after_two_years_alerts_and_growth_does_not() -> None:
    idx = pd.date_range("2020-01-01", periods=30, freq="MS")
    rng = np.random.default_rng(8)
    base = 5_000 * np.exp(0.01 * np.arange(30) + rng.normal(0, 0.012, 30))
    shifted = base.copy()
    shifted[24:] *= 0.75
    out = detect(pd.DataFrame({"a/employees/pdl": np.round(shifted),
                               "b/employees/pdl": np.round(base)}, index=idx))
    assert out[["series", "kind", "date"]].values.tolist() == [
        ["a/employees/pdl", "drop", idx[24]]]


def test_a_new_daily_series_can_alert_before_it_has_min_history() -> None:
    """Ten days in, a company loses 40%: the short-history line sees it, the shift test
    (which needs 14 earlier changes) could not."""
    v = _grow(30, 0.0, 0.003, 1)
    v[10:] *= 0.6
    idx = pd.date_range("2022-01-01", periods=30, freq="D")
    out = detect(pd.DataFrame({"new": np.round(v)}, index=idx))
    assert out[["kind", "date", "detected_on"]].values.tolist() == [
        ["drop", idx[10], idx[11]]]


def test_a_monthly_trend_change_is_a_drift_dated_at_the_bend() -> None:
    """Three years of monthly points; the growth falls from +10% to -20% a year at month 24."""
    idx = pd.date_range("2020-01-01", periods=36, freq="MS")
    t = np.arange(36) / 12
    rng = np.random.default_rng(4)
    bent = 8_000 * np.exp(np.log(1.1) * t - np.log(1.1 / 0.8) * np.clip(t - 2, 0, None)
                          + rng.normal(0, 0.01, 36))
    straight = 8_000 * np.exp(np.log(1.1) * t + rng.normal(0, 0.01, 36))
    out = detect(pd.DataFrame({"bent": np.round(bent), "straight": np.round(straight)},
                              index=idx))
    assert out[["series", "kind"]].values.tolist() == [["bent", "drift_down"]]
    assert abs((out.date[0] - idx[24]).days) <= 62 and out.detected_on[0] > idx[26]


def test_a_matrix_with_nothing_known_yet_has_no_anomalies() -> None:
    idx = pd.date_range("2022-01-01", periods=5, freq="D")
    m = pd.DataFrame({"a": [np.nan] * 5, "b": [np.nan] * 4 + [5.0]}, index=idx)
    assert detect(m).empty
    assert detect_day(m, idx[-1]).empty
