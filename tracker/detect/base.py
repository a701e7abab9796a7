"""The detector seam: what a detector implements and the rows it returns.

Like ADTK's detectors, a detector writes only its core. The engine owns everything
around it: input checks, column chunks and forked workers, the shared preparation
(:mod:`.context`), severity and the output frame. So adding a kind of anomaly is one
module with a :class:`Detector` subclass, registered in :mod:`.registry`.

A detector must be causal with a bounded past: its rows about day *t* depend only
on values up to *t*, within :meth:`Detector.lookback_days` calendar days for a
series with regular observations. That is what lets the engine promise that
``detect_day`` gives the rows ``detect`` would (the tests check every detector).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
from pydantic import BaseModel

from .context import Block, DayBlock
from .matrix import to_timestamps
from .settings import DetectSettings

#: The output columns; a detector gives all but ``severity`` (the policy's business).
COLUMNS = ["series", "date", "detected_on", "confirmed_on", "kind", "status", "change_pct",
           "value_before", "value_after", "score", "severity"]
ROW_COLUMNS = tuple(COLUMNS[:-1])

#: Anomaly rows: one array per column of ``ROW_COLUMNS``, all the same length.
Rows = dict[str, np.ndarray]


class Detector(ABC):
    """One kind of anomaly, found over a block of series at once (numpy, no series loop).

    ``Settings`` is the settings model the detector owns. The built-ins own parts of
    :class:`~tracker.detect.settings.DetectSettings` (so ``[detect]`` configures them
    and ``block.settings`` carries them); a detector of your own takes an instance of
    its model when constructed, validated once there.
    """

    name: ClassVar[str]
    Settings: ClassVar[type[BaseModel]]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    @abstractmethod
    def lookback_days(self, settings: DetectSettings) -> int:
        """Calendar days before (and including) a day that its verdicts that day read."""

    @abstractmethod
    def batch(self, block: Block) -> Rows:
        """Every row over the block's whole history, each in its state on the last day."""

    def day(self, block: DayBlock) -> Rows:
        """The rows whose verdict falls on the block's last day (detected or confirmed).

        Must equal the rows of :meth:`batch` over the whole history with
        ``detected_on`` or ``confirmed_on`` on that day. This default runs
        :meth:`batch` on the trailing :meth:`lookback_days`, which is exact for a
        bounded past; override it when one day can be judged for much less.
        """
        return rows_on(self.batch(block.trailing(self.lookback_days(block.settings))),
                       block.day)


def make_rows(**cols: object) -> Rows:
    """Rows from one array (or scalar, broadcast) per column; checks the columns once."""
    missing = set(ROW_COLUMNS) - set(cols)
    extra = set(cols) - set(ROW_COLUMNS)
    if missing or extra:
        raise ValueError(f"detector rows: missing columns {sorted(missing)}, "
                         f"unknown columns {sorted(extra)}")
    n = len(np.asarray(cols["series"]))
    return {k: np.asarray(v) if np.ndim(v) else np.full(n, v) for k, v in cols.items()}


def no_rows() -> Rows:
    """No anomaly."""
    return {k: np.zeros(0) for k in ROW_COLUMNS}


def select(rows: Rows, keep: np.ndarray) -> Rows:
    """The rows where ``keep`` is true."""
    return {k: np.asarray(v)[keep] for k, v in rows.items()}


def rows_on(rows: Rows, day: int) -> Rows:
    """The rows whose verdict falls on day number ``day`` (detected or confirmed)."""
    ts = to_timestamps(np.array([day]))[0]
    return select(rows, (np.asarray(rows["detected_on"]) == ts)
                  | (np.asarray(rows["confirmed_on"]) == ts))


def concat_rows(parts: list[Rows]) -> Rows:
    """Several groups' rows as one, in order."""
    parts = [p for p in parts if len(p["series"])]
    if not parts:
        return no_rows()
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in ROW_COLUMNS}
