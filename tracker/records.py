"""The contracts passed between modules.

Plain frozen dataclasses rather than ORM objects: sources, detectors and notifiers
exchange these without knowing about the database, and bulk paths use DataFrames
with the same field names instead of lists of these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

DEFAULT_METRIC = "employees"

#: An alert's lifecycle, set by analysts (``tracker review``).
ALERT_STATUSES: tuple[str, ...] = ("open", "acknowledged", "dismissed", "resolved")
#: What kind of move an alert is about.
ALERT_KINDS: tuple[str, ...] = ("drop", "spike", "glitch", "drift_up", "drift_down")

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
