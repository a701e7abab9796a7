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
    """Per packed row: robust drift per day ``mu``, scale per sqrt(day) ``scale``, ``n`` changes seen."""

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


def _quantile_sorted(s: np.ndarray, n: np.ndarray, q: float) -> np.ndarray:
    """Linear-interpolated quantile of windows sorted along axis 1 with NaN at the end."""
    pos = q * np.maximum(n - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
    a = np.take_along_axis(s, lo[:, None, :], axis=1)[:, 0, :]
    b = np.take_along_axis(s, hi[:, None, :], axis=1)[:, 0, :]
    out = a + (b - a) * (pos - lo)
    return np.where(n > 0, out, np.nan)


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
    """Median drift and max(MAD, q80)-based scale of the changes before each anchor Monday.

    q80 of absolute deviations backs up the MAD because step-like counts (most days
    unchanged) have a MAD of 0 although they clearly vary; q90 widens the scale of
    heavy-tailed series (where a 5-sigma day is not rare) and still ignores the two
    or three wild days a glitch and a shift leave in a 60-day window.
    """
    n_rows, m = p.y.shape
    w = max(settings.window, settings.min_history)
    k_end = first_row_at_or_after(p.day, np.broadcast_to(anchors[:, None], (anchors.size, m)))
    out_mu = np.full((anchors.size, m), np.nan)
    out_sc = np.full((anchors.size, m), np.nan)
    out_n = np.zeros((anchors.size, m), dtype=np.int64)
    step = max(1, _CHUNK_ELEMENTS // (anchors.size * w))
    offs = np.arange(w)[None, :, None]
    for c0 in range(0, m, step):
        c1 = min(m, c0 + step)
        ke = k_end[:, c0:c1]
        idx = ke[:, None, :] - w + offs
        ok = idx >= 1
        idx = np.clip(idx, 0, n_rows - 1)
        flat = idx.reshape(-1, c1 - c0)
        dw = np.take_along_axis(d[:, c0:c1], flat, axis=0).reshape(idx.shape)
        gw = np.take_along_axis(g[:, c0:c1], flat, axis=0).reshape(idx.shape)
        dayw = np.take_along_axis(p.day[:, c0:c1], flat, axis=0).reshape(idx.shape)
        recent = dayw >= (anchors[:, None, None] - settings.window)
        last_few = idx >= (ke[:, None, :] - settings.min_history)
        ok &= (recent | last_few) & np.isfinite(dw)
        cnt = ok.sum(axis=1)
        rate = np.where(ok, dw / gw, np.nan)
        rs = np.sort(rate, axis=1)
        med = _quantile_sorted(rs, cnt, 0.5)
        dev = np.where(ok, np.abs(dw - med[:, None, :] * gw) / np.sqrt(gw), np.nan)
        ds = np.sort(dev, axis=1)
        scale = np.maximum(np.maximum(_quantile_sorted(ds, cnt, 0.5) / _Q50_NORMAL,
                                      _quantile_sorted(ds, cnt, 0.8) / _Q80_NORMAL),
                           _quantile_sorted(ds, cnt, 0.9) / _Q90_NORMAL)
        out_mu[:, c0:c1] = med
        out_sc[:, c0:c1] = scale
        out_n[:, c0:c1] = cnt
    return out_mu, out_sc, out_n
