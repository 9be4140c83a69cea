"""A seeded history for report tests: a config and a store holding a week of results
(and the week before, for trends), incidents with acknowledgements, runbook runs with an
approval, a backup, a verification and a drill, tls results and an access log.

The period is fixed (``PERIOD_START``..``PERIOD_END``, a Monday to a Monday in UTC), so
tests pass ``--since``/``--until`` and compare with ``upkeep stats`` for the same span.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from tests.integration.alerting.test_stats_store import add_alert, add_check
from upkeep.store.backups import (
    BackupEventKind,
    BackupEventStatus,
    BackupRecord,
    BackupStatus,
)
from upkeep.store.runs import RunStatus, StepStatus
from upkeep.store.schema import check_results, checks
from upkeep.store.store import Store

PERIOD_START = datetime(2026, 11, 23, tzinfo=UTC)
PERIOD_END = datetime(2026, 11, 30, tzinfo=UTC)
SECRET = "s3cr3t-report-token-9f1c"
"""Given to the config as ${REPORT_SECRET}; it reaches a run's message and must never
reach a report."""

CONFIG = """\
timezone: UTC
targets:
  box: {kind: host}
  site: {kind: tls, host: 127.0.0.1, port: 443}
  web-logs: {kind: logs, path: logs, pattern: "*.log"}
checks:
  web: {target: box, probe: uptime, crit: seconds < 0, labels: {env: prod}}
  api: {target: box, probe: uptime, crit: seconds < 0, labels: {env: staging}}
  cert: {target: site, probe: expiry, crit: days_left < 7}
channels:
  ops: "json://127.0.0.1:9/${REPORT_SECRET}"
runbooks:
  nightly:
    steps:
      - name: say
        command: [echo, hi]
alerting:
  response_targets: {P1: 15m, P2: 1h}
reports:
  uptime_target: 99.5
  targets: {"env=prod": 99.9}
  group_by: [env]
