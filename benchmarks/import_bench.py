"""Import speed: 1,000 companies x 1,000 days (1,000,000 rows, long format) into SQLite.

Prints the import time and rows/s beside a plain ``pandas.read_csv`` of the same
file (the floor: no validation, no database), and the ratio between them, so a
regression in validation or in the bulk write shows up as a ratio, whatever the
machine. The target from issue 2 is under 20 s on a 2-core machine.

Then a researcher's folder of daily snapshots (issue 10.7): ``--snapshots`` files
(77) of ``--snapshot-rows`` companies (1,700) each, named by day, imported by
``tracker import --snapshot-dir`` in one process, beside the per-file path it
replaces (one ``tracker import FILE --collected-at T`` process per file, timed on
``--processes`` files and extrapolated; and the same per-file loop inside one
process), with the ratios. The target is seconds, not 5 minutes.

    python benchmarks/import_bench.py [--companies 1000] [--days 1000] [--db URL]
                                      [--snapshots 77] [--snapshot-rows 1700] [--processes 5]
                                      [--only-snapshots]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tracker.ingest import ImportOptions, import_file, import_snapshots, snapshot_files
from tracker.store import Store

ROOT = Path(__file__).resolve().parent.parent


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


def snapshots(folder: Path, files: int, rows: int, seed: int = 11) -> int:
    """``files`` daily snapshots (2022-08-01.csv, ...) of ``rows`` companies each, as a
    researcher's scraper leaves them: each day's counts, a purge of 40% of one company
    in the middle. Returns the total row count."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    base = np.exp(rng.uniform(np.log(20), np.log(2_000_000), rows))
    walk = np.exp(np.cumsum(rng.normal(0, 0.004, (files, rows)), axis=0))
    counts = np.maximum(np.rint(base * walk), 1).astype(np.int64)
    counts[files // 2:, 0] = counts[files // 2:, 0] * 6 // 10
    names = [f"Company {i:05d}" for i in range(rows)]
    for i, day in enumerate(pd.date_range("2022-08-01", periods=files, freq="D")):
        pd.DataFrame({"company": names, "date": day.strftime("%Y-%m-%d"),
                      "employees": counts[i]}).to_csv(folder / f"{day:%Y-%m-%d}.csv",
                                                      index=False)
    return files * rows


def _cli(*args: str, cwd: Path) -> None:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-m", "tracker", *args], cwd=cwd, check=True, env=env,
                   capture_output=True)


def snapshot_bench(tmp: Path, files: int, rows: int, processes: int) -> None:
    """The snapshot folder in one process, against one process (or one call) per file."""
    folder = tmp / "snapshots"
    total = snapshots(folder, files, rows)
    snaps = snapshot_files(folder)

    store = Store(f"sqlite:///{tmp / 'loop.db'}")
    t0 = time.perf_counter()
    for snap in snaps:
        import_file(store, snap.path, ImportOptions(collected_at=snap.collected_at))
    loop = time.perf_counter() - t0
    store.close()

    store = Store(f"sqlite:///{tmp / 'dir.db'}")
    t0 = time.perf_counter()
    results = import_snapshots(store, folder)
    took = time.perf_counter() - t0
    inserted = sum(r.inserted for r in results)
    t0 = time.perf_counter()
    again = sum(r.inserted for r in import_snapshots(store, folder))
    took_again = time.perf_counter() - t0
    store.close()

    t0 = time.perf_counter()
    _cli("--db", f"sqlite:///{tmp / 'cli.db'}", "import", "--snapshot-dir", str(folder), cwd=tmp)
    cli = time.perf_counter() - t0

    sample = snaps[:processes]
    t0 = time.perf_counter()
    for snap in sample:
        _cli("--db", f"sqlite:///{tmp / 'procs.db'}", "import", str(snap.path),
             "--collected-at", f"{snap.collected_at:%Y-%m-%dT%H:%M:%S}", cwd=tmp)
    per_process = (time.perf_counter() - t0) / max(len(sample), 1)
    procs = per_process * files

    print(f"\n{files} snapshots x {rows:,} rows ({total:,} rows), SQLite:")
    print(f"per file, one process each:  {procs:6.2f} s  (extrapolated from {len(sample)} "
          f"processes, {per_process:.2f} s each)")
    print(f"per file, one process:       {loop:6.2f} s  {total / loop:>10,.0f} rows/s")
    print(f"--snapshot-dir (library):    {took:6.2f} s  {total / took:>10,.0f} rows/s  "
          f"inserted {inserted:,}")
    print(f"--snapshot-dir (repeat):     {took_again:6.2f} s  inserted {again:,} (idempotent)")
    print(f"--snapshot-dir (real CLI):   {cli:6.2f} s  (one process, start-up included)")
    print(f"ratio per-file processes / snapshot-dir CLI: {procs / cli:5.1f}x; "
          f"per-file loop / snapshot-dir: {loop / took:4.1f}x")
    verdict = "meets" if cli < 10 else "MISSES"
    print(f"target: seconds, not minutes (< 10 s) -> {verdict} ({cli:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=1000)
    parser.add_argument("--days", type=int, default=1000)
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--snapshots", type=int, default=77)
    parser.add_argument("--snapshot-rows", type=int, default=1700)
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--only-snapshots", action="store_true",
                        help="skip the 1,000,000-row file")
    args = parser.parse_args()
    if args.only_snapshots:
        with tempfile.TemporaryDirectory() as tmp:
            snapshot_bench(Path(tmp), args.snapshots, args.snapshot_rows, args.processes)
        return
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
    with tempfile.TemporaryDirectory() as tmp:
        snapshot_bench(Path(tmp), args.snapshots, args.snapshot_rows, args.processes)


if __name__ == "__main__":
    main()
