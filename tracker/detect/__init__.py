"""Change detection over a dates x series matrix of counts: shifts, glitches, drifts.

Pure and vectorized: no database access. ``detect`` judges a whole history,
``detect_day`` only the verdicts reached on one day, ``events`` groups shifts that
hit many companies at once (platform-wide purges). Each kind of anomaly is a
``Detector`` (the seam, :mod:`.base`); ``register`` adds one to every later run.

The engine is imported on first use: config validation needs only the settings
model, and loading statsmodels for every CLI start would double its start-up time.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .settings import DetectSettings

_LAZY = {"COLUMNS": ".engine", "detect": ".engine", "detect_day": ".engine",
         "empty_frame": ".engine", "events": ".events", "Detector": ".base",
         "detectors": ".registry", "register": ".registry", "unregister": ".registry"}

__all__ = ["COLUMNS", "DetectSettings", "Detector", "detect", "detect_day", "detectors",
           "empty_frame", "events", "register", "unregister"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'tracker.detect' has no attribute {name!r}")
    value = getattr(import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value
