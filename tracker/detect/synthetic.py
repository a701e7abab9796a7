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

from dataclasses import dataclass, field

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


# ---------------------------------------------------------------------------
# The evaluation suite (issue 9): one labelled set per failure class, beside the
# general-purpose ``generate`` above (whose output is kept bit-identical: tests pin it).
#
# Every set is a ``Case``: its matrix, one label row per event and one info row per
# series. Labels carry, beyond ``LABEL_COLUMNS``: ``set`` and ``class`` (for slicing),
# ``noise`` (the series' relative day-to-day measurement spread), ``counted`` (False
# for events too small to score, such as platform members moving < 5%: a detection
# there is neither a hit nor a false alarm), ``tolerance_days`` (how far a shift or
# glitch detection may be dated from ``start``) and ``slack_days`` (how long after a
# drift's ``end`` its detection still counts). A drift's ``start`` is its onset, the
# day the trend changes. Series with no label row are quiet.
# ---------------------------------------------------------------------------

SUITE_LABEL_COLUMNS = [*LABEL_COLUMNS, "set", "class", "noise", "counted", "tolerance_days",
                       "slack_days"]
INFO_COLUMNS = ["series", "set", "class", "size", "noise", "cadence", "quiet"]
EVENT_COLUMNS = ["event_id", "set", "kind", "date", "n_members", "n_counted",
                 "median_change_pct", "members"]


@dataclass
class Case:
    """One labelled evaluation set: ``matrix`` (dates x series), ``labels``, ``info``.

    ``events`` lists population events (a platform day hitting many companies at once)
    with their member series, so that a population-event detector can be scored too.
    """

    name: str
    matrix: pd.DataFrame
    labels: pd.DataFrame
    info: pd.DataFrame
    events: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=EVENT_COLUMNS))

    def subset(self, n: int, seed: int = 0) -> Case:
        """The same set on at most ``n`` of its series (a fixed random choice; for slow peers).

        Subsets of one seed are nested, so peers run on different sizes share series.
        """
        cols = list(self.matrix.columns)
        if n >= len(cols):
            return self
        order = np.random.default_rng(seed).permutation(len(cols))  # nested: n < m gives a part
        keep = {cols[i] for i in order[:n]}
        chosen = [c for c in cols if c in keep]
        lab = self.labels[self.labels["series"].isin(keep)].reset_index(drop=True)
        info = self.info[self.info["series"].isin(keep)].reset_index(drop=True)
        return Case(self.name, self.matrix[chosen], lab, info, self.events)


def _names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:05d}/employees/synthetic" for i in range(n)]


def _wobble(rng: np.random.Generator, n_days: int, sigma: np.ndarray) -> np.ndarray:
    """Log measurement noise with a given spread per series: Student t tails, AR for some."""
    m = sigma.size
    df = rng.choice([4.0, 5.0, 8.0, 30.0], m)
    eps = rng.standard_t(df[None, :], size=(n_days, m)) / np.sqrt(df / (df - 2))[None, :]
    eps *= sigma[None, :]
    phi = np.where(rng.random(m) < 0.3, rng.uniform(0.2, 0.6, m), 0.0)
    eps *= np.sqrt(1 - phi ** 2)[None, :]  # the AR process keeps the spread ``sigma``
    for t in range(1, n_days):
        eps[t] += phi * eps[t - 1]
    return eps


def _path(rng: np.random.Generator, n_days: int, size: np.ndarray, rw: float = 0.001
          ) -> np.ndarray:
    """Log level: yearly growth around +4% plus a slow random walk (steps up to ``rw``)."""
    m = size.size
    growth = rng.normal(0.04, 0.12, m) / 365.0
    walk = np.cumsum(rng.normal(0, 1, (n_days, m)) * rng.uniform(0, rw, m)[None, :], axis=0)
    return np.log(size)[None, :] + np.arange(n_days)[:, None] * growth[None, :] + walk


