"""Role segments for the 2022 reconstruction: ``samples/purge_2022_segments.csv``.

Why this exists: a week before the Apple and Amazon purges of 2022-10-11, a recruiter saw the
profiles claiming any network-security role fall about 7% overnight across LinkedIn. A tracker
that only counts whole companies cannot see that; one that keeps ``employees:security`` series
can, company by company, and (with enough companies) as one platform-wide event. This file
gives the tracker such series to demo and test: the security segment of 24 companies, every one
dropping overnight into 2022-10-04 by 6-8% (7.0% on average), with Apple's and Amazon's segments
also losing their purge fraction on 2022-10-11. It is a RECONSTRUCTION: only the ~7% and the
dates come from the anecdote; every count is generated.

The 18 companies that are not in ``purge_2022.csv`` are fictional (Microsoft's stock example
names) and get a quiet ``employees`` series here too, so that no company of the sample has a
segment without its whole count. Noise is the sample's: trend x (1 + AR(1) deviation), bounded
innovations, additions and multiplications only, one random stream per series
(``default_rng([20221020, crc32("<company>/<metric>")])``), so the file is byte-identical on any
platform. Written by ``python data/generate_samples.py`` together with the main sample.
"""

from __future__ import annotations

import datetime as dt
import itertools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from generate_samples import (
    COMPANIES,
    MAX_QUIET_MOVE_PCT,
    SEED,
    SOURCE,
    Company,
    _d,
    _deviation,
    _proportional,
    all_days,
)
from generate_samples import validate as validate_company

SEGMENTS_NAME = "purge_2022_segments.csv"
HEADER = "company,date,employees,segment,source"
DEFAULT_LABELS = Path(__file__).resolve().parent / "labels" / "purge_2022_segments.csv"
SECURITY = "security"
ANCHOR = _d("2022-09-15")
#: The first day with the security profiles gone (the drop is overnight from 10-03).
SECURITY_DROP_DAY = _d("2022-10-04")
PURGE_DAY = _d("2022-10-11")
#: What Apple and Amazon kept on 2022-10-11 (their reported figures), assumed for their
#: security segments too.
PURGE_KEPT = {"Apple": 284_991 / 576_562, "Amazon": 838_601 / 1_249_921}


@dataclass(frozen=True)
class Segment:
    """One company's security segment: ``level`` profiles on the anchor day, losing ``drop``
    (a fraction) overnight into :data:`SECURITY_DROP_DAY`."""

    company: str
    level: int
    drop: float
    growth: float = 0.00003
    noise: float = 0.003


#: Fictional companies (name, employees on the anchor day, trend growth per day).
EXTRA: tuple[tuple[str, int], ...] = (
    ("Adventure Works", 12_000), ("Alpine Ski House", 2_400), ("Bellows College", 3_100),
    ("Blue Yonder Airlines", 28_000), ("City Power and Light", 15_500), ("Coho Winery", 2_050),
    ("Consolidated Messenger", 9_200), ("Fourth Coffee", 6_300),
    ("Graphic Design Institute", 2_700), ("Humongous Insurance", 61_000), ("Litware", 4_800),
    ("Lucerne Publishing", 3_600), ("Proseware", 7_400), ("Relecloud", 22_000),
    ("Southridge Video", 5_100), ("Trey Research", 8_800), ("Wide World Importers", 118_000),
    ("Woodgrove Bank", 47_000),
)
EXTRA_COMPANIES: tuple[Company, ...] = tuple(
    Company(name, size, ANCHOR, growth=0.00002, noise=0.003) for name, size in EXTRA)

#: Security profiles per company (a few percent of the whole count) and the overnight drop.
SEGMENTS: tuple[Segment, ...] = (
    Segment("Amazon", 24_500, 0.071), Segment("Apple", 9_800, 0.068),
    Segment("Binance", 1_150, 0.077, noise=0.004), Segment("Contoso Logistics", 1_020, 0.064),
    Segment("Fabrikam Foods", 1_300, 0.066), Segment("Tailspin Systems", 7_900, 0.073),
    Segment("Adventure Works", 1_100, 0.069), Segment("Alpine Ski House", 1_000, 0.062),
    Segment("Bellows College", 1_050, 0.074), Segment("Blue Yonder Airlines", 1_600, 0.070),
    Segment("City Power and Light", 1_400, 0.067), Segment("Coho Winery", 1_000, 0.065),
    Segment("Consolidated Messenger", 1_200, 0.072), Segment("Fourth Coffee", 1_050, 0.078),
    Segment("Graphic Design Institute", 1_000, 0.061), Segment("Humongous Insurance", 4_300, 0.069),
    Segment("Litware", 1_500, 0.080), Segment("Lucerne Publishing", 1_000, 0.066),
    Segment("Proseware", 2_100, 0.075), Segment("Relecloud", 3_900, 0.071),
    Segment("Southridge Video", 1_000, 0.063), Segment("Trey Research", 2_600, 0.076),
    Segment("Wide World Importers", 6_200, 0.068), Segment("Woodgrove Bank", 5_400, 0.072),
)


