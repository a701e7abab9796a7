"""Drift (drift_up, drift_down) as a detector.

The algorithm lives in :mod:`.drift`. It reads the unadjusted log counts (horizons
are whole weeks, so a weekly pattern cancels out) and scores an excess against the
series' `window` scale, the yardstick the shift test computes too: the block
provides it (:meth:`Block.scale_at`, :meth:`DayBlock.scale_today`,
:meth:`DayBlock.past_scale`), so this module never reaches into the shift pipeline.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from . import drift as drift_mod
from .base import Detector, Rows
from .context import Block, DayBlock, tail_days
from .matrix import to_timestamps
from .settings import DetectSettings, DriftSettings


class DriftDetector(Detector):
    """Sustained changes of trend, one row per episode on its first strong day."""

    name = "drift"
    Settings: ClassVar[type[DriftSettings]] = DriftSettings

    def lookback_days(self, settings: DetectSettings) -> int:
        # today's scale comes from the block's tail, which reads tail_days
        return max(drift_mod.lookback_days(settings), tail_days(settings))

    def batch(self, block: Block) -> Rows:
        dr = drift_mod.find_drifts(block.y_raw, block.values, block.days, block.scale_at,
                                   block.settings)
        return drift_rows(block.names, dr)

    def day(self, block: DayBlock) -> Rows:
        s = block.settings
        dnum = block.day
        lo = int(np.searchsorted(block.days, dnum - drift_mod.lookback_days(s) + 1))
        since = dnum - max(drift_mod.all_horizons(s))  # the episode test looks back that far

        def today(_days: np.ndarray, cols: np.ndarray) -> np.ndarray:
            return block.scale_today(cols)

        def past(cell_days: np.ndarray, cols: np.ndarray) -> np.ndarray:
            return block.past_scale(cell_days, cols, since=since)

        dr = drift_mod.find_drifts(block.y_raw[lo:], block.values[lo:], block.days[lo:], today,
                                   s, only_day=dnum, past_scale=past)
        return drift_rows(block.names, dr)


def drift_rows(names: np.ndarray, dr: drift_mod.Drifts) -> Rows:
    """One row per episode: dated at its estimated onset, detected on the day it became
    knowable (the first strong day)."""
    day = dr.day.astype(np.int64)
    return {"series": names[dr.col.astype(np.int64)],
            "date": to_timestamps(dr.onset.astype(np.int64)),
            "detected_on": to_timestamps(day), "confirmed_on": to_timestamps(day),
            "kind": np.where(dr.excess < 0, "drift_down", "drift_up"),
            "status": np.full(day.size, "confirmed"), "change_pct": 100.0 * np.expm1(dr.excess),
            "value_before": dr.before, "value_after": dr.after, "score": np.abs(dr.score)}
