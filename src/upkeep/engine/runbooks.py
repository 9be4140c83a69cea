"""Run a runbook: its steps in order, each recorded in the store as it starts and ends.

Step kinds and what "failed" means for each:

* ``checks`` — the selected checks run now and are stored with the run; the step fails if
  any is ``critical`` or ``unknown`` (a ``warning`` is reported but passes);
* ``task`` — a registered task (``tasks/registry.py``); ``TaskFailed`` or a timeout fails
  it, any other exception is recorded as a task bug and fails it;
* ``command`` — argv through the subprocess seam, output captured, capped and redacted;
  a non-zero exit or a timeout fails it;
* ``manual`` — a checklist item for a person: confirmed at the prompt of an interactive
  ``upkeep run``, otherwise recorded as ``todo`` and never blocks the run;
* ``approval`` — the run waits (status ``waiting``) until someone approves or rejects it
  through ``upkeep approve`` or the API, or until the step's timeout (default 1h).

Each step has ``timeout``, ``retries`` (not for manual and approval) and ``on_failure``
(``stop``: the remaining steps are recorded ``not_run``; ``continue``). The runbook's own
``timeout`` bounds the whole run. A dry run records every step's plan and changes nothing:
tasks say what they would change (or that it cannot be predicted), commands say they would
run and that their effect cannot be predicted.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from upkeep.core.clock import SYSTEM_CLOCK, Clock
from upkeep.core.durations import format_duration
from upkeep.core.status import Status, worst
from upkeep.store.runs import ApprovalDecision, RunStatus, RunTrigger, StepStatus

if TYPE_CHECKING:
    from upkeep.alerting.manager import AlertManager
    from upkeep.config.loader import LoadedConfig
    from upkeep.config.models import RunbookConfig, StepConfig, UpkeepConfig
    from upkeep.core.results import CheckResult
    from upkeep.engine.runner import CheckRunner
    from upkeep.io.http import HttpClient
    from upkeep.store.runs import RunRecord
    from upkeep.store.store import Store
    from upkeep.tasks.base import ReportMaker

logger = logging.getLogger(__name__)

MAX_STEP_OUTPUT_CHARS = 64 * 1024
"""How much of a step's output is kept in the run record; the rest is cut with a note."""
DEFAULT_TASK_TIMEOUT = timedelta(minutes=30)
DEFAULT_COMMAND_TIMEOUT = timedelta(minutes=10)
DEFAULT_APPROVAL_TIMEOUT = timedelta(hours=1)
APPROVAL_POLL_S = 1.0
"""How often a waiting approval step looks for a decision in the store."""
RETRY_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
"""Pause before retry N (the last value repeats)."""

ManualConfirm = Callable[[str], Awaitable[bool]]
StepListener = Callable[[int, str, "StepReport"], None]
"""Called with (position, step title, report) as each step ends: the CLI prints progress."""


def step_kind(step: StepConfig) -> str:
    """Given a step, return its kind: checks, task, command, manual or approval."""
    for kind in ("checks", "task", "command", "manual", "approval"):
        if getattr(step, kind) is not None:
            return kind
    raise ValueError("a step has no action")  # the config model makes this unreachable


def step_title(step: StepConfig) -> str:
    """Given a step, return the name people see: its ``name`` or one made from its action."""
    if step.name:
        return step.name
    if step.checks is not None:
        parts = [*step.checks.names, *(f"{k}={v}" for k, v in step.checks.labels.items())]
        return f"checks {' '.join(parts)}" if parts else "all checks"
    if step.task is not None:
        return f"{step.task} {step.target}" if step.target else step.task
    if step.command is not None:
        return f"command {step.command[0]}"
    text = step.manual if step.manual is not None else step.approval or ""
    return text if len(text) <= 80 else text[:77] + "..."


def _shown(span: timedelta | None) -> str:
    """Given a configured timeout, return it as the config writes it (``1h``, not
    ``1:00:00``); ``none`` for no limit."""
    return format_duration(span) if span is not None else "none"


