"""Drift: a sustained change of trend over weeks rather than an overnight jump.

The excess over ``drift_days`` is the change of the log count beyond what the
growth rate of the ``drift_baseline_days`` before it predicts. Jumps and glitches
are cut out first (changes too big to be ordinary are set to 0), so a purge is not
also a drift. Horizons are whole weeks, so a weekly pattern cancels out without
seasonal adjustment. Sums use integer fixed point: a window sum is then exactly the
same whether history starts two years or eight months back (detect_day equals detect).
"""

from __future__ import annotations

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


def _ffill(a: np.ndarray) -> np.ndarray:
    idx = np.where(np.isfinite(a), np.arange(a.shape[0])[:, None], 0)
    np.maximum.accumulate(idx, axis=0, out=idx)
    out = np.take_along_axis(a, idx, axis=0)
    return out


def find_drifts(y_cal: np.ndarray, v_cal: np.ndarray, days: np.ndarray, scale_cal: np.ndarray,
                settings: DetectSettings, only_day: int | None = None) -> Drifts:
    """Drift alarms at observation days (or only at ``only_day``); first day of each episode."""
    h, b = horizons(settings)
    empty = Drifts(*(np.zeros(0) for _ in range(6)))
    if y_cal.size == 0:
        return empty
    d0 = int(days[0])
    g_len = int(days[-1]) - d0 + 1
    m = y_cal.shape[1]
    y = np.full((g_len, m), np.nan)
    y[days - d0] = y_cal
    val = np.full((g_len, m), np.nan)
    val[days - d0] = v_cal
    sc = np.full((g_len, m), np.nan)
    sc[days - d0] = scale_cal
    obs = np.isfinite(y)
    prev = np.full_like(y, np.nan)
    prev[1:] = _ffill(y)[:-1]
    last_obs = np.where(obs, np.arange(g_len)[:, None], -_MAX_GAP - 1)
    np.maximum.accumulate(last_obs, axis=0, out=last_obs)
    gap = np.full((g_len, m), _MAX_GAP + 1)
    gap[1:] = np.arange(1, g_len)[:, None] - last_obs[:-1]
    d = np.where(gap <= _MAX_GAP, y - prev, np.nan)
    floor = level_floor(prev, settings)
    with np.errstate(invalid="ignore"):
        jump = np.abs(d) >= np.maximum(_JUMP, settings.threshold * floor)
    d = np.where(np.isfinite(d) & ~jump, d, 0.0)
    cs = np.zeros((g_len + 1, m), dtype=np.int64)
    cs[1:] = np.cumsum(np.round(d * _FIX).astype(np.int64), axis=0)
    oc = np.zeros((g_len + 1, m), dtype=np.int64)
    oc[1:] = np.cumsum(obs, axis=0)

    def window(arr: np.ndarray, t: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """Sum over grid days (t - hi, t - lo] for grid rows t (rows before the grid count as 0)."""
        a = np.clip(t + 1 - lo, 0, g_len)
        z = np.clip(t + 1 - hi, 0, g_len)
        return arr[a] - arr[z]

    t = np.arange(g_len) if only_day is None else np.array([only_day - d0])
    if t.size == 0 or t[0] < 0:
        return empty
    recent = window(cs, t, 0, h) / _FIX
    base = window(cs, t, h, h + b) / _FIX
    excess = recent - base * (h / b)
    covered = ((window(oc, t, 0, h) >= 2) & (window(oc, t, h, h + b) >= 3)
               & (window(oc, t, h + b - 35, h + b) >= 1) & (t[:, None] - h - b >= 0))
    with np.errstate(invalid="ignore", over="ignore"):
        big = covered & (np.abs(np.expm1(excess)) * 100.0 >= settings.drift_min_pct)
        if only_day is None:
            big_all = big
        else:
            tt = np.arange(max(0, t[0] - h), t[0] + 1)
            r_all = window(cs, tt, 0, h) / _FIX
            b_all = window(cs, tt, h, h + b) / _FIX
            cov_all = ((window(oc, tt, 0, h) >= 2) & (window(oc, tt, h, h + b) >= 3)
                       & (window(oc, tt, h + b - 35, h + b) >= 1) & (tt[:, None] - h - b >= 0))
            big_all = cov_all & (np.abs(np.expm1(r_all - b_all * (h / b))) * 100.0
                                 >= settings.drift_min_pct) & obs[tt]
        big &= obs[t]
        score = np.zeros(big.shape)
        br, bc_ = np.nonzero(big)  # only the few big cells need a noise level
        sd = np.maximum(sc[t[br], bc_], level_floor(y[t[br], bc_], settings))
        score[br, bc_] = excess[br, bc_] / (sd * np.sqrt(settings.drift_noise_days))
        strong = big & (np.abs(score) >= settings.drift_threshold)
    bc = np.zeros((big_all.shape[0] + 1, m), dtype=np.int64)
    bc[1:] = np.cumsum(big_all, axis=0)
    pos = t - (t[0] if only_day is None else max(0, t[0] - h))
    lo = np.clip(pos - h + 1, 0, None)
    earlier = bc[pos] - bc[lo]
    alarm = strong & (earlier == 0)
    r, c = np.nonzero(alarm)
    ff_val = _ffill(val)
    before_rows = np.clip(t[r] - h, 0, None)
    return Drifts(col=c, day=(t[r] + d0).astype(np.int64), excess=excess[r, c], score=score[r, c],
                  before=ff_val[before_rows, c], after=val[t[r], c])
