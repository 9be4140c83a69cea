"""How long the store's integrity check takes on a large SQLite store.

Builds (or reuses, if it already holds enough) a SQLite store with N results in a
directory: 1,000 checks, one result every 0.6 s over about a week for N = 1,000,000, two
numeric metrics each, written through ``Store.write_results`` in batches of 5,000 as the
daemon writes them. Then times ``Store.check_integrity`` (``PRAGMA quick_check``, what
upkeep runs at the daemon's start, every ``alerting.store_failure.integrity_interval``
and after a "malformed" error) with a cold page cache (dropped first when run as root;
otherwise it is only as cold as the machine made it) and warm, and ``PRAGMA
integrity_check`` (which also compares every index with its table) for comparison.
Prints one JSON document.

Usage: .venv/bin/python benchmarks/store_integrity.py [--results 1000000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from upkeep.core.results import CheckResult
from upkeep.core.status import Status
from upkeep.store.store import Store

BATCH = 5000
CHECKS = 1000


def build(store: Store, results: int) -> float:
    """Write ``results`` results; return how long it took."""
    started = time.perf_counter()
    first = datetime.now(UTC) - timedelta(days=7)
    batch: list[CheckResult] = []
    for index in range(results):
        batch.append(
            CheckResult(
                check=f"check-{index % CHECKS}",
                target="web",
                probe="http.get",
                status=Status.OK,
                metrics={"response_time_ms": random.random() * 100, "status_code": 200},  # noqa: S311 - not security
                message="ok",
                duration_ms=12.5,
                at=first + timedelta(seconds=index * 0.6),
            )
        )
        if len(batch) == BATCH:
            store.write_results(batch)
            batch = []
    store.write_results(batch)
    return time.perf_counter() - started


def drop_page_cache(database: Path) -> bool:
    """Ask the kernel to forget cached pages (root only); return whether it did."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return database.exists()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--results", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="upkeep-integrity-"))
    database = directory / "upkeep.db"
    store = Store.open(f"sqlite:///{database}")
    try:
        existing = store.count_results()
        build_s = build(store, args.results - existing) if existing < args.results else 0.0
        count = store.count_results()
        cold = drop_page_cache(database)
        first = store.check_integrity()
        warm = store.check_integrity()
    finally:
        store.close()
    with sqlite3.connect(database) as connection:
        started = time.perf_counter()
        full = connection.execute("PRAGMA integrity_check").fetchall()
        full_s = time.perf_counter() - started
    print(
        json.dumps(
            {
                "results": count,
                "database_mb": round(database.stat().st_size / 1e6, 1),
                "build_s": round(build_s, 1),
                "quick_check_first_s": round(first.seconds, 3),
                "page_cache_dropped": cold,
                "quick_check_warm_s": round(warm.seconds, 3),
                "quick_check_ok": first.ok and warm.ok,
                "integrity_check_s": round(full_s, 3),
                "integrity_check_ok": full == [("ok",)],
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
                "sqlite": sqlite3.sqlite_version,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
