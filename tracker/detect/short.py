"""Level shifts in short histories: a trend line through the few points there are.

The shift detector judges a change against the spread of at least ``min_history``
earlier changes; an annual series (6-15 points) or a new company never has that
many, so it stays silent exactly where a provider's yearly or monthly history
starts. Here each observation with ``short_min_points`` to ``min_history`` earlier
ones is compared with the line those earlier points draw: a Theil-Sen fit (the
median of pairwise slopes: one wild point cannot tilt it), with the spread of the
points around it as the yardstick, floored by ``short_min_noise`` (a handful of
points can lie on a line by chance) and by the count floor of small companies. A
point far off the line is followed silently and the next observation decides:
back on the line, nothing (one point proves nothing in a short history); as far off,
a confirmed shift; further off the same way, a trend change (the line itself bent).
After either the line starts again from the new level or the bend.

Rows are disjoint from the shift detector's by construction: it needs ``min_history``
changes before the week of a row, which takes more earlier points than this
detector ever reads (see :func:`eligible_rows`). Causal: a verdict about point t
reads points up to t (and the decision, the next point).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .matrix import Packed, log_counts
from .settings import DetectSettings
from .shifts import CONFIRMED, GLITCH, OPEN, level_floor

#: Verdict of a point whose successor is even further off its line: the line bent.
TREND = 3
#: How much further off the next point must be, as a multiple of the first's distance.
_BENT = 1.6

_MAD = 1.4826


def eligible_rows(settings: DetectSettings) -> range:
    """Packed rows (the count of earlier observations) this detector judges.

    A row with k earlier observations has at most k - 1 changes before it, and the
    shift detector needs ``min_history`` of them: so rows below ``min_history`` + 1
    are never the shift detector's.
    """
    return range(max(settings.short_min_points, 2), settings.min_history + 1)


@dataclass
class ShortVerdicts:
    """Candidates: column, row, decided row (-1 open), outcome, score, trend value at the row."""

    col: np.ndarray
    row: np.ndarray
    decided_row: np.ndarray
    outcome: np.ndarray
    score: np.ndarray

    @classmethod
    def none(cls) -> ShortVerdicts:
        empty = np.zeros(0, dtype=np.int64)
        return cls(empty, empty, empty, empty, np.zeros(0))


def _theil_sen(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slope and intercept per column of the points (rows) of x and y (NaN = absent)."""
    k = x.shape[0]
    i, j = np.triu_indices(k, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        slopes = (y[j] - y[i]) / (x[j] - x[i])
    slope = np.nanmedian(np.where(np.isfinite(slopes), slopes, np.nan), axis=0)
    slope = np.where(np.isfinite(slope), slope, 0.0)
    intercept = np.nanmedian(y - slope[None, :] * x, axis=0)
    return slope, intercept


def scan_short(p: Packed, settings: DetectSettings) -> ShortVerdicts:
    """Candidates at the eligible rows of every column, decided at the next observation.

    Columns are independent; the loop is over the few eligible rows, each step a
    vectorized fit for all columns at once. ``start`` moves past a confirmed shift,
    so the line is drawn again through the new level only.
    """
    n, m = p.y.shape
    rows = [r for r in eligible_rows(settings) if r < n]
    out: list[tuple[np.ndarray, ...]] = []
    if not rows or m == 0:
        return ShortVerdicts.none()
    years = p.day.astype(np.float64) / 365.25
    raw = log_counts(p.value)
    min_log = np.log1p(settings.min_change_pct / 100.0)
    start = np.zeros(m, dtype=np.int64)
    open_ = np.zeros(m, dtype=bool)
    o_row = np.zeros(m, dtype=np.int64)
    o_dev = np.zeros(m)
    o_slope = np.zeros(m)
    o_icpt = np.zeros(m)
    o_score = np.zeros(m)
    for t in range(rows[0], min(n, rows[-1] + 2)):
        here = np.isfinite(p.y[t])
        # decide yesterday's candidates on this observation: back on their line?
        c = np.flatnonzero(open_ & here)
        if c.size:
            # Back on the line: a glitch. As far off as before: a step to a new level.
            # Twice as far (or more) the same way: the line itself bent, a trend change.
            ratio = (p.y[t, c] - (o_icpt[c] + o_slope[c] * years[t, c])) / o_dev[c]
            verdict = np.where(ratio <= settings.return_fraction, GLITCH,
                               np.where(ratio >= _BENT, TREND, CONFIRMED))
            out.append((c, o_row[c], np.full(c.size, t), verdict, o_score[c]))
            moved = c[verdict != GLITCH]
            start[moved] = np.where(verdict[verdict != GLITCH] == TREND, o_row[moved] - 1,
                                    o_row[moved])  # the line starts again from there
            open_[c] = False
            decided = np.zeros(m, dtype=bool)
            decided[c] = True
        else:
            decided = np.zeros(m, dtype=bool)
        if t > rows[-1]:
            break
        k = t - start  # earlier points on the current line
        ok = here & ~decided & (k >= settings.short_min_points)
        c = np.flatnonzero(ok)
        if c.size == 0:
            continue
        lo = int(start[c].min())
        xs = years[lo:t, c]
        ys = p.y[lo:t, c]
        on_line = np.arange(lo, t)[:, None] >= start[c][None, :]
        xs = np.where(on_line, xs, np.nan)
        ys = np.where(on_line, ys, np.nan)
        slope, icpt = _theil_sen(xs, ys)
        resid = ys - (icpt[None, :] + slope[None, :] * xs)
        kk = k[c].astype(np.float64)
        spread = _MAD * np.nanmedian(np.abs(resid), axis=0) * (1.0 + 2.0 / kk)
        floor = np.maximum(level_floor(p.y[t - 1, c], settings),
                           np.log1p(settings.short_min_noise / 100.0))
        sd = np.maximum(np.nan_to_num(spread, nan=0.0), floor) * np.sqrt(1.0 + 1.0 / kk)
        dev = p.y[t, c] - (icpt + slope * years[t, c])
        z = dev / sd
        with np.errstate(invalid="ignore"):
            step = raw[t, c] - raw[t - 1, c]
            hit = ((np.abs(z) >= settings.short_threshold) & (np.abs(dev) >= min_log)
                   & (np.abs(step) >= min_log) & (np.sign(step) == np.sign(dev)))
        c = c[hit]
        if c.size:
            open_[c] = True
            o_row[c] = t
            o_dev[c] = dev[hit]
            o_slope[c] = slope[hit]
            o_icpt[c] = icpt[hit]
            o_score[c] = np.abs(z[hit])
    c = np.flatnonzero(open_)
    out.append((c, o_row[c], np.full(c.size, -1), np.full(c.size, OPEN), o_score[c]))
    parts = list(zip(*out, strict=True))
    return ShortVerdicts(*(np.concatenate(x) for x in parts))


@dataclass
class SparseTrends:
    """Trend changes of monthly (or sparser) histories: column, alarm row, onset row,
    excess (log) at the alarm over the old line, score."""

    col: np.ndarray
    row: np.ndarray
    onset: np.ndarray
    excess: np.ndarray
    score: np.ndarray


#: Points a trend test of a sparse history reads (two years of monthly points) and
#: the fewest it needs on each side of the bend.
_TREND_POINTS, _TREND_BEFORE, _TREND_AFTER = 24, 8, 4
#: Median gap (days) from which a history counts as sparse (monthly, quarterly).
_SPARSE_GAP = 20
#: Points after a strong one during which a series does not alarm again (one episode).
_TREND_QUIET = 6


def _fits(x: np.ndarray, y: np.ndarray, extra: np.ndarray) -> np.ndarray:
    """Residual sum of squares of y ~ 1 + x + extra[k] for every k (columns batched).

    x, y: (W, m); extra: (K, W, m). Normal equations solved per (k, column).
    """
    ones = np.ones_like(x)
    design = np.stack([np.broadcast_to(ones, extra.shape), np.broadcast_to(x, extra.shape),
                       extra], axis=-1)  # (K, W, m, 3)
    xtx = np.einsum("kwmi,kwmj->kmij", design, design)
    xty = np.einsum("kwmi,wm->kmi", design, y)
    ok = np.abs(np.linalg.det(xtx)) > 1e-12
    beta = np.zeros(xty.shape)
    beta[ok] = np.linalg.solve(xtx[ok], xty[ok][..., None])[..., 0]
    sse = (y * y).sum(axis=0)[None, :] - (beta * xty).sum(axis=-1)
    return np.where(ok, np.maximum(sse, 0.0), np.inf)


def sparse_trends(p: Packed, settings: DetectSettings) -> SparseTrends:
    """Bends in the line of monthly or sparser histories, past their first points.

    Drift is measured over weeks of daily points; a monthly history holds two or three
    points in such a horizon. Here the last two years of points are fitted twice: a
    line, and a line that bends at one of its points (the bend leaving at least
    ``_TREND_BEFORE`` points before and ``_TREND_AFTER`` after). The bend must explain
    the points far better than the line (an F ratio of ``sparse_trend_f`` against their
    spread, never below ``short_min_noise``) and better than a step at the same point
    (which is the shift detector's), change the yearly growth by ``drift_min_pct``
    points, and have moved the count by ``min_change_pct`` beyond the old line.
    """
    empty = SparseTrends(*(np.zeros(0, dtype=np.int64) for _ in range(3)), np.zeros(0),
                         np.zeros(0))
    first = eligible_rows(settings)[-1] + 1
    if p.y.shape[0] <= first or p.y.shape[1] == 0:
        return empty
    # Only series with enough long gaps can ever have a sparse window: daily ones skip
    # the loop below entirely (it costs a fit per point for the few that remain).
    with np.errstate(invalid="ignore"):
        long_gaps = ((np.diff(p.day, axis=0) >= _SPARSE_GAP)
                     & np.isfinite(p.y[1:])).sum(axis=0)
    keep = np.flatnonzero(long_gaps >= _TREND_POINTS // 2)
    if keep.size == 0:
        return empty
    found = _sparse_trends(Packed(p.y[:, keep], p.value[:, keep], p.day[:, keep],
                                  p.count[keep]), settings, first)
    found.col = keep[found.col]
    return found


def _sparse_trends(p: Packed, settings: DetectSettings, first: int) -> SparseTrends:
    n, m = p.y.shape
    empty = SparseTrends(*(np.zeros(0, dtype=np.int64) for _ in range(3)), np.zeros(0),
                         np.zeros(0))
    years = p.day.astype(np.float64) / 365.25
    floor2 = np.log1p(settings.short_min_noise / 100.0) ** 2
    min_log = np.log1p(settings.min_change_pct / 100.0)
    min_bend = np.log1p(settings.drift_min_pct / 100.0)
    last_strong = np.full(m, -10**9)
    out: list[tuple[np.ndarray, ...]] = []
    for t in range(first, n):
        w = min(_TREND_POINTS, t + 1)
        lo = t - w + 1
        cols = np.flatnonzero(np.isfinite(p.y[t]))
        if cols.size == 0:
            continue
        gaps = np.diff(p.day[lo:t + 1, cols], axis=0)
        cols = cols[np.median(gaps, axis=0) >= _SPARSE_GAP]
        if cols.size == 0:
            continue
        x = years[lo:t + 1, cols] - years[t, cols][None, :]
        y = p.y[lo:t + 1, cols]
        qs = np.arange(_TREND_BEFORE - 1, w - _TREND_AFTER - 1)
        if qs.size == 0:
            continue
        knot = x[qs]  # (K, m)
        hinge = np.maximum(0.0, x[None, :, :] - knot[:, None, :])
        # a step anywhere in the window (not only where a bend may be) explains a
        # shift the window still holds: those points are the shift detector's
        step = (x[None, :, :] > x[:-1, None, :]).astype(np.float64)[1:]
        # the straight line: y ~ 1 + x (closed form, per column)
        xm, ym = x.mean(axis=0), y.mean(axis=0)
        sxx = ((x - xm) ** 2).sum(axis=0)
        sxy = ((x - xm) * (y - ym)).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            line = ((y - ym) ** 2).sum(axis=0) - np.where(sxx > 0, sxy * sxy / sxx, 0.0)
        bent = _fits(x, y, hinge)
        stepped = _fits(x, y, step)
        k = np.argmin(bent, axis=0)
        pick = np.arange(cols.size)
        sse_b = bent[k, pick]
        spread2 = np.maximum(sse_b / max(w - 3, 1), floor2)
        f = (line - sse_b) / spread2
        # the bend's slope change and how far the count left the old line by now
        hk = hinge[k, :, pick].T  # (W, m)
        design = np.stack([np.ones_like(x), x, hk], axis=-1)
        xtx = np.einsum("wmi,wmj->mij", design, design)
        xty = np.einsum("wmi,wm->mi", design, y)
        ok = np.abs(np.linalg.det(xtx)) > 1e-12
        gamma = np.zeros(cols.size)
        gamma[ok] = np.linalg.solve(xtx[ok], xty[ok][..., None])[:, 2, 0]
        excess = gamma * (0.0 - knot[k, pick])
        strong = ((f >= settings.sparse_trend_f) & (sse_b < stepped.min(axis=0))
                  & (np.abs(gamma) >= min_bend) & (np.abs(excess) >= min_log))
        c = cols[strong]
        alarm = t - last_strong[c] > _TREND_QUIET
        last_strong[c] = t
        c_al = c[alarm]
        if c_al.size:
            sel = np.flatnonzero(strong)[alarm]
            out.append((c_al, np.full(c_al.size, t), lo + qs[k[sel]], excess[sel],
                        np.sqrt(np.maximum(f[sel], 0.0))))
    if not out:
        return empty
    parts = list(zip(*out, strict=True))
    return SparseTrends(*(np.concatenate(x) for x in parts))
