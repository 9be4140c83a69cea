"""Runbook flow: rollback (``on_failure`` as a list), ``finally``, ``wait`` and ``watch``
steps, and resuming a run taken over from a dead owner. Waits follow a fake clock; the
checks a watch runs come from a scripted runner, so every test runs in milliseconds."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from tests.helpers import load_text
from upkeep.config.errors import ConfigError
from upkeep.config.loader import LoadedConfig
from upkeep.core.clock import FakeClock
from upkeep.core.results import CheckResult
from upkeep.core.status import Status
from upkeep.engine.runbooks import RunbookExecutor, can_resume
from upkeep.engine.runner import CheckRunner
from upkeep.io.http import HttpClient
from upkeep.store.runs import (
    RELEASED_OWNER,
    ApprovalDecision,
    RunRecord,
    RunStatus,
    new_instance_id,
)
from upkeep.store.store import Store

START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
CHECKS = """\
targets:
  box: {kind: host}
checks:
  errors: {target: box, probe: uptime}
  p95: {target: box, probe: uptime}
"""


class ScriptedChecks:
    """Stands in for the ``CheckRunner``: each round returns the next statuses of a script
    (the last one repeats), one result per selected check, stamped with the fake clock."""

    def __init__(self, clock: FakeClock, script: list[Status]) -> None:
        self.clock = clock
        self.script = script
        self.rounds = 0

    async def run_many(self, checks: list[Any]) -> list[CheckResult]:
        status = self.script[min(self.rounds, len(self.script) - 1)]
        self.rounds += 1
        return [
            CheckResult(
                check=check.name,
                target="box",
                probe="uptime",
                status=status,
                metrics={},
                message=f"round {self.rounds}",
                duration_ms=1.0,
                at=self.clock.now(),
            )
            for check in checks
        ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open("sqlite:///.upkeep/upkeep.db", tmp_path)
    yield opened
    opened.close()


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    client = HttpClient()
    yield client
    await client.close()


def executor(
    loaded: LoadedConfig,
    store: Store,
    http: HttpClient,
    *,
    clock: FakeClock | None = None,
    script: list[Status] | None = None,
    **options: Any,
) -> RunbookExecutor:
    moving = clock or FakeClock(START)
    runner = (
        ScriptedChecks(moving, script)
        if script is not None
        else CheckRunner(redactor=loaded.redactor, http=http)
    )
    options.setdefault("owner", new_instance_id())
    return RunbookExecutor(
        loaded,
        store,
        http=http,
        checks=cast("CheckRunner", runner),
        clock=moving,
        approval_poll_s=60.0,
        **options,
    )


def shape(record: RunRecord) -> list[tuple[str, str]]:
    return [(step.phase, step.status) for step in record.steps]


# --- rollback and finally -----------------------------------------------------------------

ROLLOUT = """\
runbooks:
  deploy:
    on_failure:
      - name: undo
        command: [echo, rollout undo]
    finally:
      - name: tidy
        command: [echo, tidy]
    steps:
      - command: ["true"]
      - command: ["{failing}"]
      - command: ["true"]
"""


async def test_a_failed_step_stops_the_run_then_the_rollback_and_finally_run(
    tmp_path: Path, store: Store, http: HttpClient
) -> None:
    loaded = load_text(tmp_path, ROLLOUT.format(failing="false"))
    record = await executor(loaded, store, http).execute("deploy", trigger="cli")
    assert record is not None
    assert shape(record) == [
        ("main", "ok"),
        ("main", "failed"),
        ("main", "not_run"),
        ("rollback", "ok"),
        ("finally", "ok"),
    ]
    assert record.status == "failed"
    assert record.message == "command false: failed; rollback ran: 1 step(s) ok"
    assert record.steps[3].name == "undo" and record.steps[3].output == "rollout undo"


async def test_after_success_the_rollback_is_not_run_and_finally_is(
    tmp_path: Path, store: Store, http: HttpClient
) -> None:
    loaded = load_text(tmp_path, ROLLOUT.format(failing="true"))
    record = await executor(loaded, store, http).execute("deploy", trigger="cli")
    assert record is not None
    assert shape(record) == [
        ("main", "ok"),
        ("main", "ok"),
        ("main", "ok"),
        ("rollback", "not_run"),
        ("finally", "ok"),
    ]
    assert (record.status, record.message) == ("succeeded", "3 step(s) done")


async def test_a_failed_rollback_step_is_recorded_and_a_failed_finally_step_fails_the_run(
    tmp_path: Path, store: Store, http: HttpClient
) -> None:
    loaded = load_text(
        tmp_path,
        """\
