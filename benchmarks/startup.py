"""How fast does the CLI answer? ``upkeep --help`` and ``upkeep validate`` against a bare
interpreter start, median of repeated runs, in one run on this machine.

Usage: .venv/bin/python benchmarks/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """\
targets:
  box: {kind: host}
  api: {kind: http, url: "http://127.0.0.1:9/"}
checks:
  disk: {target: box, probe: disk, warn: used_percent > 80}
  api: {target: api, crit: status_code != 200 or response_time_ms > 1s}
"""


def median_seconds(argv: list[str], runs: int, cwd: str) -> float:
    """Given a command, run it ``runs`` times and return the median wall time in seconds."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, cwd=cwd, capture_output=True, check=True, timeout=60)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        Path(directory, "upkeep.yaml").write_text(CONFIG)
        cases = {
            "python -c pass (floor)": [sys.executable, "-c", "pass"],
            "upkeep --help": [sys.executable, "-m", "upkeep.cli.main", "--help"],
            "upkeep validate": [sys.executable, "-m", "upkeep.cli.main", "validate"],
        }
        print(f"{'command':<26} {'median ms':>10}   ({args.runs} runs each)")
        for name, argv in cases.items():
            print(f"{name:<26} {median_seconds(argv, args.runs, directory) * 1000:>10.0f}")


if __name__ == "__main__":
    main()
