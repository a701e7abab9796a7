"""Level shifts and glitches (drop, spike, glitch) as a detector.

The algorithm lives in :mod:`.shifts` (the change test and the verdict scan) over
the block's packed, weekly-adjusted observations and their robust scale
(:mod:`.scale`). On one day only the series that can have a verdict are scanned, and
only over their trailing observations, from a row where no candidate can be open:
what keeps a daily run over 100,000 series within seconds.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import Detector, Rows, concat_rows
from .context import Block, DayBlock, Tail, tail_days, tail_sizes
from .matrix import Packed, log_counts, to_timestamps
from .scale import row_stats
from .settings import DetectSettings, ShiftSettings
from .shifts import (
    GLITCH,
    OPEN,
    Verdicts,
    big_moves,
    change_test,
    decided_within,
    level_stats,
    scan,
    soft_moves,
    sync_rows,
)


class ShiftDetector(Detector):
    """Overnight moves of the level: provisional on their day, then confirmed or a glitch."""

    name = "shifts"
    Settings: ClassVar[type[ShiftSettings]] = ShiftSettings

    def lookback_days(self, settings: DetectSettings) -> int:
        return tail_days(settings)

    def batch(self, block: Block) -> Rows:
        s = block.settings
        p = block.packed
        if p.n < 2:  # no series with two observations: no change to judge
            return shift_rows(block.names, p, np.zeros_like(p.y), Verdicts.none())
        d, g = block.changes
        st = row_stats(p, d, g, s, need=big_moves(p, d, s))
        z, exceed, sd = change_test(p, d, g, st, s)
        soft = soft_moves(p, d, z, exceed, st, s)
        v = scan(p, exceed, sd, s, soft=soft, level=level_stats(p, soft, s), z=z)
        return shift_rows(block.names, p, z, v)

    def day(self, block: DayBlock) -> Rows:
        s = block.settings
        cand = np.flatnonzero(may_shift_today(block.y_raw, s))
        parts = []
        for t in block.tail(cand):
            p, z, v, bad = _day_shifts(t, block.day, s)
            parts.append(shift_rows(block.names[t.cols], p, z, v))
            block.need_history(t.cols[bad])
        return concat_rows(parts)


def shift_rows(names: np.ndarray, p: Packed, z: np.ndarray, v: Verdicts) -> Rows:
    """One row per candidate: the jump's two values, its size and score, its verdict.

    A moderate (soft) move is known only once confirmed: detected on that day, and
    scored by the level test that made it news rather than by its first day's z.
    """
    c, j = v.col, v.row
    before = p.value[j - 1, c]
    after = p.value[j, c]
    raw = log_counts(after) - log_counts(before)
    change = 100.0 * np.expm1(raw)
    kind = np.where(v.outcome == GLITCH, "glitch", np.where(raw < 0, "drop", "spike"))
    dec = np.where(v.decided_row >= 0, p.day[np.maximum(v.decided_row, 0), c], 2**40)
    seen = np.where(v.soft, dec, p.day[j, c])
    return {"series": names[c], "date": to_timestamps(p.day[j, c]),
            "detected_on": to_timestamps(seen), "confirmed_on": to_timestamps(dec),
            "kind": kind, "status": np.where(v.outcome == OPEN, "provisional", "confirmed"),
            "change_pct": change, "value_before": before, "value_after": after,
            "score": np.where(v.soft, np.abs(v.level_z), np.abs(z[j, c]))}


def _day_shifts(t: Tail, day: int, s: DetectSettings
                ) -> tuple[Packed, np.ndarray, Verdicts, np.ndarray]:
    """Verdicts reached on ``day`` from the tail of a few series.

    Returns the packed tail, the z-scores, the verdicts and a mask of series whose
    recent history never went quiet long enough to start a partial scan (they need
    their whole history).
    """
    p = t.packed
    m = p.y.shape[1]
    if p.n < 2:
        return p, np.zeros_like(p.y), Verdicts.none(), np.ones(m, dtype=bool)
    scan_rows, _ = tail_sizes(s)
    from_row = max(1, p.n - scan_rows)
    st = row_stats(p, t.d, t.g, s, from_row=from_row, need=big_moves(p, t.d, s))
    z, exceed, sd = change_test(p, t.d, t.g, st, s)
    soft = soft_moves(p, t.d, z, exceed, st, s)
    start, ok = sync_rows(exceed | soft, p, from_row, day, s)
    v = scan(p, exceed, sd, s, start_row=start, soft=soft, level=level_stats(p, soft, s), z=z)
    last = p.n - 1
    mine = ok[v.col] & ((v.row == last) | (v.decided_row == last))
    return p, z, v.select(mine), ~ok


def may_shift_today(y_all: np.ndarray, s: DetectSettings) -> np.ndarray:
    """Series that can have a shift verdict on the last row of ``y_all`` (log counts).

    A candidate decided today was opened at most :func:`decided_within` observations
    ago (until then every observation found it not yet due), and opening needs a raw
    change of at least ``min_change_pct``. So a series whose last that many + 1
    changes are all smaller cannot have a row today, whatever its history: the rest
    of the pipeline can skip it. Conservative where fewer observations are at hand.
    """
    k = decided_within(s) + 2
    tail = y_all[-min(y_all.shape[0], 8 * k):]
    valid = ~np.isnan(tail)
    order = np.argsort(valid, axis=0, kind="stable")[-k:]
    last = np.take_along_axis(tail, order, axis=0)
    with np.errstate(invalid="ignore"):
        moved = (np.abs(np.diff(last, axis=0)) >= np.log1p(s.min_change_pct / 100.0)).any(axis=0)
    return moved | (valid.sum(axis=0) < k)
