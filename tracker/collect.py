"""One collection run: every configured source, concurrently, accounted for.

Each source runs in its own thread and is written in its own transaction, together
with its state (csv_folder's file hashes) and its line in the run record. So one
failing source, or one failing company inside a source, never stops the others; a
run killed part-way leaves complete sources written and the rest untouched, and
running it again stores each observation once (writes are idempotent).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tracker.errors import ConfigError, InputError, SourceError, StoreError, TrackerError
from tracker.metrics import metric_reasons
from tracker.records import CompanyRef, Failure
from tracker.sources.base import Source, SourceContext
from tracker.sources.registry import load_source_class
from tracker.store import companies as company_ops
from tracker.store import runs as run_ops
from tracker.workspace import Workspace

if TYPE_CHECKING:
    from tracker.config import Settings

log = logging.getLogger(__name__)


@dataclass
class SourceOutcome:
    """What one source did in a run."""

    source: str
    status: str  # ok, partial, failed, skipped
    ok: int = 0
    inserted: int = 0
    failures: list[Failure] = field(default_factory=list)
    reason: str | None = None


@dataclass
class CollectResult:
    run_id: int
    day: date
    outcomes: list[SourceOutcome]

    @property
    def inserted(self) -> int:
        return sum(o.inserted for o in self.outcomes)

    @property
    def failed_sources(self) -> list[str]:
        return [o.source for o in self.outcomes if o.status == "failed"]

    @property
    def exit_code(self) -> int:
        """``tracker collect``'s code, and what its run record says: 3 (failed) when any
        source failed, since collecting is all a collect does; 0 otherwise."""
        return 3 if self.failed_sources else 0

    def summary(self) -> str:
        parts = [f"{o.source}: {o.status} ({o.ok} ok, {len(o.failures)} failed, "
                 f"{o.inserted} new)" for o in self.outcomes]
        return "; ".join(parts) or "no sources configured"


def enabled_sources(settings: Settings, only: list[str] | None = None) -> list[str]:
    """The sources a collection runs: every enabled one, or the named ones that are
    enabled; unknown names are an InputError. May be empty (see require_sources)."""
    configured = settings.sources
    if only:
        unknown = sorted(set(only) - configured.keys())
        if unknown:
            raise InputError(f"unknown source(s) {', '.join(unknown)}; configured: "
                             f"{', '.join(sorted(configured)) or 'none'}")
    return [n for n in configured
            if (not only or n in only) and configured[n].get("enabled", True)]


def require_sources(settings: Settings, only: list[str] | None = None) -> list[str]:
    """enabled_sources, where none is a ConfigError naming the config file read (or
    that none was found).

    For ``tracker run``, ``collect`` and ``schedule``: a job that collects nothing
    must not report "OK, 0 new observations", and it must say so before anything (a
    database, a report folder) is created, so this needs settings alone. The library's
    :func:`collect` and :func:`tracker.job.run_once` do not ask: a notebook may run
    detection and notification over imported data with no source configured.
    """
    names = enabled_sources(settings, only)
    if names:
        return names
    configured = settings.sources
    where = (f"in {settings.config_path}" if settings.config_path is not None
             else f"(no config.toml found in {settings.base_dir}; pass --config PATH)")
    if only:
        raise ConfigError(f"nothing to collect: source(s) {', '.join(only)} are disabled "
                          f"(enabled = false) {where}")
    if configured:
        raise ConfigError(f"nothing to collect: every source is disabled (enabled = false) "
                          f"{where}: {', '.join(configured)}")
    raise ConfigError(f"nothing to collect: no source is configured {where}; "
                      "add a [sources.NAME] table (see README, Configuration)")


def build_sources(ws: Workspace, only: list[str] | None = None) -> list[Source]:
    """Instantiate the enabled sources (all, or the named ones)."""
    configured = ws.settings.sources
    names = set(enabled_sources(ws.settings, only))
    built = []
    for name, table in configured.items():
        if name not in names:
            continue
        cls = load_source_class(table["type"])
        context = SourceContext(base_dir=ws.settings.base_dir,
                                state=run_ops.load_state(ws.store, name))
        try:
            built.append(cls.from_config(name, table, context))
        except ConfigError:
            raise
        except Exception as exc:  # pydantic errors were caught by load_settings already
            raise ConfigError(f"source {name!r} could not be set up: {exc}") from exc
    return built


def _companies_for(source: Source, companies: list[CompanyRef]) -> list[CompanyRef]:
    wanted = getattr(source.settings, "companies", None)
    if not wanted:
        return companies
    keep = set(wanted)
    return [c for c in companies if c.id in keep]


def _fetch(source: Source, companies: list[CompanyRef], day: date
           ) -> tuple[pd.DataFrame | None, list[Failure], str | None]:
    try:
        frame, failures = source.fetch_frame(_companies_for(source, companies), day)
        return frame, failures, None
    except TrackerError as exc:
        return None, [], str(exc)
    except Exception as exc:  # a third-party plugin's bug must not stop the other sources
        log.exception("source %s crashed", source.instance)
        return None, [], f"unexpected error: {exc!r}"
    finally:
        try:
            source.close()
        except Exception:  # closing is best effort
            log.exception("source %s failed to close", source.instance)


def _valid_rows(source: Source, frame: pd.DataFrame) -> tuple[pd.DataFrame, list[Failure]]:
    """Guard the store against a plugin yielding negative, fractional or 0 counts.

    A 0 from a scraper or an API almost always means "the page did not render" and
    would read as a -100% purge, so it is a failure; a source that reads files a
    person prepared (``csv_folder``) sets ``accepts_zero`` to keep the import rules
    (whole numbers >= 0).
    """
    if frame.empty:
        return frame, []
    values = pd.to_numeric(frame["value"], errors="coerce").to_numpy(dtype="float64")
    lowest = 0 if getattr(source, "accepts_zero", False) else 1
    bad = ~np.isfinite(values) | (values < lowest) | (values != np.round(values))
    bad |= np.abs(values) > 2**62  # beyond int64: a parsing accident, not a headcount
    bad |= frame["company"].isna().to_numpy()
    bad |= pd.to_datetime(frame["as_of"], errors="coerce").isna().to_numpy()
    failures = [Failure(source.instance, str(c), f"invalid value {v!r} for {d}")
                for c, v, d in zip(frame["company"][bad], frame["value"][bad],
                                   frame["as_of"][bad], strict=True)]
    # a metric no command could name (``Employees``, ``employees:``) is refused as an
    # import would refuse it: the one rule of tracker.metrics
    why = metric_reasons(frame["metric"].astype(str), "metric")
    misnamed = (why != "") & ~bad
    failures += [Failure(source.instance, str(c), f"{w} (a plugin bug: fix the metric it yields)")
                 for c, w in zip(frame["company"][misnamed], why[misnamed], strict=True)]
    return frame[~(bad | misnamed)], failures


def _write(ws: Workspace, run_id: int, source: Source, before: dict[str, str],
           frame: pd.DataFrame | None, failures: list[Failure], error: str | None
           ) -> SourceOutcome:
    store = ws.store
    if error is not None:
        outcome = SourceOutcome(source.instance, "failed", reason=error)
    else:
        assert frame is not None
        frame, invalid = _valid_rows(source, frame)
        failures = failures + invalid
        status = "ok" if not failures else ("partial" if len(frame) else "failed")
        reason = failures[0].reason if failures and not len(frame) else None
        outcome = SourceOutcome(source.instance, status, ok=len(frame), failures=failures,
                                reason=reason)
    try:
        _save(ws, run_id, source, before, frame, outcome, error)
    except StoreError as exc:
        # this source's data could not be written (e.g. a value the database
        # refuses): the others still are; its file hashes are not saved, so it is
        # read again next run
        outcome = SourceOutcome(source.instance, "failed", failures=outcome.failures,
                                reason=f"could not be stored: {exc}")
        with store.transaction(f"recording source {source.instance}") as conn:
            run_ops.record_source(conn, run_id, source.instance, "failed",
                                  reason=outcome.reason)
    return outcome


def _drop_conflicts(source: Source, frame: pd.DataFrame, outcome: SourceOutcome
                    ) -> pd.DataFrame:
    """Rows the store must not guess about become failures instead of being written.

    Two spellings that resolve to one company ("Apple Inc." and "Apple, Inc") with
    different values for the same day would otherwise be stored as whichever came
    last; an empty name (nothing visible: the only kind without a company id)
    cannot be stored at all.
    """
    key = ["company", "metric", "source", "as_of"]
    unresolved = frame["company"].isna().to_numpy()
    clash = np.zeros(len(frame), dtype=bool)
    ok = ~unresolved
    if ok.any():
        counts = frame[ok].groupby(key)["value"].transform("nunique").to_numpy()
        clash[np.flatnonzero(ok)] = counts > 1
    bad = unresolved | clash
    if not bad.any():
        return frame
    for row in frame[bad].itertuples():
        why = ("empty company name" if pd.isna(row.company) else
               f"conflicting values for company {row.company!r} on {row.as_of:%Y-%m-%d} "
               f"(this row: {row.value})")
        outcome.failures.append(Failure(source.instance, row.written, why))
    outcome.ok -= int(bad.sum())
    outcome.status = "partial" if outcome.ok else "failed"
    return frame[~bad]


def _save(ws: Workspace, run_id: int, source: Source, before: dict[str, str],
          frame: pd.DataFrame | None, outcome: SourceOutcome, error: str | None) -> None:
    """One transaction: the source's rows, its state and its line in the run record."""
    store = ws.store
    with store.transaction(f"saving source {source.instance}") as conn:
        if outcome.ok and frame is not None:
            ids = company_ops.resolve(conn, frame["company"].astype(str).unique())
            frame = frame.assign(written=frame["company"].astype(str),
                                 company=frame["company"].astype(str).map(ids),
                                 value=frame["value"].astype("int64"))
            frame = _drop_conflicts(source, frame, outcome)
            outcome.inserted = store.write_frame(conn, frame.drop(columns="written"),
                                                 run_id=run_id).inserted
        if error is None:
            run_ops.save_state(conn, source.instance, source.context.state, before)
        run_ops.record_source(
            conn, run_id, source.instance, outcome.status, ok=outcome.ok,
            failed=len(outcome.failures), inserted=outcome.inserted, reason=outcome.reason,
            failures=[{"company": f.company, "reason": f.reason, "retriable": f.retriable}
                      for f in outcome.failures[:200]],
        )


