"""tracker: watch daily employee counts per company and flag moves that should not happen.

The public Python API, what notebooks and scripts import; the ``tracker`` command
is a thin layer over these same functions::

    import tracker
    ws = tracker.open_workspace("config.toml")
    tracker.import_files(ws.store, ["data/samples/purge_2022.csv"])
    result = tracker.run_detection(ws)
    tracker.list_alerts(ws, kind="drop")

Imports are lazy so that ``import tracker`` (and every CLI start) stays fast: the
detector pulls in statsmodels, the plots matplotlib.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Settings": "tracker.config",
    "load_settings": "tracker.config",
    "Workspace": "tracker.workspace",
    "open_workspace": "tracker.workspace",
    "Store": "tracker.store",
    "ImportOptions": "tracker.ingest",
    "import_file": "tracker.ingest",
    "import_files": "tracker.ingest",
    "collect": "tracker.collect",
    "run_once": "tracker.job",
    "run_detection": "tracker.detection",
    "detect_new": "tracker.detection",
    "build_matrix": "tracker.detection",
    "list_alerts": "tracker.alerts",
    "import_references": "tracker.references",
    "list_references": "tracker.references",
    "ratio_series": "tracker.inflation",
    "detect_inflation": "tracker.inflation",
    "set_status": "tracker.alerts",
    "add_silence": "tracker.silences",
    "list_silences": "tracker.silences",
    "remove_silence": "tracker.silences",
    "active_for": "tracker.silences",
    "DetectSettings": "tracker.detect",
    "detect": "tracker.detect",
    "detect_day": "tracker.detect",
    "events": "tracker.detect",
    "find_population_events": "tracker.population",
    "population_events": "tracker.population",
    "list_events": "tracker.population",
    "event_members": "tracker.population",
    "share_history": "tracker.population",
    "PopulationEvent": "tracker.records",
    "timeline": "tracker.replay",
    "evaluate": "tracker.replay",
    "read_labels": "tracker.replay",
    "plot_company": "tracker.plots",
    "plot_overview": "tracker.plots",
    "build_report": "tracker.report",
    "status": "tracker.status",
    "Observation": "tracker.records",
    "Alert": "tracker.records",
    "CompanyRef": "tracker.records",
    "Failure": "tracker.records",
    "TrackerError": "tracker.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tracker' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
