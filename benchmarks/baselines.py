"""Peers the tracker's detector is compared with in benchmarks/detect_eval.py.

Each peer takes the same dates x series matrix and returns the same detections frame
as ``tracker.detect.detect`` (columns ``tracker.detect.COLUMNS``), so one scorer
scores them all. Peers only report level shifts: a change point becomes a ``drop``
or a ``spike`` by the sign of the level change; they know no glitches and no drifts.

* ``pelt`` and ``binseg``: ruptures (``pip install ruptures``), offline, on each
  series' log counts (observed days only, floored at 0.5 like the detector), cost
  ``"l2"`` (piecewise-constant mean), ``min_size=2`` (ruptures' default) and
  ``jump=1`` (ruptures' default is 5, which only considers every fifth day as a
  change point and would date most changes outside a 3-day tolerance).
  Penalty: the one ruptures documents for mean shifts with the l2 cost, the BIC
  ``pen = sigma**2 * log(n) * d`` (the Binseg and Pelt user-guide examples,
  ``algo.predict(pen=np.log(n) * dim * sigma**2)``, and the author's answer in
  ruptures issue #4: "detecting mean-shifts with BIC yields ``bic =
  sigma*sigma*np.log(T)*d``"; he adds that BIC tends to be low, and it is here too).
  ``n`` is the number of observations, ``d = 1``, and ``sigma`` the noise standard
  deviation, estimated robustly as ``1.4826 * MAD(diff(x)) / sqrt(2)`` (a level
  shift or a trend barely moves the MAD of day-to-day changes); where that is 0 (a
  small company flat for weeks) the plain ``std(diff(x)) / sqrt(2)``. The l2 cost
  is computed from cumulative sums (:class:`CostL2Sums`): the same values as
  ruptures' ``CostL2``, so the same change points, about 5x (Pelt) to 50x (Binseg)
  faster. Being offline, they see the whole history: ``detected_on`` is set to the
  change's own date, and their delay is not comparable (the benchmark prints '-').
* ``zscore``: a causal robust z-score of each day-to-day log change against the
  median and MAD of the previous 60 changes (at least 20): ``z = (d - median) /
  (1.4826 * MAD)``, alert when ``|z| > 3.5`` (Iglewicz and Hoaglin's cut-off for the
  modified z-score). The scale is floored at one person (``log1p(1 / level)``) and at
  1e-4, so a company that was flat for weeks does not alert on its first move of
  one profile. Reported on the day itself (delay 0).

Pelt is the slow one (about 0.15 s for a 730-day series); the benchmark runs the
ruptures peers on a fixed random subset of each set and says so.
"""

from __future__ import annotations

import multiprocessing
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd

from tracker.detect import COLUMNS
from tracker.detect.matrix import LOG_FLOOR

#: Per-series result: rows as tuples (date, kind, change_pct, before, after, score).
Found = list[tuple[pd.Timestamp, str, float, float, float, float]]


def _log(values: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.maximum(values, LOG_FLOOR))


def _sigma(x: np.ndarray) -> float:
    d = np.diff(x)
    if d.size == 0:
        return 0.0
    s = 1.4826 * float(np.median(np.abs(d - np.median(d)))) / np.sqrt(2)
    if s <= 0:
        s = float(np.std(d)) / np.sqrt(2)
    return max(s, 1e-6)


def _ruptures_cost():  # the class is built lazily: ruptures is an optional dependency
    from ruptures.base import BaseCost

    class CostL2Sums(BaseCost):
        """ruptures' ``CostL2`` (sum of squared deviations from the segment mean) in O(1)."""

        model = "l2_sums"
        min_size = 2

        def fit(self, signal: np.ndarray) -> CostL2Sums:
            self.signal = np.asarray(signal, dtype=np.float64).reshape(len(signal), -1)
            x = self.signal[:, 0]
            self._s1 = np.concatenate([[0.0], np.cumsum(x)]).tolist()
            self._s2 = np.concatenate([[0.0], np.cumsum(x * x)]).tolist()
            return self

        def error(self, start: int, end: int) -> float:
            s1 = self._s1[end] - self._s1[start]
            return (self._s2[end] - self._s2[start]) - s1 * s1 / (end - start)

    return CostL2Sums


def _segments(x: np.ndarray, dates: np.ndarray, bkps: list[int], sigma: float) -> Found:
    out: Found = []
    edges = [0, *bkps]
    for k in range(1, len(edges) - 1):
        a, b, c = edges[k - 1], edges[k], edges[k + 1]
        before, after = float(np.mean(x[a:b])), float(np.mean(x[b:c]))
        delta = after - before
        out.append((pd.Timestamp(dates[b]), "drop" if delta < 0 else "spike",
                    100 * float(np.expm1(delta)), float(np.exp(before)), float(np.exp(after)),
                    abs(delta) / sigma))
    return out


