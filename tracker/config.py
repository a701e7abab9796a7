"""config.toml -> validated, frozen settings.

Validation is strict (unknown keys are errors) because a misspelt key that silently
falls back to a default is the worst kind of configuration bug in an unattended
job. Every problem is reported at once, each naming the file, the key, what was
expected and what was found, so a user fixes the file in one pass.

Precedence of the database URL: ``--db`` > ``TRACKER_DATABASE_URL`` >
``[database] url`` > a SQLite file ``data/tracker.db`` beside the config file.
Secrets never live here: sections name the environment variable that holds them.
"""

from __future__ import annotations

import os
import tomllib
from datetime import date, time
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tracker.detect.settings import DetectSettings
from tracker.errors import ConfigError

DATABASE_ENV = "TRACKER_DATABASE_URL"
DEFAULT_CONFIG_NAME = "config.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Strict):
    url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite file data/tracker.db beside config.toml"
    )


class ScheduleSettings(_Strict):
    daily_at: time = Field(time(6, 0), description="Local time of the daily run, HH:MM")
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
        None, description="Pinged after each successful run; URL + '/fail' after a failed one"
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


class ReportSettings(_Strict):
    enabled: bool = Field(True, description="Write the HTML report at the end of tracker run")
    output_dir: str = Field("reports", description="Where HTML reports and charts are written")


class CompanySettings(_Strict):
    name: str | None = None
    aliases: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)
    external_ids: dict[str, str] = Field(default_factory=dict)
    reference_count: int | None = Field(None, ge=0)
    reference_date: date | None = None


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


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _format_errors(path: str, exc: ValidationError, prefix: str = "") -> list[str]:
    problems = []
    for err in exc.errors():
        loc = err["loc"]
        section = prefix + ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            problems.append(f"{path}: unknown key '{section}' (check its spelling)")
        elif err["type"] == "missing":
            problems.append(f"{path}: '{section}' is required")
        else:
            got = "" if "input" not in err else f", got {_describe(err['input'])}"
            problems.append(f"{path}: '{section}': {err['msg']}{got}")
    return problems


def _validate_plugins(path: str, section: str, kind: str,
                      tables: dict[str, dict[str, Any]]) -> list[str]:
    """Each [SECTION.NAME] table against its plugin's own settings model.

    This imports every configured plugin's module on every command, ``tracker
    status`` included, so the built-in sources keep pandas and the readers out of
    their module level (tests/test_cli.py checks that validating them loads no pandas).
    """
    from tracker.plugins import available

    registry = available(kind)
    problems: list[str] = []
    for name, table in tables.items():
        where = f"{section}.{name}"
        if not isinstance(table, dict):
            problems.append(f"{path}: '{where}' must be a table")
            continue
        plugin = table.get("type")
        if plugin is None:
            problems.append(f"{path}: '{where}.type' is required (one of {sorted(registry)})")
            continue
        if plugin not in registry:
            problems.append(
                f"{path}: '{where}.type': unknown {kind} type {plugin!r}; "
                f"installed: {', '.join(sorted(registry))}"
            )
            continue
        try:
            registry[plugin].load().Settings.model_validate(table)
        except ValidationError as exc:
            problems += _format_errors(path, exc, prefix=f"{where}.")
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
        problems += _format_errors(str(cfg), exc)
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
