"""detect() over a whole history and detect_day() for one new day, sharing one pipeline.

Pipeline: log counts -> weekly adjustment (seasonal.py) -> observation packing
(matrix.py) -> robust scale (scale.py) -> change test and verdicts (shifts.py),
plus drift (drift.py) on the unadjusted counts. Every stage is causal with a
bounded past, so detect_day can run the same code on a trailing slice and get
exactly the rows a full run would give for that day.

Series are independent, so both entry points work on column chunks of a few
thousand series (bounded memory whatever N is; forked workers when many) and
statistics are computed only where a change is big enough to need them. detect_day
also skips the whole shift pipeline for series that cannot have a verdict today.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from . import drift as drift_mod
from .matrix import Packed, day_numbers, log_counts, pack, rows_at_or_after, to_timestamps
from .scale import cell_stats, changes, row_stats
from .seasonal import _block_days, deseasonalize
from .settings import DetectSettings
from .shifts import GLITCH, OPEN, Verdicts, big_moves, change_test, scan, sync_rows

#: Cells (days x series) processed at a time; see :func:`_chunks`.
_CHUNK_CELLS = 1_500_000

COLUMNS = ["series", "date", "detected_on", "confirmed_on", "kind", "status", "change_pct",
           "value_before", "value_after", "score", "severity"]


def empty_frame() -> pd.DataFrame:
    """The output schema with no rows (typed, so concatenation and filtering keep dtypes)."""
    return _frame({c: [] for c in COLUMNS})


def _frame(cols: dict[str, object]) -> pd.DataFrame:
    df = pd.DataFrame(cols, columns=COLUMNS)
    for c in ("date", "detected_on", "confirmed_on"):
        df[c] = pd.to_datetime(df[c]).astype("datetime64[ns]")
    for c in ("change_pct", "value_before", "value_after", "score"):
        df[c] = df[c].astype(np.float64)
    df["series"] = df["series"].astype(object)
    for c in ("kind", "status", "severity"):
        df[c] = df[c].astype(object)
    return df


def _check(matrix: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Day numbers and float values, with the input contract enforced in one place."""
    if not isinstance(matrix.index, pd.DatetimeIndex):
        raise TypeError("detect: matrix.index must be a DatetimeIndex of days")
    if not matrix.index.is_monotonic_increasing or matrix.index.has_duplicates:
        raise ValueError("detect: matrix.index must be sorted ascending without duplicate days")
    values = matrix.to_numpy(dtype=np.float64, na_value=np.nan)
    return day_numbers(matrix.index), values


def severity(kind: np.ndarray, change: np.ndarray, score: np.ndarray,
              s: DetectSettings) -> np.ndarray:
    """Glitches are data-quality notes; shifts and drifts are graded by size and certainty."""
    big = (np.abs(change) >= s.critical_change_pct) & (np.abs(score) >= s.critical_score)
    sev = np.where(big, "critical", np.where(np.abs(change) >= s.warning_change_pct,
                                               "warning", "info"))
    sev = np.where(np.char.startswith(kind.astype(str), "drift"),
                   np.where(sev == "critical", "critical", "warning"), sev)
    return np.where(kind == "glitch", "info", sev).astype(object)


@dataclass
class _Shifts:
    p: Packed
    z: np.ndarray
    v: Verdicts


def _shift_rows(names: np.ndarray, r: _Shifts, keep: np.ndarray | None = None) -> dict:
    v = r.v if keep is None else Verdicts(r.v.col[keep], r.v.row[keep], r.v.decided_row[keep],
                                          r.v.outcome[keep])
    c, j = v.col, v.row
    before = r.p.value[j - 1, c]
    after = r.p.value[j, c]
    raw = log_counts(after) - log_counts(before)
    change = 100.0 * np.expm1(raw)
    kind = np.where(v.outcome == GLITCH, "glitch", np.where(raw < 0, "drop", "spike"))
    dec = np.where(v.decided_row >= 0, r.p.day[np.maximum(v.decided_row, 0), c], 2**40)
    return {"series": names[c], "date": to_timestamps(r.p.day[j, c]),
            "detected_on": to_timestamps(r.p.day[j, c]), "confirmed_on": to_timestamps(dec),
            "kind": kind, "status": np.where(v.outcome == OPEN, "provisional", "confirmed"),
            "change_pct": change, "value_before": before, "value_after": after,
            "score": np.abs(r.z[j, c])}


