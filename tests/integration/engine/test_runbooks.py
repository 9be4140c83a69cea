"""RunbookExecutor end to end: every step kind against a real SQLite store and real processes."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import upkeep.engine.runbooks as runbooks_module
from tests.helpers import load_text
from upkeep.config.loader import LoadedConfig
from upkeep.core.clock import FakeClock
from upkeep.engine.runbooks import MAX_STEP_OUTPUT_CHARS, RunbookExecutor
from upkeep.engine.runner import CheckRunner
from upkeep.io.http import HttpClient
from upkeep.store.runs import ApprovalDecision, RunRecord, RunStatus, new_instance_id
from upkeep.store.schema import check_results
from upkeep.store.store import Store

SECRET = "s3cr3t-Tok3n-9f8e7d"
PY = sys.executable
DAY_S = 86400.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open("sqlite:///.upkeep/upkeep.db", tmp_path)
    yield opened
    opened.close()


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runbooks_module, "RETRY_BACKOFF_S", (0.01,))


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Harness:
    """A loaded config, a store and a way to run one of its runbooks."""

    def __init__(self, loaded: LoadedConfig, store: Store, http: HttpClient) -> None:
        self.loaded = loaded
        self.store = store
        self.http = http

    def executor(self, **options: Any) -> RunbookExecutor:
        options.setdefault("approval_poll_s", 0.05)
        return RunbookExecutor(
            self.loaded,
            self.store,
            http=self.http,
            checks=CheckRunner(redactor=self.loaded.redactor, http=self.http),
            owner=new_instance_id(),
            **options,
        )

    async def run(self, name: str, **options: Any) -> RunRecord:
        dry_run = options.pop("dry_run", False)
        record = await self.executor(**options).execute(name, trigger="cli", dry_run=dry_run)
        assert record is not None
        return record


@pytest.fixture
async def harness(tmp_path: Path, store: Store) -> AsyncIterator[Any]:
    client = HttpClient()

    def make(text: str, environ: dict[str, str] | None = None) -> Harness:
        return Harness(load_text(tmp_path, text, environ), store, client)

    yield make
    await client.close()


def py(code: str) -> str:
    """Given Python code, return a YAML flow list running it with this interpreter."""
    escaped = code.replace("\\", "\\\\").replace('"', '\\"')
    return f'["{PY}", "-c", "{escaped}"]'


def statuses(record: RunRecord) -> list[str]:
    return [step.status for step in record.steps]


async def test_a_secret_cut_by_the_output_cap_leaves_no_prefix(harness: Any) -> None:
    from upkeep.io.process import MAX_OUTPUT_BYTES

    code = (
        "import os, sys; sys.stdout.write('x' * "
        f"{MAX_OUTPUT_BYTES - 9}"
        " + os.environ['TOKEN'] + 'y' * 100)"
    )
    h = harness(
        f"""\
runbooks:
  cut:
    steps:
      - command: {py(code)}
        env: {{TOKEN: "${{API_TOKEN}}"}}
""",
        {"API_TOKEN": SECRET},
    )
    record = await h.run("cut")
    [step] = record.steps
    assert step.detail["output_truncated"] is True
    assert SECRET[:9] not in step.output
    assert step.output.endswith("x***")


# --- checks -------------------------------------------------------------------------------


async def test_checks_step_stores_results_with_run_id(harness: Any, store: Store) -> None:
    h = harness(
        """\
targets:
  box: {kind: host, labels: {env: prod}}
checks:
  root-disk: {target: box, probe: disk, params: {path: /}, crit: used_percent > 101}
  uptime: {target: box, probe: uptime, crit: seconds < 0}
runbooks:
  health:
    steps:
      - checks: {labels: {env: prod}}
"""
    )
    record = await h.run("health")
    assert record.status == "succeeded", record.message
    (step,) = record.steps
    assert step.kind == "checks" and step.status == "ok"
    assert step.detail["worst"] == "ok"
    assert sorted(step.detail["checks"]) == ["root-disk", "uptime"]
    assert "root-disk" in step.output
    with store.engine.connect() as connection:
        rows = connection.execute(select(check_results.c.run_id)).all()
    assert len(rows) == 2 and {row.run_id for row in rows} == {record.id}
    assert {row.check for row in store.history(None)} == {"root-disk", "uptime"}


async def test_checks_step_fails_on_critical(harness: Any, store: Store, closed_port: int) -> None:
    h = harness(
        f"""\
