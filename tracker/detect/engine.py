"""detect() over a whole history and detect_day() for one new day, over every detector.

The engine owns what is not a detector: the input contract, column chunks (forked
workers when many), the per-day fallback to a batch run, severity and the output
frame. Detectors (:mod:`.registry`; the seam is :mod:`.base`) find rows over a
block of series given with its shared preparation (:mod:`.context`). Every detector
is causal with a bounded past, so detect_day can run the same code on a trailing
slice and get exactly the rows a full run would give for that day.

Series are independent, so both entry points work on column chunks of a few
thousand series (bounded memory whatever N is; forked workers when many), and
detect_day gives each detector only the series observed that day.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from . import registry
from .base import COLUMNS, ROW_COLUMNS, Detector, Rows, rows_on, select
from .context import Block, DayBlock
from .matrix import day_numbers
from .settings import DetectSettings, SeverityPolicy

__all__ = ["COLUMNS", "detect", "detect_day", "detect_day_window", "empty_frame", "severity",
           "window_days"]

#: Cells (days x series) processed at a time; see :func:`_chunks`.
_CHUNK_CELLS = 1_500_000


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
             s: SeverityPolicy) -> np.ndarray:
    """Glitches are data-quality notes; shifts and drifts are graded by size and certainty."""
    big = (np.abs(change) >= s.critical_change_pct) & (np.abs(score) >= s.critical_score)
    sev = np.where(big, "critical", np.where(np.abs(change) >= s.warning_change_pct,
                                               "warning", "info"))
    sev = np.where(np.char.startswith(kind.astype(str), "drift"),
                   np.where(sev == "critical", "critical", "warning"), sev)
    return np.where(kind == "glitch", "info", sev).astype(object)


def _assemble(parts: list[Rows], s: DetectSettings) -> pd.DataFrame:
    parts = [p for p in parts if len(p["series"])]
    if not parts:
        return empty_frame()
    cols = {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in ROW_COLUMNS}
    cols["severity"] = severity(cols["kind"], cols["change_pct"], cols["score"],
                                s.severity)
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

    def block(c0: int, c1: int) -> list[Rows]:
        return _detect_block(values[:, c0:c1], days, names[c0:c1], s)

    chunks = _chunks(values.shape[0], values.shape[1], s.execution.workers)
    return _assemble([p for parts in _run_chunks(block, chunks, s) for p in parts], s)


#: The job forked workers run (inherited, not pickled: the data never gets copied).
_JOB: Callable[[int, int], Any] | None = None
_PARALLEL_MIN_CHUNKS = 4
T = TypeVar("T")
#: Background threads that are safe to fork beside: each holds its lock whenever it
#: does anything but wait (see :func:`fork_quiet`).
_QUIET: weakref.WeakKeyDictionary[threading.Thread, threading.Lock] = \
    weakref.WeakKeyDictionary()


def fork_quiet(thread: threading.Thread, busy: threading.Lock) -> None:
    """Declare a background thread safe to fork beside.

    Fork copies only the forking thread, so a lock another thread holds at that
    moment (a pool's, a driver's) stays locked forever in the child. A thread that
    holds ``busy`` around everything it does but waiting lets the engine fork anyway:
    it takes ``busy`` while it forks, so the thread is idle then. The daily job's
    lease renewer is one; without this, every ``tracker run`` judged its chunks on one
    core (a million series: some 40 s more)."""
    _QUIET[thread] = busy


def _may_fork() -> bool:
    me = threading.current_thread()
    return all(t is me or t in _QUIET for t in threading.enumerate())


@contextlib.contextmanager
def _quieted() -> Iterator[None]:
    """The quiet threads kept idle (their locks held) for the block."""
    with contextlib.ExitStack() as stack:
        for t in list(_QUIET.keys()):
            if t.is_alive():
                stack.enter_context(_QUIET[t])
        yield


def _run_job(bounds: tuple[int, int]) -> Any:
    assert _JOB is not None
    return _JOB(*bounds)


def _run_chunks(block: Callable[[int, int], T], chunks: list[tuple[int, int]],
                s: DetectSettings) -> list[T]:
    """``block`` of every column chunk, in chunk order, in ``s.workers`` forked processes if many.

    Forked workers see the caller's arrays without copying them and return only the
    (few) anomaly rows. Fork is only safe beside threads that hold no lock at that
    moment (one held would stay locked in the child): the caller's only, or those
    declared with :func:`fork_quiet`. Inside another threaded caller (a scheduler), a
    daemon process or where fork does not exist the chunks run here, one after the
    other, with the same result.
    """
    global _JOB
    workers = min(s.execution.workers, os.cpu_count() or 1, len(chunks))
    if workers > 1 and len(chunks) >= _PARALLEL_MIN_CHUNKS and _JOB is None and \
            "fork" in multiprocessing.get_all_start_methods() and \
            not multiprocessing.current_process().daemon and _may_fork():
        _JOB = block
        try:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as ex:
                with _quieted():  # a fork-context pool forks all its workers at the first submit
                    futures = [ex.submit(_run_job, c) for c in chunks]
                return [f.result() for f in futures]
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


def _detect_block(values: np.ndarray, days: np.ndarray, names: np.ndarray, s: DetectSettings,
                  detectors: Sequence[Detector] | None = None) -> list[Rows]:
    """Every detector's rows for a group of series over their whole history."""
    block = Block(values, days, names, s)
    return [d.batch(block) for d in (registry.detectors() if detectors is None else detectors)]


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


