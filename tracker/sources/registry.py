"""Source discovery: the ``tracker.sources`` seam of :mod:`tracker.plugins`."""

from __future__ import annotations

from importlib.metadata import EntryPoint

from tracker.plugins import GROUPS, PluginInfo, available, installed, load

GROUP = GROUPS["source"]


def available_sources() -> dict[str, EntryPoint]:
    return available("source")


def load_source_class(kind: str) -> type:
    return load("source", kind)


def plugins() -> list[PluginInfo]:
    """The installed source plugins."""
    return [p for p in installed() if p.kind == "source"]
