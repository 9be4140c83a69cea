"""The heartbeat probe: states by period and cron schedule, grace, max_runtime, new ones;
its target model and what the loader completes; the probe on a real store and clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tests.helpers import load_text
from upkeep.config.errors import ConfigError
from upkeep.config.schedule import next_cron_firing
from upkeep.core.clock import FakeClock
from upkeep.core.redaction import Redactor
from upkeep.core.status import Status
from upkeep.engine.runner import CheckRunner
from upkeep.io.http import HttpClient
from upkeep.probes.heartbeat import HEARTBEAT_EVERY, HeartbeatTarget, judge_heartbeat
from upkeep.store.pings import Ping, PingKind, PingSummary, heartbeat_digest

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
HEARTBEAT_ID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
NOTHING = PingSummary(None, None, None, None)


def target(**fields: Any) -> HeartbeatTarget:
    return HeartbeatTarget.model_validate({"kind": "heartbeat", "id": HEARTBEAT_ID, **fields})


def ping(number: int, kind: PingKind, ago: timedelta, exit_code: int | None = None) -> Ping:
    return Ping(number, kind, NOW - ago, exit_code)


def minutes(count: float) -> timedelta:
    return timedelta(minutes=count)


# --- the states ---------------------------------------------------------------------------


def test_a_heartbeat_that_never_pinged_is_new_until_its_first_deadline_then_late_then_down() -> (
    None
):
    hourly = target(period="1h", grace="10m")
    new = judge_heartbeat(hourly, NOTHING, NOW - minutes(30), NOW)
    assert (new.state, new.status) == ("new", Status.OK)
    assert new.metrics == {"state": "new", "deadline_in_s": 2400.0}
    late = judge_heartbeat(hourly, NOTHING, NOW - minutes(65), NOW)
    assert (late.state, late.status) == ("late", Status.WARNING)
    assert "5m late, down in 5m" in late.message
    down = judge_heartbeat(hourly, NOTHING, NOW - minutes(75), NOW)
    assert (down.state, down.status) == ("down", Status.CRITICAL)
    assert down.metrics["deadline_in_s"] == -300.0
    assert "no success yet" in down.message and "grace 10m" in down.message


def test_a_success_keeps_it_up_for_a_period_and_the_grace_counts_from_the_expected_time() -> None:
    hourly = target(period="1h", grace="10m")
    started = ping(1, PingKind.START, minutes(20))
    success = ping(2, PingKind.SUCCESS, minutes(10))
    up = judge_heartbeat(
        hourly, PingSummary(started, success, None, started), NOW - minutes(999), NOW
    )
    assert up.state == "up" and up.status is Status.OK
    assert up.metrics == {
        "state": "up",
        "last_ping_age_s": 600.0,
        "last_exit_code": 0,
        "last_duration_s": 600.0,
        "deadline_in_s": 3600.0,
    }
    old = ping(2, PingKind.SUCCESS, minutes(65), exit_code=0)
    assert judge_heartbeat(hourly, PingSummary(None, old, None, None), NOW, NOW).state == "late"
    older = ping(2, PingKind.SUCCESS, minutes(71))
    assert judge_heartbeat(hourly, PingSummary(None, older, None, None), NOW, NOW).state == "down"


def test_a_failure_is_critical_until_the_next_success() -> None:
    daily = target(period="1d")
    success = ping(1, PingKind.SUCCESS, minutes(120))
    failure = ping(2, PingKind.FAIL, minutes(60), exit_code=3)
    failed = judge_heartbeat(daily, PingSummary(None, success, failure, None), NOW, NOW)
    assert (failed.state, failed.status) == ("failed", Status.CRITICAL)
    assert failed.metrics["last_exit_code"] == 3
    assert "failed with exit code 3 1h ago" in failed.message
    mended = ping(3, PingKind.SUCCESS, minutes(1))
    assert judge_heartbeat(daily, PingSummary(None, mended, failure, None), NOW, NOW).state == "up"


def test_max_runtime_bounds_a_started_run_which_holds_off_the_deadline_meanwhile() -> None:
    nightly = target(period="1d", grace="1h", max_runtime="3h")
    success = ping(1, PingKind.SUCCESS, timedelta(days=1, hours=2))  # deadline passed 1 h ago
    running = ping(2, PingKind.START, minutes(150))
    within = judge_heartbeat(nightly, PingSummary(running, success, None, None), NOW, NOW)
    assert (within.state, within.status) == ("started", Status.OK)
    assert within.metrics["running_s"] == 9000.0
    assert "running for 2h 30m (max_runtime 3h)" in within.message
    overran = ping(2, PingKind.START, minutes(181))
    past = judge_heartbeat(nightly, PingSummary(overran, success, None, None), NOW, NOW)
    assert (past.state, past.status) == ("down", Status.CRITICAL)
    assert "not finished within max_runtime 3h" in past.message


def test_without_max_runtime_a_running_job_is_still_judged_by_its_deadline() -> None:
    nightly = target(period="1d", grace="1h")
    success = ping(1, PingKind.SUCCESS, timedelta(hours=23))
    running = ping(2, PingKind.START, minutes(5))
    fine = judge_heartbeat(nightly, PingSummary(running, success, None, None), NOW, NOW)
    assert fine.state == "started" and fine.metrics["running_s"] == 300.0
    stale = ping(1, PingKind.SUCCESS, timedelta(days=1, hours=2))
    late = judge_heartbeat(nightly, PingSummary(running, stale, None, None), NOW, NOW)
    assert late.state == "down"
    # A start after a failure is a new attempt, not the failure still.
    failure = ping(3, PingKind.FAIL, minutes(10))
    retry = ping(4, PingKind.START, minutes(2))
    again = judge_heartbeat(nightly, PingSummary(retry, success, failure, None), NOW, NOW)
    assert again.state == "started"


def test_a_cron_schedule_is_expected_at_its_firings_in_its_zone() -> None:
    # 02:30 in Berlin is 01:30 UTC in December.
    nightly = target(schedule="30 2 * * *", timezone="Europe/Berlin", grace="1h")
    last = ping(1, PingKind.SUCCESS, timedelta(hours=10, minutes=25))  # 01:35 UTC today
    up = judge_heartbeat(nightly, PingSummary(None, last, None, None), NOW, NOW, next_cron_firing)
    assert up.state == "up"
    assert up.metrics["deadline_in_s"] == (timedelta(hours=14, minutes=30)).total_seconds()
    yesterday = ping(1, PingKind.SUCCESS, timedelta(days=1, hours=10, minutes=25))
    at_03_00 = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
    late = judge_heartbeat(
        nightly,
        PingSummary(None, Ping(1, PingKind.SUCCESS, yesterday.received_at), None, None),
        NOW,
        at_03_00,
        next_cron_firing,
    )
    assert late.state == "late"
    down = judge_heartbeat(
        nightly, PingSummary(None, yesterday, None, None), NOW, NOW, next_cron_firing
    )
    assert down.state == "down" and "expected by 2026-12-07T01:30:00+00:00" in down.message
    # A new one waits for its first firing after it was first seen, plus grace.
    seen_at_noon = judge_heartbeat(nightly, NOTHING, NOW, NOW + minutes(1), next_cron_firing)
    assert seen_at_noon.state == "new"


def test_a_schedule_without_the_cron_function_is_a_probe_bug() -> None:
    with pytest.raises(RuntimeError, match="next_firing"):
        judge_heartbeat(target(schedule="@daily"), NOTHING, NOW, NOW)


# --- the model and the loader ---------------------------------------------------------------


def test_the_target_needs_a_long_id_and_exactly_one_of_period_and_schedule() -> None:
    with pytest.raises(ValidationError) as caught:
        HeartbeatTarget.model_validate({"kind": "heartbeat", "id": "too-short"})
    text = str(caught.value)
    assert "pattern" in text and "either period" in text
    with pytest.raises(ValidationError, match="either period"):
        target(period="1h", schedule="@daily")
    with pytest.raises(ValidationError, match="longer than 0s"):
        target(period="0s")
    with pytest.raises(ValidationError, match="unknown timezone"):
        target(schedule="@daily", timezone="Mars/Olympus")


def test_the_loader_checks_the_cron_fills_the_zone_and_runs_heartbeats_every_30s(
    tmp_path: Path,
) -> None:
    config = f"""