runbooks:
  deploy:
    on_failure:
      - {name: undo, command: ["false"]}
      - {name: verify, command: ["true"]}
    finally:
      - {name: unpin, command: ["false"]}
      - {name: notify, command: ["true"]}
    steps:
      - {name: upgrade, command: ["false"]}
""",
    )
    record = await executor(loaded, store, http).execute("deploy", trigger="cli")
    assert record is not None
    # The rollback stops at its failure (the runbook's policy); finally goes on.
    assert shape(record) == [
        ("main", "failed"),
        ("rollback", "failed"),
        ("rollback", "not_run"),
        ("finally", "failed"),
        ("finally", "ok"),
    ]
    assert record.status == "failed"
    assert record.message == (
        "upgrade: failed; rollback failed: undo: failed; finally failed: unpin: failed"
    )


async def test_a_runbook_timeout_is_followed_by_the_rollback_and_finally(
    tmp_path: Path, store: Store, http: HttpClient
) -> None:
    loaded = load_text(
        tmp_path,
        """\
runbooks:
  slow:
    timeout: 300ms
    on_failure: [{name: undo, command: ["true"]}]
    finally: [{name: tidy, command: ["true"]}]
    steps:
      - command: [sleep, "10"]
      - command: ["true"]
""",
    )
    record = await executor(loaded, store, http).execute("slow", trigger="cli")
    assert record is not None
    assert shape(record) == [
        ("main", "timed_out"),
        ("main", "not_run"),
        ("rollback", "ok"),
        ("finally", "ok"),
    ]
    assert record.message == "runbook timed out after 300ms; rollback ran: 1 step(s) ok"


async def test_a_dry_run_plans_the_rollback_and_finally_too(
    tmp_path: Path, store: Store, http: HttpClient
) -> None:
    loaded = load_text(tmp_path, CHECKS + ROLLOUT.format(failing="false"))
    record = await executor(loaded, store, http).execute("deploy", trigger="cli", dry_run=True)
    assert record is not None
    assert shape(record) == [
        ("main", "planned"),
        ("main", "planned"),
        ("main", "planned"),
        ("rollback", "planned"),
        ("finally", "planned"),
    ]
    assert record.message == "dry run: 5 step(s) planned, nothing changed"
    plan = record.detail["plan"]
    assert [entry.get("phase", "main") for entry in plan] == [
        "main",
        "main",
        "main",
        "rollback",
        "finally",
    ]
    assert plan[3]["step"] == "undo"


def test_a_rollback_and_finally_are_checked_like_steps(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_text(
            tmp_path,
            CHECKS
            + """\
runbooks:
  r:
    on_failure: [{task: nope}]
    finally: [{wait: 0s}]
    steps:
      - watch: {checks: {names: [missing]}, for: 1h, every: 0s}
