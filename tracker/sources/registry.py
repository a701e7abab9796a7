"""Discovery of source plugins through the ``tracker.sources`` entry-point group.

Built-ins are registered in pyproject.toml through the very same group, so a
third-party plugin is a first-class citizen: nothing here knows a source by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points

from tracker.errors import ConfigError

GROUP = "tracker.sources"


@dataclass(frozen=True)
class PluginInfo:
    """One installed source type, for ``tracker plugins``."""

    type: str
    target: str
    distribution: str
    version: str


@cache
def available_sources() -> dict[str, EntryPoint]:
    """Source type -> entry point, loaded lazily so a broken plugin breaks only itself."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load_source_class(kind: str) -> type:
    """The class registered for ``kind``; a clear error if unknown or broken."""
    registry = available_sources()
    if kind not in registry:
        raise ConfigError(
            f"unknown source type {kind!r}; installed: {', '.join(sorted(registry)) or 'none'}"
        )
    try:
        return registry[kind].load()
    except Exception as exc:  # a third-party plugin may fail in any way on import
        raise ConfigError(
            f"source type {kind!r} ({registry[kind].value}) failed to load: {exc}"
        ) from exc


def plugins() -> list[PluginInfo]:
    """Every installed source type with the distribution and version providing it."""
    rows = []
    for name, ep in sorted(available_sources().items()):
        dist = ep.dist
        rows.append(
            PluginInfo(
                type=name,
                target=ep.value,
                distribution=dist.name if dist else "?",
                version=dist.version if dist else "?",
            )
        )
    return rows
