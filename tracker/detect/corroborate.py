"""Did another source of the same series see an alert's move? Per (alert, other source).

One provider can be wrong: a scraper breaks, a provider re-maps a company. In 2022
a second provider saw smaller drops (-8% where LinkedIn showed -50%) on the same
days, too small to alert for on their own but unprecedented for that provider, and
that made the story credible. So the question put to another source is not "did it
alert too?" but "did it move the same way, beyond its *own* normal variation, within
a few days of the alert?". Each source is measured against itself, with the
yardstick the detector already uses (:func:`tracker.detect.scale.cell_stats`: the
robust median drift and scale of its day-over-day log changes before the week of
the reference day, floored like the change test for small counts), because providers
differ in level and noise: 8% is a lot for a provider that wobbles by 0.5%.

For an alert dated D (its first anomalous day) and a window of ``days``:

- the *reference* is the source's last observation before D - ``days``;
- every observation in [D - ``days``, D + ``days``] is compared with it: the log
  change minus the source's drift over the gap, in units of its scale times
  sqrt(gap) (noise grows across days), signed the alert's way;
- **agrees** when the largest of those reaches ``z``; otherwise **silent** when the
  source has an observation on or after D (it could have seen the move and did not;
  a move the other way is silent too); otherwise **no data** (nothing near the date,
  or not yet: a provider that reports later is not evidence against the move, nor is
  one with too little history before the date to know its normal variation).

Pure arrays in, states out: the store reads (``tracker.store.ranges``) and the
alert fields (``tracker.corroboration``) are elsewhere.
"""

from __future__ import annotations

import numpy as np

from .matrix import is_real, log_counts, pack, rows_at_or_after
from .scale import cell_stats, changes
from .settings import DetectSettings
from .shifts import level_floor

AGREES, SILENT, NO_DATA = "agrees", "silent", "no data"
STATES: tuple[str, ...] = (AGREES, SILENT, NO_DATA)


def lookback_days(settings: DetectSettings, days: int) -> int:
    """Calendar days before an alert date a source's values are needed for: the
    reference (before the window), its week and the trailing scale window."""
    return max(settings.window, settings.min_history) + days + 14


def judge(alert_day: np.ndarray, direction: np.ndarray, case: np.ndarray, day: np.ndarray,
          value: np.ndarray, settings: DetectSettings, *, days: int, z: float
          ) -> tuple[np.ndarray, np.ndarray]:
    """States (``STATES``) and scores of cases (alert, other source) 0..n-1.

    ``alert_day`` (day numbers, days since 1970-01-01) and ``direction`` (the sign of
    the alert's change: -1 for a drop, +1 for a spike) are per case; ``case``, ``day`` and
    ``value`` are the source's observations, long (any order), from
    :func:`lookback_days` before the alert day through ``days`` after it (later ones
    are ignored). The score is NaN where the state is ``no data``.
    """
    n = alert_day.size
    state = np.full(n, NO_DATA, dtype=object)
    score = np.full(n, np.nan)
    if n == 0 or case.size == 0:
        return state, score
    back = lookback_days(settings, days)
    first = alert_day - back
    rel = day - first[case]
    keep = (rel >= 0) & (rel <= back + days)
    # one calendar column per case, relative days, then packed in observation order
    v_cal = np.full((back + days + 1, n), np.nan)
    v_cal[rel[keep], case[keep]] = value[keep]
    p = pack(log_counts(v_cal), v_cal, np.arange(back + days + 1, dtype=np.int64))
    real = is_real(p.day)
    p.day = np.where(real, p.day + first[None, :], p.day)
    d, g = changes(p)
    cols = np.arange(n)
    start = rows_at_or_after(p.day, cols, alert_day - days)  # first row in the window
    ref = start - 1
    rows = np.arange(p.n)[:, None]
    in_window = real & (rows >= start[None, :])
    after = (in_window & (p.day >= alert_day[None, :])).any(axis=0)
    judged = (ref >= 1) & in_window.any(axis=0)
    c = np.flatnonzero(judged)
    if c.size:
        st = cell_stats(p, d, g, ref[c], c, settings)
        y_ref = p.y[ref[c], c]
        gap = (p.day[:, c] - p.day[ref[c], c][None, :]).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            sd = np.maximum(st.scale[None, :] * np.sqrt(gap), level_floor(y_ref, settings))
            zz = direction[c][None, :] * (p.y[:, c] - y_ref[None, :] - st.mu * gap) / sd
        zz = np.where(in_window[:, c] & np.isfinite(zz), zz, -np.inf)
        best = zz.max(axis=0)
        enough = st.n >= settings.min_history
        state[c] = np.where(~enough, NO_DATA,
                            np.where(best >= z, AGREES, np.where(after[c], SILENT, NO_DATA)))
        score[c] = np.where(state[c] == NO_DATA, np.nan, best)
    return state, score
