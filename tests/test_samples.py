"""Tests for the bundled 2022 purge reconstruction, ``data/samples/purge_2022.csv``.

Why: detector tests, demos and benchmarks rely on this file containing exactly the designed
events (the reported purge figures), one glitch, some missing days and nothing else abnormal.
These tests pin those promises (made in data/README.md) and check that the committed file is
what ``data/generate_samples.py`` produces, so nobody hand-edits it or lets it go stale.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "data" / "generate_samples.py"
SAMPLE = ROOT / "data" / "samples" / "purge_2022.csv"

EVENT_COMPANIES = {"Apple", "Amazon", "Binance"}
GLITCH_COMPANY = "Contoso Logistics"
GLITCH_DAY = pd.Timestamp("2022-08-17")
MAX_MOVE_PCT = 0.02
MAX_MOVE_PEOPLE = 2


@pytest.fixture(scope="module")
def samples() -> pd.DataFrame:
    frame = pd.read_csv(SAMPLE, dtype={"company": str, "date": str, "source": str})
    frame["date"] = pd.to_datetime(frame["date"], format="%Y-%m-%d")
    return frame


def series(samples: pd.DataFrame, company: str) -> pd.Series:
    rows = samples[samples["company"] == company]
    return pd.Series(rows["employees"].to_numpy(), index=pd.DatetimeIndex(rows["date"]))


def quiet_companies(samples: pd.DataFrame) -> list[str]:
    return sorted(set(samples["company"]) - EVENT_COMPANIES)


def moves(counts: pd.Series) -> pd.DataFrame:
    """Consecutive-row moves (across missing days too): day, previous value, value."""
    return pd.DataFrame(
        {"prev": counts.to_numpy()[:-1], "cur": counts.to_numpy()[1:]}, index=counts.index[1:]
    )


def too_big(m: pd.DataFrame) -> pd.DataFrame:
    limit = (m["prev"] * MAX_MOVE_PCT).clip(lower=MAX_MOVE_PEOPLE)
    return m[(m["cur"] - m["prev"]).abs() > limit]


def test_regenerating_gives_the_committed_file_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "purge_2022.csv"
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], check=True, cwd=tmp_path)
    assert out.read_bytes() == SAMPLE.read_bytes()


def test_format_header_dates_source_and_order() -> None:
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "company,date,employees,source"
    pattern = re.compile(r"^[A-Z][A-Za-z ]+,2022-(0[6-9]|1[0-2])-\d\d,[1-9]\d*,linkedin$")
    bad = [line for line in lines[1:] if not pattern.match(line)]
    assert bad == []
    keys = [(line.split(",")[0], line.split(",")[1]) for line in lines[1:]]
    assert keys == sorted(keys)
    assert len(keys) == len(set(keys)), "duplicate (company, date) rows"
    assert b"\r" not in SAMPLE.read_bytes()


def test_dates_cover_june_to_december(samples: pd.DataFrame) -> None:
    for company, rows in samples.groupby("company"):
        assert rows["date"].min() == pd.Timestamp("2022-06-01"), company
        assert rows["date"].max() == pd.Timestamp("2022-12-31"), company


def test_companies_present(samples: pd.DataFrame) -> None:
    assert EVENT_COMPANIES.issubset(samples["company"])
    assert len(quiet_companies(samples)) >= 5


@pytest.mark.parametrize(
    ("company", "day", "before", "after"),
    [
        ("Apple", "2022-10-10", 576_562, 284_991),
        ("Amazon", "2022-10-10", 1_249_921, 838_601),
        ("Binance", "2022-09-03", 7_846, 6_102),
    ],
)
def test_reported_purge_figures_and_staying_down(
    samples: pd.DataFrame, company: str, day: str, before: int, after: int
) -> None:
    counts = series(samples, company)
    d = pd.Timestamp(day)
    next_day = d + pd.Timedelta(days=1)
    assert counts[d] == before
    assert counts[next_day] == after
    # The day before and after the event are present (no gap hides the event).
    for k in (-1, 2):
        assert d + pd.Timedelta(days=k) in counts.index
    # Before: near the pre-event level; after: stays down near the post-event level.
    assert counts[:d].between(before * 0.95, before * 1.05).all()
    assert counts[next_day:].between(after * 0.95, after * 1.05).all()


def test_apple_and_amazon_drop_on_the_same_day(samples: pd.DataFrame) -> None:
    worst = {c: series(samples, c).pct_change().idxmin() for c in ("Apple", "Amazon")}
    assert worst == {"Apple": pd.Timestamp("2022-10-11"), "Amazon": pd.Timestamp("2022-10-11")}


def test_glitch_is_one_day_at_about_30_percent(samples: pd.DataFrame) -> None:
    counts = series(samples, GLITCH_COMPANY)
    before = counts[GLITCH_DAY - pd.Timedelta(days=1)]
    after = counts[GLITCH_DAY + pd.Timedelta(days=1)]
    assert 0.25 * before <= counts[GLITCH_DAY] <= 0.35 * before
    assert abs(after / before - 1) < MAX_MOVE_PCT
    # It is the only such dip anywhere among the quiet companies.
    dips = [
        (c, day)
        for c in quiet_companies(samples)
        for day, value in series(samples, c).items()
        if value < 0.5 * series(samples, c).median()
    ]
    assert dips == [(GLITCH_COMPANY, GLITCH_DAY)]


def test_quiet_companies_move_little_apart_from_the_glitch(samples: pd.DataFrame) -> None:
    glitch_moves = {GLITCH_DAY, GLITCH_DAY + pd.Timedelta(days=1)}
    for company in quiet_companies(samples):
        big = too_big(moves(series(samples, company)))
        if company == GLITCH_COMPANY:
            assert set(big.index) == glitch_moves
        else:
            assert big.empty, f"{company}: {big}"


def test_event_companies_move_little_apart_from_the_event(samples: pd.DataFrame) -> None:
    event_moves = {
        "Apple": {pd.Timestamp("2022-10-11")},
        "Amazon": {pd.Timestamp("2022-10-11")},
        "Binance": {pd.Timestamp("2022-09-04")},
    }
    for company, expected in event_moves.items():
        assert set(too_big(moves(series(samples, company))).index) == expected


def test_noise_is_present_but_small(samples: pd.DataFrame) -> None:
    for company in samples["company"].unique():
        counts = series(samples, company)
        if counts.median() < 1_000:
            # Small companies move in whole people: mostly unchanged, but not frozen.
            steps = counts.diff().dropna()
            assert (steps == 0).mean() > 0.5, company
            assert (steps != 0).any(), company
            assert steps.abs().max() <= MAX_MOVE_PEOPLE, company
        else:
            typical = counts.pct_change().abs().median()
            assert 0.0005 < typical < 0.01, f"{company}: median daily move {typical:.4%}"


def test_no_drift_in_quiet_companies(samples: pd.DataFrame) -> None:
    for company in quiet_companies(samples):
        counts = series(samples, company)
        if company == GLITCH_COMPANY:
            counts = counts.drop(GLITCH_DAY)
        spread = counts.max() - counts.min()
        assert spread <= max(0.06 * counts.median(), 6), f"{company}: {counts.describe()}"


def test_missing_days(samples: pd.DataFrame) -> None:
    all_days = pd.date_range("2022-06-01", "2022-12-31")
    missing = {
        company: all_days.difference(pd.DatetimeIndex(rows["date"]))
        for company, rows in samples.groupby("company")
    }
    assert sum(len(days) > 0 for days in missing.values()) >= 3
    # One quiet company has a 5-day outage: five consecutive missing days.
    outages = [
        company
        for company, days in missing.items()
        if any(days[i + 4] - days[i] == pd.Timedelta(days=4) for i in range(max(0, len(days) - 4)))
    ]
    assert len(outages) == 1
    assert outages[0] not in EVENT_COMPANIES
    # Never missing around an event or the glitch, for any company.
    protected = {
        pd.Timestamp(day) + pd.Timedelta(days=k)
        for day in ("2022-10-10", "2022-09-03", "2022-08-17")
        for k in (-1, 0, 1, 2)
    }
    for company, days in missing.items():
        assert protected.isdisjoint(days), company


def test_counts_are_positive_integers(samples: pd.DataFrame) -> None:
    assert pd.api.types.is_integer_dtype(samples["employees"])
    assert (samples["employees"] > 0).all()


def test_quiet_company_sizes_span_30_to_200_000(samples: pd.DataFrame) -> None:
    quiet = samples[~samples["company"].isin(EVENT_COMPANIES)]
    assert quiet["employees"].between(30, 200_000).all()
    medians = quiet.groupby("company")["employees"].median()
    assert medians.min() < 50
    assert medians.max() > 150_000
    # Sizes in between too: a few hundred, a few thousand, tens of thousands.
    assert ((medians > 100) & (medians < 1_000)).any()
    assert ((medians > 1_000) & (medians < 10_000)).any()
    assert ((medians > 10_000) & (medians < 100_000)).any()