timezone: Europe/Berlin
targets:
  nightly: {{kind: heartbeat, id: "{HEARTBEAT_ID}", schedule: "30 2 * * *"}}
  hourly: {{kind: heartbeat, id: "{HEARTBEAT_ID[::-1]}", period: 1h, timezone: UTC}}
checks:
  nightly: {{target: nightly}}
  hourly: {{target: hourly, every: 5m}}
"""
    loaded = load_text(tmp_path, config, {})
    assert loaded.config.targets["nightly"].timezone == "Europe/Berlin"  # type: ignore[attr-defined]
    assert loaded.config.targets["hourly"].timezone == "UTC"  # type: ignore[attr-defined]
    assert loaded.checks["nightly"].every == HEARTBEAT_EVERY
    assert loaded.checks["hourly"].every == timedelta(minutes=5)
    # The id is the ping URL's credential: masked wherever the redactor reaches.
    assert loaded.redactor.redact(f"x {HEARTBEAT_ID}") == "x ***"
    broken = config.replace('"30 2 * * *"', '"61 2 * * *"')
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, broken, {})
    (issue,) = caught.value.issues
    assert issue.path == ("targets", "nightly", "schedule") and "61" in issue.message


# --- the probe on a store -------------------------------------------------------------------


def test_the_probe_reads_the_store_on_the_runner_clock_and_is_unknown_without_a_store(
    tmp_path: Path,
) -> None:
    config = f"""
