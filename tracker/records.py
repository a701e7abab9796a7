"""The contracts passed between modules.

Plain frozen dataclasses rather than ORM objects: sources, detectors and notifiers
exchange these without knowing about the database, and bulk paths use DataFrames
with the same field names instead of lists of these.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from typing import Any

DEFAULT_METRIC = "employees"

#: An alert's lifecycle, set by analysts (``tracker review``).
ALERT_STATUSES: tuple[str, ...] = ("open", "acknowledged", "dismissed", "resolved")
#: What detection says of an alert, one vocabulary in the store, the CLI, replays,
#: charts and the report: reported on its day (provisional), then the move held
#: (confirmed) or came back (glitch); withdrawn when corrected data no longer show it.
ALERT_VERDICTS: tuple[str, ...] = ("provisional", "confirmed", "glitch", "withdrawn")
#: What kind of move an alert is about.
#: The detector's (``tracker.detect``) and the ratio to a reference headcount's
#: (``tracker.inflation``: abnormal for its cohort, or a level change of the ratio).
DETECTOR_KINDS: tuple[str, ...] = ("drop", "spike", "glitch", "drift_up", "drift_down")
INFLATION_KINDS: tuple[str, ...] = ("inflated", "ratio_jump")
ALERT_KINDS: tuple[str, ...] = (*DETECTOR_KINDS, *INFLATION_KINDS)

#: Field order of the alert record in JSON and CSV exports (see DESIGN.md).
ALERT_FIELDS: tuple[str, ...] = (
    "id",
    "company",
    "metric",
    "source",
    "date",
    "detected_on",
    "confirmed_on",
    "verdict",
    "kind",
    "change_pct",
    "value_before",
    "value_after",
    "score",
    "severity",
    "status",
    "event_id",
    "sources_agreeing",
    "sources_seen",
    "sources_silent",
    "sources_no_data",
    "possible_source_error",
)


@dataclass(frozen=True, slots=True)
class CompanyRef:
    """What a source needs to know to look a company up.

    ``external_ids`` maps a key a source understands (``website``, ``linkedin``,
    a provider's own id) to the identifier it expects.
    """

    id: str
    name: str
    external_ids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Observation:
    """Source ``source`` said series (company, metric) had ``value`` on day ``as_of``.

    ``collected_at`` is left ``None`` by sources; the store stamps the time the
    observation was learned, so revisions of a day stay distinguishable.
    """

    company: str
    as_of: date
    value: int
    metric: str = DEFAULT_METRIC
    source: str = "manual"
    collected_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """A source could not produce a value for one company (or for all, if company is None)."""

    source: str
    company: str | None
    reason: str
    retriable: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """One alert as it travels from the store (or the detection step) to the job and
    the notifiers, so that neither has to know column names or SQL rows.

    Besides the export record (:data:`ALERT_FIELDS`) it carries what delivery needs:
    ``fingerprint``, the identity that survives re-detection (what a notifier
    remembers having sent), ``company_name`` for messages (None when unknown), and
    ``fresh``: False for backfill of old history, which is stored but does not count
    in ``tracker run``'s exit code. An *update* (a notified alert whose verdict
    changed since) also carries what its notification said, ``previous_verdict``,
    ``previous_kind`` and ``previous_severity``. Keyword-only because twenty
    positional fields would be a trap.
    """

    id: int | None = None
    fingerprint: str
    company: str
    company_name: str | None = None
    metric: str
    source: str
    # _dt.date: inside the class, the field ``date`` would shadow the type for checkers
    date: _dt.date
    detected_on: _dt.date
    confirmed_on: _dt.date | None = None
    verdict: str | None = None
    kind: str
    change_pct: float
    value_before: float | None = None
    value_after: float | None = None
    score: float
    severity: str
    status: str | None = None
    event_id: str | None = None
    sources_agreeing: int | None = None
    #: Corroboration (``tracker.corroboration``): the sources that saw the move (its
    #: own first), those with data that did not, those without data near its date
    #: (comma-separated names, None when there are none), and whether only its own
    #: source saw it while another one with data did not (never critical then).
    sources_seen: str | None = None
    sources_silent: str | None = None
    sources_no_data: str | None = None
    possible_source_error: bool = False
    fresh: bool = True
    #: For an update (a notified alert whose verdict changed): what was notified.
    previous_verdict: str | None = None
    previous_kind: str | None = None
    previous_severity: str | None = None

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> Alert:
        """Build an alert from a dict or a database row mapping.

        Keys that are not fields are ignored (rows carry ids and timestamps the
        record does not need); a missing optional field, and a NaN/NaT a DataFrame
        puts where a value is missing, become None.
        """
        values = {name: _present(m[name]) for name in _ALERT_ATTRS if name in m}
        missing = [name for name in _ALERT_REQUIRED if values.get(name) is None]
        if missing:
            raise ValueError(f"an alert needs {', '.join(missing)}; got only "
                             f"{', '.join(sorted(values)) or 'nothing'}")
        if "fresh" in values:
            values["fresh"] = bool(values["fresh"]) if values["fresh"] is not None else True
        if "possible_source_error" in values:
            values["possible_source_error"] = bool(values["possible_source_error"])
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """Field name -> value, in field order (for JSON payloads and templates)."""
        return {name: getattr(self, name) for name in _ALERT_ATTRS}

    @property
    def update_key(self) -> str:
        """The per-notifier delivery key of an update: one per alert and verdict, so a
        verdict is told once and a later, different one is told again."""
        return f"{self.fingerprint}@{self.verdict}"


def _present(value: Any) -> Any:
    """None for the missing-value markers of pandas and numpy (NaN, NaT, pd.NA)."""
    try:
        return None if value is None or value != value else value
    except TypeError:  # pd.NA refuses to be a bool
        return None


_ALERT_ATTRS: tuple[str, ...] = tuple(f.name for f in fields(Alert))
_ALERT_REQUIRED: tuple[str, ...] = (
    "fingerprint", "company", "metric", "source", "date", "detected_on", "kind",
    "change_pct", "score", "severity",
)


@dataclass
class StepOutcome:
    """What a step of the main job may return instead of a bare list of new alerts:
    fragments for the summary line and details for the run record (the notify step
    reports failed sends this way, without failing the run).

    It lives here rather than in :mod:`tracker.job` so that the steps (notify,
    report) can return it without importing the job that imports them.
    """

    new_alerts: list[Alert] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


#: Field order of the population event record in JSON and CSV exports.
EVENT_FIELDS: tuple[str, ...] = (
    "id", "metric", "cohort", "direction", "first_date", "last_date", "n_series",
    "n_members", "share", "weighted_share", "peak_share", "expected_share", "score",
    "median_change_pct", "n_alerted", "n_silent",
)
#: Field order of an event member in listings (``tracker events --members``).
MEMBER_FIELDS: tuple[str, ...] = (
    "event_id", "company", "metric", "source", "date", "change_pct", "score",
    "value_before", "alerted", "alert_id",
)


@dataclass(frozen=True, slots=True)
class EventMember:
    """A series that moved with a population event; ``alert_id`` is its own alert, None
    when its move was too small to alert alone (what only the population shows)."""

    company: str
    metric: str
    source: str
    date: _dt.date
    change_pct: float
    score: float
    value_before: float | None = None
    alert_id: int | None = None

    @property
    def alerted(self) -> bool:
        return self.alert_id is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class PopulationEvent:
    """An abnormal share of a population (a metric, or a cohort or industry within it)
    moving the same way within consecutive days: a platform-wide purge or surge.

    ``share``/``weighted_share`` are the members' share of the series observed (by
    count, by headcount before the move); ``peak_share`` the highest daily share of
    series moving beyond ``[population] move_z``, ``expected_share`` what the share's
    own history expected and ``score`` how far above it the day was.
    """

    id: str
    metric: str
    cohort: str | None = None
    direction: str
    first_date: _dt.date
    last_date: _dt.date
    n_series: int
    n_members: int
    share: float
    weighted_share: float
    peak_share: float
    expected_share: float
    score: float
    median_change_pct: float
    members: tuple[EventMember, ...] = ()
    notified_at: datetime | None = None

    @property
    def member_alerts(self) -> tuple[int, ...]:
        """Ids of the members' own alerts."""
        return tuple(m.alert_id for m in self.members if m.alert_id is not None)

    @property
    def silent_members(self) -> tuple[EventMember, ...]:
        """Members that would not have alerted alone."""
        return tuple(m for m in self.members if m.alert_id is None)

    @property
    def n_alerted(self) -> int:
        return len(self.member_alerts)

    @property
    def n_silent(self) -> int:
        return self.n_members - self.n_alerted if self.members else 0

    def as_dict(self) -> dict[str, Any]:
        """The export record (:data:`EVENT_FIELDS`)."""
        return {name: getattr(self, name) for name in EVENT_FIELDS}
