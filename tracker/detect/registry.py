"""The detectors the engine runs, in order: the built-ins, then any registered.

A list rather than entry points: detectors are part of the rule set whose results
must be reproducible (a replay has to run the same ones as the live run did), so
adding one is an explicit call, not a side effect of installing a package. Order
matters only for rows that tie on every sort key, and is the same on every path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .base import Detector
from .drift_detector import DriftDetector
from .shift_detector import ShiftDetector
from .short_detector import ShortDetector

_DETECTORS: list[Detector] = [ShiftDetector(), DriftDetector(), ShortDetector()]


def detectors() -> tuple[Detector, ...]:
    """The detectors a run uses now."""
    return tuple(_DETECTORS)


def register(detector: Detector) -> Detector:
    """Add a detector to every later run (in this process and the workers it forks)."""
    if not isinstance(detector, Detector):
        raise TypeError(f"register: {detector!r} is not a tracker.detect.base.Detector")
    if any(d.name == detector.name for d in _DETECTORS):
        raise ValueError(f"register: a detector named {detector.name!r} is already registered; "
                         "give yours another name or unregister that one first")
    _DETECTORS.append(detector)
    return detector


def unregister(name: str) -> None:
    """Remove the detector called ``name`` (a built-in too, e.g. to run drift alone)."""
    for i, d in enumerate(_DETECTORS):
        if d.name == name:
            del _DETECTORS[i]
            return
    raise KeyError(f"unregister: no detector named {name!r}; "
                   f"registered: {[d.name for d in _DETECTORS]}")


@contextmanager
def registered(*extra: Detector) -> Iterator[None]:
    """Run with some more detectors for the duration of a block (notebooks, tests)."""
    for d in extra:
        register(d)
    try:
        yield
    finally:
        for d in extra:
            if any(x is d for x in _DETECTORS):
                unregister(d.name)
