"""Removing weekly patterns before the change test, causally.

Some sources count differently on weekends; left in, that pattern is a weekly
"drop" and "spike". Every ``seasonal_refit_days`` block (anchored on absolute
Mondays) gets a weekly profile estimated from the ``seasonal_fit_days`` before the
block only, so the verdict about day t never uses data after t. A cheap vectorized
one-way ANOVA of daily changes by weekday picks the (block, series) pairs with a real
pattern; only those get a statsmodels STL profile. STL as configured here (no
robustness iterations) is linear in its input, so its profile is one cached matrix
(built from statsmodels' own STL, one fit per window position) applied to all the
windows at once: the numbers of a fit per window (to rounding, ~1e-15), at a tiny
fraction of the cost.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from statsmodels.tsa.seasonal import STL

from .settings import DetectSettings

#: Day changes larger than this (log) are jumps or glitches, not weekly pattern.
_JUMP = 0.1
_MIN_COVERAGE = 0.8


def _block_days(settings: DetectSettings) -> tuple[int, int]:
    """Refit and fit lengths rounded down to whole weeks (weeks are the unit of the pattern)."""
    refit = max(7, settings.seasonal_refit_days // 7 * 7)
    return refit, max(28, settings.seasonal_fit_days // 7 * 7)


def day_changes(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Daily log changes of a calendar grid (0 where unknown or a jump) and where they are known.

    Computed once per grid: every block's window is then a gather of these rows.
    """
    dd = np.full_like(grid, np.nan)
    np.subtract(grid[1:], grid[:-1], out=dd[1:])
    with np.errstate(invalid="ignore"):
        ok = np.abs(dd) <= _JUMP  # False for NaN
    return np.where(ok, dd, 0.0), ok


