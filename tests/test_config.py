"""config.toml validation and database URL precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracker.config import DATABASE_ENV, load_settings
from tracker.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_config_is_valid() -> None:
    settings = load_settings(ROOT / "config.toml")
    assert settings.base_dir == ROOT
    assert any(s.get("type") == "csv_folder" for s in settings.sources.values())


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.database_url() == f"sqlite:///{(tmp_path / 'data' / 'tracker.db').as_posix()}"


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[database]
uri = "sqlite:///x.db"

[schedule]
daily_at = "25:99"
timezone = "Mars/Olympus"

[detect]
threshold = "high"

[sources.bad]
type = "csv_folder"
folder = "data"

[sources.who]
type = "nonexistent"

[bogus]
x = 1
""",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    problems = info.value.problems
    text = str(info.value)
    assert len(problems) >= 6, problems
    assert all(p.startswith(str(path)) for p in problems)
    assert "unknown key 'database.uri'" in text
    assert "'schedule.daily_at'" in text and "'25:99'" in text
    assert "unknown timezone 'Mars/Olympus'" in text
    assert "'detect.threshold'" in text and "'high'" in text
    assert "unknown key 'bogus'" in text
    assert "'sources.who.type': unknown source type 'nonexistent'" in text
    assert "unknown key 'sources.bad.folder'" in text


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[database\nurl = 1\n")
    with pytest.raises(ConfigError, match=r"config.toml: not valid TOML"):
        load_settings(path)


def test_missing_explicit_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_database_url_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[database]\nurl = "sqlite:///from-config.db"\n')
    settings = load_settings(path)
    assert settings.database_url() == f"sqlite:///{(tmp_path / 'from-config.db').as_posix()}"
    monkeypatch.setenv(DATABASE_ENV, "sqlite:////tmp/from-env.db")
    assert settings.database_url() == "sqlite:////tmp/from-env.db"
    assert settings.database_url("sqlite:////tmp/from-flag.db") == "sqlite:////tmp/from-flag.db"


def test_default_database_is_beside_the_config_file(tmp_path: Path) -> None:
    sub = tmp_path / "proj"
    sub.mkdir()
    settings = load_settings(write(sub, '[schedule]\ndaily_at = "07:30"\n'))
    assert settings.database_url().endswith(f"{sub.as_posix()}/data/tracker.db")
    assert settings.schedule.daily_at.hour == 7 and settings.schedule.daily_at.minute == 30


def test_shipped_config_spells_out_every_detect_default() -> None:
    """Issue 3: the defaults live in config.toml [detect]; they must match the code."""
    import tomllib

    from tracker.detect.settings import DetectSettings

    shipped = tomllib.loads((ROOT / "config.toml").read_text())["detect"]
    defaults = DetectSettings().model_dump()
    assert shipped == defaults
