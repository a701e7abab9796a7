"""Detection on a Dask cluster (``[detect] engine = "dask"``): the same verdicts, spread out.

The series are split into partitions of ``partition_size`` consecutive series ids.
Each task opens the database itself and reads only its partition
(:func:`tracker.store.slices.read_slice`), runs the local engine on it
(:func:`tracker.detect.detect`, :func:`~tracker.detect.engine.detect_day`,
:func:`~tracker.detect.engine.detect_day_window`: one implementation, the engine's
own chunks inside) and returns only its verdict rows. No process ever holds the
whole matrix, and the client receives a few small frames.

Why the results are those of ``engine = "local"``: series are independent in every
detector (the local engine already works on column chunks), and a detector sees
calendar time only through the day numbers and the matrix's first and last day (the
weekly adjustment's blocks and drift's grid start at the first). So every task's
matrix is given the first day the whole matrix would have (:func:`day_span`) as an
empty row if its own series start later. The population step (platform-wide
events) splits the same way: tasks return column sums, the client judges the shares
(see the section below). Corroboration and saving stay on the client, over the
returned verdicts.

A daily run's task reads no slice at all once its partition has a stored window
(:func:`tracker.store.slices.part_window`): the client reads the day's new
observations once and hands each task its partition's rows, the task patches its
window with them, judges it and writes back the days that changed. Reading every
partition's window afresh each day was most of a daily run's time.

Only dask and distributed are needed (``headcount-tracker[dask]``); they are imported
when the engine is used, so the default install never needs them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tracker.detect import detect
from tracker.detect.engine import detect_day, empty_frame, judge_days
from tracker.detect.matrix import day_numbers
from tracker.detect.population import (
    MEMBER_COLUMNS,
    SHARE_COLUMNS,
    Moves,
    Population,
    Run,
    RunMembers,
    Tally,
    baseline_reach,
    candidates,
    event_rows,
    group_names,
    moves,
    population_labels,
    run_members,
    runs,
    shares_of,
    tally,
)
from tracker.detect.population_settings import PopulationSettings
from tracker.detect.settings import DetectSettings
from tracker.errors import ConfigError
from tracker.store import alerts as alert_store
from tracker.store.latest import names as latest_names
from tracker.store.slices import (
    Dense,
    Slice,
    WindowPlan,
    day_span,
    kept_window,
    part_window,
    read_slice,
    series_ids,
    slice_names,
    store_window,
    window_dense,
    window_plans,
)
from tracker.store.window_cache import Window
from tracker.workspace import Workspace

if TYPE_CHECKING:
    from tracker.population import Reads

INSTALL = "pip install 'headcount-tracker[dask]'"
KEY_COLUMNS = ["company", "metric", "source"]


def require_dask() -> Any:
    """The distributed module, or a one-line ConfigError saying how to install it."""
    try:
        import dask.dataframe  # noqa: F401  (the extra installs both)
        import distributed
    except ImportError:
        raise ConfigError('[detect] engine = "dask" needs dask and distributed, which are '
                          f"not installed: {INSTALL} (install headcount-tracker[dask]) or "
                          'set engine = "local"') from None
    return distributed


@contextlib.contextmanager
def client(s: DetectSettings) -> Iterator[Any]:
    """A client of the configured scheduler, or of a local cluster made for this run."""
    distributed = require_dask()
    if s.scheduler:
        try:
            c = distributed.Client(s.scheduler, timeout=f"{s.connect_timeout}s",
                                   set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConfigError(
                f"[detect] scheduler = {s.scheduler!r}: no Dask scheduler answered within "
                f"{s.connect_timeout:g} s ({type(exc).__name__}); start one with `dask "
                "scheduler` and workers with `dask worker ADDRESS`, fix the address, or "
                'leave scheduler = "" for a local cluster') from None
        with c:
            yield c
        return
    with distributed.LocalCluster(n_workers=s.workers, threads_per_worker=s.threads_per_worker,
                                  memory_limit=s.memory_limit, processes=True,
                                  dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            distributed.Client(cluster, set_as_default=False) as c:
        yield c


def partitions(ids: np.ndarray, size: int) -> list[tuple[int, int]]:
    """[lo, hi] series id ranges of ``size`` series each (ids sorted ascending)."""
    return [(int(ids[i]), int(ids[min(i + size, ids.size) - 1])) for i in range(0, ids.size, size)]


def frame(d: Dense) -> pd.DataFrame:
    """Dates x columns 0..n-1: the matrix detection judges."""
    index = pd.DatetimeIndex(d.days.astype("datetime64[D]").astype("datetime64[ns]"))
    return pd.DataFrame(d.values, index=index, columns=range(d.values.shape[1]))


def slice_matrix(sl: Slice, extra_days: list[int]) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Dates x series matrix of a slice (columns 0..n-1), with empty rows on
    ``extra_days`` (the whole matrix's first day), and each column's series and source."""
    d = sl.dense(extra_days)
    return frame(d), d.series_id, d.source_id


