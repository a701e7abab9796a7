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
from .scale import RowStats, cell_stats
from .settings import DetectSettings

OPEN, GLITCH, CONFIRMED = 0, 1, 2
_PRE_OBS = 5
#: Longest gap (days) across which a move can be a moderate one (see :func:`soft_moves`).
_SOFT_MAX_GAP = 7


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
        # Across a gap of more than a week (a monthly series) no level test can follow
        # the move (see soft_moves), so the one-step bar stays at sparse_threshold there.
        bar = np.where(g > _SOFT_MAX_GAP, settings.sparse_threshold, settings.threshold)
        # both the adjusted and the raw change must be big: an adjustment never creates an alert
        exceed = ((np.abs(z) >= bar) & (np.abs(d) >= min_log)
                  & (np.abs(raw_d) >= min_log))
    exceed &= st.n >= settings.min_history
    return z, exceed, sd


def soft_moves(p: Packed, d: np.ndarray, z: np.ndarray, exceed: np.ndarray, st: RowStats,
               settings: DetectSettings) -> np.ndarray:
    """Moderate moves: past ``soft_threshold`` and ``min_change_pct`` but not exceptional.

    A 5-10% move of a company whose count wobbles by 1% a day scores 4-6, below the
    threshold that keeps single noisy days quiet. Such a move is only news if the
    count stays there, so it opens a candidate that is never reported as provisional:
    it is reported once the level test at confirmation says the new level stands out
    from the series' own level noise (see :func:`level_changes`), else forgotten.
    """
    if settings.soft_threshold <= 0 or settings.soft_threshold >= settings.threshold:
        return np.zeros(exceed.shape, dtype=bool)
    min_log = np.log1p(settings.min_change_pct / 100.0)
    raw = log_counts(p.value)
    with np.errstate(invalid="ignore"):
        gap = np.zeros(p.day.shape)
        gap[1:] = p.day[1:] - p.day[:-1]
        # Across a long gap (a monthly series) the next observations are months away,
        # where trends rule as much as the move: such a move must score twice as high
        # to be followed at all.
        gate = np.where(gap > _SOFT_MAX_GAP, 2.0 * settings.soft_threshold,
                        settings.soft_threshold)
        out = (np.abs(z) >= gate) & (np.abs(d) >= min_log)
        out[1:] &= np.abs(raw[1:] - raw[:-1]) >= min_log
    out[0] = False
    return out & ~exceed & (st.n >= settings.min_history)


def level_changes(y: np.ndarray, post: int, pre: int = _PRE_OBS) -> np.ndarray:
    """At each packed row e: median of the ``post`` observations ending at e minus the
    median of the ``pre`` before them; NaN where either window is incomplete.

    This is the quantity the confirmation of a moderate move measures (the level
    since the jump against the level before it), so its spread over a series' past is
    that series' own level noise: small where the count is measurement noise around
    a smooth level (a lasting 5% move is then clear), large where it wanders like a
    random walk (where one day's move proves nothing).
    """
    n, m = y.shape
    out = np.full((n, m), np.nan)
    if n < post + pre:
        return out
    view = np.lib.stride_tricks.sliding_window_view
    after = np.median(view(y, post, axis=0), axis=-1)  # row k: window starting at k
    before = np.median(view(y, pre, axis=0), axis=-1)
    e = np.arange(post + pre - 1, n)
    out[e] = after[e - post + 1] - before[e - post - pre + 1]
    return out


def horizons(settings: DetectSettings) -> list[tuple[int, int]]:
    """(post, pre) observations of the level tests of a moderate move, shortest first.

    The first is taken at ``confirm_days`` like every verdict; the second, at
    ``soft_confirm_days``, gives a move the first one could not settle (a 5% move of a
    count that wobbles by 1.5% a day) twice the observations on each side.
    """
    out = [(settings.confirm_days + 1, _PRE_OBS)]
    if settings.soft_confirm_days > settings.confirm_days:
        post = settings.soft_confirm_days + 1
        out.append((post, max(_PRE_OBS, post + 2)))
    return out


