"""Population (platform-wide) events over the store: find, save, list, the daily step.

The rule is :mod:`tracker.detect.population`'s; this module decides what it reads
and which days it judges, like :mod:`tracker.detection` does for alerts. A full pass
(:func:`find_population_events` without ``since``) judges every day. The daily step
keeps its own mark (last day judged, last observation read) and judges only the
days after it, and those of observations written since (late data, corrections),
from a bounded window: the series' statistics need ``window_days`` of history and
the share's baseline ``baseline_days`` more, so the window's verdicts equal a full
pass's. Events touching the judged days (and the day before, so a purge rolling
over two nights stays one event) are replaced; member alerts get the event's id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import pandas as pd

from tracker.detect.engine import window_days
from tracker.detect.population import baseline_reach, population_pass
from tracker.errors import ConfigError, InputError, NotFoundError
from tracker.records import EVENT_FIELDS, MEMBER_FIELDS, EventMember, PopulationEvent, StepOutcome
from tracker.store import alerts as alert_store
from tracker.store import events as event_store
from tracker.workspace import Workspace

__all__ = ["PopulationResult", "event_members", "find_population_events", "list_events",
           "population_events", "population_step", "read_from", "share_history"]


@dataclass
class PopulationResult:
    """What one population pass computed and saved."""

    daily: pd.DataFrame
    events: pd.DataFrame
    members: pd.DataFrame
    new: list[str] = field(default_factory=list)
    deleted: int = 0


def _cohorts(ws: Workspace) -> dict[str, list[str]]:
    """``[cohorts.NAME]`` with company names resolved to ids; an unknown one is named."""
    out = {}
    for name, spec in ws.settings.cohorts.items():
        ids = []
        for company in spec.companies:
            try:
                ids.append(ws.store.company_id(company))
            except NotFoundError:
                raise ConfigError(
                    f"{ws.settings.config_path or 'config'}: [cohorts.{name}] companies: "
                    f"{company!r} is not a known company; import its data first or remove "
                    "it from the cohort") from None
        out[name] = ids
    return out


@dataclass(frozen=True)
class Reads:
    """What one population pass reads and judges: the days [since, until] of the
    store (None: from the first, to the last), events of ``judge_from`` on, and the
    groups (cohort name -> company ids; company id -> industry tag)."""

    since: date | None
    until: date | None
    judge_from: date | None
    cohorts: dict[str, list[str]]
    industries: dict[str, str]


def next_reads(ws: Workspace, day: date) -> Reads | None:
    """What the daily step will read for ``day`` (None: the step is off, or its
    ``[cohorts]`` are wrong, which the step itself reports). The Dask engine's daily
    detection asks it, so that each task reads its slice once for both steps."""
    if not ws.settings.population.enabled:
        return None
    try:
        return reads_of(ws, _step_start(ws, day), day)
    except ConfigError:
        return None


def reads_of(ws: Workspace, since: date | None, until: date | None) -> Reads:
    """The one derivation of a pass's reads from the days it judges: the history
    reaches :func:`read_from` before ``since`` for exact verdicts."""
    return Reads(None if since is None else read_from(ws, since), until, since,
                 _cohorts(ws), event_store.industries(ws.store))


def _analyse(ws: Workspace, reads: Reads) -> PopulationResult:
    from tracker.detection import build_matrix, window_matrix

    if ws.settings.detect.engine == "dask":  # each task scores its own slice
        from tracker import dask_engine

        return PopulationResult(*dask_engine.population(ws, reads))
    since, until, judge_from = reads.since, reads.until, reads.judge_from
    matrix, keys = build_matrix(ws, since=since, until=until) \
        if since is None or until is None else window_matrix(ws, since, until)
    daily, events, members = population_pass(
        matrix, keys, ws.settings.detect, ws.settings.population, cohorts=reads.cohorts,
        industries=reads.industries,
        judge_from=None if judge_from is None else pd.Timestamp(judge_from))
    return PopulationResult(daily, events, members)


def read_from(ws: Workspace, start: date) -> date:
    """The first day a judgement of the days from ``start`` reads: the shares'
    baseline before it, and a full detection window before each of those days (the
    daily detection keeps its window from here, so this step reads no observations)."""
    return start - timedelta(days=window_days(ws.settings.detect)
                             + baseline_reach(ws.settings.population))


def find_population_events(ws: Workspace, *, since: date | None = None,
                           until: date | None = None) -> PopulationResult:
    """Judge the days [since, until] (all when ``since`` is None) and save their events.

    What a notebook calls; ``tracker detect --full`` and the daily step use it too.
    The history read reaches far enough before ``since`` for exact verdicts.
    """
    last_id = alert_store.last_observation_id(ws.store)
    result = _analyse(ws, reads_of(ws, since, until))
    if result.daily.empty:
        return result
    through = until or result.daily["date"].max().date()
    first = None if since is None else since - timedelta(days=1)
    ev, mem = result.events, result.members
    if first is not None:
        ev = ev[ev["last_date"] >= pd.Timestamp(first)]
        mem = mem[mem["event_id"].isin(ev["id"])]
    mem = mem.reset_index(drop=True)
    if len(mem):
        links = alert_store.query(ws.store, since=(ev["first_date"].min()
                                                   - pd.Timedelta(days=1)).date())
        from tracker.detect.population import link_alerts

        mem = mem.assign(alert_id=link_alerts(mem, ev, links))
        mem["series_id"], mem["source_id"] = alert_store.series_source_ids(ws.store, mem)
    else:
        mem = mem.assign(alert_id=None)
    mark = None
    old = event_store.load_mark(ws.store)
    if until is None or old is None or through >= old[0]:
        mark = (through, last_id)
    result.new, result.deleted = event_store.save(
        ws.store, _event_rows(ev), _member_rows(mem), first=first, last=through, mark=mark)
    result.events, result.members = ev.reset_index(drop=True), mem
    return result


def _event_rows(ev: pd.DataFrame) -> list[dict]:
    rows = ev.astype(object).where(ev.notna(), None).to_dict("records")
    for r in rows:
        r["first_date"] = pd.Timestamp(r["first_date"]).date()
        r["last_date"] = pd.Timestamp(r["last_date"]).date()
    return rows


def _member_rows(mem: pd.DataFrame) -> list[dict]:
    if mem.empty:
        return []
    return [{"event_id": r.event_id, "series_id": int(r.series_id),
             "source_id": int(r.source_id), "date": pd.Timestamp(r.date).date(),
             "change_pct": float(r.change_pct), "score": float(r.score),
             "value_before": None if pd.isna(r.value_before) else float(r.value_before),
             "alert_id": None if r.alert_id is None or pd.isna(r.alert_id)
             else int(r.alert_id)} for r in mem.itertuples()]


def _step_start(ws: Workspace, day: date) -> date | None:
    """The first day the daily step judges: the day after its mark, or the earliest day
    of observations written since; None (every day) with no mark or too many days."""
    mark = event_store.load_mark(ws.store)
    if mark is None:
        return None
    start = mark[0] + timedelta(days=1)
    earliest = alert_store.earliest_day_since(ws.store, mark[1])
    if earliest is not None:
        start = min(start, earliest)
    start = min(start, day)
    return None if (day - start).days >= window_days(ws.settings.detect) else start


def population_step(ws: Workspace, day: date, run_id: int) -> StepOutcome:
    """The main job's step after detection: judge the new days, note new events."""
    if not ws.settings.population.enabled:
        return StepOutcome()
    result = find_population_events(ws, since=_step_start(ws, day), until=day)
    if not result.new:
        return StepOutcome()
    new = result.events[result.events["id"].isin(result.new)]
    # as alerts: an event of old history (an import of 2022) is stored, not news
    fresh = new["last_date"] >= pd.Timestamp(day - timedelta(
        days=ws.settings.alerts.fresh_days))
    shown = ", ".join(f"{r.id} ({r.n_members} of {r.n_series} series, median "
                      f"{r.median_change_pct:+.1f}%)" for r in new[fresh].itertuples())
    notes = [f"{int(fresh.sum())} new population event(s): {shown}"] if fresh.any() else []
    if (~fresh).any():
        notes.append(f"{int((~fresh).sum())} population event(s) about older history stored "
                     "(tracker events)")
    return StepOutcome(notes=notes, details={"population_events": list(new["id"])})


