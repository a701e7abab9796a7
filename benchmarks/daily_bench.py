"""One daily run (collect one new day from a csv_folder, detect, alerts, report) at scale.

For N companies (default 10,000) with 1 and with 3 years of daily history stored
in SQLite, prints the time of one ``tracker run`` for the next day, its steps, and
the ratio between the two histories (goal <= 1.3: the daily cost must not grow with
the history). Beside it, the peer: what the run cost before it was incremental, a
full re-detection over the whole stored history (``run_detection``), and the
ratio. Goals on this 2-core machine: <= 10 s for 10,000 companies, <= 60 s for
100,000 (``--companies 100000 --years 1``).

History is the synthetic generator's (trends, weekly patterns, monthly series,
purges, glitches), imported through ``tracker import``'s bulk path; that, the
first run's full pass and the run of the day before (which keeps the detection
window for the next) are set-up, printed but not the figure: the figure is a run
in the steady state, the one cron starts every morning.

    python benchmarks/daily_bench.py [--companies 10000] [--years 1 3] [--db-dir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

from synthetic_rows import long_rows

from tracker.config import load_settings
from tracker.detect.synthetic import generate
from tracker.detection import run_detection
from tracker.ingest import ImportOptions, import_file
from tracker.job import default_steps, run_once
from tracker.store import Store
from tracker.workspace import Workspace

CONFIG = """
[sources.drop]
type = "csv_folder"
path = "incoming"

[report]
output_dir = "reports"
"""


def _timed_steps(on_step: Callable[[str], None] | None = None
                 ) -> tuple[list, dict[str, float]]:
    """The job's steps, each timed; ``on_step`` hears each step's name as it starts
    and "after" as it ends (the PostgreSQL bench's memory sampler)."""
    times: dict[str, float] = {}

    def wrap(step):  # type: ignore[no-untyped-def]
        def run(ws, day, run_id):  # type: ignore[no-untyped-def]
            if on_step is not None:
                on_step(step.__name__.removesuffix("_step"))
            t0 = time.perf_counter()
            try:
                return step(ws, day, run_id)
            finally:
                times[step.__name__] = time.perf_counter() - t0
                if on_step is not None:
                    on_step("after")
        run.__name__ = step.__name__
        return run

    return [wrap(s) for s in default_steps()], times


def one(companies: int, years: int, root: Path) -> dict[str, float]:
    days = 365 * years
    t0 = time.perf_counter()
    m, _ = generate(companies, days + 2, seed=years, start="2022-01-01")
    history, warm_day, new_day = m.iloc[:-2], m.index[-2], m.index[-1]
    folder = root / f"y{years}"
    (folder / "incoming").mkdir(parents=True)
    (folder / "config.toml").write_text(CONFIG)
    csv = folder / "history.csv"
    long_rows(history).to_csv(csv, index=False)
    store = Store(f"sqlite:///{folder / 'tracker.db'}")
    imported = import_file(store, csv, ImportOptions(source="drop"))
    csv.unlink()
    print(f"  set-up: {imported.inserted:,} observations over {days} days imported in "
          f"{time.perf_counter() - t0:.0f} s")
    ws = Workspace(load_settings(folder / "config.toml"), store)
    t0 = time.perf_counter()
    first = run_detection(ws, until=history.index[-1].date())  # what a first run does
    print(f"  set-up: first run's full pass over the history: {time.perf_counter() - t0:.1f} s "
          f"({len(first.anomalies):,} alerts)")
    # the run before: it finds no kept detection window yet and reads one afresh
    long_rows(m.iloc[-2:-1]).to_csv(folder / "incoming" / f"{warm_day:%Y-%m-%d}.csv", index=False)
    t0 = time.perf_counter()
    warm = run_once(ws, warm_day.date())
    print(f"  set-up: the day before, reading the detection window afresh: "
          f"{time.perf_counter() - t0:.2f} s ({warm.summary()[:40]})")
    long_rows(m.iloc[-1:]).to_csv(folder / "incoming" / f"{new_day:%Y-%m-%d}.csv", index=False)
    steps, times = _timed_steps()
    t0 = time.perf_counter()
    result = run_once(ws, new_day.date(), steps=steps)
    total = time.perf_counter() - t0
    assert result.error is None, result.summary()
    collected = result.collected.inserted if result.collected else 0
    detail = ", ".join(f"{k.removesuffix('_step')} {v:.2f} s" for k, v in times.items())
    print(f"  daily run for {new_day:%Y-%m-%d}: {total:.2f} s "
          f"(collect {total - sum(times.values()):.2f} s, {detail}); {collected:,} observations; "
          f"{result.summary()[:90]}")
    t0 = time.perf_counter()
    run_detection(ws, until=date.fromordinal(new_day.date().toordinal()))
    full = time.perf_counter() - t0
    print(f"  peer: full re-detection of the whole history (the non-incremental run's "
          f"detect step): {full:.2f} s; ratio full/incremental detect "
          f"{full / max(times['detect_step'], 1e-9):.1f}x")
    store.close()
    return {"total": total, "detect": times["detect_step"], "full": full}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=10_000)
    parser.add_argument("--years", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--db-dir", help="keep the databases here (default: a temp dir)")
    args = parser.parse_args()
    goal = 10.0 if args.companies <= 10_000 else 60.0
    with tempfile.TemporaryDirectory(dir=args.db_dir) as tmp:
        got = {}
        for years in args.years:
            print(f"-- {args.companies:,} companies, {years} year(s) stored")
            got[years] = one(args.companies, years, Path(tmp))
            print(f"  goal: one daily run <= {goal:.0f} s -> "
                  f"{'meets' if got[years]['total'] <= goal else 'MISSES'}")
        if len(got) >= 2:
            lo, hi = min(got), max(got)
            ratio = got[hi]["total"] / got[lo]["total"]
            print(f"ratio daily run {hi} years / {lo} year(s): {ratio:.2f} "
                  f"(goal <= 1.3 -> {'meets' if ratio <= 1.3 else 'MISSES'}); "
                  f"full re-detection ratio: {got[hi]['full'] / got[lo]['full']:.2f}")


if __name__ == "__main__":
    main()