""",
        )
    text = str(caught.value)
    assert "runbooks.r.on_failure[0].task: unknown task 'nope'" in text
    assert "runbooks.r.finally[0].wait: a wait must be longer than zero" in text
    assert "runbooks.r.steps[0].watch.checks.names[0]: no check named 'missing'" in text
    assert "runbooks.r.steps[0].watch.every: must be longer than zero" in text


# --- wait and watch -------------------------------------------------------------------------


async def test_a_wait_step_pauses_the_run_on_the_clock(
    tmp_path: Path, store: Store, http: HttpClient
) -> None:
    loaded = load_text(
        tmp_path, "runbooks:\n  stage:\n    steps:\n      - wait: 1h\n      - command: ['true']\n"
    )
    clock = FakeClock(START)
    run = asyncio.create_task(
        executor(loaded, store, http, clock=clock).execute("stage", trigger="cli")
    )
    await clock.wait_for_sleepers(1)
    await clock.advance(timedelta(minutes=59))
    assert not run.done()
    await clock.advance(timedelta(minutes=1))
    record = await run
    assert record is not None and record.status == "succeeded"
    wait, _ = record.steps
    assert (wait.name, wait.kind, wait.status, wait.output) == (
        "wait 1h",
        "wait",
        "ok",
        "waited 1h",
    )
    assert wait.finished_at == START + timedelta(hours=1)
    assert wait.detail["until"] == (START + timedelta(hours=1)).isoformat()


WATCH = """\
runbooks:
  rollout:
    on_failure: [{{name: undo, command: ["true"]}}]
    steps:
      - watch: {{checks: {{names: [errors, p95]}}, for: 10m, every: 1m{extra}}}
      - command: ["true"]
