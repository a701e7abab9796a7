"""What detectors are given: a block of series, and the preparation they share.

Detectors do not prepare their own inputs: log counts, the weekly adjustment, the
observation packing and the robust scale are expensive, and several detectors need
the same ones. A block computes each on first use and keeps it, so a detector asks
for what it needs and pays nothing for what no detector asks for.

:class:`Block` is a group of series over their whole history (``detect``).
:class:`DayBlock` is the same group judged on its last day only (``detect_day``),
from each series' trailing observations. Its scales are exact on that path only
where the trailing days hold what they depend on; where they do not, the block
records the series as needing their whole history (:meth:`DayBlock.need_history`)
and the engine judges those in batch instead (or hands them back to the caller when
it was given a window). Dependencies between detectors go through these methods:
drift scores today's excess with :meth:`DayBlock.scale_today`, the scale the shift
test uses, without knowing how that is computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .matrix import Packed, log_counts, pack, rows_at_or_after
from .scale import cell_stats, changes, row_stats
from .seasonal import _block_days, deseasonalize
from .settings import DetectSettings
from .shifts import decided_within, horizons


def tail_sizes(s: DetectSettings) -> tuple[int, int]:
    """Rows an incremental run re-scans, and observations it needs for their statistics."""
    scan_rows = 4 * (decided_within(s) + 1) + 4
    # the level tests of moderate moves reach their post + pre observations further
    level_span = max(post + pre for post, pre in horizons(s))
    return scan_rows, scan_rows + max(s.window, s.min_history) + 8 + level_span


def tail_days(s: DetectSettings) -> int:
    """Calendar days :meth:`DayBlock.tail` reads for a series with regular observations."""
    _, need = tail_sizes(s)
    refit, fit = _block_days(s)
    return need + fit + refit + 21


@dataclass
class Block:
    """A group of series over their whole history: calendar rows ``days`` x series.

    ``values`` are raw counts (NaN where unobserved), ``names`` the series keys.
    """

    values: np.ndarray
    days: np.ndarray
    names: np.ndarray
    settings: DetectSettings

    @cached_property
    def y_raw(self) -> np.ndarray:
        """Log counts, calendar rows (what drift reads: horizons are whole weeks)."""
        return log_counts(self.values)

    @cached_property
    def y_adj(self) -> np.ndarray:
        """Log counts with each weekly series' weekday pattern removed (causally)."""
        return deseasonalize(self.y_raw, self.days, self.settings)[0]

    @cached_property
    def packed(self) -> Packed:
        """The adjusted observations in observation order (see :mod:`.matrix`)."""
        return pack(self.y_adj, self.values, self.days)

    @cached_property
    def changes(self) -> tuple[np.ndarray, np.ndarray]:
        """Packed log change from the previous observation, and the gap in days it spans."""
        return changes(self.packed)

    def scale_at(self, cell_days: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The `window` scale of series ``cols[k]`` at its first observation on or after
        ``cell_days[k]``: the steady yardstick, computed for the few cells asked about."""
        p = self.packed
        d, g = self.changes
        rows = rows_at_or_after(p.day, cols, cell_days)
        out = np.full(rows.size, np.nan)
        ok = rows >= 1  # like row_stats: the first observation has no statistics
        out[ok] = cell_stats(p, d, g, rows[ok], cols[ok], self.settings).long_scale
        return out


@dataclass
class Tail:
    """The last observations of some series of a :class:`DayBlock`, packed to the bottom
    (each series' observation of today on the last row); ``cols`` index the block.
    ``whole_history`` says they were packed from all history given (too few recent ones)."""

    cols: np.ndarray
    packed: Packed
    d: np.ndarray
    g: np.ndarray
    whole_history: bool = False


@dataclass
class DayBlock:
    """A group of series, every one observed on the last day, to be judged on that day.

    ``whole`` says whether ``values`` hold each series' whole history (``detect_day``)
    or only a trailing window of at least ``window_days`` (``detect_day_window``).
    """

    values: np.ndarray
    days: np.ndarray
    names: np.ndarray
    settings: DetectSettings
    whole: bool = True
    #: Series the day path cannot judge from what it has (see :meth:`need_history`).
    deep: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        m = self.names.size
        self.deep = np.zeros(m, dtype=bool)
        self._scale = np.full(m, np.nan)
        self._scaled = np.zeros(m, dtype=bool)

    @property
    def day(self) -> int:
        """The day judged, as a day number."""
        return int(self.days[-1])

    @cached_property
    def y_raw(self) -> np.ndarray:
        """Log counts of everything given, calendar rows."""
        return log_counts(self.values)

    def trailing(self, n_days: int) -> Block:
        """The last ``n_days`` calendar days as a batch block (for a bounded-past detector)."""
        lo = int(np.searchsorted(self.days, self.day - n_days + 1))
        return Block(self.values[lo:], self.days[lo:], self.names, self.settings)

    def need_history(self, cols: np.ndarray) -> None:
        """Mark series whose verdict today needs more than the trailing days.

        Every detector's rows of those series are then replaced: by a batch run over
        everything given when that is the whole history, else by handing them back to
        the caller, who reads their whole history.
        """
        self.deep[np.asarray(cols, dtype=np.int64)] = True

    def tail(self, cols: np.ndarray) -> list[Tail]:
        """The trailing observations of series ``cols``, weekly-adjusted, packed.

        The adjustment is exact from ``fit + refit`` days into the region read, so a
        series with enough observations after that point is packed from the region;
        one without (sparse, or new) is packed from its whole history, or, on a
        window, marked as needing it. Up to two groups, in that order.
        """
        cols = np.asarray(cols, dtype=np.int64)
        if cols.size == 0:
            return []
        s = self.settings
        _, need = tail_sizes(s)
        refit, fit = _block_days(s)
        lo = int(np.searchsorted(self.days, self.day - tail_days(s) + 1))
        days, values = self.days[lo:], self.values[lo:, cols]
        e_start = int(days[0]) + (fit + refit if s.seasonal == "auto" else 0)
        y_adj, _ = deseasonalize(self.y_raw[lo:, cols], days, s, from_day=e_start)
        in_e = days >= e_start
        complete = np.isfinite(values[in_e]).sum(axis=0) >= need
        if self.whole:  # a series with nothing older than the region has all it needs
            older = self.values[: lo + int(np.argmax(in_e)), cols]
            complete |= ~np.isfinite(older).any(axis=0)
        else:
            self.need_history(cols[~complete])
        out: list[Tail] = []
        for mask, full in ((complete, False), (~complete, True)):
            idx = np.flatnonzero(mask)
            if idx.size == 0 or (full and not self.whole):
                continue
            if full:
                ya, _ = deseasonalize(self.y_raw[:, cols[idx]], self.days, s)
                p = pack(ya, self.values[:, cols[idx]], self.days, tail=need)
            else:
                p = pack(y_adj[in_e][:, idx], values[in_e][:, idx], days[in_e], tail=need)
            out.append(Tail(cols[idx], p, *changes(p), whole_history=full))
        return out

    def scale_today(self, cols: np.ndarray) -> np.ndarray:
        """The `window` scale of series ``cols`` on the last day, as a batch run has it.

        Computed from :meth:`tail` on first request and kept; a series whose tail is
        too short to have one needs its whole history.
        """
        cols = np.asarray(cols, dtype=np.int64)
        todo = np.unique(cols[~self._scaled[cols]])
        for t in self.tail(todo):
            p = t.packed
            if p.n < 2:
                self.need_history(t.cols)
                continue
            last = p.n - 1
            need = np.zeros(p.y.shape, dtype=bool)
            need[last] = True
            st = row_stats(p, t.d, t.g, self.settings, from_row=last, need=need)
            self._scale[t.cols] = st.long_scale[last]
        self._scaled[todo] = True
        return self._scale[cols]

    def past_scale(self, cell_days: np.ndarray, cols: np.ndarray, since: int) -> np.ndarray:
        """:meth:`Block.scale_at` over everything given, for a few past cells of a few series.

        ``since`` is the earliest day any cell of this block will be asked about: on a
        window, series whose scale from that day on would differ from their whole
        history's are marked as needing it (see :meth:`covered`).
        """
        cols = np.asarray(cols, dtype=np.int64)
        if not self.whole:
            self.need_history(cols[~self.covered(cols, since)])
        if cols.size == 0:
            return np.zeros(0)
        u, inv = np.unique(cols, return_inverse=True)
        sub = Block(self.values[:, u], self.days, self.names[u], self.settings)
        return sub.scale_at(cell_days, inv)

    def covered(self, cols: np.ndarray, since: int) -> np.ndarray:
        """Whether what is given holds what the `window` scale of series ``cols`` needs
        on days from ``since`` on.

        That scale is exact once the weekly adjustment is (blocks whose fit lies inside
        what is given, from ``days[0]`` + fit + refit on) and the statistics'
        observations are inside that region: at least one observation before the
        earliest weekly anchor (up to 6 days before ``since``) minus `window`, and
        ``min_history`` + 1 before that anchor.
        """
        s = self.settings
        refit, fit = _block_days(s)
        exact_from = int(self.days[0]) + (fit + refit if s.seasonal == "auto" else 0)
        anchor = since - 6
        ok = np.isfinite(self.values[:, cols])
        days = self.days
        first = days >= exact_from
        before_window = ok[first & (days < anchor - s.window)].sum(axis=0)
        before_anchor = ok[first & (days < anchor)].sum(axis=0)
        return (before_window >= 1) & (before_anchor >= s.min_history + 1)
