"""Start-up time: ``tracker --help`` and ``tracker status`` on the bundled sample.

Builds a temporary workspace from the shipped config.toml and sample data, runs
``tracker run`` once so ``status`` has runs, sources and stale companies to show,
then times each command as a fresh process (``python -m tracker``, this checkout
first on the path) and prints the median of the runs beside the target from
issue 7 (<= 0.5 s on a 2-core machine). Beside it, the median CPU time (user +
system) of the same processes: the wall time also counts waiting for a core while
other jobs share the machine, the CPU time does not (though a busy machine slows
it too), so a wall time far above it means a crowded machine, not a slow start.
``python -X importtime -m tracker status`` shows where the time goes when a figure
is over.

    python benchmarks/startup_bench.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 0.5
COMMANDS = (("--help",), ("status",))


def workspace(folder: Path) -> Path:
    """A copy of the shipped config and sample, as a user would have it."""
    shutil.copy(ROOT / "config.toml", folder / "config.toml")
    (folder / "data" / "samples").mkdir(parents=True)
    shutil.copy(ROOT / "data" / "samples" / "purge_2022.csv", folder / "data" / "samples")
    return folder


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tracker(args: tuple[str, ...], cwd: Path) -> tuple[float, float]:
    """Wall time and CPU time of one ``tracker ARGS`` process, in seconds."""
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *([path] if path else [])])}
    cpu = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tracker", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"tracker {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return elapsed, _children_cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="processes per command")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tracker-startup-") as tmp:
        folder = workspace(Path(tmp))
        tracker(("run",), folder)  # creates and migrates the database, records a run
        tracker(("status",), folder)  # warm the bytecode cache and the OS file cache
        print(f"start-up, median of {args.runs} processes (target <= {TARGET_S:.1f} s)")
        for command in COMMANDS:
            runs = [tracker(command, folder) for _ in range(args.runs)]
            times = [wall for wall, _cpu in runs]
            median = statistics.median(times)
            cpu = statistics.median(cpu for _wall, cpu in runs)
            verdict = "ok" if median <= TARGET_S else "over target"
            print(f"  tracker {' '.join(command):<8} {median:6.3f} s  "
                  f"(min {min(times):.3f}, max {max(times):.3f}; cpu {cpu:.3f} s)  {verdict}")


if __name__ == "__main__":
    main()
