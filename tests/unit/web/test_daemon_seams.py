"""What the API asks of the daemon gets what the schedule gets: the store (heartbeat
checks read their pings from it) and the report maker (``report.send``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.unit.web.api_world import CONFIG, client, world
from upkeep.web.app import DaemonState

HEARTBEAT_ID = "hb-3f9a7c21d0e84b56a1c2"
SEAMS_CONFIG = CONFIG.replace(
    "checks:\n",
    f'  nightly: {{kind: heartbeat, id: "{HEARTBEAT_ID}", period: 1h, grace: 10m}}\n'
    "checks:\n  nightly-job: {target: nightly}\n",
).replace(
    "runbooks:\n",
    "runbooks:\n"
    "  heartbeat-check:\n    steps:\n      - checks: {names: [nightly-job]}\n"
    "  report:\n    steps:\n      - task: report.send\n"
    "        with: {kind: daily, format: md, file: daily.md}\n",
)


async def _run_when_done(state: DaemonState, run_id: int) -> dict[str, Any]:
    api = client(state)
    for _ in range(400):
        run: dict[str, Any] = (await api.get(f"/api/runs/{run_id}")).json()
        if run["status"] in {"succeeded", "failed"}:
            return run
        await asyncio.sleep(0.02)
    raise AssertionError(f"run {run_id} is still {run['status']}")


async def test_a_heartbeat_check_run_through_the_api_reads_its_pings(tmp_path: Path) -> None:
    async with world(tmp_path, SEAMS_CONFIG) as seeded:
        api = client(seeded.state)
        assert (await api.post(f"/ping/{HEARTBEAT_ID}")).status_code == 200
        answer = await api.post("/api/checks/nightly-job/run", json={})
        assert answer.status_code == 200, answer.text
        (result,) = answer.json()["results"]
        assert "has none" not in result["message"]
        assert result["status"] == "ok", result


async def test_a_runbook_started_through_the_api_has_the_store_and_reports(
    tmp_path: Path,
) -> None:
    async with world(tmp_path, SEAMS_CONFIG) as seeded:
        api = client(seeded.state)
        assert (await api.post(f"/ping/{HEARTBEAT_ID}")).status_code == 200
        started = await api.post("/api/runbooks/heartbeat-check/run", json={})
        assert started.status_code == 202, started.text
        checked = await _run_when_done(seeded.state, started.json()["run_id"])
        assert checked["status"] == "succeeded", checked
        reported = await api.post("/api/runbooks/report/run", json={})
        assert reported.status_code == 202, reported.text
        run = await _run_when_done(seeded.state, reported.json()["run_id"])
        assert run["status"] == "succeeded", run
        assert (tmp_path / "daily.md").read_text().strip()
