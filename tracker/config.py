"""config.toml -> validated, frozen settings.

Validation is strict (unknown keys are errors) because a misspelt key that silently
falls back to a default is the worst kind of configuration bug in an unattended
job. So are guessed types: TOML already types its values, so none is converted
from another type (``daily_at = 7`` once meant 00:00:07, ``enabled = "no"`` true);
the few documented forms TOML has no type for (``"HH:MM"``, ``"YYYY-MM-DD"``,
``timeout = [5, 30]``) are read by their field's own type and nothing else is. Every
problem is reported at once, each naming the file, the key path, the expected form
and what was found with its TOML type, so a user fixes the file in one pass.

Precedence of the database URL: ``--db`` > ``TRACKER_DATABASE_URL`` >
``[database] url`` > a SQLite file ``data/tracker.db`` beside the config file.
Secrets never live here: sections name the environment variable that holds them.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from tracker.detect.population_settings import PopulationSettings
from tracker.detect.settings import SETTINGS_CONFIG, DetectSettings
from tracker.errors import ConfigError

DATABASE_ENV = "TRACKER_DATABASE_URL"
DEFAULT_CONFIG_NAME = "config.toml"
M = TypeVar("M", bound=BaseModel)

# -- the documented forms of the values TOML has no exact type for ------------------------

CLOCK_FORM = 'Input should be a valid time: "HH:MM" or "HH:MM:SS", 24-hour, e.g. "06:00"'
DAY_FORM = 'Input should be a valid date: "YYYY-MM-DD" or a TOML date, e.g. 2022-10-11'
_CLOCK = re.compile(r"([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _clock_time(value: Any) -> time:
    """A time of day from "HH:MM", "HH:MM:SS" or a TOML local time; nothing else.

    Pydantic's own time parsing reads ``7`` as seven seconds past midnight, and a
    scheduler that runs at 00:00:07 instead of 07:00 fails silently, so a number, a
    one-digit hour ("7:30") or a fraction of a second is refused with the form.
    """
    if isinstance(value, time) and value.tzinfo is None and value.microsecond == 0:
        return value
    if isinstance(value, str) and (m := _CLOCK.fullmatch(value)):
        hour, minute, second = int(m[1]), int(m[2]), int(m[3] or 0)
        if hour < 24 and minute < 60 and second < 60:
            return time(hour, minute, second)
    raise PydanticCustomError("clock_time", CLOCK_FORM)


def _calendar_day(value: Any) -> date:
    """A calendar day from "YYYY-MM-DD" or a TOML local date; nothing else.

    A TOML datetime is a ``date`` subclass in Python, but a day is not an instant: it
    is refused rather than cut to its date in whatever zone it was written in. So are
    the other forms ``date.fromisoformat`` takes ("20221011"), and integers.
    """
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DAY.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise PydanticCustomError("calendar_day", DAY_FORM)


#: A time of day as config.toml writes it (``daily_at``).
ClockTime = Annotated[time, BeforeValidator(_clock_time)]
#: A calendar day as config.toml writes it (``reference_date``).
Day = Annotated[date, BeforeValidator(_calendar_day)]


def validate_table(model: type[M], table: Mapping[str, Any]) -> M:
    """The one way a config table becomes a plugin's settings: strictly.

    ``strict=True`` here, not only in :data:`SETTINGS_CONFIG`, so a third-party
    plugin whose model is a plain ``BaseModel`` gets the same strictness as the
    built-ins; ``load_settings`` and the collector and notifier (``from_config``)
    both come through here, so what validated is what runs.
    """
    return model.model_validate(dict(table), strict=True)


class _Strict(BaseModel):
    model_config = SETTINGS_CONFIG


class DatabaseSettings(_Strict):
    url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite file data/tracker.db beside config.toml"
    )


class ScheduleSettings(_Strict):
    daily_at: ClockTime = Field(
        time(6, 0), description='Local time of the daily run: "HH:MM", "HH:MM:SS" or a TOML time'
    )
    timezone: str = Field("UTC", description="IANA timezone of daily_at, e.g. Europe/Berlin")
    misfire_grace_hours: float = Field(
        12.0, gt=0, description="A run missed by up to this long (downtime) still runs on start"
    )
    on_lock: Literal["exit", "wait"] = Field(
        "exit", description="When another run holds the lock: exit with code 3, or wait for it"
    )
    lock_wait_seconds: float = Field(
        3600.0, gt=0, description="How long on_lock = 'wait' waits before giving up"
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r} (use an IANA name)") from exc
        return value


class RunSettings(_Strict):
    heartbeat_url: str | None = Field(
        None,
        description="healthchecks.io-style ping URL: URL/start when a run starts, "
        "URL/<exit code> when it ends",
    )
    stale_days: int = Field(
        3, ge=1, description="A company with no observation for this many days is reported stale"
    )


class AlertSettings(_Strict):
    min_severity: Literal["info", "warning", "critical"] = Field(
        "warning", description="Alerts below this severity are stored but not notified"
    )
    fresh_days: int = Field(
        7, ge=0,
        description="A new alert first detected more than this many days before the run's "
        "day is backfill: stored, but not notified and not counted in the exit code",
    )
    event_min_companies: int = Field(
        2, ge=2,
        description="Shifts of the same direction at this many companies within a day of "
        "each other form a cross-company event (a platform-wide purge)",
    )
    # -- inflation: claimed profiles against the reference headcount (tracker.inflation)
    inflation_z: float = Field(
        3.5, gt=0, description="Robust z of a company's log ratio (claimed / reference) "
        "against its cohort's that makes it 'inflated'")
    inflation_min_excess: float = Field(
        1.5, gt=1, description="...and its ratio must be at least this many times the "
        "cohort's median ratio (a tight cohort makes small excesses significant)")
    inflation_scale_floor: float = Field(
        0.1, gt=0, description="Least spread (log ratio) assumed within a cohort")
    inflation_min_peers: int = Field(
        2, ge=1, description="Fewest other companies with a ratio that day a cohort needs; "
        "fewer: the company is compared with all companies")
    ratio_jump_pct: float = Field(
        15.0, gt=0, description="A level change of the ratio at least this large (percent) "
        "with the reference held fixed is a 'ratio_jump'")
    ratio_jump_days: int = Field(
        3, ge=1, description="Observations the new level must hold (the day included) "
        "before a ratio_jump is reported")
    ratio_window: int = Field(
        14, ge=2, description="Observations before a day whose median is the level a "
        "ratio_jump is measured from")
    inflation_severity: Literal["info", "warning", "critical"] = Field(
        "warning", description="Severity of inflated and ratio_jump alerts")
    corroboration_days: int = Field(
        2, ge=0, le=14,
        description="Another source of the series corroborates a move it saw this many "
        "days before or after the alert's first day (providers date their counts apart)",
    )
    corroboration_z: float = Field(
        4.0, gt=0,
        description="How far beyond its own normal variation (robust z-score) another "
        "source's move must go, the same way, to corroborate an alert",
    )


class ReportSettings(_Strict):
    enabled: bool = Field(True, description="Write the HTML report at the end of tracker run")
    output_dir: str = Field("reports", description="Where HTML reports and charts are written")
    base_url: str | None = Field(
        None, description="Where output_dir is served, e.g. https://reports.example.org/; "
        "when set, each notification links to the day's report under it"
    )

    @field_validator("base_url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        """An http(s) address: a link in a chat message or a mail must open elsewhere,
        so a file path or a bare host name is refused rather than sent as a dead link."""
        if value is None:
            return None
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
            raise ValueError("expected the http:// or https:// address of the folder the "
                             'reports are served from, e.g. "https://reports.example.org/"')
        return value


class CompanySettings(_Strict):
    name: str | None = None
    aliases: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)
    external_ids: dict[str, str] = Field(default_factory=dict)
    reference_count: int | None = Field(None, ge=0)
    reference_date: Day | None = None
    reference_source: str = Field(
        "config", description="Where reference_count comes from (e.g. 'annual report 2022')")

    @model_validator(mode="after")
    def _dated_reference(self) -> CompanySettings:
        """A reference is a headcount *on a day*: carried forward from it, it needs
        both, and one without the other would silently mean nothing."""
        if (self.reference_count is None) != (self.reference_date is None):
            given, other = (("reference_count", "reference_date")
                            if self.reference_date is None
                            else ("reference_date", "reference_count"))
            raise ValueError(f"{given} needs {other} too (the official headcount and the "
                             'day it was counted, e.g. reference_date = "2022-09-24")')
        return self


class CohortSettings(_Strict):
    """A named group of companies whose population events are looked for on their own."""

    companies: list[str] = Field(
        min_length=1, description="Company ids or names of the cohort ([cohorts.NAME])")


class Settings(_Strict):
    """The whole validated configuration. ``base_dir`` anchors relative paths."""

    base_dir: Path = Field(default_factory=Path.cwd)
    config_path: Path | None = None
    database: DatabaseSettings = DatabaseSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    run: RunSettings = RunSettings()
    sources: dict[str, dict[str, Any]] = Field(default_factory=dict)
    detect: DetectSettings = DetectSettings()
    alerts: AlertSettings = AlertSettings()
    notify: dict[str, dict[str, Any]] = Field(default_factory=dict)
    report: ReportSettings = ReportSettings()
    companies: dict[str, CompanySettings] = Field(default_factory=dict)
    population: PopulationSettings = PopulationSettings()
    cohorts: dict[str, CohortSettings] = Field(default_factory=dict)

    def database_url(self, override: str | None = None) -> str:
        """Resolve the URL by precedence; relative SQLite paths are anchored at base_dir."""
        url = override or os.environ.get(DATABASE_ENV) or self.database.url
        if not url:
            return f"sqlite:///{(self.base_dir / 'data' / 'tracker.db').as_posix()}"
        prefix = "sqlite:///"
        if url.startswith(prefix) and url != "sqlite:///:memory:":
            path = Path(url[len(prefix):])
            if not path.is_absolute():
                return prefix + (self.base_dir / path).as_posix()
        return url

    def resolve(self, path: str | Path) -> Path:
        """A path from config, relative to the config file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p


