"""What a metric name may be, and how a role segment is spelt in one.

A series is a company plus a metric: ``employees`` (every profile claiming the
company), or a *segment* of it, ``employees:security`` (the profiles claiming a
network-security role there). Segments are what first show a purge aimed at one
kind of fake profile: in October 2022 profiles claiming security roles fell 7%
overnight a week before the Apple and Amazon purges. A segment is simply another
metric, so the store, detection (each series its own scale), alerts, charts and
exports treat it like any other series; this module is the one rule for names,
shared by imports, source settings and CLI flags.

Names are ``name[:segment]`` in lowercase ASCII letters, digits, ``_`` and ``-``
(the name starting with a letter) and at most :data:`MAX_METRIC` characters: they
appear in file names of charts, in URLs of reports and in alert fingerprints, and
``Employees:Security`` next to ``employees:security`` would split one series in two.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tracker.errors import InputError
from tracker.records import DEFAULT_METRIC

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

#: Longest metric name accepted (the database column holds 200; a name is a label).
MAX_METRIC = 64
SEPARATOR = ":"
_NAME = re.compile(r"[a-z][a-z0-9_-]*(?::[a-z0-9][a-z0-9_-]*)?")
RULE = (f"use name[:segment] in lowercase letters, digits, '_' and '-', at most "
        f"{MAX_METRIC} characters (e.g. employees or employees:security)")


def metric_problem(name: str) -> str | None:
    """Why ``name`` is not a metric name, or None when it is one."""
    if not name:
        return "empty metric name; " + RULE
    if len(name) > MAX_METRIC:
        return f"metric name {name[:20]!r}... is {len(name)} characters long; " + RULE
    if not _NAME.fullmatch(name):
        hint = ""
        if _NAME.fullmatch(name.strip().lower()):
            hint = f" (did you mean {name.strip().lower()!r}?)"
        return f"metric {name!r} is not a metric name{hint}; " + RULE
    return None


def check_metric(name: str, where: str) -> str:
    """``name`` if it is a metric name, else InputError saying ``where`` it came from."""
    problem = metric_problem(name)
    if problem is not None:
        raise InputError(f"{where}: {problem}")
    return name


def with_segment(metric: str | None, segment: str | None) -> str | None:
    """The metric that ``--metric`` and ``--segment`` name together (None: neither).

    An empty segment means the whole count: ``employees``, not ``employees:``.
    """
    if segment is None:
        return metric
    base = metric or DEFAULT_METRIC
    return f"{base}{SEPARATOR}{segment}" if segment else base


def segment_of(metric: str) -> str | None:
    """The segment part of ``metric`` (``security`` of ``employees:security``), or None."""
    _, sep, segment = metric.partition(SEPARATOR)
    return segment if sep else None


def metric_label(metric: str) -> str:
    """A metric as people read it in titles: ``employees (security)``."""
    base, sep, segment = metric.partition(SEPARATOR)
    return f"{base} ({segment})" if sep else metric


def chart_key(company: str, metric: str) -> str:
    """The name of a series' chart files (report, ``tracker plot``) and anchor: the
    company id for its headcount (``apple.png``, as always), ``apple.employees.security``
    for a segment (metric names hold no '.', so a segment's key never looks like a
    plain company's)."""
    return company if metric == DEFAULT_METRIC else f"{company}.{metric.replace(SEPARATOR, '.')}"


def metric_reasons(metrics: pd.Series, where: str) -> np.ndarray:
    """Per row, why its metric is not a name ('' when it is), judged once per distinct
    name: a file repeats a handful of metrics on a million rows."""
    import numpy as np

    codes, uniques = metrics.factorize()
    why = np.array([("" if (p := metric_problem(str(m))) is None else f"{where}: {p}")
                    for m in uniques] + [f"{where}: empty metric name; " + RULE],
                   dtype=object)
    return why[codes]


__all__ = ["MAX_METRIC", "chart_key", "check_metric", "metric_label", "metric_problem",
           "metric_reasons", "segment_of", "with_segment"]
