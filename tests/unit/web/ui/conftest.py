"""A daemon's state over a real SQLite store seeded with checks, results, alerts, a
waiting run, backups and outbox rows: what the dashboard's tests read."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.helpers import load_text
from upkeep.alerting.manager import AlertManager
from upkeep.core.clock import FakeClock
from upkeep.core.results import CheckResult
from upkeep.core.status import Status
from upkeep.engine.metrics import DaemonMetrics
from upkeep.store.backups import BackupEventKind, BackupEventStatus, BackupRecord, BackupStatus
from upkeep.web.app import DaemonState, create_app

TOKEN = "t0ken-for-the-dashboard-91c2"
SECRET = "hunter2-very-secret-pw"
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)

CONFIG = """\
engine: {api_tokens: {ops: "${API_TOKEN}"}}
targets:
  web-eu: {kind: http, url: "http://127.0.0.1:9/", labels: {region: eu}}
  web-us: {kind: http, url: "http://127.0.0.1:9/", labels: {region: us}}
  db: {kind: postgres, dsn: "postgresql://app:${DB_PASSWORD}@127.0.0.1:9/app"}
checks:
  api-eu:
    target: web-eu
    labels: {env: prod, role: api}
    warn: response_time_ms > 500
    crit: response_time_ms > 1.5s
  api-us: {target: web-us, labels: {env: prod, role: api}}
  stage-eu: {target: web-eu, labels: {env: staging, role: api}, crit: "status_code != 200 or response_time_ms > 9"}
  db-up: {target: db, labels: {env: prod, role: db}}
channels:
  ops: "json://127.0.0.1:9/hook"
routes:
  - name: everything
    notify: [ops]
runbooks:
  deploy:
    description: ship the app
    steps:
      - approval: Ship it?
  nightly:
    schedule: "0 3 * * *"
    steps:
      - manual: look at the logs
backups:
  sources:
    files: {paths: [data], rto: 15m, rpo: 24h}
"""


@dataclass
class Seeded:
    """The seeded state and what the tests look for in it."""

    state: DaemonState
    clock: FakeClock
    alert_id: int
    run_id: int

    def client(self, token: str | None = TOKEN) -> httpx.AsyncClient:
        """Return an in-process client of the whole app sending ``token``."""
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(self.state)),
            base_url="http://127.0.0.1:9464",
            headers=headers,
        )


def result(
    check: str,
    status: Status,
    at: datetime,
    message: str = "fine",
    response_time_ms: float = 120.0,
    labels: dict[str, str] | None = None,
) -> CheckResult:
    """Return a result of one of the seeded checks."""
    targets = {"api-eu": "web-eu", "api-us": "web-us", "stage-eu": "web-eu", "db-up": "db"}
    defaults = {
        "api-eu": {"env": "prod", "role": "api", "region": "eu"},
        "api-us": {"env": "prod", "role": "api", "region": "us"},
        "stage-eu": {"env": "staging", "role": "api", "region": "eu"},
        "db-up": {"env": "prod", "role": "db"},
    }
    probe = "postgres.connect" if check == "db-up" else "http.get"
    metrics: dict[str, float | int | bool | str] = {
        "response_time_ms": response_time_ms,
        "status_code": 200,
    }
    return CheckResult(
        check,
        targets[check],
        probe,
        status,
        metrics,
        message,
        response_time_ms,
        at,
        labels=labels or defaults[check],
    )


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Seeded]:
    (tmp_path / "data").mkdir()
    loaded = load_text(tmp_path, CONFIG, {"API_TOKEN": TOKEN, "DB_PASSWORD": SECRET})
    store = loaded.config.store.open(loaded.base_dir)
    clock = FakeClock(NOW - timedelta(hours=31))
    manager = AlertManager(loaded, store, clock=clock)
    start = NOW - timedelta(hours=30)
    # Half-hourly results over 30 hours; api-eu fails from 10:00 on, stage-eu is unknown
    # for one hour (an incident that resolved), db-up is fine.
    moment = start
    while moment < NOW - timedelta(minutes=1):
        batch = [
            result("api-us", Status.OK, moment, response_time_ms=80.0),
            result("db-up", Status.OK, moment, response_time_ms=3.0),
        ]
        bad_eu = moment >= NOW - timedelta(hours=2)
        batch.append(
            result(
                "api-eu",
                Status.CRITICAL if bad_eu else Status.OK,
                moment,
                message="took 2000 ms" if bad_eu else "fine",
                response_time_ms=2000.0 if bad_eu else 150.0,
            )
        )
        stage_bad = NOW - timedelta(hours=8) <= moment < NOW - timedelta(hours=7)
        batch.append(result("stage-eu", Status.UNKNOWN if stage_bad else Status.OK, moment))
        clock.set(moment)
        manager.record(batch)
        moment += timedelta(minutes=30)
    clock.set(NOW)
    open_alert = next(
        record for record in store.alerts.list_alerts(open_only=True) if record.check == "api-eu"
    )
    run_id = store.runs.start_run(
        runbook="deploy",
        trigger="cli",
        owner="host:1:abc",
        steps=[("Ship it?", "approval")],
        triggered_by="api:ops",
        now=NOW - timedelta(minutes=5),
    )
    assert run_id is not None
    from upkeep.store.runs import RunStatus, StepStatus

    store.runs.update_step(
        run_id, 0, status=StepStatus.WAITING, output=f"waiting <b>now</b> {SECRET}"
    )
    store.runs.set_run_status(run_id, RunStatus.WAITING)
    store.backups.add(
        BackupRecord(
            id="20261207T020000Z-files",
            source="files",
            status=BackupStatus.OK,
            started_at=NOW - timedelta(hours=10),
            finished_at=NOW - timedelta(hours=10) + timedelta(seconds=30),
            raw_bytes=4096,
            stored_bytes=2048,
        )
    )
    store.backups.add_event(
        kind=BackupEventKind.DRILL,
        source="files",
        backup_id="20261207T020000Z-files",
        status=BackupEventStatus.OK,
        started_at=NOW - timedelta(hours=9),
        finished_at=NOW - timedelta(hours=9) + timedelta(seconds=40),
        message="passed",
        detail={
            "rto_s": 40.0,
            "rpo_s": 3600.0,
            "rto_objective_s": 900.0,
            "rpo_objective_s": 86400.0,
        },
    )
    state = DaemonState(
        instance_id="host:1:abc",
        loaded=loaded,
        store=store,
        metrics=DaemonMetrics(),
        clock=clock,
    )
    yield Seeded(state, clock, open_alert.id, run_id)
    store.close()