#: Pydantic's messages name Python types; a config.toml author needs the TOML form.
#: Keyed by pydantic error type; the messages keep pydantic's start ("Input should
#: be a valid integer") so they read the same as every other validation message.
_TOML_FORMS = {
    "int_type": "Input should be a valid integer: a whole number without quotes, e.g. 3",
    "float_type": "Input should be a valid number: a number without quotes, e.g. 2.5 or 3",
    "bool_type": "Input should be a valid boolean: true or false, without quotes",
    "string_type": 'Input should be a valid string: text in quotes, e.g. "text"',
    "list_type": 'Input should be an array, e.g. ["a", "b"]',
    "dict_type": "Input should be a table, e.g. [name] or {key = value}",
    "model_type": "Input should be a table, e.g. [name] or {key = value}",
    "model_attributes_type": "Input should be a table, e.g. [name] or {key = value}",
    "finite_number": "Input should be a finite number (not nan or inf)",
}
_TOML_TYPES = [(bool, "a boolean"), (int, "an integer"), (float, "a float"), (str, "a string"),
               (datetime, "a datetime"), (date, "a date"), (time, "a time"),
               (list, "an array"), (dict, "a table")]


def _describe(value: Any) -> str:
    """What was given, as TOML spells it and with its TOML type: ``7 (an integer)``.

    The type is the point: ``"7" (a string)`` and ``7 (an integer)`` are both wrong
    for ``daily_at`` for different reasons.
    """
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, date | time):
        text = value.isoformat()
    else:
        text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    kind = next((name for cls, name in _TOML_TYPES if isinstance(value, cls)), None)
    return f"{text} ({kind})" if kind else text


