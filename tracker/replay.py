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

from tracker.alerts import build_matrix
from tracker.detect import detect
from tracker.detect.engine import severity
from tracker.detect.evaluate import KINDS, Scores, score
from tracker.errors import InputError
from tracker.ingest.csvfile import read_raw
from tracker.workspace import Workspace

TIMELINE_COLUMNS = ["day", "event", "company", "metric", "source", "date", "kind",
                    "change_pct", "value_before", "value_after", "severity"]


def _detections(ws: Workspace, companies: list[str] | None, until: date | None
                ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    ids = [ws.store.company_id(c) for c in companies] if companies else None
    matrix, keys = build_matrix(ws, companies=ids, until=until)
    if matrix.empty:
        return matrix, keys, pd.DataFrame()
    return matrix, keys, detect(matrix, ws.settings.detect).join(keys, on="series")


def timeline(ws: Workspace, *, start: date | None = None, end: date | None = None,
             companies: list[str] | None = None) -> pd.DataFrame:
    """Every verdict in [start, end], on the day a daily run would have reached it.

    ``event`` is ``reported`` (a provisional drop or spike, or a drift), then
    ``confirmed`` (the shift held) or ``reclassified`` (it came back: a glitch).
    """
    _, _, found = _detections(ws, companies, end)
    if found.empty:
        return pd.DataFrame(columns=TIMELINE_COLUMNS)
    shift_like = ~found["kind"].str.startswith("drift")
    first_kind = np.where(shift_like, np.where(found["change_pct"] < 0, "drop", "spike"),
                          found["kind"])
    # the severity a daily run showed on the day of the report: a move later found to
    # be a glitch was, that day, a provisional drop or spike graded by its size
    first_severity = severity(first_kind, found["change_pct"].to_numpy(),
                               found["score"].to_numpy(), ws.settings.detect)
    reported = found.assign(day=found["detected_on"], event="reported", kind=first_kind,
                            severity=first_severity)
    decided = found[found["confirmed_on"].notna() & shift_like]
    decided = decided.assign(day=decided["confirmed_on"], event=np.where(
        decided["kind"] == "glitch", "reclassified", "confirmed"))
    out = pd.concat([reported, decided], ignore_index=True)
    if start is not None:
        out = out[out["day"] >= pd.Timestamp(start)]
    if end is not None:
        out = out[out["day"] <= pd.Timestamp(end)]
    out = out.sort_values(["day", "company", "event"], kind="stable")
    out["change_pct"] = out["change_pct"].round(2)
    return out[TIMELINE_COLUMNS].reset_index(drop=True)


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
