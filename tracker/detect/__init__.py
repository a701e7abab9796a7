"""Change detection over a dates x series matrix of counts: shifts, glitches, drifts.

Pure and vectorized: no database access. ``detect`` judges a whole history,
``detect_day`` only the verdicts reached on one day, ``events`` groups shifts that
hit many companies at once (platform-wide purges).
"""

from .engine import COLUMNS, detect, detect_day, empty_frame
from .events import events
from .settings import DetectSettings

__all__ = ["COLUMNS", "DetectSettings", "detect", "detect_day", "empty_frame", "events"]