def list_events(ws: Workspace, *, since: date | None = None, until: date | None = None,
                metric: str | None = None, cohort: str | None = None) -> pd.DataFrame:
    """Stored population events (columns :data:`EVENT_FIELDS`), oldest first."""
    if since is not None and until is not None and since > until:
        raise InputError(f"--since {since} is after --until {until}; swap them")
    frame = event_store.query(ws.store, since=since, until=until, metric=metric,
                              cohort=cohort)
    for c in ("share", "weighted_share", "peak_share", "expected_share"):
        frame[c] = frame[c].round(4)
    for c in ("score", "median_change_pct"):
        frame[c] = frame[c].round(2)
    return frame[list(EVENT_FIELDS)].reset_index(drop=True)


def event_members(ws: Workspace, event_id: str) -> pd.DataFrame:
    """Members of one event (columns :data:`MEMBER_FIELDS`), biggest move first."""
    if event_store.query(ws.store, ids=[event_id]).empty:
        raise NotFoundError(f"no population event {event_id!r}; `tracker events` lists them")
    frame = event_store.members(ws.store, [event_id])
    frame["alerted"] = frame["alert_id"].notna()
    frame["alert_id"] = frame["alert_id"].astype("Int64")
    frame["change_pct"] = frame["change_pct"].round(2)
    frame["score"] = frame["score"].round(2)
    order = frame["change_pct"].abs().sort_values(ascending=False, kind="stable").index
    return frame.loc[order, list(MEMBER_FIELDS)].reset_index(drop=True)


