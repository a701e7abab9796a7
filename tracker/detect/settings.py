"""Tuning knobs of the change detector, grouped by concern, validated once and frozen.

Each concern is its own model, so a detector declares the part it owns and a reader
sees which knobs belong together: normal variation (shared by every detector that
scores a change against a series' own noise), weekly adjustment, shifts, drift,
severity policy and execution. ``DetectSettings`` composes them into the one flat
model behind the ``[detect]`` table: the keys users write stay flat (existing
configs keep working) and pydantic validates them all at once, with every error
named. The lead documents the table from the field descriptions, so every
description says what the knob trades off.
"""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

M = TypeVar("M", bound=BaseModel)


#: The one strictness of every settings model in tracker: these ``[detect]`` groups,
#: the sections of :mod:`tracker.config` and every source's and notifier's table
#: (through ``SourceSettings`` and ``NotifierSettings``). It lives here because this
#: module is the root of the settings imports (``tracker.config`` imports it, and it
#: imports nothing of tracker); ``tracker.config`` re-exports it.
#:
#: * ``extra="forbid"``: a misspelt key is an error, not a silent default;
#: * ``strict=True``: TOML already types its values, so none is guessed from another
#:   type: ``"60"`` is not 60, ``true`` is never 1, ``1`` is not ``true`` and a
#:   number never becomes a string. The one coercion kept is pydantic's own, and
#:   harmless: an integer where a float is expected (``threshold = 7``);
#: * ``allow_inf_nan=False``: ``nan`` and ``inf`` are valid TOML floats but no
#:   threshold or duration means anything with them (``nan > 0`` is even false);
#: * ``frozen=True``: settings are read, never changed, after validation.
#:
#: Where a TOML type does not map onto the Python one (a TOML array for a tuple,
#: ``"HH:MM"`` for a time), the field's annotated type converts that documented form
#: itself, before strict validation, and refuses every other form by name.
SETTINGS_CONFIG = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Concern(BaseModel):
    """Base of every settings group: strict, unknown keys are errors, values never change."""

    model_config = SETTINGS_CONFIG


class ScaleSettings(Concern):
    """A series' normal day-over-day variation: the yardstick of shifts and drifts."""

    window: int = Field(
        60,
        ge=7,
        le=400,
        description=(
            "Trailing days whose day-over-day changes give a series' own normal variation "
            "(robust median/MAD). Longer is steadier but adapts slower to a new noise level."
        ),
    )
    short_window: int = Field(
        20,
        ge=0,
        le=400,
        description=(
            "Most recent changes (observations) whose robust scale replaces the `window` "
            "scale when larger, so a noise level that just rose is not taken for anomalies; "
            "0 uses `window` alone."
        ),
    )
    min_history: int = Field(
        14,
        ge=3,
        description=(
            "Fewest past changes (observations) a series needs before it can alert; "
            "sparse (monthly) series reach back past `window` days to find them."
        ),
    )
    small_count_scale: float = Field(
        0.3,
        ge=0,
        description=(
            "Poisson-like floor for small counts: the scale is at least this divided by "
            "sqrt(count), so a 40-person company moving by 2 is never an alarm."
        ),
    )
    min_scale: float = Field(
        0.001,
        ge=0,
        description=(
            "Absolute floor of the daily log scale; keeps flat stretches (the count did "
            "not change for weeks) from turning every move into an infinite z-score."
        ),
    )


