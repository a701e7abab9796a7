"""Speed and memory of detection against a straightforward per-series loop.

Each measurement runs in its own subprocess so peak memory (ru_maxrss) belongs to
it alone. The baseline is what one would write first: for every series statsmodels
STL (weekly) and a rolling median/MAD z-score of the residual's daily change. It is
timed on a subset and extrapolated (printed as such). Optional peers, also per
series on a subset and extrapolated: adtk (LevelShiftAD + PersistAD) and ruptures
(Pelt, l2 cost); each is skipped with the reason if it is not installed or fails.
Peak RSS includes forked detection workers (the larger of this process and them).

    python benchmarks/detect_bench.py [--series 10000] [--days 730] [--day-series 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def _rss_mb() -> float:
    """Peak RSS of this process or of any worker it forked, whichever is larger."""
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               _workers_mb() * 1024.0) / 1024.0


def _workers_mb() -> float:
    """Peak RSS of the largest forked worker (shared pages of the parent included)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def _data(series: int, days: int, seed: int) -> pd.DataFrame:
    from tracker.detect.synthetic import generate

    return generate(series, days, seed=seed)[0]


def child_detect(path: str) -> dict:
    from tracker.detect import detect

    m = pd.read_pickle(path)
    base = _rss_mb()
    t0 = time.perf_counter()
    out = detect(m)
    return {"seconds": time.perf_counter() - t0, "peak_mb": _rss_mb(), "data_mb": base,
            "workers_mb": _workers_mb(), "anomalies": len(out)}


def child_day(path: str) -> dict:
    from tracker.detect import detect_day

    m = pd.read_pickle(path)
    base = _rss_mb()
    t0 = time.perf_counter()
    out = detect_day(m, m.index[-1])
    return {"seconds": time.perf_counter() - t0, "peak_mb": _rss_mb(), "data_mb": base,
            "workers_mb": _workers_mb(), "anomalies": len(out)}


def child_loop(path: str, n: int) -> dict:
    from statsmodels.tsa.seasonal import STL

    m = pd.read_pickle(path).iloc[:, :n]
    t0 = time.perf_counter()
    alerts = 0
    for c in m.columns:
        y = np.log(m[c].clip(lower=0.5)).interpolate(limit_direction="both")
        resid = pd.Series(STL(y.to_numpy(), period=7, robust=True).fit().resid, index=y.index)
        d = resid.diff()
        med = d.rolling(60, min_periods=14).median().shift(1)
        mad = (d - med).abs().rolling(60, min_periods=14).median().shift(1) * 1.4826
        alerts += int(((d - med).abs() > 6.5 * mad).sum())
    return {"seconds": time.perf_counter() - t0, "series": n, "alerts": alerts}


def child_peer(path: str, n: int, name: str) -> dict:
    m = pd.read_pickle(path).iloc[:, :n]
    t0 = time.perf_counter()
    found = 0
    if name == "adtk":
        from adtk.data import validate_series
        from adtk.detector import LevelShiftAD, PersistAD

        for c in m.columns:
            y = validate_series(np.log(m[c].clip(lower=0.5)).interpolate(limit_direction="both"))
            for det in (LevelShiftAD(c=6.0, side="both", window=5),
                        PersistAD(c=6.0, side="both", window=7)):
                found += int(det.fit_detect(y).fillna(False).astype(bool).sum())
    else:
        import ruptures

        for c in m.columns:
            y = np.log(m[c].dropna().clip(lower=0.5)).to_numpy()
            found += len(ruptures.Pelt(model="l2", min_size=2).fit(y).predict(pen=10)) - 1
    return {"seconds": time.perf_counter() - t0, "series": n, "found": found}


def _run(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True,
                         text=True, check=False)
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=730)
    ap.add_argument("--day-series", type=int, default=100_000)
    ap.add_argument("--loop-subset", type=int, default=200)
    ap.add_argument("--peer-subset", type=int, default=50)
    ap.add_argument("--child", nargs="+")
    args = ap.parse_args()
    if args.child:
        kind, path, *rest = args.child
        fn = {"detect": child_detect, "day": child_day}.get(kind)
        res = fn(path) if fn else (child_loop(path, int(rest[0])) if kind == "loop"
                                   else child_peer(path, int(rest[0]), kind))
        print(json.dumps(res))
        return
    print(f"machine: {os.cpu_count()} cores, {_load()} at start")
    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / "full.pkl"
        _data(args.series, args.days, 42).to_pickle(full)
        r = _run("detect", str(full))
        print(f"detect(): {args.series:,} series x {args.days} days: {r['seconds']:.2f} s, "
              f"peak RSS {r['peak_mb']:.0f} MB (of which data+imports {r['data_mb']:.0f} MB; "
              f"largest worker {r['workers_mb']:.0f} MB), "
              f"{r['anomalies']} anomalies  [target <= 10 s, <= 2048 MB]")
        lp = _run("loop", str(full), str(args.loop_subset))
        est = lp["seconds"] * args.series / lp["series"]
        print(f"per-series loop (STL robust + rolling median/MAD z): {lp['seconds']:.2f} s for "
              f"{lp['series']} series, EXTRAPOLATED to {args.series:,}: {est:.0f} s; "
              f"ratio loop/detect = {est / r['seconds']:.0f}x")
        peers = {"adtk": "adtk LevelShiftAD + PersistAD per series",
                 "ruptures": "ruptures Pelt (l2, pen=10) per series"}
        for peer, label in peers.items():
            pr = _run(peer, str(full), str(args.peer_subset))
            if "error" in pr:
                print(f"{label}: skipped ({pr['error']})")
            else:
                est_p = pr["seconds"] * args.series / pr["series"]
                print(f"{label}: {pr['seconds']:.2f} s for {pr['series']} series, EXTRAPOLATED "
                      f"to {args.series:,}: {est_p:.0f} s; ratio peer/detect = "
                      f"{est_p / r['seconds']:.0f}x (detection only: no glitch/drift verdicts)")
        day = Path(tmp) / "day.pkl"
        _data(args.day_series, 300, 43).to_pickle(day)
        dr = _run("day", str(day))
        print(f"detect_day(): one new day for {args.day_series:,} series (300-day history): "
              f"{dr['seconds']:.2f} s, peak RSS {dr['peak_mb']:.0f} MB (data+imports "
              f"{dr['data_mb']:.0f} MB; largest worker {dr['workers_mb']:.0f} MB), "
              f"{dr['anomalies']} rows  [target <= 5 s]")
    print(f"machine: {_load()} at end")


if __name__ == "__main__":
    main()
