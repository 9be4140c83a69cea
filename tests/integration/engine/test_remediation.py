"""Runbooks that alerts start (``on_alert:``) against a real store, in process: the trigger
recorded with the firing, the guard rails, the loop guard, exactly once with two deciders
and across a crash, and the alert's timeline."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import load_text
from upkeep.alerting.manager import AlertManager
from upkeep.config.loader import LoadedConfig
from upkeep.config.models import StoreConfig
from upkeep.core.clock import FakeClock
from upkeep.core.results import CheckResult
from upkeep.core.status import Status
from upkeep.engine.remediation import Remediator
from upkeep.engine.runbooks import RunbookExecutor
from upkeep.engine.runner import CheckRunner
from upkeep.io.http import HttpClient
from upkeep.store.alerts import AlertRecord, AlertState
from upkeep.store.remediations import TriggerStatus
from upkeep.store.runs import RunRecord, RunStatus, new_instance_id
from upkeep.store.store import Store

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
PY = sys.executable


def config(flag: Path, on_alert: str, steps: str) -> str:
    # Flap detection would hold the test's deliberate flips in one alert; it is off here.
    return f"""\
alerting: {{flapping: {{high: 100, low: 99}}}}
targets:
  flag: {{kind: command, command: [sh, -c, 'test ! -e "$0" || exit 2', "{flag}"]}}
  other: {{kind: command, command: ["true"]}}
checks:
  flagged: {{target: flag, severity: P2}}
  unrelated: {{target: other, severity: P2}}
  spare: {{target: other, severity: P2}}
runbooks:
  mend:
    on_alert: {on_alert}
    steps:
{steps}
"""


@dataclass
class Daemon:
    """What one leader daemon brings to remediation: its runs and its remediator."""

    remediator: Remediator
    running: dict[str, asyncio.Task[None]]


class World:
    """A config, a store, one fake clock, and daemons deciding on that store."""

    def __init__(self, loaded: LoadedConfig, store: Store, http: HttpClient) -> None:
        self.loaded = loaded
        self.store = store
        self.http = http
        self.clock = FakeClock(T0)
        self.manager = AlertManager(loaded, store, clock=self.clock)
        self.checks = CheckRunner(redactor=loaded.redactor, http=http, clock=self.clock)

    def daemon(self) -> Daemon:
        owner = new_instance_id()
        self.store.runs.register_instance(owner, "leader")

        def executor() -> RunbookExecutor:
            return RunbookExecutor(
                self.loaded,
                self.store,
                http=self.http,
                checks=self.checks,
                owner=owner,
                alerts=self.manager,
                clock=self.clock,
                approval_poll_s=0.01,
            )

        running: dict[str, asyncio.Task[None]] = {}
        remediator = Remediator(
            lambda: self.loaded,
            self.store,
            executor=executor,
            running=running,
            clock=self.clock,
        )
        return Daemon(remediator, running)

    async def check(self, name: str = "flagged") -> CheckResult:
        """Run a check as the schedule would and record it (results → alerts)."""
        result = await self.checks.run_one(self.loaded.checks[name])
        self.manager.record([result])
        return result

    def feed(self, status: Status, check: str = "flagged") -> None:
        """Record a result of a check without running it."""
        target = "flag" if check == "flagged" else "other"
        self.manager.record(
            [CheckResult(check, target, "run", status, {}, status.label, 1.0, self.clock.now())]
        )

    def alert(self, check: str = "flagged") -> AlertRecord:
        """Return the newest alert of a check."""
        alerts = self.store.alerts.list_alerts(open_only=False)
        return next(alert for alert in alerts if alert.check == check)

    def timeline(self, alert_id: int) -> list[str]:
        return [
            f"{event.kind}: {event.detail}"
            for event in self.store.alerts.events(alert_id)
            if event.kind in ("remediation", "firing", "resolved")
        ]

    def alert_runs(self) -> list[RunRecord]:
        return [run for run in self.store.runs.list_runs(runbook="mend") if run.trigger == "alert"]

    def later(self, span: timedelta) -> None:
        self.clock.set(self.clock.now() + span)


@pytest.fixture
async def world(tmp_path: Path, store_config: StoreConfig) -> AsyncIterator[Any]:
    stores: list[Store] = []
    client = HttpClient()

    def make(on_alert: str, steps: str) -> World:
        loaded = load_text(tmp_path, config(tmp_path / "broken", on_alert, steps))
        store = store_config.open(tmp_path)
        stores.append(store)
        return World(loaded, store, client)

    yield make
    await client.close()
    for store in stores:
        store.close()


@pytest.fixture
def flag(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "broken"
    yield path
    path.unlink(missing_ok=True)


MEND = f"""\
      - command: ["{PY}", "-c", "import os, sys; os.remove(sys.argv[1])", "{{flag}}"]
      - checks: {{names: [flagged]}}
