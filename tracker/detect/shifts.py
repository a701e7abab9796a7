"""Level shifts and glitches: the change test and the day-by-day verdicts.

A change is *exceptional* when its robust z-score and its size both pass. The first
exceptional change opens a candidate, reported the same day as a provisional drop or
spike; later observations are absorbed into it until the verdict: a return to the
old level (within ``return_fraction`` of the jump) makes it a glitch, still being
away ``confirm_days`` later confirms the shift. Absorbing keeps the days inside a
glitch (partial pages that wobble, the jump back up) from raising alerts of their own.

The verdict loop walks rows (observations) with numpy ops across all series at once,
so its cost is rows x a few vector ops, not series x rows Python steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .matrix import Packed, log_counts
from .scale import RowStats
from .settings import DetectSettings

OPEN, GLITCH, CONFIRMED = 0, 1, 2
_PRE_OBS = 5


def level_floor(y_prev: np.ndarray, settings: DetectSettings) -> np.ndarray:
    """Poisson-like floor of a log change at a given level: small counts move by whole people."""
    with np.errstate(over="ignore"):
        level = np.maximum(np.exp(y_prev), 1.0)
    return np.maximum(settings.small_count_scale / np.sqrt(level), settings.min_scale)


def big_moves(p: Packed, d: np.ndarray, settings: DetectSettings) -> np.ndarray:
    """Changes of at least ``min_change_pct``, adjusted and raw: the only ones that can be
    exceptional, so the only ones whose statistics the change test needs."""
    min_log = np.log1p(settings.min_change_pct / 100.0)
    raw = log_counts(p.value)
    with np.errstate(invalid="ignore"):
        out = np.abs(d) >= min_log
        out[1:] &= np.abs(raw[1:] - raw[:-1]) >= min_log
    out[0] = False
    return out


def change_test(p: Packed, d: np.ndarray, g: np.ndarray, st: RowStats,
                settings: DetectSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Robust z-score of each change and whether it is exceptional (both thresholds passed).

    Across a gap the expected spread grows like sqrt(gap), so a week-long outage
    followed by ordinary growth is not a jump.
    """
    y_prev = np.full_like(p.y, np.nan)
    y_prev[1:] = p.y[:-1]
    floor = level_floor(y_prev, settings)
    with np.errstate(invalid="ignore"):
        sd = np.maximum(st.scale * np.sqrt(g), floor)
        z = (d - st.mu * g) / sd
        min_log = np.log1p(settings.min_change_pct / 100.0)
        raw = log_counts(p.value)
        raw_d = np.full_like(raw, np.nan)
        raw_d[1:] = raw[1:] - raw[:-1]
        # both the adjusted and the raw change must be big: an adjustment never creates an alert
        exceed = ((np.abs(z) >= settings.threshold) & (np.abs(d) >= min_log)
                  & (np.abs(raw_d) >= min_log))
    exceed &= st.n >= settings.min_history
    return z, exceed, sd


@dataclass
class Verdicts:
    """Candidates from :func:`scan`: column, row opened, row decided (-1: open), outcome."""

    col: np.ndarray
    row: np.ndarray
    decided_row: np.ndarray
    outcome: np.ndarray