targets:
  gone: {{kind: tcp, host: 127.0.0.1, port: {closed_port}}}
  box: {{kind: host}}
checks:
  port: {{target: gone, timeout: 2s}}
  full-disk: {{target: box, probe: disk, params: {{path: /}}, crit: used_percent >= 0}}
runbooks:
  health:
    steps:
      - checks: {{names: [port]}}
        on_failure: continue
      - checks: {{names: [full-disk]}}
"""
    )
    record = await h.run("health")
    assert record.status == "failed"
    assert statuses(record) == ["failed", "failed"]
    assert record.steps[0].detail["worst"] == "critical"
    assert record.steps[1].detail["counts"] == {"critical": 1}
    assert "full-disk" in record.message
    stored = store.history("port")
    assert stored and stored[0].status.label == "critical"


async def test_checks_step_with_no_match_fails(harness: Any) -> None:
    h = harness(
        """\
targets:
  box: {kind: host}
checks:
  up: {target: box, probe: uptime, enabled: false}
runbooks:
  health:
    steps:
      - checks: {}
"""
    )
    # Labels that match no check are a config error; all checks disabled is not.
    record = await h.run("health")
    assert record.status == "failed"
    assert "no check matches" in record.steps[0].output


# --- command ------------------------------------------------------------------------------


async def test_command_output_is_captured_capped_and_redacted(
    harness: Any, store: Store, tmp_path: Path
) -> None:
    h = harness(
        f"""\
runbooks:
  say:
    steps:
      - name: leak
        command: {py("import os; print('token=' + os.environ['TOKEN']); print('hello')")}
        env: {{TOKEN: "${{API_TOKEN}}"}}
      - name: flood
        command: {py("import sys; sys.stdout.write('x' * 100000); sys.stderr.write('tail')")}
""",
        {"API_TOKEN": SECRET},
    )
    record = await h.run("say")
    assert record.status == "succeeded", record.message
    leak, flood = record.steps
    assert leak.status == "ok" and leak.detail["exit_code"] == 0
    assert "hello" in leak.output and "token=" in leak.output
    assert SECRET not in leak.output
    assert flood.status == "ok"
    assert flood.detail["output_truncated"] is True
    kept, _, note = flood.output.rpartition("\n[... ")
    assert len(kept) == MAX_STEP_OUTPUT_CHARS
    assert note.endswith("more characters not kept]")
    store.close()
    for path in (tmp_path / ".upkeep").iterdir():
        assert SECRET.encode() not in path.read_bytes(), path


async def test_command_nonzero_exit_fails_and_stops(harness: Any) -> None:
    h = harness(
        f"""\
runbooks:
  broken:
    steps:
      - command: {py("import sys; print('boom'); sys.exit(3)")}
      - command: {py("print('never')")}
      - manual: never asked
"""
    )
    record = await h.run("broken")
    assert record.status == "failed"
    assert statuses(record) == ["failed", "not_run", "not_run"]
    assert record.steps[0].detail["exit_code"] == 3
    assert "boom" in record.steps[0].output
    assert record.steps[1].output == ""


async def test_command_that_cannot_start_fails(harness: Any) -> None:
    h = harness(
        """\
runbooks:
  missing:
    steps:
      - command: ["/nonexistent/upkeep-test-program"]
"""
    )
    record = await h.run("missing")
    assert record.status == "failed"
    assert "cannot start" in record.steps[0].output


async def test_command_step_timeout(harness: Any) -> None:
    h = harness(
        f"""\
runbooks:
  slow:
    steps:
      - command: {py("import time; print('started', flush=True); time.sleep(30)")}
        timeout: 500ms
"""
    )
    started = time.monotonic()
    record = await h.run("slow")
    assert time.monotonic() - started < 10
    assert record.status == "failed"
    (step,) = record.steps
    assert step.status == "timed_out"
    assert "timed out after" in step.output
    assert "timed_out" in record.message


async def test_retries_until_success(harness: Any, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    code = (
        f"import pathlib, sys; p = pathlib.Path({str(counter)!r}); "
        "n = int(p.read_text()) + 1 if p.exists() else 1; p.write_text(str(n)); "
        "print('attempt', n); sys.exit(0 if n >= 3 else 1)"
    )
    h = harness(
        f"""\