targets:
  job: {{kind: heartbeat, id: "{HEARTBEAT_ID}", period: 10m, grace: 5m, max_runtime: 1m}}
checks:
  job: {{target: job}}
"""
    loaded = load_text(tmp_path, config, {})
    store = loaded.config.store.open(loaded.base_dir)
    clock = FakeClock(NOW)
    digest = heartbeat_digest(HEARTBEAT_ID)
    check = loaded.checks["job"]

    async def run(with_store: bool) -> Any:
        http = HttpClient()
        try:
            runner = CheckRunner(
                redactor=Redactor(), http=http, clock=clock, store=store if with_store else None
            )
            return await runner.run_one(check)
        finally:
            await http.close()

    try:
        first = asyncio.run(run(True))
        assert (first.status, first.metrics["state"]) == (Status.OK, "new")
        assert store.pings.first_seen(digest, NOW + timedelta(days=9)) == NOW
        clock.set(NOW + minutes(16))
        assert asyncio.run(run(True)).metrics["state"] == "down"
        store.pings.record(digest, PingKind.START, NOW + minutes(16))
        store.pings.record(digest, PingKind.SUCCESS, NOW + minutes(16.5), exit_code=0)
        clock.set(NOW + minutes(17))
        up = asyncio.run(run(True))
        assert up.status is Status.OK and up.metrics["last_duration_s"] == 30.0
        store.pings.record(digest, PingKind.START, NOW + minutes(17))
        clock.set(NOW + minutes(18.5))
        overran = asyncio.run(run(True))
        assert overran.status is Status.CRITICAL and "max_runtime 1m" in overran.message
        unknown = asyncio.run(run(False))
        assert unknown.status is Status.UNKNOWN and "store" in unknown.message
    finally:
        store.close()
