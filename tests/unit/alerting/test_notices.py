"""Run routes and window announcements: what they match, what their notices say, their keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import load_text
from upkeep.alerting.notices import (
    RunFacts,
    compose_run,
    compose_window,
    matching_run_routes,
    notice_key,
)
from upkeep.alerting.routing import AlertFacts, matching_routes, route_digest
from upkeep.alerting.windows import Opening, WindowCalendar
from upkeep.config.errors import ConfigError
from upkeep.config.models import RouteConfig, RunbookConfig, UpkeepConfig, WindowConfig
from upkeep.store.runs import RunRecord, RunStatus, StepRecord, StepStatus

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def route(**fields: Any) -> RouteConfig:
    return RouteConfig.model_validate({"notify": ["ops"], **fields})


def test_alert_routes_and_run_routes_never_take_each_others_notices() -> None:
    routes = [route(), route(match={"runs": None}), route(match={"runs": {"events": ["failed"]}})]
    alert = AlertFacts("web-up", "web", "P1", "critical")
    assert matching_routes(routes, alert) == [0]
    # ``runs:`` written empty means every runbook's default events, not alerts.
    assert matching_run_routes(routes, RunFacts("deploy", "waiting")) == [1]
    assert matching_run_routes(routes, RunFacts("deploy", "succeeded")) == []


def test_run_routes_match_runbooks_labels_and_events_in_order() -> None:
    routes = [
        route(
            match={"runs": {"runbooks": ["deploy"], "events": ["waiting"]}}, **{"continue": True}
        ),
        route(match={"runs": {"labels": {"team": "web"}}}),
        route(match={"runs": {}}),
    ]
    assert matching_run_routes(routes, RunFacts("deploy", "waiting", {"team": "web"})) == [0, 1]
    assert matching_run_routes(routes, RunFacts("deploy", "failed", {"team": "db"})) == [2]
    assert matching_run_routes(routes, RunFacts("other", "missed", {"team": "web"})) == [1]


def test_a_route_matching_alerts_and_runs_is_refused_with_where(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_text(
            tmp_path,
            """
channels: {ops: "json://127.0.0.1:9/"}
runbooks:
  deploy: {steps: [{manual: go}]}
routes:
  - match: {severity: P1, runs: {runbooks: [deploy, nope], events: [exploded]}}
    notify: [ops]