runbooks:
  flaky:
    steps:
      - command: {py(code)}
        retries: 4
"""
    )
    record = await h.run("flaky")
    assert record.status == "succeeded", record.message
    (step,) = record.steps
    assert step.status == "ok" and step.attempts == 3
    assert "attempt 3" in step.output
    assert counter.read_text() == "3"


async def test_retries_exhausted_fails_with_attempt_count(harness: Any, tmp_path: Path) -> None:
    h = harness(
        f"""\
runbooks:
  hopeless:
    steps:
      - command: {py("import sys; sys.exit(1)")}
        retries: 2
"""
    )
    record = await h.run("hopeless")
    assert record.status == "failed"
    assert record.steps[0].attempts == 3


# --- on_failure ---------------------------------------------------------------------------


async def test_on_failure_continue_runs_later_steps_but_run_fails(
    harness: Any, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    h = harness(
        f"""\
runbooks:
  keep-going:
    on_failure: continue
    steps:
      - name: bad
        command: {py("import sys; sys.exit(1)")}
      - name: good
        command: {py(f"open({str(marker)!r}, 'w').write('x')")}
"""
    )
    record = await h.run("keep-going")
    assert statuses(record) == ["failed", "ok"]
    assert marker.exists()
    assert record.status == "failed"
    assert record.message == "bad: failed"


async def test_step_on_failure_overrides_runbook(harness: Any) -> None:
    h = harness(
        f"""\
runbooks:
  mixed:
    on_failure: continue
    steps:
      - command: {py("import sys; sys.exit(1)")}
        on_failure: stop
      - command: {py("print(1)")}
"""
    )
    record = await h.run("mixed")
    assert statuses(record) == ["failed", "not_run"]
    assert record.status == "failed"


async def test_runbook_timeout_fails_with_message(harness: Any) -> None:
    h = harness(
        f"""\
runbooks:
  bounded:
    timeout: 1s
    steps:
      - command: {py("print('quick')")}
      - command: {py("import time; time.sleep(30)")}
      - manual: after the slow one
"""
    )
    started = time.monotonic()
    record = await h.run("bounded")
    assert time.monotonic() - started < 10
    assert record.status == "failed"
    assert record.message == "runbook timed out after 1s"
    assert statuses(record) == ["ok", "timed_out", "not_run"]
    assert record.finished_at is not None


# --- manual -------------------------------------------------------------------------------

MANUAL = """\
runbooks:
  review:
    steps:
      - manual: Review overnight alerts
"""


async def test_manual_step_without_confirm_is_todo(harness: Any) -> None:
    record = await harness(MANUAL).run("review")
    assert record.status == "succeeded"
    assert statuses(record) == ["todo"]
    assert "manual item(s) left to do: Review overnight alerts" in record.message


async def test_manual_step_confirmed_is_done(harness: Any) -> None:
    asked: list[str] = []

    async def confirm(text: str) -> bool:
        asked.append(text)
        return True

    record = await harness(MANUAL).run("review", manual_confirm=confirm)
    assert asked == ["Review overnight alerts"]
    assert statuses(record) == ["done"]
    assert record.steps[0].detail["confirmed"] is True
    assert record.status == "succeeded" and "left to do" not in record.message


async def test_manual_step_declined_is_todo(harness: Any) -> None:
    async def decline(_text: str) -> bool:
        return False

    record = await harness(MANUAL).run("review", manual_confirm=decline)
    assert statuses(record) == ["todo"]
    assert record.status == "succeeded"


# --- approval -----------------------------------------------------------------------------

APPROVAL = f"""\
runbooks:
  gated:
    steps:
      - approval: Restart the primary database?
        timeout: 20s
      - command: {py("print('after approval')")}
"""


async def wait_for_waiting(store: Store, deadline_s: float = 10.0) -> int:
    """Poll the store (from another thread) until some run is ``waiting``; return its id."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        found = await asyncio.to_thread(store.runs.list_runs, statuses=[RunStatus.WAITING])
        if found:
            return found[0].id
        await asyncio.sleep(0.02)
    raise AssertionError("no run reached status waiting")