def decided_within(settings: DetectSettings) -> int:
    """Days after opening by which every candidate has its verdict."""
    if settings.soft_threshold <= 0 or settings.soft_threshold >= settings.threshold:
        return settings.confirm_days
    return max(settings.confirm_days, settings.soft_confirm_days)


@dataclass
class LevelStats:
    """Per horizon of :func:`horizons`: location and robust scale of
    :func:`level_changes` at the soft cells (dense arrays like ``p.y``, NaN elsewhere)."""

    loc: list[np.ndarray]
    scale: list[np.ndarray]


def level_stats(p: Packed, soft: np.ndarray, settings: DetectSettings) -> LevelStats:
    """Location and robust scale of :func:`level_changes` before each soft cell's week.

    The statistics come from changes that ended before the Monday of the cell's week,
    like the change test's (same window, same estimator), so the candidate's own jump
    never widens them.
    """
    hs = horizons(settings)
    out = LevelStats([np.full(p.y.shape, np.nan) for _ in hs],
                     [np.full(p.y.shape, np.nan) for _ in hs])
    r, c = np.nonzero(soft)
    if r.size == 0:
        return out
    cols = np.unique(c)
    for k, (post, pre) in enumerate(hs):
        lv = np.full(p.y.shape, np.nan)
        lv[:, cols] = level_changes(p.y[:, cols], post, pre)
        st = cell_stats(p, lv, np.ones(p.y.shape), r, c, settings)
        out.loc[k][r, c] = st.mu
        out.scale[k][r, c] = st.scale
    return out


@dataclass
class Verdicts:
    """Candidates from :func:`scan`: column, row opened, row decided (-1: open), outcome.

    ``soft`` marks moderate moves, reported only once confirmed (on ``decided_row``);
    ``level_z`` is the level test's score of those (NaN for the others).
    """

    col: np.ndarray
    row: np.ndarray
    decided_row: np.ndarray
    outcome: np.ndarray
    soft: np.ndarray
    level_z: np.ndarray

    @classmethod
    def none(cls) -> Verdicts:
        empty = np.zeros(0, dtype=np.int64)
        return cls(empty, empty, empty, empty, np.zeros(0, dtype=bool), np.zeros(0))

    def select(self, mask: np.ndarray) -> Verdicts:
        return Verdicts(self.col[mask], self.row[mask], self.decided_row[mask],
                        self.outcome[mask], self.soft[mask], self.level_z[mask])


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


def _pre_level(y: np.ndarray, i: int, c: np.ndarray, k: int = _PRE_OBS) -> np.ndarray:
    """Median of the last ``k`` observations before row i: one noisy day is not the old level."""
    win = y[max(0, i - k):i, c]
    out = nanmedian0(win) if win.shape[0] else y[i - 1, c]
    return np.where(np.isfinite(out), out, y[i - 1, c])


