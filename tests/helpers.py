"""Small helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tracker.workspace import Workspace, open_workspace

ROOT = Path(__file__).resolve().parent.parent


def open_ws(cfg: Path, registry: list[Workspace]) -> Workspace:
    """Open a workspace and register it so the ``workspaces`` fixture closes it."""
    ws = open_workspace(cfg)
    registry.append(ws)
    return ws


def python_env() -> dict[str, str]:
    """The environment for a child Python that must import this checkout's tracker.

    Neither the console script on PATH nor an editable install elsewhere may stand
    in for the code under test, so the repository goes first on the path.
    """
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *([path] if path else [])])}


def tracker_command(*args: str) -> list[str]:
    """The argv of ``tracker ARGS`` run by the test interpreter (see :func:`python_env`)."""
    return [sys.executable, "-m", "tracker", *args]


def tracker(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real CLI on this checkout in a fresh process, capturing its output."""
    return subprocess.run(tracker_command(*args), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=python_env())


SAMPLE = ROOT / "data" / "samples" / "purge_2022.csv"


def sample_project(folder: Path) -> Path:
    """``folder`` as a user's project: the shipped config.toml and the bundled sample."""
    import shutil

    shutil.copy(ROOT / "config.toml", folder / "config.toml")
    (folder / "data" / "samples").mkdir(parents=True, exist_ok=True)
    shutil.copy(SAMPLE, folder / "data" / "samples" / SAMPLE.name)
    return folder


def no_traceback(proc: subprocess.CompletedProcess) -> None:
    """A user mistake is one clear line, never a traceback."""
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
