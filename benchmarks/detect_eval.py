"""Detection quality on a synthetic seed that was never used for tuning.

Thresholds were tuned on seeds 0-9 (400 series x 730 days each); this prints the
scores on seed 12345 (default) so the figures are not fitted to their own data.

    python benchmarks/detect_eval.py [--seed 12345] [--series 1500] [--days 730]
"""

from __future__ import annotations

import argparse
import time

from tracker.detect import DetectSettings, detect
from tracker.detect.evaluate import report, score
from tracker.detect.synthetic import generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--series", type=int, default=1500)
    ap.add_argument("--days", type=int, default=730)
    args = ap.parse_args()
    matrix, labels = generate(args.series, args.days, seed=args.seed)
    t0 = time.perf_counter()
    found = detect(matrix, DetectSettings())
    elapsed = time.perf_counter() - t0
    print(f"synthetic seed {args.seed} (not used for tuning; tuned on seeds 0-9): "
          f"{args.series} series x {args.days} days, {len(labels)} labelled events, "
          f"detect() {elapsed:.1f} s")
    print(report(score(found, labels, matrix)))
    print("targets: big-shift recall >= 0.95 and precision >= 0.95, classification >= 0.9, "
          "<= 1 false alert per 10,000 quiet company-days")


if __name__ == "__main__":
    main()
