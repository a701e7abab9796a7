"""One daily run for a million companies on PostgreSQL, measured on a real 10^8-row store.

    TRACKER_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@host/postgres \\
        python benchmarks/daily_pg_bench.py [--companies 1000000] [--days 120]

What is timed is the run cron starts every morning in the steady state: ``tracker
run`` for the next day, i.e. collect one day from a csv_folder (the append of
``--companies`` rows through the store's COPY path), detect, the inflation and
population checks, notify (alerts) and, apart, the report. Everything before it is
set-up, printed but not the figure:

1. a fresh database (made and dropped here); the first day imported through
   ``tracker import`` (which creates the million companies and series);
2. the other ``--days`` - 1 days of history written straight into the partitions
   by one binary COPY per day with the foreign-key triggers off: a fixture, ten
   times faster than a million-row import per day, and the same rows an import
   writes (values from the seeded synthetic generator: trends, weekly patterns,
   monthly series, purges, glitches);
3. the first run's full detection and population passes (their marks;
   `--setup-engine dask` runs them on a LocalCluster, as a million-company store
   would), and the run of the day before, which finds no kept detection window yet
   and reads one afresh (with ``--build-only``: the first ``--reuse`` run is that
   one).

The peer (the floor of the append) is a plain binary COPY of the same day's rows
into an unindexed table, printed beside the collect step with the ratio.

``--keep`` keeps the database; ``--reuse NAME`` skips the set-up and times the run
of the day after the last one that database holds (the same seeded values), so a
change can be measured on a 10^8-row store without building it again.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daily_bench import _timed_steps
from synthetic_rows import long_rows

from tracker.config import load_settings
from tracker.detect import engine as detect_engine
from tracker.detect.synthetic import generate
from tracker.detection import run_detection
from tracker.ingest import ImportOptions, import_file
from tracker.job import run_once
from tracker.population import find_population_events
from tracker.store import Store, partitions, window_cache
from tracker.workspace import Workspace

CONFIG = """
[database]
url = "{url}"

[sources.drop]
type = "csv_folder"
path = "incoming"

[detect]
workers = {workers}
engine = "{engine}"

