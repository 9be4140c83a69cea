"""Runbooks, windows, incidents, stats, the outbox and notify test through the API,
against a real SQLite store and the daemon's own runbook starter."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.web.api_world import JSON, TOKEN, client, client_as, world
from upkeep.core.access import Role
from upkeep.web.app import DaemonState


async def _run_when_done(state: DaemonState, run_id: int, statuses: set[str]) -> dict[str, Any]:
    api = client(state)
    for _ in range(200):
        run: dict[str, Any] = (await api.get(f"/api/runs/{run_id}")).json()
        if run["status"] in statuses:
            return run
        await asyncio.sleep(0.02)
    raise AssertionError(f"run {run_id} is still {run['status']}")


async def test_runbooks_are_listed_with_their_next_firings(tmp_path: Path) -> None:
    async with world(tmp_path) as seeded:
        listed = (await client(seeded.state).get("/api/runbooks", params={"count": 3})).json()
    by_name = {row["runbook"]: row for row in listed}
    assert by_name["deploy"]["schedule"] == "0 3 * * *"
    assert len(by_name["deploy"]["firings"]) == 3
    assert by_name["deploy"]["next"] == by_name["deploy"]["firings"][0]
    assert by_name["tidy"]["firings"] == [] and by_name["tidy"]["steps"] == ["manual"]


async def test_a_runbook_runs_in_the_leader_as_the_caller(tmp_path: Path) -> None:
    async with world(tmp_path) as seeded:
        api = client(seeded.state)
        started = await api.post("/api/runbooks/tidy/run", json={})
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        run = await _run_when_done(seeded.state, run_id, {"succeeded", "failed"})
        assert run["trigger"] == "api" and run["triggered_by"] == "api:ops"
        assert not run["dry_run"]
        # A dry run records the plan only.
        dry = await api.post("/api/runbooks/deploy/run", json={"dry_run": True})
        assert dry.status_code == 202
        planned = await _run_when_done(seeded.state, dry.json()["run_id"], {"succeeded"})
        assert planned["dry_run"] and planned["steps"][0]["status"] == "planned"


async def test_a_run_is_refused_with_the_reason(tmp_path: Path) -> None:
    async with world(tmp_path) as seeded:
        api = client(seeded.state)
        assert (await api.post("/api/runbooks/nope/run", headers=JSON)).status_code == 404
        closed = await api.post("/api/runbooks/fenced/run", json={})
        assert closed.status_code == 409 and "window nightly" in closed.json()["detail"]
        # A real run waiting for approval: a second is refused while it goes on.
        first = await api.post("/api/runbooks/deploy/run", json={})
        assert first.status_code == 202
        await _run_when_done(seeded.state, first.json()["run_id"], {"waiting"})
        again = await api.post("/api/runbooks/deploy/run", json={})
        assert again.status_code == 409 and "already running" in again.json()["detail"]
        assert (await api.post("/api/runbooks/deploy/run", json={"yes": True})).status_code == 422
        seeded.state.start_runbook = None
        seeded.state.role = "standby"
        standby = await api.post("/api/runbooks/tidy/run", json={"dry_run": True})
        assert standby.status_code == 503 and "standby" in standby.json()["detail"]


async def test_windows_are_added_listed_and_removed(tmp_path: Path) -> None:
    async with world(tmp_path) as seeded:
        api = client(seeded.state)
        added = await api.post(
            "/api/windows",
            json={
                "name": "upgrade",
                "duration": "2h",
                "comment": "kernel",
                "mute_labels": {"env": "prod"},
            },
        )
        assert added.status_code == 201, added.text
        window = added.json()
        assert window["created_by"] == "api:ops"
        listed = (await api.get("/api/windows")).json()
        by_id = {row["id"]: row for row in listed}
        assert by_id[window["id"]]["open_now"] and by_id[window["id"]]["comment"] == "kernel"
        assert by_id[seeded.window_id]["name"] == "patching"
        assert any(row["id"] is None and row["name"] == "nightly" for row in listed)
        for body in (
            {"name": "x", "duration": "0s"},
            {"name": "x", "duration": "2y"},
            {"name": "x", "duration": "1h", "start": "someday"},
            {"name": "../x", "duration": "1h"},
        ):
            assert (await api.post("/api/windows", json=body)).status_code == 422, body
        assert (await api.delete(f"/api/windows/{window['id']}")).json()["removed"]
        assert (await api.delete(f"/api/windows/{window['id']}")).status_code == 404
        viewer = client_as(seeded.state, Role.VIEWER)
        assert (await viewer.delete(f"/api/windows/{seeded.window_id}")).status_code == 403


async def test_incidents_are_listed_shown_and_noted(tmp_path: Path) -> None:
    async with world(tmp_path) as seeded:
        api = client(seeded.state)
        listed = (
            await api.get("/api/incidents", params={"since": "1h", "label": "env=prod"})
        ).json()
        assert [incident["id"] for incident in listed] == [seeded.alert_id]
        assert (await api.get("/api/incidents", params={"label": "env=test"})).json() == []
        noted = await api.post(
            f"/api/incidents/{seeded.alert_id}/notes", json={"text": "restarting the pool"}
        )
        assert noted.status_code == 201 and noted.json()["author"] == "api:ops"
        shown = (await api.get(f"/api/incidents/{seeded.alert_id}")).json()
        notes = [event for event in shown["timeline"] if event["kind"] == "note"]
        assert notes[0]["detail"] == "restarting the pool" and notes[0]["author"] == "api:ops"
        assert (await api.get("/api/incidents/999")).status_code == 404
        missing = await api.post("/api/incidents/999/notes", json={"text": "hello"})
        assert missing.status_code == 404
        assert (
            await api.post(f"/api/incidents/{seeded.alert_id}/notes", json={"text": "  "})
        ).status_code == 422
        viewer = client_as(seeded.state, Role.VIEWER)
        refused = await viewer.post(f"/api/incidents/{seeded.alert_id}/notes", json={"text": "x"})
        assert refused.status_code == 403


async def test_stats_are_upkeep_stats_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from upkeep.cli.incidents import show_stats

    monkeypatch.setenv("API_TOKEN", TOKEN)
    async with world(tmp_path) as seeded:
        answer = await client(seeded.state).get("/api/stats", params={"since": "2h"})
        assert answer.status_code == 200
        api_document = answer.json()
        assert show_stats(seeded.state.loaded.path, "2h", [], json_output=True) == 0
        cli_document = json.loads(capsys.readouterr().out)
        bad = await client(seeded.state).get("/api/stats", params={"since": "2999-01-01"})
        assert bad.status_code == 422
    assert api_document.keys() == cli_document.keys()
    for scope in ("checks", "targets"):
        assert len(api_document[scope]) == len(cli_document[scope]) == 1
        for ours, theirs in zip(api_document[scope], cli_document[scope], strict=True):
            # Both end at their own now: figures measured up to it differ by that much.
            timed = {"observed_s", "downtime_s", "uptime_percent"}
            assert {k: v for k, v in ours.items() if k not in timed} == {
                k: v for k, v in theirs.items() if k not in timed
            }
            assert ours["observed_s"] == pytest.approx(theirs["observed_s"], abs=5)
            assert ours["uptime_percent"] == pytest.approx(theirs["uptime_percent"], abs=1)


async def test_the_outbox_is_upkeep_notify_outbox_json(tmp_path: Path) -> None:
    async with world(tmp_path) as seeded:
        api = client(seeded.state)
        outbox = (await api.get("/api/outbox")).json()
        assert outbox["rows"] and outbox["rows"][0]["check"] == "api-up"
        assert sum(outbox["counts"].values()) == len(outbox["rows"])
        assert (await api.get("/api/outbox", params={"status": "sent"})).json()["rows"] == []
        assert (await api.get("/api/outbox", params={"status": "lost"})).status_code == 422


async def test_notify_test_says_why_a_channel_failed(tmp_path: Path) -> None:
    async with world(tmp_path) as seeded:
        api = client(seeded.state)
        # Port 9 on loopback refuses: the channel's error comes back as a 502.
        failed = await api.post("/api/notify/test", json={"channel": "ops"})
        assert failed.status_code == 502 and failed.json()["detail"].startswith("ops:")
        assert (await api.post("/api/notify/test", json={"channel": "nope"})).status_code == 404
        viewer = client_as(seeded.state, Role.VIEWER)
        assert (await viewer.post("/api/notify/test", json={"channel": "ops"})).status_code == 403
