"""``tracker status``: is collection healthy? Recent runs, failing sources, stale data.

Stale companies matter because a silent source is the failure monitoring most
often misses: no data means no alerts, which looks exactly like "all is well".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd

from tracker.store import runs as run_ops
from tracker.workspace import Workspace


@dataclass
class StatusReport:
    runs: pd.DataFrame
    sources: pd.DataFrame
    stale: pd.DataFrame
    stale_days: int


def status(ws: Workspace, last: int = 5, today: date | None = None) -> StatusReport:
    from tracker.collect import today as collect_today

    today = today or collect_today(ws)
    recent = run_ops.recent_runs(ws.store, last)
    sources = run_ops.source_results(ws.store, recent["id"].head(1).tolist())
    stale_days = ws.settings.run.stale_days
    summary = ws.companies()
    cutoff = today - timedelta(days=stale_days)
    stale = summary[summary["last_day"].isna() | (summary["last_day"] <= cutoff)]
    # Int64: whole days, <NA> for a company never observed (not 10.0 / NaN floats)
    stale = stale.assign(days_since=pd.array([(today - d).days if pd.notna(d) else None
                                              for d in stale["last_day"]], dtype="Int64"))
    return StatusReport(recent, sources, stale[["id", "name", "last_day", "days_since"]],
                        stale_days)