def _with_ids(rows: pd.DataFrame, sid: np.ndarray, oid: np.ndarray) -> pd.DataFrame:
    cols = rows["series"].to_numpy(dtype=np.int64)
    return rows.assign(series_id=sid[cols], source_id=oid[cols])


def history_task(url: str, lo: int, hi: int, until: date | None, first_day: int,
                 s: DetectSettings, keep: WindowPlan | None = None) -> tuple[pd.DataFrame, int]:
    """A partition's verdicts over its whole history (a worker runs this).

    ``keep``: the slice holds every observation to ``keep.upto``, so the partition's
    window from ``keep.keep`` is stored too, and the first daily run after the pass
    patches it instead of reading the partition again."""
    sl = read_slice(url, lo, hi, until=until)
    if keep is not None:
        store_window(url, lo, hi, sl, keep)
    if not len(sl):
        return _with_ids(empty_frame(), np.zeros(0), np.zeros(0)), 0
    matrix, sid, oid = slice_matrix(sl, [first_day])
    return _with_ids(detect(matrix, s), sid, oid), matrix.shape[1]


def days_task(url: str, lo: int, hi: int, start: date, day: date, read_from: date,
              window_first: int, store_first: int, s: DetectSettings,
              ahead: Ahead | None = None, plan: WindowPlan | None = None
              ) -> tuple[pd.DataFrame, int, PartTally | None]:
    """A partition's verdicts of the days [start, day], as the daily run reaches them:
    a trailing window for all its series, the whole history for the few that need it.

    ``plan``: the partition's kept window, brought up to date by the task (and saved
    back), is the slice; else it is read from the observations. ``ahead``: the
    population step's read of the same run; the slice covers both ranges, and the
    partition's population sums are returned too."""
    src: Window | Slice
    if plan is not None:
        src = part_window(url, lo, hi, plan)
    elif ahead is None:
        src = read_slice(url, lo, hi, since=read_from, until=day)
    else:
        r = ahead.reach
        src = read_slice(url, lo, hi, since=None if r.since is None else min(r.since, read_from),
                         until=max(day, r.until or day))
    part = None
    if ahead is not None:
        r = ahead.reach
        part = _part_tally(_scored_dense(url, lo, hi, _dense(src, r.since, r.until, r.first_day), r,
                                         ahead.groups, s, ahead.ps), r, ahead.ps)
    return (*_days_of(url, lo, hi, _dense(src, read_from, day, window_first), start, day, read_from,
                      store_first, s), part)


def _dense(src: Window | Slice, since: date | None, until: date | None, first: int) -> Dense:
    """The days [since, until] of a partition's window or slice, with a row on ``first``."""
    if isinstance(src, Slice):
        return src.days(since, until).dense([first])
    return window_dense(src, since, until, [first])