def judge_days(window: pd.DataFrame, days: Any, settings: DetectSettings, *, complete: bool
               ) -> tuple[list[pd.DataFrame], dict[pd.Timestamp, list[Any]]]:
    """A daily run's verdicts of ``days`` over a trailing ``window``: one frame per day
    (column ``_judged``), and per day the columns the window is not enough for (to be
    judged again over their whole history). ``complete``: the window holds the whole
    history, so every day is judged in full. One loop for the local and the Dask engine.
    """
    parts: list[pd.DataFrame] = []
    deep: dict[pd.Timestamp, list[Any]] = {}
    for d in days:
        if complete:
            parts.append(detect_day(window, d, settings).assign(_judged=d))
            continue
        rows, need = detect_day_window(window, d, settings)
        parts.append(rows.assign(_judged=d))
        if need:
            deep[d] = need
    return parts, deep


def window_days(settings: DetectSettings) -> int:
    """Calendar days before (and including) the day that :func:`detect_day_window` needs."""
    return _day_rows(settings) + 7


def _day_rows(s: DetectSettings) -> int:
    """Calendar days detect_day reads for a series with regular observations."""
    return max(d.lookback_days(s) for d in registry.detectors())


def _detect_day(matrix: pd.DataFrame, day: object, s: DetectSettings, whole: bool
                ) -> tuple[pd.DataFrame, list[Any]]:
    ts = pd.Timestamp(day).normalize()
    m0 = matrix.loc[:ts]
    if m0.empty or m0.index[-1] != ts:
        return empty_frame(), []
    days_all, values_all = _check(m0)
    names_all = np.asarray(m0.columns, dtype=object)
    seen_today = np.isfinite(values_all[-1])

    def block(c0: int, c1: int) -> tuple[list[Rows], np.ndarray]:
        cols = c0 + np.flatnonzero(seen_today[c0:c1])
        if not cols.size:
            return [], np.zeros(0, dtype=object)
        return _day_block(values_all[:, cols], days_all, names_all[cols], s, whole)

    chunks = _chunks(min(days_all.size, _day_rows(s)), values_all.shape[1], s.execution.workers)
    done = _run_chunks(block, chunks, s)
    parts = [p for chunk_parts, _ in done for p in chunk_parts]
    deep = [n for _, names in done for n in names.tolist()]
    return _assemble(parts, s).reset_index(drop=True), deep


def _day_block(values_all: np.ndarray, days_all: np.ndarray, names: np.ndarray,
               s: DetectSettings, whole: bool = True) -> tuple[list[Rows], np.ndarray]:
    """detect_day's rows for a group of series all observed on the last day, and the
    names of the series that need more history than given (none when ``whole``).

    Every detector judges the day from what it needs of the block. Series that one
    of them could not judge from the trailing days (sparse, never quiet, a past
    the window does not cover) lose every detector's rows: when ``values_all`` is the
    whole history they are judged in a batch run over it (the reference the day path
    must equal), otherwise they are returned for the caller to read in full.
    """
    detectors = registry.detectors()
    block = DayBlock(values_all, days_all, names, s, whole)
    parts = [d.day(block) for d in detectors]
    deep = block.deep
    if not deep.any():
        return parts, names[:0]
    parts = [select(p, ~np.isin(p["series"], names[deep])) for p in parts]
    if not whole:
        return parts, names[deep]
    cols = np.flatnonzero(deep)
    for p in _detect_block(values_all[:, cols], days_all, names[cols], s, detectors):
        parts.append(rows_on(p, int(days_all[-1])))
    return parts, names[:0]