class ShiftSettings(Concern):
    """Level shifts and glitches: when a change is exceptional and how its verdict falls."""

    threshold: float = Field(
        8.0,
        gt=0,
        description=(
            "Robust z-score a log change must reach to be reported: change divided by "
            "the series' scale (MAD-based, widened by sqrt(gap) across missing days)."
        ),
    )
    sparse_threshold: float = Field(
        6.5,
        gt=0,
        description=(
            "The `threshold` of a change across a gap of more than a week (monthly or "
            "sparser series), where the level test of moderate moves cannot follow a move."
        ),
    )
    min_change_pct: float = Field(
        4.0,
        ge=0,
        description=(
            "Smallest relative change (percent) ever reported, so statistically "
            "significant but tiny moves of huge companies stay quiet."
        ),
    )
    confirm_days: int = Field(
        3,
        ge=1,
        le=30,
        description=(
            "Days after a provisional shift before it is confirmed; if the count comes "
            "back before that (first observation on or after this many days) it is a glitch."
        ),
    )
    return_fraction: float = Field(
        0.33,
        gt=0,
        lt=1,
        description=(
            "A count has 'come back' when it is within this fraction of the jump (in log "
            "terms) of its level before the jump; partial recoveries keep the shift open."
        ),
    )
    confirm_threshold: float = Field(
        3.0,
        ge=0,
        description=(
            "At confirmation the median level since the jump must still differ from the "
            "median before it by this many scales (and `min_change_pct`); otherwise the "
            "move faded and is reclassified as a glitch."
        ),
    )
    soft_threshold: float = Field(
        2.0,
        ge=0,
        description=(
            "Robust z-score from which a move below `threshold` (a moderate move) is "
            "followed: never reported provisionally, reported once confirmed if the level "
            "test passes. 0 (or >= `threshold`) turns moderate moves off."
        ),
    )
    soft_confirm_days: int = Field(
        7,
        ge=1,
        le=30,
        description=(
            "A moderate move whose level test at `confirm_days` leans its way without "
            "passing is tested again this many days after it, with twice the observations "
            "on each side (noisy counts need them); not above `confirm_days`: no second test."
        ),
    )
    soft_level_threshold: float = Field(
        4.5,
        gt=0,
        description=(
            "At confirmation a moderate move's new level (median since the jump minus "
            "median before it) must stand this many robust scales of the series' own "
            "level noise (that same statistic over its past) from its usual value."
        ),
    )


class ShortSettings(Concern):
    """Level shifts in short histories (annual series, new companies): a trend line."""

    short_min_points: int = Field(
        4,
        ge=3,
        le=30,
        description=(
            "Fewest earlier points a short history needs before a point can be judged "
            "against the line they draw (Theil-Sen); up to `min_history`, the shift "
            "detector takes over after."
        ),
    )
    short_threshold: float = Field(
        5.0,
        gt=0,
        description=(
            "Distance from that line, in robust spreads of the earlier points around it, "
            "that makes a point a candidate; the next point decides: a shift, a trend "
            "change, or nothing."
        ),
    )
    short_min_noise: float = Field(
        3.0,
        ge=0,
        description=(
            "Least spread (percent) assumed around the line: a handful of points can lie "
            "on a line by chance, which would make any next point look far off."
        ),
    )


    sparse_trend_f: float = Field(
        15.0,
        gt=0,
        description=(
            "How much better a bent line must fit the last two years of a monthly (or "
            "sparser) history than a straight one (an F ratio against their spread) to "
            "call it a trend change."
        ),
    )


class DriftSettings(Concern):
    """Drift: a sustained change of trend over weeks."""

    drift_days: int = Field(
        60,
        ge=14,
        description="Horizon (days) over which a gradual trend change is measured.",
    )
    drift_long_days: int = Field(
        91,
        ge=0,
        description=(
            "A second, longer horizon (days) tested as well, for slow drifts whose excess "
            "over `drift_days` stays small; its noise grows as sqrt(horizon / `drift_days`). "
            "0 (or not above `drift_days`) tests `drift_days` alone."
        ),
    )
    drift_baseline_days: int = Field(
        120,
        ge=28,
        description=(
            "Days before the drift horizon whose growth rate is the expected trend; the "
            "drift is the change over `drift_days` beyond that trend."
        ),
    )
    drift_min_pct: float = Field(
        12.0,
        ge=0,
        description="Smallest excess change (percent over `drift_days`) reported as drift.",
    )
    drift_threshold: float = Field(
        3.5,
        ge=0,
        description=(
            "Excess change over the horizon, in units of the series' daily scale times "
            "`drift_noise_days` ** 0.5, needed for drift (guards noisy series)."
        ),
    )
    drift_noise_days: float = Field(
        9.0,
        ge=1,
        description=(
            "How many days of daily noise accumulate in a horizon change: counts are "
            "mostly measurement noise (1) rather than a random walk (`drift_days`)."
        ),
    )


class SeasonalSettings(Concern):
    """Weekly adjustment, a preparation step shared by the detectors that need it."""

    seasonal: Literal["auto", "off"] = Field(
        "auto",
        description=(
            "'auto' tests each daily series for a weekly pattern and removes it with "
            "statsmodels STL before testing; 'off' skips the test (faster)."
        ),
    )
    seasonal_fit_days: int = Field(
        84,
        ge=28,
        description="Trailing days used to test for and fit the weekly pattern.",
    )
    seasonal_refit_days: int = Field(
        28,
        ge=7,
        description=(
            "The weekly pattern is re-estimated every this many days from data before the "
            "block only (causal); smaller follows changes faster, costs more STL fits."
        ),
    )
    seasonal_min_f: float = Field(
        6.0,
        gt=0,
        description="F statistic of weekday means of daily changes needed to call a series weekly.",
    )
    seasonal_min_amplitude_pct: float = Field(
        0.3,
        ge=0,
        description="Weekly patterns smaller than this (percent, peak to trough) are ignored.",
    )