def _cap(text: str) -> str:
    if len(text) <= MAX_STEP_OUTPUT_CHARS:
        return text
    cut = len(text) - MAX_STEP_OUTPUT_CHARS
    return text[:MAX_STEP_OUTPUT_CHARS] + f"\n[... {cut} more characters not kept]"


@dataclass
class StepReport:
    """How one step ended: status, output for people, and structured detail."""

    status: StepStatus
    output: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """Return whether this outcome counts as a failure for ``on_failure``."""
        return self.status.failed


class WindowClosed(Exception):  # noqa: N818 - reads as a state
    """A runbook that requires a window was asked to run outside it."""

    def __init__(self, runbook: str, window: str, next_opening: datetime | None) -> None:
        when = next_opening.isoformat() if next_opening else "never (no future opening)"
        super().__init__(
            f"runbook {runbook} runs only inside window {window}, which is closed; "
            f"it next opens at {when} (use --force to run it now)"
        )
        self.next_opening = next_opening


class RunbookExecutor:
    """Executes runbooks of one loaded config against one store, recording every step."""

    def __init__(
        self,
        loaded: LoadedConfig,
        store: Store,
        *,
        http: HttpClient,
        checks: CheckRunner,
        owner: str,
        manual_confirm: ManualConfirm | None = None,
        approval_poll_s: float = APPROVAL_POLL_S,
        on_step: StepListener | None = None,
        on_start: Callable[[int], None] | None = None,
        alerts: AlertManager | None = None,
        clock: Clock = SYSTEM_CLOCK,
        reports: ReportMaker | None = None,
    ) -> None:
        self.loaded = loaded
        # Reports sit above the engine; whoever builds the executor hands them down.
        self.reports = reports
        # Run and step times, retry pauses and the wait for an approval follow it; the
        # timeouts of the work itself (runbook, step, command) are real time.
        self.clock = clock
        self.store = store
        self.alerts = alerts
        self.http = http
        self.checks = checks
        self.owner = owner
        self.manual_confirm = manual_confirm
        self.approval_poll_s = approval_poll_s
        self.on_step = on_step
        self.on_start = on_start

    @property
    def _redact(self) -> Callable[[str], str]:
        return self.loaded.redactor.redact

    async def execute(
        self,
        name: str,
        *,
        trigger: RunTrigger,
        triggered_by: str | None = None,
        scheduled_for: datetime | None = None,
        dry_run: bool = False,
        alert_id: int | None = None,
    ) -> RunRecord | None:
        """Given a runbook name and how it was triggered, run it and return the stored run.

        Return None if ``scheduled_for`` names a firing another process has claimed, or
        ``alert_id`` an alert whose trigger of this runbook was decided elsewhere.
        Cancellation (a draining daemon, a signalled CLI) records the current step and the
        run as ``cancelled`` (with the cancel message as the reason, if one was given)
        before it propagates; a command step's process tree has ended by then. Raise
        KeyError if there is no such runbook.
        """
        runbook = self.loaded.config.runbooks[name]
        # A title is made from config text, which may hold a secret: redact it too.
        steps = [(self._redact(step_title(step)), step_kind(step)) for step in runbook.steps]
        run_log = self.store.runs
        run_id = await asyncio.to_thread(
            run_log.start_run,
            runbook=name,
            trigger=trigger,
            triggered_by=triggered_by,
            scheduled_for=scheduled_for,
            owner=self.owner,
            steps=steps,
            dry_run=dry_run,
            now=self.clock.now(),
            alert_id=alert_id,
        )
        if run_id is None:
            return None
        if self.on_start is not None:
            self.on_start(run_id)
        timeout_s = runbook.timeout.total_seconds() if runbook.timeout else None
        try:
            async with asyncio.timeout(timeout_s):
                status, message, plan = await self._run_steps(name, runbook, run_id, dry_run)
        except TimeoutError:
            await asyncio.to_thread(self._close_unfinished, run_id, StepStatus.TIMED_OUT)
            status = RunStatus.FAILED
            message = f"runbook timed out after {_shown(runbook.timeout)}"
            plan = []
        except asyncio.CancelledError as cancelled:
            # The canceller may say why (the CLI: "interrupted by SIGTERM"); the daemon's
            # drain does not.
            why = str(cancelled.args[0]) if cancelled.args else "upkeep is shutting down"
            await asyncio.shield(
                asyncio.to_thread(self._cancel_run, run_id, self._redact(f"cancelled: {why}"))
            )
            raise
        await asyncio.to_thread(
            run_log.finish_run,
            run_id,
            status,
            self._redact(message),
            {"plan": plan},
            self.clock.now(),
        )
        return await asyncio.to_thread(run_log.get_run, run_id)

    def _cancel_run(self, run_id: int, message: str) -> None:
        self._close_unfinished(run_id, StepStatus.CANCELLED)
        self.store.runs.finish_run(run_id, RunStatus.CANCELLED, message, now=self.clock.now())

    def _close_unfinished(self, run_id: int, status: StepStatus) -> None:
        moment = self.clock.now()
        for step in self.store.runs.get_run_steps(run_id):
            if step.status in (StepStatus.RUNNING, StepStatus.WAITING):
                self.store.runs.update_step(
                    run_id, step.position, status=status, finished_at=moment
                )
            elif step.status == StepStatus.PENDING:
                self.store.runs.update_step(run_id, step.position, status=StepStatus.NOT_RUN)

    async def _run_steps(
        self, name: str, runbook: RunbookConfig, run_id: int, dry_run: bool
    ) -> tuple[RunStatus, str, list[dict[str, Any]]]:
        run_log = self.store.runs
        failures: list[str] = []
        todo: list[str] = []
        plan: list[dict[str, Any]] = []
        stopped = False
        for position, step in enumerate(runbook.steps):
            title = self._redact(step_title(step))
            if stopped:
                await asyncio.to_thread(
                    run_log.update_step, run_id, position, status=StepStatus.NOT_RUN
                )
                # Reported like any other step, so a person watching the run sees what
                # the stop left undone, not a list that ends at the failure.
                if self.on_step is not None:
                    self.on_step(
                        position,
                        title,
                        StepReport(StepStatus.NOT_RUN, "not run: an earlier step failed", {}),
                    )
                continue
            started_at = self.clock.now()
            await asyncio.to_thread(
                run_log.update_step,
                run_id,
                position,
                status=StepStatus.RUNNING,
                started_at=started_at,
            )
            raw_report, attempts = await self._run_with_retries(
                name, position, step, run_id, dry_run
            )
            # Everything recorded or shown from here on is redacted and capped.
            report = StepReport(
                raw_report.status,
                _cap(self._redact(raw_report.output)),
                # redact_value keeps the shape: a dict comes back a dict.
                cast("dict[str, Any]", self.loaded.redactor.redact_value(raw_report.detail)),
            )
            await asyncio.to_thread(
                run_log.update_step,
                run_id,
                position,
                status=report.status,
                finished_at=self.clock.now(),
                attempts=attempts,
                output=report.output,
                detail=report.detail,
            )
            if self.on_step is not None:
                self.on_step(position, title, report)
            if dry_run:
                plan.append({"step": title, "kind": step_kind(step), **report.detail})
            if report.status == StepStatus.TODO:
                todo.append(title)
            if report.failed:
                failures.append(f"{title}: {report.status}")
                if (step.on_failure or runbook.on_failure) == "stop":
                    stopped = True
        if failures:
            return RunStatus.FAILED, "; ".join(failures), plan
        if dry_run:
            return (
                RunStatus.SUCCEEDED,
                f"dry run: {len(plan)} step(s) planned, nothing changed",
                plan,
            )
        message = f"{len(runbook.steps)} step(s) done"
        if todo:
            message += f"; manual item(s) left to do: {', '.join(todo)}"
        return RunStatus.SUCCEEDED, message, plan

    async def _run_with_retries(
        self, runbook: str, position: int, step: StepConfig, run_id: int, dry_run: bool
    ) -> tuple[StepReport, int]:
        kind = step_kind(step)
        tries = 1 if dry_run or kind in ("manual", "approval") else step.retries + 1
        report = StepReport(StepStatus.FAILED)
        for attempt in range(1, tries + 1):
            report = await self._run_step(runbook, position, step, run_id, dry_run)
            if not report.failed or attempt == tries:
                return report, attempt
            pause = RETRY_BACKOFF_S[min(attempt - 1, len(RETRY_BACKOFF_S) - 1)]
            logger.info(
                "runbook %s step %d failed (attempt %d of %d); retrying in %gs",
                runbook,
                position,
                attempt,
                tries,
                pause,
            )
            await self.clock.sleep(pause)
        return report, tries

    async def _run_step(
        self, runbook: str, position: int, step: StepConfig, run_id: int, dry_run: bool
    ) -> StepReport:
        kind = step_kind(step)
        if kind == "checks":
            return await self._checks_step(step, run_id, dry_run)
        if kind == "task":
            return await self._task_step(runbook, position, step, run_id, dry_run)
        if kind == "command":
            return await self._command_step(step, dry_run)
        if kind == "manual":
            return await self._manual_step(step, dry_run)
        return await self._approval_step(position, step, run_id, dry_run)

    # --- step kinds ------------------------------------------------------------------------

    def _selected_checks(self, step: StepConfig) -> list[Any]:
        from upkeep.engine.runner import select_checks

        selector = step.checks
        names = selector.names if selector else []
        labels = selector.labels if selector else {}
        return select_checks(self.loaded.checks.values(), names, labels)

    async def _checks_step(self, step: StepConfig, run_id: int, dry_run: bool) -> StepReport:
        selected = self._selected_checks(step)
        names = [check.name for check in selected]
        if dry_run:
            return StepReport(
                StepStatus.PLANNED,
                f"would run {len(names)} check(s): {', '.join(names) or 'none'} (read-only)",
                {"checks": names, "predictable": True, "changes": []},
            )
        if not selected:
            return StepReport(
                StepStatus.FAILED, "no check matches this step's selection", {"checks": []}
            )
        timeout_s = step.timeout.total_seconds() if step.timeout else None
        try:
            async with asyncio.timeout(timeout_s):
                results = await self.checks.run_many(selected)
        except TimeoutError:
            return StepReport(
                StepStatus.TIMED_OUT, f"checks did not finish within {_shown(step.timeout)}"
            )
        await self._record(results, run_id)
        worst_status = worst([result.status for result in results])
        lines = [f"{result.status.label:<8} {result.check}: {result.message}" for result in results]
        counts: dict[str, int] = {}
        for result in results:
            counts[result.status.label] = counts.get(result.status.label, 0) + 1
        failed = worst_status in (Status.CRITICAL, Status.UNKNOWN)
        return StepReport(
            StepStatus.FAILED
            if failed
            else (StepStatus.WARNING if worst_status is Status.WARNING else StepStatus.OK),
            "\n".join(lines),
            {"worst": worst_status.label, "counts": counts, "checks": names},
        )

    async def run_named_check(self, name: str, run_id: int | None = None) -> CheckResult:
        """Given a configured check's name, run it now, store the result and return it.

        Raise KeyError if there is no such check.
        """
        check = self.loaded.checks[name]
        result = await self.checks.run_one(check)
        await self._record([result], run_id)
        return result

    async def _record(self, results: list[CheckResult], run_id: int | None) -> None:
        """Store results with their alerts in one transaction; if alerting fails, the
        results are stored alone and the failure is logged (the step's outcome does not
        depend on alerting; the check's next result catches its alert up).
        """
        from upkeep.alerting.manager import AlertProcessingError

        if self.alerts is None:
            await asyncio.to_thread(self.store.write_results, results, run_id)
            return
        try:
            await asyncio.to_thread(self.alerts.record, results, run_id)
        except AlertProcessingError as error:
            logger.error("alerts of run %s: %s", run_id, error)

    async def _task_step(
        self, runbook: str, position: int, step: StepConfig, run_id: int, dry_run: bool
    ) -> StepReport:
        from upkeep.tasks.base import TaskContext, TaskFailed

        compiled = self.loaded.tasks[(runbook, position)]
        task = compiled.task()
        timeout = step.timeout or DEFAULT_TASK_TIMEOUT

        async def run_check(name: str) -> CheckResult:
            return await self.run_named_check(name, run_id)

        async def record_results(results: list[CheckResult]) -> None:
            await self._record(results, run_id)

        context = TaskContext(
            timeout=timeout,
            http=self.http,
            redactor=self.loaded.redactor,
            run_check=run_check,
            record_results=record_results,
            config=self.loaded.config,
            store=self.store,
            config_path=self.loaded.path,
            reports=self.reports,
        )
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout.total_seconds()):
                if dry_run:
                    plan = await task.plan(compiled.target, compiled.params, context)
                    lines = [plan.summary()]
                    lines += [
                        f"  {change.action} {change.subject}"
                        + (f" ({change.detail})" if change.detail else "")
                        for change in plan.changes
                    ]
                    return StepReport(StepStatus.PLANNED, "\n".join(lines), plan.as_dict())
                outcome = await task.run(compiled.target, compiled.params, context)
        except TimeoutError:
            return StepReport(
                StepStatus.TIMED_OUT, f"{step.task} did not finish within {_shown(timeout)}"
            )
        except TaskFailed as error:
            return StepReport(StepStatus.FAILED, f"{step.task} failed: {error}")
        except Exception as error:  # noqa: BLE001 - a task bug is recorded on the run, not a crash
            message = self._redact(f"{step.task} raised {type(error).__name__}: {error}")
            logger.warning("runbook %s step %d: %s", runbook, position, message)
            return StepReport(StepStatus.FAILED, message)
        elapsed_ms = (time.perf_counter() - started) * 1000
        lines = [outcome.message or f"{step.task} done"]
        lines += [
            f"  {change.action} {change.subject}" + (f" ({change.detail})" if change.detail else "")
            for change in outcome.changes
        ]
        lines += [
            f"  phase {phase.name}: {phase.status} {phase.message}".rstrip()
            for phase in outcome.phases
        ]
        return StepReport(
            StepStatus.OK, "\n".join(lines), {**outcome.as_dict(), "elapsed_ms": elapsed_ms}
        )

    async def _command_step(self, step: StepConfig, dry_run: bool) -> StepReport:
        from upkeep.io.process import ProcessStartError, run_process

        argv = step.command or []
        if dry_run:
            # Quoted as a shell would need it: ["sh", "-c", "echo 'a b'"] is three words,
            # which " ".join would show as five.
            shown = shlex.join(argv)
            return StepReport(
                StepStatus.PLANNED,
                f"would run {shown}; its effect cannot be predicted",
                {
                    "predictable": False,
                    "note": "an external command's effect cannot be known in advance",
                    "changes": [{"action": "run", "subject": shown, "detail": ""}],
                },
            )
        timeout = step.timeout or DEFAULT_COMMAND_TIMEOUT
        try:
            result = await run_process(argv, timeout_s=timeout.total_seconds(), env=step.env)
        except ProcessStartError as error:
            return StepReport(StepStatus.FAILED, str(error), {"argv": argv})
        # Each stream ends where it was cut: at the size limit, at a kill, or where the
        # command stopped writing (`head -c` of a key file). A secret's beginning left
        # there is masked too; plain redaction cannot recognise it.
        tidy = self.loaded.redactor.redact_cut
        output = tidy(result.stdout).rstrip("\n")
        if result.stderr:
            output += f"\n[stderr]\n{tidy(result.stderr).rstrip()}"
        detail = {
            "argv": argv,
            "exit_code": result.exit_code,
            "elapsed_ms": round(result.elapsed_ms, 3),
            "output_truncated": result.truncated,
        }
        if result.timed_out:
            return StepReport(
                StepStatus.TIMED_OUT, output + f"\n[timed out after {_shown(timeout)}]", detail
            )
        status = StepStatus.OK if result.exit_code == 0 else StepStatus.FAILED
        return StepReport(status, output, detail)

    async def _manual_step(self, step: StepConfig, dry_run: bool) -> StepReport:
        text = step.manual or ""
        if dry_run:
            return StepReport(StepStatus.PLANNED, f"would ask a person: {text}", {"manual": text})
        if self.manual_confirm is None:
            return StepReport(StepStatus.TODO, f"for a person to do: {text}", {"manual": text})
        done = await self.manual_confirm(text)
        return StepReport(
            StepStatus.DONE if done else StepStatus.TODO,
            f"{'confirmed' if done else 'not confirmed'}: {text}",
            {"manual": text, "confirmed": done},
        )

    async def _approval_step(
        self, position: int, step: StepConfig, run_id: int, dry_run: bool
    ) -> StepReport:
        text = step.approval or ""
        timeout = step.timeout or DEFAULT_APPROVAL_TIMEOUT
        if dry_run:
            return StepReport(
                StepStatus.PLANNED,
                f"would wait up to {_shown(timeout)} for approval: {text}",
                {"approval": text},
            )
        run_log = self.store.runs
        await asyncio.to_thread(run_log.update_step, run_id, position, status=StepStatus.WAITING)
        await asyncio.to_thread(run_log.set_run_status, run_id, RunStatus.WAITING)
        logger.warning(
            "run %d waits for approval: %s (upkeep approve %d, within %s)",
            run_id,
            text,
            run_id,
            _shown(timeout),
        )
        deadline = self.clock.monotonic() + timeout.total_seconds()
        try:
            while True:
                decision, by = await asyncio.to_thread(run_log.step_decision, run_id, position)
                if decision is not None:
                    break
                if self.clock.monotonic() >= deadline:
                    return StepReport(
                        StepStatus.EXPIRED,
                        f"no decision within {_shown(timeout)}: {text}",
                        {"approval": text},
                    )
                await self.clock.sleep(self.approval_poll_s)
        finally:
            await asyncio.shield(
                asyncio.to_thread(run_log.set_run_status, run_id, RunStatus.RUNNING)
            )
        # The decider's comment is stored in the step's detail by ``RunLog.decide``; keep it,
        # since recording this step's end replaces the detail.
        stored = await asyncio.to_thread(run_log.get_run_steps, run_id)
        comment = next((s.detail.get("comment") for s in stored if s.position == position), None)
        detail: dict[str, Any] = {"approval": text}
        suffix = ""
        if comment:
            detail["comment"] = comment
            suffix = f" ({comment})"
        if decision == ApprovalDecision.APPROVED:
            return StepReport(StepStatus.APPROVED, f"approved by {by}: {text}{suffix}", detail)
        return StepReport(StepStatus.REJECTED, f"rejected by {by}: {text}{suffix}", detail)


def runbook_summaries(config: UpkeepConfig, now: datetime) -> list[dict[str, Any]]:
    """Given the config and an aware moment, return every runbook as ``upkeep runbooks
    --json`` and ``GET /api/runbooks`` show it: name, description, schedule, timezone,
    window, step kinds, its next firing after ``now`` (ISO 8601, None if unscheduled) and
    the alerts that start it (``on_alert``, None if none do)."""
    from zoneinfo import ZoneInfo

    from upkeep.config.schedule import CronSchedule

    rows: list[dict[str, Any]] = []
    for name, runbook in config.runbooks.items():
        zone = ZoneInfo(runbook.timezone or config.timezone)
        following = (
            CronSchedule(runbook.schedule, zone).next_after(now) if runbook.schedule else None
        )
        rows.append(
            {
                "runbook": name,
                "description": runbook.description or "",
                "schedule": runbook.schedule,
                "timezone": zone.key,
                "window": runbook.window,
                "steps": [step_kind(step) for step in runbook.steps],
                "next": following.isoformat() if following else None,
                "on_alert": (
                    runbook.on_alert.model_dump(mode="json", exclude_none=True)
                    if runbook.on_alert is not None
                    else None
                ),
            }
        )
    return rows