[report]
output_dir = "reports"
"""

CHUNK = 50_000
#: days generated beyond the stored history (the same seeded values every time, so
#: ``--reuse`` can run up to this many more days on a kept database)
HORIZON = 32
PG_EPOCH = np.datetime64("2000-01-01", "D")
#: observations (series_id, source_id, as_of, value, collected_at) in COPY BINARY
ROW = [("n", ">i2"), ("l1", ">i4"), ("series_id", ">i4"), ("l2", ">i4"), ("source_id", ">i4"),
       ("l3", ">i4"), ("as_of", ">i4"), ("l4", ">i4"), ("value", ">i8"), ("l5", ">i4"),
       ("collected_at", ">i8")]
HEADER, TRAILER = b"PGCOPY\n\xff\r\n\x00" + bytes(8), b"\xff\xff"


def history(companies: int, days: int, start: str) -> pd.DataFrame:
    """dates x companies, made in chunks of the seeded generator, names unique; kept
    in the temporary folder (a million companies take minutes to generate, and every
    ``--reuse`` run needs the same values again)."""
    tmp = Path(tempfile.gettempdir())
    cache = tmp / f"tracker_daily_{companies}x{days}_{start}.npz"
    # a longer history of the same companies and start serves too: its first days
    # (another seeded history, as real as this one; a kept database reuses the same)
    longer = sorted((int(f.stem.split("x")[1].split("_")[0]), f)
                    for f in tmp.glob(f"tracker_daily_{companies}x*_{start}.npz"))
    found = [f for n, f in longer if n >= days]
    if found:
        with np.load(found[0]) as f:
            values, index = f["values"][:days], f["index"][:days]
        return pd.DataFrame(values, index=pd.DatetimeIndex(index),
                            columns=[f"co{k:07d}/employees" for k in range(companies)])
    m = _generated(companies, days, start)
    np.savez(cache, values=m.to_numpy(), index=m.index.to_numpy())
    return m


def _generated(companies: int, days: int, start: str) -> pd.DataFrame:
    parts = []
    for k in range(0, companies, CHUNK):
        n = min(CHUNK, companies - k)
        m, _ = generate(n, days, seed=1000 + k // CHUNK, start=start, quiet_fraction=0.7)
        m.columns = [f"co{k + j:07d}/employees" for j in range(n)]
        parts.append(m.astype("float32"))
    return pd.concat(parts, axis=1)


def copy_days(dsn: str, m: pd.DataFrame, first: np.ndarray, series_of: np.ndarray,
              source_id: int) -> int:
    """Every cell of ``m`` but each series' first (imported) straight into observations."""
    import psycopg

    written = 0
    with psycopg.connect(dsn) as conn:
        conn.execute("SET session_replication_role = replica")  # the FK triggers off
        with conn.cursor() as cur:
            for i in range(len(m)):
                row = m.iloc[i].to_numpy()
                ok = np.isfinite(row) & (first != i)
                rows = np.empty(int(ok.sum()), dtype=ROW)
                rows["n"] = 5
                rows["l1"], rows["l2"], rows["l3"], rows["l4"], rows["l5"] = 4, 4, 4, 8, 8
                rows["series_id"], rows["source_id"] = series_of[ok], source_id
                day = np.datetime64(m.index[i].date(), "D")
                rows["as_of"] = (day - PG_EPOCH).astype(np.int64)
                rows["value"] = np.rint(row[ok]).astype(np.int64)
                # collected at the end of its day, as a daily collection would be
                rows["collected_at"] = ((day + 1 - PG_EPOCH).astype(np.int64) * 86_400 - 1) \
                    * 1_000_000
                with cur.copy("COPY observations (series_id, source_id, as_of, value, "
                              "collected_at) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.write(HEADER)
                    cp.write(rows.tobytes())
                    cp.write(TRAILER)
                written += len(rows)
        conn.commit()
        conn.execute("ANALYZE observations")
    return written


def floor_copy(dsn: str, csv: Path) -> float:
    """The peer: a plain COPY of the day's CSV into an unindexed table."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TEMP TABLE floor (company text, date date, employees bigint)")
        t0 = time.perf_counter()
        with conn.cursor().copy("COPY floor FROM STDIN (FORMAT CSV, HEADER)") as cp, \
                open(csv, "rb") as f:
            while block := f.read(1 << 20):
                cp.write(block)
        took = time.perf_counter() - t0
        conn.rollback()
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--companies", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=120,
                    help="days of history stored (with --reuse: as when it was built)")
    ap.add_argument("--start", default="2022-06-01")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--setup-engine", choices=["local", "dask"], default="local",
                    help="engine of the set-up's full pass (dask: a LocalCluster of "
                         "--workers processes, as a million-company store's first run)")
    ap.add_argument("--engine", choices=["local", "dask"], default="local",
                    help="engine of the timed daily run (dask: a LocalCluster of --workers "
                         "processes whose tasks read their own slices)")
    ap.add_argument("--keep", action="store_true", help="keep the database (name printed)")
    ap.add_argument("--build-only", action="store_true",
                    help="stop after the set-up's full pass and keep the database: the "
                         "first --reuse run is then the one that reads the window afresh")
    ap.add_argument("--profile", metavar="FILE", help="cProfile the timed run into FILE")
    ap.add_argument("--reuse", metavar="NAME",
                    help="a database kept by --keep: time the next day's run on it")
    ap.add_argument("--full-pass", action="store_true",
                    help="with --reuse: a full detection pass on --engine first (timed), "
                         "so the timed run is the first daily run after a full pass")
    a = ap.parse_args()
    admin = os.environ.get("TRACKER_BENCH_POSTGRES_URL") or os.environ.get(
        "TRACKER_TEST_POSTGRES_URL")
    if not admin:
        sys.exit("set TRACKER_BENCH_POSTGRES_URL to a PostgreSQL server")
    from sqlalchemy import create_engine, make_url, text

    name = a.reuse or f"tracker_daily_{uuid.uuid4().hex[:8]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    if not a.reuse:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin).set(database=name)
    url_s = url.render_as_string(hide_password=False)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    print(f"daily_pg_bench: {a.companies:,} companies x {a.days} days on PostgreSQL "
          f"(database {name}), {os.cpu_count()} cores")
    try:
        if a.reuse:
            timed_run(a, url_s, dsn)
            return
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            t0 = time.perf_counter()
            m = history(a.companies, a.days + HORIZON, a.start)
            print(f"  set-up: generated {m.shape[1]:,} series x {m.shape[0]} days in "
                  f"{time.perf_counter() - t0:.0f} s")
            (root / "incoming").mkdir()
            (root / "config.toml").write_text(CONFIG.format(url=url_s, workers=a.workers,
                                                            engine=a.engine))
            (root / "setup.toml").write_text(CONFIG.format(url=url_s, workers=a.workers,
                                                           engine=a.setup_engine))
            hist = m.iloc[: a.days]
            seen = np.isfinite(hist.to_numpy())
            m = m.loc[:, seen.any(axis=0)]
            hist, seen = m.iloc[: a.days], seen[:, seen.any(axis=0)]
            first_row = seen.argmax(axis=0)
            firsts = pd.DataFrame({
                "company": [c.split("/")[0] for c in m.columns],
                "date": hist.index[first_row].strftime("%Y-%m-%d"),
                "employees": np.rint(hist.to_numpy()[first_row, np.arange(m.shape[1])]
                                     ).astype(np.int64)})
            first = root / "first.csv"
            firsts.to_csv(first, index=False)
            store = Store(url_s)
            t0 = time.perf_counter()
            imported = import_file(store, first, ImportOptions(
                source="drop", collected_at=datetime.combine(m.index[0].date(),
                                                             datetime.max.time())))
            print(f"  set-up: each series' first day imported ({imported.inserted:,} rows, "
                  f"{imported.companies:,} companies created) in {time.perf_counter() - t0:.0f} s")
            with store.reading("bench") as conn:
                ids = dict(conn.execute(text(
                    "SELECT c.name, s.id FROM series s JOIN companies c ON c.id = s.company_id"
                )).all())
                source_id = conn.execute(text("SELECT id FROM sources WHERE name = 'drop'")
                                         ).scalar_one()
            series_of = np.asarray([ids[c.split("/")[0]] for c in m.columns], dtype=np.int32)
            with store.transaction("bench: the history's quarters") as conn:
                partitions.ensure(conn, hist.index.date)  # as the import would make them
            t0 = time.perf_counter()
            n = copy_days(dsn, hist, first_row, series_of, source_id)
            took = time.perf_counter() - t0
            print(f"  set-up: {n:,} more rows COPYed into the partitions in {took:.0f} s "
                  f"({n / took / 1e3:.0f}k rows/s); {imported.inserted + n:,} observations")
            t0 = time.perf_counter()
            setup_ws = Workspace(load_settings(root / "setup.toml"), store)
            full = run_detection(setup_ws, until=hist.index[-1].date())
            print(f"  set-up: first run's full pass ({a.setup_engine} engine): "
                  f"{time.perf_counter() - t0:.0f} s ({len(full.anomalies):,} alerts)")
            t0 = time.perf_counter()  # the first run's population step judges every day
            found = find_population_events(setup_ws, until=hist.index[-1].date())
            print(f"  set-up: first run's population pass ({a.setup_engine} engine): "
                  f"{time.perf_counter() - t0:.0f} s ({len(found.events):,} events)")
            if a.build_only:
                print(f"  built: --reuse {name} --days {a.days} times the next day's run")
                return
            ws = Workspace(load_settings(root / "config.toml"), store)
            warm_day = _next_day(m, hist.index[-1])
            long_rows(m.loc[[warm_day]]).to_csv(
                root / "incoming" / f"{warm_day:%Y-%m-%d}.csv", index=False)
            t0 = time.perf_counter()
            warm = run_once(ws, warm_day.date())
            print(f"  set-up: the day before, reading the window afresh: "
                  f"{time.perf_counter() - t0:.1f} s ({warm.summary()[:60]})")
            store.close()
            held = [m]
            del m, hist, seen  # so that the timed run holds the only reference
            timed_run(a, url_s, dsn, root=root, m=held.pop())
    finally:
        if not (a.keep or a.reuse or a.build_only):
            with engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def _next_day(m: pd.DataFrame, after: pd.Timestamp) -> pd.Timestamp:
    """The first day after ``after`` with data (the generator has platform outages)."""
    later = m.loc[m.index > after]
    seen = later.notna().any(axis=1)
    if not seen.any():
        sys.exit(f"no generated day with data after {after:%Y-%m-%d} (the {HORIZON} days "
                 "generated past the history are used up): build a new database")
    return seen.idxmax()


class PeakMemory:
    """This process's peak resident memory per step of the timed run, sampled every
    20 ms from /proc (``ru_maxrss`` only knows the whole run's). Declared quiet to the
    engine, so the detection still forks its workers beside it (each is a process of
    its own, not counted here; with ``--engine dask`` the workers' memory is theirs)."""

    def __init__(self) -> None:
        self.step, self.peaks = "collect", {}
        self._busy, self._stop = threading.Lock(), threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._thread = threading.Thread(target=self._sample, daemon=True)
        detect_engine.fork_quiet(self._thread, self._busy)
        self._thread.start()

    def _sample(self) -> None:
        with open("/proc/self/statm") as statm:
            while not self._stop.wait(0.02):
                with self._busy:
                    statm.seek(0)
                    rss = int(statm.read().split()[1]) * self._page
                    self.peaks[self.step] = max(self.peaks.get(self.step, 0), rss)

    def at(self, step: str) -> None:
        self.step = step

    def stop(self) -> str:
        self._stop.set()
        self._thread.join()
        return ", ".join(f"{k} {v / 2**30:.2f}" for k, v in self.peaks.items())


def timed_run(a: argparse.Namespace, url_s: str, dsn: str, *, root: Path | None = None,
              m: pd.DataFrame | None = None) -> None:
    """The timed steady-state run of the day after the last one stored."""
    import psycopg

    with tempfile.TemporaryDirectory() as tmp:
        if root is None:
            root = Path(tmp)
            (root / "incoming").mkdir()
            (root / "config.toml").write_text(CONFIG.format(url=url_s, workers=a.workers,
                                                            engine=a.engine))
        store = Store(url_s)
        ws = Workspace(load_settings(root / "config.toml"), store)
        if a.full_pass:
            t0 = time.perf_counter()
            full = run_detection(ws)
            print(f"  full pass ({a.engine} engine) before the run: "
                  f"{time.perf_counter() - t0:.0f} s ({len(full.anomalies):,} alerts); "
                  f"windows stored: {len(window_cache.parts(store))}")
        with psycopg.connect(dsn) as conn:
            last = conn.execute("SELECT max(as_of) FROM observations").fetchone()[0]
            kept = conn.execute("SELECT count(*) FROM detect_window_meta").fetchone()[0]
        if m is None:
            m = history(a.companies, a.days + HORIZON, a.start)
        new_day = _next_day(m, pd.Timestamp(last))
        # as cron's new process each morning: the window is read from the database
        window_cache._kept = None
        day_csv = root / "incoming" / f"{new_day:%Y-%m-%d}.csv"
        long_rows(m.loc[[new_day]]).to_csv(day_csv, index=False)
        del m  # the generated history is the bench's, not the run's, memory
        memory = PeakMemory()
        steps, times = _timed_steps(memory.at)
        prof = None
        if a.profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        t0 = time.perf_counter()
        result = run_once(ws, new_day.date(), steps=steps)
        total = time.perf_counter() - t0
        peaks = memory.stop()
        if prof is not None:
            prof.disable()
            prof.dump_stats(a.profile)
        assert result.error is None, result.summary()
        collect = total - sum(times.values())
        report = times.get("report_step", 0.0)
        detail = ", ".join(f"{k.removesuffix('_step')} {v:.1f} s" for k, v in times.items())
        how = "stored window" if kept else "no stored window: read afresh"
        print(f"\n  daily run ({a.engine} engine, {how}) for {new_day:%Y-%m-%d}: {total:.1f} s "
              f"(collect {collect:.1f} s, {detail}); {result.summary()[:100]}")
        print(f"  peak resident memory of this process by step (GB): {peaks}")
        target = total - report
        print(f"  append one day + detect + alerts (the run without its report): "
              f"{target:.1f} s ({target / 60:.2f} min; target <= 3 min -> "
              f"{'meets' if target <= 180 else 'MISSES'})")
        floor = floor_copy(dsn, day_csv)
        print(f"  peer: plain COPY of the same day's CSV into an unindexed table "
              f"{floor:.2f} s; collect / COPY = {collect / floor:.0f}x")
        store.close()


if __name__ == "__main__":
    main()