async def test_approval_approved_from_another_thread(harness: Any, store: Store) -> None:
    h = harness(APPROVAL)
    running = asyncio.create_task(h.run("gated"))
    run_id = await wait_for_waiting(store)
    steps = await asyncio.to_thread(store.runs.get_run_steps, run_id)
    assert [step.status for step in steps] == ["waiting", "pending"]
    decided = await asyncio.to_thread(
        store.runs.decide, run_id, ApprovalDecision.APPROVED, "alice", "go"
    )
    assert decided.position == 0 and decided.decision == "approved"
    record = await asyncio.wait_for(running, 10)
    assert record.status == "succeeded", record.message
    assert statuses(record) == ["approved", "ok"]
    assert record.steps[0].decided_by == "alice"
    assert record.steps[0].detail.get("comment") == "go"
    assert "approved by alice" in record.steps[0].output
    with pytest.raises(LookupError):
        store.runs.decide(run_id, ApprovalDecision.APPROVED, "bob")


async def test_approval_rejected_fails_run(harness: Any, store: Store) -> None:
    h = harness(APPROVAL)
    running = asyncio.create_task(h.run("gated"))
    run_id = await wait_for_waiting(store)
    await asyncio.to_thread(store.runs.decide, run_id, ApprovalDecision.REJECTED, "bob")
    record = await asyncio.wait_for(running, 10)
    assert record.status == "failed"
    assert statuses(record) == ["rejected", "not_run"]
    assert "rejected by bob" in record.steps[0].output


async def test_approval_without_decision_expires(harness: Any) -> None:
    h = harness(
        """\
runbooks:
  gated:
    steps:
      - approval: Anyone?
        timeout: 300ms
"""
    )
    record = await h.run("gated")
    assert record.status == "failed"
    assert statuses(record) == ["expired"]
    assert "no decision within" in record.steps[0].output


async def test_retry_pauses_and_the_wait_for_approval_follow_the_executors_clock(
    harness: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runbooks_module, "RETRY_BACKOFF_S", (60.0, 120.0))
    counter = tmp_path / "counter"
    code = (
        f"import pathlib, sys; p = pathlib.Path({str(counter)!r}); "
        "n = int(p.read_text()) + 1 if p.exists() else 1; p.write_text(str(n)); "
        "sys.exit(0 if n >= 3 else 1)"
    )
    h = harness(
        f"""\
runbooks:
  gated:
    steps:
      - command: {py(code)}
        retries: 2
      - approval: Go on?
        timeout: 1h
"""
    )
    started = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    clock = FakeClock(started)
    executor = h.executor(clock=clock, approval_poll_s=60.0)
    run = asyncio.create_task(executor.execute("gated", trigger="cli"))
    await clock.wait_for_sleepers(1)  # the pause after the first failure
    assert counter.read_text() == "1"
    await clock.advance(60)  # the second attempt fails too: a pause of 120 s
    assert counter.read_text() == "2"
    await clock.advance(120)  # the third succeeds; the approval waits
    assert counter.read_text() == "3"
    await clock.advance(timedelta(minutes=59))
    assert not run.done()
    await clock.advance(timedelta(minutes=1))
    record = await run
    assert record is not None
    assert statuses(record) == ["ok", "expired"]
    retried, approval = record.steps
    assert retried.attempts == 3
    assert (retried.started_at, retried.finished_at) == (started, started + timedelta(minutes=3))
    expired_at = started + timedelta(hours=1, minutes=3)
    assert (approval.started_at, approval.finished_at) == (
        started + timedelta(minutes=3),
        expired_at,
    )
    assert (record.started_at, record.finished_at) == (started, expired_at)


# --- dry run ------------------------------------------------------------------------------


def snapshot(base: Path) -> list[tuple[str, int, int]]:
    entries = []
    for directory, dirs, files in os.walk(base):
        for name in dirs + files:
            info = Path(directory, name).lstat()
            entries.append((str(Path(directory, name)), info.st_size, info.st_mtime_ns))
    return sorted(entries)