"""


async def finish(daemon: Daemon) -> None:
    """Wait for every run the daemon's remediator started."""
    tasks = list(daemon.running.values())
    if tasks:
        await asyncio.gather(*tasks)


async def test_a_firing_starts_the_runbook_once_and_the_timeline_tells_it(
    world: Any, flag: Path
) -> None:
    w: World = world("{match: {checks: [flagged]}}", MEND.replace("{flag}", str(flag)))
    daemon = w.daemon()
    flag.touch()
    await w.check()  # critical: the alert fires, and a trigger is recorded with it
    alert = w.alert()
    assert alert.state == AlertState.FIRING
    [trigger] = w.store.remediations.for_alert(alert.id)
    assert trigger.status == TriggerStatus.PENDING
    await w.check()  # still critical: no new firing, no second trigger
    assert len(w.store.remediations.for_alert(alert.id)) == 1

    [decision] = await daemon.remediator.step()
    assert decision.started is not None
    await finish(daemon)
    [run] = w.alert_runs()
    assert run.status == RunStatus.SUCCEEDED
    assert run.alert_id == alert.id
    assert run.triggered_by == f"alert:{alert.id} flagged"
    # The run's checks step found the check ok and resolved the alert that started it.
    assert w.alert().state == AlertState.RESOLVED
    timeline = w.timeline(alert.id)
    assert [line.split(":")[0] for line in timeline] == [
        "firing",
        "remediation",
        "resolved",
        "remediation",
    ]
    assert timeline[1] == f"remediation: runbook mend started: run {run.id}"
    assert timeline[3] == f"remediation: run {run.id} of runbook mend succeeded: 2 step(s) done"
    # A later pass has nothing to decide and notes nothing twice.
    assert await daemon.remediator.step() == []
    assert len(w.timeline(alert.id)) == 4


async def test_a_runbook_that_keeps_its_own_check_critical_does_not_loop(
    world: Any, flag: Path
) -> None:
    # It "mends" (removes the flag), confirms, breaks it again and checks: the check it
    # is started by fires again from the run's own result, while it runs.
    steps = f"""\
      - command: ["{PY}", "-c", "import os, sys; os.remove(sys.argv[1])", "{flag}"]
      - checks: {{names: [flagged]}}
      - command: ["{PY}", "-c", "import pathlib, sys; pathlib.Path(sys.argv[1]).touch()", "{flag}"]
      - checks: {{names: [flagged]}}
"""
    w: World = world("{match: {checks: [flagged]}, max_runs: 2, per: 1h, cooldown: 10m}", steps)
    daemon = w.daemon()
    flag.touch()
    await w.check()
    first_alert = w.alert().id
    await daemon.remediator.step()
    await finish(daemon)
    [run] = w.alert_runs()
    assert run.status == RunStatus.FAILED  # its last checks step found the check critical
    # The run's own result fired a new alert; its trigger is refused by the loop guard.
    second = w.alert()
    assert second.id != first_alert and second.state == AlertState.FIRING
    [trigger] = w.store.remediations.for_alert(second.id)
    assert trigger.source_run == run.id
    [decision] = await daemon.remediator.step()
    assert decision.started is None
    assert decision.reason == f"loop guard: the alert fired on a result of its own run {run.id}"
    assert f"remediation: runbook mend not started: {decision.reason}" in w.timeline(second.id)

    # The schedule keeps finding it critical: the alert fires on, nothing new starts.
    for _ in range(5):
        w.later(timedelta(minutes=1))
        await w.check()
        assert await daemon.remediator.step() == []
    assert len(w.alert_runs()) == 1

    async def flap() -> str:
        """The check recovers for a moment and fails again: a new alert fires."""
        w.feed(Status.OK)
        w.feed(Status.CRITICAL)
        decisions = await daemon.remediator.step()
        await finish(daemon)
        # Oldest firing first: any before the newest fired on a run's own result.
        *earlier, newest = decisions
        assert all(decision.reason.startswith("loop guard: ") for decision in earlier)
        return "started" if newest.started is not None else newest.reason

    assert (await flap()).startswith("cooldown: alert-started run")
    w.later(timedelta(minutes=11))
    assert await flap() == "started"  # past the cooldown: the second run of the hour
    w.later(timedelta(minutes=11))
    assert await flap() == "rate limit: 2 alert-started run(s) in the last 1h (max_runs 2)"
    w.later(timedelta(hours=1))
    assert await flap() == "started"
    assert len(w.alert_runs()) == 3