def nanmedian0(a: np.ndarray) -> np.ndarray:
    """``np.nanmedian(a, axis=0)`` for a few rows, without its masked-array slow path.

    Same values: the middle element, or the mean of the two middle ones; NaN if none.
    """
    k = a.shape[0]
    n = k - np.isnan(a).sum(axis=0)
    s = np.sort(a, axis=0)  # NaN sort last
    lo = np.maximum((n - 1) // 2, 0)
    hi = np.maximum(n // 2, 0)
    cols = np.arange(a.shape[1])
    with np.errstate(invalid="ignore"):
        out = (s[lo, cols] + s[hi, cols]) / 2.0
    return np.where(n > 0, out, np.nan)


def _pre_level(y: np.ndarray, i: int, c: np.ndarray) -> np.ndarray:
    """Median of the last few observations before row i: one noisy day is not the old level."""
    win = y[max(0, i - _PRE_OBS):i, c]
    out = nanmedian0(win) if win.shape[0] else y[i - 1, c]
    return np.where(np.isfinite(out), out, y[i - 1, c])


def scan(p: Packed, exceed: np.ndarray, sd: np.ndarray, settings: DetectSettings,
         start_row: np.ndarray | None = None) -> Verdicts:
    """Open, absorb and decide candidates row by row (causal by construction).

    ``start_row`` lets an incremental run begin each series at a point where no
    candidate can be open, so it reaches the same state as a run over all history.
    """
    n, m = p.y.shape
    if start_row is None:
        start_row = np.ones(m, dtype=np.int64)
    is_open = np.zeros(m, dtype=bool)
    o_row = np.zeros(m, dtype=np.int64)
    o_pre = np.zeros(m)
    o_jump = np.zeros(m)
    o_day = np.zeros(m, dtype=np.int64)
    o_sd = np.ones(m)
    min_log = np.log1p(settings.min_change_pct / 100.0)
    cols: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    dec: list[np.ndarray] = []
    outc: list[np.ndarray] = []
    busy_rows = np.flatnonzero(exceed.any(axis=1))
    if busy_rows.size == 0:
        return Verdicts(*(np.zeros(0, dtype=np.int64) for _ in range(4)))
    first = max(1, int(busy_rows[0]))
    for i in range(first, n):
        live = (i >= start_row) & ~np.isnan(p.y[i])
        if is_open.any():
            act = is_open & live
            returned = act & (np.abs(p.y[i] - o_pre) <= settings.return_fraction * np.abs(o_jump))
            due = act & ~returned & (p.day[i] - o_day >= settings.confirm_days)
            confirmed = np.zeros(m, dtype=bool)
            c = np.flatnonzero(due)
            if c.size:
                # a shift must still stand as a level: median since the jump vs median before it
                lo = i - settings.confirm_days
                post = p.y[max(lo, 0):i + 1, c]
                post = np.where(np.arange(max(lo, 0), i + 1)[:, None] >= o_row[c][None, :],
                                post, np.nan)
                with np.errstate(invalid="ignore"):
                    moved = np.abs(nanmedian0(post) - o_pre[c])
                held = (moved >= min_log) & (moved >= settings.confirm_threshold * o_sd[c])
                confirmed[c[held]] = True
                returned[c[~held]] = True
            for mask, kind in ((returned, GLITCH), (confirmed, CONFIRMED)):
                c = np.flatnonzero(mask)
                if c.size:
                    cols.append(c)
                    rows.append(o_row[c])
                    dec.append(np.full(c.size, i))
                    outc.append(np.full(c.size, kind))
            is_open &= ~(returned | confirmed)
            new = live & exceed[i] & ~is_open & ~returned
        else:
            new = live & exceed[i]
        c = np.flatnonzero(new)
        if c.size:
            is_open[c] = True
            o_row[c] = i
            o_pre[c] = _pre_level(p.y, i, c)
            o_jump[c] = p.y[i, c] - o_pre[c]
            o_day[c] = p.day[i, c]
            o_sd[c] = sd[i, c]
    c = np.flatnonzero(is_open)
    cols.append(c)
    rows.append(o_row[c])
    dec.append(np.full(c.size, -1))
    outc.append(np.full(c.size, OPEN))
    return Verdicts(np.concatenate(cols), np.concatenate(rows), np.concatenate(dec),
                    np.concatenate(outc))


def sync_rows(exceed: np.ndarray, p: Packed, from_row: int, day: int,
              settings: DetectSettings) -> tuple[np.ndarray, np.ndarray]:
    """Per series, the latest row where a run may start with nothing open, for an incremental run.

    A candidate opened at row j is decided by row j + confirm_days at the latest
    (one observation per day), so after confirm_days + 1 rows without an exceptional
    change no candidate can be open, whatever happened earlier. The row must lie at
    or before the first observation whose candidate could still be decided on ``day``.
    Returns (start_row, ok); ``ok`` False means history must be scanned from the start.
    """
    n, m = exceed.shape
    quiet_len = settings.confirm_days + 1
    ex = exceed.astype(np.int64)
    ex[:from_row] = 1  # unknown rows count as busy
    cs = np.zeros((n + 1, m), dtype=np.int64)
    cs[1:] = np.cumsum(ex, axis=0)
    q = np.arange(n)[:, None]
    lo = np.maximum(q - quiet_len, 0)
    quiet = (cs[q.ravel()] - np.take_along_axis(cs, np.broadcast_to(lo, (n, m)), axis=0)) == 0
    quiet &= q >= quiet_len
    limit = (p.day < day - settings.confirm_days).sum(axis=0)
    allowed = quiet & (q <= limit[None, :])
    any_ok = allowed.any(axis=0)
    last = n - 1 - np.argmax(allowed[::-1], axis=0)
    start = np.where(any_ok, last, 1)
    return np.maximum(start, 1).astype(np.int64), any_ok
