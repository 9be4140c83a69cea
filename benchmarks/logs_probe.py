"""The logs probes' tail against re-reading the log every run, on the same growing log.

A check that watches a log runs every minute. Generates an application log of ``--lines``
recent lines (default 2,000,000, about 150 MB), then, in one process:

* the tail (``levels`` probe): first refresh (reads the whole log), then ``--rounds`` rounds
  of appending ``--append`` lines and refreshing;
* the peer, a full re-read per run (the ``errors`` probe's scan, which is what a
  ``check_log``-style plugin or a cron ``grep -c`` does): the same rounds, each reading the
  whole log again.

Prints per-run milliseconds for both and checks both counted the same errors.

Usage: .venv/bin/python benchmarks/logs_probe.py [--lines 2000000] [--append 10000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from upkeep.analysis.tail import LogTail
from upkeep.probes.logs import list_log_files, scan_files

WINDOW = timedelta(hours=1)


def write_lines(path: Path, count: int, start: int, mode: str) -> None:
    """Append ``count`` numbered lines, every 20th an ERROR, stamped now."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    with open(path, mode, encoding="ascii") as handle:
        for number in range(start, start + count):
            level = "ERROR" if number % 20 == 0 else "INFO"
            handle.write(f"{stamp} {level} worker-{number % 8} handled job {number} in 12 ms\n")


def main() -> int:
    """Run both readers over the same growing log; print per-run times; 1 if counts differ."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--append", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    # /var/tmp: on disk like a real log (/tmp may be a tmpfs).
    with tempfile.TemporaryDirectory(dir="/var/tmp") as directory:
        log = Path(directory) / "app.log"
        write_lines(log, arguments.lines, 0, "w")
        size_mb = log.stat().st_size / 1e6
        print(f"log: {arguments.lines:,} lines, {size_mb:.0f} MB; +{arguments.append:,} per round")
        tail = LogTail("auto", ())
        pattern = re.compile("ERROR")

        def tail_run() -> int:
            now = datetime.now(UTC)
            tail.refresh([log], horizon=WINDOW, now=now, deadline=time.monotonic() + 600)
            return tail.window(now - WINDOW).levels["ERROR"]

        def full_run() -> int:
            now = datetime.now(UTC)
            files = list_log_files(str(log), "*.log")
            found = scan_files(
                files, pattern, since=now - WINDOW, now=now, deadline=time.monotonic() + 600
            )
            return found.count

        started = time.perf_counter()
        first = tail_run()
        first_ms = (time.perf_counter() - started) * 1000
        tail_ms, full_ms = [], []
        written = arguments.lines
        mismatch = False
        for _ in range(arguments.rounds):
            write_lines(log, arguments.append, written, "a")
            written += arguments.append
            started = time.perf_counter()
            tail_count = tail_run()
            tail_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            full_count = full_run()
            full_ms.append((time.perf_counter() - started) * 1000)
            expected = len(range(0, written, 20))
            mismatch |= not tail_count == full_count == expected
        print(f"tail, first run (whole log): {first_ms:,.0f} ms ({first:,} errors)")
        print(
            f"tail, each later run: median {statistics.median(tail_ms):,.1f} ms "
            f"(min {min(tail_ms):,.1f}, max {max(tail_ms):,.1f})"
        )
        print(
            f"full re-read, each run: median {statistics.median(full_ms):,.0f} ms "
            f"(min {min(full_ms):,.0f}, max {max(full_ms):,.0f})"
        )
        print(f"ratio: {statistics.median(full_ms) / statistics.median(tail_ms):,.0f}x")
        print("counts:", "MISMATCH" if mismatch else "equal in every round")
        return 1 if mismatch else 0


if __name__ == "__main__":
    sys.exit(main())