def _drift_rows(names: np.ndarray, dr: drift_mod.Drifts, s: DetectSettings) -> dict:
    day = dr.day.astype(np.int64)
    return {"series": names[dr.col.astype(np.int64)],
            "date": to_timestamps(day - dr.horizon.astype(np.int64) + 1),
            "detected_on": to_timestamps(day), "confirmed_on": to_timestamps(day),
            "kind": np.where(dr.excess < 0, "drift_down", "drift_up"),
            "status": np.full(day.size, "confirmed"), "change_pct": 100.0 * np.expm1(dr.excess),
            "value_before": dr.before, "value_after": dr.after, "score": np.abs(dr.score)}


def _assemble(parts: list[dict], s: DetectSettings) -> pd.DataFrame:
    parts = [p for p in parts if len(p["series"])]
    if not parts:
        return empty_frame()
    cols = {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in COLUMNS[:-1]}
    cols["severity"] = severity(cols["kind"], cols["change_pct"], cols["score"], s)
    df = _frame(cols)
    return df.sort_values(["date", "detected_on", "series"], kind="stable",
                          key=lambda x: x.astype(str) if x.name == "series" else x
                          ).reset_index(drop=True)


def detect(matrix: pd.DataFrame, settings: DetectSettings | None = None) -> pd.DataFrame:
    """Every anomaly in the history, each in the state it has at the end of the matrix."""
    s = settings or DetectSettings()
    days, values = _check(matrix)
    names = np.asarray(matrix.columns, dtype=object)
    if values.size == 0:
        return empty_frame()

    def block(c0: int, c1: int) -> list[dict]:
        return _detect_block(values[:, c0:c1], days, names[c0:c1], s)

    chunks = _chunks(values.shape[0], values.shape[1], s.workers)
    return _assemble([p for parts in _run_chunks(block, chunks, s) for p in parts], s)


#: The job forked workers run (inherited, not pickled: the data never gets copied).
_JOB: Callable[[int, int], Any] | None = None
_PARALLEL_MIN_CHUNKS = 4
T = TypeVar("T")


def _run_job(bounds: tuple[int, int]) -> Any:
    assert _JOB is not None
    return _JOB(*bounds)


def _run_chunks(block: Callable[[int, int], T], chunks: list[tuple[int, int]],
                s: DetectSettings) -> list[T]:
    """``block`` of every column chunk, in chunk order, in ``s.workers`` forked processes if many.

    Forked workers see the caller's arrays without copying them and return only the
    (few) anomaly rows. Fork is only safe in a single-threaded process (a lock held by
    another thread would stay locked in the child), so inside a threaded caller (a
    scheduler), a daemon process or where fork does not exist the chunks run here, one
    after the other, with the same result.
    """
    global _JOB
    workers = min(s.workers, os.cpu_count() or 1, len(chunks))
    if workers > 1 and len(chunks) >= _PARALLEL_MIN_CHUNKS and _JOB is None and \
            "fork" in multiprocessing.get_all_start_methods() and \
            not multiprocessing.current_process().daemon and threading.active_count() == 1:
        _JOB = block
        try:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as ex:
                return list(ex.map(_run_job, chunks))
        finally:
            _JOB = None
    return [block(c0, c1) for c0, c1 in chunks]


