"""Small helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

from tracker.workspace import Workspace, open_workspace


def open_ws(cfg: Path, registry: list[Workspace]) -> Workspace:
    """Open a workspace and register it so the ``workspaces`` fixture closes it."""
    ws = open_workspace(cfg)
    registry.append(ws)
    return ws
