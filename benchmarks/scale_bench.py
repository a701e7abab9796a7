"""Detection at scale on Dask: figures and ratios, in one run.

    python benchmarks/scale_bench.py            # the full run (hogs every core for minutes)
    python benchmarks/scale_bench.py --quick    # a smoke run of every part, in a minute

(a) ``--companies`` series x ``--days`` days through Dask (a LocalCluster of
    ``--workers`` processes). The data are generated inside the workers, per
    partition, by the seeded synthetic generator (tracker.detect.synthetic): a
    10^9-row database is not built here. What reading a partition from PostgreSQL
    costs is measured separately in (c).
(b) the same code on ``--compare`` series: the local engine (forked workers) vs Dask,
    detection only (the generation each task does is timed and taken out).
(c) one partition read from PostgreSQL (tracker.store.slices.read_slice) + detection.
(d) one daily run on PostgreSQL (append one day, detect, alerts) at ``--daily``
    series, extrapolated per company to ``--companies``: the extrapolation is said.
(e) how time scales with series (from (a), (b) and a small run) and workers (1 vs
    2), and what N machines would take from the measured per-partition cost.
(f) with ``--parquet DIR``, only this: the full pass of ``--companies`` x ``--days``
    read from a Parquet dataset (tracker.dataset.detect_dataset, as ``tracker replay
    --dataset DIR`` runs it): every task reads its own companies from the files. The
    dataset (tracker's export schema, seeded synthetic data) is written first if DIR
    holds none, a block of ``--partition`` companies at a time in ``--workers``
    processes; delete DIR to write it again.

Memory per worker is the peak RSS of each worker process (ru_maxrss), as the
tasks report it. Needs headcount-tracker[dask] and, for (c) and (d),
TRACKER_BENCH_POSTGRES_URL (or TRACKER_TEST_POSTGRES_URL), a database it may
create tables in (it makes and drops its own database).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tracker.detect import detect
from tracker.detect.settings import DetectSettings
from tracker.detect.synthetic import generate

ONE = DetectSettings(workers=1)


def generated_task(seed: int, n: int, days: int) -> dict[str, float]:
    """One partition made in the worker (seeded), then judged: its times and peak RSS."""
    t0 = time.perf_counter()
    m, _ = generate(n, days, seed=seed, quiet_fraction=0.7)
    m.columns = range(n)
    t1 = time.perf_counter()
    rows = detect(m, ONE)
    t2 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MB (Linux: KB)
    return {"generate": t1 - t0, "detect": t2 - t1, "rows": len(rows), "rss_mb": rss,
            "pid": os.getpid()}


def on_dask(companies: int, days: int, part: int, workers: int) -> dict[str, float]:
    """(a)-style run: every partition generated and judged in a worker; wall time."""
    import distributed

    sizes = [min(part, companies - i) for i in range(0, companies, part)]
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  memory_limit="4GB", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        client.run(lambda: None)  # workers up before the clock starts
        t0 = time.perf_counter()
        futures = client.map(generated_task, range(len(sizes)), sizes, days=days, pure=False)
        done = client.gather(futures)
        wall = time.perf_counter() - t0
    gen = sum(d["generate"] for d in done)
    det = sum(d["detect"] for d in done)
    rss = max(d["rss_mb"] for d in done)
    return {"wall": wall, "generate": gen, "detect": det, "rows": sum(d["rows"] for d in done),
            "rss_mb": rss, "partitions": len(sizes), "per_partition": (gen + det) / len(sizes),
            "detect_wall": wall * det / (gen + det)}


def local_detect(companies: int, days: int, part: int, workers: int) -> dict[str, float]:
    """The local engine over the same series (generated first, not timed): detection only."""
    mats = []
    for k, i in enumerate(range(0, companies, part)):
        m, _ = generate(min(part, companies - i), days, seed=k, quiet_fraction=0.7)
        mats.append(m.to_numpy())
    matrix = pd.DataFrame(np.hstack(mats), index=m.index)
    del mats
    t0 = time.perf_counter()
    rows = detect(matrix, DetectSettings(workers=workers))
    return {"detect": time.perf_counter() - t0, "rows": len(rows),
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def postgres_parts(admin: str, series: int, days: int, part: int) -> dict[str, float]:
    """(c) and (d) on a fresh PostgreSQL database holding ``series`` x ``days``."""
    from sqlalchemy import create_engine, make_url, text

    from tracker.config import Settings
    from tracker.detection import detect_new, run_detection
    from tracker.ingest import ImportOptions, import_file
    from tracker.store import Store
    from tracker.store.slices import read_slice, series_ids
    from tracker.workspace import Workspace

    name = f"tracker_bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    out: dict[str, float] = {}
    try:
        m, _ = generate(series, days + 1, seed=99, quiet_fraction=0.7)
        with tempfile.TemporaryDirectory() as tmp:
            long = m.iloc[:-1].stack().dropna().rename("employees").reset_index()
            long.columns = ["date", "series", "employees"]
            long["company"] = long["series"].str.split("/").str[0]
            long["date"] = long["date"].dt.strftime("%Y-%m-%d")
            long["employees"] = long["employees"].astype("int64")
            path = Path(tmp) / "history.csv"
            long[["company", "date", "employees"]].to_csv(path, index=False)
            ws = Workspace(Settings(base_dir=Path(tmp), sources={}), Store(url))
            t0 = time.perf_counter()
            import_file(ws.store, path, ImportOptions(collected_at=datetime(2020, 1, 1)))
            out["import"] = time.perf_counter() - t0
            out["rows"] = float(len(long))
            ids = series_ids(ws.store)
            lo, hi = int(ids[0]), int(ids[min(part, ids.size) - 1])
            t0 = time.perf_counter()
            sl = read_slice(url, lo, hi)
            out["read"] = time.perf_counter() - t0
            out["read_series"] = float(min(part, ids.size))
            out["read_rows"] = float(len(sl))
            from tracker.dask_engine import slice_matrix

            matrix, _, _ = slice_matrix(sl, [])
            t0 = time.perf_counter()
            detect(matrix, ONE)
            out["part_detect"] = time.perf_counter() - t0
            last = m.index[-2].date()
            run_detection(ws, until=last)
            day = m.iloc[[-1]].stack().dropna().rename("employees").reset_index()
            day.columns = ["date", "series", "employees"]
            day["company"] = day["series"].str.split("/").str[0]
            day["date"] = day["date"].dt.strftime("%Y-%m-%d")
            day["employees"] = day["employees"].astype("int64")
            day_path = Path(tmp) / "day.csv"
            day[["company", "date", "employees"]].to_csv(day_path, index=False)
            t0 = time.perf_counter()
            import_file(ws.store, day_path)
            t1 = time.perf_counter()
            result = detect_new(ws, last + timedelta(days=1))
            t2 = time.perf_counter()
            out.update(append=t1 - t0, daily_detect=t2 - t1, daily_new=float(len(result.new)))
            ws.store.close()
    finally:
        from tracker.store import slices

        for s in slices._STORES.values():
            s.close()
        slices._STORES.clear()
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()
    return out


def parquet_pass(folder: str, companies: int, days: int, part: int, workers: int) -> None:
    """(f): write the dataset if needed, then one full pass from it on a LocalCluster."""
    from concurrent.futures import ProcessPoolExecutor

    import distributed
    from synthetic_rows import write_parquet_block

    from tracker.dataset import detect_dataset, first_day, judge_part, parts, read_part
    from tracker.ingest.sniff import parquet_files

    blocks = -(-companies // part)
    if not Path(folder).exists() or not parquet_files(Path(folder)):
        t0 = time.perf_counter()
        with ProcessPoolExecutor(workers) as pool:
            done = list(pool.map(write_parquet_block, [folder] * blocks, range(blocks),
                                 [part] * blocks, [days] * blocks))
        rows = sum(r for r, _ in done)
        print(f"  wrote {rows:,} rows of {companies:,} companies in "
              f"{time.perf_counter() - t0:.0f} s ({sum(g for _, g in done):.0f} s of it "
              f"generating, over {workers} processes)")
    files = parquet_files(Path(folder))
    size = sum(f.stat().st_size for f in files)
    print(f"  dataset {folder}: {len(files)} files, {size / 1e9:.2f} GB")
    first = first_day(folder)
    assert first is not None
    ranges = parts(folder, part)
    one = read_part(folder, ranges[0])  # warm: imports and the file cache
    t0 = time.perf_counter()
    one = read_part(folder, ranges[0])
    read = time.perf_counter() - t0
    t0 = time.perf_counter()
    found, n = judge_part(folder, ranges[0], None, first, ONE)
    task = time.perf_counter() - t0
    print(f"  one part in one process: {len(one.keys):,} series, {len(one.slice):,} rows: "
          f"read {read:.2f} s, read + detect {task:.2f} s ({found.shape[0]:,} verdicts)")
    del one, found
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  memory_limit="4GB", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        client.run(lambda: None)
        s = DetectSettings(engine="dask", scheduler=cluster.scheduler_address,
                           partition_size=part)
        t0 = time.perf_counter()
        with distributed.get_task_stream(client) as stream:
            verdicts, n = detect_dataset(folder, s)
        wall = time.perf_counter() - t0
        rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    busy = [sum(p["stop"] - p["start"] for p in t["startstops"] if p["action"] == "compute")
            for t in stream.data]
    n_parts = len(ranges)
    print(f"  full pass on {workers} workers: {wall:.1f} s wall ({wall / 60:.1f} min; target "
          f"<= 10 min), {n:,} series in {n_parts} parts, {len(verdicts):,} verdict rows")
    print(f"  peak RSS per worker: {max(rss.values()):.0f} MB (limit 4 GB)")
    print(f"  task time in the workers: {sum(busy):.0f} s over {len(busy)} tasks "
          f"({np.mean(busy):.1f} s mean, {max(busy):.1f} s max); the workers were busy "
          f"{sum(busy) / (workers * wall):.0%} of the wall time")
    per = sum(busy) / len(busy)
    print(f"  a cluster of N machines x {workers} workers ({n_parts} parts x {per:.1f} s):")
    for k in (1, 2, 4, 8, 16):
        print(f"    N={k:>2}: {n_parts * per / (k * workers) / 60:6.1f} min")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--companies", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=730)
    ap.add_argument("--compare", type=int, default=100_000, help="series of (b)")
    ap.add_argument("--daily", type=int, default=5_000, help="series of (c) and (d) on PG")
    ap.add_argument("--partition", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    ap.add_argument("--parquet", metavar="DIR", help="only (f): the full pass from this dataset")
    a = ap.parse_args()
    if a.quick:
        a.companies, a.compare, a.daily, a.partition = 8_000, 4_000, 600, 1_000
    if a.parquet:
        print(f"scale_bench (f): {os.cpu_count()} cores, {a.companies:,} companies x {a.days} "
              f"days from a Parquet dataset, {a.workers} Dask workers, parts of "
              f"{a.partition:,} series")
        parquet_pass(a.parquet, a.companies, a.days, a.partition, a.workers)
        return
    pg = os.environ.get("TRACKER_BENCH_POSTGRES_URL") or os.environ.get(
        "TRACKER_TEST_POSTGRES_URL")
    print(f"scale_bench: {os.cpu_count()} cores, {a.workers} Dask worker processes, "
          f"partitions of {a.partition:,} series, {a.days} days")

    small = max(a.partition * a.workers, a.compare // 10)
    print(f"\n(b) {a.compare:,} series: local engine vs Dask (detection only)")
    loc = local_detect(a.compare, a.days, a.partition, a.workers)
    dsk = on_dask(a.compare, a.days, a.partition, a.workers)
    print(f"  local engine, {a.workers} forked workers: {loc['detect']:7.1f} s "
          f"({loc['rows']:,} rows)")
    print(f"  Dask, {a.workers} worker processes:       {dsk['detect_wall']:7.1f} s of "
          f"{dsk['wall']:.1f} s wall (the rest is generating the data in the tasks); "
          f"{dsk['rows']:,} rows")
    print(f"  overhead ratio Dask / local: {dsk['detect_wall'] / loc['detect']:.2f}")

    print("\n(e) scaling with workers and series (Dask, generated partitions)")
    one = on_dask(small, a.days, a.partition, 1)
    two = on_dask(small, a.days, a.partition, a.workers)
    print(f"  {small:,} series: 1 worker {one['wall']:.1f} s, {a.workers} workers "
          f"{two['wall']:.1f} s (speed-up {one['wall'] / two['wall']:.2f}x)")

    print(f"\n(a) {a.companies:,} series x {a.days} days through Dask (data generated in the "
          "workers per partition, seeded; NOT read from a database: see (c))")
    big = on_dask(a.companies, a.days, a.partition, a.workers)
    print(f"  wall {big['wall']:.1f} s ({big['wall'] / 60:.1f} min; target <= 10 min): "
          f"generation {big['generate']:.0f} s + detection {big['detect']:.0f} s of task time, "
          f"{big['partitions']} partitions, {big['rows']:,} verdict rows")
    print(f"  peak RSS per worker: {big['rss_mb']:.0f} MB (limit 4 GB)")
    per = big["per_partition"]
    print(f"  per partition of {a.partition:,} series: {per:.1f} s task time "
          f"({big['detect'] / big['partitions']:.1f} s of it detection)")
    if a.companies < 1_000_000:
        print(f"  EXTRAPOLATED (linear from this run, not measured) to 1,000,000 series: "
              f"{big['wall'] * 1e6 / a.companies / 60:.1f} min on {a.workers} workers")
    for n, r in ((small, two), (a.compare, dsk), (a.companies, big)):
        print(f"  {n:>9,} series: {r['wall']:7.1f} s wall, "
              f"{1e3 * r['wall'] / n:.3f} ms per series")

    if pg:
        print(f"\n(c) one partition read from PostgreSQL + detection; (d) one daily run, "
              f"at {a.daily:,} series x {a.days} days")
        p = postgres_parts(pg, a.daily, a.days, min(a.partition, a.daily))
        print(f"  built with `import` of {p['rows']:,.0f} rows in {p['import']:.1f} s")
        read_per = p["read"] / p["read_series"]
        det_per = p["part_detect"] / p["read_series"]
        print(f"  (c) read {p['read_series']:,.0f} series ({p['read_rows']:,.0f} rows): "
              f"{p['read']:.2f} s; detect them: {p['part_detect']:.2f} s; "
              f"per {a.partition:,}-series partition: {a.partition * read_per:.1f} s read + "
              f"{a.partition * det_per:.1f} s detect")
        daily = p["append"] + p["daily_detect"]
        print(f"  (d) daily run at {a.daily:,}: append one day {p['append']:.2f} s, "
              f"detect + alerts {p['daily_detect']:.2f} s ({p['daily_new']:.0f} new)")
        scale = a.companies / a.daily
        print(f"      EXTRAPOLATED (linear per company, not measured) to {a.companies:,}: "
              f"{daily * scale:.0f} s ({daily * scale / 60:.1f} min; target <= 3 min)")
        cost = a.partition * (read_per + det_per)
        parts = -(-a.companies // a.partition)
        print(f"\n  a cluster of N machines x {a.workers} workers, full pass over "
              f"{a.companies:,} series from PostgreSQL ({parts} partitions x {cost:.1f} s, "
              "database not the bottleneck assumed):")
        for n in (1, 2, 4, 8, 16):
            print(f"    N={n:>2}: {parts * cost / (n * a.workers) / 60:6.1f} min")
    else:
        print("\n(c), (d) skipped: set TRACKER_BENCH_POSTGRES_URL to a PostgreSQL server")


if __name__ == "__main__":
    main()