def _chunks(n_rows: int, m: int, workers: int = 1) -> list[tuple[int, int]]:
    """Column ranges of at most about ``_CHUNK_CELLS`` cells, as many as a multiple of
    ``workers`` (balanced work). Series are independent, so working on a few thousand
    at a time bounds peak memory whatever N is and keeps temporaries small enough to be
    recycled by the allocator instead of being page-faulted in afresh."""
    step = max(256, _CHUNK_CELLS // max(n_rows, 1))
    n = -(-m // step)
    if n >= _PARALLEL_MIN_CHUNKS and workers > 1:
        n = -(-n // workers) * workers
    step = max(1, -(-m // max(n, 1)))
    return [(c0, min(m, c0 + step)) for c0 in range(0, m, step)]


def _detect_block(values: np.ndarray, days: np.ndarray, names: np.ndarray,
                  s: DetectSettings) -> list[dict]:
    """Shift and drift rows of a group of series over their whole history."""
    y_raw = log_counts(values)
    y_adj, _ = deseasonalize(y_raw, days, s)
    p = pack(y_adj, values, days)
    d, g = changes(p)
    st = row_stats(p, d, g, s, need=big_moves(p, d, s))
    z, exceed, sd = change_test(p, d, g, st, s)
    v = scan(p, exceed, sd, s)
    dr = drift_mod.find_drifts(y_raw, values, days, _long_scale(p, d, g, s), s)
    return [_shift_rows(names, _Shifts(p, z, v)), _drift_rows(names, dr, s)]


def _long_scale(p: Packed, d: np.ndarray, g: np.ndarray, s: DetectSettings
                ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The `window` scale at a few observed cells: what drift needs, on demand."""

    def at(cell_days: np.ndarray, cols: np.ndarray) -> np.ndarray:
        rows = rows_at_or_after(p.day, cols, cell_days)
        out = np.full(rows.size, np.nan)
        ok = rows >= 1  # like row_stats: the first observation has no statistics
        out[ok] = cell_stats(p, d, g, rows[ok], cols[ok], s).long_scale
        return out

    return at


def _history_scale(values: np.ndarray, y_raw: np.ndarray, days: np.ndarray,
                   s: DetectSettings) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The `window` scale at past cells of a few series, from their whole history (as
    detect computes it): drift's episode test on detect_day needs it for the series
    strong today."""

    def at(cell_days: np.ndarray, cols: np.ndarray) -> np.ndarray:
        if cols.size == 0:
            return np.zeros(0)
        u, inv = np.unique(cols, return_inverse=True)
        y_adj, _ = deseasonalize(y_raw[:, u], days, s)
        p = pack(y_adj, values[:, u], days)
        d, g = changes(p)
        return _long_scale(p, d, g, s)(cell_days, inv)

    return at


def _tail_sizes(s: DetectSettings) -> tuple[int, int]:
    """Rows an incremental run re-scans, and observations it needs for their statistics."""
    scan_rows = 4 * (s.confirm_days + 1) + 4
    return scan_rows, scan_rows + max(s.window, s.min_history) + 8


def _day_shifts(y_adj: np.ndarray, values: np.ndarray, days: np.ndarray, day: int,
                s: DetectSettings) -> tuple[_Shifts, np.ndarray, np.ndarray]:
    """Verdicts reached on ``day`` from the last observations of each series.

    Returns the shifts, each series' scale on ``day`` and a mask of series whose
    recent history never went quiet long enough to start a partial scan.
    """
    scan_rows, need = _tail_sizes(s)
    p = pack(y_adj, values, days, tail=need)
    m = values.shape[1]
    if p.n < 2:
        none = np.zeros(0, dtype=np.int64)
        return (_Shifts(p, np.zeros_like(p.y), Verdicts(none, none, none, none)),
                np.full(m, np.nan), np.zeros(m, dtype=bool))
    d, g = changes(p)
    from_row = max(1, p.n - scan_rows)
    need = big_moves(p, d, s)
    need[-1] = True  # today's scale, for drift
    st = row_stats(p, d, g, s, from_row=from_row, need=need)
    z, exceed, sd = change_test(p, d, g, st, s)
    start, ok = sync_rows(exceed, p, from_row, day, s)
    v = scan(p, exceed, sd, s, start_row=start)
    last = p.n - 1
    mine = ok[v.col] & ((v.row == last) | (v.decided_row == last))
    v = Verdicts(v.col[mine], v.row[mine], v.decided_row[mine], v.outcome[mine])
    return _Shifts(p, z, v), st.long_scale[last], ~ok


def detect_day(matrix: pd.DataFrame, day: object,
               settings: DetectSettings | None = None) -> pd.DataFrame:
    """Anomalies whose verdict is reached on ``day``: new provisional ones, confirmations, glitches.

    Equal to the rows of ``detect(matrix.loc[:day])`` with detected_on or confirmed_on
    equal to ``day``, but reads only the trailing days it needs (longer only for
    sparse series), so a daily run over 100,000 series stays within seconds.
    """
    return _detect_day(matrix, day, settings or DetectSettings(), whole=True)[0]


def detect_day_window(window: pd.DataFrame, day: object, settings: DetectSettings | None = None
                      ) -> tuple[pd.DataFrame, list[Any]]:
    """:func:`detect_day` on a trailing slice of the history, as a daily run reads it.

    ``window`` holds every series' observations from at least :func:`window_days`
    before ``day`` (older ones may exist elsewhere). Returns the rows of the series for
    which that is enough, exactly as :func:`detect_day` over the whole history gives
    them, and the columns for which it is not (sparse series, series that never went
    quiet, drifts whose past needs older data): the caller reads those few in full and
    asks :func:`detect_day`. So a daily run reads a bounded window, not the history.
    """
    return _detect_day(window, day, settings or DetectSettings(), whole=False)


def window_days(settings: DetectSettings) -> int:
    """Calendar days before (and including) the day that :func:`detect_day_window` needs."""
    return _day_rows(settings) + 7


def _detect_day(matrix: pd.DataFrame, day: object, s: DetectSettings, whole: bool
                ) -> tuple[pd.DataFrame, list[Any]]:
    ts = pd.Timestamp(day).normalize()
    m0 = matrix.loc[:ts]
    if m0.empty or m0.index[-1] != ts:
        return empty_frame(), []
    days_all, values_all = _check(m0)
    names_all = np.asarray(m0.columns, dtype=object)
    seen_today = np.isfinite(values_all[-1])

    def block(c0: int, c1: int) -> tuple[list[dict], np.ndarray]:
        cols = c0 + np.flatnonzero(seen_today[c0:c1])
        if not cols.size:
            return [], np.zeros(0, dtype=object)
        return _day_block(values_all[:, cols], days_all, names_all[cols], s, whole)

    chunks = _chunks(min(days_all.size, _day_rows(s)), values_all.shape[1], s.workers)
    done = _run_chunks(block, chunks, s)
    parts = [p for chunk_parts, _ in done for p in chunk_parts]
    deep = [n for _, names in done for n in names.tolist()]
    return _assemble(parts, s).reset_index(drop=True), deep


def _day_rows(s: DetectSettings) -> int:
    """Calendar days detect_day reads for a series with regular observations."""
    _, need = _tail_sizes(s)
    refit, fit = _block_days(s)
    return max(need + fit + refit + 21, drift_mod.lookback_days(s))


def _day_block(values_all: np.ndarray, days_all: np.ndarray, names: np.ndarray,
               s: DetectSettings, whole: bool = True) -> tuple[list[dict], np.ndarray]:
    """detect_day's rows for a group of series all observed on the last day, and the
    names of the series that need more history than given (none when ``whole``).

    The shift pipeline runs only for series that can have a verdict today (see
    :func:`may_shift_today`) plus those whose drift test needs today's scale; the
    drift test runs for all. Where a series needs its whole history (sparse, never
    quiet) it is judged over all of ``values_all`` when that is the whole history,
    and returned as needing more otherwise.
    """
    dnum = int(days_all[-1])
    y_all = log_counts(values_all)
    cand = np.flatnonzero(may_shift_today(y_all, s))
    shifts: list[tuple[list[dict], np.ndarray]] = []
    deep = np.zeros(names.size, dtype=bool)

    def scale_today(_days: np.ndarray, big_cols: np.ndarray) -> np.ndarray:
        idx = np.union1d(cand, big_cols).astype(np.int64)
        parts, fallback, sc = _day_shift_parts(values_all[:, idx], y_all[:, idx], days_all,
                                               names[idx], s, whole)
        shifts.append((parts, idx[fallback]))
        return sc[np.searchsorted(idx, big_cols)]

    history_scale = _history_scale(values_all, y_all, days_all, s)

    def past_scale(cell_days: np.ndarray, cols: np.ndarray) -> np.ndarray:
        if not whole:
            deep[cols[~_past_covered(values_all[:, cols], days_all, dnum, s)]] = True
        return history_scale(cell_days, cols)

    lo_d = np.searchsorted(days_all, dnum - drift_mod.lookback_days(s) + 1)
    dr = drift_mod.find_drifts(y_all[lo_d:], values_all[lo_d:], days_all[lo_d:], scale_today, s,
                               only_day=dnum, past_scale=past_scale)
    if not shifts:
        scale_today(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    shift_parts, fallback = shifts[0]
    parts = [*shift_parts, _drift_rows(names, dr, s)]
    if fallback.size and whole:
        # series whose recent history never went quiet: judge them over all their history
        parts = [_select(p, ~np.isin(p["series"], names[fallback])) for p in parts]
        ts = to_timestamps(np.array([dnum]))[0]
        for p in _detect_block(values_all[:, fallback], days_all, names[fallback], s):
            parts.append(_select(p, (np.asarray(p["detected_on"]) == ts)
                                 | (np.asarray(p["confirmed_on"]) == ts)))
    deep[fallback] = not whole
    if deep.any():
        parts = [_select(p, ~np.isin(p["series"], names[deep])) for p in parts]
    return parts, names[deep]


def _past_covered(values: np.ndarray, days: np.ndarray, dnum: int, s: DetectSettings
                  ) -> np.ndarray:
    """Whether a window starting at ``days[0]`` holds what the drift episode test needs.

    The test asks for the `window` scale at days up to the longest horizon before
    ``dnum``. That scale is exact from a window once the weekly adjustment is (blocks
    whose fit lies inside it, from ``days[0]`` + fit + refit on) and the statistics'
    observations are inside that region: at least one observation before the
    earliest anchor minus `window`, and ``min_history`` + 1 before the anchor.
    """
    refit, fit = _block_days(s)
    exact_from = int(days[0]) + (fit + refit if s.seasonal == "auto" else 0)
    anchor = dnum - max(drift_mod.all_horizons(s)) - 6
    ok = np.isfinite(values)
    first = days >= exact_from
    before_window = ok[first & (days < anchor - s.window)].sum(axis=0)
    before_anchor = ok[first & (days < anchor)].sum(axis=0)
    return (before_window >= 1) & (before_anchor >= s.min_history + 1)


def may_shift_today(y_all: np.ndarray, s: DetectSettings) -> np.ndarray:
    """Series that can have a shift verdict on the last row of ``y_all`` (log counts).

    A candidate decided today was opened at most ``confirm_days`` observations ago
    (until then every observation found it not yet due), and opening needs a raw
    change of at least ``min_change_pct``. So a series whose last ``confirm_days`` + 1
    changes are all smaller cannot have a row today, whatever its history: the rest
    of the pipeline can skip it. Conservative where fewer observations are at hand.
    """
    k = s.confirm_days + 2
    tail = y_all[-min(y_all.shape[0], 8 * k):]
    valid = ~np.isnan(tail)
    order = np.argsort(valid, axis=0, kind="stable")[-k:]
    last = np.take_along_axis(tail, order, axis=0)
    with np.errstate(invalid="ignore"):
        moved = (np.abs(np.diff(last, axis=0)) >= np.log1p(s.min_change_pct / 100.0)).any(axis=0)
    return moved | (valid.sum(axis=0) < k)


def _day_shift_parts(values_all: np.ndarray, y_all: np.ndarray, days_all: np.ndarray,
                     names: np.ndarray, s: DetectSettings, whole: bool = True
                     ) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """Shift rows of ``day`` from the trailing days, a mask of series that need their
    whole history instead (never quiet; or, when ``values_all`` is only a window, too
    few observations in it), and each series' scale today."""
    dnum = int(days_all[-1])
    m = values_all.shape[1]
    scale_today = np.full(m, np.nan)
    fallback = np.zeros(m, dtype=bool)
    if m == 0:
        return [], fallback, scale_today
    _, need = _tail_sizes(s)
    refit, fit = _block_days(s)
    lcal = need + fit + refit + 21
    lo = np.searchsorted(days_all, dnum - lcal + 1)
    days, values = days_all[lo:], values_all[lo:]
    e_start = int(days[0]) + (fit + refit if s.seasonal == "auto" else 0)
    y_adj, _ = deseasonalize(y_all[lo:], days, s, from_day=e_start)
    in_e = days >= e_start
    count_e = np.isfinite(values[in_e]).sum(axis=0)
    complete = count_e >= need
    if whole:  # a series with nothing older than the region has all it needs
        complete |= ~np.isfinite(values_all[: lo + int(np.argmax(in_e))]).any(axis=0)
    else:
        fallback |= ~complete
    parts: list[dict] = []
    for mask, full in ((complete, False), (~complete, True)):
        idx = np.flatnonzero(mask)
        if idx.size == 0 or (full and not whole):
            continue
        if full:
            ya, _ = deseasonalize(y_all[:, idx], days_all, s)
            r, sc, bad = _day_shifts(ya, values_all[:, idx], days_all, dnum, s)
        else:
            r, sc, bad = _day_shifts(y_adj[in_e][:, idx], values[in_e][:, idx], days[in_e],
                                     dnum, s)
        parts.append(_shift_rows(names[idx], r))
        scale_today[idx] = sc
        fallback[idx[bad]] = True
    return parts, fallback, scale_today


def _select(part: dict, keep: np.ndarray) -> dict:
    return {k: np.asarray(v)[keep] for k, v in part.items()}
