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
  through ``upkeep approve`` or the API, or until the step's timeout (default 1h);
* ``wait`` — the run pauses for the given duration (between the stages of a rollout);
* ``watch`` — the selected checks run every ``every`` for ``for``, their results stored
  with the run; the step fails as soon as one is ``critical`` or ``unknown`` (with
  ``fail_on: warning``, a ``warning`` too) and succeeds when the period passes clean.

Each step has ``timeout``, ``retries`` (not for manual, approval, wait and watch) and
``on_failure`` (``stop``: the remaining steps are recorded ``not_run``; ``continue``). The
runbook's own ``timeout`` bounds its steps.

Phases: a runbook's ``on_failure`` may be a list of rollback steps instead of a policy;
they run (phase ``rollback``) when a step failed or the runbook timed out, and are recorded
``not_run`` otherwise. ``finally`` steps run last, always (after success, failure, timeout
and rollback alike; a failed ``finally`` step does not stop the others unless it says
``on_failure: stop``). Neither runs when the run is cancelled or its process dies. A
failed rollback or ``finally`` step fails the run; the run's message says whether the
rollback ran and how it ended.

Resuming: the times a wait, watch or approval step waits for are wall-clock deadlines kept
in the step's detail (``until``; a watch also keeps its rounds and counts). When a daemon
stops while a run is in such a step, it hands the run over (``RunLog.release_run``); when
it dies, the run is orphaned; either way the next leader takes the run over
(``RunLog.sweep_orphans`` with ``can_resume``) and ``resume`` continues it with the time
left, then the remaining steps. A run that stopped in any other step, or whose runbook
changed meanwhile, is marked ``interrupted``, without its rollback or ``finally``: which of
them is safe to run after an unknown partial step is the operator's call. Runs started
by ``upkeep run`` are never resumed by a daemon (their person is at the terminal).

A dry run records every step's plan, rollback and ``finally`` included, and changes
nothing: tasks say what they would change (or that it cannot be predicted), commands say
they would run and that their effect cannot be predicted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from upkeep.core.clock import SYSTEM_CLOCK, Clock
from upkeep.core.durations import format_duration
from upkeep.core.status import Status, worst
from upkeep.store.runs import ApprovalDecision, RunStatus, RunTrigger, StepStatus

if TYPE_CHECKING:
    from upkeep.alerting.manager import AlertManager
    from upkeep.config.loader import LoadedConfig
    from upkeep.config.models import (
        CheckSelector,
        FlowStep,
        Phase,
        RunbookConfig,
        StepConfig,
        UpkeepConfig,
    )
    from upkeep.core.results import CheckResult
    from upkeep.engine.runner import CheckRunner
    from upkeep.io.http import HttpClient
    from upkeep.store.runs import RunRecord, StepRecord
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

STEP_KINDS = ("checks", "task", "command", "manual", "approval", "wait", "watch")
RESUMABLE_KINDS = frozenset({"wait", "watch", "approval"})
"""Steps that only wait (on the clock or a person): a run stopped in one can be resumed."""
UNTRIED_KINDS = frozenset({"manual", "approval", "wait", "watch"})
"""Steps ``retries`` does not apply to."""

ManualConfirm = Callable[[str], Awaitable[bool]]
StepListener = Callable[[int, str, "StepReport"], None]
"""Called with (position, step title, report) as each step ends: the CLI prints progress."""


def step_kind(step: StepConfig) -> str:
    """Given a step, return its kind: checks, task, command, manual, approval, wait or watch."""
    for kind in STEP_KINDS:
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
    if step.wait is not None:
        return f"wait {format_duration(step.wait)}"
    if step.watch is not None:
        selector = step.watch.checks
        parts = [*selector.names, *(f"{k}={v}" for k, v in selector.labels.items())]
        watched = " ".join(parts) if parts else "all checks"
        return f"watch {watched} for {format_duration(step.watch.for_)}"
    text = step.manual if step.manual is not None else step.approval or ""
    return text if len(text) <= 80 else text[:77] + "..."


def planned_steps(loaded: LoadedConfig, runbook: RunbookConfig) -> list[tuple[str, str, str]]:
    """Given a config and one of its runbooks, return its steps as a run records them:
    (title, kind, phase), steps first, then the rollback, then ``finally``."""
    # A title is made from config text, which may hold a secret: redact it too.
    return [
        (loaded.redactor.redact(step_title(entry.step)), step_kind(entry.step), entry.phase)
        for entry in runbook.flow()
    ]


