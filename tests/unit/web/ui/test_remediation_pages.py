"""What operators see of remediation: the alert page lists the runbooks its firing asked
for (started, with the run, or why not), the run links its alert, the API names it."""

from __future__ import annotations

from tests.unit.web.ui.conftest import NOW, Seeded
from upkeep.store.remediations import queue_triggers


async def test_the_alert_page_shows_the_runs_its_firing_started_and_why_not(
    seeded: Seeded,
) -> None:
    store = seeded.state.store
    alert_id = seeded.alert_id
    with store.alerts.transaction() as connection:
        queue_triggers(
            connection,
            alert_id=alert_id,
            check="api-eu",
            fired_at=NOW,
            source_run=None,
            asks=[("deploy", None), ("nightly", "held: muted by silence #4")],
            now=NOW,
        )
    run_id = store.runs.start_run(
        runbook="deploy",
        trigger="alert",
        owner="host:1:abc",
        steps=[("Ship it?", "approval")],
        triggered_by=f"alert:{alert_id} api-eu",
        alert_id=alert_id,
        now=NOW,
    )
    assert run_id is not None
    async with seeded.client() as client:
        page = (await client.get(f"/alerts/{alert_id}")).text
        run_page = (await client.get(f"/runs/{run_id}")).text
        answer = (await client.get(f"/api/runs/{run_id}")).json()
    section = page[page.index("<h2>Remediation</h2>") : page.index("<h2>Notifications</h2>")]
    assert f'<a href="/runs/{run_id}">run #{run_id}</a>' in section
    assert "started</span>" in section
    assert "suppressed</span>" in section and "held: muted by silence #4" in section
    timeline = page[page.index("<h2>Timeline</h2>") :]
    assert (
        f"<strong>remediation</strong> by upkeep: runbook deploy started: run {run_id}" in timeline
    )
    assert "runbook nightly not started: held: muted by silence #4" in timeline
    assert f'(<a href="/alerts/{alert_id}">alert #{alert_id}</a>)' in run_page
    assert (answer["trigger"], answer["triggered_by"], answer["alert_id"]) == (
        "alert",
        f"alert:{alert_id} api-eu",
        alert_id,
    )