def _days_of(url: str, lo: int, hi: int, m: Dense, start: date, day: date, read_from: date,
             store_first: int, s: DetectSettings) -> tuple[pd.DataFrame, int]:
    """:func:`days_task` of the partition's matrix of the days [read_from, day]."""
    if m.empty:
        return _with_ids(empty_frame().assign(_judged=pd.NaT), np.zeros(0), np.zeros(0)), 0
    window, sid, oid = frame(m), m.series_id, m.source_id
    complete = store_first >= _number(read_from)
    parts, deep = judge_days(window, [d for d in pd.date_range(start, day)
                                      if d in window.index], s, complete=complete)
    if deep:
        cols = sorted({c for need in deep.values() for c in need})
        full = read_slice(url, lo, hi, until=max(deep).date(), only=sid[cols].tolist())
        matrix, fsid, foid = slice_matrix(full, [store_first])
        pos = np.searchsorted(fsid * np.int64(2**31) + foid,
                              sid[cols] * np.int64(2**31) + oid[cols])
        matrix = matrix[pos]
        matrix.columns = cols
        for d, need in sorted(deep.items()):
            parts.append(detect_day(matrix[need], d, s).assign(_judged=d))
    found = pd.concat(parts, ignore_index=True) if parts else empty_frame().assign(_judged=pd.NaT)
    return _with_ids(found, sid, oid), window.shape[1]


def _number(d: date) -> int:
    return (d - date(1970, 1, 1)).days


def _gather(ws: Workspace, task: Any, ranges: list[tuple[int, int]] | None = None,
            plans: list[WindowPlan] | None = None, **kwargs: Any
            ) -> tuple[pd.DataFrame, int, list[Any]]:
    """Run ``task`` over every partition; their rows with company, metric, source, the
    columns judged, and what else each task returned (its third item, if any)."""
    s = ws.settings.detect
    ranges = partitions(series_ids(ws.store), s.partition_size) if ranges is None else ranges
    if not ranges:
        return _none(), 0, []
    # one process per task: the engine's forked workers would only compete with Dask's
    one = s.model_copy(update={"workers": 1})
    with client(s) as c:
        # a partition's window plan is its own (its new observations), the rest shared
        futures = [c.submit(task, ws.store.url, a, b, s=one, pure=False, **kwargs,
                            **({} if plans is None else {"plan": plans[i]}))
                   for i, (a, b) in enumerate(ranges)]
        done = c.gather(futures)
    found = pd.concat([f[0] for f in done], ignore_index=True)
    n_series = sum(f[1] for f in done)
    extras = [f[2] if len(f) > 2 else None for f in done]
    series_names, source_names = latest_names(ws.store)
    found["company"] = [series_names[int(i)][0] for i in found["series_id"]]
    found["metric"] = [series_names[int(i)][1] for i in found["series_id"]]
    found["source"] = [source_names[int(i)] for i in found["source_id"]]
    found["series"] = found["series_id"].astype(object)
    return found.drop(columns=["series_id", "source_id"]), n_series, extras


def detect_history(ws: Workspace, *, until: date | None = None, mark: int | None = None,
                   keep_from: Callable[[date], date] | None = None
                   ) -> tuple[pd.DataFrame, int, date | None]:
    """Every verdict over the whole stored history (to ``until``), the number of
    (series, source) columns judged and the last day; as :func:`tracker.detection.
    run_detection` finds them locally (ordered by day and series keys).

    ``mark``: the last observation id when the pass began; with ``keep_from`` (the
    first day the window of a daily run after a given last day keeps), each task
    stores its partition's window as of the mark, when its slice holds every
    observation (``until`` is the last day or later)."""
    span = day_span(ws.store, until=until)
    if span is None:
        return _none(), 0, None
    keep = None
    if mark is not None and keep_from is not None:
        whole = day_span(ws.store) if until is not None else span
        if whole is not None and whole[1] <= span[1]:
            keep = WindowPlan(_number(keep_from(_day(span[1]))), mark)
    found, n, _ = _gather(ws, history_task, until=until, first_day=span[0], keep=keep)
    found = found.sort_values(["date", "detected_on", *KEY_COLUMNS], kind="stable")
    return found.reset_index(drop=True), n, _day(span[1])


