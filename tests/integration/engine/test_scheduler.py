"""The scheduler through its public API on a real store, its time on a ``FakeClock``.

Each test starts ``Scheduler.run`` as the daemon does and moves the clock by hand: checks
fire on their phase grid, results are written per write interval, runbook firings wait for
their window, a busy runbook's firing is recorded missed, and a start catches up on what
was missed while stopped. Commands and probes are real; only the waiting is not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from tests.helpers import load_text
from upkeep.config.loader import LoadedConfig
from upkeep.config.schedule import next_interval_firing
from upkeep.core.clock import FakeClock
from upkeep.core.results import CheckResult
from upkeep.engine.runbooks import RunbookExecutor
from upkeep.engine.runner import CheckRunner
from upkeep.engine.scheduler import MAX_MISSED_RECORDS, Scheduler, runbook_mark
from upkeep.io.http import HttpClient
from upkeep.store.runs import RunRecord
from upkeep.store.store import Store

MONDAY = datetime(2026, 11, 23, 12, 0, 30, tzinfo=UTC)
"""Half a minute into a Monday's minute: the next ``* * * * *`` firing is 30 s away."""
OWNER = "test:1:abc"
Value = TypeVar("Value")


async def eventually(condition: Callable[[], Value], what: str, timeout_s: float = 10.0) -> Value:
    """Wait (in real time: commands and writes are real) until ``condition`` holds."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.01)
    return value


class Schedule:
    """One loaded config's scheduler on a fake clock, as the daemon builds it."""

    def __init__(self, loaded: LoadedConfig, store: Store, clock: FakeClock) -> None:
        self.loaded = loaded
        self.store = store
        self.clock = clock
        self.http = HttpClient()
        self.results: list[tuple[CheckResult, float]] = []
        checks = CheckRunner(redactor=loaded.redactor, http=self.http, clock=clock)
        executor = RunbookExecutor(
            loaded, store, http=self.http, checks=checks, owner=OWNER, clock=clock
        )
        self.scheduler = Scheduler(
            loaded,
            store,
            checks=checks,
            runbooks=executor,
            owner=OWNER,
            on_result=lambda result, lag: self.results.append((result, lag)),
            clock=clock,
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Run the scheduler until each of its loops waits on the clock: the writer, the
        checks (if any is enabled), the runbooks (if any has a schedule, after catching up)."""
        config = self.loaded.config
        loops = 1 + any(check.enabled for check in self.loaded.checks.values())
        loops += any(runbook.schedule for runbook in config.runbooks.values())
        self._task = asyncio.create_task(self.scheduler.run())
        await self.clock.wait_for_sleepers(loops)

    async def stop(self) -> list[str]:
        """Stop scheduling, write what is buffered, cancel what runs; return the runbooks
        that were cancelled."""
        if self._task is None:
            return []
        self.scheduler.stop()
        await self._task
        self._task = None
        return await self.scheduler.drain(timedelta(0))

    def runs(self, runbook: str) -> list[RunRecord]:
        """Return the runbook's runs, oldest firing first."""
        found = self.store.runs.list_runs(runbook=runbook, limit=1000)
        return sorted(found, key=lambda run: (run.scheduled_for or run.started_at, run.id))

    def finished(self, runbook: str) -> list[RunRecord]:
        """Return the runbook's runs that ran to an end (not missed, not running)."""
        return [
            run for run in self.runs(runbook) if run.status not in ("missed", "running", "waiting")
        ]

    def stored_times(self, check: str) -> list[datetime]:
        """Return the times of the check's stored results, oldest first."""
        return sorted(row.at for row in self.store.history(check, limit=10_000))


Start = Callable[..., Awaitable[Schedule]]


@pytest.fixture
async def schedule(tmp_path: Path) -> AsyncIterator[Start]:
    """Start a scheduler on a config at a fake time, with schedule marks written first."""
    started: list[Schedule] = []
    stores: list[Store] = []

    async def start(
        config: str, at: datetime, marks: dict[str, datetime] | None = None
    ) -> Schedule:
        loaded = load_text(tmp_path, config)
        if not stores:
            stores.append(loaded.config.store.open(loaded.base_dir))
        for name, until in (marks or {}).items():
            stores[0].runs.set_schedule_mark(runbook_mark(name), until)
        running = Schedule(loaded, stores[0], FakeClock(at))
        started.append(running)
        await running.start()
        return running

    yield start
    for running in started:
        await running.stop()
        await running.http.close()
    for store in stores:
        store.close()


# --- checks ------------------------------------------------------------------------------------

BEAT = """\
engine: {write_interval: 5s}
targets: {local: {kind: host}}
checks:
  beat: {target: local, probe: uptime, every: 10s}
"""


async def test_a_check_fires_on_its_phase_grid_and_results_are_written_per_interval(
    schedule: Start,
) -> None:
    first = next_interval_firing("beat", timedelta(seconds=10), MONDAY)
    # Start 2.5 s before the first firing: the writer's ticks (every 5 s from the start)
    # then fall between firings.
    running = await schedule(BEAT, first - timedelta(seconds=2.5))
    clock = running.clock

    await clock.advance(2.5)
    await eventually(lambda: running.results, "the first result")
    assert running.stored_times("beat") == []  # buffered until the write interval ends
    await clock.advance(2.5)
    assert running.stored_times("beat") == [first]

    await clock.advance(20)
    await eventually(lambda: len(running.results) == 3, "three results")
    await running.stop()
    grid = [first + timedelta(seconds=10 * period) for period in range(3)]
    assert running.stored_times("beat") == grid
    assert [lag for _, lag in running.results] == [0.0, 0.0, 0.0]
    assert running.scheduler.stats.checks_started == 3
    assert running.scheduler.stats.results_written == 3


async def test_a_result_that_changes_the_status_is_written_at_once(
    schedule: Start, tmp_path: Path
) -> None:
    """Steady results wait for the write interval; a change of status does not (the
    dashboard's "red within 2 s" of issue #14 rests on it)."""
    flag = tmp_path / "down.flag"
    config = f"""\
engine: {{write_interval: 1h}}
targets: {{flagged: {{kind: command, command: [sh, -c, 'test ! -e "$0" || exit 2', "{flag}"]}}}}
checks:
  flagged: {{target: flagged, every: 10s}}
"""
    first = next_interval_firing("flagged", timedelta(seconds=10), MONDAY)
    running = await schedule(config, first - timedelta(seconds=1))
    await running.clock.advance(1)
    await eventually(lambda: len(running.results) == 1, "the first result")
    await running.clock.advance(10)
    await eventually(lambda: len(running.results) == 2, "the second result")
    assert running.stored_times("flagged") == []  # both ok: buffered for the hour
    flag.touch()
    await running.clock.advance(10)
    await eventually(lambda: len(running.stored_times("flagged")) == 3, "the critical result")
    stored = running.store.history("flagged", limit=10)
    assert sorted(row.status.label for row in stored) == ["critical", "ok", "ok"]


async def test_run_now_starts_named_checks_off_their_grid_once_and_only_enabled_ones(
    schedule: Start,
) -> None:
    config = """\
targets:
  local: {kind: host}
  stuck: {kind: command, command: [sleep, "30"]}
checks:
  beat: {target: local, probe: uptime, every: 1h}
  off: {target: local, probe: uptime, every: 1h, enabled: false}
  hung: {target: stuck, every: 1h, timeout: 60s}
"""
    running = await schedule(config, MONDAY)
    scheduler = running.scheduler
    assert scheduler.run_now(["beat", "off", "nonexistent", "hung"]) == 2
    await eventually(lambda: running.results, "the result run now")
    assert [result.check for result, _ in running.results] == ["beat"]
    assert scheduler.run_now(["hung"]) == 0  # still running: not started twice
    assert scheduler.stats.checks_started == 1
    scheduler.stop()
    assert scheduler.run_now(["beat"]) == 0


async def test_a_check_still_running_at_its_next_slot_skips_that_slot(schedule: Start) -> None:
    config = """\
targets: {stuck: {kind: command, command: [sleep, "30"]}}
checks:
  hung: {target: stuck, every: 1s, timeout: 60s}
"""
    running = await schedule(config, MONDAY)
    await running.clock.advance(1)
    assert not running.scheduler.idle  # the first run of `sleep 30` goes on
    await running.clock.advance(3)
    stats = running.scheduler.stats
    assert (stats.checks_skipped_busy, stats.checks_started) == (3, 0)
    await running.stop()
    assert running.scheduler.idle


async def test_after_a_suspend_a_check_runs_once_and_rejoins_its_grid(schedule: Start) -> None:
    first = next_interval_firing("beat", timedelta(seconds=10), MONDAY)
    running = await schedule(BEAT, first - timedelta(seconds=1))
    clock = running.clock
    await clock.advance(1)
    await eventually(lambda: running.results, "the first result")

    resumed = first + timedelta(hours=1, seconds=3)
    await clock.jump(resumed - clock.now())
    await eventually(lambda: len(running.results) == 2, "the result after the suspend")
    await clock.advance(10)
    await eventually(lambda: len(running.results) == 3, "the next result on the grid")
    await running.stop()
    # One late run for the whole hour missed, then the grid again: not 360 runs.
    assert running.stored_times("beat") == [first, resumed, first + timedelta(hours=1, seconds=10)]
    assert running.results[1][1] == pytest.approx(3600 - 10 + 3)
    assert running.scheduler.stats.checks_started == 3


# --- runbooks ----------------------------------------------------------------------------------

WINDOWED = """\
timezone: Europe/Berlin
runbooks:
  gated:
    schedule: "30 1 * * *"
    window: maint
    steps:
      - command: ["true"]
windows:
  maint: {schedule: "0 2 * * SUN", duration: 2h}
"""


async def test_a_firing_outside_its_window_waits_for_the_opening_and_runs_there(
    schedule: Start, caplog: pytest.LogCaptureFixture
) -> None:
    sunday = datetime(2026, 11, 29, 0, 0, tzinfo=UTC)  # 01:00 in Berlin
    running = await schedule(WINDOWED, sunday)
    with caplog.at_level(logging.INFO, logger="upkeep.engine.scheduler"):
        await running.clock.advance(timedelta(minutes=30))  # 01:30 in Berlin: closed
    assert running.scheduler.stats.runbooks_deferred == 1
    assert running.runs("gated") == []
    assert (
        "runbook gated (due 2026-11-29T00:30:00+00:00) deferred to window maint opening at "
        "2026-11-29T01:00:00+00:00"
    ) in caplog.text

    await running.clock.advance(timedelta(minutes=30))  # 02:00 in Berlin: open
    [run] = await eventually(lambda: running.finished("gated"), "the deferred run")
    assert (run.status, run.trigger) == ("succeeded", "schedule")
    # Its identity is the firing; it ran at the opening, on the scheduler's clock.
    assert run.scheduled_for == sunday + timedelta(minutes=30)
    assert run.started_at == sunday + timedelta(hours=1)
    await eventually(lambda: running.scheduler.stats.runbooks_started == 1, "the run counted")


async def test_a_window_that_opens_only_in_2099_defers_each_firing_there(
    schedule: Start, caplog: pytest.LogCaptureFixture
) -> None:
    config = """\
timezone: Europe/Berlin
runbooks:
  later:
    schedule: "* * * * *"
    window: future
    steps:
      - command: ["true"]
windows:
  future: {start: "2099-01-01T00:00:00", duration: 1h}
"""
    running = await schedule(config, MONDAY)
    with caplog.at_level(logging.INFO, logger="upkeep.engine.scheduler"):
        await running.clock.advance(timedelta(seconds=90))
    assert running.scheduler.stats.runbooks_deferred == 2
    assert running.runs("later") == []
    assert caplog.text.count("deferred to window future opening at 2099-01-01T00:00:00+01:00") == 2


async def test_a_one_off_window_lets_the_firing_run_now(schedule: Start) -> None:
    config = WINDOWED.replace('"30 1 * * *"', '"* * * * *"')
    running = await schedule(config, MONDAY)
    running.store.runs.add_window(
        "maint", MONDAY - timedelta(minutes=1), MONDAY + timedelta(hours=1), created_by="t"
    )
    await running.clock.advance(30)
    [run] = await eventually(lambda: running.finished("gated"), "the run in the one-off window")
    firing = MONDAY + timedelta(seconds=30)
    assert (run.status, run.trigger, run.scheduled_for) == ("succeeded", "schedule", firing)
    assert running.scheduler.stats.runbooks_deferred == 0


async def test_a_firing_while_the_previous_run_still_runs_is_recorded_missed(
    schedule: Start,
) -> None:
    config = """\
runbooks:
  slow:
    schedule: "* * * * *"
    steps:
      - command: [sleep, "30"]
"""
    running = await schedule(config, MONDAY)
    first = MONDAY + timedelta(seconds=30)
    await running.clock.advance(30)
    await eventually(lambda: running.runs("slow"), "the first run to start")
    await running.clock.advance(60)
    [busy, skipped] = running.runs("slow")
    assert (busy.scheduled_for, busy.status) == (first, "running")
    assert (skipped.scheduled_for, skipped.status) == (first + timedelta(minutes=1), "missed")
    assert skipped.message == "skipped: the previous run of this runbook was still running"
    assert skipped.started_at == first + timedelta(minutes=1)
    assert running.scheduler.stats.runbooks_missed == 1

    assert await running.stop() == ["slow"]
    assert [run.status for run in running.runs("slow")] == ["cancelled", "missed"]


CATCH_UP = """\
timezone: Europe/Berlin
engine: {missed_grace: 10m}
runbooks:
  gated:
    schedule: "* * * * *"
    window: maint
    steps:
      - command: ["true"]
  quick:
    schedule: "* * * * *"
    steps:
      - command: ["true"]
windows:
  maint: {schedule: "0 2 * * SUN", duration: 2h}
"""


async def test_a_start_runs_the_latest_missed_firing_once_and_records_the_rest(
    schedule: Start,
) -> None:
    latest = MONDAY.replace(second=0)
    marks = {"quick": MONDAY - timedelta(minutes=5), "gated": MONDAY - timedelta(hours=3)}
    running = await schedule(CATCH_UP, MONDAY, marks)

    [ran] = await eventually(lambda: running.finished("quick"), "the caught-up run")
    assert (ran.scheduled_for, ran.status, ran.started_at) == (latest, "succeeded", MONDAY)
    missed = [run.scheduled_for for run in running.runs("quick") if run.status == "missed"]
    assert missed == [latest - timedelta(minutes=minutes) for minutes in (4, 3, 2, 1)]
    # A long outage records at most MAX_MISSED_RECORDS firings one by one; the latest of
    # a windowed runbook goes back to its window (closed on a Monday) rather than being
    # written off.
    assert len(running.runs("gated")) == MAX_MISSED_RECORDS
    assert running.scheduler.stats.runbooks_deferred == 1
    assert running.scheduler.stats.runbooks_missed == 4 + MAX_MISSED_RECORDS

    # Evaluated up to now: a second start at the same moment finds nothing to catch up.
    await running.stop()
    again = await schedule(CATCH_UP, MONDAY)
    assert len(again.runs("quick")) == 5
    assert len(again.runs("gated")) == MAX_MISSED_RECORDS
    assert again.scheduler.stats.runbooks_missed == 0
    assert again.scheduler.stats.runbooks_deferred == 0


async def test_a_latest_firing_older_than_the_grace_is_recorded_missed_not_run(
    schedule: Start, caplog: pytest.LogCaptureFixture
) -> None:
    config = """\
engine: {missed_grace: 10m}
runbooks:
  nightly:
    schedule: "0 3 * * *"
    steps: [{command: ["true"]}]
  windowed:
    schedule: "0 3 * * *"
    window: w
    steps: [{command: ["true"]}]
windows:
  w: {schedule: "0 2 * * SUN", duration: 2h}
"""
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    two_days = now - timedelta(days=2)
    with caplog.at_level(logging.INFO, logger="upkeep.engine.scheduler"):
        running = await schedule(config, now, {"nightly": two_days, "windowed": two_days})
    nightly = running.runs("nightly")
    assert [run.status for run in nightly] == ["missed", "missed"]
    # A windowed runbook may have been waiting for its window (deferrals live in memory):
    # its latest firing goes back to the window instead of being written off.
    latest = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    [older] = running.runs("windowed")
    assert (older.status, older.scheduled_for) == ("missed", latest - timedelta(days=1))
    assert (
        f"runbook windowed (due {latest.isoformat()}) deferred to window w opening at "
        "2026-11-29T02:00:00+00:00"
    ) in caplog.text