def segment_series(seg: Segment) -> list[tuple[dt.date, int]]:
    """Trend x (1 + AR(1) deviation) x what is left after the drop (and the purge)."""
    days = all_days()
    n = len(days)
    rng = np.random.default_rng([SEED, zlib.crc32(f"{seg.company}/employees:{SECURITY}".encode())])
    dev = _deviation(rng, n, seg.noise)
    a = days.index(ANCHOR)
    kept = PURGE_KEPT.get(seg.company, 1.0)
    counts = []
    for t, day in enumerate(days):
        level = seg.level * (1.0 + seg.growth * (t - a)) * (1.0 + dev[t]) / (1.0 + dev[a])
        if day >= SECURITY_DROP_DAY:
            level *= 1.0 - seg.drop
        if day >= PURGE_DAY:
            level *= kept
        counts.append(round(level))
    return list(zip(days, counts, strict=True))


def validate(seg: Segment, rows: Sequence[tuple[dt.date, int]]) -> None:
    """The promises of data/README.md: the drop is 5-9% overnight, nothing else moves > 2%."""
    values = dict(rows)
    before, after = values[SECURITY_DROP_DAY - dt.timedelta(days=1)], values[SECURITY_DROP_DAY]
    if not 0.05 <= 1 - after / before <= 0.09:
        raise ValueError(f"{seg.company}: security drop {before} -> {after} is not 5-9%")
    allowed = {SECURITY_DROP_DAY} | ({PURGE_DAY} if seg.company in PURGE_KEPT else set())
    for (_, prev), (day, cur) in itertools.pairwise(rows):
        if day not in allowed and abs(cur - prev) > MAX_QUIET_MOVE_PCT * prev:
            raise ValueError(f"{seg.company}: security {prev} -> {cur} on {day} exceeds 2%")


def render_segments() -> str:
    """The segments CSV: the extra companies' whole counts (empty segment) and every security
    series, sorted by company, segment, date."""
    known = {c.name for c in COMPANIES}
    assert all(s.company in known or s.company in dict(EXTRA) for s in SEGMENTS)
    rows: list[tuple[str, str, dt.date, int]] = []
    for company in EXTRA_COMPANIES:
        series = list(zip(all_days(), _proportional(company, all_days(), _rng(company.name)),
                          strict=True))
        validate_company(company, series)
        rows.extend((company.name, "", day, count) for day, count in series)
    for seg in SEGMENTS:
        series = segment_series(seg)
        validate(seg, series)
        rows.extend((seg.company, SECURITY, day, count) for day, count in series)
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    lines = [HEADER, *(f"{c},{d.isoformat()},{v},{g},{SOURCE}" for c, g, d, v in rows)]
    return "\n".join(lines) + "\n"


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng([SEED, zlib.crc32(name.encode("utf-8"))])


def render_labels() -> str:
    """Labels for ``tracker replay --labels``: each security drop, and the purges of Apple's and
    Amazon's security segments (first anomalous day, as in labels/purge_2022.csv)."""
    lines = ["company,date,kind,metric,note"]
    for seg in sorted(SEGMENTS, key=lambda s: s.company):
        lines.append(f"{seg.company},{SECURITY_DROP_DAY.isoformat()},drop,employees:{SECURITY},"
                     "security-role profiles -7% overnight (reconstruction)")
        if seg.company in PURGE_KEPT:
            lines.append(f"{seg.company},{PURGE_DAY.isoformat()},drop,employees:{SECURITY},"
                         "LinkedIn fake-profile purge (reconstruction)")
    return "\n".join(lines) + "\n"