def detect_days(ws: Workspace, start: date, day: date, read_from: date,
                population: Reads | None = None) -> tuple[pd.DataFrame, int]:
    """The verdicts of the days [start, day] of a daily run, in the order judged.

    ``population``: what the run's population step will read (:func:`tracker.
    population.next_reads`). Each task then reads its slice once for both steps and
    returns its population sums too, kept for :func:`population` (a slice read from
    PostgreSQL is most of a task's time: the population step read every slice again).
    """
    global _ahead
    _ahead = None
    span = day_span(ws.store, since=read_from, until=day)
    first = alert_store.first_observation_day(ws.store)
    if span is None or first is None:
        return _none(), 0
    last_id = alert_store.last_observation_id(ws.store)
    ranges = partitions(series_ids(ws.store), ws.settings.detect.partition_size)
    ask = None if population is None else _ask(ws, population)
    plans = None
    if ask is None or ask.reach.since is not None:
        keep = read_from if ask is None else min(read_from, ask.reach.since or read_from)
        plans = window_plans(ws.store, ranges, _number(keep), last_id)
    found, n, parts = _gather(ws, days_task, ranges, start=start, day=day,
                              read_from=read_from, window_first=span[0],
                              store_first=_number(first), ahead=ask, plans=plans)
    if ask is not None:
        _ahead = (_ahead_key(ws, ask, ranges, last_id), parts)
    found = found.sort_values(["_judged", "date", "detected_on", *KEY_COLUMNS], kind="stable")
    return found.drop(columns="_judged").reset_index(drop=True), n


def _none() -> pd.DataFrame:
    """No verdicts, in the columns of some."""
    return empty_frame().assign(**{c: pd.Series(dtype=object) for c in KEY_COLUMNS})


def _day(n: int) -> date:
    return date(1970, 1, 1) + timedelta(days=int(n))


# --- population events --------------------------------------------------------------
#
# The population pass sums each day's moving series over every series, so it splits
# like detection: a task scores its own slice (the local pass's code, :func:`tracker.
# detect.population.moves`) and returns only the column sums (:class:`Tally`) of each
# part of a population it holds, on the calendar days of the whole read; the client
# adds them up, decides which cohorts are big enough and judges the shares. The few
# days that open an event are scored again by the tasks for their members.


@dataclass(frozen=True)
class Groups:
    """``[cohorts]`` (name -> company ids) and the industries (company id -> tag),
    sent to every worker once."""

    cohorts: dict[str, list[str]]
    industries: dict[str, str]


@dataclass(frozen=True)
class Reach:
    """What a population task reads and scores: days [since, until] of the store, the
    whole read's first and last day (day numbers), the first day scored."""

    since: date | None
    until: date | None
    first_day: int
    last_day: int
    scored_from: pd.Timestamp | None


@dataclass
class PartTally:
    """One partition's parts of the populations: (metric, cohort) labels, their
    series, their column sums on the read's calendar days, and which days it saw."""

    labels: list[tuple[str, str | None]]
    sizes: np.ndarray
    tally: Tally
    seen: np.ndarray


@dataclass(frozen=True)
class Ahead:
    """The population step's read, asked of the daily detection's tasks."""

    reach: Reach
    groups: Groups
    ps: PopulationSettings


#: (what was asked, of which store, over which partitions, as of which observation;
#: the partitions' sums): the population sums the last daily detection computed in
#: this process. Used only when all of that is what the population step asks now.
_ahead: tuple[tuple[Any, ...], list[PartTally]] | None = None


def _ahead_key(ws: Workspace, ask: Ahead, ranges: list[tuple[int, int]], last_id: int
               ) -> tuple[Any, ...]:
    """What the kept sums depend on: a revision (new last observation id), another store,
    partitioning or detection setting makes them stale, so the population step reads again."""
    return (ws.store.url, ask, tuple(ranges), last_id,
            ws.settings.detect.model_copy(update={"workers": 1}))


