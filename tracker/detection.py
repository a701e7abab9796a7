"""Detection over the store: which days need verdicts, what they must read, and the verdicts.

Two entry points, one rule set (``tracker.detect``):

- :func:`run_detection` judges a whole stored history (or what was known at a time)
  in one vectorized pass: what a researcher, an import of years of history or the
  first run of a new store needs.
- :func:`detect_new` is the daily path. The store keeps a *detection mark* (the last
  day judged, the last observation seen). A run judges only the days whose verdicts
  can have changed since: the days after the mark, and the days of observations
  written after it (late data, corrections). For each such day it reads a trailing
  window of :func:`tracker.detect.engine.window_days` (a year) for all series, and
  the whole history of only the few series the window does not suffice for (monthly
  series, series that never went quiet). Its cost follows the number of companies,
  not the length of the history, and its verdicts are exactly those of a full pass
  (``detect_day`` equals the batch detector; tests prove both).

Both hand their verdicts to :func:`tracker.alerts.save_verdicts`, with the days they
judged (:class:`tracker.store.alerts.Judged`): a stored alert of those days that the
detector no longer finds (its data were corrected) is withdrawn, not left as it was.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from tracker.alerts import DetectionResult, day_of, save_verdicts
from tracker.detect import detect, detect_day
from tracker.detect.engine import empty_frame, judge_days, window_days
from tracker.records import Alert, StepOutcome
from tracker.store import alerts as alert_store
from tracker.store import window_cache
from tracker.store.latest import Latest, LatestMatrix, latest_matrix, latest_values
from tracker.store.latest import day_number as _day_number
from tracker.store.latest import names as latest_names
from tracker.workspace import Workspace

KEY_COLUMNS = ["company", "metric", "source"]


def build_matrix(
    ws: Workspace, *, companies: list[str] | None = None, known_at: datetime | None = None,
    until: date | None = None, since: date | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Dates x series matrix of the latest known values, and its column keys.

    Columns are integers indexing ``keys`` (company, metric, source), sorted by
    those, so series names never have to be parsed back out of strings. The
    latest values come through the store's fast reader; a point in time
    (``known_at``) needs the general one.
    """
    if known_at is not None:
        return matrix_of(ws.store.observations(companies, known_at=known_at, until=until,
                                               since=since))
    if companies is None:  # the whole store: read day by day, never every row at once
        m = latest_matrix(ws.store, first_day=None if since is None else _day_number(since),
                          last_day=None if until is None else _day_number(until))
        return _from_window(ws, m, m.first_day, m.first_day + m.values.shape[0] - 1,
                            own=True)
    return _matrix_of_latest(latest_values(ws.store, since=since, until=until,
                                           companies=companies))


def _matrix_of_latest(latest: Latest) -> tuple[pd.DataFrame, pd.DataFrame]:
    if not len(latest):
        return pd.DataFrame(dtype="float64"), pd.DataFrame(columns=KEY_COLUMNS)
    series_id, source_id, col = latest.columns()
    days, row = latest.day_rows()
    by_name, keys = _name_order(series_id, source_id, (latest.series_names,
                                                       latest.source_names))
    place = np.empty_like(by_name)
    place[by_name] = np.arange(by_name.size)
    values = np.full((days.size, series_id.size), np.nan)
    values[row, place[col]] = latest.value  # filled in key order: no reordered copy
    return _framed(values, days, keys)


def _name_order(series_id: np.ndarray, source_id: np.ndarray,
                names: tuple[dict[int, tuple[str, str]], dict[int, str]]
                ) -> tuple[np.ndarray, pd.DataFrame]:
    """The order of the (series, source) columns by (company, metric, source), and
    the keys in that order."""
    series_names, source_names = names
    pairs = [series_names[a] for a in series_id.tolist()]
    keys = pd.DataFrame({"company": [c for c, _ in pairs], "metric": [m for _, m in pairs],
                         "source": [source_names[b] for b in source_id.tolist()]})
    # sorted as columns (code point order, as Python's tuple sort): at a million
    # columns, tuples and a frame built from them cost some 5 s per read
    by_name = keys.sort_values(KEY_COLUMNS, kind="stable").index.to_numpy(dtype=np.intp)
    return by_name, keys.take(by_name).reset_index(drop=True)


