"""Each series' normal day-over-day variation, from a trailing window.

Statistics are recomputed once per calendar week (anchored on Mondays) from the
observations strictly before that Monday, not once per day: a robust median/MAD on
every row costs ~3 s per 10,000 x 730 matrix, the weekly anchor about a seventh of
that, and a scale does not need to move daily. Anchoring on absolute weeks rather
than on row positions keeps the numbers identical whether a run starts at the
beginning of history or a few months back (what makes detect_day exact).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .matrix import Packed, is_real, rows_at_or_after, week_start
from .settings import DetectSettings

_Q50_NORMAL = 0.6744897501960817
_Q80_NORMAL = 1.2815515655446004
_Q90_NORMAL = 1.6448536269514722
_CHUNK_ELEMENTS = 6_000_000


@dataclass
class RowStats:
    """Per packed row: robust drift per day ``mu``, scale per sqrt(day), ``n`` changes seen.

    ``scale`` is what the change test uses (the recent scale where it is larger);
    ``long_scale`` the ``window`` scale alone, the steadier yardstick for drift.
    """

    mu: np.ndarray
    scale: np.ndarray
    n: np.ndarray
    long_scale: np.ndarray


def changes(p: Packed) -> tuple[np.ndarray, np.ndarray]:
    """Log change from the previous observation and the gap in days it spans."""
    d = np.full_like(p.y, np.nan)
    d[1:] = p.y[1:] - p.y[:-1]
    g = np.ones(p.day.shape, dtype=np.float64)
    g[1:] = (p.day[1:] - p.day[:-1]).astype(np.float64)
    g[~np.isfinite(d)] = np.nan
    return d, g


def row_stats(p: Packed, d: np.ndarray, g: np.ndarray, settings: DetectSettings,
              from_row: int = 1, need: np.ndarray | None = None) -> RowStats:
    """Robust location and scale for every row >= ``from_row`` (NaN above it).

    With ``need`` (a boolean mask like ``p.y``) only those cells get statistics (NaN
    and 0 elsewhere): the change test needs them only where a change is big enough
    to matter at all, which spares most of the work on quiet series.
    """
    n_rows, m = p.y.shape
    mu = np.full((n_rows, m), np.nan)
    sc = np.full((n_rows, m), np.nan)
    nh = np.zeros((n_rows, m), dtype=np.int64)
    lsc = np.full((n_rows, m), np.nan)
    if n_rows <= from_row or m == 0:
        return RowStats(mu, sc, nh, lsc)
    want = is_real(p.day[from_row:])
    if need is not None:
        want &= need[from_row:]
    r, c = np.nonzero(want)
    r += from_row
    cells = cell_stats(p, d, g, r, c, settings)
    mu[r, c] = cells.mu
    sc[r, c] = cells.scale
    nh[r, c] = cells.n
    lsc[r, c] = cells.long_scale
    return RowStats(mu, sc, nh, lsc)


def cell_stats(p: Packed, d: np.ndarray, g: np.ndarray, rows: np.ndarray, cols: np.ndarray,
               settings: DetectSettings) -> RowStats:
    """:func:`row_stats` at the real cells (rows[k] >= 1, cols[k]) only, as flat arrays.

    Cells of one series in the same week share their statistics (computed once).
    """
    if rows.size == 0:
        z = np.zeros(0)
        return RowStats(z, z, np.zeros(0, dtype=np.int64), z)
    anchor = week_start(p.day[rows, cols])
    a0 = int(anchor.min())
    pairs, inverse = np.unique(cols * np.int64(2**32) + (anchor - a0), return_inverse=True)
    a_mu, a_sc, a_n, a_lsc = _anchor_stats(p, d, g, pairs % np.int64(2**32) + a0,
                                           pairs // np.int64(2**32), settings)
    return RowStats(a_mu[inverse], a_sc[inverse], a_n[inverse], a_lsc[inverse])


def _anchor_stats(p: Packed, d: np.ndarray, g: np.ndarray, anchors: np.ndarray,
                  cols: np.ndarray, settings: DetectSettings
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Median drift and robust scales (test, long) of column ``cols[k]``'s changes before
    the Monday ``anchors[k]``, for every k.

    The scale is the largest of MAD/0.674, q80/1.28 and q90/1.64 of absolute
    deviations. q80 backs up the MAD because step-like counts (most days unchanged)
    have a MAD of 0 although they clearly vary; q90 widens the scale of heavy-tailed
    series (where a 5-sigma day is not rare) and still ignores the two or three wild
    days a glitch and a shift leave in a 60-day window. Noise levels change over time
    and a 60-day window lags a rise, so the last ``short_window`` deviations give a
    recent scale (max of MAD/0.674 and q80/1.28, robust to the two wild days of a
    glitch) that replaces the long one where larger. Windows are gathered from a
    transposed float32 copy so each one is contiguous: this is the hot loop.
    """
    ucols, cols = np.unique(cols, return_inverse=True)  # work on the columns involved only
    if ucols.size < p.y.shape[1]:
        day, d, g = p.day[:, ucols], d[:, ucols], g[:, ucols]
    else:
        day = p.day
    n_rows, m = day.shape
    w = max(settings.window, settings.min_history)
    k_end = rows_at_or_after(day, cols, anchors)
    k_lo = rows_at_or_after(day, cols, anchors - settings.window)
    k_lo = np.maximum(np.minimum(k_lo, k_end - settings.min_history), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate_t = np.full((m, n_rows + w), np.nan, dtype=np.float32)
        rate_t[:, w:] = (d / g).T
        root_t = np.ones((m, n_rows + w), dtype=np.float32)
        root_t[:, w:] = np.sqrt(np.nan_to_num(g, nan=1.0)).T
    k = anchors.size
    out_mu = np.full(k, np.nan)
    out_sc = np.full(k, np.nan)
    out_n = np.zeros(k, dtype=np.int64)
    out_lsc = np.full(k, np.nan)
    ws = min(settings.short_window, w)
    step = max(1, _CHUNK_ELEMENTS // w)
    pos = np.arange(w)[None, :]
    rate_v = np.lib.stride_tricks.sliding_window_view(rate_t, w, axis=1)
    root_v = np.lib.stride_tricks.sliding_window_view(root_t, w, axis=1)
    for k0 in range(0, k, step):
        sl = slice(k0, min(k, k0 + step))
        first = k_end[sl]  # window rows [first - w, first) in shifted coordinates
        r = rate_v[cols[sl], first]
        q = root_v[cols[sl], first]
        keep = pos >= (k_lo[sl] - first + w)[:, None]
        r = np.where(keep, r, np.float32(np.nan))
        cnt = np.isfinite(r).sum(axis=-1)
        rs = np.sort(r, axis=-1)
        med = _quantile_sorted_last(rs, cnt, 0.5)
        dev = np.abs(r - med.astype(np.float32)[:, None]) * q
        ds = np.sort(dev, axis=-1)
        scale = np.maximum(np.maximum(_quantile_sorted_last(ds, cnt, 0.5) / _Q50_NORMAL,
                                      _quantile_sorted_last(ds, cnt, 0.8) / _Q80_NORMAL),
                           _quantile_sorted_last(ds, cnt, 0.9) / _Q90_NORMAL)
        out_lsc[sl] = scale
        if ws:
            recent = dev[:, w - ws:]
            n_rec = np.isfinite(recent).sum(axis=-1)
            rs = np.sort(recent, axis=-1)
            short = np.maximum(_quantile_sorted_last(rs, n_rec, 0.5) / _Q50_NORMAL,
                               _quantile_sorted_last(rs, n_rec, 0.8) / _Q80_NORMAL)
            scale = np.where(n_rec >= 2 * ws // 3, np.fmax(scale, short), scale)
        out_mu[sl] = med
        out_sc[sl] = scale
        out_n[sl] = cnt
    return out_mu, out_sc, out_n, out_lsc


def _quantile_sorted_last(s: np.ndarray, n: np.ndarray, q: float) -> np.ndarray:
    """Linear-interpolated quantile of windows sorted along the last axis, NaN at the end."""
    pos = q * np.maximum(n - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
    a = np.take_along_axis(s, lo[..., None], axis=-1)[..., 0].astype(np.float64)
    b = np.take_along_axis(s, hi[..., None], axis=-1)[..., 0].astype(np.float64)
    out = a + (b - a) * (pos - lo)
    return np.where(n > 0, out, np.nan)
