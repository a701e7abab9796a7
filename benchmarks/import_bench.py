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

PostgreSQL (issue 12): with ``--postgres URL`` (or TRACKER_BENCH_POSTGRES_URL; a
server URL whose user may create databases), a long CSV of ``--pg-companies``
(2,000) x ``--pg-days`` (500) = 1,000,000 rows is imported by the library import
into a fresh database (parse + validate + resolve + binary COPY into the staging
table + the append's INSERT ... SELECT), beside a plain ``COPY ... FROM STDIN (FORMAT
csv)`` of the same file into a bare table (the floor: no validation, no index, no
rule), with the ratio; then the same import again (idempotent: nothing new) and
one more day appended to the 1,000,000 rows (the daily run's write).

    python benchmarks/import_bench.py [--companies 1000] [--days 1000] [--db URL]
                                      [--snapshots 77] [--snapshot-rows 1700] [--processes 5]
                                      [--only-snapshots]
    python benchmarks/import_bench.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres
                                      [--pg-companies 2000] [--pg-days 500] [--only-postgres]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
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


def _fresh_database(admin: str):  # type: ignore[no-untyped-def]
    """(URL of a new empty database, a function that drops it)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"tracker_bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()

    return make_url(admin).set(database=name).render_as_string(hide_password=False), drop


def _copy_floor(store: Store, csv: Path) -> float:
    """Seconds for a plain COPY of the CSV into a bare table (no index, no checks)."""
    with store.engine.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE bench_floor (company text, date date, "
                             "employees bigint)")
        conn.commit()
        t0 = time.perf_counter()
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy("COPY bench_floor FROM STDIN (FORMAT csv, HEADER true)") as copy, \
                csv.open("rb") as fh:
            while block := fh.read(1 << 20):
                copy.write(block)
        conn.commit()
        took = time.perf_counter() - t0
        conn.exec_driver_sql("DROP TABLE bench_floor")
        conn.commit()
    return took


def postgres_bench(admin: str, companies: int, days: int, tmp: Path) -> None:
    """Library import of a long CSV into PostgreSQL against a plain COPY of the file."""
    from tracker.ingest import parse_file

    csv = tmp / "pg_bench.csv"
    rows = generate(csv, companies, days)
    url, drop = _fresh_database(admin)
    try:
        store = Store(url)
        floor = _copy_floor(store, csv)
        t0 = time.perf_counter()
        parse_file(csv, ImportOptions())
        parse = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = import_file(store, csv)
        took = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = import_file(store, csv)
        took_again = time.perf_counter() - t0
        day = tmp / "pg_day.csv"
        last = pd.read_csv(csv).tail(companies)
        last.assign(date=(pd.Timestamp(last["date"].iloc[0]) + pd.Timedelta(days=1))
                    .strftime("%Y-%m-%d"), employees=last["employees"] + 1).to_csv(day, index=False)
        t0 = time.perf_counter()
        daily = import_file(store, day)
        took_day = time.perf_counter() - t0
        with store.reading() as conn:
            size = conn.exec_driver_sql(
                "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = "
                "'observations'::regclass").scalar()
        store.close()
    finally:
        drop()
    print(f"\nPostgreSQL, {companies:,} companies x {days} days = {rows:,} rows "
          f"({csv.stat().st_size / 1e6:.1f} MB CSV):")
    print(f"plain COPY into a bare table (floor): {floor:6.2f} s  {rows / floor:>10,.0f} rows/s")
    print(f"tracker import (library, new):        {took:6.2f} s  {rows / took:>10,.0f} rows/s  "
          f"inserted {result.inserted:,}  (of which parse+validate {parse:.2f} s)")
    print(f"tracker import (repeat, idempotent):  {took_again:6.2f} s  "
          f"{rows / took_again:>10,.0f} rows/s  inserted {again.inserted:,}")
    print(f"one more day ({companies:,} rows) onto {rows:,}: {took_day:6.2f} s  "
          f"inserted {daily.inserted:,}")
    print(f"ratio import / plain COPY: {took / floor:5.1f}x; database write alone "
          f"(import - parse) / COPY: {(took - parse) / floor:5.1f}x; table+indexes {size}")
    upgrade_bench(admin, csv, rows)


def upgrade_bench(admin: str, csv: Path, rows: int) -> None:
    """The same import into the plain table of a store at revision 0005, then the time
    ``tracker db upgrade`` takes to turn it into the partitioned one."""
    from alembic import command

    from tracker.store import engine as engine_ops

    url, drop = _fresh_database(admin)
    try:
        store = Store(url, migrate=False)
        with store.engine.connect() as conn, conn.begin():
            command.upgrade(engine_ops._alembic_config(conn), "0005")
        t0 = time.perf_counter()
        import_file(store, csv)
        plain = time.perf_counter() - t0
        t0 = time.perf_counter()
        before, after = store.migrate()
        upgrade = time.perf_counter() - t0
        store.close()
    finally:
        drop()
    print(f"same import into the plain table (revision 0005): {plain:6.2f} s  "
          f"{rows / plain:>10,.0f} rows/s")
    print(f"tracker db upgrade {before} -> {after} of those {rows:,} rows: {upgrade:6.2f} s  "
          f"{rows / upgrade:>10,.0f} rows/s")


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
    parser.add_argument("--postgres", default=os.environ.get("TRACKER_BENCH_POSTGRES_URL"),
                        help="PostgreSQL server URL for the COPY comparison "
                             "(default: $TRACKER_BENCH_POSTGRES_URL; skipped without one)")
    parser.add_argument("--pg-companies", type=int, default=2000)
    parser.add_argument("--pg-days", type=int, default=500)
    parser.add_argument("--only-postgres", action="store_true",
                        help="only the PostgreSQL comparison")
    args = parser.parse_args()
    if args.postgres:
        with tempfile.TemporaryDirectory() as tmp:
            postgres_bench(args.postgres, args.pg_companies, args.pg_days, Path(tmp))
    elif args.only_postgres:
        parser.error("--only-postgres needs --postgres URL (or TRACKER_BENCH_POSTGRES_URL)")
    if args.only_postgres:
        return
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
