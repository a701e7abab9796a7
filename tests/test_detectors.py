"""The detector seam: a detector written outside the engine runs on every path.

Why: issue 7 asks that a newcomer adds a kind of anomaly by writing one module. The
proof is a detector defined here (a count frozen for several days, the signature of
a scraper serving a cached page), registered through the seam without touching the
engine, whose rows a batch run, a day-by-day replay and a windowed daily run all
agree on; and registering it changes nothing about the built-in detectors' rows.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tracker.detect import COLUMNS, DetectSettings, detect, detect_day
from tracker.detect.base import Block, DayBlock, Detector, Rows, make_rows, no_rows
from tracker.detect.engine import detect_day_window, window_days
from tracker.detect.matrix import to_timestamps
from tracker.detect.registry import detectors, register, registered, unregister
from tracker.detect.settings import SeverityPolicy
from tracker.detect.synthetic import generate


class FlatlineSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    days: int = Field(5, ge=2, description="Consecutive daily observations of one value.")


class FlatlineDetector(Detector):
    """A count unchanged on ``days`` consecutive days, reported on the day it reaches that."""

    name = "flatline"
    Settings: ClassVar[type[FlatlineSettings]] = FlatlineSettings

    def __init__(self, settings: FlatlineSettings | None = None) -> None:
        self.settings = settings or FlatlineSettings()

    def lookback_days(self, settings: DetectSettings) -> int:
        return self.settings.days + 1  # the day before the run, to know it started there

    def batch(self, block: Block) -> Rows:
        v, n = block.values, self.settings.days
        if v.shape[0] == 0:
            return no_rows()
        same = np.zeros(v.shape, dtype=bool)
        same[1:] = (v[1:] == v[:-1]) & (np.diff(block.days) == 1)[:, None]
        rows = np.arange(v.shape[0])[:, None]
        start = np.maximum.accumulate(np.where(same, 0, rows), axis=0)
        r, c = np.nonzero(np.isfinite(v) & (rows - start + 1 == n))
        return make_rows(series=block.names[c], date=to_timestamps(block.days[r - n + 1]),
                         detected_on=to_timestamps(block.days[r]),
                         confirmed_on=to_timestamps(block.days[r]), kind="flatline",
                         status="confirmed", change_pct=0.0, value_before=v[r, c],
                         value_after=v[r, c], score=float(n))


class LastDaysFlatline(FlatlineDetector):
    """The same rule with its own one-day path: only the last rows are looked at."""

    name = "flatline_fast"

    def day(self, block: DayBlock) -> Rows:
        n = self.settings.days
        v = block.values[-(n + 1):]
        days = block.days[-(n + 1):]
        if v.shape[0] < n or days[-1] - days[-n] != n - 1:
            return no_rows()
        run = (v[-n:] == v[-1]).all(axis=0)
        if v.shape[0] > n and days[0] == days[-1] - n:
            run &= ~(v[0] == v[-1])
        c = np.flatnonzero(run)
        today = to_timestamps(np.full(c.size, block.day))
        start = to_timestamps(np.full(c.size, block.day - n + 1))
        return make_rows(series=block.names[c], date=start, detected_on=today,
                         confirmed_on=today, kind="flatline", status="confirmed",
                         change_pct=0.0, value_before=v[-1, c],
                         value_after=v[-1, c], score=float(n))


@pytest.fixture(scope="module")
def matrix() -> pd.DataFrame:
    m, _ = generate(30, 260, seed=4, quiet_fraction=0.2, weekly_fraction=0.2,
                    monthly_fraction=0.1, events_per_series=(1, 2))
    m = m.copy()
    m.iloc[100:110, 0] = m.iloc[100, 0]  # 10 days frozen: one flatline on day 104
    m.iloc[50:54, 1] = m.iloc[50, 1]  # 4 days: too short
    m.iloc[200:207, 2] = m.iloc[200, 2]
    m.iloc[203, 2] = np.nan  # a missing day breaks the run
    return m


@pytest.fixture(params=[FlatlineDetector, LastDaysFlatline])
def flatline(request: pytest.FixtureRequest) -> Iterator[Detector]:
    with registered(request.param()):
        yield detectors()[-1]


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["series", "date", "kind"]).reset_index(drop=True)


def test_registered_detector_runs_in_batch(matrix: pd.DataFrame, flatline: Detector) -> None:
    out = detect(matrix, DetectSettings(workers=1))
    flat = out[out.kind == "flatline"]
    first = flat[flat.series == matrix.columns[0]]
    assert first.date.tolist() == [matrix.index[100]]
    assert first.detected_on.tolist() == [matrix.index[104]]
    assert not (flat.series == matrix.columns[1]).any()
    assert (flat.severity == "info").all() and list(out.columns) == COLUMNS


def test_registered_detector_day_by_day_equals_batch(matrix: pd.DataFrame,
                                                     flatline: Detector) -> None:
    s = DetectSettings(workers=1)
    batch = detect(matrix, s)
    flat = _sorted(batch[batch.kind == "flatline"])
    assert len(flat) >= 2
    days = [detect_day(matrix, day, s) for day in matrix.index]
    replay = pd.concat([d[d.kind == "flatline"] for d in days])
    pd.testing.assert_frame_equal(_sorted(replay), flat)
    width = pd.Timedelta(days=window_days(s) - 1)
    for day in flat.detected_on.unique():
        got, deep = detect_day_window(matrix.loc[day - width:day], day, s)
        if deep:
            got = pd.concat([got, detect_day(matrix[deep], day, s)])
        pd.testing.assert_frame_equal(_sorted(got), _sorted(detect_day(matrix, day, s)))


def test_registering_leaves_the_builtins_alone(matrix: pd.DataFrame) -> None:
    s = DetectSettings(workers=1)
    plain = detect(matrix, s)
    day = matrix.index[104]
    plain_day = detect_day(matrix, day, s)
    with registered(FlatlineDetector()):
        assert window_days(s) == window_days(DetectSettings(workers=1))
        out = detect(matrix, s)
        out_day = detect_day(matrix, day, s)
    pd.testing.assert_frame_equal(out[out.kind != "flatline"].reset_index(drop=True), plain)
    pd.testing.assert_frame_equal(out_day[out_day.kind != "flatline"].reset_index(drop=True),
                                  plain_day)
    assert [d.name for d in detectors()] == ["shifts", "drift", "short"]


def test_registry_rejects_duplicates_and_unknown_names() -> None:
    class Dup(FlatlineDetector):
        name = "drift"

    with pytest.raises(ValueError, match="already registered"):
        register(Dup())
    with pytest.raises(TypeError, match=r"not a tracker\.detect\.base\.Detector"):
        register(object())  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="no detector named 'nope'"):
        unregister("nope")
    with pytest.raises(ValidationError):
        FlatlineSettings(dayz=3)  # type: ignore[call-arg]


def test_detector_rows_name_every_column() -> None:
    with pytest.raises(ValueError, match=r"missing columns \['value_after'\]"):
        make_rows(series=np.array(["a"]), date=0, detected_on=0, confirmed_on=0, kind="x",
                  status="confirmed", change_pct=0.0, value_before=1.0, score=1.0)


def test_settings_are_grouped_by_concern() -> None:
    """Flat keys for config.toml, one model per concern in code, each validated once."""
    s = DetectSettings(critical_score=12.0, workers=3)
    assert s.severity == SeverityPolicy(warning_change_pct=5.0, critical_change_pct=20.0,
                                        critical_score=12.0)
    assert s.execution.workers == 3
    assert isinstance(s, SeverityPolicy)  # code typed against a concern takes the whole
    for d in detectors():
        assert set(d.Settings.model_fields) <= set(DetectSettings.model_fields)
    with pytest.raises(ValidationError, match="critical_change_pct"):
        DetectSettings(critical_change_pct=1.0)


README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_readme_detector_example_runs(matrix: pd.DataFrame) -> None:
    """The README's 'Writing a detector' example registers and finds what flatline finds."""
    text = README[README.index("## Writing a detector"):README.index("## Exit codes")]
    code = re.search(r"```python\n(.*?)```", text, flags=re.S)
    assert code is not None
    try:
        exec(compile(code.group(1), "README.md", "exec"), {})
        frozen = detect(matrix, DetectSettings(workers=1))
        frozen_day = detect_day(matrix, matrix.index[104], DetectSettings(workers=1))
    finally:
        unregister("frozen")
    with registered(FlatlineDetector()):
        flat = detect(matrix, DetectSettings(workers=1))
    flat["kind"] = flat.kind.replace("flatline", "frozen")
    pd.testing.assert_frame_equal(frozen, flat)
    assert "frozen" in set(frozen_day.kind)


def test_readme_detect_table_defaults_are_the_code() -> None:
    section = README[README.index("### `[detect]`"):README.index("### `[alerts]`")]
    shown = {k: tomllib.loads(f"v = {v}")["v"]
             for k, v in re.findall(r"^\| `(\w+)` \| `([^`]+)` \|", section, flags=re.M)}
    assert shown == DetectSettings().model_dump()