def can_resume(loaded: LoadedConfig, record: RunRecord) -> bool:
    """Given a config and an unfinished run (with its steps) whose owner is gone, return
    whether a daemon on this config can take it over: not a dry run, not started by
    ``upkeep run``, its runbook's steps unchanged in this config, and stopped inside a
    wait, watch or approval step."""
    runbook = loaded.config.runbooks.get(record.runbook)
    if record.dry_run or record.trigger == "cli" or runbook is None:
        return False
    recorded = [(step.name, step.kind, step.phase) for step in record.steps]
    if recorded != planned_steps(loaded, runbook):
        return False
    current = [step for step in record.steps if step.status in _IN_PROGRESS]
    return len(current) == 1 and current[0].kind in RESUMABLE_KINDS


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
        hand_over: bool = False,
    ) -> None:
        self.loaded = loaded
        # The daemon's executors leave a run stopped in a wait, watch or approval step for
        # the next leader (``resume``); the CLI's cancel it (its person is there).
        self.hand_over = hand_over
        # Reports sit above the engine; whoever builds the executor hands them down.
        self.reports = reports
        # Run and step times, retry pauses, waits, watches and the wait for an approval
        # follow it; the timeouts of the work itself (runbook, step, command) are real
        # time.
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
        before it propagates; a command step's process tree has ended by then. An executor
        that hands runs over (``hand_over``, the daemon's) leaves a run cancelled in a
        wait, watch or approval step unfinished for the next leader to resume instead.
        Raise KeyError if there is no such runbook.
        """
        runbook = self.loaded.config.runbooks[name]
        started_at = self.clock.now()
        run_id = await asyncio.to_thread(
            self.store.runs.start_run,
            runbook=name,
            trigger=trigger,
            triggered_by=triggered_by,
            scheduled_for=scheduled_for,
            owner=self.owner,
            steps=planned_steps(self.loaded, runbook),
            dry_run=dry_run,
            now=started_at,
            alert_id=alert_id,
        )
        if run_id is None:
            return None
        if self.on_start is not None:
            self.on_start(run_id)
        return await self._drive(name, runbook, run_id, trigger, dry_run, started_at, {})

    def can_resume(self, record: RunRecord) -> bool:
        """Given an unfinished run, return whether this executor can take it over
        (``can_resume`` on its config)."""
        return can_resume(self.loaded, record)

    async def resume(self, run_id: int) -> RunRecord | None:
        """Given the id of a run this process has taken over (``RunLog.sweep_orphans``),
        continue it from the step it stopped in, with that step's time left, then run the
        remaining steps as ``execute`` does; return the stored run (None if there is no
        such run). A run this executor cannot resume (``can_resume``) is marked
        ``interrupted`` instead.
        """
        run_log = self.store.runs
        record = await asyncio.to_thread(run_log.get_run, run_id)
        if record is None:
            return None
        if not self.can_resume(record):
            await asyncio.to_thread(self._close_unfinished, run_id, StepStatus.INTERRUPTED)
            await asyncio.to_thread(
                run_log.finish_run,
                run_id,
                RunStatus.INTERRUPTED,
                "the process running it stopped and the run cannot be resumed here "
                "(its runbook changed)",
                None,
                self.clock.now(),
            )
            return await asyncio.to_thread(run_log.get_run, run_id)
        current = next(step for step in record.steps if step.status in _IN_PROGRESS)
        logger.warning(
            "resuming run %d of runbook %s at step %d (%s)",
            run_id,
            record.runbook,
            current.position + 1,
            current.kind,
        )
        runbook = self.loaded.config.runbooks[record.runbook]
        recorded = {step.position: step for step in record.steps}
        return await self._drive(
            record.runbook,
            runbook,
            run_id,
            record.trigger,
            record.dry_run,
            record.started_at,
            recorded,
        )

    async def _drive(
        self,
        name: str,
        runbook: RunbookConfig,
        run_id: int,
        trigger: str,
        dry_run: bool,
        started_at: datetime,
        recorded: dict[int, StepRecord],
    ) -> RunRecord | None:
        """Run (or, with ``recorded`` steps, continue) a run's phases and record its end."""
        run_log = self.store.runs
        progress = _Progress()
        flow = list(enumerate(runbook.flow()))
        phases = {
            phase: [(position, entry) for position, entry in flow if entry.phase == phase]
            for phase in ("main", "rollback", "finally")
        }
        main_positions = [position for position, _ in phases["main"]]
        try:
            if runbook.timeout is None:
                await self._run_phase(
                    name, runbook, phases["main"], run_id, dry_run, progress, recorded
                )
            else:
                # A resumed run has only the time its first process left it.
                left = runbook.timeout - (self.clock.now() - started_at)
                try:
                    async with asyncio.timeout(max(left.total_seconds(), 0.0)):
                        await self._run_phase(
                            name, runbook, phases["main"], run_id, dry_run, progress, recorded
                        )
                except TimeoutError:
                    progress.timed_out = True
                    progress.current = None
                    await asyncio.to_thread(
                        self._close_unfinished, run_id, StepStatus.TIMED_OUT, main_positions
                    )
            if dry_run or progress.phase("main").failures or progress.timed_out:
                await self._run_phase(
                    name, runbook, phases["rollback"], run_id, dry_run, progress, recorded
                )
            else:
                for position, entry in phases["rollback"]:
                    await self._skip(position, entry, run_id, "not run: no step failed")
            await self._run_phase(
                name, runbook, phases["finally"], run_id, dry_run, progress, recorded
            )
        except asyncio.CancelledError as cancelled:
            current = progress.current
            # As ``can_resume`` rules: never a dry run, nor a run of ``upkeep run``.
            resumable = not dry_run and trigger != "cli" and current in RESUMABLE_KINDS
            if self.hand_over and resumable:
                try:
                    released = await asyncio.shield(
                        asyncio.to_thread(run_log.release_run, run_id, self.owner)
                    )
                except Exception as error:  # noqa: BLE001 - then it is recorded cancelled, if it can be
                    logger.warning(
                        "run %d could not be handed over: %s", run_id, self._redact(str(error))
                    )
                    released = False
                if released:
                    logger.warning(
                        "run %d of runbook %s left in its %s step for the next leader to resume",
                        run_id,
                        name,
                        current,
                    )
                    raise
            # The canceller may say why (the CLI: "interrupted by SIGTERM"); the daemon's
            # drain does not.
            why = str(cancelled.args[0]) if cancelled.args else "upkeep is shutting down"
            await asyncio.shield(
                asyncio.to_thread(self._cancel_run, run_id, self._redact(f"cancelled: {why}"))
            )
            raise
        status, message = _outcome(runbook, progress, dry_run)
        await asyncio.to_thread(
            run_log.finish_run,
            run_id,
            status,
            self._redact(message),
            {"plan": progress.plan} if not progress.timed_out else {"plan": []},
            self.clock.now(),
        )
        return await asyncio.to_thread(run_log.get_run, run_id)

    def _cancel_run(self, run_id: int, message: str) -> None:
        self._close_unfinished(run_id, StepStatus.CANCELLED)
        self.store.runs.finish_run(run_id, RunStatus.CANCELLED, message, now=self.clock.now())

    def _close_unfinished(
        self, run_id: int, status: StepStatus, positions: list[int] | None = None
    ) -> None:
        """Given a run, record its running steps (of ``positions``, default all) as
        ``status`` and its pending ones as ``not_run``."""
        moment = self.clock.now()
        for step in self.store.runs.get_run_steps(run_id):
            if positions is not None and step.position not in positions:
                continue
            if step.status in (StepStatus.RUNNING, StepStatus.WAITING):
                self.store.runs.update_step(
                    run_id, step.position, status=status, finished_at=moment
                )
            elif step.status == StepStatus.PENDING:
                self.store.runs.update_step(run_id, step.position, status=StepStatus.NOT_RUN)

    async def _skip(self, position: int, entry: FlowStep, run_id: int, why: str) -> None:
        """Record a step ``not_run`` and tell the listener why."""
        await asyncio.to_thread(
            self.store.runs.update_step, run_id, position, status=StepStatus.NOT_RUN
        )
        # Reported like any other step, so a person watching the run sees what was left
        # undone, not a list that ends at the failure.
        if self.on_step is not None:
            self.on_step(
                position,
                self._redact(step_title(entry.step)),
                StepReport(StepStatus.NOT_RUN, why, _phase_detail(entry.phase)),
            )

    async def _run_phase(
        self,
        name: str,
        runbook: RunbookConfig,
        entries: list[tuple[int, FlowStep]],
        run_id: int,
        dry_run: bool,
        progress: _Progress,
        recorded: dict[int, StepRecord],
    ) -> None:
        """Run one phase's steps (position, step) in order, keeping count in ``progress``;
        steps ``recorded`` as ended by an earlier process count as they ended."""
        run_log = self.store.runs
        for position, entry in entries:
            step = entry.step
            state = progress.phase(entry.phase)
            # The runbook's policy rules its steps and the rollback; ``finally`` steps all
            # run unless one says stop.
            policy = step.on_failure or (runbook.policy if entry.phase != "finally" else "continue")
            title = self._redact(step_title(step))
            before = recorded.get(position)
            if before is not None and before.status not in _UNSTARTED:
                state.count(title, before.status, policy, progress)
                continue
            if state.stopped:
                await self._skip(position, entry, run_id, "not run: an earlier step failed")
                continue
            resumed = before is not None and before.status in _IN_PROGRESS
            if not resumed:
                await asyncio.to_thread(
                    run_log.update_step,
                    run_id,
                    position,
                    status=StepStatus.RUNNING,
                    started_at=self.clock.now(),
                )
            call = _Call(
                name,
                position,
                entry.phase,
                step,
                run_id,
                dry_run,
                before.detail if resumed and before is not None else None,
            )
            progress.current = step_kind(step)
            raw_report, attempts = await self._run_with_retries(call)
            progress.current = None
            # Everything recorded or shown from here on is redacted and capped.
            report = StepReport(
                raw_report.status,
                _cap(self._redact(raw_report.output)),
                # redact_value keeps the shape: a dict comes back a dict.
                cast(
                    "dict[str, Any]",
                    self.loaded.redactor.redact_value(
                        {**raw_report.detail, **_phase_detail(entry.phase)}
                    ),
                ),
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
                plan = {k: v for k, v in report.detail.items() if k != "phase"}
                progress.plan.append(
                    {"step": title, "kind": step_kind(step), **_phase_detail(entry.phase), **plan}
                )
            state.count(title, report.status, policy, progress)

    async def _run_with_retries(self, call: _Call) -> tuple[StepReport, int]:
        kind = step_kind(call.step)
        tries = 1 if call.dry_run or kind in UNTRIED_KINDS else call.step.retries + 1
        report = StepReport(StepStatus.FAILED)
        for attempt in range(1, tries + 1):
            report = await self._run_step(call)
            if not report.failed or attempt == tries:
                return report, attempt
            pause = RETRY_BACKOFF_S[min(attempt - 1, len(RETRY_BACKOFF_S) - 1)]
            logger.info(
                "runbook %s step %d failed (attempt %d of %d); retrying in %gs",
                call.runbook,
                call.position,
                attempt,
                tries,
                pause,
            )
            await self.clock.sleep(pause)
        return report, tries

    async def _run_step(self, call: _Call) -> StepReport:
        kind = step_kind(call.step)
        step, run_id, dry_run = call.step, call.run_id, call.dry_run
        if kind == "checks":
            return await self._checks_step(step, run_id, dry_run)
        if kind == "task":
            return await self._task_step(call.runbook, call.position, step, run_id, dry_run)
        if kind == "command":
            return await self._command_step(step, dry_run)
        if kind == "manual":
            return await self._manual_step(step, dry_run)
        if kind == "wait":
            return await self._wait_step(call)
        if kind == "watch":
            return await self._watch_step(call)
        return await self._approval_step(call)

    async def _save_state(self, call: _Call, state: dict[str, Any]) -> None:
        """Keep what a waiting step needs to be resumed in its detail (with its phase),
        redacted as every stored detail is (an approval's question is config text)."""
        detail = self.loaded.redactor.redact_value({**state, **_phase_detail(call.phase)})
        await asyncio.to_thread(
            self.store.runs.update_step, call.run_id, call.position, detail=detail
        )

    def _deadline(self, call: _Call, span: timedelta) -> datetime:
        """Return when a waiting step ends: as its first process recorded it when resumed,
        else ``span`` from now."""
        until = (call.resume or {}).get("until")
        if isinstance(until, str):
            with contextlib.suppress(ValueError):
                parsed = datetime.fromisoformat(until)
                if parsed.tzinfo is not None:
                    return parsed
        return self.clock.now() + span

    # --- step kinds ------------------------------------------------------------------------

    def _selected_checks(self, selector: CheckSelector | None) -> list[Any]:
        from upkeep.engine.runner import select_checks

        names = selector.names if selector else []
        labels = selector.labels if selector else {}
        return select_checks(self.loaded.checks.values(), names, labels)

    async def _checks_step(self, step: StepConfig, run_id: int, dry_run: bool) -> StepReport:
        selected = self._selected_checks(step.checks)
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
            runbook=runbook,
            step_position=position,
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

    async def _wait_step(self, call: _Call) -> StepReport:
        span = call.step.wait or timedelta(0)
        if call.dry_run:
            return StepReport(
                StepStatus.PLANNED,
                f"would wait {_shown(span)}",
                {"wait": _shown(span), "predictable": True, "changes": []},
            )
        until = self._deadline(call, span)
        await self._save_state(call, {"wait": _shown(span), "until": until.isoformat()})
        await self.clock.sleep_until(until)
        resumed = " (resumed after a restart)" if call.resume is not None else ""
        return StepReport(
            StepStatus.OK,
            f"waited {_shown(span)}{resumed}",
            {"wait": _shown(span), "until": until.isoformat()},
        )

    async def _watch_step(self, call: _Call) -> StepReport:
        watch = call.step.watch
        if watch is None:  # the step's kind says otherwise; unreachable
            raise ValueError("a watch step has no watch")
        selected = self._selected_checks(watch.checks)
        names = [check.name for check in selected]
        period = f"every {_shown(watch.every)} for {_shown(watch.for_)}"
        if call.dry_run:
            return StepReport(
                StepStatus.PLANNED,
                f"would run {len(names)} check(s) {period}: {', '.join(names) or 'none'} "
                "(read-only)",
                {"checks": names, "predictable": True, "changes": []},
            )
        if not selected:
            return StepReport(
                StepStatus.FAILED, "no check matches this step's selection", {"checks": []}
            )
        bad = {Status.CRITICAL, Status.UNKNOWN}
        if watch.fail_on == "warning":
            bad.add(Status.WARNING)
        until = self._deadline(call, watch.for_)
        previous = call.resume or {}
        rounds = int(previous.get("rounds", 0))
        counts: dict[str, int] = {
            str(label): int(count) for label, count in dict(previous.get("counts", {})).items()
        }
        timeout_s = call.step.timeout.total_seconds() if call.step.timeout else None
        while True:
            # A resumed watch looks at once: nobody watched while no process ran it.
            try:
                async with asyncio.timeout(timeout_s):
                    results = await self.checks.run_many(selected)
            except TimeoutError:
                return StepReport(
                    StepStatus.TIMED_OUT,
                    f"checks did not finish within {_shown(call.step.timeout)}",
                    {"checks": names, "until": until.isoformat(), "rounds": rounds},
                )
            await self._record(results, call.run_id)
            rounds += 1
            for result in results:
                counts[result.status.label] = counts.get(result.status.label, 0) + 1
            state: dict[str, Any] = {
                "checks": names,
                "until": until.isoformat(),
                "every": _shown(watch.every),
                "rounds": rounds,
                "counts": counts,
                "worst": worst([Status.from_label(label) for label in counts]).label,
            }
            turned = [result for result in results if result.status in bad]
            if turned:
                lines = [f"{r.status.label:<8} {r.check}: {r.message}" for r in turned]
                return StepReport(
                    StepStatus.FAILED,
                    f"turned bad in round {rounds} at "
                    f"{self.clock.now().astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC:\n"
                    + "\n".join(lines),
                    state,
                )
            now = self.clock.now()
            if now >= until:
                warned = counts.get(Status.WARNING.label, 0)
                summary = ", ".join(f"{count} {label}" for label, count in sorted(counts.items()))
                return StepReport(
                    StepStatus.WARNING if warned else StepStatus.OK,
                    f"watched {len(names)} check(s) {period}: {rounds} round(s), {summary}",
                    state,
                )
            await self._save_state(call, state)
            await self.clock.sleep_until(min(now + watch.every, until))

    async def _approval_step(self, call: _Call) -> StepReport:
        step, run_id, position = call.step, call.run_id, call.position
        text = step.approval or ""
        timeout = step.timeout or DEFAULT_APPROVAL_TIMEOUT
        if call.dry_run:
            return StepReport(
                StepStatus.PLANNED,
                f"would wait up to {_shown(timeout)} for approval: {text}",
                {"approval": text},
            )
        run_log = self.store.runs
        until = self._deadline(call, timeout)
        await asyncio.to_thread(run_log.update_step, run_id, position, status=StepStatus.WAITING)
        await self._save_state(call, {"approval": text, "until": until.isoformat()})
        await asyncio.to_thread(run_log.set_run_status, run_id, RunStatus.WAITING)
        logger.warning(
            "run %d waits for approval: %s (upkeep approve %d, until %s)",
            run_id,
            text,
            run_id,
            until.isoformat(),
        )
        while True:
            decision, by = await asyncio.to_thread(run_log.step_decision, run_id, position)
            if decision is not None or self.clock.now() >= until:
                break
            await self.clock.sleep(
                min(self.approval_poll_s, (until - self.clock.now()).total_seconds())
            )
        # Not on cancellation: a run handed over in this step stays ``waiting``.
        await asyncio.to_thread(run_log.set_run_status, run_id, RunStatus.RUNNING)
        if decision is None:
            return StepReport(
                StepStatus.EXPIRED,
                f"no decision within {_shown(timeout)}: {text}",
                {"approval": text},
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


_IN_PROGRESS = (StepStatus.RUNNING, StepStatus.WAITING)
_UNSTARTED = (StepStatus.PENDING, *_IN_PROGRESS)
"""Recorded step statuses a resumed run still has to run (or finish)."""


def _phase_detail(phase: str) -> dict[str, Any]:
    """Return what a step's detail says about its phase: nothing for the main steps."""
    return {} if phase == "main" else {"phase": phase}


@dataclass(frozen=True)
class _Call:
    """One step to run: where it is in the run, and what its first process left (a
    resumed wait, watch or approval) or None."""

    runbook: str
    position: int
    phase: Phase
    step: StepConfig
    run_id: int
    dry_run: bool
    resume: dict[str, Any] | None


@dataclass
class _PhaseState:
    """How one phase went so far: steps that ran, failures, and whether it stopped."""

    ran: int = 0
    failures: list[str] = field(default_factory=list)
    stopped: bool = False

    def count(self, title: str, status: StepStatus, policy: str, progress: _Progress) -> None:
        """Given how a step ended and its ``on_failure`` policy, count it."""
        if status == StepStatus.NOT_RUN:
            return
        self.ran += 1
        if status == StepStatus.TODO:
            progress.todo.append(title)
        if status.failed:
            self.failures.append(f"{title}: {status}")
            if policy == "stop":
                self.stopped = True


@dataclass
class _Progress:
    """A run's progress: per phase, the manual items left, the dry run's plan, whether the
    runbook timed out, and the kind of the step running now."""

    phases: dict[str, _PhaseState] = field(default_factory=dict)
    todo: list[str] = field(default_factory=list)
    plan: list[dict[str, Any]] = field(default_factory=list)
    timed_out: bool = False
    current: str | None = None

    def phase(self, name: str) -> _PhaseState:
        """Given a phase's name, return its state."""
        return self.phases.setdefault(name, _PhaseState())


def _outcome(runbook: RunbookConfig, progress: _Progress, dry_run: bool) -> tuple[RunStatus, str]:
    """Given a runbook and how its run went, return the run's final status and message."""
    main, rollback, final = (progress.phase(name) for name in ("main", "rollback", "finally"))
    parts = (
        [f"runbook timed out after {_shown(runbook.timeout)}"]
        if progress.timed_out
        else list(main.failures)
    )
    if rollback.failures:
        parts.append(f"rollback failed: {'; '.join(rollback.failures)}")
    elif rollback.ran and not dry_run:
        parts.append(f"rollback ran: {rollback.ran} step(s) ok")
    if final.failures:
        parts.append(f"finally failed: {'; '.join(final.failures)}")
    if progress.timed_out or main.failures or rollback.failures or final.failures:
        return RunStatus.FAILED, "; ".join(parts)
    if dry_run:
        return (
            RunStatus.SUCCEEDED,
            f"dry run: {len(progress.plan)} step(s) planned, nothing changed",
        )
    message = f"{len(runbook.steps)} step(s) done"
    if progress.todo:
        message += f"; manual item(s) left to do: {', '.join(progress.todo)}"
    return RunStatus.SUCCEEDED, message


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
