"""The dashboard's pages over a real SQLite store: what they show, and that the figures
are those ``upkeep stats`` computes."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

from tests.unit.web.ui.conftest import NOW, SECRET, Seeded, result
from upkeep.alerting.manager import AlertManager
from upkeep.alerting.stats import period_stats
from upkeep.core.status import Status
from upkeep.reports.views import UPTIME_PERIODS, percent_text, response_targets
from upkeep.store.outbox import OutboxStatus


def row_of(page: str, check: str) -> str:
    """Given an overview page, return the table row of one check."""
    match = re.search(
        rf'<tr class="r-\w+"><th><a href="/checks/{re.escape(check)}">.*?\n', page, re.DOTALL
    )
    assert match is not None, f"no row for {check}"
    return match.group()


def cells(row: str) -> list[str]:
    """Given a row (whose cells' end tags are left out), return the text of its cells."""
    return [
        html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
        for cell in re.split(r"<td[^>]*>", row)[1:]
    ]


def uptime(row: str) -> list[str]:
    """Given a row, return its uptime figures (its last three cells)."""
    return cells(row)[-3:]


def strip(row: str) -> str:
    """Given a row, return its strip's glyphs (empty for a uniform one) and summary."""
    found = re.search(r'<td class="sp[^"]*"[^>]*>([^<]*)', row)
    assert found is not None
    return found.group(1)


def shown_checks(page: str) -> list[str]:
    """Given an overview page, return the checks it lists, in order."""
    return re.findall(r'<tr class="r-\w+"><th><a href="/checks/[^"]+">([^<]+)</a>', page)


def group_headings(page: str) -> list[str]:
    """Given an overview page, return its groups' headings as text."""
    return [
        " ".join(html.unescape(re.sub(r"<[^>]+>", " ", heading)).split())
        for heading in re.findall(r"<h2 id=\"g\d+\">(.*?)</h2>", page, re.DOTALL)
    ]


def test_every_page_but_the_public_ones_needs_the_read_scope(seeded: Seeded) -> None:
    from fastapi.routing import APIRoute

    from tests.unit.web.test_scopes import _scopes_of
    from upkeep.core.access import Scope
    from upkeep.web.app import create_app
    from upkeep.web.guard import ACCOUNT_PATHS, PING_PREFIX, is_open_path

    def walk(routes: list[Any]) -> list[APIRoute]:
        # FastAPI keeps an included router whole (its routes are not copied into the app's).
        found: list[APIRoute] = []
        for route in routes:
            if isinstance(route, APIRoute):
                found.append(route)
            included = getattr(route, "original_router", None)
            if included is not None:
                found.extend(walk(list(included.routes)))
        return found

    pages = [
        route
        for route in walk(list(create_app(seeded.state).routes))
        if not route.path.startswith(("/api/", "/healthz", "/metrics"))
    ]
    paths = {route.path for route in pages}
    assert {"/", "/checks/{name:path}", "/alerts", "/alerts/{alert_id}", "/runs"} <= paths
    assert {"/runs/{run_id}", "/runbooks", "/backups", "/outbox", "/ui/live"} <= paths
    for route in pages:
        # What the guard lets through without a credential needs no scope; every other
        # page needs the read scope.
        anyone = (
            route.path in ACCOUNT_PATHS
            or is_open_path(route.path)
            or route.path.startswith(PING_PREFIX)
        )
        expected = [] if anyone else [Scope.READ]
        assert _scopes_of(route) == expected, route.path


async def test_every_page_needs_a_credential_but_static_files_do_not(seeded: Seeded) -> None:
    async with seeded.client(token=None) as anonymous:
        for path in ("/", "/checks/api-eu", "/alerts", "/runs", "/backups", "/ui/live"):
            assert (await anonymous.get(path)).status_code == 401, path
        style = await anonymous.get("/static/dashboard.css")
        assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
        script = await anonymous.get("/static/dashboard.js")
        assert script.status_code == 200 and "fetch(" in script.text
        assert (await anonymous.get("/static/missing.css")).status_code == 404
        assert (await anonymous.get("/static/..%2Fpyproject.toml")).status_code == 404


async def test_the_overview_groups_checks_by_env_with_each_groups_health(seeded: Seeded) -> None:
    async with seeded.client() as client:
        page = (await client.get("/")).text
        # prod: api-eu critical, api-us and db-up ok: 2 of 3 ok now.
        assert group_headings(page) == [
            "env: prod health 66.666% 2 ok 1 critical",
            "env: staging health 100.000% 1 ok",
        ]
        eu = row_of(page, "api-eu")
        assert eu.startswith('<tr class="r-critical">')
        assert cells(eu)[:3] == ["critical", "2h ago", "took 2000 ms"]
        assert "took 2000 ms" in eu
        assert "Health of a group: the share of its checks whose newest result is ok" in page
        # Within a group the worst comes first.
        assert page.index(">api-eu</a>") < page.index(">api-us</a>")
        by_region = (await client.get("/", params={"group": "region"})).text
        assert [heading.split(" health")[0] for heading in group_headings(by_region)] == [
            "region: eu",
            "region: us",
            "region: (none)",
        ]


async def test_the_overview_filters_by_label_status_and_name(seeded: Seeded) -> None:
    async with seeded.client() as client:
        staging = (await client.get("/", params={"label": "env=staging"})).text
        assert ">stage-eu</a>" in staging and ">api-eu</a>" not in staging
        assert "1 of 4 checks shown" in staging
        critical = (await client.get("/", params={"status": "critical"})).text
        assert shown_checks(critical) == ["api-eu"]
        searched = (await client.get("/", params={"q": "US"})).text
        assert shown_checks(searched) == ["api-us"]
        nothing = (await client.get("/", params={"q": "no-such-check"})).text
        assert "No check matches." in nothing
        # A filter it does not know is ignored rather than refused.
        ignored = await client.get("/", params={"status": "purple", "group": "nope"})
        assert ignored.status_code == 200 and "4 of 4 checks shown" in ignored.text


async def test_uptime_figures_equal_period_stats_over_the_same_periods(seeded: Seeded) -> None:
    state = seeded.state
    async with seeded.client() as client:
        page = (await client.get("/")).text
    targets = response_targets(state.loaded)
    for check in ("api-eu", "api-us", "db-up", "stage-eu"):
        shown = uptime(row_of(page, check))
        expected = []
        for _, length in UPTIME_PERIODS:
            figures = period_stats(state.store.engine, NOW - length, NOW, None, targets)
            mine = next(item for item in figures if item.scope == "check" and item.name == check)
            expected.append(percent_text(mine.uptime_percent))
        assert shown == expected, check
    # api-eu was down the last 2 of the 24 hours; stage-eu one hour, 7 hours ago.
    assert uptime(row_of(page, "api-eu"))[0] == "91.666%"
    assert uptime(row_of(page, "stage-eu"))[0] == "95.833%"
    assert uptime(row_of(page, "api-us")) == ["100.000%"] * 3


async def test_the_strip_shows_each_hours_worst_status_in_glyphs_and_words(
    seeded: Seeded,
) -> None:
    async with seeded.client() as client:
        page = (await client.get("/")).text
    eu = row_of(page, "api-eu")
    glyphs = strip(eu)
    # The hour now beginning (12:00) has no result yet.
    assert glyphs == "\u2581" * 21 + "\u2588" * 2 + "\u00b7"
    assert 'aria-label="last 24 h: 21 ok, 2 critical, 1 no data"' in eu
    # db-up was ok every hour; the hour that began at 12:00 has no result yet.
    db = row_of(page, "db-up")
    assert '<td class="sp u-ok p"><i>24 h: all ok, none yet this hour</i>' in db
    stage = strip(row_of(page, "stage-eu"))
    assert stage[15] == "\u2592" and stage.count("\u2581") == 22


async def test_a_new_result_reaches_the_strip_without_reloading_the_day(seeded: Seeded) -> None:
    state = seeded.state
    async with seeded.client() as client:
        await client.get("/")
        seeded.clock.set(NOW + timedelta(minutes=50))
        AlertManager(state.loaded, state.store, clock=seeded.clock).record(
            [result("api-us", Status.WARNING, NOW + timedelta(minutes=45), message="slow")]
        )
        page = (await client.get("/")).text
    glyphs = strip(row_of(page, "api-us"))
    assert glyphs.endswith("\u2584")
    assert "slow" in row_of(page, "api-us")


async def test_a_checks_page_charts_its_metric_with_the_thresholds(seeded: Seeded) -> None:
    async with seeded.client() as client:
        page = (await client.get("/checks/api-eu")).text
        assert "<svg" in page
        # warn: response_time_ms > 500; crit: response_time_ms > 1.5s, which is 1500 ms.
        assert "Thresholds drawn: warn 500.0, crit 1500.0." in page
        assert "warn 500" in page and "crit 1500" in page  # the chart's legend
        assert '<option value="response_time_ms" selected>' in page
        assert "#" + str(seeded.alert_id) in page and "Not acknowledged." in page
        assert "route <code>everything</code> notifies ops" in page
        other = (await client.get("/checks/api-eu", params={"metric": "status_code"})).text
        assert "No simple threshold on this metric." in other
        unknown = (await client.get("/checks/api-eu", params={"metric": "<nope>"})).text
        assert '<option value="response_time_ms" selected>' in unknown
        # A condition combining comparisons with `or` is not one line: nothing is drawn.
        staged = (await client.get("/checks/stage-eu")).text
        assert "No simple threshold on this metric." in staged
        missing = await client.get("/checks/no-such-check")
        assert missing.status_code == 404 and "There is no check no-such-check." in missing.text


async def test_a_checks_page_lists_its_incidents_and_the_silences_covering_it(
    seeded: Seeded,
) -> None:
    state = seeded.state
    state.store.alerts.add_silence(
        {"env": "prod", "role": "api"},
        starts_at=NOW - timedelta(minutes=1),
        ends_at=NOW + timedelta(hours=1),
        author="api:ops",
        comment="deploying",
    )
    async with seeded.client() as client:
        page = (await client.get("/checks/api-eu")).text
        stage = (await client.get("/checks/stage-eu")).text
    silences = page[page.index("Silences covering it") :]
    assert "<code>env=prod</code>" in silences and "deploying" in silences
    assert "Silences covering it</h3>\n<p>None.</p>" in stage
    incidents = stage[stage.index("Incidents (30 days)") :]
    assert "resolved</span>" in incidents and "1h" in incidents


async def test_the_alerts_page_offers_to_acknowledge_and_shows_who_did(seeded: Seeded) -> None:
    async with seeded.client() as client:
        page = (await client.get("/alerts")).text
        assert f'data-url="/api/alerts/{seeded.alert_id}/ack"' in page
        assert 'name="for"' in page and 'name="comment"' in page
        acked = await client.post(
            f"/api/alerts/{seeded.alert_id}/ack", json={"for": "2h", "comment": "on it"}
        )
        assert acked.status_code == 200
        after = (await client.get("/alerts")).text
        assert "api:ops until 2026-12-07 14:00:00 UTC" in after
        detail = (await client.get(f"/alerts/{seeded.alert_id}")).text
        assert "acknowledged</strong> by api:ops" in detail
        assert f'data-url="/api/incidents/{seeded.alert_id}/notes"' in detail
        assert (await client.get("/alerts/999999")).status_code == 404


async def test_the_silence_form_previews_what_the_matchers_select_now(seeded: Seeded) -> None:
    async with seeded.client() as client:
        page = (await client.get("/alerts", params={"matchers": "env=prod"})).text
        assert "Selects now: 1 open alert and 3 configured checks." in page
        fragment = (
            await client.get("/ui/silence-preview", params={"matchers": "check=stage-*"})
        ).text
        assert "Selects now: 0 open alerts and 1 configured check." in fragment
        assert "<code>stage-eu</code>" in fragment
        wrong = (await client.get("/ui/silence-preview", params={"matchers": "nonsense"})).text
        assert "Not a matcher" in wrong and "<code>nonsense</code>" in wrong


async def test_a_waiting_run_offers_approve_and_reject(seeded: Seeded) -> None:
    async with seeded.client() as client:
        runs = (await client.get("/runs")).text
        waiting = runs[runs.index("Waiting for approval") : runs.index("Recent runs")]
        assert f'data-url="/api/runs/{seeded.run_id}/approve"' in waiting
        assert f'data-url="/api/runs/{seeded.run_id}/reject"' in waiting
        assert "Step 1 waits: Ship it?" in waiting
        page = (await client.get(f"/runs/{seeded.run_id}")).text
        assert "/approve" in page and "/reject" in page
        assert 'data-run="' + str(seeded.run_id) + '"' in page
        approved = await client.post(f"/api/runs/{seeded.run_id}/approve", json={})
        assert approved.status_code == 200
        after = (await client.get(f"/runs/{seeded.run_id}")).text
        assert "approved by api:ops" in after
        assert (await client.get("/runs/424242")).status_code == 404


async def test_runbooks_list_next_firings_and_offer_a_dry_run_first(seeded: Seeded) -> None:
    async with seeded.client() as client:
        page = (await client.get("/runbooks")).text
    nightly = page[page.index(">nightly<") :]
    assert "Next: 2026-12-08 03:00:00 UTC; 2026-12-09 03:00:00 UTC" in nightly
    assert "data-body='{\"dry_run\": true}'>Dry run" in page
    # Run now waits for a dry run of the same runbook on the page.
    assert re.search(r'class="act wet" data-url="/api/runbooks/deploy/run"[^>]*disabled', page)


async def test_the_backups_page_shows_newest_backup_and_drill_against_objectives(
    seeded: Seeded,
) -> None:
    async with seeded.client() as client:
        page = (await client.get("/backups")).text
    row = page[page.index('<th scope="row">files</th>') :]
    assert "20261207T020000Z-files" in row and "2.0 KiB" in row
    assert "40s (15m)" in row and "1h (1d)" in row
    assert "passed</span>" in row


async def test_the_outbox_shows_pending_and_dead_notifications_with_reasons(
    seeded: Seeded,
) -> None:
    state = seeded.state
    pending = state.store.outbox.list_rows(status=OutboxStatus.PENDING)
    assert pending, "the firing alert queued a notification"
    (batch, *_) = state.store.outbox.claim_due("host:1:abc", NOW + timedelta(days=1), timedelta(1))
    state.store.outbox.mark_dead(
        batch, NOW, "channel ops is gone", state.loaded.config.alerting.delivery
    )
    async with seeded.client() as client:
        page = (await client.get("/outbox")).text
    dead = page[page.index("<h2>Dead</h2>") : page.index("<h2>Pending</h2>")]
    assert "channel ops is gone" in dead and "dead</span>" in dead
    assert re.search(r"dead</span> [1-9]", page)


async def test_outputs_and_messages_are_escaped_and_masked(seeded: Seeded) -> None:
    state = seeded.state
    hostile = f"<script>alert(1)</script> login failed for {SECRET}"
    seeded.clock.set(NOW + timedelta(minutes=1))
    AlertManager(state.loaded, state.store, clock=seeded.clock).record(
        [result("api-us", Status.CRITICAL, NOW + timedelta(seconds=30), message=hostile)]
    )
    async with seeded.client() as client:
        pages = [
            (await client.get(path)).text
            for path in (
                "/",
                "/checks/api-us",
                "/alerts",
                f"/runs/{seeded.run_id}",
                "/runs",
            )
        ]
        live = (await client.get("/ui/live", params={"after": 1})).text
    for page in pages:
        assert "<script>alert" not in page
        assert SECRET not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; login failed for ***" in pages[0]
    assert "&lt;script&gt;alert(1)&lt;/script&gt; login failed for ***" in pages[1]
    # A step's output: markup escaped, the secret masked.
    assert "waiting &lt;b&gt;now&lt;/b&gt; ***" in pages[3]
    assert SECRET not in live and "login failed for ***" in live
    # Only the package's own scripts run.
    assert all(
        re.findall(r"<script[^>]*>", page) == ['<script src="/static/dashboard.js" defer>']
        for page in pages
    )


async def test_pages_are_accessible_by_structure(seeded: Seeded) -> None:
    async with seeded.client() as client:
        response = await client.get("/")
    page = response.text
    assert '<a class="skip" href="#main">Skip to content</a>' in page
    assert '<main id="main"' in page and 'aria-live="polite"' in page
    assert '<meta name="csrf-token" content="">' in page
    assert '<meta name="viewport"' in page and 'aria-current="page"' in page
    assert '<th scope="col">Status</th>' in page
    assert "script-src 'self'" in response.headers["content-security-policy"]
    async with seeded.client() as client:
        style = (await client.get("/static/dashboard.css")).text
    assert "@media (max-width: 700px)" in style and ":focus-visible" in style
