"""How long a monthly report takes, and how much memory, over 90 days of history for
1,000 checks.

Builds (or reuses, if it already holds the same history) a SQLite store in a directory:
1,000 checks on 50 targets with labels ``env`` and ``role``, one result per check every
``--interval`` (default 15 minutes: 8.6 million results over 90 days) written through
the store's bulk path (``Store.insert_results`` in one transaction per day, as the daemon's
writer batches them), about 2 incidents per check (acknowledged, some missing their
response target), a runbook run every 6 hours (one in ten failed), a backup per day and a
drill per week in the catalog, and tls results for 20 of the checks. Then runs the real
CLI, ``upkeep report monthly`` (the previous calendar month), as a separate process in
every format and as ``--json``, and prints each one's wall time and peak RSS (``wait4``
of that process) as one JSON document.

There is no peer to compare with offline: no other tool reports over upkeep's store.

Usage: .venv/bin/python benchmarks/report.py [--checks 1000] [--days 90] [--interval 15]
[--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select

from upkeep.core.results import CheckResult
from upkeep.core.status import Status
from upkeep.store.backups import BackupEventKind, BackupEventStatus, BackupRecord, BackupStatus
from upkeep.store.runs import RunStatus
from upkeep.store.schema import alerts, check_results
from upkeep.store.store import Store

TARGETS = 50
CONFIG = """\
timezone: Europe/Berlin
targets:
  box: {kind: host}
checks:
  uptime: {target: box, probe: uptime, crit: seconds < 0}
reports:
  uptime_target: 99.9
  group_by: [env, role]
"""


def _result(check: int, at: datetime, chooser: random.Random, tls: bool) -> CheckResult:
    failing = chooser.random() < 0.01
    return CheckResult(
        check=f"check-{check:04d}",
        target=f"target-{check % TARGETS:02d}",
        probe="tls.expiry" if tls else "http.get",
        status=Status.CRITICAL if failing else Status.OK,
        metrics={"days_left": 40 - check % 35, "valid": True}
        if tls
        else {"response_time_ms": chooser.random() * 200, "status_code": 200},
        message="",
        duration_ms=chooser.lognormvariate(3.0 + (check % 7) / 4, 0.5),
        at=at,
        labels={"env": ("prod", "staging", "dev")[check % 3], "role": f"role-{check % 8}"},
    )


def build(store: Store, checks: int, days: int, interval: timedelta, now: datetime) -> float:
    """Seed the history; return how long it took."""
    chooser = random.Random(14)  # noqa: S311 - benchmark data, not secrets
    started = time.perf_counter()
    first = (now - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    per_day = int(timedelta(days=1) / interval)
    for day in range(days):
        day_start = first + timedelta(days=day)
        batch = [
            _result(check, day_start + step * interval, chooser, check < 20)
            for step in range(per_day)
            for check in range(checks)
        ]
        with store.transaction() as connection:
            store.insert_results(connection, batch, [None] * len(batch))
    alert_rows = []
    for check in range(checks):
        for _ in range(2):
            opened = first + timedelta(seconds=chooser.uniform(0, days * 86400 - 7200))
            fired = opened + timedelta(minutes=2)
            acked = fired + timedelta(minutes=chooser.uniform(1, 120))
            alert_rows.append(
                {
                    "check": f"check-{check:04d}",
                    "target": f"target-{check % TARGETS:02d}",
                    "severity": "P2",
                    "labels": {},
                    "state": "resolved",
                    "status": 2,
                    "message": "down",
                    "active": None,
                    "opened_at": opened,
                    "fired_at": fired,
                    "resolved_at": opened + timedelta(minutes=chooser.uniform(5, 90)),
                    "last_result_at": opened,
                    "first_acked_at": acked,
                    "acked_by": "ops",
                    "acked_at": acked,
                }
            )
    with store.engine.begin() as connection:
        connection.execute(insert(alerts), alert_rows)
    for run in range(days * 4):
        started_at = first + timedelta(hours=6 * run)
        run_id = store.runs.start_run(
            runbook=f"runbook-{run % 5}",
            trigger="schedule",
            owner="bench",
            steps=[("step", "command")],
            scheduled_for=started_at,
            now=started_at,
        )
        if run_id is None:
            raise SystemExit("a seeded run was not recorded")
        status = RunStatus.FAILED if run % 10 == 0 else RunStatus.SUCCEEDED
        store.runs.finish_run(run_id, status, now=started_at + timedelta(minutes=3))
    for day in range(days):
        taken = first + timedelta(days=day, hours=2)
        backup_id = taken.strftime("%Y%m%dT%H%M%SZ") + "-bench"
        store.backups.add(
            BackupRecord(
                id=backup_id,
                source="db",
                status=BackupStatus.OK,
                started_at=taken,
                finished_at=taken + timedelta(minutes=5),
                raw_bytes=10**9,
                stored_bytes=2 * 10**8,
            )
        )
        if day % 7 == 0:
            store.backups.add_event(
                kind=BackupEventKind.DRILL,
                source="db",
                backup_id=backup_id,
                status=BackupEventStatus.OK,
                started_at=taken + timedelta(hours=1),
                finished_at=taken + timedelta(hours=1, minutes=9),
                message="passed",
                detail={"rto_s": 540.0, "rpo_s": 3600.0, "rto_objective_s": 900.0},
            )
    return time.perf_counter() - started


def run_report(directory: Path, *arguments: str) -> dict[str, float]:
    """Run ``upkeep report monthly ARGUMENTS`` in its own process; return its wall time
    and peak RSS (its ``wait4``)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "upkeep.cli.main", "report", "monthly", *arguments],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        error = process.stderr.read().decode() if process.stderr else ""
        raise SystemExit(f"upkeep report {' '.join(arguments)} failed: {error}")
    if process.stderr:
        process.stderr.close()
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def main() -> None:
    """Seed (or reuse) the store, run the reports, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--interval", type=int, default=15, help="minutes between results")
    parser.add_argument("--dir", type=Path, default=None)
    options = parser.parse_args()
    directory = options.dir or Path(tempfile.mkdtemp(prefix="upkeep-bench-report-"))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "upkeep.yaml").write_text(CONFIG)
    interval = timedelta(minutes=options.interval)
    expected = options.checks * options.days * int(timedelta(days=1) / interval)
    store = Store.open("sqlite:///.upkeep/upkeep.db", directory)
    try:
        with store.engine.connect() as connection:
            present = connection.execute(select(func.count()).select_from(check_results)).scalar()
        seed_s = None
        if present == 0:
            seed_s = round(
                build(store, options.checks, options.days, interval, datetime.now(UTC)), 1
            )
        elif present != expected:
            raise SystemExit(
                f"{directory} holds another history ({present} results); use a new --dir"
            )
        results = store.count_results()
    finally:
        store.close()
    database = directory / ".upkeep" / "upkeep.db"
    figures = {
        "checks": options.checks,
        "days": options.days,
        "interval_min": options.interval,
        "results": results,
        "store_mb": round(database.stat().st_size / 2**20, 1),
        "seed_s": seed_s,
        "reports": {
            "json": run_report(directory, "--json"),
            "html": run_report(directory, "--format", "html", "--out", "report.html"),
            "md": run_report(directory, "--format", "md", "--out", "report.md"),
            "pdf": run_report(directory, "--format", "pdf", "--out", "report.pdf"),
        },
        "peer": "none offline: no other tool reports over upkeep's store",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
