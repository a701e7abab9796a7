"""Questions about past runs: when the scheduler last ran the job (to catch up a
missed run) and which alerts a run created (for the report to mark them new).

:mod:`tracker.store.runs` writes the run records and holds the lease; these only read.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from tracker.store.core import Store
from tracker.store.schema import alerts, runs


def last_finished(store: Store, kind: str) -> datetime | None:
    """When the last run of ``kind`` finished (naive UTC, like every stored stamp)."""
    with store.reading("looking up the last run") as conn:
        return conn.execute(select(runs.c.finished_at)
                            .where(runs.c.kind == kind, runs.c.finished_at.is_not(None))
                            .order_by(runs.c.finished_at.desc()).limit(1)).scalar()


def alerts_created_since_start(store: Store, run_id: int) -> list[int]:
    """Ids of the alerts created since run ``run_id`` started: the ones it made new.

    Empty for an unknown run. Creation time, not a run id on the alert, because the
    alerts table does not record which run created a row.
    """
    with store.reading("reading the run") as conn:
        started = conn.execute(select(runs.c.started_at).where(runs.c.id == run_id)).scalar()
        if started is None:
            return []
        return list(conn.execute(select(alerts.c.id).where(alerts.c.created_at >= started))
                    .scalars())
