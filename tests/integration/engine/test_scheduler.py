"""Scheduler decisions on a real store: window deferral, busy runbooks, catch-up after a stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import load_text
from upkeep.engine.runbooks import RunbookExecutor
from upkeep.engine.runner import CheckRunner
from upkeep.engine.scheduler import MAX_MISSED_RECORDS, Scheduler, _RunbookFiring, runbook_mark
from upkeep.io.http import HttpClient
from upkeep.store.store import Store

CONFIG = """\
timezone: Europe/Berlin
engine: {missed_grace: 10m}
runbooks:
  gated:
    schedule: "* * * * *"
    window: maint
    steps:
      - command: ["true"]
  slow:
    schedule: "* * * * *"
    steps:
      - command: ["sleep", "5"]
  later:
    schedule: "* * * * *"
    window: future
    steps:
      - command: ["true"]
windows:
  maint: {schedule: "0 2 * * SUN", duration: 2h}
  future: {start: "2099-01-01T00:00:00", duration: 1h}
"""


@pytest.fixture
async def scheduler(tmp_path: Path) -> AsyncIterator[Scheduler]:
    loaded = load_text(tmp_path, CONFIG)
    store = Store.open(loaded.config.store, loaded.base_dir)
    http = HttpClient()
    checks = CheckRunner(redactor=loaded.redactor, http=http)
    executor = RunbookExecutor(loaded, store, http=http, checks=checks, owner="test:1:abc")
    scheduler = Scheduler(loaded, store, checks=checks, runbooks=executor, owner="test:1:abc")
    try:
        yield scheduler
    finally:
        await scheduler.drain(timedelta(0))
        await http.close()
        store.close()


def firing(name: str, moment: datetime) -> _RunbookFiring:
    return _RunbookFiring(moment, name, moment)


async def test_a_firing_outside_its_window_is_deferred_to_the_next_opening(
    scheduler: Scheduler,
) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    store = scheduler.store
    deferred_to = await scheduler._dispatch_runbook(firing("later", now))
    assert deferred_to == datetime(2098, 12, 31, 23, 0, tzinfo=UTC)  # 2099-01-01 00:00 CET
    assert store.runs.list_runs(runbook="later") == []
    assert scheduler.stats.runbooks_deferred == 1


async def test_a_one_off_window_lets_the_firing_run_now(scheduler: Scheduler) -> None:
    now = datetime.now(UTC)
    store = scheduler.store
    store.runs.add_window(
        "maint", now - timedelta(minutes=1), now + timedelta(hours=1), created_by="t"
    )
    assert await scheduler._dispatch_runbook(firing("gated", now)) is None
    await asyncio.gather(*scheduler._runbook_tasks.values())
    [run] = store.runs.list_runs(runbook="gated")
    assert (run.status, run.trigger, run.scheduled_for) == ("succeeded", "schedule", now)


async def test_a_firing_while_the_previous_run_still_runs_is_recorded_missed(
    scheduler: Scheduler,
) -> None:
    store = scheduler.store
    first = datetime.now(UTC).replace(microsecond=0)
    await scheduler._dispatch_runbook(firing("slow", first))
    await asyncio.sleep(0.3)
    await scheduler._dispatch_runbook(firing("slow", first + timedelta(minutes=1)))
    statuses = {run.scheduled_for: run.status for run in store.runs.list_runs(runbook="slow")}
    assert statuses[first] == "running"
    assert statuses[first + timedelta(minutes=1)] == "missed"


async def test_catch_up_runs_the_latest_missed_firing_once_and_records_the_rest(
    scheduler: Scheduler,
) -> None:
    store = scheduler.store
    now = datetime.now(UTC).replace(second=30, microsecond=0)
    latest = now.replace(second=0)
    store.runs.set_schedule_mark(runbook_mark("slow"), now - timedelta(minutes=5))
    # A long outage records at most MAX_MISSED_RECORDS firings one by one.
    store.runs.set_schedule_mark(runbook_mark("gated"), now - timedelta(hours=3))
    to_run = await scheduler.catch_up(now)
    assert sorted((item.name, item.scheduled_for) for item in to_run) == [
        ("gated", latest),
        ("slow", latest),
    ]
    scheduled = [run.scheduled_for for run in store.runs.list_runs(runbook="slow")]
    assert None not in scheduled  # a missed firing records the time it was due
    missed = sorted(moment for moment in scheduled if moment is not None)
    assert missed == [latest - timedelta(minutes=minutes) for minutes in (4, 3, 2, 1)]
    assert len(store.runs.list_runs(runbook="gated", limit=1000)) == MAX_MISSED_RECORDS
    # Evaluated up to now: a second start finds nothing new to catch up.
    assert await scheduler.catch_up(now) == []


async def test_a_latest_firing_older_than_the_grace_is_recorded_missed_not_run(
    tmp_path: Path,
) -> None:
    loaded = load_text(
        tmp_path,
        'engine: {missed_grace: 10m}\nrunbooks:\n  nightly:\n    schedule: "0 3 * * *"\n'
        '    steps: [{command: ["true"]}]\n'
        '  windowed:\n    schedule: "0 3 * * *"\n    window: w\n'
        '    steps: [{command: ["true"]}]\n'
        'windows:\n  w: {schedule: "0 2 * * SUN", duration: 2h}\n',
    )
    store = Store.open(loaded.config.store, loaded.base_dir)
    http = HttpClient()
    try:
        checks = CheckRunner(redactor=loaded.redactor, http=http)
        executor = RunbookExecutor(loaded, store, http=http, checks=checks, owner="t:1:a")
        scheduler = Scheduler(loaded, store, checks=checks, runbooks=executor, owner="t:1:a")
        now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
        store.runs.set_schedule_mark(runbook_mark("nightly"), now - timedelta(days=2))
        store.runs.set_schedule_mark(runbook_mark("windowed"), now - timedelta(days=2))
        to_run = await scheduler.catch_up(now)
        runs = store.runs.list_runs(runbook="nightly")
        assert {run.status for run in runs} == {"missed"} and len(runs) == 2
        # A windowed runbook may have been waiting for its window (deferrals live in
        # memory): its latest firing goes back to the window instead of being written off.
        latest = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
        assert [(item.name, item.scheduled_for) for item in to_run] == [("windowed", latest)]
        assert len(store.runs.list_runs(runbook="windowed")) == 1
    finally:
        await http.close()
        store.close()
