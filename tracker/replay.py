"""Replaying history: what was detectable when, and how good was it.

Because detection is causal, one pass over the history already contains every
verdict a daily run would have reached, each stamped with the day it was reached
(``detected_on`` for the provisional report, ``confirmed_on`` for the final word).
A replay is therefore a re-ordering of one detection pass by those days, which is
exactly what a researcher asks: "on 2022-10-11, what would the tracker have said?".
Nothing is written to the store: a replay must never change what analysts see.

``evaluate`` scores the detector against hand-annotated events on real data with
the same scorer as the synthetic benchmark, so both speak the same numbers.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from tracker.detect import detect, detect_day
from tracker.detect.engine import severity
from tracker.detect.evaluate import KINDS, Scores, score
from tracker.detect.settings import DetectSettings
from tracker.detection import build_matrix, matrix_of
from tracker.errors import InputError
from tracker.ingest.csvfile import read_raw
from tracker.workspace import Workspace

TIMELINE_COLUMNS = ["day", "verdict", "company", "metric", "source", "date", "kind",
                    "change_pct", "value_before", "value_after", "severity"]


def _detections(ws: Workspace, companies: list[str] | None, until: date | None
                ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    ids = [ws.store.company_id(c) for c in companies] if companies else None
    matrix, keys = build_matrix(ws, companies=ids, until=until)
    if matrix.empty:
        return matrix, keys, pd.DataFrame()
    return matrix, keys, detect(matrix, ws.settings.detect).join(keys, on="series")


def _verdicts(found: pd.DataFrame, s: DetectSettings) -> pd.DataFrame:
    """Detections -> one row per verdict, in the alerts' vocabulary: provisional on the
    day it was reported, then confirmed (it held) or glitch (it came back)."""
    if not len(found):
        return pd.DataFrame(columns=TIMELINE_COLUMNS)
    shift_like = ~found["kind"].str.startswith("drift")
    first_kind = np.where(shift_like, np.where(found["change_pct"] < 0, "drop", "spike"),
                          found["kind"])
    # the severity a daily run showed on the day of the report: a move later found to
    # be a glitch was, that day, a provisional drop or spike graded by its size
    first_severity = severity(first_kind, found["change_pct"].to_numpy(),
                              found["score"].to_numpy(), s)
    # a drift is reported with its final word; a shift is provisional on its day
    reported = found.assign(day=found["detected_on"], kind=first_kind,
                            verdict=np.where(shift_like, "provisional", found["status"]),
                            severity=first_severity)
    decided = found[found["confirmed_on"].notna() & shift_like]
    decided = decided.assign(day=decided["confirmed_on"], verdict=np.where(
        decided["kind"] == "glitch", "glitch", "confirmed"))
    return pd.concat([reported, decided], ignore_index=True)


def timeline(ws: Workspace, *, start: date | None = None, end: date | None = None,
             companies: list[str] | None = None, as_known: bool = False) -> pd.DataFrame:
    """Every verdict in [start, end], on the day a daily run would have reached it.

    ``verdict`` is the alerts' own word: ``provisional`` when a drop or spike is
    reported (a drift with the detector's verdict, on its detection day), then
    ``confirmed`` (the shift held) or ``glitch`` (it came back).
    By default one pass over today's best data; ``as_known`` rebuilds each day from
    only the observations known by the end of that day (loaded with their own
    ``collected_at``), so late or corrected data shows up when it arrived.
    """
    if as_known:
        return _in_range(_as_known(ws, start, end, companies), start, end)
    _, _, found = _detections(ws, companies, end)
    return _in_range(_verdicts(found, ws.settings.detect), start, end)


def dataset_timeline(s: DetectSettings, path: str | Path, *, start: date | None = None,
                     end: date | None = None, companies: list[str] | None = None
                     ) -> pd.DataFrame:
    """:func:`timeline` of a Parquet dataset, judged where it lies (:func:`tracker.
    dataset.detect_dataset`, on the configured engine): no import, no store.
    ``companies`` are the dataset's company keys."""
    from tracker.dataset import detect_dataset

    found, _ = detect_dataset(path, s, until=end, companies=companies)
    return _in_range(_verdicts(found, s), start, end)


def _in_range(out: pd.DataFrame, start: date | None, end: date | None) -> pd.DataFrame:
    """The verdicts of the days [start, end], in the timeline's order and columns."""
    if out.empty:
        return pd.DataFrame(columns=TIMELINE_COLUMNS)
    if start is not None:
        out = out[out["day"] >= pd.Timestamp(start)]
    if end is not None:
        out = out[out["day"] <= pd.Timestamp(end)]
    # by every key: a dataset's verdicts come in another order than the store's
    out = out.sort_values(["day", "company", "verdict", "metric", "source", "date", "kind"],
                          kind="stable")
    out["change_pct"] = out["change_pct"].round(2)
    return out[TIMELINE_COLUMNS].reset_index(drop=True)


MAX_AS_KNOWN_DAYS = 366


def _as_known(ws: Workspace, start: date | None, end: date | None,
              companies: list[str] | None) -> pd.DataFrame:
    """Each day's verdicts from only what was known by its end, in one pass over time.

    An observation becomes visible on the later of the day it was collected and its
    own day. The known matrix is updated with each day's arrivals, and only the days
    those arrivals can change are judged (``detect_day``: the day itself, and the
    earliest day a late value or correction concerns, onward): a verdict about an
    earlier day is the same as the day before, when it was already reported.

    A reported move that a re-judged day no longer finds (its data were corrected
    away) gets a ``withdrawn`` row on the day the correction arrived, as the alert
    of a daily run is withdrawn then.
    """
    if start is None or end is None:
        raise InputError("a replay as known needs --start and --end")
    days = pd.date_range(start, end)
    if len(days) > MAX_AS_KNOWN_DAYS:
        raise InputError(f"a replay as known covers at most {MAX_AS_KNOWN_DAYS} days "
                         f"(one detection per day); got {len(days)}")
    ids = [ws.store.company_id(c) for c in companies] if companies else None
    obs = ws.store.observations(ids, until=end, revisions=True)
    if obs.empty:
        return pd.DataFrame()
    _, keys = matrix_of(obs.drop_duplicates(["company", "metric", "source"]))
    col = pd.MultiIndex.from_frame(keys).get_indexer(
        pd.MultiIndex.from_frame(obs[["company", "metric", "source"]]))
    as_of = pd.DatetimeIndex(obs["as_of"])
    visible = np.maximum(pd.DatetimeIndex(obs["collected_at"]).normalize(), as_of)
    order = np.lexsort((obs["collected_at"].to_numpy(), visible.to_numpy()))
    index = pd.DatetimeIndex(np.unique(as_of))
    values = np.full((len(index), len(keys)), np.nan)
    row = index.get_indexer(as_of)
    vis = visible.to_numpy()[order]
    cells = (row[order], col[order])
    vals = obs["value"].to_numpy(dtype="float64")[order]
    cut = np.searchsorted(vis, days.to_numpy(), side="right")
    first = np.searchsorted(vis, days[0].to_numpy(), side="left")
    # everything visible before the first day, then each day's arrivals
    values[cells[0][:first], cells[1][:first]] = vals[:first]
    s = ws.settings.detect
    parts, seen = [], set()
    live: dict[tuple, pd.Series] = {}  # reported and not withdrawn: its latest row
    lo = first
    arrived_as_of = as_of.to_numpy()[order]
    for day, hi in zip(days, cut, strict=True):
        values[cells[0][lo:hi], cells[1][lo:hi]] = vals[lo:hi]
        matrix = pd.DataFrame(values, index=index, columns=range(len(keys)), copy=False)
        if day == days[0]:
            # one batch pass: verdicts reached before the first day were known already
            earliest = day
            # nothing known yet (all of it collected later): nothing to judge
            found = detect(matrix.loc[:day], s) if hi else pd.DataFrame()
        elif hi > lo:  # what arrived today can change verdicts from its own day on
            earliest = pd.Timestamp(arrived_as_of[lo:hi].min())
            judged = index[(index >= earliest) & (index <= day)]
            found = pd.concat([detect_day(matrix, d, s) for d in judged], ignore_index=True)
        else:  # nothing new: nothing can have changed
            continue
        lo = hi
        rows = _verdicts(found.join(keys, on="series"), s) if len(found) \
            else pd.DataFrame(columns=[*TIMELINE_COLUMNS, "detected_on"])
        if day != days[0]:
            gone = _withdrawn(live, rows, set(judged), day)
            if len(gone):
                parts.append(gone)
        if rows.empty:
            continue
        rows = rows[rows["day"] <= day]  # a verdict cannot be reached before its day
        # several days judged at once restate a verdict: its latest state counts
        rows = rows.drop_duplicates(["company", "metric", "source", "date", "verdict"],
                                    keep="last")
        key = list(zip(rows["company"], rows["metric"], rows["source"], rows["date"],
                       rows["verdict"], strict=True))
        fresh = np.array([k not in seen for k in key], dtype=bool)
        if day == days[0]:
            fresh &= (rows["day"] == day).to_numpy()
        seen.update(key)
        # reached today, possibly about an earlier date whose data arrived late
        parts.append(rows[fresh].assign(day=day))
        for k, (_, r) in zip(_alert_keys(rows), rows.iterrows(), strict=True):
            live[k] = r
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _alert_keys(rows: pd.DataFrame) -> list[tuple]:
    """One key per alert, as the store's fingerprint: a move and a drift of the same
    day are different alerts, a move's verdicts are one."""
    family = np.where(rows["kind"].astype(str).str.startswith("drift"), "drift", "move")
    return list(zip(rows["company"], rows["metric"], rows["source"], rows["date"], family,
                    strict=True))


def _withdrawn(live: dict[tuple, pd.Series], rows: pd.DataFrame, judged: set,
               day: pd.Timestamp) -> pd.DataFrame:
    """The reported alerts that days judged again no longer restate: withdrawn today."""
    restated = set(_alert_keys(rows)) if len(rows) else set()
    gone = [k for k, r in live.items()
            if pd.Timestamp(r["detected_on"]) in judged and k not in restated]
    out = [live.pop(k).copy() for k in gone]
    if not out:
        return pd.DataFrame()
    frame = pd.DataFrame(out)
    return frame.assign(day=day, verdict="withdrawn")


def why_nothing_known(ws: Workspace, start: date, end: date,
                      companies: list[str] | None = None) -> str | None:
    """Why an as-known replay of [start, end] found nothing, when the data says why.

    A store filled by one import of old data learned all of it on the day of the
    import, so "as known" sees nothing in the past and a researcher gets an empty
    answer that looks like "no anomalies". When every observation up to ``end``
    became known after it, that is said, with the way out; None when some were
    known in time (an empty answer is then a true one).
    """
    ids = [ws.store.company_id(c) for c in companies] if companies else None
    obs = ws.store.observations(ids, until=end, revisions=True)
    span = f"the replayed range {start:%Y-%m-%d}..{end:%Y-%m-%d}"
    if obs.empty:
        return f"no observations are dated on or before {end:%Y-%m-%d}, the end of {span}"
    learned = pd.DatetimeIndex(obs["collected_at"]).normalize()
    visible = np.maximum(learned, pd.DatetimeIndex(obs["as_of"]))
    if (visible <= pd.Timestamp(end)).any():
        return None
    first, last = learned.min(), learned.max()
    when = (f"on {first:%Y-%m-%d}" if first == last
            else f"between {first:%Y-%m-%d} and {last:%Y-%m-%d}")
    return (f"all {len(obs):,} observations were collected {when}, after {span}: import "
            "snapshots with their collected_at (tracker import --snapshot-dir DIR, a "
            "collected_at column, or --collected-at)")


def read_labels(path: str | Path) -> pd.DataFrame:
    """Annotated events: company, date, kind, optional end, metric, source.

    Every problem is reported with its line, as for imports.
    """
    path = Path(path)
    raw = read_raw(path)
    cols = {c.strip().lower(): c for c in raw.columns}
    missing = [c for c in ("company", "date", "kind") if c not in cols]
    if missing:
        raise InputError(f"{path}: labels need the column(s) {', '.join(missing)} "
                         f"(found: {', '.join(raw.columns)})")
    frame = pd.DataFrame({
        "company": raw[cols["company"]].str.strip(),
        "kind": raw[cols["kind"]].str.strip().str.lower(),
        "start": pd.to_datetime(raw[cols["date"]], format="ISO8601", errors="coerce"),
        "end": pd.to_datetime(raw[cols["end"]], format="ISO8601", errors="coerce")
        if "end" in cols else pd.NaT,
        "metric": raw[cols["metric"]].str.strip() if "metric" in cols else "employees",
        "source": raw[cols["source"]].str.strip() if "source" in cols else "",
        "line": np.arange(len(raw)) + 2,
    })
    problems = [f"{path}:{r.line}: kind {r.kind!r} is not one of {', '.join(KINDS)}"
                for r in frame[~frame["kind"].isin(KINDS)].itertuples()]
    problems += [f"{path}:{r.line}: date is not a date (expected YYYY-MM-DD)"
                 for r in frame[frame["start"].isna()].itertuples()]
    if problems:
        raise InputError(f"{path}: {len(problems)} bad label(s):\n  " + "\n  ".join(problems[:20]))
    frame["end"] = frame["end"].fillna(frame["start"])
    return frame.drop(columns="line")


def evaluate(ws: Workspace, labels: pd.DataFrame, *, tolerance: int = 3,
             end: date | None = None) -> Scores:
    """Score detection over the store against annotated events (label per series).

    A label without a source applies to every source of that company and metric.
    Series with no label count as quiet: any alert on them is a false alert.
    """
    matrix, keys, found = _detections(ws, None, end)
    if matrix.empty:
        raise InputError("the store has no observations to evaluate")
    labels = labels.assign(company=[ws.store.company_id(c) for c in labels["company"]])
    rows = []
    for lab in labels.itertuples():
        match = (keys["company"] == lab.company) & (keys["metric"] == lab.metric)
        if lab.source:
            match &= keys["source"] == lab.source
        for series in np.flatnonzero(match.to_numpy()):
            col = matrix[series].dropna()
            before = col[col.index < lab.start]
            after = col[col.index >= lab.start]
            level = float(before.iloc[-1]) if len(before) else np.nan
            size = 100 * (after.iloc[0] / level - 1) if len(after) and level else np.nan
            rows.append({"series": series, "kind": lab.kind, "start": lab.start,
                         "end": lab.end, "size_pct": size, "level": level})
    table = pd.DataFrame(rows, columns=["series", "kind", "start", "end", "size_pct", "level"])
    return score(found if len(found) else pd.DataFrame(
        columns=["series", "kind", "date", "detected_on", "confirmed_on", "value_before"]),
        table, matrix, tolerance=tolerance)
