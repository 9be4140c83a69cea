"""``/healthz`` with the store's health from the daemon's guard: ok, degraded (200: the
alarm still works), unhealthy (503: it does not)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest

from tests.helpers import load_text
from upkeep.alerting.guard import StoreHealth
from upkeep.engine.metrics import DaemonMetrics
from upkeep.web.app import DaemonState, create_app


@pytest.fixture
def state(tmp_path: Path) -> Iterator[DaemonState]:
    loaded = load_text(tmp_path, "checks: {}\n")
    store = loaded.config.store.open(loaded.base_dir)
    yield DaemonState(instance_id="host:1:abc", loaded=loaded, store=store, metrics=DaemonMetrics())
    store.close()


async def answer(state: DaemonState, health: StoreHealth) -> httpx.Response:
    state.store_health = lambda: health
    transport = httpx.ASGITransport(app=create_app(state))
    async with httpx.AsyncClient(transport=transport, base_url="http://upkeep.test") as client:
        return await client.get("/healthz")


async def test_a_sound_store_is_ok(state: DaemonState) -> None:
    reply = await answer(state, StoreHealth(writable=True, integrity_ok=True))
    assert reply.status_code == 200
    assert reply.json()["status"] == "ok"
    assert reply.json()["store"]["writable"] is True


async def test_a_store_that_takes_no_results_is_degraded_but_answers_200(
    state: DaemonState,
) -> None:
    since = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    health = StoreHealth(
        writable=False,
        write_problem="database or disk is full",
        failing_since=since,
        spill="/run/upkeep/spill-x.db",
        episode_since=since,
    )
    reply = await answer(state, health)
    assert reply.status_code == 200
    body = reply.json()
    assert body["status"] == "degraded"
    assert body["reasons"] == ["results cannot be stored: database or disk is full"]
    assert body["store"]["spill"] == "/run/upkeep/spill-x.db"
    assert body["store"]["failing_since"] == since.isoformat()


async def test_a_damaged_store_is_degraded(state: DaemonState) -> None:
    health = StoreHealth(writable=True, integrity_ok=False, integrity_problem="page 7: bad")
    body = (await answer(state, health)).json()
    assert body["status"] == "degraded"
    assert body["reasons"] == ["store integrity check failed: page 7: bad"]


async def test_no_alarm_at_all_is_unhealthy(state: DaemonState) -> None:
    health = StoreHealth(writable=False, write_problem="disk full", alarm_ok=False)
    reply = await answer(state, health)
    assert reply.status_code == 503
    assert reply.json()["status"] == "unhealthy"
    assert "alerts cannot be recorded anywhere" in reply.json()["reason"]


def test_the_store_gauges_follow_the_health() -> None:
    metrics = DaemonMetrics()
    metrics.observe_store_health(
        StoreHealth(writable=False, write_problem="full", spill="memory", integrity_seconds=0.5)
    )
    text = generate_latest(metrics.registry).decode()
    assert "upkeep_store_healthy 0.0" in text
    assert "upkeep_store_writable 0.0" in text
    assert "upkeep_store_spilling 1.0" in text
    assert "upkeep_store_integrity_check_seconds 0.5" in text
    metrics.observe_store_health(StoreHealth(writable=True, integrity_ok=True))
    text = generate_latest(metrics.registry).decode()
    assert "upkeep_store_healthy 1.0" in text
