"""Silences: an operator mutes the alerts of a company, of a kind, or of both, until a day.

A silence answers "we know, stop paging us": during a reorganisation announced by a
company, or while a source is known to misreport glitches. It is deliberately a
separate record rather than a review status, because it applies to alerts that do
not exist yet. A silence covers an alert when

    its company (if it names one) is the alert's company, its kind (if it names one)
    is the alert's kind, and the alert was first detected (``detected_on``) on or
    before the silence's ``until`` day.

A covered alert is still detected, stored and listed (``tracker alerts``), but it is
not notified, and it does not raise ``tracker run``'s exit code: a silenced critical
does not page. Matching is by first detection, not by the day a run happens to look,
so a silence that has since expired keeps covering the alerts it muted (they are not
sent late), and removing a silence releases the alerts it held that are still fresh.

Every silence records its author (by default the OS user) and a note saying why,
because a muted pager must be explainable the next morning. Expired silences stay
listed until removed.
"""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pandas as pd

from tracker.errors import InputError
from tracker.records import ALERT_KINDS, Alert, PopulationEvent
from tracker.store import silences as silence_store
from tracker.workspace import Workspace

__all__ = ["Silence", "active_for", "add_silence", "current_user", "list_silences",
           "remove_silence", "silenced", "unsilenced"]

#: Longest author the store keeps (``silences.author``, ``alerts.reviewed_by``).
MAX_AUTHOR = 200


@dataclass(frozen=True, slots=True)
class Silence:
    """One stored silence; ``company`` is a company id (None: any company), ``kind``
    an alert kind (None: any kind), ``until`` the last day it covers."""

    id: int
    company: str | None
    kind: str | None
    until: date
    author: str
    note: str
    created_at: datetime
    company_name: str | None = None

    def covers(self, alert: Alert) -> bool:
        """The one matching rule (see the module docstring)."""
        return ((self.company is None or self.company == alert.company)
                and (self.kind is None or self.kind == alert.kind)
                and alert.detected_on <= self.until)

    def is_active(self, today: date) -> bool:
        """Still muting new alerts on ``today`` (``until`` is inclusive)."""
        return today <= self.until

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Silence:
        return cls(id=int(row["id"]), company=row["company"], kind=row["kind"],
                   until=_as_date(row["until"]), author=row["author"], note=row["note"],
                   created_at=row["created_at"], company_name=row.get("company_name"))


def current_user() -> str:
    """Who is typing: the OS user ($USER, $LOGNAME, ... then the password database)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name at all (a bare container)
        return "unknown"


def checked_author(author: str | None) -> str:
    """An explicit author, or the OS user; blank or overlong ones are input errors."""
    name = current_user() if author is None else author.strip()
    if not name:
        raise InputError("--author: must not be empty (omit it to record the OS user)")
    if len(name) > MAX_AUTHOR:
        raise InputError(f"--author: {len(name)} characters is too long "
                         f"(at most {MAX_AUTHOR})")
    return name


def add_silence(ws: Workspace, *, company: str | None = None, kind: str | None = None,
                until: date, note: str, author: str | None = None) -> Silence:
    """Mute alerts of ``company`` (id, alias or name) and/or ``kind`` through ``until``.

    Everything is checked before anything is written: a silence naming neither a
    company nor a kind would mute everything, and one ending before today would mute
    nothing new, so both are refused rather than stored.
    """
    if company is None and kind is None:
        raise InputError("a silence needs a COMPANY, a --kind, or both "
                         "(e.g. 'tracker silence add apple --until YYYY-MM-DD --note ...')")
    if kind is not None and kind not in ALERT_KINDS:
        raise InputError(f"--kind: {kind!r} is not one of {', '.join(ALERT_KINDS)}")
    today = ws.today()
    if until < today:
        raise InputError(f"--until: {until} is in the past (today is {today}); "
                         "a silence must last at least until today")
    if not note.strip():
        raise InputError("--note: say why these alerts are silenced (it must not be empty)")
    who = checked_author(author)
    company_id = ws.store.company_id(company) if company is not None else None
    row = silence_store.add(ws.store, company_id=company_id, kind=kind, until=until,
                            author=who, note=note.strip())
    return Silence.from_row(row)


def list_silences(ws: Workspace, *, active_only: bool = False) -> pd.DataFrame:
    """Every silence (or only the active ones) with its state on ``ws.today()``."""
    today = ws.today()
    rows = [Silence.from_row(r) for r in silence_store.load(
        ws.store, covering_from=today if active_only else None)]
    columns = ["id", "company", "kind", "until", "state", "author", "note", "created_at"]
    frame = pd.DataFrame(
        [[s.id, s.company, s.kind, s.until, "active" if s.is_active(today) else "expired",
          s.author, s.note, s.created_at] for s in rows], columns=columns)
    # the store keeps naive UTC; say so, as the alert listing does
    frame["created_at"] = pd.to_datetime(frame["created_at"]).dt.tz_localize("UTC")
    return frame


def remove_silence(ws: Workspace, silence_id: int) -> Silence:
    """Delete one silence (NotFoundError if there is none); returns what it was."""
    return Silence.from_row(dict(silence_store.remove(ws.store, silence_id)))


def silenced(ws: Workspace, alerts: Sequence[Alert]) -> dict[int, Silence]:
    """Index in ``alerts`` -> the (lowest-id) silence covering that alert.

    One read of the silences that can cover any of them (their ``until`` on or after
    the earliest ``detected_on``); matching is in memory, as silences are few.
    """
    if not alerts:
        return {}
    candidates = _load(ws, min(a.detected_on for a in alerts))
    if not candidates:
        return {}
    found: dict[int, Silence] = {}
    for i, alert in enumerate(alerts):
        hit = next((s for s in candidates if s.covers(alert)), None)
        if hit is not None:
            found[i] = hit
    return found


def unsilenced(ws: Workspace, alerts: Sequence[Alert]) -> list[Alert]:
    """The alerts no silence covers, in their order: what may notify or page."""
    muted = silenced(ws, alerts)
    return [a for i, a in enumerate(alerts) if i not in muted]


#: The alert kind a population event's direction is, for silences and filters.
EVENT_KIND = {"down": "drop", "up": "spike"}


def unsilenced_events(ws: Workspace, events: Sequence[PopulationEvent]
                      ) -> tuple[PopulationEvent, ...]:
    """The population events no silence holds back. A silence of a kind for every
    company (``--kind drop``) holds back the events of that direction (a platform
    purge day an operator already knows about); a company's silence holds back no
    event, which is about many companies."""
    if not events:
        return ()
    candidates = [s for s in _load(ws, min(e.first_date for e in events))
                  if s.company is None]
    return tuple(e for e in events if not any(
        (s.kind is None or s.kind == EVENT_KIND.get(e.direction))
        and _as_date(e.first_date) <= s.until for s in candidates))


def active_for(ws: Workspace, alert: Alert) -> Silence | None:
    """The silence covering ``alert``, or None."""
    return silenced(ws, [alert]).get(0)


def _load(ws: Workspace, covering_from: date) -> list[Silence]:
    return [Silence.from_row(r) for r in silence_store.load(ws.store,
                                                            covering_from=covering_from)]


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, str):
        return date.fromisoformat(value[:10])
    assert isinstance(value, date)
    return value
