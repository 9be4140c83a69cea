"""The live endpoint: a result written to the store reaches an open page's next poll."""

from __future__ import annotations

import time
from datetime import timedelta

from tests.unit.web.ui.conftest import NOW, Seeded, result
from upkeep.alerting.manager import AlertManager
from upkeep.core.status import Status


async def test_a_check_turning_critical_reaches_the_next_poll(seeded: Seeded) -> None:
    state = seeded.state
    async with seeded.client() as client:
        page = (await client.get("/")).text
        assert '<tr class="r-ok"><th><a href="/checks/api-us">' in page
        start = (await client.get("/ui/live", params={"after": 0})).json()
        assert start["checks"] == [] and start["cursor"] > 0
        quiet = (await client.get("/ui/live", params={"after": start["cursor"]})).json()
        assert quiet == {"cursor": start["cursor"], "more": False, "checks": []}

        seeded.clock.set(NOW + timedelta(seconds=5))
        written = time.monotonic()
        AlertManager(state.loaded, state.store, clock=seeded.clock).record(
            [result("api-us", Status.CRITICAL, NOW + timedelta(seconds=5), message="refused")]
        )
        seen = (await client.get("/ui/live", params={"after": start["cursor"]})).json()
        took = time.monotonic() - written
    # The page polls every second; the poll itself must leave room within the 2 s.
    assert took < 1.0
    assert seen["cursor"] > start["cursor"]
    (change,) = seen["checks"]
    assert change["check"] == "api-us"
    assert change["status"] == "critical" and change["icon"] == "\u2716"
    assert change["message"] == "refused"
    assert change["since"] == (NOW + timedelta(seconds=5)).isoformat()


async def test_the_newest_result_of_each_check_is_sent_once(seeded: Seeded) -> None:
    state = seeded.state
    async with seeded.client() as client:
        cursor = (await client.get("/ui/live", params={"after": 0})).json()["cursor"]
        manager = AlertManager(state.loaded, state.store, clock=seeded.clock)
        for second, status in ((1, Status.WARNING), (2, Status.OK)):
            moment = NOW + timedelta(seconds=second)
            seeded.clock.set(moment)
            manager.record(
                [
                    result("db-up", status, moment, message=f"at {second}"),
                    result("api-us", Status.OK, moment),
                ]
            )
        seen = (await client.get("/ui/live", params={"after": cursor})).json()
        again = (await client.get("/ui/live", params={"after": seen["cursor"]})).json()
    assert {change["check"]: change["message"] for change in seen["checks"]} == {
        "db-up": "at 2",
        "api-us": "fine",
    }
    assert again["checks"] == []


async def test_a_run_page_polls_its_steps(seeded: Seeded) -> None:
    async with seeded.client() as client:
        live = (await client.get("/ui/live", params={"after": 0, "run": seeded.run_id})).json()
        missing = (await client.get("/ui/live", params={"run": 999999})).json()
        refused = await client.get("/ui/live", params={"after": -1})
    assert live["run"]["status"] == "waiting"
    assert live["run"]["steps"][0]["status"] == "waiting"
    assert "***" in live["run"]["steps"][0]["output"]
    assert missing["run"] is None
    assert refused.status_code == 422