def _key_path(loc: tuple[int | str, ...], raw: Any) -> tuple[tuple[int | str, ...], int | None]:
    """The part of a pydantic location the user wrote, and where a union branch was cut.

    Pydantic names the branch of a union in the location (``header_env.X.str`` and
    ``header_env.X.EnvSecret``); those steps are not keys of the file. Steps are kept
    while they lead through the raw TOML, so what remains is the key path as written.
    """
    kept: list[int | str] = []
    cut: int | None = None
    node = raw
    for step in loc:
        inside = (isinstance(node, dict) and step in node) or (
            isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node))
        if not inside:  # a union branch's name: it consumes no input
            cut = len(kept) if cut is None else cut
            continue
        node = node[step]
        kept.append(step)
    return tuple(kept), cut


def _format_errors(path: str, exc: ValidationError, raw: Any, prefix: str = "") -> list[str]:
    """One line per problem, each naming the file, the key path, the form and the value.

    The errors of one union (a string or an ``{env = ...}`` table) are one problem:
    the branch that got furthest into the value is what the user meant, and branches
    that failed at the same depth are merged into one "should be X or Y" message.
    """
    found: list[tuple[tuple[int | str, ...], int | None, dict[str, Any]]] = []
    for err in exc.errors():
        if err["type"] in ("missing", "extra_forbidden"):  # the key is not in the file
            found.append((tuple(err["loc"]), None, err))
        else:
            found.append((*_key_path(tuple(err["loc"]), raw), err))
    deepest: dict[tuple[int | str, ...], int] = {}
    for key, cut, _err in found:
        if cut is not None:
            deepest[key[:cut]] = max(deepest.get(key[:cut], 0), len(key))
    merged: dict[tuple[int | str, ...], list[dict[str, Any]]] = {}
    for key, cut, err in found:
        if cut is None or len(key) == deepest[key[:cut]]:
            merged.setdefault(key, []).append(err)
    problems = []
    for key, errs in merged.items():
        section = ".".join([prefix.rstrip("."), *map(str, key)]).strip(".") or "(top level)"
        first = errs[0]
        if first["type"] == "extra_forbidden":
            problems.append(f"{path}: unknown key '{section}' (check its spelling)")
            continue
        if first["type"] == "missing":
            problems.append(f"{path}: '{section}' is required")
            continue
        messages = list(dict.fromkeys(
            _TOML_FORMS.get(e["type"], e["msg"].removeprefix("Value error, ")) for e in errs))
        message = ", or ".join(
            [messages[0], *(m.removeprefix("Input should be ") for m in messages[1:])])
        # a whole table is not echoed: the message says what is wrong with it, and it
        # may hold a value that is better not shown (a webhook URL is a secret)
        shown = "input" in first and (bool(key) or not isinstance(first["input"], dict))
        got = f", got {_describe(first['input'])}" if shown else ""
        problems.append(f"{path}: '{section}': {message}{got}")
    return problems