def population_events(ws: Workspace, *, since: date | None = None, until: date | None = None,
                      metric: str | None = None, cohort: str | None = None
                      ) -> list[PopulationEvent]:
    """Stored events as records with their members (what notebooks and notifiers use)."""
    frame = event_store.query(ws.store, since=since, until=until, metric=metric,
                              cohort=cohort)
    if frame.empty:
        return []
    mem = event_store.members(ws.store, list(frame["id"]))
    by_event = {k: g for k, g in mem.groupby("event_id")}
    out = []
    for r in frame.to_dict("records"):
        g = by_event.get(r["id"], mem.iloc[0:0])
        members = tuple(EventMember(m.company, m.metric, m.source, m.date, float(m.change_pct),
                                    float(m.score), None if pd.isna(m.value_before)
                                    else float(m.value_before),
                                    None if pd.isna(m.alert_id) else int(m.alert_id))
                        for m in g.itertuples())
        out.append(PopulationEvent(
            id=r["id"], metric=r["metric"], cohort=r["cohort"], direction=r["direction"],
            first_date=r["first_date"], last_date=r["last_date"], n_series=int(r["n_series"]),
            n_members=int(r["n_members"]), share=float(r["share"]),
            weighted_share=float(r["weighted_share"]), peak_share=float(r["peak_share"]),
            expected_share=float(r["expected_share"]), score=float(r["score"]),
            median_change_pct=float(r["median_change_pct"]), members=members,
            notified_at=None if pd.isna(r["notified_at"]) else r["notified_at"]))
    return out


def share_history(ws: Workspace, *, until: date | None = None, since: date | None = None,
                  metric: str = "employees") -> pd.DataFrame:
    """Each day's share of the metric's series moving down and up (whole population),
    with the event days flagged: what the overview chart draws."""
    result = _analyse(ws, reads_of(ws, since, until))
    d = result.daily
    if d.empty:
        return d
    d = d[(d["metric"] == metric) & d["cohort"].isna()]
    if since is not None:
        d = d[d["date"] >= pd.Timestamp(since)]
    return d.reset_index(drop=True)
