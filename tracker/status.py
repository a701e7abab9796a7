"""``tracker status``: is collection healthy? Recent runs, failing sources, stale data.

Stale companies matter because a silent source is the failure monitoring most
often misses: no data means no alerts, which looks exactly like "all is well".

The report holds plain rows so that ``tracker status`` prints without importing
pandas (it must start in well under half a second, see tracker/cli.py); the
DataFrame properties are for notebooks and are built on first use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from tracker.errors import StoreError
from tracker.store import companies as company_ops
from tracker.store import runs as run_ops
from tracker.store.runs import RUN_COLUMNS, SOURCE_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

    from tracker.workspace import Workspace

log = logging.getLogger(__name__)

STALE_COLUMNS: tuple[str, ...] = ("id", "name", "last_day", "days_since")


@dataclass(frozen=True)
class StatusReport:
    """Rows of RUN_COLUMNS, SOURCE_COLUMNS (the newest run) and STALE_COLUMNS.

    A stale company never observed has ``last_day`` and ``days_since`` None.
    """

    run_rows: list[tuple[Any, ...]]
    source_rows: list[tuple[Any, ...]]
    stale_rows: list[tuple[str, str, date | None, int | None]]
    stale_days: int

    @property
    def runs(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.run_rows, columns=list(RUN_COLUMNS))

    @property
    def sources(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.source_rows, columns=list(SOURCE_COLUMNS))

    @property
    def stale(self) -> pd.DataFrame:
        import pandas as pd

        frame = pd.DataFrame(self.stale_rows, columns=list(STALE_COLUMNS))
        # dates with NaT for a company never observed, as Workspace.companies() has them
        frame["last_day"] = pd.to_datetime(frame["last_day"]).dt.date
        # Int64: whole days, <NA> for a company never observed (not 10.0 / NaN floats)
        frame["days_since"] = frame["days_since"].astype("Int64")
        return frame


def status(ws: Workspace, last: int = 5, today: date | None = None) -> StatusReport:
    """The report; runs whose process is gone are marked abandoned first, or a killed
    run would show as running forever (see ``store.runs.reap_abandoned``)."""
    today = today or ws.today()
    try:
        run_ops.reap_abandoned(ws.store)
    except StoreError as exc:  # e.g. a read-only database: still show what it holds
        log.warning("could not mark abandoned runs: %s", exc)
    recent = run_ops.recent_runs(ws.store, last)
    sources = run_ops.source_results(ws.store, [recent[0][0]] if recent else [])
    stale_days = ws.settings.run.stale_days
    cutoff = today - timedelta(days=stale_days)
    with ws.store.reading("listing companies") as conn:
        companies = company_ops.last_days(conn)
    stale = [(cid, name, day, (today - day).days if day is not None else None)
             for cid, name, day in companies if day is None or day <= cutoff]
    return StatusReport(recent, sources, stale, stale_days)