def _validate_plugins(path: str, section: str, kind: str,
                      tables: dict[str, Any]) -> list[str]:
    """Each [SECTION.NAME] table against its plugin's own settings model, strictly.

    A table that is not a table was reported by :class:`Settings` already. This
    imports every configured plugin's module on every command, ``tracker status``
    included, so the built-in sources keep pandas and the readers out of their
    module level (tests/test_cli.py checks that validating them loads no pandas).
    """
    from tracker.plugins import available

    registry = available(kind)
    problems: list[str] = []
    for name, table in tables.items():
        where = f"{section}.{name}"
        if not isinstance(table, dict):
            continue
        plugin = table.get("type")
        if plugin is None:
            problems.append(f"{path}: '{where}.type' is required (one of {sorted(registry)})")
            continue
        if not isinstance(plugin, str):
            names = ", ".join(f'"{n}"' for n in sorted(registry))
            problems.append(f"{path}: '{where}.type': Input should be a valid string: "
                            f"one of {names}, in quotes, got {_describe(plugin)}")
            continue
        if plugin not in registry:
            problems.append(
                f"{path}: '{where}.type': unknown {kind} type {plugin!r}; "
                f"installed: {', '.join(sorted(registry))}"
            )
            continue
        try:
            validate_table(registry[plugin].load().Settings, table)
        except ValidationError as exc:
            problems += _format_errors(path, exc, table, prefix=f"{where}.")
        except Exception as exc:  # a third-party plugin may fail in any way on import
            problems.append(f"{path}: '{where}.type': {kind} {plugin!r} failed to load: {exc}")
    return problems


def load_settings(path: str | Path | None = None) -> Settings:
    """Load and validate a config file; without one, defaults anchored at the cwd.

    ``path=None`` uses ./config.toml when it exists. An explicit path that does not
    exist is an error, since silently running on defaults would surprise cron users.
    """
    if path is None:
        candidate = Path.cwd() / DEFAULT_CONFIG_NAME
        if not candidate.exists():
            return Settings(base_dir=Path.cwd())
        path = candidate
    cfg = Path(path).expanduser()
    if cfg.is_dir():
        raise ConfigError(f"config file {cfg} is a folder; pass the path of config.toml")
    if not cfg.is_file():
        raise ConfigError(f"config file {cfg} does not exist (pass --config PATH)")
    try:
        raw = tomllib.loads(cfg.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{cfg}: not valid TOML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{cfg}: cannot read: {exc}") from exc
    problems: list[str] = []
    base = cfg.resolve().parent
    for reserved in ("base_dir", "config_path"):
        if reserved in raw:
            problems.append(f"{cfg}: unknown key '{reserved}' (check its spelling)")
            raw.pop(reserved)
    settings: Settings | None = None
    try:
        settings = Settings(base_dir=base, config_path=cfg.resolve(), **raw)
    except ValidationError as exc:
        problems += _format_errors(str(cfg), exc, raw)
    sources = raw.get("sources", {})
    if isinstance(sources, dict):
        problems += _validate_plugins(str(cfg), "sources", "source", sources)
    notify = raw.get("notify", {})
    if isinstance(notify, dict):
        problems += _validate_plugins(str(cfg), "notify", "notifier", notify)
    if problems:
        raise ConfigError(
            f"{cfg}: {len(problems)} problem(s):\n  " + "\n  ".join(problems), problems
        )
    assert settings is not None
    return settings