async def test_two_deciders_on_one_store_start_a_firing_once(world: Any, flag: Path) -> None:
    w: World = world("{match: {checks: [flagged]}}", MEND.replace("{flag}", str(flag)))
    first, second = w.daemon(), w.daemon()
    flag.touch()
    await w.check()
    alert = w.alert()
    await asyncio.gather(first.remediator.step(), second.remediator.step())
    await asyncio.gather(finish(first), finish(second))
    [run] = w.alert_runs()
    assert run.status == RunStatus.SUCCEEDED
    entries = [line for line in w.timeline(alert.id) if line.startswith("remediation")]
    assert entries == [
        f"remediation: runbook mend started: run {run.id}",
        f"remediation: run {run.id} of runbook mend succeeded: 2 step(s) done",
    ]


async def test_a_trigger_outlives_a_crash_before_the_run_and_after_it(
    world: Any, flag: Path
) -> None:
    w: World = world("{match: {checks: [flagged]}}", MEND.replace("{flag}", str(flag)))
    flag.touch()
    await w.check()
    alert = w.alert()
    # The daemon that recorded the firing died before deciding: the next leader starts it.
    successor = w.daemon()
    [decision] = await successor.remediator.step()
    assert decision.started is not None
    await finish(successor)
    assert [run.status for run in w.alert_runs()] == [RunStatus.SUCCEEDED]

    # A run whose daemon died mid-way is interrupted, never started again, and its end
    # is put on the timeline by the next leader's pass.
    flag.touch()
    w.feed(Status.CRITICAL)
    again = w.alert()
    assert again.id != alert.id
    [trigger] = w.store.remediations.for_alert(again.id)
    # The daemon that claimed it died right after inserting the run: swept as interrupted.
    claimed = w.store.runs.start_run(
        runbook="mend",
        trigger="alert",
        owner=new_instance_id(),
        steps=[("mend", "command")],
        triggered_by=trigger.triggered_by,
        alert_id=again.id,
        now=w.clock.now(),
    )
    assert claimed is not None
    assert w.store.runs.interrupt_orphans(is_dead=lambda _owner: True) == [claimed]
    assert await successor.remediator.step() == []
    runs = w.alert_runs()
    assert [run.status for run in runs] == [RunStatus.INTERRUPTED, RunStatus.SUCCEEDED]
    assert w.timeline(again.id)[-1].startswith(
        f"remediation: run {claimed} of runbook mend interrupted: the process running it"
    )
    # A second attempt at the same firing finds it claimed.
    assert (
        w.store.runs.start_run(
            runbook="mend", trigger="alert", owner="x:1:y", steps=[], alert_id=again.id
        )
        is None
    )


