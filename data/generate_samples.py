"""Generate ``data/samples/purge_2022.csv``: a reconstruction of the 2022 LinkedIn purges.

Why this exists: the tracker needs a small, realistic series to demo, test and benchmark its
detectors on, and the original daily counts behind the KrebsOnSecurity report of 2022-10-20 are
not public. This script builds a *reconstruction* around the publicly reported figures (Apple
576,562 -> 284,991 and Amazon 1,249,921 -> 838,601 between 2022-10-10 and 2022-10-11; Binance
7,846 -> 6,102 between 2022-09-03 and 2022-09-04) and surrounds them with ordinary noise, quiet
fictional companies, one scraper glitch and a few missing days, so that a detector has both
things it must flag and things it must leave alone. It is NOT the original series.

Noise model (see data/README.md): large companies follow a slow linear trend times (1 + d_t),
where d_t is a mean-reverting AR(1) deviation whose innovations are bounded (a sum of three
uniforms, so approximately normal but never beyond 3 sigma); day-to-day moves are a few tenths of
a percent. Small companies move in whole people: most days unchanged, sometimes +-1 or 2, kept in
a band around their trend. Only additions and multiplications are used on the random draws (no
exp/log), so the output is byte-identical on any platform for a given numpy version.

Role segments (``employees:security``: profiles claiming a network-security role) come from
``data/segment_samples.py`` and go to ``samples/purge_2022_segments.csv`` beside the sample.

Run ``python data/generate_samples.py`` (or ``--out PATH``) to regenerate both.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SEED = 20221020  # the date of the KrebsOnSecurity report
START = dt.date(2022, 6, 1)
END = dt.date(2022, 12, 31)
SOURCE = "linkedin"
DEFAULT_OUT = Path(__file__).resolve().parent / "samples" / "purge_2022.csv"
HEADER = "company,date,employees,source"

#: Largest day-to-day move allowed outside the designed events and the glitch: 2% of the level,
#: or 2 people for companies so small that a single person is more than 2%.
MAX_QUIET_MOVE_PCT = 0.02
MAX_QUIET_MOVE_PEOPLE = 2


@dataclass(frozen=True)
class Event:
    """A purge: ``before`` on ``day`` and ``after`` on the next day, staying down afterwards."""

    day: dt.date
    before: int
    after: int


@dataclass(frozen=True)
class Glitch:
    """A one-day scraper glitch: the count is ``fraction`` of its true level on ``day`` only."""

    day: dt.date
    fraction: float


@dataclass(frozen=True)
class Company:
    """One company's recipe.

    ``level`` is the trend's value at ``anchor`` (for proportional companies also the exact count
    that day); ``growth`` is the trend's relative change per day. ``noise`` is the AR(1)
    innovation scale for proportional companies; ``steps`` are the
    probabilities of moving -2, -1, 0, +1, +2 people for whole-people companies (at most
    ``band`` people either side of the trend).
    """

    name: str
    level: int
    anchor: dt.date
    growth: float = 0.0
    noise: float = 0.003
    steps: tuple[float, float, float, float, float] | None = None
    band: int = 0
    event: Event | None = None
    glitch: Glitch | None = None
    missing: tuple[dt.date, ...] = field(default=())


def _d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def _days(first: str, last: str) -> tuple[dt.date, ...]:
    start, stop = _d(first), _d(last)
    return tuple(start + dt.timedelta(days=i) for i in range((stop - start).days + 1))


APPLE_AMAZON_DAY = _d("2022-10-10")
BINANCE_DAY = _d("2022-09-03")

COMPANIES: tuple[Company, ...] = (
    # The three reported purges (figures from KrebsOnSecurity, 2022-10-20).
    Company(
        "Apple",
        576_562,
        APPLE_AMAZON_DAY,
        growth=0.00004,
        noise=0.003,
        event=Event(APPLE_AMAZON_DAY, 576_562, 284_991),
        missing=(_d("2022-07-04"), _d("2022-11-25")),
    ),
    Company(
        "Amazon",
        1_249_921,
        APPLE_AMAZON_DAY,
        growth=0.00006,
        noise=0.003,
        event=Event(APPLE_AMAZON_DAY, 1_249_921, 838_601),
        missing=(_d("2022-08-29"), _d("2022-11-24")),
    ),
    Company(
        "Binance",
        7_846,
        BINANCE_DAY,
        growth=0.00003,
        noise=0.004,
        event=Event(BINANCE_DAY, 7_846, 6_102),
        missing=(_d("2022-06-19"), _d("2022-10-02"), _d("2022-12-25")),
    ),
    # Quiet, fictional companies (not real data about any real company).
    Company(
        "Wingtip Studio",
        35,
        _d("2022-09-15"),
        growth=0.0001,
        steps=(0.01, 0.06, 0.86, 0.06, 0.01),
        band=2,
    ),
    Company(
        "Northwind Robotics",
        400,
        _d("2022-09-15"),
        growth=0.00006,
        steps=(0.03, 0.12, 0.70, 0.12, 0.03),
        band=5,
        missing=(_d("2022-07-22"), _d("2022-09-28")),
    ),
    Company(
        "Contoso Logistics",
        5_000,
        _d("2022-09-15"),
        growth=0.00002,
        noise=0.0035,
        glitch=Glitch(_d("2022-08-17"), 0.30),
    ),
    Company(
        "Fabrikam Foods",
        40_000,
        _d("2022-09-15"),
        growth=0.00003,
        noise=0.003,
        missing=_days("2022-11-14", "2022-11-18"),
    ),
    Company(
        "Tailspin Systems",
        194_000,
        _d("2022-09-15"),
        growth=0.00002,
        noise=0.003,
        missing=(_d("2022-06-27"), _d("2022-08-08"), _d("2022-12-12")),
    ),
)

AR_PHI = 0.8  # persistence of the deviation from trend


def all_days() -> list[dt.date]:
    return [START + dt.timedelta(days=i) for i in range((END - START).days + 1)]


def _bounded_normal(rng: np.random.Generator, size: int) -> np.ndarray:
    """Approximately standard normal draws bounded to +-3: the sum of three U(-1, 1)."""
    u = rng.random((size, 3))
    return (2.0 * u - 1.0).sum(axis=1)


def _deviation(rng: np.random.Generator, n: int, noise: float) -> np.ndarray:
    """The AR(1) deviation from trend, d_t = 0.8 d_(t-1) + noise * e_t."""
    shocks = _bounded_normal(rng, n) * noise
    dev = np.empty(n)
    dev[0] = shocks[0]
    for t in range(1, n):
        dev[t] = AR_PHI * dev[t - 1] + shocks[t]
    return dev


def _proportional(company: Company, days: Sequence[dt.date], rng: np.random.Generator) -> list[int]:
    """Trend times (1 + AR(1) deviation), scaled to hit the anchor (and event) values exactly."""
    n = len(days)
    dev = _deviation(rng, n, company.noise)

    def scaled(anchor_index: int, value: int, t: int) -> int:
        trend = 1.0 + company.growth * (t - anchor_index)
        return round(value * trend * (1.0 + dev[t]) / (1.0 + dev[anchor_index]))

    index = {day: i for i, day in enumerate(days)}
    event = company.event
    if event is None:
        a = index[company.anchor]
        return [scaled(a, company.level, t) for t in range(n)]
    a = index[event.day]
    return [
        scaled(a, event.before, t) if t <= a else scaled(a + 1, event.after, t) for t in range(n)
    ]


def _whole_people(company: Company, days: Sequence[dt.date], rng: np.random.Generator) -> list[int]:
    """Integer random walk: mostly unchanged, sometimes +-1 or 2, held within a band of trend."""
    assert company.steps is not None
    cumulative = np.cumsum(company.steps)
    moves = (-2, -1, 0, 1, 2)
    a = days.index(company.anchor)
    draws = rng.random(len(days))
    counts = [company.level]
    for t in range(1, len(days)):
        step = moves[int(np.searchsorted(cumulative, draws[t], side="right"))]
        target = company.level * (1.0 + company.growth * (t - a))
        gap = counts[-1] - target
        if gap >= company.band:
            step = min(step, 0)
        elif gap <= -company.band:
            step = max(step, 0)
        counts.append(max(1, counts[-1] + step))
    return counts


def company_series(company: Company) -> list[tuple[dt.date, int]]:
    """One company's (date, count) rows, with its glitch applied and its missing days removed."""
    days = all_days()
    rng = np.random.default_rng([SEED, zlib.crc32(company.name.encode("utf-8"))])
    if company.steps is None:
        counts = _proportional(company, days, rng)
    else:
        counts = _whole_people(company, days, rng)
    if company.glitch is not None:
        g = days.index(company.glitch.day)
        counts[g] = round(counts[g] * company.glitch.fraction)
    missing = set(company.missing)
    return [(day, count) for day, count in zip(days, counts, strict=True) if day not in missing]