def scan(p: Packed, exceed: np.ndarray, sd: np.ndarray, settings: DetectSettings,
         start_row: np.ndarray | None = None, soft: np.ndarray | None = None,
         level: LevelStats | None = None, z: np.ndarray | None = None) -> Verdicts:
    """Open, absorb and decide candidates row by row (causal by construction).

    ``start_row`` lets an incremental run begin each series at a point where no
    candidate can be open, so it reaches the same state as a run over all history.
    ``soft`` (with ``level`` from :func:`level_stats` and the z-scores ``z``) adds
    moderate moves: they open candidates like exceptional ones, but only those whose
    new level passes a level test are kept: at ``confirm_days``, or, when that test
    leans the right way without settling it, at ``soft_confirm_days`` with twice the
    observations. One that comes back, fades, or is overtaken by a larger move (which
    then opens its own candidate) leaves no row.
    """
    n, m = p.y.shape
    if start_row is None:
        start_row = np.ones(m, dtype=np.int64)
    hs = horizons(settings)
    if soft is None or level is None or z is None:
        soft = np.zeros(exceed.shape, dtype=bool)
        level = LevelStats([np.full(exceed.shape, np.nan)] * len(hs),
                           [np.full(exceed.shape, np.nan)] * len(hs))
        z = np.zeros(exceed.shape)
    is_open = np.zeros(m, dtype=bool)
    o_soft = np.zeros(m, dtype=bool)
    o_ext = np.zeros(m, dtype=bool)  # a moderate move waiting for its second test
    o_row = np.zeros(m, dtype=np.int64)
    o_pre = np.zeros(m)
    o_jump = np.zeros(m)
    o_day = np.zeros(m, dtype=np.int64)
    o_sd = np.ones(m)
    o_z = np.zeros(m)
    o_floor = np.ones(m)
    o_pres = [np.zeros(m) for _ in hs]
    o_lloc = [np.zeros(m) for _ in hs]
    o_lsc = [np.ones(m) for _ in hs]
    min_log = np.log1p(settings.min_change_pct / 100.0)
    lean = settings.soft_level_threshold / 2  # "leans the right way"
    # The count floor bounds one day's change. A difference of medians over post and pre
    # observations varies less: one observation's noise is the floor / sqrt(2), and a
    # median of n of them about 1.25 / sqrt(n) of that (a median's efficiency).
    shrink = [1.25 * np.sqrt((1 / post + 1 / pre) / 2) for post, pre in hs]
    out: list[tuple[np.ndarray, ...]] = []
    opening = exceed | soft
    busy_rows = np.flatnonzero(opening.any(axis=1))
    if busy_rows.size == 0:
        return Verdicts.none()
    first = max(1, int(busy_rows[0]))

    def emit(c: np.ndarray, decided: int, kind: int, lz: np.ndarray | None = None) -> None:
        if c.size:
            out.append((c, o_row[c], np.full(c.size, decided), np.full(c.size, kind),
                        o_soft[c].copy(), np.full(c.size, np.nan) if lz is None else lz))

    def level_z(i: int, c: np.ndarray, k: int, lo: int) -> tuple[np.ndarray, np.ndarray]:
        """Median since the jump (rows lo..i) against the level before it, in scales of
        the series' own level noise at horizon k; and the signed move itself."""
        post = p.y[lo:i + 1, c]
        post = np.where(np.arange(lo, i + 1)[:, None] >= o_row[c][None, :], post, np.nan)
        with np.errstate(invalid="ignore"):
            signed = nanmedian0(post) - o_pres[k][c]
            return (signed - o_lloc[k][c]) / np.maximum(o_lsc[k][c], o_floor[c] * shrink[k]), signed

    for i in range(first, n):
        live = (i >= start_row) & ~np.isnan(p.y[i])
        returned = np.zeros(m, dtype=bool)
        if is_open.any():
            act = is_open & live
            returned = act & (np.abs(p.y[i] - o_pre) <= settings.return_fraction * np.abs(o_jump))
            waited = p.day[i] - o_day
            due = act & ~returned & ~o_ext & (waited >= settings.confirm_days)
            confirmed = np.zeros(m, dtype=bool)
            lz = np.full(m, np.nan)
            c = np.flatnonzero(due)
            if c.size:
                # a shift must still stand as a level: median since the jump vs median before it
                # the first horizon's level before is o_pre (same _PRE_OBS observations)
                lz[c], signed = level_z(i, c, 0, max(i - settings.confirm_days, 0))
                with np.errstate(invalid="ignore"):
                    moved = np.abs(signed)
                    held = (moved >= min_log) & (moved >= settings.confirm_threshold * o_sd[c])
                    toward = np.sign(lz[c]) == np.sign(o_jump[c])
                    firm = (toward & (np.abs(lz[c]) >= settings.soft_level_threshold)
                            & (moved >= min_log))
                    wait = (o_soft[c] & ~firm & toward & (np.abs(lz[c]) >= lean)
                            & (len(hs) > 1))
                held = np.where(o_soft[c], firm, held)  # moderate moves: the level test
                confirmed[c[held]] = True
                o_ext[c[wait]] = True
                returned[c[~held & ~wait]] = True
            if len(hs) > 1:
                late = act & ~returned & o_ext & (waited >= settings.soft_confirm_days)
                c = np.flatnonzero(late)
                if c.size:
                    lz2, signed = level_z(i, c, 1, max(i - settings.soft_confirm_days, 0))
                    with np.errstate(invalid="ignore"):
                        firm = ((np.sign(lz2) == np.sign(o_jump[c]))
                                & (np.abs(lz2) >= settings.soft_level_threshold)
                                & (np.abs(signed) >= min_log))
                    lz[c] = lz2
                    confirmed[c[firm]] = True
                    returned[c[~firm]] = True
            emit(np.flatnonzero(returned & ~o_soft), i, GLITCH)
            c = np.flatnonzero(confirmed)
            emit(c, i, CONFIRMED, np.where(o_soft[c], lz[c], np.nan))
            is_open &= ~(returned | confirmed)
        # an exceptional change replaces a moderate candidate still open, and a larger
        # moderate move (or one the other way) a smaller one
        with np.errstate(invalid="ignore"):
            overtakes = o_soft & ((np.abs(z[i]) > o_z) | (np.sign(z[i]) != np.sign(o_jump)))
        new = live & ~returned & ((exceed[i] & (~is_open | o_soft))
                                  | (soft[i] & (~is_open | overtakes)))
        c = np.flatnonzero(new)
        if c.size:
            is_open[c] = True
            o_soft[c] = ~exceed[i, c]
            o_ext[c] = False
            o_row[c] = i
            o_pre[c] = _pre_level(p.y, i, c)
            o_jump[c] = p.y[i, c] - o_pre[c]
            o_day[c] = p.day[i, c]
            o_sd[c] = sd[i, c]
            o_z[c] = np.abs(z[i, c])
            o_floor[c] = level_floor(p.y[i - 1, c], settings)
            for k, (_, pre) in enumerate(hs):
                o_pres[k][c] = _pre_level(p.y, i, c, pre)
                o_lloc[k][c] = np.nan_to_num(level.loc[k][i, c], nan=0.0)
                o_lsc[k][c] = level.scale[k][i, c]
    c = np.flatnonzero(is_open & ~o_soft)
    emit(c, -1, OPEN)
    if not out:
        return Verdicts.none()
    parts = list(zip(*out, strict=True))
    return Verdicts(*(np.concatenate(x) for x in parts))


