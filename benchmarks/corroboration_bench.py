"""What corroboration costs: N two-source companies, a purge at half of them.

Imports N companies x 2 sources x 150 days into SQLite, runs one full detection,
then times corroboration alone over every stored move (the values near all of them
read in one query per 5,000 alerts, then judged), and prints it per alert. The goal:
its cost follows the number of alerts, a small part of a detection pass.

    python benchmarks/corroboration_bench.py [--companies 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from tracker.config import Settings
from tracker.corroboration import corroborate
from tracker.detection import run_detection
from tracker.ingest import import_file
from tracker.store import Store
from tracker.store import alerts as alert_store
from tracker.workspace import Workspace


def _csv(path: Path, n: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    days = pd.date_range("2022-06-01", periods=150)
    after = (days >= "2022-10-11")[:, None]
    purge = rng.random(n) < 0.5
    frames = []
    for source, noise, move in (("linkedin", 0.002, -0.5), ("signalhire", 0.005, -0.08)):
        level = rng.integers(2_000, 200_000, n)[None, :]
        factor = np.where(after & purge[None, :], 1 + move * (rng.random(n) < 0.7), 1.0)
        values = level * (1 + rng.normal(0, noise, (len(days), n))) * factor
        frames.append(pd.DataFrame({
            "company": np.tile([f"c{i:05d}" for i in range(n)], len(days)),
            "date": np.repeat(days.strftime("%Y-%m-%d"), n),
            "employees": values.ravel().round().astype(np.int64), "source": source}))
    pd.concat(frames).to_csv(path, index=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--companies", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _csv(folder / "two.csv", args.companies)
        with Workspace(Settings(base_dir=folder),
                       Store(f"sqlite:///{folder / 'bench.db'}")) as ws:
            import_file(ws.store, folder / "two.csv")
            t0 = time.perf_counter()
            run_detection(ws)
            detect = time.perf_counter() - t0
            moves = alert_store.moves_since(ws.store, date(2022, 1, 1))
            moves["date"] = pd.to_datetime(moves["date"])
            t0 = time.perf_counter()
            out = corroborate(ws.store, moves, ws.settings, through=date(2022, 10, 28))
            took = time.perf_counter() - t0
    print(f"{args.companies:,} companies x 2 sources: full detection {detect:.2f} s "
          f"(corroboration included); {len(moves):,} moves corroborated in {took:.3f} s "
          f"({1e3 * took / max(len(moves), 1):.2f} ms per alert); "
          f"{int(out['possible_source_error'].sum()):,} possible source errors, "
          f"{int((out['sources_agreeing'] > 1).sum()):,} corroborated")


if __name__ == "__main__":
    main()
