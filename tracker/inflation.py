"""Claimed profiles against official headcounts: the ratio, and when it is abnormal.

LinkedIn's 2022 purges removed half of Apple's 576,562 profiles, yet Apple had about
164,000 employees: the count a platform claims is not a headcount, and how far it is
from one is itself worth watching. Per series (company, ``employees``, source) the
*ratio* is the claimed count of a day divided by the company's reference headcount
(``tracker.references``) in force that day.

**Step, not interpolation.** The reference is carried forward from its day until
the next one: a daily verdict may only use what was known by then (detection is
causal), and a straight line towards next year's annual report uses next year's
report. A new reference therefore moves the ratio on its day, in one step.

Two alert kinds, stored through the same path as the detector's
(:func:`tracker.alerts.save_verdicts`):

- ``inflated``: a company's log ratio is abnormal for its cohort: a robust z
  (median and MAD of the *other* companies of the cohort that day, the spread
  floored at ``[alerts] inflation_scale_floor``) of at least ``inflation_z``, and a
  ratio at least ``inflation_min_excess`` times the cohort's. One alert per episode,
  dated its first day; an episode lasts while the z stays above half the threshold
  (hysteresis, so a ratio hovering at the threshold is not a new alert every week).
  Only ratios above the cohort count: a platform under-counting is not inflation.
- ``ratio_jump``: the level of the ratio changed by ``ratio_jump_pct`` or more, with
  the reference held at the value of the day judged, so the reference cancels out:
  a purge (claimed profiles fall, the reference stays) is a jump, a new reference
  is not. The new level must hold for ``ratio_jump_days`` observations (the median
  of those against the median of the ``ratio_window`` before), and the day's own
  change must be at least half the threshold, so a one-day glitch is none; it is
  reported on the day the level has held, using nothing later.

Cohorts: ``[cohorts.NAME] companies = [...]`` when the configuration has them (see
:func:`cohorts`), else a company's ``industry`` tag, else all companies; a cohort
with fewer than ``inflation_min_peers`` other companies with a ratio that day is
replaced by all companies for that day.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tracker.errors import NotFoundError
from tracker.records import DEFAULT_METRIC, INFLATION_KINDS, StepOutcome

if TYPE_CHECKING:
    from tracker.alerts import DetectionResult
    from tracker.config import AlertSettings
    from tracker.workspace import Workspace

RATIO_COLUMNS = ("company", "metric", "source", "as_of", "claimed", "reference",
                 "reference_date", "reference_source", "ratio")
#: The cohort of a company without one: every company.
ALL = "(all companies)"
_MAD = 1.4826
#: Cohorts up to this many companies are judged leaving the company out exactly.
LEAVE_ONE_OUT_MAX = 50
#: A cohort lookup: company id -> cohort name (companies left out belong to ALL).
CohortLookup = Callable[["Workspace"], dict[str, str]]


def ratios(observations: pd.DataFrame, references: pd.DataFrame) -> pd.DataFrame:
    """The daily ratio claimed / reference (``RATIO_COLUMNS``), reference carried forward.

    ``observations`` as ``Store.observations`` returns them (company, metric, source,
    as_of, value), ``references`` as ``store.references.load`` (company, as_of, count,
    source). A day before a company's first reference has no ratio and no row.
    """
    if observations.empty or references.empty:
        return pd.DataFrame(columns=list(RATIO_COLUMNS))
    obs = observations[["company", "metric", "source", "as_of", "value"]].copy()
    obs["as_of"] = pd.to_datetime(obs["as_of"]).astype("datetime64[ns]")
    refs = references.rename(columns={"as_of": "reference_date", "count": "reference",
                                      "source": "reference_source"})
    refs = refs[["company", "reference_date", "reference", "reference_source"]].copy()
    refs["reference_date"] = pd.to_datetime(refs["reference_date"]).astype("datetime64[ns]")
    merged = pd.merge_asof(obs.sort_values("as_of"), refs.sort_values("reference_date"),
                           left_on="as_of", right_on="reference_date", by="company",
                           direction="backward")
    merged = merged[merged["reference"].notna()].rename(columns={"value": "claimed"})
    merged["reference"] = merged["reference"].astype("int64")
    merged["ratio"] = merged["claimed"] / merged["reference"]
    merged = merged.sort_values(["company", "metric", "source", "as_of"], kind="stable")
    return merged[list(RATIO_COLUMNS)].reset_index(drop=True)


def ratio_series(ws: Workspace, company: str | None = None, *, metric: str = DEFAULT_METRIC,
                 until: date | None = None) -> pd.DataFrame:
    """:func:`ratios` over the store, of one company (id, alias or name) or of every
    company with a reference."""
    from tracker.store import references as reference_store

    ids = [ws.store.company_id(company)] if company else None
    refs = reference_store.load(ws.store, ids)
    if refs.empty:
        return pd.DataFrame(columns=list(RATIO_COLUMNS))
    obs = ws.store.observations(sorted(set(refs["company"])), metric=metric, until=until)
    return ratios(obs, refs)


# -- cohorts --------------------------------------------------------------------------

def cohorts(ws: Workspace) -> dict[str, str]:
    """Company id -> cohort: ``[cohorts.NAME] companies`` when config has that section
    (ids, names or aliases), else the ``industry`` tag; others are in :data:`ALL`.

    The lookup is the one seam for cohorts: :func:`detect_inflation` takes any
    :data:`CohortLookup`, so another mapping plugs in without touching the rule.
    """
    from tracker.store import references as reference_store

    out = {cid: tags["industry"] for cid, tags in reference_store.company_tags(ws.store).items()
           if tags.get("industry")}
    declared = getattr(ws.settings, "cohorts", None) or {}
    for name, spec in declared.items():
        members = spec.get("companies", []) if isinstance(spec, Mapping) \
            else getattr(spec, "companies", [])
        for member in members:
            try:
                out[ws.store.company_id(member)] = str(name)
            except NotFoundError:  # not collected yet: it has no ratio to compare
                continue
    return out


# -- the two rules --------------------------------------------------------------------

def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    from tracker.detect.engine import empty_frame

    base = empty_frame()
    columns = [*base.columns, "company", "metric", "source"]
    if not rows:
        return base.assign(company=pd.Series(dtype=object), metric=pd.Series(dtype=object),
                           source=pd.Series(dtype=object))[columns]
    out = pd.DataFrame(rows)
    for c in columns:
        if c not in out:
            out[c] = np.nan
    for c in ("date", "detected_on", "confirmed_on"):
        out[c] = pd.to_datetime(out[c])
    return out[columns].sort_values(["date", "company", "kind"], kind="stable") \
        .reset_index(drop=True)


def _row(key: tuple[str, str, str], kind: str, day: pd.Timestamp, found_on: pd.Timestamp,
         change: float, before: float, after: float, score: float,
         severity: str) -> dict[str, Any]:
    company, metric, source = key
    return {"company": company, "metric": metric, "source": source, "series": -1,
            "date": day, "detected_on": found_on, "confirmed_on": found_on, "kind": kind,
            "status": "confirmed", "change_pct": float(change), "value_before": float(before),
            "value_after": float(after), "score": float(score), "severity": severity}


def inflated(ratio: pd.DataFrame, cohort_of: Mapping[str, str],
             s: AlertSettings) -> pd.DataFrame:
    """``inflated`` verdicts (detector rows) of a :func:`ratios` frame.

    ``change_pct`` is how far the ratio is above the cohort's median (percent),
    ``value_before`` the cohort's median ratio, ``value_after`` the company's,
    ``score`` the robust z; each of the episode's first day.
    """
    if ratio.empty:
        return _frame([])
    keys = ["company", "metric", "source"]
    wide = ratio.pivot_table(index="as_of", columns=keys, values="ratio", aggfunc="last")
    logs = np.log(wide.to_numpy(dtype="float64"))
    names = list(wide.columns)
    company = np.array([k[0] for k in names])
    group = np.array([cohort_of.get(c, ALL) for c in company])
    floor, strong = s.inflation_scale_floor, s.inflation_z
    whole: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    seen = ~np.isnan(logs)

    def peers(j: int, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The stats of the others in cohort ``name``: exact (leave the company out) for
        a small cohort; a large one's own stats, computed once, where leaving one out
        moves the median by at most one of more than LEAVE_ONE_OUT_MAX values."""
        mask = (group == name) if name != ALL else np.ones(len(names), dtype=bool)
        others = mask & (company != company[j])
        if len(set(company[others])) <= LEAVE_ONE_OUT_MAX:
            return _peer_stats(logs[:, others], floor)
        if name not in whole:
            whole[name] = _peer_stats(logs[:, mask], floor)
        med, scale, count = whole[name]
        return med, scale, count - seen[:, mask & (company == company[j])].sum(axis=1)

    rows = []
    for j, key in enumerate(names):
        med, scale, n = peers(j, group[j])
        if group[j] != ALL:  # too few peers that day: against every other company
            a_med, a_scale, a_n = peers(j, ALL)
            thin = n < s.inflation_min_peers
            med, scale = np.where(thin, a_med, med), np.where(thin, a_scale, scale)
            n = np.where(thin, a_n, n)
        excess = logs[:, j] - med
        with np.errstate(invalid="ignore"):
            z = excess / scale
            enough = n >= s.inflation_min_peers
            hot = enough & (z >= strong) & (excess >= np.log(s.inflation_min_excess))
            warm = enough & (z >= strong / 2) & (excess >= np.log(s.inflation_min_excess) / 2)
        # a day without the company's ratio or without enough peers tells nothing:
        # it neither starts nor ends an episode
        idx = np.flatnonzero(~np.isnan(logs[:, j]) & enough)
        if not idx.size:
            continue
        run = np.cumsum(~warm[idx])  # an episode lives within one run of warm days
        starts = idx[hot[idx]]
        if not starts.size:
            continue
        _, first = np.unique(run[hot[idx]], return_index=True)
        for i in starts[first]:
            day = wide.index[i]
            rows.append(_row(key, "inflated", day, day, (np.exp(excess[i]) - 1) * 100,
                             np.exp(med[i]), np.exp(logs[i, j]), z[i], s.inflation_severity))
    return _frame(rows)