def collect(ws: Workspace, day: date | None = None, only: list[str] | None = None,
            run_id: int | None = None) -> CollectResult:
    """Run every enabled source once for ``day`` (default: today in the schedule's zone)."""
    day = day or ws.today()
    sources = build_sources(ws, only)
    own_run = run_id is None
    if run_id is None:
        run_id = run_ops.start_run(ws.store, "collect")
    companies = ws.company_refs() if any(s.uses_companies for s in sources) else []
    outcomes: list[SourceOutcome] = []
    try:
        befores = {s.instance: dict(s.context.state) for s in sources}
        with ThreadPoolExecutor(max_workers=max(1, len(sources))) as pool:
            futures = {pool.submit(_fetch, s, companies, day): s for s in sources}
            # write each source as soon as it is done, so a slow source listed first
            # neither delays nor (if the run is killed) loses the others' data
            done: dict[str, SourceOutcome] = {}
            for future in as_completed(futures):
                source = futures[future]
                frame, failures, error = future.result()
                done[source.instance] = _write(ws, run_id, source, befores[source.instance],
                                               frame, failures, error)
        outcomes = [done[s.instance] for s in sources]
    except BaseException as exc:
        if own_run:
            run_ops.finish_run(ws.store, run_id, "failed", f"collect failed: {exc}")
        raise
    result = CollectResult(run_id, day, outcomes)
    if own_run:
        # the record says what the exit code says: a collect that exited 3 is not "ok"
        run_ops.finish_run(ws.store, run_id, "failed" if result.exit_code else "ok",
                           result.summary(), {"exit_code": result.exit_code})
    return result


__all__ = ["CollectResult", "SourceError", "SourceOutcome", "build_sources", "collect",
           "enabled_sources", "require_sources"]
