"""Level shifts in short histories (drop, spike, glitch) as a detector.

The algorithm lives in :mod:`.short`. It reads the raw log counts in observation
order (a short history has no weekly pattern worth removing) and only the first
``min_history`` + 1 observations of a series after its start or its last
confirmed shift, so on a day it needs a series' history only when that history is
short: a series with more observations than that in the window given cannot have
a row of this detector today and costs nothing.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import Detector, Rows, concat_rows, rows_on
from .context import Block, DayBlock
from .matrix import Packed, log_counts, pack, to_timestamps
from .settings import DetectSettings, ShortSettings
from .shifts import CONFIRMED
from .short import (
    _SPARSE_GAP,
    _TREND_POINTS,
    _TREND_QUIET,
    TREND,
    ShortVerdicts,
    SparseTrends,
    eligible_rows,
    scan_short,
    sparse_trends,
)


class ShortDetector(Detector):
    """Points far off the line of a short history: provisional, then confirmed or a glitch."""

    name = "short"
    Settings: ClassVar[type[ShortSettings]] = ShortSettings

    def lookback_days(self, settings: DetectSettings) -> int:
        return 1  # reads observations, not days: day() asks for history where it must

    def batch(self, block: Block) -> Rows:
        p = pack(block.y_raw, block.values, block.days)
        return concat_rows([short_rows(block.names, p, scan_short(p, block.settings)),
                            trend_rows(block.names, p, sparse_trends(p, block.settings))])

    @staticmethod
    def _free_days(n_days: int) -> int:
        """Most observations a series can have in ``n_days`` days with the long gaps a
        sparse trend test requires (see :func:`.short.sparse_trends`)."""
        return n_days - (_TREND_POINTS // 2) * (_SPARSE_GAP - 1)

    def day(self, block: DayBlock) -> Rows:
        s = block.settings
        counts = np.isfinite(block.values).sum(axis=0)
        # A series with more observations here than the short-history rows (plus the
        # one that decides) and than a sparse trend test reads (its points and the
        # episode before) cannot have a row today that these points do not show.
        few = counts <= max(eligible_rows(s)[-1] + 2, _TREND_POINTS + _TREND_QUIET)
        # A sparse trend test needs half its points after long gaps; a series observed on
        # more days than such gaps leave free cannot pass it (every daily series): skip
        # packing those, the day's hot path.
        free = self._free_days(int(block.days[-1] - block.days[0]) + 1)  # calendar days
        many = np.flatnonzero(~few & (counts <= free))
        rows = []
        if many.size:
            sub = Block(block.values[:, many], block.days, block.names[many], s)
            p = pack(sub.y_raw, sub.values, sub.days)
            rows.append(rows_on(trend_rows(sub.names, p, sparse_trends(p, s)), block.day))
        cols = np.flatnonzero(few)
        if cols.size and not block.whole:
            block.need_history(cols)  # too few here: its history may be longer (sparse)
        elif cols.size:
            sub = Block(block.values[:, cols], block.days, block.names[cols], s)
            rows.append(rows_on(self.batch(sub), block.day))
        return concat_rows(rows)


def short_rows(names: np.ndarray, p: Packed, v: ShortVerdicts) -> Rows:
    """Rows of decided candidates only: a confirmed shift, dated on the point that moved,
    or a trend change, dated on the last point on the old line; both detected on the
    point that decided. Glitches and undecided points leave no row: in a history this
    short one point off the line is not yet news (and a provisional row that later turns
    into a trend change would change its kind, and so its alert)."""
    keep = (v.outcome == CONFIRMED) | (v.outcome == TREND)
    c, j = v.col[keep].astype(np.int64), v.row[keep].astype(np.int64)
    d = v.decided_row[keep].astype(np.int64)
    trend = v.outcome[keep] == TREND
    start = np.where(trend, j - 1, j)
    before = p.value[j - 1, c]
    after = np.where(trend, p.value[d, c], p.value[j, c])
    raw = log_counts(after) - log_counts(before)
    kind = np.where(trend, np.where(raw < 0, "drift_down", "drift_up"),
                    np.where(raw < 0, "drop", "spike"))
    decided = to_timestamps(p.day[d, c])
    return {"series": names[c], "date": to_timestamps(p.day[start, c]),
            "detected_on": decided, "confirmed_on": decided, "kind": kind,
            "status": np.full(c.size, "confirmed"), "change_pct": 100.0 * np.expm1(raw),
            "value_before": before, "value_after": after, "score": v.score[keep]}


def trend_rows(names: np.ndarray, p: Packed, tr: SparseTrends) -> Rows:
    """One row per trend change of a sparse history: dated at the bend, detected at the
    point that made it clear; the change is the excess over the old line by then."""
    c, j, q = tr.col.astype(np.int64), tr.row.astype(np.int64), tr.onset.astype(np.int64)
    day = to_timestamps(p.day[j, c])
    return {"series": names[c], "date": to_timestamps(p.day[q, c]), "detected_on": day,
            "confirmed_on": day, "kind": np.where(tr.excess < 0, "drift_down", "drift_up"),
            "status": np.full(c.size, "confirmed"), "change_pct": 100.0 * np.expm1(tr.excess),
            "value_before": p.value[q, c], "value_after": p.value[j, c], "score": tr.score}
