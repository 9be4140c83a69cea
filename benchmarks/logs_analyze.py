"""``upkeep logs analyze`` against GoAccess on the same combined access log.

Generates an nginx combined log with a request time per line (``--lines``, default
1,000,000), then runs, each in its own process and timed by GNU ``/usr/bin/time``:

* upkeep: ``analyze([log])`` (levels, security events, per-endpoint and per-5-minute
  requests, 5xx rate, p50/p95/p99);
* GoAccess (Debian package ``goaccess``): ``goaccess LOG --log-format=COMBINED -o out.json``.

Prints wall time, CPU, peak RSS and lines per second for both, and checks that both counted
every request. GoAccess builds more panels (visitors, referrers, browsers), upkeep computes
percentiles per endpoint and per bin: the comparison is of reading the same log for a report.

Usage: .venv/bin/python benchmarks/logs_analyze.py [--lines 1000000]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

UPKEEP = """
import sys
from pathlib import Path
from upkeep.analysis.logs import analyze
report = analyze([Path(sys.argv[1])]).to_json()
print(report["requests"])
"""


def generate(path: Path, lines: int) -> None:
    """Write ``lines`` combined-format requests with a request time to ``path``."""
    rng = random.Random(1)  # noqa: S311 - reproducible fake request times, not secrets
    with open(path, "w", encoding="ascii") as handle:
        for number in range(lines):
            status = 500 if number % 50 == 0 else 200
            minute, second = (number // 20_000) % 60, (number // 400) % 60
            handle.write(
                f"10.0.{number % 255}.{number % 7} - - [23/Nov/2026:12:{minute:02d}:{second:02d} "
                f'+0000] "GET /api/items/{number % 5000}?q=1 HTTP/1.1" {status} {number % 9000} '
                f'"https://example.org/" "Mozilla/5.0 (X11; Linux x86_64)" {rng.random() / 10:.3f}\n'
            )


def timed(argv: list[str]) -> tuple[dict[str, float], str]:
    """Run argv under GNU time; return (wall s, CPU s, peak RSS MB) and its stdout."""
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%e %U %S %M", *argv],
        capture_output=True,
        text=True,
        check=True,
    )
    wall, user, system, rss_kb = done.stderr.strip().splitlines()[-1].split()
    figures = {
        "wall_s": float(wall),
        "cpu_s": float(user) + float(system),
        "rss_mb": int(rss_kb) / 1024,
    }
    return figures, done.stdout


def main() -> int:
    """Generate the log, run both, print the figures; return 1 if a count is off."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    arguments = parser.parse_args()
    if not Path("/usr/bin/time").exists():
        sys.exit("needs GNU time (Debian package time)")
    with tempfile.TemporaryDirectory(dir="/var/tmp") as scratch:
        log = Path(scratch) / "access.log"
        generate(log, arguments.lines)
        size_mb = log.stat().st_size / 1e6
        rows: list[tuple[str, dict[str, float]]] = []
        ours, out = timed([sys.executable, "-c", UPKEEP, str(log)])
        counted_ok = int(out.strip()) == arguments.lines
        rows.append(("upkeep logs analyze", ours))
        goaccess = shutil.which("goaccess")
        if goaccess:
            report = Path(scratch) / "goaccess.json"
            theirs, _ = timed(
                [
                    goaccess,
                    str(log),
                    "--log-format=COMBINED",
                    "--no-global-config",
                    "-o",
                    str(report),
                ]
            )
            total = json.loads(report.read_text())["general"]["total_requests"]
            counted_ok = counted_ok and total == arguments.lines
            rows.append(("GoAccess (COMBINED, JSON report)", theirs))
        else:
            print("goaccess not installed (apt-get install goaccess): peer skipped")
    print(f"{arguments.lines:,} lines, {size_mb:.0f} MB of combined access log")
    print("| reader | wall s | CPU s | peak RSS MB | lines/s |")
    print("|---|---:|---:|---:|---:|")
    for name, figures in rows:
        rate = arguments.lines / figures["wall_s"] if figures["wall_s"] else float("inf")
        print(
            f"| {name} | {figures['wall_s']:.2f} | {figures['cpu_s']:.2f} | "
            f"{figures['rss_mb']:.0f} | {rate:,.0f} |"
        )
    if len(rows) == 2:
        print(f"speed: upkeep {rows[1][1]['wall_s'] / rows[0][1]['wall_s']:.1f}x GoAccess")
    return 0 if counted_ok else 1


if __name__ == "__main__":
    sys.exit(main())