async def test_dry_run_plans_and_changes_nothing(harness: Any, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    old = time.time() - 10 * DAY_S
    for name in ("a.log", "b.log", "keep.txt"):
        (logs / name).write_text("data\n")
        os.utime(logs / name, (old, old))
    (logs / "fresh.log").write_text("new\n")
    marker = tmp_path / "command-ran"
    h = harness(
        f"""\
targets:
  app-logs: {{kind: logs, path: {logs}, pattern: "*.log"}}
  box: {{kind: host}}
checks:
  up: {{target: box, probe: uptime}}
runbooks:
  tidy:
    steps:
      - checks: {{names: [up]}}
      - task: files.cleanup
        target: app-logs
        with: {{older_than: 1d}}
      - command: {py(f"open({str(marker)!r}, 'w').write('x')")}
      - manual: Look at the disk
      - approval: OK to go?
"""
    )
    before = snapshot(logs)
    record = await h.run("tidy", dry_run=True)
    assert snapshot(logs) == before
    assert not marker.exists()
    assert record.dry_run is True
    assert record.status == "succeeded"
    assert record.message == "dry run: 5 step(s) planned, nothing changed"
    assert statuses(record) == ["planned"] * 5
    cleanup = record.steps[1]
    assert cleanup.detail["predictable"] is True
    subjects = {change["subject"] for change in cleanup.detail["changes"]}
    assert {Path(subject).name for subject in subjects} == {"a.log", "b.log"}
    assert "a.log" in cleanup.output and "fresh.log" not in cleanup.output
    command = record.steps[2]
    assert command.detail["predictable"] is False
    assert "cannot be predicted" in command.output
    assert "skipped" not in command.output
    plan = record.detail["plan"]
    assert [entry["kind"] for entry in plan] == ["checks", "task", "command", "manual", "approval"]
    assert plan[2]["predictable"] is False
    assert plan[1]["changes"] == cleanup.detail["changes"]


# --- cancellation -------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); read its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def test_cancellation_records_run_and_step_cancelled(
    harness: Any, store: Store, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    h = harness(
        f"""\
runbooks:
  long:
    steps:
      - command: {py(code)}
      - manual: later
"""
    )
    running = asyncio.create_task(h.run("long"))
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the command never started"
        await asyncio.sleep(0.02)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    (run,) = store.runs.list_runs()
    record = store.runs.get_run(run.id)
    assert record is not None
    assert record.status == "cancelled"
    assert "cancelled" in record.message
    assert record.finished_at is not None
    assert statuses(record) == ["cancelled", "not_run"]
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(pid):
        assert time.monotonic() < deadline, "the cancelled step's process still runs"
        await asyncio.sleep(0.05)


async def test_cancellation_while_waiting_for_approval(harness: Any, store: Store) -> None:
    running = asyncio.create_task(harness(APPROVAL).run("gated"))
    run_id = await wait_for_waiting(store)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    record = store.runs.get_run(run_id)
    assert record is not None
    assert record.status == "cancelled"
    assert statuses(record) == ["cancelled", "not_run"]


async def test_scheduled_firing_claimed_twice_runs_once(harness: Any, store: Store) -> None:
    from datetime import UTC, datetime

    h = harness(MANUAL)
    firing = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
    first = await h.executor().execute("review", trigger="schedule", scheduled_for=firing)
    second = await h.executor().execute("review", trigger="schedule", scheduled_for=firing)
    assert first is not None and first.trigger == "schedule"
    assert second is None
    assert len(store.runs.list_runs()) == 1


async def test_unknown_runbook_raises_key_error(harness: Any) -> None:
    with pytest.raises(KeyError):
        await harness(MANUAL).executor().execute("nope", trigger="cli")


async def test_secrets_in_step_titles_are_never_stored(
    harness: Any, store: Store, tmp_path: Path
) -> None:
    h = harness(
        f"""\
runbooks:
  leaky:
    on_failure: continue
    steps:
      - manual: "Rotate the key ${{API_TOKEN}} by hand"
      - name: "call with ${{API_TOKEN}}"
        command: {py("import sys; sys.exit(1)")}
      - approval: "Approve use of ${{API_TOKEN}}?"
        timeout: 100ms
""",
        {"API_TOKEN": SECRET},
    )
    seen: list[str] = []
    dry = await h.executor(on_step=lambda _p, title, _r: seen.append(title)).execute(
        "leaky", trigger="cli", dry_run=True
    )
    real = await h.run("leaky")
    assert dry is not None and real.status == "failed"
    for record in (dry, real):
        for step in record.steps:
            assert SECRET not in step.name and SECRET not in step.output
        assert SECRET not in record.message and SECRET not in str(record.detail)
    assert seen and all(SECRET not in title for title in seen)
    store.close()
    for path in (tmp_path / ".upkeep").iterdir():
        assert SECRET.encode() not in path.read_bytes(), path
