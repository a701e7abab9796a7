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

from .matrix import Packed, first_row_at_or_after, is_real, week_start
from .settings import DetectSettings

_Q50_NORMAL = 0.6744897501960817
_Q80_NORMAL = 1.2815515655446004
_Q90_NORMAL = 1.6448536269514722
_CHUNK_ELEMENTS = 6_000_000


@dataclass
class RowStats:
    """Per packed row: robust drift per day ``mu``, scale per sqrt(day), ``n`` changes seen."""

    mu: np.ndarray
    scale: np.ndarray
    n: np.ndarray


def changes(p: Packed) -> tuple[np.ndarray, np.ndarray]:
    """Log change from the previous observation and the gap in days it spans."""
    d = np.full_like(p.y, np.nan)
    d[1:] = p.y[1:] - p.y[:-1]
    g = np.ones(p.day.shape, dtype=np.float64)
    g[1:] = (p.day[1:] - p.day[:-1]).astype(np.float64)
    g[~np.isfinite(d)] = np.nan
    return d, g


def row_stats(p: Packed, d: np.ndarray, g: np.ndarray, settings: DetectSettings,
              from_row: int = 1) -> RowStats:
    """Robust location and scale for every row >= ``from_row`` (NaN above it)."""
    n_rows, m = p.y.shape
    mu = np.full((n_rows, m), np.nan)
    sc = np.full((n_rows, m), np.nan)
    nh = np.zeros((n_rows, m), dtype=np.int64)
    if n_rows <= from_row or m == 0:
        return RowStats(mu, sc, nh)
    row_anchor = week_start(p.day[from_row:])
    real = is_real(p.day[from_row:])
    anchors = np.unique(row_anchor[real])
    if anchors.size == 0:
        return RowStats(mu, sc, nh)
    a_mu, a_sc, a_n = _anchor_stats(p, d, g, anchors, settings)
    aidx = np.searchsorted(anchors, row_anchor)
    aidx = np.minimum(aidx, anchors.size - 1)
    cols = np.broadcast_to(np.arange(m), aidx.shape)
    mu[from_row:] = np.where(real, a_mu[aidx, cols], np.nan)
    sc[from_row:] = np.where(real, a_sc[aidx, cols], np.nan)
    nh[from_row:] = np.where(real, a_n[aidx, cols], 0)
    return RowStats(mu, sc, nh)


def _anchor_stats(p: Packed, d: np.ndarray, g: np.ndarray, anchors: np.ndarray,
                  settings: DetectSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median drift and a robust scale of the changes before each anchor Monday.

    The scale is the largest of MAD/0.674, q80/1.28 and q90/1.64 of absolute
    deviations. q80 backs up the MAD because step-like counts (most days unchanged)
    have a MAD of 0 although they clearly vary; q90 widens the scale of heavy-tailed
    series (where a 5-sigma day is not rare) and still ignores the two or three wild
    days a glitch and a shift leave in a 60-day window. Windows are gathered from a
    transposed float32 copy so each one is contiguous: this is the hot loop.
    """
    n_rows, m = p.y.shape
    w = max(settings.window, settings.min_history)
    k_end = first_row_at_or_after(p.day, np.broadcast_to(anchors[:, None], (anchors.size, m)))
    k_lo = first_row_at_or_after(p.day, np.broadcast_to(anchors[:, None] - settings.window,
                                                        (anchors.size, m)))
    k_lo = np.maximum(np.minimum(k_lo, k_end - settings.min_history), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate_t = np.full((m, n_rows + w), np.nan, dtype=np.float32)
        rate_t[:, w:] = (d / g).T
        root_t = np.ones((m, n_rows + w), dtype=np.float32)
        root_t[:, w:] = np.sqrt(np.nan_to_num(g, nan=1.0)).T
    out_mu = np.full((anchors.size, m), np.nan)
    out_sc = np.full((anchors.size, m), np.nan)
    out_n = np.zeros((anchors.size, m), dtype=np.int64)
    step = max(1, _CHUNK_ELEMENTS // (anchors.size * w))
    pos = np.arange(w)[None, None, :]
    rate_v = np.lib.stride_tricks.sliding_window_view(rate_t, w, axis=1)
    root_v = np.lib.stride_tricks.sliding_window_view(root_t, w, axis=1)
    for c0 in range(0, m, step):
        c1 = min(m, c0 + step)
        cols = np.arange(c0, c1)[:, None]
        first = k_end[:, c0:c1].T  # window rows [first - w, first) in shifted coordinates
        r = rate_v[cols, first]
        q = root_v[cols, first]
        keep = pos >= (k_lo[:, c0:c1].T - first + w)[:, :, None]
        r = np.where(keep, r, np.float32(np.nan))
        cnt = np.isfinite(r).sum(axis=2)
        rs = np.sort(r, axis=2)
        med = _quantile_sorted_last(rs, cnt, 0.5)
        dev = np.abs(r - med.astype(np.float32)[:, :, None]) * q
        ds = np.sort(dev, axis=2)
        scale = np.maximum(np.maximum(_quantile_sorted_last(ds, cnt, 0.5) / _Q50_NORMAL,
                                      _quantile_sorted_last(ds, cnt, 0.8) / _Q80_NORMAL),
                           _quantile_sorted_last(ds, cnt, 0.9) / _Q90_NORMAL)
        out_mu[:, c0:c1] = med.T
        out_sc[:, c0:c1] = scale.T
        out_n[:, c0:c1] = cnt.T
    return out_mu, out_sc, out_n


def _quantile_sorted_last(s: np.ndarray, n: np.ndarray, q: float) -> np.ndarray:
    """Linear-interpolated quantile of windows sorted along the last axis, NaN at the end."""
    pos = q * np.maximum(n - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
    a = np.take_along_axis(s, lo[..., None], axis=-1)[..., 0].astype(np.float64)
    b = np.take_along_axis(s, hi[..., None], axis=-1)[..., 0].astype(np.float64)
    out = a + (b - a) * (pos - lo)
    return np.where(n > 0, out, np.nan)
