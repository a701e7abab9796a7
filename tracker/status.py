"""``tracker status``: is collection healthy? Recent runs, failing sources, stale data.

Stale companies matter because a silent source is the failure monitoring most
often misses: no data means no alerts, which looks exactly like "all is well".

The report ends in a verdict with a Nagios plugin's exit code, so ``tracker
status`` can be a monitoring check of its own, beside the heartbeat:

* 2 CRITICAL: no run was ever recorded; the last finished run (``tracker run`` or
  ``tracker collect``) failed or was abandoned; or it finished more than
  ``max_age_hours`` ago (36 by default: a daily job that missed a day).
* 1 WARNING: a source failed in that run, or a company is stale (no observation
  for ``[run] stale_days``).
* 0 OK otherwise. 3 UNKNOWN (the store cannot be read) is the CLI's, since then
  there is no report.

Only finished runs are judged: a run still working says nothing yet, and a killed
one is marked abandoned first.

The report holds plain rows so that ``tracker status`` prints without importing
pandas (it must start in well under half a second, see tracker/cli.py); the
DataFrame properties are for notebooks and are built on first use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
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
#: The default of ``max_age_hours``: a daily run, plus the half day it may be late.
MAX_AGE_HOURS = 36.0
LABELS = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
#: How far back a verdict looks for the last finished run past running ones.
_JUDGE_WINDOW = 50


@dataclass(frozen=True)
class StatusReport:
    """Rows of RUN_COLUMNS, SOURCE_COLUMNS (the newest run) and STALE_COLUMNS.

    A stale company never observed has ``last_day`` and ``days_since`` None.
    """

    run_rows: list[tuple[Any, ...]]
    source_rows: list[tuple[Any, ...]]
    stale_rows: list[tuple[str, str, date | None, int | None]]
    stale_days: int
    #: the Nagios code (0 OK, 1 WARNING, 2 CRITICAL) and why, most serious first
    exit_code: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def headline(self) -> str:
        """The first line a monitoring system shows: ``WARNING: 2 stale companies ...``."""
        return f"{LABELS[self.exit_code]}: " + ("; ".join(self.reasons) or "all is well")

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


def status(ws: Workspace, last: int = 5, today: date | None = None, *,
           max_age_hours: float | None = None, now: datetime | None = None) -> StatusReport:
    """The report and its verdict; runs whose process is gone are marked abandoned
    first, or a killed run would show as running forever (see
    ``store.runs.reap_abandoned``). ``max_age_hours`` defaults to MAX_AGE_HOURS;
    ``now`` is naive UTC, as stored stamps are."""
    from tracker.store.companies import now_utc

    max_age_hours = MAX_AGE_HOURS if max_age_hours is None else max_age_hours
    today = today or ws.today()
    now = now or now_utc()
    try:
        run_ops.reap_abandoned(ws.store)
    except StoreError as exc:  # e.g. a read-only database: still show what it holds
        log.warning("could not mark abandoned runs: %s", exc)
    recent = run_ops.recent_runs(ws.store, max(last, _JUDGE_WINDOW))
    judged = next((r for r in recent if r[4] != "running"), None)
    shown = judged or (recent[0] if recent else None)
    sources = run_ops.source_results(ws.store, [shown[0]] if shown else [])
    stale_days = ws.settings.run.stale_days
    cutoff = today - timedelta(days=stale_days)
    with ws.store.reading("listing stale companies") as conn:
        stale = [(cid, name, day, (today - day).days if day is not None else None)
                 for cid, name, day in company_ops.stale(conn, today, cutoff)]
    code, reasons = verdict(judged, sources, stale, stale_days, max_age_hours, now)
    return StatusReport(recent[:last], sources, stale, stale_days, code, reasons)


def verdict(run: tuple[Any, ...] | None, sources: list[tuple[Any, ...]],
            stale: list[tuple[str, str, date | None, int | None]], stale_days: int,
            max_age_hours: float, now: datetime) -> tuple[int, list[str]]:
    """(Nagios code, reasons) from the last finished run (a RUN_COLUMNS row), its
    source rows and the stale companies; the rules are in the module docstring."""
    critical: list[str] = []
    if run is None:
        critical.append("no run recorded (run 'tracker run', by cron or 'tracker schedule')")
    else:
        run_id, kind, started, finished, state = run[:5]
        if state != "ok":
            critical.append(f"last {kind} (run {run_id}, started {_ago(started, now)}) "
                            f"{state}: {_first_line(run[5])}")
        elif finished is None or now - finished > timedelta(hours=max_age_hours):
            critical.append(f"no successful run for more than {max_age_hours:g} hours "
                            f"(last: run {run_id}, finished {_ago(finished or started, now)})")
    warning = []
    failed = [row[1] for row in sources if row[2] == "failed"]
    if failed and run is not None:
        warning.append(f"{len(failed)} source(s) failed in run {run[0]}: {', '.join(failed)}")
    if stale:
        names = ", ".join(f"{cid} ({'never observed' if days is None else f'{days} days'})"
                          for cid, _, _, days in stale[:5])
        more = f" and {len(stale) - 5} more" if len(stale) > 5 else ""
        warning.append(f"{len(stale)} stale compan{'y' if len(stale) == 1 else 'ies'} "
                       f"(no observation for {stale_days}+ days): {names}{more}")
    code = 2 if critical else 1 if warning else 0
    if not critical and not warning and run is not None:
        return 0, [f"last {run[1]} (run {run[0]}) ok, finished {_ago(run[3], now)}; "
                   "no failed source, no stale company"]
    return code, critical + warning


def _ago(stamp: datetime | None, now: datetime) -> str:
    if stamp is None:
        return "at an unknown time"
    hours = (now - stamp).total_seconds() / 3600
    span = f"{hours * 60:.0f} min" if hours < 1 else (
        f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days")
    return f"{stamp:%Y-%m-%d %H:%M} UTC, {span} ago"


def _first_line(text: object) -> str:
    """A run's summary without its own label (``UNKNOWN: run failed: ``)."""
    lines = str(text or "").strip().splitlines()
    line = lines[0] if lines else "no summary"
    for label in LABELS.values():
        line = line.removeprefix(f"{label}: ")
    return line.removeprefix("run failed: ")
