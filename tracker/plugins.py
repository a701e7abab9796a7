"""Plugin discovery for every seam, through entry points.

Sources (group ``tracker.sources``) and notifiers (``tracker.notifiers``) are found
the same way, and the built-ins register through the very same groups in
pyproject.toml, so a third-party plugin is a first-class citizen: nothing here
knows a plugin by name. Entry points load lazily, so a broken plugin breaks only
the configuration that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points

from tracker.errors import ConfigError

GROUPS = {"source": "tracker.sources", "notifier": "tracker.notifiers"}


@dataclass(frozen=True)
class PluginInfo:
    """One installed plugin, for ``tracker plugins``."""

    kind: str
    type: str
    target: str
    distribution: str
    version: str


@cache
def available(kind: str) -> dict[str, EntryPoint]:
    """Plugin type -> entry point for one seam ("source" or "notifier")."""
    return {ep.name: ep for ep in entry_points(group=GROUPS[kind])}


def load(kind: str, name: str) -> type:
    """The class registered as ``name``; a clear error if unknown or broken."""
    registry = available(kind)
    if name not in registry:
        raise ConfigError(
            f"unknown {kind} type {name!r}; installed: {', '.join(sorted(registry)) or 'none'}"
        )
    try:
        return registry[name].load()
    except Exception as exc:  # a third-party plugin may fail in any way on import
        raise ConfigError(f"{kind} type {name!r} ({registry[name].value}) failed to load: "
                          f"{exc}") from exc


def installed() -> list[PluginInfo]:
    """Every installed plugin of every seam, with the distribution providing it."""
    rows = []
    for kind in GROUPS:
        for name, ep in sorted(available(kind).items()):
            dist = ep.dist
            rows.append(PluginInfo(kind, name, ep.value, dist.name if dist else "?",
                                   dist.version if dist else "?"))
    return rows
