"""Chart time with many alerts: one company chart built and rendered to PNG.

A noisy series watched for years collects hundreds of alerts; the report and
``tracker plot`` must stay quick for it. Drawing one artist and one label per alert
took 43 s for 5,000 alerts (12 s to build, 32 s to render); drawing one artist per
kind and verdict and labelling the ``MAX_LABELS`` most significant is what this
measures. No peer: plain matplotlib is what the "before" was.

    python benchmarks/plot_bench.py [--alerts 50 500 5000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tracker.plots import render, series_figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, nargs="+", default=[50, 500, 5000])
    parser.add_argument("--days", type=int, default=3000)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    days = pd.date_range("2015-01-01", periods=args.days)
    obs = pd.DataFrame({"as_of": days, "source": "s", "company": "x", "metric": "employees",
                        "value": 1000 * np.exp(np.cumsum(rng.normal(0, 0.01, len(days))))})
    print(f"one chart of {args.days} days; build = Figure, render = PNG bytes")
    for n in args.alerts:
        at = rng.choice(len(days), n)
        kinds = rng.choice(["drop", "spike", "glitch", "drift_down"], n)
        alerts = pd.DataFrame({
            "company": "x", "metric": "employees", "source": "s", "date": days[at],
            "detected_on": days[at] + pd.Timedelta(days=3), "kind": kinds,
            "verdict": np.where(kinds == "glitch", "glitch", "confirmed"),
            "change_pct": rng.normal(0, 10, n), "value_before": 1000.0, "value_after": 900.0,
            "severity": "warning"})
        t0 = time.perf_counter()
        fig = series_figure(obs, alerts)
        t1 = time.perf_counter()
        png = render(fig)
        t2 = time.perf_counter()
        print(f"{n:>6} alerts: build {t1 - t0:5.2f} s, render {t2 - t1:5.2f} s, "
              f"{len(png) / 1024:,.0f} KiB")


if __name__ == "__main__":
    main()
