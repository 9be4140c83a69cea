"""The daemon's HTTP app against a real SQLite store: health, runs, approve/reject, token.

The config names its token the old way (``engine.api_token``): it is the token named
``default``, and what it changes is recorded as made by ``api:default``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import load_text
from upkeep.engine.metrics import DaemonMetrics
from upkeep.store.runs import RunStatus
from upkeep.store.store import Store
from upkeep.web.app import DaemonState, create_app

CONFIG = """\
engine: {api_token: "${API_TOKEN}"}
runbooks:
  deploy:
    steps:
      - approval: Ship it?
"""
TOKEN = "t0ken-for-the-api-7f3a"


@pytest.fixture
def state(tmp_path: Path) -> Iterator[DaemonState]:
    loaded = load_text(tmp_path, CONFIG, {"API_TOKEN": TOKEN})
    store = loaded.config.store.open(loaded.base_dir)
    yield DaemonState(instance_id="host:1:abc", loaded=loaded, store=store, metrics=DaemonMetrics())
    store.close()


def client_for(state: DaemonState, token: str | None = TOKEN) -> httpx.AsyncClient:
    """Return a client of the ASGI app in process (no socket, no starlette TestClient)
    that sends ``token`` as its bearer token, or no credential when it is None."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(state)),
        base_url="http://127.0.0.1:9464",
        headers=headers,
    )


def waiting_run(store: Store) -> int:
    run_id = store.runs.start_run(
        runbook="deploy", trigger="cli", owner="host:1:abc", steps=[("Ship it?", "approval")]
    )
    assert run_id is not None
    store.runs.update_step(run_id, 0, status="waiting")
    store.runs.set_run_status(run_id, RunStatus.WAITING)
    return run_id


async def test_healthz_reports_role_and_counts(state: DaemonState) -> None:
    answer = await client_for(state, token=None).get("/healthz")
    assert answer.status_code == 200
    assert answer.json()["role"] == "standby"
    assert answer.json()["runbooks"] == 1


async def test_metrics_are_prometheus_text(state: DaemonState) -> None:
    answer = await client_for(state, token=None).get("/metrics")
    assert answer.status_code == 200
    assert "upkeep_leader" in answer.text


async def test_approve_needs_the_token_then_records_the_decision(state: DaemonState) -> None:
    run_id = waiting_run(state.store)
    client = client_for(state)
    refused = await client_for(state, token=None).post(
        f"/api/runs/{run_id}/approve", json={"comment": "no"}
    )
    assert refused.status_code == 401
    wrong = await client_for(state, token="nope-nope-nope-nope").post(
        f"/api/runs/{run_id}/approve", json={}
    )
    assert wrong.status_code == 401
    # The body cannot name the actor: the token does.
    claimed = await client.post(f"/api/runs/{run_id}/approve", json={"by": "alice"})
    assert claimed.status_code == 422 and "'by' is not accepted" in claimed.text
    assert state.store.runs.step_decision(run_id, 0) == (None, None)
    answer = await client.post(f"/api/runs/{run_id}/approve", json={"comment": "looks good"})
    assert answer.status_code == 200
    step = answer.json()["steps"][0]
    assert (step["decision"], step["decided_by"]) == ("approved", "api:default")
    assert state.store.runs.step_decision(run_id, 0) == ("approved", "api:default")
    again = await client.post(f"/api/runs/{run_id}/reject", json={})
    assert again.status_code == 409


async def test_reject_and_unknown_runs(state: DaemonState) -> None:
    run_id = waiting_run(state.store)
    client = client_for(state)
    answer = await client.post(f"/api/runs/{run_id}/reject", json={"comment": "not today"})
    assert answer.json()["steps"][0]["decision"] == "rejected"
    assert answer.json()["steps"][0]["decided_by"] == "api:default"
    assert (await client.get("/api/runs/999999")).status_code == 404
    listed = (await client.get("/api/runs")).json()
    assert [run["id"] for run in listed] == [run_id]
    # Reading runs (step output, messages) needs the token too.
    assert (await client_for(state, token=None).get("/api/runs")).status_code == 401
    assert (await client_for(state, token=None).get(f"/api/runs/{run_id}")).status_code == 401