def _ruptures_one(algo: str, x: np.ndarray, dates: np.ndarray) -> Found:
    import ruptures as rpt

    n = x.size
    if n < 4:
        return []
    sigma = _sigma(x)
    pen = sigma * sigma * np.log(n) * 1  # d = 1
    cls = rpt.Pelt if algo == "pelt" else rpt.Binseg
    est = cls(custom_cost=_ruptures_cost()(), min_size=2, jump=1).fit(x)
    return _segments(x, dates, est.predict(pen=pen), sigma)


def _zscore_one(x: np.ndarray, dates: np.ndarray, window: int = 60, min_changes: int = 20,
                cut: float = 3.5) -> Found:
    if x.size < min_changes + 2:
        return []
    d = np.diff(x)
    # windows of the changes before each change: row i holds d[i - window: i] (NaN-padded)
    padded = np.concatenate([np.full(window, np.nan), d])
    past = np.lib.stride_tricks.sliding_window_view(padded, window)[: d.size]
    enough = np.isfinite(past).sum(axis=1) >= min_changes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows at the start
        med = np.nanmedian(past, axis=1)
        mad = np.nanmedian(np.abs(past - med[:, None]), axis=1)
    level = np.exp(x[:-1])
    scale = np.maximum(1.4826 * mad, np.maximum(np.log1p(1 / level), 1e-4))
    z = np.where(enough, (d - med) / scale, 0.0)
    out: Found = []
    for i in np.flatnonzero(np.abs(np.nan_to_num(z)) > cut):
        delta = float(d[i])
        out.append((pd.Timestamp(dates[i + 1]), "drop" if delta < 0 else "spike",
                    100 * float(np.expm1(delta)), float(np.exp(x[i])), float(np.exp(x[i + 1])),
                    float(abs(z[i]))))
    return out


_MATRIX: pd.DataFrame | None = None
_FN: Callable[[np.ndarray, np.ndarray], Found] | None = None


def _run_cols(bounds: tuple[int, int]) -> list[tuple[str, Found]]:
    assert _MATRIX is not None and _FN is not None
    out = []
    for name in _MATRIX.columns[bounds[0]: bounds[1]]:
        col = _MATRIX[name].to_numpy(dtype=np.float64)
        ok = np.isfinite(col)
        out.append((name, _FN(_log(col[ok]), _MATRIX.index.to_numpy()[ok])))
    return out


def _frame(found: list[tuple[str, Found]]) -> pd.DataFrame:
    rows = [(s, *r) for s, rs in found for r in rs]
    df = pd.DataFrame(rows, columns=["series", "date", "kind", "change_pct", "value_before",
                                     "value_after", "score"])
    df["detected_on"] = df["date"]
    df["confirmed_on"] = df["date"]
    df["status"] = "confirmed"
    df["severity"] = "info"
    df = df[COLUMNS]
    for c in ("date", "detected_on", "confirmed_on"):
        df[c] = pd.to_datetime(df[c]).astype("datetime64[ns]")
    return df.reset_index(drop=True)


def run(fn: Callable[[np.ndarray, np.ndarray], Found], matrix: pd.DataFrame,
        workers: int = 2) -> pd.DataFrame:
    """``fn`` over every series of ``matrix`` (forked workers when asked), as detections."""
    global _MATRIX, _FN
    _MATRIX, _FN = matrix, fn
    n = matrix.shape[1]
    step = max(1, -(-n // (4 * max(workers, 1))))
    chunks = [(a, min(n, a + step)) for a in range(0, n, step)]
    try:
        if workers > 1 and n > 50:
            ctx = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                parts = list(pool.map(_run_cols, chunks))
        else:
            parts = [_run_cols(c) for c in chunks]
    finally:
        _MATRIX, _FN = None, None
    return _frame([x for p in parts for x in p])


def pelt(matrix: pd.DataFrame, workers: int = 2) -> pd.DataFrame:
    """ruptures Pelt, l2 cost, BIC penalty (see the module docstring)."""
    return run(lambda x, d: _ruptures_one("pelt", x, d), matrix, workers)


def binseg(matrix: pd.DataFrame, workers: int = 2) -> pd.DataFrame:
    """ruptures binary segmentation, l2 cost, BIC penalty (see the module docstring)."""
    return run(lambda x, d: _ruptures_one("binseg", x, d), matrix, workers)


def zscore(matrix: pd.DataFrame, workers: int = 2) -> pd.DataFrame:
    """Causal robust z-score of day-to-day log changes, |z| > 3.5."""
    return run(_zscore_one, matrix, workers)


#: name -> (function, offline, slow): slow peers run on a subset of each set.
PEERS: dict[str, tuple[Callable[..., pd.DataFrame], bool, bool]] = {
    "pelt": (pelt, True, True), "binseg": (binseg, True, False), "zscore": (zscore, False, False)}