class SeverityPolicy(Concern):
    """How anomalies are graded: a policy over every detector's rows, not an algorithm."""

    warning_change_pct: float = Field(
        5.0,
        ge=0,
        description="Shifts at least this large (percent) are 'warning' severity, smaller 'info'.",
    )
    critical_change_pct: float = Field(
        20.0,
        ge=0,
        description="Shifts at least this large (percent) and `critical_score` are 'critical'.",
    )
    critical_score: float = Field(
        10.0,
        ge=0,
        description="Robust z-score a shift needs (with `critical_change_pct`) to be 'critical'.",
    )

    @model_validator(mode="after")
    def _check_order(self) -> SeverityPolicy:
        if self.critical_change_pct < self.warning_change_pct:
            raise ValueError(
                f"critical_change_pct ({self.critical_change_pct}) must be >= "
                f"warning_change_pct ({self.warning_change_pct})"
            )
        return self


class ExecutionSettings(Concern):
    """How a run is executed; never changes a result."""

    workers: int = Field(
        2,
        ge=1,
        description=(
            "Processes that share the series of a large run (forked, only from a "
            "single-threaded process; the result is the same); 1 keeps it in-process. "
            "With `engine = \"dask\"` and no `scheduler`: the worker processes of the "
            "local Dask cluster."
        ),
    )
    engine: Literal["local", "dask"] = Field(
        "local",
        description=(
            "'local' detects in this process (and its forked `workers`); 'dask' splits "
            "the series into partitions that Dask workers read from the database and "
            "judge with the same code, returning only their verdicts (needs "
            "headcount-tracker[dask]). Same verdicts either way."
        ),
    )
    scheduler: str = Field(
        "",
        description=(
            "Address of a running Dask scheduler (`tcp://host:8786`) for `engine = "
            "\"dask\"`; empty starts a local cluster of `workers` processes for the run."
        ),
    )
    partition_size: int = Field(
        10_000,
        ge=10,
        description=(
            "Series per Dask task (a range of series ids): each task holds its slice's "
            "matrix (about 6 MB per 1,000 series over two years) and its temporaries, "
            "so larger partitions cost memory per worker, smaller ones scheduling overhead."
        ),
    )
    threads_per_worker: int = Field(
        1,
        ge=1,
        description=(
            "Threads of each local Dask worker process (no `scheduler`); detection is "
            "numpy-bound and holds the GIL often, so processes rather than threads scale."
        ),
    )
    memory_limit: str = Field(
        "4GB",
        min_length=1,
        description=(
            "Memory each local Dask worker may use before Dask pauses or restarts it "
            "(`\"4GB\"`, `\"auto\"`); a partition of 10,000 series needs well under 1 GB."
        ),
    )
    connect_timeout: float = Field(
        10.0,
        gt=0,
        description=(
            "Seconds to wait for the Dask `scheduler` before the run fails with exit "
            "code 3 (it is not reachable, or not a scheduler)."
        ),
    )


# pydantic lists the fields of the last base first: bases in reverse reading order.
class DetectSettings(ExecutionSettings, SeverityPolicy, SeasonalSettings, DriftSettings,
                     ShortSettings, ShiftSettings, ScaleSettings):
    """Every threshold of detection; defaults were tuned on synthetic seeds 0-9 only.

    One flat model (the ``[detect]`` table) that is every concern at once, so code
    typed against one concern accepts it. :meth:`part` gives a concern alone.
    """

    def part(self, concern: type[M]) -> M:
        """The knobs of one concern, as that concern's model (already validated here)."""
        return concern.model_construct(**{k: getattr(self, k) for k in concern.model_fields})

    @property
    def severity(self) -> SeverityPolicy:
        """The grading policy applied to every detector's rows."""
        return self.part(SeverityPolicy)

    @property
    def execution(self) -> ExecutionSettings:
        """How the run is split over processes."""
        return self.part(ExecutionSettings)