""",
        )
    messages = [(issue.path, issue.message) for issue in caught.value.issues]
    assert any("alerts (severity, labels, checks) or runs" in message for _, message in messages)
    assert any("expected one of failed, interrupted" in message for _, message in messages)
    assert any("no runbook named 'nope'" in message for _, message in messages)


def test_an_alert_routes_digest_is_unchanged_and_a_run_route_has_its_own() -> None:
    alert = route(match={"severity": ["P1"]})
    # Pinned: a route written before run routes existed keeps its id, hence its state.
    assert route_digest(alert) == route_digest(route(match={"severity": "P1"}))
    assert route_digest(route(match={"runs": {}})) != route_digest(route())
    assert route_digest(route(match={"runs": {"events": ["failed"]}})) != route_digest(
        route(match={"runs": {"events": ["waiting"]}})
    )


def _run(**fields: Any) -> RunRecord:
    values: dict[str, Any] = {
        "id": 12,
        "runbook": "deploy",
        "trigger": "schedule",
        "triggered_by": None,
        "status": RunStatus.WAITING,
        "dry_run": False,
        "scheduled_for": None,
        "started_at": T0,
        "finished_at": None,
        "owner": "host:1",
        "message": "",
        "detail": {},
        **fields,
    }
    return RunRecord(**values)


def _step(position: int, name: str, kind: str, status: StepStatus) -> StepRecord:
    return StepRecord(position, name, kind, status, T0, None, 1, "", {})


def test_a_waiting_approval_says_how_to_approve_and_links_the_runs_page() -> None:
    runbook = RunbookConfig.model_validate(
        {"steps": [{"manual": "drain"}, {"approval": "Restart the database?", "timeout": "2h"}]}
    )
    step = _step(1, "confirm", "approval", StepStatus.WAITING)
    title, body, level = compose_run(
        _run(steps=[step]),
        RunFacts("deploy", "waiting"),
        step,
        runbook,
        kind="approval",
        zone=BERLIN,
        public_url="https://upkeep.example.org/",
    )
    assert title == "APPROVAL NEEDED run #12 of deploy: step 2 confirm"
    assert "Restart the database?" in body
    assert "approve: upkeep approve 12 --step 2" in body
    assert "reject:  upkeep approve 12 --step 2 --reject" in body
    assert "it expires 2026-11-23 15:00 CET undecided" in body
    assert body.endswith("run #12 · https://upkeep.example.org/runs/12")
    assert level == "warning"
    _, without_url, _ = compose_run(
        _run(steps=[step]),
        RunFacts("deploy", "waiting"),
        step,
        None,
        kind="escalation",
        zone=BERLIN,
        public_url=None,
        detail="undecided for 30m",
    )
    assert "https://" not in without_url and without_url.endswith("run #12")


def test_a_failed_run_names_its_failed_steps_and_a_missed_one_its_firing() -> None:
    failed = _run(
        status=RunStatus.FAILED,
        finished_at=T0 + timedelta(minutes=3),
        message="step 2 failed",
        steps=[
            _step(0, "backup", "task", StepStatus.OK),
            StepRecord(
                1, "migrate", "command", StepStatus.FAILED, T0, None, 1,
                "applying 0042\nERROR: relation \"users\" is locked\n\n", {"exit_code": 3},
            ),
            StepRecord(2, "smoke", "watch", StepStatus.FAILED, T0, None, 1, "x" * 300, {}),
        ],
    )  # fmt: skip
    title, body, level = compose_run(
        failed,
        RunFacts("deploy", "failed", {"team": "web"}),
        None,
        None,
        kind="run",
        zone=BERLIN,
        public_url=None,
    )
    assert title == "FAILED run #12 of deploy after 3m"
    assert 'step 2 migrate: failed (exit 3; ERROR: relation "users" is locked)' in body
    assert f"step 3 smoke: failed ({'x' * 199}…)" in body and "backup" not in body
    assert "labels: team=web" in body and level == "failure"
    missed = _run(status=RunStatus.MISSED, scheduled_for=T0, message="still running")
    title, body, _ = compose_run(
        missed,
        RunFacts("deploy", "missed"),
        None,
        None,
        kind="run",
        zone=BERLIN,
        public_url=None,
    )
    assert title == "MISSED deploy: the firing of 2026-11-23 13:00 CET"
    assert "still running" in body


def test_a_window_announcement_says_when_in_its_zone_and_what_it_mutes() -> None:
    window = WindowConfig.model_validate(
        {
            "schedule": "0 3 * * *",
            "duration": "2h",
            "description": "Kernel updates",
            "mute": {"checks": ["web-up"], "severity": ["P3", "P4"]},
        }
    )
    opening = Opening("nightly", T0, T0 + timedelta(hours=2))
    title, body, level = compose_window(
        "nightly",
        window,
        opening,
        "before",
        zone=BERLIN,
        runbooks=["patch"],
        before=timedelta(hours=1),
    )
    assert title == "MAINTENANCE in 1h: nightly (2026-11-23 13:00 CET to 2026-11-23 15:00 CET)"
    assert "Kernel updates" in body
    assert "mutes alerts of checks web-up; severity P3, P4" in body
    assert "runbooks that run in it: patch" in body and level == "info"
    quiet = WindowConfig.model_validate({"start": "2026-11-23T12:00:00Z", "duration": "1h"})
    _, body, level = compose_window(
        "once", quiet, opening, "closed", zone=ZoneInfo("UTC"), runbooks=[]
    )
    assert "mutes nothing (runbooks may run in it)" in body and level == "success"


def test_closed_within_finds_the_latest_opening_that_ended_in_the_span() -> None:
    config = UpkeepConfig.model_validate(
        {
            "windows": {
                "hourly": {"schedule": "0 * * * *", "duration": "10m"},
                "once": {"start": "2026-11-23T11:00:00Z", "duration": "30m"},
            }
        }
    )
    calendar = WindowCalendar(config)
    found = calendar.closed_within("hourly", T0 - timedelta(hours=3), T0 + timedelta(minutes=5))
    assert found == Opening("hourly", T0 - timedelta(hours=1), T0 - timedelta(minutes=50))
    assert calendar.closed_within("hourly", T0 - timedelta(minutes=40), T0) is None
    assert calendar.closed_within("once", T0 - timedelta(hours=1), T0) == Opening(
        "once", T0 - timedelta(hours=1), T0 - timedelta(minutes=30)
    )
    assert calendar.closed_within("once", T0 - timedelta(minutes=20), T0) is None


def test_an_announce_before_must_be_longer_than_zero() -> None:
    with pytest.raises(ValueError, match="before must be longer than 0s"):
        WindowConfig.model_validate(
            {"schedule": "@daily", "duration": "1h", "announce": {"notify": ["a"], "before": "0s"}}
        )


def test_notice_keys_fit_the_outbox_and_stay_stable() -> None:
    assert notice_key("run7-failed", "abc", "ops") == "run7-failed-abc-ops"
    long = notice_key("window", "w" * 200, "20261123T120000Z", "opened", "ops")
    assert len(long) <= 128 and long.startswith("window-")
    assert long == notice_key("window", "w" * 200, "20261123T120000Z", "opened", "ops")
    assert long != notice_key("window", "w" * 200, "20261123T120000Z", "closed", "ops")


def test_a_waiting_approval_of_the_rollback_or_finally_quotes_its_own_question() -> None:
    # Step positions count the whole flow: the rollback's approval is position 1 here.
    runbook = RunbookConfig.model_validate(
        {
            "steps": [{"manual": "drain"}],
            "on_failure": [{"approval": "Restore last night's backup?", "timeout": "3h"}],
            "finally": [{"approval": "Reopen the shop?", "timeout": "30m"}],
        }
    )
    for position, question, expires in (
        (1, "Restore last night's backup?", "2026-11-23 16:00 CET"),
        (2, "Reopen the shop?", "2026-11-23 13:30 CET"),
    ):
        step = _step(position, "ask", "approval", StepStatus.WAITING)
        _, body, _ = compose_run(
            _run(steps=[step]),
            RunFacts("deploy", "waiting"),
            step,
            runbook,
            kind="approval",
            zone=BERLIN,
            public_url=None,
        )
        assert f"({step.name}): {question}" in body
        assert f"it expires {expires} undecided" in body


def test_an_approval_without_its_own_timeout_says_the_deadline_the_executor_saved() -> None:
    # The default timeout (or a resumed step's first deadline) is in the step's detail.
    runbook = RunbookConfig.model_validate({"steps": [{"approval": "Go ahead?"}]})
    saved = StepRecord(
        0,
        "ask",
        "approval",
        StepStatus.WAITING,
        T0,
        None,
        1,
        "",
        {"until": "2026-11-23T12:00:00+00:00"},
    )
    bare = _step(0, "ask", "approval", StepStatus.WAITING)
    bodies = [
        compose_run(
            _run(steps=[step]),
            RunFacts("deploy", "waiting"),
            step,
            runbook,
            kind="approval",
            zone=BERLIN,
            public_url=None,
        )[1]
        for step in (saved, bare)
    ]
    assert "it expires 2026-11-23 13:00 CET undecided" in bodies[0]
    assert "expires" not in bodies[1]
