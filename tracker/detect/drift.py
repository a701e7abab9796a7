"""Drift: a sustained change of trend over weeks rather than an overnight jump.

The excess over ``drift_days`` is the change of the log count beyond what the
growth rate of the ``drift_baseline_days`` before it predicts. Jumps and glitches
are cut out first (changes too big to be ordinary are set to 0), so a purge is not
also a drift. Horizons are whole weeks, so a weekly pattern cancels out without
seasonal adjustment. Sums use integer fixed point: a window sum is then exactly the
same whether history starts two years or eight months back (detect_day equals detect).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .settings import DetectSettings
from .shifts import level_floor

_FIX = float(2**32)
_JUMP = np.log(1.1)
#: Changes across longer gaps are left out, so a verdict depends on a bounded past.
_MAX_GAP = 35


@dataclass
class Drifts:
    """Drift alarms: series column, alarm day, excess (log), score, values at both ends."""

    col: np.ndarray
    day: np.ndarray
    excess: np.ndarray
    score: np.ndarray
    before: np.ndarray
    after: np.ndarray


def horizons(settings: DetectSettings) -> tuple[int, int]:
    """Horizon and baseline in whole weeks."""
    return max(14, settings.drift_days // 7 * 7), max(28, settings.drift_baseline_days // 7 * 7)


def lookback_days(settings: DetectSettings) -> int:
    """Calendar days of history a drift verdict on one day depends on."""
    h, b = horizons(settings)
    return 2 * h + b + 40


def _last_finite(v_cal: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Per (calendar row, column) pair, the last finite value at or before that row.

    Where there is none, the value of the first row (not finite then), as a forward
    fill of the whole grid would give. Done for the few alarm cells only.
    """
    if rows.size == 0:
        return np.zeros(0)
    sub = v_cal[:, cols]
    idx = np.where(np.isfinite(sub), np.arange(sub.shape[0])[:, None], 0)
    np.maximum.accumulate(idx, axis=0, out=idx)
    return sub[idx[rows, np.arange(cols.size)], np.arange(cols.size)]


def _jump_limit(prev: np.ndarray, settings: DetectSettings) -> np.ndarray:
    """Smallest change counted as a jump: ``max(_JUMP, threshold * level_floor(prev))``.

    The level floor only matters for small counts; columns whose every level is
    large enough for it to stay well under ``_JUMP`` get ``_JUMP`` without the
    exp/sqrt (the same numbers, as ``max`` picks ``_JUMP`` there anyway).
    """
    out = np.full(prev.shape, _JUMP)
    if settings.threshold * settings.min_scale >= _JUMP / 2 or settings.small_count_scale <= 0:
        cols = np.arange(prev.shape[1])
    else:
        big_level = np.log((2.0 * settings.threshold * settings.small_count_scale / _JUMP) ** 2)
        lowest = np.fmin.reduce(prev, axis=0)  # NaN only where a column has no level at all
        cols = np.flatnonzero(lowest < big_level)
    if cols.size:
        out[:, cols] = np.maximum(_JUMP, settings.threshold * level_floor(prev[:, cols], settings))
    return out


def _quantized_changes(y: np.ndarray, obs: np.ndarray, settings: DetectSettings,
                       from_row: int = 0) -> np.ndarray:
    """Fixed-point log changes from the previous observation, jumps and long gaps set to 0.

    Rows ``from_row`` on only (a previous observation further back than ``_MAX_GAP``
    days does not count, so earlier rows are not needed).
    """
    r0 = max(0, from_row - _MAX_GAP - 1)
    y, obs = y[r0:], obs[r0:]
    g_len = y.shape[0]
    last_obs = np.where(obs, np.arange(g_len)[:, None], -_MAX_GAP - 1)
    np.maximum.accumulate(last_obs, axis=0, out=last_obs)
    prev = np.full_like(y, np.nan)
    prev[1:] = np.take_along_axis(y, np.maximum(last_obs[:-1], 0), axis=0)
    gap = np.full(y.shape, _MAX_GAP + 1)
    gap[1:] = np.arange(1, g_len)[:, None] - last_obs[:-1]
    d = np.where(gap <= _MAX_GAP, y - prev, np.nan)
    with np.errstate(invalid="ignore"):
        jump = np.abs(d) >= _jump_limit(prev, settings)
    d = np.where(np.isfinite(d) & ~jump, d, 0.0)
    return np.round(d[from_row - r0:] * _FIX).astype(np.int64)


def _cumsum0(a: np.ndarray) -> np.ndarray:
    out = np.zeros((a.shape[0] + 1, a.shape[1]), dtype=np.int64)
    np.cumsum(a, axis=0, out=out[1:])
    return out


def _trend(win: Callable[[str, int, int], np.ndarray], t: np.ndarray, h: int, b: int,
           settings: DetectSettings) -> tuple[np.ndarray, np.ndarray]:
    """Excess over the horizon ending at grid rows t, and whether it is big and covered.

    ``win(key, lo, hi)`` sums the fixed-point changes ("d") or observation flags ("o")
    over grid days (t - hi, t - lo], rows before the grid counting as 0.
    """
    excess = win("d", 0, h) / _FIX - win("d", h, h + b) / _FIX * (h / b)
    covered = ((win("o", 0, h) >= 2) & (win("o", h, h + b) >= 3)
               & (win("o", h + b - 35, h + b) >= 1) & (t[:, None] - h - b >= 0))
    with np.errstate(invalid="ignore", over="ignore"):
        return excess, covered & (np.abs(np.expm1(excess)) * 100.0 >= settings.drift_min_pct)