async def test_held_running_and_resolved_triggers_are_not_started(world: Any, flag: Path) -> None:
    steps = """\
      - approval: "go ahead?"
      - checks: {names: [flagged]}
"""
    w: World = world("{match: {checks: [flagged, unrelated, spare]}, cooldown: 0s}", steps)
    daemon = w.daemon()
    # A silenced check's firing asks for nothing: someone is at work on it.
    w.store.alerts.add_silence(
        {"check": "unrelated"},
        starts_at=T0 - timedelta(minutes=1),
        ends_at=T0 + timedelta(hours=1),
        author="ops",
        comment="replacing the disk",
    )
    w.feed(Status.CRITICAL, "unrelated")
    [held] = w.store.remediations.for_alert(w.alert("unrelated").id)
    assert held.status == TriggerStatus.SUPPRESSED
    assert held.reason.startswith("held: muted by silence #")

    # The approval step waits as in any run; other firings meanwhile are not started, and
    # one of a check the runbook's own steps run is the loop guard's.
    w.feed(Status.CRITICAL)
    [decision] = await daemon.remediator.step()
    assert decision.started is not None
    for _ in range(200):
        runs = w.alert_runs()
        if runs and runs[0].status == RunStatus.WAITING:
            break
        await asyncio.sleep(0.01)
    assert runs[0].status == RunStatus.WAITING
    w.feed(Status.OK)
    w.feed(Status.CRITICAL)
    w.feed(Status.CRITICAL, "spare")
    own, other = await daemon.remediator.step()
    assert own.reason == (
        f"loop guard: check flagged is one of the runbook's own checks and run {runs[0].id} "
        "of it is running"
    )
    assert other.reason == f"already running (run {runs[0].id})"
    decision.started.cancel()
    await asyncio.gather(decision.started, return_exceptions=True)

    # A trigger whose alert resolved before anyone decided is not started late.
    w.feed(Status.OK)
    w.feed(Status.CRITICAL)
    w.feed(Status.OK)
    [late] = await daemon.remediator.step()
    assert late.reason == "the alert resolved before the run could start"


async def test_dry_run_only_records_the_plan_and_changes_nothing(world: Any, flag: Path) -> None:
    w: World = world(
        "{match: {checks: [flagged]}, dry_run_only: true}", MEND.replace("{flag}", str(flag))
    )
    daemon = w.daemon()
    flag.touch()
    await w.check()
    await daemon.remediator.step()
    await finish(daemon)
    [run] = w.alert_runs()
    assert run.dry_run and run.status == RunStatus.SUCCEEDED
    assert [step["kind"] for step in run.detail["plan"]] == ["command", "checks"]
    assert flag.exists()  # nothing was mended
    started = f"remediation: runbook mend started: run {run.id} (a dry run: dry_run_only)"
    assert started in w.timeline(w.alert().id)


async def test_a_runbook_with_a_window_starts_only_inside_it(world: Any, flag: Path) -> None:
    # As the schedule, the CLI and the API: an alert does not run it outside its window
    # (12:00 UTC here; the window opens at 03:00), but a dry run (dry_run_only) may.
    def windowed(w: World, on_alert: str) -> World:
        text = config(flag, on_alert, MEND.replace("{flag}", str(flag)))
        text = text.replace("  mend:\n", "  mend:\n    window: night\n")
        text += 'windows:\n  night: {schedule: "0 3 * * *", duration: 1h}\n'
        w.loaded = load_text(flag.parent, text)
        w.manager = AlertManager(w.loaded, w.store, clock=w.clock)
        return w

    w = windowed(world("{match: {checks: [flagged]}}", MEND), "{match: {checks: [flagged]}}")
    daemon = w.daemon()
    flag.touch()
    await w.check()
    [decision] = await daemon.remediator.step()
    assert decision.started is None
    assert decision.reason == (
        "window night is closed (the runbook runs only inside it); it next opens "
        "2026-12-08T03:00:00+00:00"
    )
    assert w.alert_runs() == []
    assert flag.exists()

    dry = windowed(
        world("{match: {checks: [unrelated]}}", MEND),
        "{match: {checks: [flagged]}, dry_run_only: true}",
    )
    dry_daemon = dry.daemon()
    dry.feed(Status.OK)
    dry.feed(Status.CRITICAL)
    [started] = await dry_daemon.remediator.step()
    assert started.started is not None
    await finish(dry_daemon)
    assert [run.dry_run for run in dry.alert_runs()] == [True]
