"""The checks API against a real SQLite store and the daemon's own pipeline: the list
with latest statuses, history, running checks now (recorded, alerted on), and what a
silence's matchers would select."""

from __future__ import annotations

from pathlib import Path

from tests.unit.web.api_world import JSON, client, client_as, world
from upkeep.core.access import Role


async def test_checks_are_listed_with_their_latest_status(tmp_path: Path) -> None:
    async with world(tmp_path) as seeded:
        listed = (await client(seeded.state).get("/api/checks")).json()
    by_name = {check["name"]: check for check in listed}
    assert set(by_name) == {"api-up", "cache-up"}
    api = by_name["api-up"]
    assert api["status"] == "critical" and api["message"] == "refused"
    assert api["probe"] == "tcp.connect" and api["every_s"] == 300
    assert api["labels"] == {"env": "prod"} and api["since"] is not None
    assert by_name["cache-up"]["status"] is None and not by_name["cache-up"]["enabled"]


async def test_history_is_upkeep_history_json(tmp_path: Path) -> None:
    async with world(tmp_path) as seeded:
        api = client(seeded.state)
        history = (await api.get("/api/checks/api-up/history", params={"since": "1h"})).json()
        assert [row["status"] for row in history["results"]] == ["critical"]
        assert set(history["results"][0]) == {
            "check",
            "target",
            "status",
            "metrics",
            "message",
            "duration_ms",
            "at",
        }
        assert (await api.get("/api/checks/nope/history")).status_code == 404
        bad_since = await api.get("/api/checks/api-up/history", params={"since": "yesterday"})
        assert bad_since.status_code == 422 and "yesterday" not in bad_since.text
        assert (await api.get("/api/checks/api-up/history", params={"limit": 0})).status_code == 422


async def test_running_checks_now_records_them_and_alerting_sees_them(tmp_path: Path) -> None:
    async with world(tmp_path) as seeded:
        api = client(seeded.state)
        before = len(seeded.state.store.history("api-up"))
        answer = await api.post("/api/checks/run", json={"labels": {"env": "prod"}})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert [result["check"] for result in body["results"]] == ["api-up"]
        assert body["worst"] == "critical" and body["problems"] == []
        assert len(seeded.state.store.history("api-up")) == before + 1
        # The disabled check runs when named, and its failure opens an alert.
        named = await api.post("/api/checks/cache-up/run", headers=JSON)
        assert named.status_code == 200 and named.json()["results"][0]["status"] == "critical"
        assert any(
            record.check == "cache-up"
            for record in seeded.state.store.alerts.list_alerts(open_only=True, limit=10)
        )
        assert (await api.post("/api/checks/nope/run", headers=JSON)).status_code == 404
        unknown = await api.post("/api/checks/run", json={"names": ["nope"]})
        assert unknown.status_code == 404
        none = await api.post("/api/checks/run", json={"labels": {"env": "staging"}})
        assert none.status_code == 409
        assert (await api.post("/api/checks/run", json={"label": {}})).status_code == 422


async def test_without_a_daemon_running_checks_is_a_503_with_the_reason(tmp_path: Path) -> None:
    async with world(tmp_path) as seeded:
        seeded.state.run_checks_now = None
        answer = await client(seeded.state).post("/api/checks/run", headers=JSON)
    assert answer.status_code == 503 and "daemon" in answer.json()["detail"]


async def test_a_viewer_reads_checks_but_may_not_run_them(tmp_path: Path) -> None:
    async with world(tmp_path) as seeded:
        viewer = client_as(seeded.state, Role.VIEWER)
        assert (await viewer.get("/api/checks")).status_code == 200
        refused = await viewer.post("/api/checks/run", headers=JSON)
        assert refused.status_code == 403 and "'run'" in refused.json()["detail"]
        operator = client_as(seeded.state, Role.OPERATOR)
        assert (await operator.post("/api/checks/api-up/run", headers=JSON)).status_code == 200


async def test_a_silence_preview_names_the_alerts_and_checks_it_would_mute(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as seeded:
        api = client(seeded.state)
        preview = (await api.get("/api/silences/preview", params={"matcher": "env=prod"})).json()
        assert [alert["id"] for alert in preview["alerts"]] == [seeded.alert_id]
        assert preview["checks"] == ["api-up"]
        by_pattern = await api.get(
            "/api/silences/preview", params=[("matcher", "check=*-up"), ("matcher", "severity=P3")]
        )
        assert by_pattern.json()["checks"] == ["cache-up"] and by_pattern.json()["alerts"] == []
        assert (await api.get("/api/silences/preview")).status_code == 422
        assert (
            await api.get("/api/silences/preview", params={"matcher": "no-equals"})
        ).status_code == 422
