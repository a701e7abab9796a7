"""Throughput of the http_json source, and proof that its rate limiter holds.

Serves N companies from the test suite's fault-free local server, run in a separate
process so that the server and the client do not share one GIL, then collects them
all with the http_json source twice: without a limit (what the machinery costs)
and with ``rate_limit`` (the request rate the *server* measured must not exceed it).

    python benchmarks/collect_bench.py [--companies 2000] [--workers 16] [--rate 500]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
import urllib.request
from datetime import date
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from httpfixtures import FakeHttpServer  # noqa: E402

from tracker.records import CompanyRef, Observation  # noqa: E402
from tracker.sources.base import SourceContext  # noqa: E402
from tracker.sources.http_json import HttpJsonSource  # noqa: E402


def serve(n: int, conn: Connection) -> None:
    """Child process: serve n companies until the parent says stop."""
    server = FakeHttpServer()
    for i in range(n):
        server.add_company(f"co{i:05d}", 100 + i)
    with server:
        conn.send(server.url)
        conn.recv()


def server_stamps(url: str, last: int) -> list[float]:
    with urllib.request.urlopen(url + "/__log") as response:
        log = json.load(response)
    return sorted(entry["time"] for entry in log if entry["path"].startswith("/api/"))[-last:]


def peak_rate(stamps: list[float], window: float = 1.0) -> float:
    """Most requests seen in any window of ``window`` seconds, per second."""
    best, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] > window:
            start += 1
        best = max(best, end - start + 1)
    return best / window


def collect(url: str, n: int, workers: int, rate: float | None) -> None:
    raw = {
        "type": "http_json",
        "url": url + "/api/companies/{company}?date={day}",
        "value_path": "data.employee_count",
        "workers": workers,
        "rate_limit": rate,
        "timeout": [2, 10],
    }
    source = HttpJsonSource.from_config("bench", raw, SourceContext(ROOT))
    refs = [CompanyRef(f"co{i:05d}", f"Company {i}") for i in range(n)]
    started = time.perf_counter()
    results = list(source.fetch(refs, date(2022, 10, 12)))
    elapsed = time.perf_counter() - started
    source.close()
    good = sum(isinstance(r, Observation) for r in results)
    stamps = server_stamps(url, n)
    mean = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    label = "no limit" if rate is None else f"rate_limit={rate:g}/s"
    print(f"-- http_json, {n} companies, {workers} workers, {label}")
    print(f"   observations      {good} ok, {len(results) - good} failed")
    print(f"   total time        {elapsed:.2f} s")
    print(f"   throughput        {good / elapsed:,.0f} observations/s")
    print(f"   server-side rate  mean {mean:,.0f} req/s, peak 1-s window {peak_rate(stamps):,.0f}")
    if rate is not None:
        verdict = "holds" if mean <= rate * 1.02 else "EXCEEDED"
        used = f"{mean / rate:.1%}"
        print(f"   limit             {rate:g} req/s configured -> {used} used, {verdict}")
    assert good == n, "every company should have been collected"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--rate", type=float, default=500.0)
    args = parser.parse_args()
    parent, child = mp.get_context("spawn").Pipe()
    server = mp.get_context("spawn").Process(target=serve, args=(args.companies, child))
    server.start()
    try:
        url = parent.recv()
        collect(url, args.companies, args.workers, None)
        collect(url, args.companies, args.workers, args.rate)
    finally:
        parent.send("stop")
        server.join(timeout=10)


if __name__ == "__main__":
    main()
