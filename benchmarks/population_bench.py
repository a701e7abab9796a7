"""Speed of the population pass (platform-wide events) over a dates x series matrix.

Times :func:`tracker.detect.population.population_pass` on quiet synthetic histories
with a purge laid over them (:func:`tracker.detect.synthetic.with_purge`), in its
parts: the per-series scores (weekly adjustment, robust scale, change test: the bulk
of it) and the shares, baselines and events, all columns at once. Then the pass as
the store runs it (``population_pass``: column chunks, only their sums kept, on 1
and on 2 forked workers), with the ratio to the one-piece parts. Prints the peak
memory of this process and of its workers; checks that the purge was found.

    python benchmarks/population_bench.py [--series 10000] [--days 730] [--repeat 3]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import pandas as pd

from tracker.detect import DetectSettings, synthetic
from tracker.detect.population import (
    group_events,
    moves,
    population_pass,
    populations,
    shares,
)
from tracker.detect.population_settings import PopulationSettings


def _matrix(n_series: int, n_days: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    quiet = pd.concat([synthetic.generate_quiet(1000, n_days, seed=s).matrix.add_prefix(f"{s}-")
                       for s in range(-(-n_series // 1000))], axis=1).iloc[:, :n_series]
    purged, _ = synthetic.with_purge(quiet, n_days - 60, seed=1)
    keys = pd.DataFrame({"company": list(purged.columns), "metric": "employees",
                         "source": "linkedin"})
    purged.columns = range(purged.shape[1])
    return purged, keys, purged.index[n_days - 60]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=730)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    matrix, keys, purge_day = _matrix(args.series, args.days)
    s, ps = DetectSettings(), PopulationSettings()
    best = {"scores": np.inf, "shares+events": np.inf}
    cpu = np.inf
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        mv = moves(matrix, keys, s, ps.max_gap_days, ps.min_move_pct)
        t1 = time.perf_counter()
        pops = populations(mv.keys, {}, {}, ps.min_series)
        daily = shares(mv, pops, ps)
        events, members = group_events(mv, pops, daily, ps)
        t2, c2 = time.perf_counter(), time.process_time()
        cpu = min(cpu, c2 - c0)
        best["scores"] = min(best["scores"], t1 - t0)
        best["shares+events"] = min(best["shares+events"], t2 - t1)
    total = sum(best.values())
    print(f"population pass, {args.series:,} series x {args.days} days "
          f"(best of {args.repeat}):")
    for part, secs in best.items():
        print(f"  {part:<14} {secs:6.2f} s")
    print(f"  {'total':<14} {total:6.2f} s wall, {cpu:.2f} s CPU (this process)")
    rss_one_piece = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for workers in (1, 2):
        sw = DetectSettings(workers=workers)
        t0 = time.perf_counter()
        _, chunked, _ = population_pass(matrix, keys, sw, ps)
        took = time.perf_counter() - t0
        assert list(chunked["id"]) == list(events["id"]), "chunked events differ"
        print(f"  chunked pass, {workers} worker(s): {took:6.2f} s wall "
              f"({total / took:.2f}x as fast as the one-piece parts)")
    print(f"  peak RSS       {rss_one_piece:6.0f} MB after the one-piece parts; workers' "
          f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB each")
    found = list(events["id"])
    ok = found == [f"pop-employees-down-{purge_day:%Y-%m-%d}"]
    print(f"  events found   {found} ({'the purge' if ok else 'NOT the purge alone'}), "
          f"{len(members):,} members")


if __name__ == "__main__":
    main()