def sync_rows(exceed: np.ndarray, p: Packed, from_row: int, day: int,
              settings: DetectSettings) -> tuple[np.ndarray, np.ndarray]:
    """Per series, the latest row where a run may start with nothing open, for an incremental run.

    A candidate opened at row j is decided by row j + :func:`decided_within` at the
    latest (one observation per day), so after that many + 1 rows without a change that
    opens one, no candidate can be open, whatever happened earlier. The row must lie at
    or before the first observation whose candidate could still be decided on ``day``.
    Returns (start_row, ok); ``ok`` False means history must be scanned from the start.
    """
    n, m = exceed.shape
    quiet_len = decided_within(settings) + 1
    ex = exceed.astype(np.int64)
    ex[:from_row] = 1  # unknown rows count as busy
    cs = np.zeros((n + 1, m), dtype=np.int64)
    cs[1:] = np.cumsum(ex, axis=0)
    q = np.arange(n)[:, None]
    lo = np.maximum(q - quiet_len, 0)
    quiet = (cs[q.ravel()] - np.take_along_axis(cs, np.broadcast_to(lo, (n, m)), axis=0)) == 0
    quiet &= q >= quiet_len
    limit = (p.day < day - decided_within(settings)).sum(axis=0)
    allowed = quiet & (q <= limit[None, :])
    any_ok = allowed.any(axis=0)
    last = n - 1 - np.argmax(allowed[::-1], axis=0)
    start = np.where(any_ok, last, 1)
    return np.maximum(start, 1).astype(np.int64), any_ok
