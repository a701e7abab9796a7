"""Labelled synthetic headcount histories for measuring the detector.

Realism matters more than convenience: the detector is judged on real series, so
the noise here is deliberately unkind: heavy tails (Student t, 3-30 dof), noise
levels that change over time, persistent (AR) measurement error, stale stretches
where a scraper repeats yesterday's number, integer counts (small companies move
in whole people and stay flat for days), missing days, week-long outages, weekday
patterns, monthly-only provider series. Events: purges, surges, glitches of several
shapes, and drifts. Labels give each event's first observed day.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LABEL_COLUMNS = ["series", "kind", "start", "end", "size_pct", "level", "shape", "cadence"]
GLITCH_SHAPES = ("zero", "tenfold", "partial", "double")


def _noise(rng: np.random.Generator, n_days: int, m: int) -> np.ndarray:
    """Log measurement noise: heavy-tailed, heteroscedastic, sometimes autocorrelated."""
    sigma = np.exp(rng.uniform(np.log(0.0005), np.log(0.008), m))
    df = rng.choice([4.0, 5.0, 8.0, 30.0], m)
    eps = rng.standard_t(df[None, :], size=(n_days, m)) / np.sqrt(df / (df - 2))[None, :]
    vol = np.cumsum(rng.normal(0, 0.08, (n_days, m)), axis=0)
    vol -= np.linspace(0, 1, n_days)[:, None] * vol[-1][None, :]
    eps *= np.exp(np.clip(vol, -1.0, 1.0)) * sigma[None, :]
    phi = np.where(rng.random(m) < 0.3, rng.uniform(0.3, 0.8, m), 0.0)
    out = eps.copy()
    for t in range(1, n_days):
        out[t] += phi * out[t - 1]
    return out


def _trend(rng: np.random.Generator, n_days: int, m: int) -> np.ndarray:
    """Log level path: yearly growth or decline plus a slow random walk."""
    growth = rng.normal(0.04, 0.15, m) / 365.0
    rw = np.cumsum(rng.normal(0, 1, (n_days, m)) * rng.uniform(0, 0.0015, m)[None, :], axis=0)
    return np.arange(n_days)[:, None] * growth[None, :] + rw


def _free_day(rng: np.random.Generator, busy: np.ndarray, lo: int, hi: int,
              span: int) -> int | None:
    if lo >= hi:
        return None
    for _ in range(20):
        t = int(rng.integers(lo, hi))
        if not busy[max(0, t - 25): t + span + 25].any():
            busy[max(0, t - 5): t + span + 5] = True
            return t
    return None


def generate(n_series: int = 300, n_days: int = 730, seed: int = 0, *,
             start: str = "2021-01-01", quiet_fraction: float = 0.5,
             weekly_fraction: float = 0.15, monthly_fraction: float = 0.04,
             missing_rate: tuple[float, float] = (0.0, 0.05), outage_prob: float = 0.3,
             events_per_series: tuple[int, int] = (1, 3)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(matrix, labels): ``n_days`` x ``n_series`` counts and one label row per injected event.

    Series whose labels are empty are "quiet" (no event, only noise): false alerts
    are measured there. ``labels.start`` is the first observed anomalous day.
    """
    rng = np.random.default_rng(seed)
    idx = pd.date_range(start, periods=n_days, freq="D")
    names = [f"co{i:06d}/employees/synthetic" for i in range(n_series)]
    size = np.exp(rng.uniform(np.log(20), np.log(2_000_000), n_series))
    level = np.log(size)[None, :] + _trend(rng, n_days, n_series)
    noise = _noise(rng, n_days, n_series)
    weekly = rng.random(n_series) < weekly_fraction
    wd = idx.day_of_week.to_numpy()
    amp = rng.uniform(0.005, 0.04, n_series)
    pattern = np.where(wd[:, None] >= 5, -amp[None, :], 0.0) + np.where(
        wd[:, None] == 0, -0.3 * amp[None, :], 0.0)
    noise += np.where(weekly[None, :], pattern, 0.0)
    monthly = rng.random(n_series) < monthly_fraction
    quiet = rng.random(n_series) < quiet_fraction
    glitch_mult = np.ones((n_days, n_series))
    protect = np.zeros((n_days, n_series), dtype=bool)
    labels: list[dict] = []
    for c in range(n_series):
        if quiet[c]:
            continue
        busy = np.zeros(n_days + 200, dtype=bool)
        busy[: 100] = True
        for _ in range(int(rng.integers(events_per_series[0], events_per_series[1] + 1))):
            kind = rng.choice(["drop", "spike", "glitch", "drift"], p=[0.4, 0.15, 0.3, 0.15])
            if monthly[c] and kind in ("glitch", "drift"):
                kind = "drop"
            lo_day = min(450, int(0.6 * n_days)) if monthly[c] else 100
            if kind == "drift":
                span = int(rng.integers(30, 121))
                t = _free_day(rng, busy, 100, n_days - span - 10, span + 60)
                if t is None:
                    continue
                total = rng.uniform(0.15, 0.4) * rng.choice([-1, 1])
                ramp = np.clip((np.arange(n_days) - t) / span, 0, 1) * np.log1p(total)
                level[:, c] += ramp
                labels.append(dict(series=names[c], kind="drift_up" if total > 0 else "drift_down",
                                   start=t, end=t + span, size_pct=100 * total,
                                   level=np.exp(level[t, c]), shape="ramp"))
            elif kind == "glitch":
                dur = int(rng.integers(1, 4))
                t = _free_day(rng, busy, 100, n_days - 10, dur)
                if t is None:
                    continue
                shape = str(rng.choice(GLITCH_SHAPES, p=[0.3, 0.2, 0.4, 0.1]))
                mult = {"zero": 0.0, "tenfold": 10.0, "double": 2.0}.get(
                    shape, float(rng.uniform(0.4, 0.8)))
                vals = np.full(dur, mult)
                if shape == "partial":
                    vals = rng.uniform(0.4, 0.8, dur)
                glitch_mult[t: t + dur, c] = vals
                labels.append(dict(series=names[c], kind="glitch", start=t, end=t + dur - 1,
                                   size_pct=100 * (vals[0] - 1), level=np.exp(level[t, c]),
                                   shape=shape))
            else:
                t = _free_day(rng, busy, lo_day, n_days - 5, 30)
                if t is None:
                    continue
                frac = rng.uniform(0.05, 0.6)
                jump = np.log1p(-frac) if kind == "drop" else np.log1p(frac)
                level[t:, c] += jump
                labels.append(dict(series=names[c], kind=str(kind), start=t, end=t,
                                   size_pct=100 * np.expm1(jump), level=np.exp(level[t - 1, c]),
                                   shape="purge" if kind == "drop" else "surge"))
    for lab in labels:
        c = names.index(lab["series"])
        t0 = int(lab["start"])
        protect[max(0, t0 - 9): int(lab["end"]) + 3, c] = True
    values = np.round(np.exp(level + noise) * glitch_mult)
    _stale(rng, values, protect)
    _holes(rng, values, missing_rate, outage_prob, monthly, idx)
    matrix = pd.DataFrame(values, index=idx, columns=names)
    lab = pd.DataFrame(labels, columns=[c for c in LABEL_COLUMNS if c != "cadence"])
    lab["cadence"] = ["monthly" if monthly[names.index(s)] else "daily" for s in lab["series"]]
    lab = _first_observed(lab, matrix)
    return matrix, lab


