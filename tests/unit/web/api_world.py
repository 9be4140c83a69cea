"""A daemon's state for the API tests: a real SQLite store seeded with a check's results,
a firing alert, a waiting run, a silence and a window, and the daemon's own functions
for running checks and runbooks (``upkeep.serve.daemon.Daemon``, without its server)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from starlette.types import Receive, Scope, Send

from tests.helpers import load_text
from upkeep.alerting.manager import AlertManager
from upkeep.core.access import Principal, Role
from upkeep.core.results import CheckResult
from upkeep.core.status import Status
from upkeep.io.http import HttpClient
from upkeep.serve.daemon import Daemon
from upkeep.store.runs import RunStatus
from upkeep.web.app import DaemonState, create_app
from upkeep.web.guard import PRINCIPAL_KEY

TOKEN = "t0ken-for-the-api-7f3a"
CONFIG = """\
engine: {api_tokens: {ops: "${API_TOKEN}"}}
targets:
  api: {kind: tcp, host: 127.0.0.1, port: 1, labels: {env: prod}}
  cache: {kind: tcp, host: 127.0.0.1, port: 1, labels: {env: test}}
checks:
  api-up: {target: api, severity: P1, every: 5m}
  cache-up: {target: cache, severity: P3, enabled: false}
channels:
  ops: "json://127.0.0.1:9/hook"
routes:
  - notify: [ops]
windows:
  nightly: {schedule: "0 2 * * *", duration: 1h}
runbooks:
  deploy:
    schedule: "0 3 * * *"
    steps:
      - approval: Ship it?
  tidy:
    steps:
      - manual: Look at the disk
  fenced:
    window: nightly
    steps:
      - manual: Only at night
"""


@dataclass
class World:
    """The state, the daemon behind it, and the ids of the seeded records."""

    state: DaemonState
    daemon: Daemon
    http: HttpClient
    alert_id: int
    run_id: int
    silence_id: int
    window_id: int


def failing(check: str, target: str, at: datetime, labels: dict[str, str]) -> CheckResult:
    """Return a critical result of ``check``."""
    return CheckResult(
        check, target, "tcp.connect", Status.CRITICAL, {}, "refused", 1.0, at, labels=labels
    )


def build_world(tmp_path: Path, config: str = CONFIG) -> World:
    """Return a seeded world whose daemon runs checks and runbooks as ``upkeep serve``'s
    leader does (its HTTP client opens its session in the loop that first uses it)."""
    loaded = load_text(tmp_path, config, {"API_TOKEN": TOKEN})
    store = loaded.config.store.open(loaded.base_dir)
    now = datetime.now(UTC)
    store.write_results([failing("api-up", "api", now - timedelta(minutes=5), {"env": "prod"})])
    AlertManager(loaded, store).process(
        [failing("api-up", "api", now - timedelta(minutes=1), {"env": "prod"})]
    )
    alert_id = store.alerts.list_alerts(open_only=True, limit=1)[0].id
    run_id = store.runs.start_run(
        runbook="deploy", trigger="cli", owner="host:1:abc", steps=[("Ship it?", "approval")]
    )
    assert run_id is not None
    store.runs.update_step(run_id, 0, status="waiting")
    store.runs.set_run_status(run_id, RunStatus.WAITING)
    silence = store.alerts.add_silence(
        {"check": "cache-*"},
        starts_at=now,
        ends_at=now + timedelta(hours=1),
        author="api:ops",
        comment="cache work",
    )
    window = store.runs.add_window(
        "patching", now + timedelta(hours=1), now + timedelta(hours=2), created_by="api:ops"
    )
    daemon = Daemon(loaded)
    daemon._store = store
    daemon._new_pipeline(store)
    state = DaemonState(
        instance_id=daemon.instance_id,
        loaded=loaded,
        store=store,
        metrics=daemon.metrics,
        role="leader",
        run_checks_now=daemon._run_checks_now,
        record_results=daemon._record_results,
    )
    daemon._state = state
    http = HttpClient()
    state.start_runbook = daemon._runbook_starter(http)
    return World(state, daemon, http, alert_id, run_id, silence.id, window.id)


async def close_world(seeded: World) -> None:
    """Cancel the runs the world's daemon started, close its client, pipeline and store."""
    daemon = seeded.daemon
    tasks = list(daemon._running_runbooks.values())
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await seeded.http.close()
    if daemon._pipeline is not None:
        daemon._pipeline.close()
    seeded.state.store.close()


@contextlib.asynccontextmanager
async def world(tmp_path: Path, config: str = CONFIG) -> AsyncIterator[World]:
    """Yield a seeded world (``build_world``); close it all afterwards."""
    seeded = build_world(tmp_path, config)
    try:
        yield seeded
    finally:
        await close_world(seeded)


def client(state: DaemonState, token: str | None = TOKEN) -> httpx.AsyncClient:
    """Return a client of the whole app (guard included) sending ``token``."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(state)),
        base_url="http://127.0.0.1:9464",
        headers=headers,
    )


def client_as(state: DaemonState, role: Role) -> httpx.AsyncClient:
    """Return a client acting as a user of ``role``: the guard is replaced by what it does
    for a session (the request's ``Principal`` set), so each route's scope is what decides."""
    app = create_app(state)
    app.user_middleware = []
    who = Principal.user("vera", role)

    async def as_user(scope: Scope, receive: Receive, send: Send) -> None:
        scope[PRINCIPAL_KEY] = who
        await app(scope, receive, send)

    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=as_user), base_url="http://127.0.0.1:9464"
    )


JSON = {"Content-Type": "application/json"}