def _peer_stats(peers: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per day: the peers' median log ratio, their robust spread (floored), how many."""
    n = (~np.isnan(peers)).sum(axis=1)
    if peers.shape[1] == 0:
        nan = np.full(peers.shape[0], np.nan)
        return nan, nan, n
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a day without peers: NaN
        med = np.nanmedian(peers, axis=1)
        mad = np.nanmedian(np.abs(peers - med[:, None]), axis=1)
    return med, np.maximum(np.nan_to_num(mad * _MAD, nan=floor), floor), n


def ratio_jumps(ratio: pd.DataFrame, s: AlertSettings) -> pd.DataFrame:
    """``ratio_jump`` verdicts (detector rows) of a :func:`ratios` frame.

    ``value_before`` and ``value_after`` are the ratio's level before and after, both
    against the reference of the jump's day; ``change_pct`` their change; ``score``
    the change in multiples of the threshold.
    """
    if ratio.empty:
        return _frame([])
    need = np.log1p(s.ratio_jump_pct / 100)
    hold, window = s.ratio_jump_days, s.ratio_window
    rows = []
    for key, part in ratio.groupby(["company", "metric", "source"], sort=True):
        log_claimed = pd.Series(np.log(part["claimed"].to_numpy(dtype="float64")))
        before = log_claimed.shift(1).rolling(window, min_periods=window).median()
        after = log_claimed[::-1].rolling(hold, min_periods=hold).median()[::-1]
        jump = (after - before).to_numpy()
        step = log_claimed.diff().to_numpy()
        with np.errstate(invalid="ignore"):
            hit = (np.abs(jump) >= need) & (np.sign(step) == np.sign(jump)) & (
                np.abs(step) >= need / 2)
        last = -hold - 1
        days = part["as_of"].to_numpy()
        refs = part["reference"].to_numpy(dtype="float64")
        for i in np.flatnonzero(hit):
            if i - last <= hold:  # the same move, rolled out over consecutive days
                continue
            last = i
            ref = refs[i]
            rows.append(_row(key, "ratio_jump", pd.Timestamp(days[i]),
                             pd.Timestamp(days[i + hold - 1]), np.expm1(jump[i]) * 100,
                             np.exp(before.iloc[i]) / ref, np.exp(after.iloc[i]) / ref,
                             abs(jump[i]) / need, s.inflation_severity))
    return _frame(rows)


# -- over the store: detection and the job's step --------------------------------------

def detect_inflation(ws: Workspace, day: date | None = None, *,
                     cohort_lookup: CohortLookup = cohorts) -> DetectionResult:
    """Judge every ratio up to ``day`` and store the verdicts as alerts.

    The whole history of the companies with a reference is judged on each call (they
    are few, and a new reference changes old ratios): the stored ``inflated`` and
    ``ratio_jump`` alerts it no longer finds are withdrawn, the detector's own are
    left alone (``Judged.kinds``).
    """
    from tracker.alerts import DetectionResult, save_verdicts
    from tracker.store import alerts as alert_store

    ratio = ratio_series(ws, until=day)
    if ratio.empty:
        return DetectionResult(pd.DataFrame(), pd.DataFrame())
    s = ws.settings.alerts
    found = pd.concat([inflated(ratio, cohort_lookup(ws), s), ratio_jumps(ratio, s)],
                      ignore_index=True).sort_values("date", kind="stable")
    through = day or pd.Timestamp(ratio["as_of"].max()).date()
    judged = alert_store.Judged(through, kinds=INFLATION_KINDS,
                                cause="the ratios to reference headcounts were judged again")
    return save_verdicts(ws, found.reset_index(drop=True),
                         series=ratio.groupby(["company", "source"]).ngroups, judged=judged)


def inflation_step(ws: Workspace, day: date, run_id: int) -> StepOutcome:
    """The main job's step after detection: inflation alerts, new ones handed on."""
    from tracker.detection import new_alerts

    result = detect_inflation(ws, day)
    return StepOutcome(new_alerts=new_alerts(result, day, ws.settings.alerts.fresh_days))


def inflated_companies(ws: Workspace, day: date) -> pd.DataFrame:
    """Companies with an open ``inflated`` alert by ``day``, for the report: their latest
    ratio (within a month of ``day``) with claimed and reference, and the cohort's
    median ratio when the episode began (``since``)."""
    from tracker.alerts import list_alerts

    open_ = list_alerts(ws, kind="inflated", status="open")
    cols = ["company", "company_name", "source", "as_of", "claimed", "reference",
            "reference_source", "ratio", "cohort_ratio", "since"]
    if open_.empty:
        return pd.DataFrame(columns=cols)
    open_ = open_[(pd.to_datetime(open_["detected_on"]) <= pd.Timestamp(day))
                  & (open_["verdict"] != "withdrawn")]
    ratio = ratio_series(ws, until=day)
    if open_.empty or ratio.empty:
        return pd.DataFrame(columns=cols)
    latest = ratio[ratio["as_of"] >= pd.Timestamp(day - timedelta(days=31))] \
        .drop_duplicates(["company", "source"], keep="last")
    first = open_.sort_values("date").drop_duplicates(["company", "source"], keep="last")
    out = latest.merge(first[["company", "source", "date", "value_before"]],
                       on=["company", "source"])
    from tracker.store.companies import names

    out["company_name"] = out["company"].map(names(ws.store))
    out = out.rename(columns={"date": "since", "value_before": "cohort_ratio"})
    out["as_of"] = out["as_of"].dt.date
    out["since"] = pd.to_datetime(out["since"]).dt.date
    return out[cols].sort_values("ratio", ascending=False).reset_index(drop=True)


def with_ratio(ws: Workspace, frame: pd.DataFrame, company: str,
               metric: str = DEFAULT_METRIC) -> pd.DataFrame:
    """A ``Workspace.series`` frame with the reference in force each day and the ratio,
    when the company has a reference (unchanged otherwise): what ``tracker show``
    prints."""
    ratio = ratio_series(ws, company, metric=metric)
    if ratio.empty:
        return frame
    keyed = ratio[["source", "as_of", "reference", "ratio"]]
    out = frame.assign(as_of=pd.to_datetime(frame["as_of"]).astype("datetime64[ns]")).merge(
        keyed, on=["source", "as_of"], how="left")
    out["as_of"] = out["as_of"].dt.date
    out["ratio"] = out["ratio"].round(3)
    return out