def _stale(rng: np.random.Generator, values: np.ndarray, protect: np.ndarray) -> None:
    """Scrapers that repeat yesterday's number for a few days (flat stretches).

    Kept off labelled events: a stale stretch over a purge would move its observed day.
    """
    n, m = values.shape
    for c in np.flatnonzero(rng.random(m) < 0.3):
        for t in rng.integers(1, n - 8, int(rng.integers(1, 12))):
            k = int(rng.integers(2, 8))
            if not protect[t: t + k, c].any():
                values[t: t + k, c] = values[t - 1, c]


def _holes(rng: np.random.Generator, values: np.ndarray, rate: tuple[float, float],
           outage_prob: float, monthly: np.ndarray, idx: pd.DatetimeIndex) -> None:
    """Missing days, week-long outages, one platform-wide outage, monthly-only series."""
    n, m = values.shape
    p = rng.uniform(rate[0], rate[1], m)
    values[rng.random((n, m)) < p[None, :]] = np.nan
    for c in np.flatnonzero(rng.random(m) < outage_prob):
        t = int(rng.integers(20, n - 12))
        values[t: t + int(rng.integers(5, 11)), c] = np.nan
    t = int(rng.integers(30, n - 5))
    values[t: t + 3] = np.nan
    values[:, monthly] = np.where((idx.day == 1)[:, None], values[:, monthly], np.nan)


def _first_observed(lab: pd.DataFrame, matrix: pd.DataFrame) -> pd.DataFrame:
    """Turn day offsets into dates, moving each start to the first observed day at or after it."""
    if lab.empty:
        lab["start"] = pd.to_datetime(lab["start"])
        lab["end"] = pd.to_datetime(lab["end"])
        return lab
    obs = matrix.notna().to_numpy()
    starts, ends, keep = [], [], []
    col = {s: i for i, s in enumerate(matrix.columns)}
    for s, t, e, k in zip(lab["series"], lab["start"], lab["end"], lab["kind"], strict=True):
        later = np.flatnonzero(obs[t:, col[s]])
        if later.size == 0 or (k == "glitch" and later[0] + t > e):
            keep.append(False)
            starts.append(matrix.index[0])
            ends.append(matrix.index[0])
            continue
        keep.append(True)
        starts.append(matrix.index[t + later[0]])
        last = t + later[0] if k in ("drop", "spike") else min(int(e), len(matrix.index) - 1)
        ends.append(matrix.index[last])
    lab["start"], lab["end"] = starts, ends
    return lab[np.array(keep, dtype=bool)].reset_index(drop=True)
