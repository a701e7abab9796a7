"""The README stays true: every command and config key documented, quickstart = CI."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import typer
from pydantic import BaseModel

from tracker.cli import app
from tracker.config import Settings
from tracker.sources.registry import load_source_class, plugins

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands() -> list[str]:
    group = typer.main.get_command(app)
    names = []
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        sub = getattr(cmd, "commands", None)
        names += [f"{name} {s}" for s in sub] if sub else [name]
    return names


def test_every_cli_command_is_in_the_readme() -> None:
    missing = [c for c in _commands() if f"`tracker {c}" not in README]
    assert not missing, f"commands not documented in README.md: {missing}"


def _keys(model: type[BaseModel]) -> list[str]:
    return [k for k in model.model_fields if k not in ("base_dir", "config_path")]


def _section(name: str) -> str:
    """The README text of one config section (up to the next '### ')."""
    start = README.index(f"### `[{name}")
    end = README.find("\n### ", start + 1)
    return README[start:end if end > 0 else None]


def test_every_config_key_is_in_the_readme() -> None:
    missing = []
    for section in ("database", "schedule", "run", "detect", "alerts", "report"):
        field = Settings.model_fields[section]
        model = typing.get_args(field.annotation) or (field.annotation,)
        text = _section(section)
        missing += [f"[{section}] {k}" for k in _keys(model[0]) if f"`{k}`" not in text]
    assert not missing, f"config keys not documented in README.md: {missing}"


def test_every_builtin_source_setting_is_in_the_readme() -> None:
    text = _section("sources.NAME")
    missing = []
    for info in plugins():
        if info.distribution != "headcount-tracker":
            continue
        settings = load_source_class(info.type).Settings
        missing += [f"{info.type}.{k}" for k in settings.model_fields if f"`{k}`" not in text]
    assert not missing, f"source settings not documented in README.md: {missing}"


def test_every_builtin_notifier_setting_is_in_the_readme() -> None:
    from tracker.notify.base import available_notifiers, load_notifier_class

    text = _section("notify.NAME")
    missing = []
    for kind, ep in sorted(available_notifiers().items()):
        if ep.dist is None or ep.dist.name != "headcount-tracker":
            continue
        assert f"`{kind}`" in text, f"notifier type {kind} not documented in README.md"
        settings = load_notifier_class(kind).Settings
        missing += [f"{kind}.{k}" for k in settings.model_fields if f"`{k}`" not in text]
    assert not missing, f"notifier settings not documented in README.md: {missing}"


def test_readme_test_command_is_what_ci_runs() -> None:
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    quick = [b.strip() for b in blocks[:2]]
    assert len(quick) == 2 and all("\n" not in b for b in quick), "quickstart: two commands"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci[-1].strip() == quick[1], "the last line of .ci/run must be the README test command"
    assert "tracker run" in quick[0]


def test_public_api_names_resolve() -> None:
    import tracker

    missing = [n for n in tracker.__all__ if getattr(tracker, n, None) is None]
    assert not missing
