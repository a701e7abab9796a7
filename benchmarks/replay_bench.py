"""Replay speed: ``tracker replay`` over 365 days x 1,000 companies, plain and ``--as-known``.

The store holds two years of daily history; the second year arrived day by day
(each day's values collected that morning, some a day or two late), so an
as-known replay has real arrivals to follow. Prints both replays' times against
the goal (<= 60 s each on this 2-core machine) and, as the peer, what as-known
cost before it was incremental: one full detection per replayed day over what was
known by then, timed on the first ``--peer-days`` days and extrapolated, with the
ratio. The verdicts of those days are checked to be identical.

    python benchmarks/replay_bench.py [--companies 1000] [--days 365] [--peer-days 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from synthetic_rows import long_rows

from tracker.config import Settings
from tracker.detect import detect
from tracker.detect.synthetic import generate
from tracker.detection import build_matrix
from tracker.ingest import ImportOptions, import_file
from tracker.replay import _verdicts, timeline
from tracker.store import Store
from tracker.workspace import Workspace


def build(root: Path, companies: int, days: int) -> Workspace:
    m, _ = generate(companies, 2 * days, seed=3, start="2022-01-01")
    store = Store(f"sqlite:///{root / 'replay.db'}")
    first = root / "first.csv"
    long_rows(m.iloc[:days]).to_csv(first, index=False)
    import_file(store, first, ImportOptions(collected_at=m.index[days].to_pydatetime()))
    rng = np.random.default_rng(0)
    rows = long_rows(m.iloc[days:])
    delay = rng.choice([0, 0, 0, 0, 0, 0, 0, 0, 1, 2], size=len(rows))
    arrive = pd.to_datetime(rows["date"]) + pd.to_timedelta(delay, unit="D")
    for stamp, part in rows.groupby(arrive):
        path = root / "day.csv"
        part.to_csv(path, index=False)
        import_file(store, path, ImportOptions(
            collected_at=(stamp + pd.Timedelta(hours=7)).to_pydatetime()))
    return Workspace(Settings(base_dir=root, sources={}), store)


def peer(ws: Workspace, start: pd.Timestamp, n: int) -> tuple[float, pd.DataFrame]:
    """The former as-known replay: a full detection per day over what was known."""
    t0 = time.perf_counter()
    parts, seen = [], set()
    for day in pd.date_range(start, periods=n):
        known = (day + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)).to_pydatetime()
        matrix, keys = build_matrix(ws, known_at=known, until=day.date())
        rows = _verdicts(detect(matrix, ws.settings.detect).join(keys, on="series"), ws)
        rows = rows[rows["day"] <= day]
        key = list(zip(rows["company"], rows["date"], rows["event"], strict=True))
        fresh = np.array([k not in seen for k in key], dtype=bool)
        if day == start:
            fresh &= (rows["day"] == day).to_numpy()
        seen.update(key)
        parts.append(rows[fresh].assign(day=day))
    return time.perf_counter() - t0, pd.concat(parts, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--peer-days", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ws = build(Path(tmp), args.companies, args.days)
        print(f"set-up: {args.companies:,} companies x {2 * args.days} days, the second "
              f"{args.days} arriving day by day: {time.perf_counter() - t0:.0f} s")
        start = pd.Timestamp("2022-01-01") + pd.Timedelta(days=args.days)
        end = start + pd.Timedelta(days=args.days - 1)
        times = {}
        for as_known in (False, True):
            t0 = time.perf_counter()
            out = timeline(ws, start=start.date(), end=end.date(), as_known=as_known)
            took = times[as_known] = time.perf_counter() - t0
            label = "replay --as-known" if as_known else "replay"
            print(f"{label:18s} {args.days} days x {args.companies:,} companies: {took:6.1f} s, "
                  f"{len(out):,} verdicts  [goal <= 60 s -> "
                  f"{'meets' if took <= 60 else 'MISSES'}]")
        n = args.peer_days
        took, want = peer(ws, start, n)
        first = timeline(ws, start=start.date(), end=(start + pd.Timedelta(days=n - 1)).date(),
                         as_known=True)
        same = len(first) == len(want) and set(
            zip(first["day"], first["company"], first["event"], strict=True)) == set(
            zip(want["day"], want["company"], want["event"], strict=True))
        est = took / n * args.days
        print(f"peer: full detection per day (the former --as-known): {took:.1f} s for {n} "
              f"days, EXTRAPOLATED to {args.days}: {est:.0f} s; ratio peer/incremental "
              f"{est / max(times[True], 1e-9):.1f}x; "
              f"verdicts of those {n} days identical: {same}")
        ws.close()


if __name__ == "__main__":
    main()
