"""Knobs of population (platform-wide) events: the ``[population]`` table.

Apart from :mod:`.settings` because they judge a population, not a series: the
per-series yardstick (scale, z-score) stays ``[detect]``'s, so a move counted here is
measured exactly as the change test measures it.
"""

from __future__ import annotations

from pydantic import Field

from .settings import Concern


class PopulationSettings(Concern):
    """When the share of series moving on one day is abnormal for that population."""

    enabled: bool = Field(
        True, description="Look for population events after detection in tracker run")
    move_z: float = Field(
        3.0, gt=0,
        description="Robust z-score (the change test's, against the series' own scale) "
        "beyond which a series counts as moving that day, however small the move")
    min_move_pct: float = Field(
        1.0, ge=0, description="Smallest move (percent) counted as moving, so a huge "
        "company's statistically clear 0.2% wobble is not a platform's move")
    member_z: float = Field(
        2.0, gt=0, description="Once a day is abnormal, series moving beyond this z in "
        "the event's direction on it are its members (lower than move_z: the population "
        "already says the day is special, so weaker evidence suffices per series)")
    threshold: float = Field(
        6.0, gt=0, description="How far above its own history the day's share of moving "
        "series must be, in robust standard deviations (never less than the binomial "
        "spread of that share)")
    min_share: float = Field(
        0.05, gt=0, le=1, description="Smallest share of the population moving that can "
        "open an event")
    min_members: int = Field(
        5, ge=2, description="Fewest series moving together that can open an event")
    min_weighted_share: float = Field(
        0.25, gt=0, le=1, description="Two or more series that would each alert alone, "
        "holding together at least this share of the population's headcount, open an "
        "event however few they are by count (2022: Apple and Amazon)")
    min_series: int = Field(
        20, ge=2, description="Populations (a metric, a cohort, an industry) with fewer "
        "series observed that day get the strict test: only moves the change test would "
        "report alone count, and two of them suffice; cohorts and industries this small "
        "are not tested at all")
    baseline_days: int = Field(
        90, ge=14, le=730, description="Trailing days whose shares are the population's "
        "own history (median and spread, robust, before the day judged)")
    min_baseline_days: int = Field(
        28, ge=7, description="Days of share history a population needs before any event")
    max_gap_days: int = Field(
        7, ge=1, description="A change across more days than this (a monthly series) is "
        "not a move of one day and is not counted")