def _reach(ws: Workspace, reads: Reads) -> Reach | None:
    """The days a pass of ``reads`` covers (None: no observation in them)."""
    span = day_span(ws.store, since=reads.since, until=reads.until)
    if span is None:
        return None
    judge = None if reads.judge_from is None else pd.Timestamp(reads.judge_from)
    return Reach(reads.since, reads.until, span[0], span[1], None if judge is None
                 else judge - pd.Timedelta(days=baseline_reach(ws.settings.population)))


def _ask(ws: Workspace, reads: Reads) -> Ahead | None:
    reach = _reach(ws, reads)
    return None if reach is None else \
        Ahead(reach, Groups(reads.cohorts, reads.industries), ws.settings.population)


def _scored(url: str, lo: int, hi: int, reach: Reach, groups: Groups, s: DetectSettings,
            ps: PopulationSettings, upto: int | None) -> tuple[Moves, list[Population]] | None:
    """A partition's moves (:func:`_scored_dense`), from its kept window when that
    holds the observations to ``upto`` (the daily run's), else read from the store."""
    win = None if upto is None else kept_window(url, lo, hi, reach.since, upto)
    d = read_slice(url, lo, hi, since=reach.since, until=reach.until).dense([reach.first_day]) \
        if win is None else window_dense(win, reach.since, reach.until, [reach.first_day])
    return _scored_dense(url, lo, hi, d, reach, groups, s, ps)


def _scored_dense(url: str, lo: int, hi: int, d: Dense, reach: Reach, groups: Groups,
                  s: DetectSettings, ps: PopulationSettings
                  ) -> tuple[Moves, list[Population]] | None:
    """A partition's moves, its columns in the local window's (company, metric,
    source) order (a company's primary source is picked the same way), and its parts
    of the populations."""
    from tracker.detection import _name_order

    if d.empty:
        return None
    by_name, keys = _name_order(d.series_id, d.source_id, slice_names(url, lo, hi))
    matrix = frame(Dense(d.values[:, by_name], d.days, d.series_id[by_name],
                         d.source_id[by_name]))
    mv = moves(matrix, keys, s, ps.max_gap_days, ps.min_move_pct, first_day=reach.scored_from)
    return mv, candidates(mv.keys, groups.cohorts, groups.industries)


def population_task(url: str, lo: int, hi: int, reach: Reach, groups: Groups,
                    s: DetectSettings, ps: PopulationSettings, upto: int | None = None
                    ) -> PartTally:
    """A partition's column sums (a worker runs this)."""
    return _part_tally(_scored(url, lo, hi, reach, groups, s, ps, upto), reach, ps)


def _part_tally(scored: tuple[Moves, list[Population]] | None, reach: Reach,
                ps: PopulationSettings) -> PartTally:
    n_days = reach.last_day - reach.first_day + 1
    if scored is None:
        return PartTally([], np.zeros(0, dtype=np.int64), Tally.zeros(0, n_days),
                         np.zeros(n_days, dtype=bool))
    mv, parts = scored
    at = day_numbers(mv.days) - reach.first_day
    seen = np.zeros(n_days, dtype=bool)
    seen[at] = True
    return PartTally([(p.metric, p.cohort) for p in parts],
                     np.asarray([p.cols.size for p in parts], dtype=np.int64),
                     tally(mv, parts, ps).on_days(at, n_days), seen)


def members_task(url: str, lo: int, hi: int, reach: Reach, groups: Groups,
                 s: DetectSettings, ps: PopulationSettings,
                 labels: list[tuple[str, str | None]], wanted: list[Run],
                 upto: int | None = None) -> list[RunMembers]:
    """A partition's members of each wanted event (a worker runs this)."""
    scored = _scored(url, lo, hi, reach, groups, s, ps, upto)
    if scored is None:
        return [RunMembers(pd.DataFrame(columns=MEMBER_COLUMNS), 0, 0.0, 0.0) for _ in wanted]
    mv, parts = scored
    mine = {(p.metric, p.cohort): p for p in parts}
    aligned = [mine.get(k, Population(k[0], k[1], np.zeros(0, dtype=np.intp))) for k in labels]
    return [run_members(mv, aligned, r, ps) for r in wanted]


