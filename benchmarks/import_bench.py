"""Import speed: 1,000 companies x 1,000 days (1,000,000 rows, long format) into SQLite.

Prints the import time and rows/s beside a plain ``pandas.read_csv`` of the same
file (the floor: no validation, no database), and the ratio between them, so a
regression in validation or in the bulk write shows up as a ratio, whatever the
machine. The target from issue 2 is under 20 s on a 2-core machine.

    python benchmarks/import_bench.py [--companies 1000] [--days 1000] [--db URL]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tracker.ingest import import_file
from tracker.store import Store


def generate(path: Path, companies: int, days: int, seed: int = 7) -> int:
    """A long-format CSV of random-walk headcounts; returns the row count."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2021-01-01", periods=days, freq="D").strftime("%Y-%m-%d")
    base = np.exp(rng.uniform(np.log(20), np.log(2_000_000), companies))
    walk = np.exp(np.cumsum(rng.normal(0, 0.004, (days, companies)), axis=0))
    counts = np.maximum(np.rint(base * walk), 1).astype(np.int64)
    frame = pd.DataFrame({
        "company": np.tile([f"Company {i:05d}" for i in range(companies)], days),
        "date": np.repeat(dates.to_numpy(), companies),
        "employees": counts.ravel(),
    })
    frame.to_csv(path, index=False)
    return len(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=1000)
    parser.add_argument("--days", type=int, default=1000)
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "bench.csv"
        t0 = time.perf_counter()
        rows = generate(csv, args.companies, args.days)
        print(f"generated {rows:,} rows ({csv.stat().st_size / 1e6:.1f} MB) "
              f"in {time.perf_counter() - t0:.1f} s")

        t0 = time.perf_counter()
        pd.read_csv(csv)
        floor = time.perf_counter() - t0

        url = args.db or f"sqlite:///{Path(tmp) / 'bench.db'}"
        store = Store(url)
        t0 = time.perf_counter()
        result = import_file(store, csv)
        took = time.perf_counter() - t0

        t0 = time.perf_counter()
        again = import_file(store, csv)
        took_again = time.perf_counter() - t0
        store.close()

    print(f"pandas.read_csv (floor):   {floor:6.2f} s  {rows / floor:>12,.0f} rows/s")
    print(f"tracker import (new):      {took:6.2f} s  {rows / took:>12,.0f} rows/s  "
          f"inserted {result.inserted:,}")
    print(f"tracker import (repeat):   {took_again:6.2f} s  {rows / took_again:>12,.0f} rows/s  "
          f"inserted {again.inserted:,} (idempotent)")
    print(f"ratio import / read_csv:   {took / floor:6.1f}x")
    verdict = "meets" if took < 20 else "MISSES"
    print(f"target: < 20 s for 1,000,000 rows -> {verdict} ({took:.2f} s)")


if __name__ == "__main__":
    main()
