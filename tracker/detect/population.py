"""Population events: a day on which an abnormal share of a population's series moved.

A platform purge (LinkedIn, 2022-10-11) takes 3-12% off thousands of companies at
once; most of those moves are too small for any company's own alert. Taken one by
one they are noise, taken together they are the day's story. So each day, per
population (a metric, e.g. ``employees`` or ``employees:security``, and within it
each configured cohort and imported industry), we count the series that moved down
(and up) beyond their *own* normal variation: the change test's robust z-score
(:func:`tracker.detect.shifts.change_test`, with the same weekly adjustment, scale
and small-count floor), however small the move. That share, by count and weighted
by headcount, is compared with its own trailing history (median and robust spread,
never less than a binomial spread, and not below the same weekday's recent median,
so a weekend dip of weekly series is not a Saturday event). A day beyond
``threshold`` opens an event; consecutive days (a purge rolling over two nights)
are one event. Everything is causal: the verdict about day t uses the series'
statistics before t and the shares before t.

Populations under ``min_series`` (the bundled sample has eight companies) get the
strict test: only moves the change test would report alone count and two suffice,
which is the old cross-company event, measured against the same history.

Vectorized over the dates x series matrix; the only Python loop is over
populations and directions (a handful). The scores are made on column chunks (the
detection engine's, forked workers included) and only their column sums
(:class:`Tally`) kept, so memory stays bounded at a million series.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .context import Block
from .engine import _PARALLEL_MIN_CHUNKS, _chunks, _run_chunks
from .matrix import day_numbers, is_real, log_counts
from .population_settings import PopulationSettings
from .scale import row_stats
from .settings import DetectSettings
from .shifts import change_test

SHARE_COLUMNS = ["date", "metric", "cohort", "direction", "n_series", "n_moving", "share",
                 "weighted_share", "expected", "score", "event", "strict"]
EVENT_COLUMNS = ["id", "metric", "cohort", "direction", "first_date", "last_date",
                 "n_series", "n_members", "share", "weighted_share", "peak_share",
                 "expected_share", "score", "median_change_pct"]
MEMBER_COLUMNS = ["event_id", "company", "metric", "source", "date", "change_pct", "score",
                  "value_before"]
DIRECTIONS = (("down", -1.0), ("up", 1.0))
_Q90 = 1.2815515655446004


@dataclass
class Moves:
    """Calendar arrays (``days`` x one series per company and metric): each day's robust
    z-score, raw log change, the count before it, and whether the change test alone
    would call it exceptional. NaN/False where no change was judged that day."""

    days: pd.DatetimeIndex
    keys: pd.DataFrame
    z: np.ndarray
    change: np.ndarray
    before: np.ndarray
    exceptional: np.ndarray


@dataclass(frozen=True)
class Population:
    """Columns of :class:`Moves` tested together; ``cohort`` None is the whole metric."""

    metric: str
    cohort: str | None
    cols: np.ndarray


def primary_columns(keys: pd.DataFrame, counts: np.ndarray) -> np.ndarray:
    """One column per (company, metric): its most observed source.

    A company counted by two sources is one member of a population, not two, and the
    source with the most history has the steadiest scale.
    """
    frame = keys[["company", "metric"]].assign(n=counts, col=np.arange(len(keys)))
    frame = frame.sort_values(["company", "metric", "n", "col"],
                              ascending=[True, True, False, True], kind="stable")
    return np.sort(frame.drop_duplicates(["company", "metric"])["col"].to_numpy())


def moves(matrix: pd.DataFrame, keys: pd.DataFrame, settings: DetectSettings,
          max_gap_days: int = 7, min_move_pct: float = 1.0,
          first_day: pd.Timestamp | None = None) -> Moves:
    """Every series' day-over-day change scored against its own recent variation
    (z is 0 for moves under ``min_move_pct``: they never count).

    ``first_day``: the days before it are history only, not scored (NaN): a daily
    run's window reaches a year back for the series' statistics, but only the last
    months' shares are the baseline of the days it judges.
    """
    values = matrix.to_numpy(dtype=np.float64, na_value=np.nan)
    cols = primary_columns(keys, np.isfinite(values).sum(axis=0))
    return _moves_of(values[:, cols], pd.DatetimeIndex(matrix.index),
                     keys.iloc[cols].reset_index(drop=True), settings, max_gap_days,
                     min_move_pct, first_day)


def _moves_of(values: np.ndarray, index: pd.DatetimeIndex, keys: pd.DataFrame,
              settings: DetectSettings, max_gap_days: int, min_move_pct: float,
              first_day: pd.Timestamp | None) -> Moves:
    """:func:`moves` of the columns ``values`` (one per company and metric already)."""
    days = day_numbers(index)
    n_days, m = values.shape
    out = Moves(index, keys, np.full((n_days, m), np.nan),
                np.full((n_days, m), np.nan), np.full((n_days, m), np.nan),
                np.zeros((n_days, m), dtype=bool))
    if n_days < 2 or m == 0:
        return out
    block = Block(values, days, np.arange(m), settings)
    p = block.packed
    d, g = block.changes
    raw = log_counts(p.value)
    raw_d = np.full_like(raw, np.nan)
    raw_d[1:] = raw[1:] - raw[:-1]
    # Only a move of min_move_pct or more can count, so only those cells need the
    # (costly) robust statistics; the others are judged, and did not move (z = 0).
    scored = np.ones(p.y.shape, dtype=bool) if first_day is None else \
        p.day >= day_numbers(pd.DatetimeIndex([first_day]))[0]
    with np.errstate(invalid="ignore"):
        need = (np.abs(raw_d) >= np.log1p(min_move_pct / 100)) & scored
    st = row_stats(p, d, g, settings, need=need)
    z, exceed, _ = change_test(p, d, g, st, settings)
    ok = np.zeros(p.y.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        ok[1:] = (is_real(p.day[1:]) & np.isfinite(d[1:]) & (g[1:] <= max_gap_days)
                  & np.isfinite(raw_d[1:])
                  & (np.arange(1, p.n)[:, None] >= settings.min_history))
    ok &= ~need | (st.n >= settings.min_history)  # a big move without history: unjudged
    ok &= scored
    # A move back to where the series stood a few days before is a glitch ending (a
    # scrape that failed everywhere and recovered), not a platform move of its own:
    # counting it opened an "up" event the day after every glitch-shaped "down" one.
    back = np.zeros(p.y.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        for j in range(2, settings.confirm_days + 2):
            if j >= p.n:
                break
            undo = np.abs(raw[j:] - raw[:-j]) < 0.25 * np.abs(raw_d[j:])
            back[j:] |= undo & need[j:]
    ok &= ~back
    z = np.where(need, z, 0.0)
    r, c = np.nonzero(ok)
    row = np.searchsorted(days, p.day[r, c])
    out.z[row, c] = z[r, c]
    out.change[row, c] = raw_d[r, c]
    out.before[row, c] = p.value[r - 1, c]
    out.exceptional[row, c] = exceed[r, c]
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def group_names(cohorts: Mapping[str, Sequence[str]], industries: Mapping[str, str]
                ) -> list[str]:
    """The cohorts, then ``industry:<tag>`` of each industry: the order populations of
    a metric are listed in after the metric itself."""
    return [*cohorts, *(f"industry:{t}" for t in sorted(set(industries.values())))]


def candidates(keys: pd.DataFrame, cohorts: Mapping[str, Sequence[str]],
               industries: Mapping[str, str]) -> list[Population]:
    """Each metric, and within it each cohort and industry with any of its series.

    ``cohorts`` maps a name to company ids, ``industries`` a company id to its
    industry tag. A part of the series (a Dask task's) gives the parts of the
    populations; whether a cohort is big enough is decided over all of them."""
    out = []
    company = keys["company"].to_numpy()
    tag = pd.Series(company, dtype=object).map(industries).to_numpy(dtype=object)
    tags = sorted(set(industries.values()))
    for metric, idx in keys.groupby("metric", sort=True).indices.items():
        idx = np.asarray(idx)
        out.append(Population(str(metric), None, idx))
        subs = [idx[np.isin(company[idx], list(ids))] for ids in cohorts.values()]
        subs += [idx[tag[idx] == t] for t in tags]
        out += [Population(str(metric), name, sub)
                for name, sub in zip(group_names(cohorts, industries), subs, strict=True)
                if sub.size]
    return out


def population_labels(sizes: Mapping[tuple[str, str | None], int], group_order: Sequence[str],
                      min_series: int) -> list[tuple[str, str | None]]:
    """The (metric, cohort) populations judged, in the order they are listed: each
    metric, then its cohorts and industries (``group_order``) with ``min_series``
    series. ``sizes``: series per candidate, over one matrix or summed over slices."""
    rank = {g: i for i, g in enumerate(group_order)}
    return sorted((k for k, n in sizes.items() if k[1] is None or n >= min_series),
                  key=lambda k: (k[0], -1 if k[1] is None else rank[k[1]]))


def populations(keys: pd.DataFrame, cohorts: Mapping[str, Sequence[str]],
                industries: Mapping[str, str], min_series: int) -> list[Population]:
    """Each metric, and within it each cohort and industry with ``min_series`` series
    (an industry's population is named ``industry:<tag>``)."""
    found = {(p.metric, p.cohort): p for p in candidates(keys, cohorts, industries)}
    labels = population_labels({k: p.cols.size for k, p in found.items()},
                               group_names(cohorts, industries), min_series)
    return [found[k] for k in labels]


def event_id(metric: str, direction: str, first: pd.Timestamp, cohort: str | None) -> str:
    """``pop-<metric>-<direction>-<first date>[-<cohort>]``: stable across runs."""
    base = f"pop-{metric}-{direction}-{first:%Y-%m-%d}"
    return base if cohort is None else f"{base}-{_slug(cohort)}"


def _tests(mv: Moves, cols: np.ndarray, sign: float, z_bar: float, ps: PopulationSettings
           ) -> tuple[np.ndarray, np.ndarray]:
    """Which cells move in the direction ``sign``: beyond ``z_bar`` (the loose test),
    and as the change test alone would report (the strict test, of small populations)."""
    z, ch = mv.z[:, cols], mv.change[:, cols]
    with np.errstate(invalid="ignore"):
        loose = (sign * z >= z_bar) & (sign * ch >= np.log1p(ps.min_move_pct / 100))
        strict = mv.exceptional[:, cols] & (sign * ch > 0)
    return loose, strict


def _moving(mv: Moves, cols: np.ndarray, sign: float, small: np.ndarray, z_bar: float,
            ps: PopulationSettings) -> np.ndarray:
    loose, strict = _tests(mv, cols, sign, z_bar, ps)
    return np.where(small[:, None], strict, loose)


def _within(pops: Sequence[Population], c0: int, c1: int) -> list[Population]:
    """The populations' columns among [c0, c1), numbered from c0."""
    return [Population(p.metric, p.cohort, p.cols[(p.cols >= c0) & (p.cols < c1)] - c0)
            for p in pops]


def baseline_reach(ps: PopulationSettings) -> int:
    """Days before a judged day whose shares its verdict reads: the ``baseline_days``
    window, and the same-weekday median of the 8 weeks before (with a week of margin
    for days missing from the index), plus the day before (an event may begin there)."""
    return max(ps.baseline_days, 9 * 7) + 7 + 1


def _baseline(share: pd.Series, n: np.ndarray, ps: PopulationSettings
              ) -> tuple[np.ndarray, np.ndarray]:
    """Expected share and its spread on each day, from the days before it only."""
    window = share.rolling(f"{ps.baseline_days}D", closed="left",
                           min_periods=ps.min_baseline_days)
    med = window.median().to_numpy()
    q90 = window.quantile(0.9).to_numpy()
    weekday = share.groupby(share.index.day_of_week).transform(
        lambda s: s.rolling(8, min_periods=4).median().shift(1)).to_numpy()
    expected = np.fmax(med, weekday)
    with np.errstate(invalid="ignore", divide="ignore"):
        p0 = np.fmax(expected, 1.0 / (np.maximum(n, 1) * ps.baseline_days))
        spread = np.fmax((q90 - med) / _Q90, np.sqrt(p0 * (1 - p0) / np.maximum(n, 1)))
    return expected, spread


@dataclass
class Tally:
    """Column sums of :class:`Moves` per population (``pops`` order) and day: what the
    shares are made of. Sums over columns add up across column chunks, so a pass over
    a million series never holds their scores at once (headcounts are whole numbers,
    so the sums are exact in any order)."""

    n: np.ndarray  #: (pops, days) series judged
    total: np.ndarray  #: (pops, days) their headcount the day before
    k: np.ndarray  #: (pops, directions, [loose, strict], days) series moving
    w: np.ndarray  #: the same, their headcount the day before

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.n + other.n, self.total + other.total, self.k + other.k,
                     self.w + other.w)

    @classmethod
    def zeros(cls, n_pops: int, n_days: int) -> Tally:
        return cls(np.zeros((n_pops, n_days), dtype=np.int64), np.zeros((n_pops, n_days)),
                   np.zeros((n_pops, 2, 2, n_days), dtype=np.int64),
                   np.zeros((n_pops, 2, 2, n_days)))

    def on_days(self, at: np.ndarray, n_days: int) -> Tally:
        """The same sums on a longer day axis: day ``i`` here is day ``at[i]`` there."""
        out = Tally.zeros(self.n.shape[0], n_days)
        out.n[:, at], out.total[:, at] = self.n, self.total
        out.k[..., at], out.w[..., at] = self.k, self.w
        return out

    def days(self, keep: np.ndarray) -> Tally:
        return Tally(self.n[:, keep], self.total[:, keep], self.k[..., keep], self.w[..., keep])

    def rows(self, keep: np.ndarray) -> Tally:
        return Tally(self.n[keep], self.total[keep], self.k[keep], self.w[keep])

    def add_rows(self, rows: np.ndarray, other: Tally) -> None:
        """Add ``other``'s populations into these ``rows`` (distinct) of this one."""
        self.n[rows] += other.n
        self.total[rows] += other.total
        self.k[rows] += other.k
        self.w[rows] += other.w


def tally(mv: Moves, pops: Sequence[Population], ps: PopulationSettings) -> Tally:
    """Both tests' moving counts of each population and direction, each day: which one
    a day uses depends on the whole population's size that day, known once summed."""
    out = Tally.zeros(len(pops), len(mv.days))
    for i, pop in enumerate(pops):
        if not pop.cols.size:
            continue
        valid = np.isfinite(mv.z[:, pop.cols])
        out.n[i] = valid.sum(axis=1)
        weight = np.where(valid, np.nan_to_num(mv.before[:, pop.cols]), 0.0)
        out.total[i] = weight.sum(axis=1)
        for j, (_, sign) in enumerate(DIRECTIONS):
            for t, moving in enumerate(_tests(mv, pop.cols, sign, ps.move_z, ps)):
                out.k[i, j, t] = moving.sum(axis=1)
                out.w[i, j, t] = (weight * moving).sum(axis=1)
    return out


def shares(mv: Moves, pops: Sequence[Population], ps: PopulationSettings) -> pd.DataFrame:
    """Per day, population and direction: how many series moved, the share (by count
    and by headcount), what the share's history expected, the score and the verdict."""
    return shares_of(tally(mv, pops, ps), pops, mv.days, ps)


def shares_of(t: Tally, pops: Sequence[Population], days: pd.DatetimeIndex,
              ps: PopulationSettings) -> pd.DataFrame:
    """:func:`shares` from the populations' summed :class:`Tally`."""
    parts = []
    for i, pop in enumerate(pops):
        n, total = t.n[i], t.total[i]
        small = n < ps.min_series
        for j, (direction, _) in enumerate(DIRECTIONS):
            k = np.where(small, t.k[i, j, 1], t.k[i, j, 0])
            moved_weight = np.where(small, t.w[i, j, 1], t.w[i, j, 0])
            with np.errstate(invalid="ignore", divide="ignore"):
                share = np.where(n > 0, k / np.maximum(n, 1), np.nan)
                weighted = np.where(total > 0, moved_weight / total, np.nan)
            s = pd.Series(share, index=days)
            if pop.cohort is not None:  # cohorts too small on a day are not judged
                s[small] = np.nan
            expected, spread = _baseline(s, n, ps)
            with np.errstate(invalid="ignore", divide="ignore"):
                score = (s.to_numpy() - expected) / spread
            least = np.where(small, 2, ps.min_members)
            event = ((score >= ps.threshold) & (k >= least) & (s.to_numpy() >= ps.min_share)
                     & (n >= 2))
            # By headcount: two giants purged the same night are a platform event however
            # many small companies are tracked beside them (Apple and Amazon, 2022).
            with np.errstate(invalid="ignore", divide="ignore"):
                heavy_share = np.where(total > 0, t.w[i, j, 1] / total, 0.0)
            heavy = (t.k[i, j, 1] >= 2) & (heavy_share >= ps.min_weighted_share) \
                & ~small & ~event
            parts.append(pd.DataFrame({
                "date": days, "metric": pop.metric, "cohort": pop.cohort,
                "direction": direction, "n_series": n, "n_moving": k, "share": s.to_numpy(),
                "weighted_share": weighted, "expected": expected, "score": score,
                "event": event | heavy, "strict": small | heavy}))
    if not parts:
        return pd.DataFrame(columns=SHARE_COLUMNS)
    return pd.concat(parts, ignore_index=True)[SHARE_COLUMNS]


@dataclass(frozen=True)
class Run:
    """Consecutive abnormal days of one population and direction: one event."""

    id: str
    pop: int  #: index into the populations
    direction: str
    part: pd.DataFrame  #: its rows of the daily shares


def runs(pops: Sequence[Population], daily: pd.DataFrame,
         ending_from: pd.Timestamp | None = None) -> list[Run]:
    """The events of the daily shares (those lasting to ``ending_from`` or later)."""
    out = []
    index = {(p.metric, p.cohort): i for i, p in enumerate(pops)}
    flagged = daily.loc[daily["event"].astype(bool)] if len(daily) else daily
    for (metric, cohort, direction), grp in flagged.groupby(
            ["metric", "cohort", "direction"], dropna=False, sort=True):
        i = index[(metric, None if pd.isna(cohort) else cohort)]
        days = grp["date"].to_numpy(dtype="datetime64[D]").astype(np.int64)
        run = np.concatenate([[0], np.cumsum(np.diff(days) > 1)])
        for _, part in grp.groupby(run):
            if ending_from is None or part["date"].iloc[-1] >= ending_from:
                out.append(Run(event_id(str(metric), str(direction),
                                        pd.Timestamp(part["date"].iloc[0]), pops[i].cohort),
                               i, str(direction), part))
    return out


@dataclass
class RunMembers:
    """One event's members among some columns, and the sums its figures need."""

    members: pd.DataFrame
    n_series: int
    total: float  #: headcount of the series judged on its days
    moved: float  #: that of its members

    @classmethod
    def combine(cls, parts: Sequence[RunMembers]) -> RunMembers:
        """The members found over several column chunks or slices, in their order."""
        # parts without members would turn the names' string columns to object
        mem = pd.concat([p.members for p in parts if len(p.members)] or
                        [parts[0].members], ignore_index=True)
        return cls(mem, sum(p.n_series for p in parts), sum(p.total for p in parts),
                   sum(p.moved for p in parts))


def run_members(mv: Moves, pops: Sequence[Population], run: Run, ps: PopulationSettings
                ) -> RunMembers:
    """A member moved in the event's direction beyond ``member_z`` on one of its days
    (on the strict test: exceptionally); its change is the sum of those days' moves."""
    pop = pops[run.pop]
    sign = dict(DIRECTIONS)[run.direction]
    rows = mv.days.get_indexer(pd.DatetimeIndex(run.part["date"]))
    small = run.part["strict"].to_numpy(dtype=bool)  # members as the day was judged
    small, rows = small[rows >= 0], rows[rows >= 0]  # a slice observed nothing that day
    if not rows.size:
        return RunMembers(pd.DataFrame(columns=MEMBER_COLUMNS), 0, 0.0, 0.0)
    sub = Moves(mv.days[rows], mv.keys, mv.z[rows], mv.change[rows], mv.before[rows],
                mv.exceptional[rows])
    moved = _moving(sub, pop.cols, sign, small, ps.member_z, ps)
    who = np.flatnonzero(moved.any(axis=0))
    ch = np.where(moved, sub.change[:, pop.cols], 0.0).sum(axis=0)[who]
    zz = np.where(moved, sub.z[:, pop.cols], 0.0)
    score = zz[np.abs(zz).argmax(axis=0), np.arange(zz.shape[1])][who]
    first_row = moved[:, who].argmax(axis=0)
    before = sub.before[:, pop.cols][first_row, who]
    cols = pop.cols[who]
    members = pd.DataFrame({
        "event_id": run.id, "company": mv.keys["company"].to_numpy()[cols],
        "metric": pop.metric, "source": mv.keys["source"].to_numpy()[cols],
        "date": sub.days[first_row], "change_pct": 100 * np.expm1(ch), "score": score,
        "value_before": before}, columns=MEMBER_COLUMNS)
    valid = np.isfinite(sub.z[:, pop.cols]).any(axis=0)
    with np.errstate(invalid="ignore"):
        weight = np.nan_to_num(np.max(np.where(np.isfinite(sub.before[:, pop.cols]),
                                               sub.before[:, pop.cols], -np.inf),
                                      axis=0, initial=-np.inf), neginf=0.0)
    return RunMembers(members, int(valid.sum()), float(weight[valid].sum()),
                      float(weight[who].sum()))


def event_rows(pops: Sequence[Population], found: Sequence[tuple[Run, Sequence[RunMembers]]]
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events and members from each run's members, found over one or more column chunks."""
    events, members = [], []
    for run, parts in found:
        pop, part = pops[run.pop], run.part
        got = RunMembers.combine(parts)
        mem, n_series, total = got.members, got.n_series, got.total
        members.append(mem)
        events.append({
            "id": run.id, "metric": pop.metric, "cohort": pop.cohort,
            "direction": run.direction, "first_date": pd.Timestamp(part["date"].iloc[0]),
            "last_date": pd.Timestamp(part["date"].iloc[-1]), "n_series": n_series,
            "n_members": len(mem), "share": len(mem) / n_series if n_series else 0.0,
            "weighted_share": got.moved / total if total else 0.0,
            "peak_share": float(part["share"].max()),
            "expected_share": float(part["expected"].iloc[0]),
            "score": float(part["score"].max()),
            "median_change_pct": float(np.median(mem["change_pct"].to_numpy(
                dtype=np.float64))) if len(mem) else 0.0,
        })
    ev = pd.DataFrame(events, columns=EVENT_COLUMNS)
    mem = (pd.concat(members, ignore_index=True) if members
           else pd.DataFrame(columns=MEMBER_COLUMNS))
    return ev, mem[MEMBER_COLUMNS]


def group_events(mv: Moves, pops: Sequence[Population], daily: pd.DataFrame,
                 ps: PopulationSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events (consecutive abnormal days of one population and direction) and members."""
    return event_rows(pops, [(r, [run_members(mv, pops, r, ps)]) for r in runs(pops, daily)])


def link_alerts(members: pd.DataFrame, events: pd.DataFrame, alerts: pd.DataFrame
                ) -> pd.Series:
    """The id of each member's own alert (None when it would not have alerted alone):
    a stored move of the same company and metric, in the event's direction, dated
    within a day of the event."""
    out = pd.Series([None] * len(members), index=members.index, dtype=object)
    if members.empty or alerts.empty:
        return out
    a = alerts[alerts["kind"].isin(("drop", "spike", "glitch"))]
    ev = events.set_index("id")
    m = members.assign(_row=members.index).join(
        ev[["direction", "first_date", "last_date"]], on="event_id")
    cand = m.merge(a[["id", "company", "metric", "date", "change_pct"]].rename(
        columns={"id": "alert_id", "date": "alert_date", "change_pct": "alert_change"}),
        on=["company", "metric"])
    if cand.empty:
        return out
    when = pd.to_datetime(cand["alert_date"])
    same_way = np.where(cand["direction"] == "down", cand["alert_change"] < 0,
                        cand["alert_change"] > 0)
    near = ((when >= pd.to_datetime(cand["first_date"]) - pd.Timedelta(days=1))
            & (when <= pd.to_datetime(cand["last_date"]) + pd.Timedelta(days=1)))
    hit = cand[near & same_way].drop_duplicates("_row")
    out.loc[hit["_row"].to_numpy()] = hit["alert_id"].astype(object).to_numpy()
    return out


def population_pass(matrix: pd.DataFrame, keys: pd.DataFrame, settings: DetectSettings,
                    ps: PopulationSettings | None = None, *,
                    cohorts: Mapping[str, Sequence[str]] | None = None,
                    industries: Mapping[str, str] | None = None,
                    judge_from: pd.Timestamp | None = None
                    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Daily shares, events and members of a dates x series matrix (no database).

    ``keys`` names each column (company, metric, source), as ``build_matrix`` gives.
    ``judge_from``: only events of that day or later are wanted (and those lasting
    to the day before, where one may begin); the shares of the days before it are
    computed as far back as their baseline needs, no further.

    The scores are computed on column chunks (the detection engine's, in its forked
    workers when there are many) and only their sums kept: a million series' scores
    would need some 250 bytes a cell at once. The few days that open an event are
    scored again for their members, chunk by chunk.
    """
    ps = ps or PopulationSettings()
    first = None if judge_from is None else \
        judge_from - pd.Timedelta(days=baseline_reach(ps))
    values = matrix.to_numpy(dtype=np.float64, na_value=np.nan)
    primary = primary_columns(keys, np.isfinite(values).sum(axis=0))
    pkeys = keys.iloc[primary].reset_index(drop=True)
    index = pd.DatetimeIndex(matrix.index)
    pops = populations(pkeys, cohorts or {}, industries or {}, ps.min_series)
    chunks = _chunks(len(index), primary.size, settings.execution.workers)
    kept: dict[int, Moves] = {}  # when the chunks run here, few: scored once only
    keep = len(chunks) < _PARALLEL_MIN_CHUNKS

    def local(c0: int, c1: int) -> tuple[Moves, list[Population]]:
        mv = _moves_of(values[:, primary[c0:c1]], index, pkeys.iloc[c0:c1], settings,
                       ps.max_gap_days, ps.min_move_pct, first)
        return mv, _within(pops, c0, c1)

    def count(c0: int, c1: int) -> Tally:
        mv, sub = local(c0, c1)
        if keep:
            kept[c0] = mv
        return tally(mv, sub, ps)

    parts = _run_chunks(count, chunks, settings) if chunks else []
    total = sum(parts[1:], parts[0]) if parts else Tally.zeros(len(pops), len(index))
    daily = shares_of(total, pops, index, ps)
    wanted = runs(pops, daily, None if judge_from is None
                  else judge_from - pd.Timedelta(days=1))
    if not wanted:
        return daily, *event_rows(pops, [])

    def members(c0: int, c1: int) -> list[RunMembers]:
        mv, sub = (kept[c0], _within(pops, c0, c1)) if c0 in kept else local(c0, c1)
        return [run_members(mv, sub, r, ps) for r in wanted]

    found = _run_chunks(members, chunks, settings)
    events, mem = event_rows(pops, [(r, [f[i] for f in found]) for i, r in enumerate(wanted)])
    return daily, events, mem