def _framed(values: np.ndarray, days: np.ndarray, keys: pd.DataFrame
            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The (days x columns) matrix over ``values`` (not copied), and its keys."""
    index = pd.DatetimeIndex(np.asarray(days).astype("datetime64[D]").astype("datetime64[ns]"))
    return pd.DataFrame(values, index=index, columns=range(len(keys)), copy=False), keys


def _window(ws: Workspace, p: Plan, first: date, day: date
            ) -> tuple[pd.DataFrame, pd.DataFrame, window_cache.Window]:
    """The detection window [first, day]: the stored one brought up to date with the
    observations written since, or read afresh when there is none that fits."""
    keep = _day_number(_keep_from(ws, first))
    win = window_cache.load(ws.store)
    if win is None or p.mark is None or win.last_observation != p.mark.last_observation \
            or win.first_day > keep:
        win = window_cache.Window.read(ws.store, keep, p.last_observation)
    else:
        win.apply(ws.store, p.last_observation)
        win.trim(keep)
    matrix, keys = _from_window(ws, win, _day_number(first), _day_number(day))
    return matrix, keys, win


def _next_keep(ws: Workspace, last: date) -> date:
    """How far back the window of the daily run after ``last`` reaches (what a full
    pass on the Dask engine stores each partition's window from)."""
    start = last + timedelta(days=1)
    return _keep_from(ws, start - timedelta(days=window_days(ws.settings.detect) - 1))


def _keep_from(ws: Workspace, first: date) -> date:
    """How far back the kept window reaches: the detection's ``first`` day, and the
    population step's baseline before it, so that step reads no observations."""
    if ws.settings.population.enabled:
        from tracker.population import read_from

        # ``first`` is the detection's read of the days from ``start``
        return read_from(ws, first + timedelta(days=window_days(ws.settings.detect) - 1))
    return first


def _from_window(ws: Workspace, win: window_cache.Window | LatestMatrix, lo: int, hi: int,
                 *, own: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The days [lo, hi] of the window as :func:`build_matrix` gives them: the days and
    series with a value in that range only, columns in key order.

    ``own``: the caller hands the window's matrix over (a read of its own, not the
    kept window), so when every column of it is wanted it is put in key order (and
    the days without a value dropped) in place, row by row: a whole-store read then
    holds one matrix, not two (a million series over a year and a quarter: 3.6 GB
    less at the peak)."""
    start = max(lo - win.first_day, 0)
    vals = win.values[start: max(hi - win.first_day + 1, 0)]
    seen = np.isfinite(vals)
    cols, rows = np.flatnonzero(seen.any(axis=0)), np.flatnonzero(seen.any(axis=1))
    del seen
    if not rows.size:
        return pd.DataFrame(dtype="float64"), pd.DataFrame(columns=KEY_COLUMNS)
    by_name, keys = _name_order(win.series_id[cols], win.source_id[cols],
                                latest_names(ws.store))
    days = win.first_day + start + rows
    if own and cols.size == vals.shape[1]:
        for i, r in enumerate(rows.tolist()):  # r >= i: a row is read before it is written
            vals[i] = vals[r, by_name]  # one row's temporary at a time
        return _framed(vals[: rows.size], days, keys)
    # one copy of the window's part, rows and columns picked and ordered at once
    return _framed(vals[np.ix_(rows, cols[by_name])], days, keys)


def window_matrix(ws: Workspace, since: date, until: date
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``build_matrix(ws, since=since, until=until)``, from the kept detection window
    when it holds exactly what the store holds now (the daily run's steps after
    detection), else read from the observations."""
    win = window_cache.load(ws.store)
    if win is not None and win.first_day <= _day_number(since) \
            and win.last_observation == alert_store.last_observation_id(ws.store):
        return _from_window(ws, win, _day_number(since), _day_number(until))
    return build_matrix(ws, since=since, until=until)


def matrix_of(obs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`build_matrix` from observation rows already read."""
    if obs.empty:
        return pd.DataFrame(dtype="float64"), pd.DataFrame(columns=KEY_COLUMNS)
    codes, uniques = pd.factorize(pd.MultiIndex.from_frame(obs[KEY_COLUMNS]))
    keys = pd.DataFrame(list(uniques), columns=KEY_COLUMNS)
    day_codes, days = pd.factorize(obs["as_of"], sort=True)
    values = np.full((len(days), len(keys)), np.nan)
    values[day_codes, codes] = obs["value"].to_numpy(dtype="float64")
    matrix = pd.DataFrame(values, index=pd.DatetimeIndex(days), columns=range(len(keys)))
    return matrix, keys


def run_detection(
    ws: Workspace, *, companies: list[str] | None = None, since: date | None = None,
    known_at: datetime | None = None, until: date | None = None,
) -> DetectionResult:
    """Detect over the whole stored history and upsert the alerts; returns what changed.

    ``since`` limits which anomalies are stored (by first day), not the history the
    detector sees: it always judges each day against its full trailing window. A
    pass over everything known now also moves the detection mark, so the next daily
    run starts from there.
    """
    ids = [ws.store.company_id(c) for c in companies] if companies else None
    whole = companies is None and since is None and known_at is None
    last_id = alert_store.last_observation_id(ws.store) if whole else 0
    if ws.settings.detect.engine == "dask" and companies is None and known_at is None:
        from tracker import dask_engine

        found, n_series, last = dask_engine.detect_history(
            ws, until=until, mark=last_id if whole else None,
            keep_from=functools.partial(_next_keep, ws))
        if last is None:
            return DetectionResult(pd.DataFrame(), pd.DataFrame())
    else:  # a few companies or a past state of knowledge: small, or a research question
        matrix, keys = build_matrix(ws, companies=ids, known_at=known_at, until=until)
        if matrix.empty:
            return DetectionResult(pd.DataFrame(), pd.DataFrame())
        found = detect(matrix, ws.settings.detect).join(keys, on="series")
        n_series, last = matrix.shape[1], matrix.index[-1].date()
    if since is not None:
        found = found[found["date"] >= pd.Timestamp(since)]
    mark = None
    through = until or last
    if whole:
        old = alert_store.load_mark(ws.store)
        if old is None or through >= old.through:
            mark = alert_store.DetectionMark(through, last_id)
    if known_at is None:
        judged = alert_store.Judged(through, since=since,
                                    company_ids=tuple(ids) if ids else None,
                                    cause="a detection pass over the whole history")
    else:  # a past state of knowledge restates alerts; it is no evidence against others
        judged = alert_store.Judged(through, withdraw=False,
                                    cause=f"a detection pass over what was known at {known_at}")
    return save_verdicts(ws, found.reset_index(drop=True), series=n_series, mark=mark,
                         judged=judged, known_at=known_at)


@dataclass(frozen=True)
class Plan:
    """The days a daily run must judge: [start, end], or everything when ``start`` is None."""

    start: date | None
    end: date
    last_observation: int
    mark: alert_store.DetectionMark | None


def plan(ws: Workspace, day: date) -> Plan:
    """Which days' verdicts can have changed since the detection mark.

    The days after the mark up to ``day``, and back to the earliest day of any
    observation written since (a correction or late data for an old day). With no
    mark, or more days than a window (an import of history), everything.
    """
    last_id = alert_store.last_observation_id(ws.store)
    mark = alert_store.load_mark(ws.store)
    if mark is None:
        return Plan(None, day, last_id, None)
    start = mark.through + timedelta(days=1)
    if last_id > mark.last_observation:
        earliest = alert_store.earliest_day_since(ws.store, mark.last_observation)
        if earliest is not None:
            start = min(start, earliest)
    start = min(start, day)
    if (day - start).days >= window_days(ws.settings.detect):
        return Plan(None, day, last_id, mark)
    return Plan(start, day, last_id, mark)


def detect_new(ws: Workspace, day: date, *, population_next: bool = False) -> DetectionResult:
    """The daily detection: verdicts of the days that can have changed, saved as alerts.

    ``population_next``: the population step of the same day follows (the main job).
    On the Dask engine the tasks then read their slices once for both steps."""
    p = plan(ws, day)
    if p.start is None:
        return run_detection(ws, until=day)
    s = ws.settings.detect
    read_from = p.start - timedelta(days=window_days(s) - 1)
    if s.engine == "dask":
        from tracker import dask_engine
        from tracker.population import next_reads

        found, n_series = dask_engine.detect_days(
            ws, p.start, day, read_from,
            population=next_reads(ws, day) if population_next else None)
        win = None  # each task read its own window; the stored one is left to expire
    else:
        found, n_series, win = _judge_days(ws, p, day, read_from)
    if not len(found):
        found = found.assign(**{c: pd.Series(dtype=object) for c in KEY_COLUMNS})
    mark = None
    if p.mark is None or day >= p.mark.through:
        mark = alert_store.DetectionMark(day, p.last_observation)
    late = p.mark is not None and p.start <= p.mark.through
    cause = (f"observations of {p.start} or later were added or corrected after the last "
             "detection" if late else "")
    return save_verdicts(ws, found, series=n_series, mark=mark,
                         window=win if mark is not None else None,
                         neighbours_from=p.start - timedelta(days=31),
                         judged=alert_store.Judged(day, first_detected=p.start, cause=cause))


def _judge_days(ws: Workspace, p: Plan, day: date, read_from: date
                ) -> tuple[pd.DataFrame, int, window_cache.Window]:
    """The local engine's verdicts of the days [p.start, day], in the order judged, the
    number of columns of the window, and the window (kept for the next run)."""
    s = ws.settings.detect
    window, keys, win = _window(ws, p, read_from, day)
    days = [d for d in pd.date_range(p.start, day) if d in window.index] \
        if not window.empty else []
    whole = alert_store.first_observation_day(ws.store)
    complete = whole is None or whole >= read_from
    parts, deep = judge_days(window, days, s, complete=complete)
    if deep:
        parts += _deep_verdicts(ws, keys, deep, whole)
    # in the order the days were judged: a later verdict about an alert is its newer state
    found = (pd.concat(parts, ignore_index=True).sort_values("_judged", kind="stable")
             .drop(columns="_judged").reset_index(drop=True)) if parts else empty_frame()
    if len(found):
        found = found.join(keys, on="series")
    return found, window.shape[1], win


def _deep_verdicts(ws: Workspace, keys: pd.DataFrame, deep: dict[pd.Timestamp, list[int]],
                   first_day: date | None) -> list[pd.DataFrame]:
    """detect_day over the whole history of the few series a window did not suffice for.

    The matrix starts on the store's first day, as a full pass's does (the weekly
    adjustment's first block depends on it), and its columns are renumbered back to
    the window's.
    """
    cols = sorted({c for need in deep.values() for c in need})
    wanted = keys.loc[cols]
    matrix, sub_keys = build_matrix(ws, companies=sorted(set(wanted["company"])),
                                    until=max(deep).date())
    index = pd.MultiIndex.from_frame(sub_keys)
    pos = index.get_indexer(pd.MultiIndex.from_frame(wanted))
    matrix = matrix[pos]
    matrix.columns = cols
    if first_day is not None and pd.Timestamp(first_day) < matrix.index[0]:
        matrix = matrix.reindex(matrix.index.union([pd.Timestamp(first_day)]))
    out = []
    for d, need in sorted(deep.items()):
        out.append(detect_day(matrix[need], d, ws.settings.detect).assign(_judged=d))
    return out


def detect_step(ws: Workspace, day: date, run_id: int) -> StepOutcome:
    """The main job's detection step: judge the new days, return the new alerts.

    Each carries ``fresh``: False for backfill (first detected more than
    ``[alerts] fresh_days`` before ``day``), which the job stores but does not count.
    Alerts withdrawn because their data changed are said in the summary line.
    """
    result = detect_new(ws, day, population_next=True)  # the job's next steps include it
    new = new_alerts(result, day, ws.settings.alerts.fresh_days)
    notes = [f"{result.withdrawn} alert(s) withdrawn: their data changed"] \
        if result.withdrawn else []
    return StepOutcome(new_alerts=new, notes=notes,
                       details={"withdrawn": result.withdrawn} if result.withdrawn else {})



def new_alerts(result: DetectionResult, day: date, fresh_days: int) -> list[Alert]:
    """The new alerts of a detection as records, each ``fresh`` unless backfill."""
    fresh = set(result.fresh(day, fresh_days)["fingerprint"]) if len(result.new) else set()
    # a new alert's review status is "open"; the detector's word is its verdict
    days = ("date", "detected_on", "confirmed_on")
    return [Alert.from_mapping({**r, "status": "open", "fresh": r["fingerprint"] in fresh,
                                **{c: day_of(r[c]) for c in days}})
            for r in result.new.to_dict("records")]