"""


@dataclass(frozen=True)
class SeededHistory:
    """Where the seeded config is, and what was seeded."""

    config: Path
    env: dict[str, str]
    incidents: dict[str, int]


def _results(store: Store, check_id: int, start: datetime, end: datetime, *, slow: float) -> None:
    """Insert a result every 10 minutes over [start, end): durations rising with the
    position in the hour times ``slow``; every 50th result critical."""
    rows = []
    moment = start
    index = 0
    while moment < end:
        rows.append(
            {
                "check_id": check_id,
                "at": moment,
                "status": 2 if index % 50 == 0 else 0,
                "duration_ms": slow * (1 + index % 20),
                "message": "",
                "metrics": {},
                "run_id": None,
            }
        )
        moment += timedelta(minutes=10)
        index += 1
    with store.engine.begin() as connection:
        connection.execute(insert(check_results), rows)


def seed_history(directory: Path) -> SeededHistory:
    """Write the config, a store and a log under ``directory``; return where they are."""
    (directory / "upkeep.yaml").write_text(CONFIG)
    logs = directory / "logs"
    logs.mkdir()
    lines = []
    for minute in range(0, 600, 5):
        moment = PERIOD_START + timedelta(days=2, minutes=minute)
        status = 503 if minute % 60 == 0 else 200
        stamp = moment.strftime("%d/%b/%Y:%H:%M:%S +0000")
        lines.append(
            f'127.0.0.1 - - [{stamp}] "GET /api/items/{minute} HTTP/1.1" {status} 12 "-" "t" '
            f"{0.010 + minute / 100000:.3f}\n"
        )
    # A line after the period is not counted.
    after = (PERIOD_END + timedelta(hours=1)).strftime("%d/%b/%Y:%H:%M:%S +0000")
    lines.append(f'127.0.0.1 - - [{after}] "GET /late HTTP/1.1" 500 1 "-" "t" 0.5\n')
    (logs / "access.log").write_text("".join(lines))
    store = Store.open("sqlite:///.upkeep/upkeep.db", directory)
    before = PERIOD_START - timedelta(days=7)
    try:
        web = add_check(store, "web", "box", before, {"env": "prod"})
        api = add_check(store, "api", "box", before, {"env": "staging"})
        for check_id, slow in ((web, 10.0), (api, 3.0)):
            _results(store, check_id, before, PERIOD_START, slow=slow / 2)
            _results(store, check_id, PERIOD_START, PERIOD_END, slow=slow)
        with store.engine.begin() as connection:
            key = connection.execute(
                insert(checks).values(
                    name="cert", target="site", probe="tls.expiry", labels={}, first_seen=before
                )
            ).inserted_primary_key
            assert key is not None
            cert = int(key[0])
            connection.execute(
                insert(check_results).values(
                    check_id=cert,
                    at=PERIOD_END - timedelta(hours=1),
                    status=1,
                    duration_ms=40.0,
                    message="",
                    metrics={"days_left": 12.5, "valid": True},
                )
            )
        opened = PERIOD_START + timedelta(days=1)
        incidents = {
            "web": add_alert(
                store,
                "web",
                opened,
                fired=opened + timedelta(minutes=2),
                resolved=opened + timedelta(hours=1),
                acked=opened + timedelta(minutes=7),
                severity="P1",
                labels={"env": "prod"},
            ),
            "api": add_alert(
                store,
                "api",
                opened + timedelta(days=2),
                fired=opened + timedelta(days=2),
                resolved=opened + timedelta(days=2, minutes=90),
                acked=opened + timedelta(days=2, hours=2),
                severity="P2",
                labels={"env": "staging"},
            ),
        }
        runs = store.runs
        ok_run = runs.start_run(
            runbook="nightly",
            trigger="schedule",
            owner="test",
            steps=[("say", "command"), ("go", "approval")],
            now=PERIOD_START + timedelta(days=1, hours=2),
        )
        assert ok_run is not None
        runs.update_step(ok_run, 1, status=StepStatus.APPROVED, decision="approved")
        runs.finish_run(
            ok_run, RunStatus.SUCCEEDED, now=PERIOD_START + timedelta(days=1, hours=2, minutes=3)
        )
        bad_run = runs.start_run(
            runbook="nightly",
            trigger="schedule",
            owner="test",
            steps=[("say", "command")],
            now=PERIOD_START + timedelta(days=2, hours=2),
        )
        assert bad_run is not None
        runs.finish_run(
            bad_run,
            RunStatus.FAILED,
            message=f"curl https://hooks.example/{SECRET} answered 500 <b>bold</b>",
            now=PERIOD_START + timedelta(days=2, hours=2, minutes=1),
        )
        taken = PERIOD_START + timedelta(days=3)
        store.backups.add(
            BackupRecord(
                id="20261126T000000Z-abcd",
                source="db",
                status=BackupStatus.OK,
                started_at=taken,
                finished_at=taken + timedelta(minutes=2),
                raw_bytes=10_000_000,
                stored_bytes=2_500_000,
            )
        )
        store.backups.add(
            BackupRecord(
                id="20261127T000000Z-beef",
                source="db",
                status=BackupStatus.FAILED,
                started_at=taken + timedelta(days=1),
                finished_at=taken + timedelta(days=1, minutes=1),
                message="pg_dump: connection refused",
            )
        )
        store.backups.add_event(
            kind=BackupEventKind.VERIFY,
            source="db",
            backup_id="20261126T000000Z-abcd",
            status=BackupEventStatus.OK,
            started_at=taken + timedelta(hours=1),
            finished_at=taken + timedelta(hours=1, minutes=1),
            message="ok",
            detail={},
        )
        store.backups.add_event(
            kind=BackupEventKind.DRILL,
            source="db",
            backup_id="20261126T000000Z-abcd",
            status=BackupEventStatus.FAILED,
            started_at=taken + timedelta(hours=2),
            finished_at=taken + timedelta(hours=2, minutes=20),
            message="RTO 20m exceeds the objective of 15m",
            detail={
                "rto_s": 1200.0,
                "rpo_s": 7200.0,
                "rto_objective_s": 900.0,
                "rpo_objective_s": 86400.0,
            },
        )
    finally:
        store.close()
    env = {"REPORT_SECRET": SECRET}
    os.utime(logs / "access.log", (PERIOD_END.timestamp(), PERIOD_END.timestamp()))
    return SeededHistory(directory / "upkeep.yaml", env, incidents)