def protected_days(company: Company) -> set[dt.date]:
    """Days that must never be missing: every event's day, its next day and one either side."""
    days: set[dt.date] = set()
    for c in COMPANIES:
        for marked in (c.event.day if c.event else None, c.glitch.day if c.glitch else None):
            if marked is not None:
                days.update(marked + dt.timedelta(days=k) for k in (-1, 0, 1, 2))
    days.update({START, END, company.anchor})
    return days


def validate(company: Company, rows: Sequence[tuple[dt.date, int]]) -> None:
    """Raise ValueError if the series breaks the promises made in data/README.md."""
    if bad := set(company.missing) & protected_days(company):
        raise ValueError(f"{company.name}: missing days {sorted(bad)} fall on protected days")
    values = dict(rows)
    if company.event is not None:
        e = company.event
        got = (values[e.day], values[e.day + dt.timedelta(days=1)])
        if got != (e.before, e.after):
            raise ValueError(f"{company.name}: event values {got} != {(e.before, e.after)}")
    if min(values.values()) <= 0:
        raise ValueError(f"{company.name}: a count is zero or negative")
    allowed = set()
    if company.event is not None:
        allowed.add(company.event.day + dt.timedelta(days=1))
    if company.glitch is not None:
        allowed.update({company.glitch.day, company.glitch.day + dt.timedelta(days=1)})
    for (_, prev), (day, cur) in itertools.pairwise(rows):
        limit = max(MAX_QUIET_MOVE_PCT * prev, MAX_QUIET_MOVE_PEOPLE)
        if day not in allowed and abs(cur - prev) > limit:
            raise ValueError(f"{company.name}: {prev} -> {cur} on {day} exceeds {limit:.0f}")


def render() -> str:
    """The whole CSV as text: sorted by company then date, ``\\n`` line endings."""
    lines = [HEADER]
    for company in sorted(COMPANIES, key=lambda c: c.name):
        rows = company_series(company)
        validate(company, rows)
        lines.extend(f"{company.name},{day.isoformat()},{count},{SOURCE}" for day, count in rows)
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    from segment_samples import DEFAULT_LABELS, SEGMENTS_NAME, render_labels, render_segments

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="CSV file to write")
    parser.add_argument("--segments-out", type=Path, default=None,
                        help=f"role segments CSV (default: {SEGMENTS_NAME} beside --out)")
    parser.add_argument("--labels-out", type=Path, default=None,
                        help="labels of the segment drops (default: data/labels/... for the "
                        "bundled sample, else beside --out)")
    args = parser.parse_args(argv)
    segments = args.segments_out or args.out.with_name(SEGMENTS_NAME)
    labels = args.labels_out or (DEFAULT_LABELS if args.out.resolve() == DEFAULT_OUT
                                 else args.out.with_name("purge_2022_segments.labels.csv"))
    for path, text in ((args.out, render()), (segments, render_segments()),
                       (labels, render_labels())):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))


if __name__ == "__main__":
    main()
