"""The alerts API against a real SQLite store: list, show with timeline, ack, silences.

The config names its token ``alice``: what it changes is recorded as made by ``api:alice``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.helpers import load_text
from tests.unit.web.test_app import TOKEN, client_for
from upkeep.alerting.manager import AlertManager
from upkeep.core.results import CheckResult
from upkeep.core.status import Status
from upkeep.engine.metrics import DaemonMetrics
from upkeep.web.app import DaemonState

CONFIG = """\
engine: {api_tokens: {alice: "${API_TOKEN}"}}
targets:
  api: {kind: tcp, host: 127.0.0.1, port: 1, labels: {env: prod}}
checks:
  api-up: {target: api, severity: P1}
channels:
  ops: "json://127.0.0.1:9/hook"
routes:
  - notify: [ops]
"""


@pytest.fixture
def state(tmp_path: Path) -> Iterator[DaemonState]:
    loaded = load_text(tmp_path, CONFIG, {"API_TOKEN": TOKEN})
    store = loaded.config.store.open(loaded.base_dir)
    AlertManager(loaded, store).process(
        [
            CheckResult(
                "api-up",
                "api",
                "tcp.connect",
                Status.CRITICAL,
                {},
                "refused",
                1.0,
                datetime.now(UTC),
                labels={"env": "prod"},
            )
        ]
    )
    yield DaemonState(instance_id="host:1:abc", loaded=loaded, store=store, metrics=DaemonMetrics())
    store.close()


async def test_alerts_are_listed_and_shown_with_their_timeline(state: DaemonState) -> None:
    client = client_for(state)
    listed = (await client.get("/api/alerts")).json()
    assert [(a["check"], a["state"], a["severity"]) for a in listed] == [("api-up", "firing", "P1")]
    shown = (await client.get(f"/api/alerts/{listed[0]['id']}")).json()
    assert [event["kind"] for event in shown["timeline"]] == ["opened", "firing", "notified"]
    # What happened to each notice, per channel: queued here, since nothing delivered it.
    assert [(n["channel"], n["kind"], n["status"]) for n in shown["notifications"]] == [
        ("ops", "firing", "pending")
    ]
    assert (await client.get("/api/alerts/999")).status_code == 404
    anonymous = client_for(state, token=None)
    assert (await anonymous.get("/api/alerts")).status_code == 401
    assert (await anonymous.get(f"/api/alerts/{listed[0]['id']}")).status_code == 401


async def test_ack_needs_the_token_and_records_who_and_until_when(state: DaemonState) -> None:
    client = client_for(state)
    alert_id = (await client.get("/api/alerts")).json()[0]["id"]
    anonymous = client_for(state, token=None)
    assert (await anonymous.post(f"/api/alerts/{alert_id}/ack", json={})).status_code == 401
    bad = await client.post(f"/api/alerts/{alert_id}/ack", json={"for": "soon"})
    assert bad.status_code == 422
    answer = await client.post(
        f"/api/alerts/{alert_id}/ack", json={"for": "2h", "comment": "looking"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["acked_by"] == "api:alice"
    assert answer.json()["ack_expires_at"] is not None
    assert (await client.post("/api/alerts/999/ack", json={})).status_code == 409


async def test_silences_are_added_listed_and_removed(state: DaemonState) -> None:
    client = client_for(state)
    body = {"matchers": {"env": "prod"}, "for": "1h", "comment": "deploy"}
    anonymous = client_for(state, token=None)
    assert (await anonymous.post("/api/silences", json=body)).status_code == 401
    added = await client.post("/api/silences", json=body)
    assert added.status_code == 201, added.text
    listed = (await client.get("/api/silences")).json()
    assert [(s["matchers"], s["author"], s["active"]) for s in listed] == [
        ({"env": "prod"}, "api:alice", True)
    ]
    assert (await anonymous.get("/api/silences")).status_code == 401
    silence_id = added.json()["id"]
    assert (await anonymous.delete(f"/api/silences/{silence_id}")).status_code == 401
    assert (await client.delete(f"/api/silences/{silence_id}")).status_code == 200
    assert (await client.delete(f"/api/silences/{silence_id}")).status_code == 404
    assert (await client.get("/api/silences")).json() == []
    ended = state.store.alerts.silences(include_ended=True)
    assert [(silence.id, silence.removed_by) for silence in ended] == [(silence_id, "api:alice")]


async def test_metrics_show_open_alerts_and_the_outbox(state: DaemonState) -> None:
    text = (await client_for(state, token=None).get("/metrics")).text
    assert 'upkeep_alerts_open{acknowledged="no",severity="P1",state="firing"} 1.0' in text
    assert 'upkeep_outbox_notifications{status="pending"} 1.0' in text
    assert 'upkeep_outbox_notifications{status="dead"} 0.0' in text