def _observe(rng: np.random.Generator, level: np.ndarray, noise: np.ndarray,
             visible: np.ndarray) -> np.ndarray:
    """Integer counts: the true headcount in whole people, each profile seen with ``visible``.

    A profile is missed on a given day with probability ``1 - visible`` (binomial), so a
    40-person company shows 37-40 on ordinary days while a large one is governed by the
    log noise ``noise`` (scraper and profile churn).
    """
    true = np.round(np.exp(level + noise))
    seen = rng.binomial(true.astype(np.int64), np.clip(visible, 0.0, 1.0)[None, :])
    return seen.astype(np.float64)


def _count_spread(size: np.ndarray, visible: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Relative day-to-day spread of an observed count: binomial thinning plus log noise."""
    return np.sqrt(sigma ** 2 + (1 - visible) / (visible * np.maximum(size, 1.0)))


def _sprinkle(rng: np.random.Generator, values: np.ndarray, protect: np.ndarray,
              missing: float = 0.02, outage_prob: float = 0.15) -> None:
    """Random missing days, a week-long outage for some series, stale stretches (in place)."""
    n, m = values.shape
    _stale(rng, values, protect)
    hole = rng.random((n, m)) < rng.uniform(0, missing, m)[None, :]
    for c in np.flatnonzero(rng.random(m) < outage_prob):
        t = int(rng.integers(20, n - 12))
        hole[t: t + int(rng.integers(5, 11)), c] = True
    values[hole & ~protect] = np.nan


def _frame_labels(rows: list[dict], matrix: pd.DataFrame, set_name: str) -> pd.DataFrame:
    lab = pd.DataFrame(rows, columns=[c for c in SUITE_LABEL_COLUMNS if c != "set"])
    lab["set"] = set_name
    lab = _first_observed(lab, matrix)
    lab["counted"] = lab["counted"].astype(bool)
    return lab[SUITE_LABEL_COLUMNS]


def _info(names: list[str], set_name: str, classes: list[str], values: np.ndarray,
          noise: np.ndarray, cadence: str, quiet: np.ndarray) -> pd.DataFrame:
    with np.errstate(all="ignore"):
        size = np.nanmedian(values, axis=0)
    return pd.DataFrame({"series": names, "set": set_name, "class": classes, "size": size,
                         "noise": noise, "cadence": cadence, "quiet": quiet},
                        columns=INFO_COLUMNS)


def _shift_row(name: str, kind: str, t: int, frac: float, level: float, shape: str,
               cls: str, noise: float, counted: bool = True) -> dict:
    return dict(series=name, kind=kind, start=t, end=t, size_pct=100 * frac, level=level,
                shape=shape, cadence="daily", **{"class": cls}, noise=noise, counted=counted,
                tolerance_days=3, slack_days=0)


def generate_moderate(n_series: int = 600, n_days: int = 730, seed: int = 0, *,
                      sizes: tuple[float, float] = (500, 100_000),
                      noise_levels: tuple[float, ...] = (0.005, 0.01, 0.015),
                      event_fraction: float = 0.6, glitch_fraction: float = 0.15,
                      gap_fraction: float = 0.3, start: str = "2021-01-01") -> Case:
    """Class 1: 5-10% drops and rises at companies of 500-100,000 with 0.5-1.5% daily wobble.

    ``gap_fraction`` of the moves come right after a one-day gap (the day before is
    missing). ``glitch_fraction`` of the series instead get a glitch that comes back
    after 1-3 days: a moderate dip of 5-12% (the hard case to tell from a purge), a
    partial page (40-80% of the count), a zero or a tenfold. The rest are quiet.
    """
    rng = np.random.default_rng(seed)
    idx = pd.date_range(start, periods=n_days, freq="D")
    names = _names("mod", n_series)
    size = np.exp(rng.uniform(np.log(sizes[0]), np.log(sizes[1]), n_series))
    sigma = rng.choice(np.asarray(noise_levels), n_series)
    level = _path(rng, n_days, size)
    noise = _wobble(rng, n_days, sigma)
    mult = np.ones((n_days, n_series))
    protect = np.zeros((n_days, n_series), dtype=bool)
    gap = np.zeros((n_days, n_series), dtype=bool)
    u = rng.random(n_series)
    rows: list[dict] = []
    classes = ["quiet"] * n_series
    for c in range(n_series):
        t = int(rng.integers(180, n_days - 45))
        if u[c] < event_fraction:
            kind = "drop" if rng.random() < 0.7 else "spike"
            frac = rng.uniform(0.05, 0.10)
            frac = -frac if kind == "drop" else frac
            after_gap = rng.random() < gap_fraction
            before = float(np.exp(level[t - 1, c]))
            level[t:, c] += np.log1p(frac)
            shape = ("purge" if kind == "drop" else "surge") + ("_after_gap" if after_gap else "")
            cls = "moderate_after_gap" if after_gap else "moderate"
            if after_gap:
                gap[t - 1, c] = True
            rows.append(_shift_row(names[c], kind, t, frac, before, shape, cls, sigma[c]))
            classes[c] = cls
        elif u[c] < event_fraction + glitch_fraction:
            dur = int(rng.integers(1, 4))
            shape = str(rng.choice(["dip", "partial", "zero", "tenfold"], p=[0.5, 0.3, 0.1, 0.1]))
            vals = {"dip": rng.uniform(0.88, 0.95, dur), "partial": rng.uniform(0.4, 0.8, dur),
                    "zero": np.zeros(dur), "tenfold": np.full(dur, 10.0)}[shape]
            mult[t: t + dur, c] = vals
            rows.append(dict(series=names[c], kind="glitch", start=t, end=t + dur - 1,
                             size_pct=100 * (vals[0] - 1), level=float(np.exp(level[t, c])),
                             shape=shape, cadence="daily", **{"class": "glitch"},
                             noise=sigma[c], counted=True, tolerance_days=3, slack_days=0))
            classes[c] = "glitch"
    for r in rows:
        c = names.index(r["series"])
        protect[max(0, r["start"] - 9): r["end"] + 4, c] = True
    values = np.round(np.exp(level + noise) * mult)
    _sprinkle(rng, values, protect)
    values[gap] = np.nan
    matrix = pd.DataFrame(values, index=idx, columns=names)
    quiet = np.array([k == "quiet" for k in classes])
    return Case("moderate", matrix, _frame_labels(rows, matrix, "moderate"),
                _info(names, "moderate", classes, values, sigma, "daily", quiet))


def generate_small(n_series: int = 400, n_days: int = 730, seed: int = 0, *,
                   sizes: tuple[float, float] = (40, 300), event_fraction: float = 0.55,
                   start: str = "2021-01-01") -> Case:
    """Class 2: companies of 40-300 people, counted in whole people.

    Each profile is seen on a given day with probability 0.95-0.99 (binomial), so a
    40-person company reads 37-40 on ordinary days: 40 -> 38 is noise. Event series
    get a purge of 20-50% (80%) or a hiring wave of 20-50% (20%); the rest are quiet.
    """
    rng = np.random.default_rng(seed)
    idx = pd.date_range(start, periods=n_days, freq="D")
    names = _names("small", n_series)
    size = np.exp(rng.uniform(np.log(sizes[0]), np.log(sizes[1]), n_series))
    visible = rng.uniform(0.95, 0.99, n_series)
    sigma = rng.uniform(0.0, 0.003, n_series)
    level = _path(rng, n_days, size, rw=0.0005)
    noise = _wobble(rng, n_days, sigma)
    spread = _count_spread(size, visible, sigma)
    rows: list[dict] = []
    classes = ["quiet"] * n_series
    for c in np.flatnonzero(rng.random(n_series) < event_fraction):
        t = int(rng.integers(180, n_days - 45))
        kind = "drop" if rng.random() < 0.8 else "spike"
        frac = rng.uniform(0.2, 0.5) * (-1 if kind == "drop" else 1)
        before = float(np.exp(level[t - 1, c])) * visible[c]
        level[t:, c] += np.log1p(frac)
        classes[c] = "small_purge" if kind == "drop" else "small_surge"
        rows.append(_shift_row(names[c], kind, t, frac, before,
                               "purge" if kind == "drop" else "surge", classes[c], spread[c]))
    protect = np.zeros((n_days, n_series), dtype=bool)
    for r in rows:
        protect[max(0, r["start"] - 9): r["end"] + 4, names.index(r["series"])] = True
    values = _observe(rng, level, noise, visible)
    _sprinkle(rng, values, protect)
    matrix = pd.DataFrame(values, index=idx, columns=names)
    quiet = np.array([k == "quiet" for k in classes])
    return Case("small", matrix, _frame_labels(rows, matrix, "small"),
                _info(names, "small", classes, values, spread, "daily", quiet))


def generate_drifts(n_series: int = 400, n_days: int = 730, seed: int = 0, *,
                    sizes: tuple[float, float] = (500, 500_000),
                    noise_levels: tuple[float, ...] = (0.003, 0.006, 0.01),
                    event_fraction: float = 0.7, start: str = "2021-01-01") -> Case:
    """Class 3: trend changes with a known onset (``start``: the day the trend changes).

    Two shapes: ``ramp`` (the trend bends for 30-120 days by 15-40% in all, then the
    old trend resumes; ``end`` is the ramp's last day) and ``kink`` (a new trend of
    8-25% per 90 days that lasts to the end of the history; ``end`` is onset + 90).
    Quiet series keep their own steady growth and slow random walk.
    """
    rng = np.random.default_rng(seed)
    idx = pd.date_range(start, periods=n_days, freq="D")
    names = _names("drift", n_series)
    size = np.exp(rng.uniform(np.log(sizes[0]), np.log(sizes[1]), n_series))
    sigma = rng.choice(np.asarray(noise_levels), n_series)
    level = _path(rng, n_days, size, rw=0.0007)
    noise = _wobble(rng, n_days, sigma)
    rows: list[dict] = []
    classes = ["quiet"] * n_series
    days = np.arange(n_days)
    for c in np.flatnonzero(rng.random(n_series) < event_fraction):
        sign = rng.choice([-1.0, 1.0])
        if rng.random() < 0.6:
            span = int(rng.integers(30, 121))
            t = int(rng.integers(200, n_days - span - 30))
            total = sign * rng.uniform(0.15, 0.4)
            level[:, c] += np.clip((days - t) / span, 0, 1) * np.log1p(total)
            shape, end = "ramp", t + span
        else:
            t = int(rng.integers(200, n_days - 150))
            total = sign * rng.uniform(0.08, 0.25)
            level[:, c] += np.clip(days - t, 0, None) / 90 * np.log1p(total)
            shape, end = "kink", t + 90
        classes[c] = f"drift_{shape}"
        rows.append(dict(series=names[c], kind="drift_up" if total > 0 else "drift_down",
                         start=t, end=end, size_pct=100 * total, level=float(np.exp(level[t, c])),
                         shape=shape, cadence="daily", **{"class": classes[c]}, noise=sigma[c],
                         counted=True, tolerance_days=3, slack_days=60))
    protect = np.zeros((n_days, n_series), dtype=bool)
    for r in rows:
        protect[max(0, r["start"] - 3): r["start"] + 4, names.index(r["series"])] = True
    values = np.round(np.exp(level + noise))
    _sprinkle(rng, values, protect)
    matrix = pd.DataFrame(values, index=idx, columns=names)
    quiet = np.array([k == "quiet" for k in classes])
    return Case("drift", matrix, _frame_labels(rows, matrix, "drift"),
                _info(names, "drift", classes, values, sigma, "daily", quiet))


def generate_platform(n_series: int = 1000, n_days: int = 730, seed: int = 0, *,
                      n_events: int = 2, member_share: float = 0.25,
                      drop_pct: tuple[float, float] = (3.0, 12.0), counted_pct: float = 5.0,
                      start: str = "2021-01-01") -> Case:
    """Class 4: platform days. On each, ``member_share`` of the companies drop 3-12%.

    Companies span 40 to 1,000,000 people; the large ones wobble by 0.3-1.5% a day,
    the small ones are counted in whole people. Every member is labelled (class
    ``platform``, shape ``platform``); only members moving at least ``counted_pct``
    are ``counted`` for the per-series scores, the rest are neither hits nor false
    alarms. ``events`` lists each platform day with its members, for a population
    detector. Non-members are quiet.
    """
    rng = np.random.default_rng(seed)
    idx = pd.date_range(start, periods=n_days, freq="D")
    names = _names("plat", n_series)
    size = np.exp(rng.uniform(np.log(40), np.log(1_000_000), n_series))
    sigma = np.where(size >= 1000, rng.uniform(0.003, 0.015, n_series),
                     rng.uniform(0.0, 0.003, n_series))
    visible = np.where(size >= 1000, 1.0, rng.uniform(0.95, 0.99, n_series))
    level = _path(rng, n_days, size)
    noise = _wobble(rng, n_days, sigma)
    spread = _count_spread(size, visible, sigma)
    slots = np.linspace(300, n_days - 60, n_events).astype(int) if n_events else []
    rows: list[dict] = []
    events = []
    member = np.zeros(n_series, dtype=bool)
    for t in slots:
        t = int(t + rng.integers(-20, 21))
        hit = np.flatnonzero(rng.random(n_series) < member_share)
        fracs = -rng.uniform(drop_pct[0], drop_pct[1], hit.size) / 100
        for c, frac in zip(hit, fracs, strict=True):
            before = float(np.exp(level[t - 1, c])) * visible[c]
            level[t:, c] += np.log1p(frac)
            rows.append(_shift_row(names[c], "drop", t, frac, before, "platform", "platform",
                                   spread[c], counted=bool(-100 * frac >= counted_pct)))
        member[hit] = True
        events.append(dict(event_id=f"platform-{idx[t]:%Y-%m-%d}", set="platform", kind="drop",
                           date=idx[t], n_members=int(hit.size),
                           n_counted=int((-100 * fracs >= counted_pct).sum()),
                           median_change_pct=float(100 * np.median(fracs)) if hit.size else 0.0,
                           members=[names[c] for c in hit]))
    protect = np.zeros((n_days, n_series), dtype=bool)
    for r in rows:
        protect[max(0, r["start"] - 9): r["end"] + 4, names.index(r["series"])] = True
    values = _observe(rng, level, noise, visible)
    _sprinkle(rng, values, protect)
    matrix = pd.DataFrame(values, index=idx, columns=names)
    classes = ["platform" if m else "quiet" for m in member]
    return Case("platform", matrix, _frame_labels(rows, matrix, "platform"),
                _info(names, "platform", classes, values, spread, "daily", ~member),
                pd.DataFrame(events, columns=EVENT_COLUMNS))


def generate_short(n_monthly: int = 300, n_annual: int = 200, seed: int = 0, *,
                   end: str = "2025-12-01", event_fraction: float = 0.6) -> Case:
    """Class 5: monthly provider histories (24-60 points) and annual series (6-15 points).

    Observed on the first of the month (monthly) or on 1 January (annual), all ending
    at ``end``; the matrix index is every month start of the last 15 years. Event
    series get one level shift of 15-40% (monthly; e.g. 25% after two years) or 20-50%
    (annual), or a trend change at a known onset (the yearly growth changes by 20-40
    points and keeps its new rate). Quiet series grow steadily (-5% to +25% a year)
    with 1-3% (monthly) or 2-5% (annual) noise and, now and then, a one-point blip of
    3-6% that comes back. A shift may be dated one observation off (``tolerance_days``);
    a trend change counts if detected within a year (monthly) or three (annual) after
    its ``end``.
    """
    rng = np.random.default_rng(seed)
    last = pd.Timestamp(end)
    idx = pd.date_range(last - pd.DateOffset(years=15), last, freq="MS")
    names = _names("mon", n_monthly) + _names("ann", n_annual)
    n = len(names)
    values = np.full((len(idx), n), np.nan)
    rows: list[dict] = []
    classes, noise_col, cadence = [], np.zeros(n), []
    for c, name in enumerate(names):
        monthly = c < n_monthly
        if monthly:
            k = int(rng.integers(24, 61))
            dates = idx[-k:]
            step = 1 / 12
            sd = rng.uniform(0.01, 0.03)
        else:
            k = int(rng.integers(6, 16))
            dates = pd.DatetimeIndex([d for d in idx if d.month == 1][-k:])
            step = 1.0
            sd = rng.uniform(0.02, 0.05)
        size = float(np.exp(rng.uniform(np.log(50), np.log(500_000))))
        years = np.arange(k) * step
        growth = rng.uniform(-0.05, 0.25)
        y = np.log(size) + np.log1p(growth) * years
        eps = rng.standard_t(5, k) / np.sqrt(5 / 3) * sd
        cls = "quiet"
        if rng.random() < event_fraction:
            if rng.random() < 0.55:
                lo = min(max(3, k // 3), k - 3) if not monthly else max(12, k // 3)
                j = int(rng.integers(lo, k - (3 if monthly else 1)))
                frac = rng.uniform(0.15, 0.4) if monthly else rng.uniform(0.2, 0.5)
                kind = "drop" if rng.random() < 0.65 else "spike"
                frac = -frac if kind == "drop" else frac
                before = float(np.exp(y[j - 1]))
                y[j:] += np.log1p(frac)
                cls = ("monthly" if monthly else "annual") + "_shift"
                rows.append(dict(series=name, kind=kind, start=int(idx.get_loc(dates[j])),
                                 end=int(idx.get_loc(dates[j])), size_pct=100 * frac,
                                 level=before, shape="purge" if kind == "drop" else "surge",
                                 cadence="monthly" if monthly else "annual",
                                 **{"class": cls}, noise=sd, counted=True,
                                 tolerance_days=31 if monthly else 366, slack_days=0))
            else:
                lo = max(12, k // 3) if monthly else max(3, k // 3)
                j = int(rng.integers(lo, k - (6 if monthly else 3) + 1))
                change = rng.uniform(0.2, 0.4) * rng.choice([-1.0, 1.0])
                new = max(growth + change, -0.5)
                y += np.clip(years - years[j], 0, None) * (np.log1p(new) - np.log1p(growth))
                cls = ("monthly" if monthly else "annual") + "_trend"
                end_j = min(k - 1, j + (6 if monthly else 2))
                rows.append(dict(series=name, kind="drift_up" if new > growth else "drift_down",
                                 start=int(idx.get_loc(dates[j])),
                                 end=int(idx.get_loc(dates[end_j])), size_pct=100 * (new - growth),
                                 level=float(np.exp(y[j])), shape="kink",
                                 cadence="monthly" if monthly else "annual",
                                 **{"class": cls}, noise=sd, counted=True,
                                 tolerance_days=31 if monthly else 366,
                                 slack_days=365 if monthly else 3 * 366))
        else:
            blips = rng.random(k) < (0.05 if monthly else 0.08)
            eps += np.where(blips, rng.uniform(0.03, 0.06, k) * rng.choice([-1, 1], k), 0.0)
        col = np.round(np.exp(y + eps))
        values[[idx.get_loc(d) for d in dates], c] = col
        classes.append(cls)
        noise_col[c] = sd
        cadence.append("monthly" if monthly else "annual")
    matrix = pd.DataFrame(values, index=idx, columns=names)
    lab = _frame_labels(rows, matrix, "short")
    info = _info(names, "short", classes, values, noise_col, "", np.array(
        [k == "quiet" for k in classes]))
    info["cadence"] = cadence
    return Case("short", matrix, lab, info)


def generate_quiet(n_series: int = 600, n_days: int = 730, seed: int = 0, *,
                   noise_levels: tuple[float, ...] = (0.002, 0.005, 0.01, 0.02),
                   weekly_fraction: float = 0.15, start: str = "2021-01-01") -> Case:
    """Class 6: quiet series of every size (20 to 2,000,000) and noise level, no event.

    Companies under 1,000 people are counted in whole people (binomial visibility);
    the rest carry log noise at one of ``noise_levels``; some have a weekday pattern
    (weekend dips of 0.5-4%), missing days, outages and stale stretches. Every alert
    here is false: the set measures false alerts per 10,000 quiet company-days.
    """
    rng = np.random.default_rng(seed)
    idx = pd.date_range(start, periods=n_days, freq="D")
    names = _names("quiet", n_series)
    size = np.exp(rng.uniform(np.log(20), np.log(2_000_000), n_series))
    small = size < 1000
    sigma = np.where(small, rng.uniform(0.0, 0.003, n_series),
                     rng.choice(np.asarray(noise_levels), n_series))
    visible = np.where(small, rng.uniform(0.95, 0.99, n_series), 1.0)
    level = _path(rng, n_days, size)
    noise = _wobble(rng, n_days, sigma)
    weekly = rng.random(n_series) < weekly_fraction
    wd = idx.day_of_week.to_numpy()
    amp = rng.uniform(0.005, 0.04, n_series)
    noise += np.where(weekly[None, :], np.where(wd[:, None] >= 5, -amp[None, :], 0.0), 0.0)
    values = _observe(rng, level, noise, visible)
    _sprinkle(rng, values, np.zeros(values.shape, dtype=bool))
    matrix = pd.DataFrame(values, index=idx, columns=names)
    spread = _count_spread(size, visible, sigma)
    return Case("quiet", matrix, _frame_labels([], matrix, "quiet"),
                _info(names, "quiet", ["quiet"] * n_series, values, spread, "daily",
                      np.ones(n_series, dtype=bool)))


def legacy_case(n_series: int = 1500, n_days: int = 730, seed: int = 12345) -> Case:
    """The original mixed benchmark (``generate``) as a Case: sizes 20-2M, all kinds."""
    matrix, lab = generate(n_series, n_days, seed=seed)
    lab = lab.copy()
    lab["set"] = "legacy"
    lab["class"] = lab["kind"].where(lab["cadence"] == "daily", "monthly_" + lab["kind"])
    lab["noise"] = np.nan
    lab["counted"] = True
    lab["tolerance_days"] = 3
    lab["slack_days"] = 60
    quiet = ~matrix.columns.isin(set(lab["series"]))
    classes = np.where(quiet, "quiet", "event").tolist()
    return Case("legacy", matrix, lab[SUITE_LABEL_COLUMNS],
                _info(list(matrix.columns), "legacy", classes, matrix.to_numpy(),
                      np.full(matrix.shape[1], np.nan), "daily", quiet))


#: Series per set: (quick, full). Quick runs in seconds; full gives tighter figures.
SUITE_SIZES = {"legacy": (300, 1500), "moderate": (400, 1500), "small": (300, 1000),
               "drift": (250, 800), "platform": (600, 2000), "short": ((150, 100), (600, 400)),
               "quiet": (300, 1500)}


def suite(seed: int = 12345, quick: bool = False, n_days: int = 730) -> list[Case]:
    """Every evaluation set, from one seed (each set gets its own derived seed)."""
    q = 0 if quick else 1
    z = SUITE_SIZES
    ss = np.random.SeedSequence(seed).spawn(7)
    s = [int(x.generate_state(1)[0]) for x in ss]
    mon, ann = z["short"][q]
    return [
        legacy_case(z["legacy"][q], n_days, seed=seed),
        generate_moderate(z["moderate"][q], n_days, seed=s[1]),
        generate_small(z["small"][q], n_days, seed=s[2]),
        generate_drifts(z["drift"][q], n_days, seed=s[3]),
        generate_platform(z["platform"][q], n_days, seed=s[4]),
        generate_short(mon, ann, seed=s[5]),
        generate_quiet(z["quiet"][q], n_days, seed=s[6]),
    ]


def with_purge(matrix: pd.DataFrame, day: int, seed: int = 0, *, share: float = 0.25,
               drop_pct: tuple[float, float] = (3.0, 12.0)) -> tuple[pd.DataFrame, list]:
    """A copy of ``matrix`` where ``share`` of the series drop by ``drop_pct`` percent
    from row ``day`` on (counts stay whole), and the names of those series.

    Laid over :func:`generate_quiet` it is a platform purge among series of every noise
    level, where a 3% drop of a company wobbling by 2% a day is invisible alone: what
    a population test must still find.
    """
    rng = np.random.default_rng(seed)
    out = matrix.copy()
    hit = np.flatnonzero(rng.random(out.shape[1]) < share)
    keep = 1 - rng.uniform(drop_pct[0], drop_pct[1], hit.size) / 100
    block = out.iloc[day:, hit].to_numpy()
    out.iloc[day:, hit] = np.round(block * keep[None, :])
    return out, [out.columns[c] for c in hit]