def population(ws: Workspace, reads: Reads
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The population pass of ``reads``, as :func:`tracker.detect.population.
    population_pass` finds it over the same matrix. The partitions' sums come from
    the daily detection of this run when it computed exactly these (its tasks read
    each slice once for both steps); a cluster is started only for what is left."""
    global _ahead
    s, ps = ws.settings.detect, ws.settings.population
    ask = _ask(ws, reads)
    ranges = partitions(series_ids(ws.store), s.partition_size) if ask is not None else []
    if ask is None or not ranges:
        return pd.DataFrame(columns=SHARE_COLUMNS), *event_rows([], [])
    reach, last_id = ask.reach, alert_store.last_observation_id(ws.store)
    ready = _ahead[1] if _ahead is not None and \
        _ahead[0] == _ahead_key(ws, ask, ranges, last_id) else None
    _ahead = None
    one = s.model_copy(update={"workers": 1})
    lo, hi = [a for a, _ in ranges], [b for _, b in ranges]
    with contextlib.ExitStack() as stack:
        c = shared = None
        if ready is None:
            c = stack.enter_context(client(s))
            shared = c.scatter(ask.groups, broadcast=True)
            ready = c.gather(c.map(population_task, [ws.store.url] * len(ranges), lo, hi,
                                   reach=reach, groups=shared, s=one, ps=ps, upto=last_id,
                                   pure=False))
        labels, total, index = _summed(ready, group_names(reads.cohorts, reads.industries),
                                       ps, reach.first_day)
        pops = [Population(m, g, np.zeros(0, dtype=np.intp)) for m, g in labels]
        daily = shares_of(total, pops, index, ps)
        judge = None if reads.judge_from is None else pd.Timestamp(reads.judge_from)
        wanted = runs(pops, daily, None if judge is None else judge - pd.Timedelta(days=1))
        if not wanted:
            return daily, *event_rows(pops, [])
        if c is None:  # the sums came from the detection's tasks
            c = stack.enter_context(client(s))
            shared = c.scatter(ask.groups, broadcast=True)
        found = c.gather(c.map(members_task, [ws.store.url] * len(ranges), lo, hi,
                               reach=reach, groups=shared, s=one, ps=ps, labels=labels,
                               wanted=wanted, upto=last_id, pure=False))
    merged = []
    for i, run in enumerate(wanted):
        got = RunMembers.combine([f[i] for f in found])
        # in the local window's column order: by company, metric, source
        got.members = got.members.sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)
        merged.append((run, [got]))
    return daily, *event_rows(pops, merged)


def _summed(parts: list[PartTally], group_order: list[str], ps: PopulationSettings,
            first_day: int) -> tuple[list[tuple[str, str | None]], Tally, pd.DatetimeIndex]:
    """The populations (as :func:`tracker.detect.population.populations` lists them:
    each metric, then its cohorts and industries with ``min_series`` series), their
    summed tallies, and the days any partition saw."""
    sizes: dict[tuple[str, str | None], int] = {}
    for p in parts:
        for label, n in zip(p.labels, p.sizes, strict=True):
            sizes[label] = sizes.get(label, 0) + int(n)
    labels = population_labels(sizes, group_order, ps.min_series)
    where = {k: i for i, k in enumerate(labels)}
    n_days = parts[0].seen.size
    total = Tally.zeros(len(labels), n_days)
    seen = np.zeros(n_days, dtype=bool)
    for p in parts:
        seen |= p.seen
        mine = [(j, where[k]) for j, k in enumerate(p.labels) if k in where]
        if mine:
            src, dst = (np.asarray(x) for x in zip(*mine, strict=True))
            total.add_rows(dst, p.tally.rows(src))
    days = np.flatnonzero(seen)
    index = pd.DatetimeIndex((first_day + days).astype("datetime64[D]").astype("datetime64[ns]"))
    return labels, total.days(days), index