"""


def watch_config(extra: str = "") -> str:
    """Return a config with two checks and a runbook watching them (``extra`` goes into the
    watch's mapping)."""
    return CHECKS + WATCH.format(extra=extra)


async def test_a_watch_that_stays_clean_succeeds_when_its_period_passes(
    tmp_path: Path, store: Store, http: HttpClient
) -> None:
    loaded = load_text(tmp_path, watch_config())
    clock = FakeClock(START)
    run = asyncio.create_task(
        executor(loaded, store, http, clock=clock, script=[Status.OK]).execute(
            "rollout", trigger="cli"
        )
    )
    await clock.wait_for_sleepers(1)
    await clock.advance(timedelta(minutes=10))
    record = await run
    assert record is not None
    assert record.status == "succeeded", record.message
    watch = record.steps[0]
    assert watch.name == "watch errors p95 for 10m"
    assert watch.status == "ok"
    assert watch.finished_at == START + timedelta(minutes=10)
    # A round at the start, each minute, and one at the end: eleven rounds of two checks.
    assert watch.detail["rounds"] == 11 and watch.detail["counts"] == {"ok": 22}
    stored = store.history("errors", limit=100)
    assert len(stored) == 11 and {result.status for result in stored} == {Status.OK}
    assert shape(record)[2] == ("rollback", "not_run")


async def test_a_watch_fails_as_soon_as_a_check_turns_bad_and_the_rollback_runs(
    tmp_path: Path, store: Store, http: HttpClient
) -> None:
    loaded = load_text(tmp_path, watch_config())
    clock = FakeClock(START)
    script = [Status.OK, Status.WARNING, Status.OK, Status.CRITICAL]
    run = asyncio.create_task(
        executor(loaded, store, http, clock=clock, script=script).execute("rollout", trigger="cli")
    )
    await clock.wait_for_sleepers(1)
    await clock.advance(timedelta(minutes=3))
    record = await asyncio.wait_for(run, 5)
    assert record is not None
    assert shape(record) == [("main", "failed"), ("main", "not_run"), ("rollback", "ok")]
    watch = record.steps[0]
    assert watch.finished_at == START + timedelta(minutes=3)
    moment = (START + timedelta(minutes=3)).astimezone(UTC)
    assert watch.output.startswith(f"turned bad in round 4 at {moment:%Y-%m-%d %H:%M:%S} UTC:\n")
    assert "critical errors: round 4" in watch.output
    assert watch.detail["worst"] == "critical"
    assert record.message.endswith("rollback ran: 1 step(s) ok")


@pytest.mark.parametrize(("extra", "expected"), [("", "warning"), (", fail_on: warning", "failed")])
async def test_a_warning_passes_a_watch_unless_it_fails_on_warnings(
    tmp_path: Path, store: Store, http: HttpClient, extra: str, expected: str
) -> None:
    loaded = load_text(tmp_path, watch_config(extra))
    clock = FakeClock(START)
    run = asyncio.create_task(
        executor(loaded, store, http, clock=clock, script=[Status.OK, Status.WARNING]).execute(
            "rollout", trigger="cli"
        )
    )
    await clock.wait_for_sleepers(1)
    await clock.advance(timedelta(minutes=10))
    record = await asyncio.wait_for(run, 5)
    assert record is not None
    assert record.steps[0].status == expected


# --- resuming -------------------------------------------------------------------------------


async def hand_over(run: asyncio.Task[RunRecord | None], store: Store) -> RunRecord:
    """Cancel a run the way a stopping daemon does; return it as stored."""
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    [record] = store.runs.list_runs()
    full = store.runs.get_run(record.id)
    assert full is not None
    return full


async def test_a_run_handed_over_in_a_watch_is_resumed_with_the_time_left(
    tmp_path: Path, store: Store, http: HttpClient
) -> None:
    loaded = load_text(tmp_path, watch_config())
    clock = FakeClock(START)
    first = executor(loaded, store, http, clock=clock, script=[Status.OK], hand_over=True)
    run = asyncio.create_task(first.execute("rollout", trigger="schedule"))
    await clock.wait_for_sleepers(1)
    await clock.advance(timedelta(minutes=4))
    left = await hand_over(run, store)
    assert left.status == "running" and left.owner == RELEASED_OWNER
    assert left.steps[0].status == "running" and left.steps[0].detail["rounds"] == 5
    assert can_resume(loaded, left)

    # Down for two minutes; then a new leader takes the run over and resumes it.
    await clock.advance(timedelta(minutes=2))
    second_owner = new_instance_id()
    swept = store.runs.sweep_orphans(
        new_owner=second_owner, resumable=lambda record: can_resume(loaded, record)
    )
    assert (swept.resumed, swept.interrupted) == ([left.id], [])
    second = executor(loaded, store, http, clock=clock, script=[Status.OK], owner=second_owner)
    resumed = asyncio.create_task(second.resume(left.id))
    await clock.wait_for_sleepers(1)
    await clock.advance(timedelta(minutes=4))
    record = await asyncio.wait_for(resumed, 5)
    assert record is not None
    assert record.status == "succeeded", record.message
    watch = record.steps[0]
    assert watch.finished_at == START + timedelta(minutes=10)
    # Five rounds before, one on resuming, one a minute for three minutes, one at the end.
    assert watch.detail["rounds"] == 5 + 1 + 3 + 1
    assert record.owner == second_owner
    assert shape(record)[1:] == [("main", "ok"), ("rollback", "not_run")]


async def test_an_approval_decided_while_no_daemon_ran_is_taken_up_on_resuming(
    tmp_path: Path, store: Store, http: HttpClient
) -> None:
    loaded = load_text(
        tmp_path,
        "runbooks:\n  gated:\n    steps:\n      - approval: Go?\n        timeout: 2h\n"
        "      - wait: 30m\n",
    )
    clock = FakeClock(START)
    run = asyncio.create_task(
        executor(loaded, store, http, clock=clock, hand_over=True).execute("gated", trigger="api")
    )
    await clock.wait_for_sleepers(1)
    left = await hand_over(run, store)
    assert left.status == "waiting" and left.steps[0].status == "waiting"
    store.runs.decide(left.id, ApprovalDecision.APPROVED, "alice")
    new_owner = new_instance_id()
    swept = store.runs.sweep_orphans(
        new_owner=new_owner, resumable=lambda record: can_resume(loaded, record)
    )
    assert swept.resumed == [left.id]
    resumed = asyncio.create_task(
        executor(loaded, store, http, clock=clock, owner=new_owner).resume(left.id)
    )
    await clock.wait_for_sleepers(1)  # the wait after the approval
    await clock.advance(timedelta(minutes=30))
    record = await asyncio.wait_for(resumed, 5)
    assert record is not None and record.status == "succeeded"
    assert [step.status for step in record.steps] == ["approved", "ok"]


async def test_runs_that_cannot_be_resumed_are_interrupted(
    tmp_path: Path, store: Store, http: HttpClient
) -> None:
    text = "runbooks:\n  pause:\n    steps:\n      - wait: 1h\n"
    loaded = load_text(tmp_path, text)
    clock = FakeClock(START)
    ids = []
    for trigger in ("cli", "schedule"):
        run = asyncio.create_task(
            executor(loaded, store, http, clock=clock, hand_over=True).execute(
                "pause", trigger=trigger, scheduled_for=START if trigger == "schedule" else None
            )
        )
        await clock.wait_for_sleepers(1)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        ids.append(max(record.id for record in store.runs.list_runs()))
    cli_run, scheduled_run = (store.runs.get_run(run_id) for run_id in ids)
    # A CLI run is cancelled for good: its person is at the terminal.
    assert cli_run is not None and cli_run.status == "cancelled"
    assert scheduled_run is not None and scheduled_run.status == "running"
    # The runbook changed meanwhile: its run cannot go on.
    changed = load_text(tmp_path, "runbooks:\n  pause:\n    steps:\n      - wait: 2h\n")
    assert not can_resume(changed, scheduled_run)
    swept = store.runs.sweep_orphans(
        new_owner=new_instance_id(), resumable=lambda record: can_resume(changed, record)
    )
    assert (swept.resumed, swept.interrupted) == ([], [scheduled_run.id])
    stored = store.runs.get_run(scheduled_run.id)
    assert stored is not None and stored.status == RunStatus.INTERRUPTED
    assert [step.status for step in stored.steps] == ["interrupted"]


def test_two_sweeping_daemons_take_a_run_over_exactly_once(store: Store) -> None:
    run_id = store.runs.start_run(
        runbook="r", trigger="schedule", owner=RELEASED_OWNER, steps=[("wait 1h", "wait")]
    )
    assert run_id is not None
    store.runs.update_step(run_id, 0, status="running")
    both_looked = threading.Barrier(2)

    def resumable(_record: RunRecord) -> bool:
        # Both decide before either takes it: the compare-and-set settles it.
        both_looked.wait(5)
        return True

    taken: dict[str, list[int]] = {}

    def sweep(owner: str) -> None:
        taken[owner] = store.runs.sweep_orphans(new_owner=owner, resumable=resumable).resumed

    threads = [threading.Thread(target=sweep, args=(f"daemon-{n}",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(len(ids) for ids in taken.values()) == [0, 1]
    [winner] = [owner for owner, ids in taken.items() if ids == [run_id]]
    stored = store.runs.get_run(run_id)
    assert stored is not None and stored.owner == winner and stored.status == "running"


async def test_runs_show_names_the_phase_of_rollback_and_finally_steps(
    tmp_path: Path, store: Store, http: HttpClient, capsys: pytest.CaptureFixture[str]
) -> None:
    from upkeep.cli.runbooks import show_run

    loaded = load_text(tmp_path, ROLLOUT.format(failing="false"))
    record = await executor(loaded, store, http).execute("deploy", trigger="cli")
    assert record is not None
    assert await asyncio.to_thread(show_run, loaded.path, record.id, json_output=False) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any("rollback ran: 1 step(s) ok" in line for line in lines), lines
    assert any(line.startswith("4. ok") and "command  rollback: undo" in line for line in lines)
    assert any(line.startswith("5. ok") and "command  finally: tidy" in line for line in lines)
    assert any(line.startswith("1. ok") and "command  command true" in line for line in lines)


async def test_task_steps_in_the_rollback_and_finally_run_with_their_own_params(
    tmp_path: Path, store: Store, http: HttpClient
) -> None:
    import os

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    for name in ("app-1", "app-2", "keep-1"):
        (scratch / name).write_text("x")
        os.utime(scratch / name, (0, 0))
    loaded = load_text(
        tmp_path,
        f"""\
runbooks:
  deploy:
    on_failure:
      - task: files.cleanup
        with: {{root: {scratch}, pattern: "app-1", older_than: 1d}}
    finally:
      - task: files.cleanup
        with: {{root: {scratch}, pattern: "app-2", older_than: 1d}}
    steps:
      - command: ["false"]
""",
    )
    record = await executor(loaded, store, http).execute("deploy", trigger="cli")
    assert record is not None
    assert shape(record) == [("main", "failed"), ("rollback", "ok"), ("finally", "ok")]
    assert sorted(path.name for path in scratch.iterdir()) == ["keep-1"]