def _cumulative_windows(dq: np.ndarray, obs: np.ndarray, t: np.ndarray
                        ) -> Callable[[str, int, int], np.ndarray]:
    """Window sums for many rows t at once, from cumulative sums (exact: integers)."""
    g_len = dq.shape[0]
    cum = {"d": _cumsum0(dq), "o": _cumsum0(obs)}

    def win(key: str, lo: int, hi: int) -> np.ndarray:
        a = np.clip(t + 1 - lo, 0, g_len)
        z = np.clip(t + 1 - hi, 0, g_len)
        return cum[key][a] - cum[key][z]

    return win


def _day_windows(dq: np.ndarray, obs: np.ndarray, t: int) -> Callable[[str, int, int], np.ndarray]:
    """Window sums for the single row t: three slices summed, no cumulative grid."""
    g_len = dq.shape[0]
    arr = {"d": dq, "o": obs}

    def win(key: str, lo: int, hi: int) -> np.ndarray:
        a = int(np.clip(t + 1 - lo, 0, g_len))
        z = int(np.clip(t + 1 - hi, 0, g_len))
        return arr[key][z:a].sum(axis=0, dtype=np.int64)[None, :]

    return win


def find_drifts(y_cal: np.ndarray, v_cal: np.ndarray, days: np.ndarray,
                scale_cal: np.ndarray | Callable[[np.ndarray, np.ndarray], np.ndarray],
                settings: DetectSettings, only_day: int | None = None) -> Drifts:
    """Drift alarms at observation days (or only at ``only_day``); first day of each episode.

    ``scale_cal`` is each series' daily scale (rows = ``days``), or a function of (day
    numbers, columns) giving it at those cells: only the few cells with a big excess
    need one, so the caller may compute them on demand.
    """
    h, b = horizons(settings)
    empty = Drifts(*(np.zeros(0) for _ in range(6)))
    if y_cal.size == 0:
        return empty
    d0 = int(days[0])
    g_len = int(days[-1]) - d0 + 1
    m = y_cal.shape[1]
    grow = (days - d0).astype(np.int64)
    y = np.full((g_len, m), np.nan)
    y[grow] = y_cal
    obs = np.isfinite(y)
    t = np.arange(g_len) if only_day is None else np.array([only_day - d0])
    if t.size == 0 or t[0] < 0:
        return empty
    if only_day is None:
        dq = _quantized_changes(y, obs, settings)
        win = _cumulative_windows(dq, obs, t)
    else:
        # today's sums reach back h + b days; rows before that contribute 0
        r0 = int(np.clip(t[0] + 1 - h - b, 0, g_len))
        dq = np.zeros((g_len, m), dtype=np.int64)
        dq[r0:] = _quantized_changes(y, obs, settings, from_row=r0)
        win = _day_windows(dq, obs, int(t[0]))
    excess, big = _trend(win, t, h, b, settings)
    big &= obs[t]
    with np.errstate(invalid="ignore", over="ignore"):
        score = np.zeros(big.shape)
        br, bc_ = np.nonzero(big)  # only the few big cells need a noise level
        sc = (scale_cal(t[br] + d0, bc_) if callable(scale_cal)
              else scale_cal[np.searchsorted(grow, t[br]), bc_])
        sd = np.maximum(sc, level_floor(y[t[br], bc_], settings))
        score[br, bc_] = excess[br, bc_] / (sd * np.sqrt(settings.drift_noise_days))
        strong = big & (np.abs(score) >= settings.drift_threshold)
    if only_day is None:
        big_all, pos0 = big, 0
    else:
        # an earlier big excess within the horizon silences today's: only strong series need it
        tt = np.arange(max(0, int(t[0]) - h), int(t[0]) + 1)
        pos0 = int(tt[0])
        big_all = np.zeros((tt.size, m), dtype=bool)
        cols = np.flatnonzero(strong[0])
        if cols.size:
            dq_c = _quantized_changes(y[:, cols], obs[:, cols], settings)
            _, big_c = _trend(_cumulative_windows(dq_c, obs[:, cols], tt), tt, h, b, settings)
            big_all[:, cols] = big_c & obs[tt][:, cols]
    bc = _cumsum0(big_all)
    pos = t - pos0
    lo = np.clip(pos - h + 1, 0, None)
    alarm = strong & (bc[pos] - bc[lo] == 0)
    r, c = np.nonzero(alarm)
    before_rows = np.searchsorted(grow, np.clip(t[r] - h, 0, None), side="right") - 1
    return Drifts(col=c, day=(t[r] + d0).astype(np.int64), excess=excess[r, c], score=score[r, c],
                  before=_last_finite(v_cal, before_rows, c),
                  after=v_cal[np.searchsorted(grow, t[r]), c])
