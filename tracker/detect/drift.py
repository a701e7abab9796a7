"""Drift: a sustained change of trend over weeks rather than an overnight jump.

The excess over a horizon is the change of the log count beyond what the growth
rate of the ``drift_baseline_days`` before it predicts, and no larger than the
change itself (a trend that merely stops is not a drift the other way). Two
horizons are tested, ``drift_days`` and ``drift_long_days`` (slow drifts), the
longer one against a noise that grows as the square root of the horizon. Jumps and
glitches are cut out first (changes too big to be ordinary are set to 0), so a purge
is not also a drift. An episode alarms once, on its first strong day. Horizons are
whole weeks, so a weekly pattern cancels out without seasonal adjustment. Sums use
integer fixed point: a window sum is then exactly the same whether history starts
two years or eight months back (detect_day equals detect).
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
    """Drift alarms: series column, alarm day, excess (log), score, values at both ends,
    horizon (days) of the excess, and the estimated onset day of the new trend."""

    col: np.ndarray
    day: np.ndarray
    excess: np.ndarray
    score: np.ndarray
    before: np.ndarray
    after: np.ndarray
    horizon: np.ndarray
    onset: np.ndarray


def horizons(settings: DetectSettings) -> tuple[int, int]:
    """Horizon and baseline in whole weeks."""
    return max(14, settings.drift_days // 7 * 7), max(28, settings.drift_baseline_days // 7 * 7)


def all_horizons(settings: DetectSettings) -> list[int]:
    """Every horizon tested, in whole weeks: ``drift_days`` and ``drift_long_days``."""
    h, _ = horizons(settings)
    long = settings.drift_long_days // 7 * 7
    return sorted({h, long} if long > h else {h})


def lookback_days(settings: DetectSettings) -> int:
    """Calendar days of history a drift verdict on one day depends on."""
    _, b = horizons(settings)
    return 2 * max(all_horizons(settings)) + b + 40


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

    The expected change is ambiguous: the baseline trend carried on, or no change at
    all. A drift must be abnormal under both, so the excess is the smaller of the
    change beyond the trend and the change itself, and 0 when their signs differ: a
    trend that stops (growth ending after a drift up, a decline levelling out) is not
    a drift the other way.
    """
    raw = win("d", 0, h) / _FIX
    beyond = raw - win("d", h, h + b) / _FIX * (h / b)
    excess = np.where(np.sign(raw) == np.sign(beyond),
                      np.sign(raw) * np.minimum(np.abs(raw), np.abs(beyond)), 0.0)
    # At least weekly observations on both sides: across monthly points a horizon holds
    # two or three of them, and their noise, not a trend, decides the excess (monthly
    # histories are judged by the short-history and shift detectors instead).
    covered = ((win("o", 0, h) >= max(2, h // 7)) & (win("o", h, h + b) >= max(3, b // 7))
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


ScaleFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _strong(trends: list[tuple[np.ndarray, np.ndarray]], t: np.ndarray, y: np.ndarray,
            d0: int, grow: np.ndarray, scale: np.ndarray | ScaleFn, hs: list[int],
            settings: DetectSettings) -> tuple[np.ndarray, ...]:
    """Big cells (rows into t, columns), their best horizon, score, and whether strong.

    A cell is big when the excess at some horizon is big and covered; its score is the
    largest over those horizons, the excess in units of the daily scale (at least the
    level floor) times the noise accumulated over that horizon.
    """
    big_any = np.zeros(trends[0][1].shape, dtype=bool)
    for _, big_k in trends:
        big_any |= big_k
    br, bc = np.nonzero(big_any)  # only the few big cells need a noise level
    with np.errstate(invalid="ignore", over="ignore"):
        sc = (scale(t[br] + d0, bc) if callable(scale)
              else scale[np.searchsorted(grow, t[br]), bc])
        sd = np.maximum(sc, level_floor(y[t[br], bc], settings))
        best = np.zeros(br.size, dtype=np.int64)
        best_score = np.zeros(br.size)
        for k, (ex_k, big_k) in enumerate(trends):
            sk = np.where(big_k[br, bc], ex_k[br, bc] / (sd * _noise(hs[k], settings)), 0.0)
            better = np.abs(sk) > np.abs(best_score)
            best = np.where(better, k, best)
            best_score = np.where(better, sk, best_score)
        strong = np.abs(best_score) >= settings.drift_threshold
    return br, bc, best, best_score, strong


def find_drifts(y_cal: np.ndarray, v_cal: np.ndarray, days: np.ndarray,
                scale_cal: np.ndarray | ScaleFn, settings: DetectSettings,
                only_day: int | None = None, past_scale: ScaleFn | None = None) -> Drifts:
    """Drift alarms at observation days (or only at ``only_day``); first day of each episode.

    Every horizon of :func:`all_horizons` is tested; a day is strong when one of them
    has a big excess scoring ``drift_threshold`` or more, and it alarms when none of
    the longest horizon's days before it was strong (one alarm per episode: a first big
    but still weak day does not silence the strong ones after it). ``scale_cal`` is each
    series' daily scale (rows = ``days``), or a function of (day numbers, columns)
    giving it at those cells: only the few cells with a big excess need one, so the
    caller may compute them on demand. With ``only_day``, ``past_scale`` gives the
    scale at earlier days (of the few series strong today); default ``scale_cal``.
    """
    _, b = horizons(settings)
    hs = all_horizons(settings)
    h_max = hs[-1]
    empty = Drifts(*(np.zeros(0) for _ in range(8)))
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
        # today's sums reach back h_max + b days; rows before that contribute 0
        r0 = int(np.clip(t[0] + 1 - h_max - b, 0, g_len))
        dq = np.zeros((g_len, m), dtype=np.int64)
        dq[r0:] = _quantized_changes(y, obs, settings, from_row=r0)
        win = _day_windows(dq, obs, int(t[0]))
    trends = [_trend(win, t, h, b, settings) for h in hs]
    for _, big_k in trends:
        big_k &= obs[t]
    br, bc, best, best_score, strong = _strong(trends, t, y, d0, grow, scale_cal, hs, settings)
    br, bc, best, best_score = br[strong], bc[strong], best[strong], best_score[strong]
    if only_day is None:
        grid = np.zeros((t.size, m), dtype=bool)
        grid[br, bc] = True
        cum = _cumsum0(grid)
        seen = cum[br, bc] - cum[np.clip(br - h_max, 0, None), bc] > 0
    else:
        # the same test on the h_max days before today, for the few series strong today
        seen = np.zeros(br.size, dtype=bool)
        tt = np.arange(max(0, int(t[0]) - h_max), int(t[0]))
        if bc.size and tt.size:
            cols = bc
            dq_c = _quantized_changes(y[:, cols], obs[:, cols], settings)
            win_c = _cumulative_windows(dq_c, obs[:, cols], tt)
            past = [_trend(win_c, tt, h, b, settings) for h in hs]
            for _, big_k in past:
                big_k &= obs[tt][:, cols]
            ps = past_scale or scale_cal
            assert callable(ps)
            _, pc, _, _, p_strong = _strong(past, tt, y[:, cols], d0, grow,
                                            lambda dd, cc: ps(dd, cols[cc]), hs, settings)
            seen[np.unique(pc[p_strong])] = True
    keep = ~seen
    r, c, k = br[keep], bc[keep], best[keep]
    h_r = np.asarray(hs, dtype=np.int64)[k]
    ex_all = np.stack([ex for ex, _ in trends])
    before_rows = np.searchsorted(grow, np.clip(t[r] - h_r, 0, None), side="right") - 1
    onset = onsets(dq, obs, t[r], c, h_r, settings) if r.size else np.zeros(0, dtype=np.int64)
    return Drifts(col=c, day=(t[r] + d0).astype(np.int64), excess=ex_all[k, r, c],
                  score=best_score[keep], before=_last_finite(v_cal, before_rows, c),
                  after=v_cal[np.searchsorted(grow, t[r]), c], horizon=h_r,
                  onset=(onset + d0).astype(np.int64))


#: Onset candidates reach this many days before the horizon that found the drift (a
#: drift is found weeks after it starts, sometimes after more than a horizon) and stop
#: this many days before the alarm, so the new trend has points to be fitted on.
_ONSET_BEFORE = 28
_ONSET_AFTER = 5


def onsets(dq: np.ndarray, obs: np.ndarray, rows: np.ndarray, cols: np.ndarray,
           h_rows: np.ndarray, settings: DetectSettings) -> np.ndarray:
    """The grid row where each alarm's new trend began: a change-point estimate.

    The alarm day is when a drift became knowable, weeks after it started; dating it
    there (or at the start of its horizon) puts a correct detection outside the event.
    So the jump-free log path over the baseline and the horizon is fitted with a
    broken line (level, slope, and a change of slope at the onset), and the onset
    with the least squared error is taken. Only the alarm's own past is read (rows
    up to the alarm, back to the start of its baseline), so the estimate is causal
    and the same in a daily run as in a batch. Few alarms: a loop of small solves.
    """
    _, b = horizons(settings)
    out = np.asarray(rows, dtype=np.int64) - np.asarray(h_rows, dtype=np.int64) + 1
    for k, (t, c, h) in enumerate(zip(rows.tolist(), cols.tolist(), h_rows.tolist(),
                                      strict=True)):
        lo = max(0, t - h - b + 1)  # rows a daily run has exactly as a batch does
        seen = obs[lo:t + 1, c]
        s = np.flatnonzero(seen).astype(np.float64)
        if s.size < 8:
            continue
        y = np.cumsum(dq[lo:t + 1, c])[seen] / _FIX
        taus = np.arange(max(s[2], t - lo - h - _ONSET_BEFORE), t - lo - _ONSET_AFTER + 1,
                         dtype=np.float64)
        if taus.size == 0:
            continue
        hinge = np.maximum(0.0, s[None, :] - taus[:, None])  # (K, n)
        n = float(s.size)
        xtx = np.empty((taus.size, 3, 3))
        xtx[:, 0, 0] = n
        xtx[:, 0, 1] = xtx[:, 1, 0] = s.sum()
        xtx[:, 1, 1] = (s * s).sum()
        xtx[:, 0, 2] = xtx[:, 2, 0] = hinge.sum(axis=1)
        xtx[:, 1, 2] = xtx[:, 2, 1] = hinge @ s
        xtx[:, 2, 2] = (hinge * hinge).sum(axis=1)
        xty = np.empty((taus.size, 3))
        xty[:, 0] = y.sum()
        xty[:, 1] = s @ y
        xty[:, 2] = hinge @ y
        ok = np.abs(np.linalg.det(xtx)) > 1e-9
        if not ok.any():
            continue
        beta = np.linalg.solve(xtx[ok], xty[ok][..., None])[..., 0]
        sse = (y * y).sum() - (beta * xty[ok]).sum(axis=1)
        out[k] = lo + int(taus[ok][int(np.argmin(sse))])
    return out


def _noise(h: int, settings: DetectSettings) -> float:
    """Daily scales accumulated in an excess over horizon ``h``: ``drift_noise_days`` at
    ``drift_days``, growing as the square root of the horizon beyond it."""
    h0, _ = horizons(settings)
    return float(np.sqrt(settings.drift_noise_days * max(1.0, h / h0)))