def weekly_test(dz: np.ndarray, ok: np.ndarray, settings: DetectSettings) -> np.ndarray:
    """F test of weekday means of daily log changes in (blocks, fit_days, series) windows.

    ``dz``/``ok`` are the windows' changes (0 where unknown) and where they are known;
    the first day of a window has no change inside it. Works on changes, so a steady
    trend (same mean every weekday) is not a pattern.
    """
    b, f, m = dz.shape
    ok[:, 0] = False
    dz[:, 0] = 0.0
    wk = dz.reshape(b, f // 7, 7, m)
    okw = ok.reshape(b, f // 7, 7, m)
    n_w = okw.sum(axis=1)
    sum_w = wk.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_w = sum_w / n_w
        n = n_w.sum(axis=1)
        grand = sum_w.sum(axis=1) / n
        between = (n_w * (mean_w - grand[:, None, :]) ** 2).sum(axis=1) / 6.0
        within = (np.where(okw, wk - mean_w[:, None], 0.0) ** 2).sum(axis=(1, 2)) / (n - 7)
        fstat = between / np.maximum(within, 1e-12)
        profile = np.cumsum(np.nan_to_num(mean_w - grand[:, None, :]), axis=1)
        amp = profile.max(axis=1) - profile.min(axis=1)
    return ((n >= _MIN_COVERAGE * f) & (n_w.min(axis=1) >= 3) & (fstat >= settings.seasonal_min_f)
            & (amp >= settings.seasonal_min_amplitude_pct / 100.0))


@lru_cache(maxsize=8)
def _stl_operator(fit: int) -> np.ndarray:
    """The (7, fit) matrix that maps a window to its statsmodels STL weekly profile.

    STL without robustness iterations (``outer_iter=0``, one inner pass) is a chain of
    LOESS fits with fixed weights and moving averages: a linear map of its input. So
    the profile of any window is this matrix times the window, where column k is the
    profile statsmodels' STL gives for the k-th unit vector. One STL fit per window
    position, once per process, instead of one per (block, series): the same numbers
    (to ~1e-15) at a fraction of the cost.
    """
    basis = np.eye(fit)
    cols = [_stl_profile(e) for e in basis]
    op = np.array(cols).T
    op.setflags(write=False)
    return op


def _stl_profile(clean: np.ndarray) -> np.ndarray:
    seas = STL(clean, period=7, robust=False).fit(inner_iter=1, outer_iter=0).seasonal
    last = seas[-14:].reshape(2, 7).mean(axis=0)
    return last - last.mean()


def _interp_rows(w: np.ndarray) -> np.ndarray:
    """``np.interp`` over the missing cells of every row at once (same formula, same bits)."""
    n = w.shape[1]
    good = np.isfinite(w)
    idx = np.arange(n)
    lo = np.where(good, idx, -1)
    np.maximum.accumulate(lo, axis=1, out=lo)
    hi = np.where(good, idx, n)[:, ::-1]
    hi = np.minimum.accumulate(hi, axis=1)[:, ::-1]
    first = np.argmax(good, axis=1)[:, None]
    last = (n - 1 - np.argmax(good[:, ::-1], axis=1))[:, None]
    r = np.arange(w.shape[0])[:, None]
    lo_c = np.where(lo < 0, first, lo)
    hi_c = np.where(hi >= n, last, hi)
    wl = w[r, lo_c]
    wh = w[r, hi_c]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (wh - wl) / (hi_c - lo_c) * (idx - lo_c) + wl
    out = np.where(good, w, out)
    out = np.where(lo < 0, wh, out)
    return np.where(hi >= n, wl, out)


def _clean_windows(windows: np.ndarray) -> np.ndarray:
    """Fill holes linearly and flatten jumps, so STL sees only the weekly wiggle and trend."""
    filled = _interp_rows(windows)
    step = np.diff(filled, axis=1)
    step[np.abs(step) > _JUMP] = 0.0
    out = np.empty_like(filled)
    out[:, 0] = filled[:, 0]
    out[:, 1:] = filled[:, :1] + np.cumsum(step, axis=1)
    return out


def fit_profiles(windows: np.ndarray) -> np.ndarray:
    """STL weekly profile (7 values, Monday first, mean 0) of each row of ``windows``."""
    if windows.shape[0] == 0:
        return np.zeros((0, 7))
    return _clean_windows(windows) @ _stl_operator(windows.shape[1]).T


def fit_profiles_stl(windows: np.ndarray) -> np.ndarray:
    """Reference: one statsmodels STL fit per row (what :func:`fit_profiles` equals)."""
    clean = _clean_windows(windows)
    return np.array([_stl_profile(c) for c in clean]).reshape(-1, 7)


def deseasonalize(y_cal: np.ndarray, days: np.ndarray, settings: DetectSettings,
                  from_day: int | None = None) -> tuple[np.ndarray, int]:
    """Weekly-adjusted copy of ``y_cal`` (rows = ``days``) and how many series were adjusted.

    With ``from_day`` only blocks reaching that day or later are tested and adjusted
    (rows before it may be left unadjusted): what an incremental run needs.
    """
    if settings.seasonal == "off" or y_cal.size == 0:
        return y_cal, 0
    refit, fit = _block_days(settings)
    d0, d1 = int(days[0]), int(days[-1])
    first_block = (d0 - 4) // refit
    last_block = (d1 - 4) // refit
    starts = 4 + refit * np.arange(first_block, last_block + 1, dtype=np.int64)
    starts = starts[starts - fit >= d0]
    if from_day is not None:
        starts = starts[starts + refit > from_day]
    if starts.size == 0:
        return y_cal, 0
    grid0 = int(starts[0]) - fit
    grid_len = max(d1, int(starts[-1])) - grid0 + 1
    m = y_cal.shape[1]
    keep = days >= grid0
    grid = np.full((grid_len, m), np.nan)
    grid[days[keep] - grid0] = y_cal[keep]
    rel = (starts - grid0)[:, None] + np.arange(-fit, 0)[None, :]
    dz_grid, ok_grid = day_changes(grid)
    step = max(1, 4_000_000 // (rel.size or 1))
    found_b: list[np.ndarray] = []
    found_c: list[np.ndarray] = []
    for c0 in range(0, m, step):
        sl = slice(c0, c0 + step)
        b, c = np.nonzero(weekly_test(dz_grid[:, sl][rel], ok_grid[:, sl][rel], settings))
        found_b.append(b)
        found_c.append(c + c0)
    blocks, cols = np.concatenate(found_b), np.concatenate(found_c)
    if blocks.size == 0:
        return y_cal, 0
    profiles = fit_profiles(grid[rel[blocks], cols[:, None]])
    out = y_cal.copy()
    row_block = np.searchsorted(starts, days, side="right") - 1
    wd = (days - 4) % 7
    for b in np.unique(blocks):
        sel = blocks == b
        rows = np.flatnonzero((row_block == b) & (days < starts[b] + refit))
        if rows.size:
            c = cols[sel]
            out[np.ix_(rows, c)] -= profiles[sel][:, wd[rows]].T
    return out, int(np.unique(cols).size)
