"""Remediation: runbooks that alerts start (``on_alert:``), within guard rails.

The alert manager records a trigger with each firing that a runbook's ``on_alert.match``
takes (``store.remediations``), in the firing's own transaction. The leader daemon's
``Remediator`` then decides each pending trigger, oldest first:

* the runbook is no longer started by alerts: suppressed;
* the alert fired on a result that a run of this very runbook recorded (its ``checks``
  step, a watch, a task's check): suppressed (loop guard);
* the alert resolved before the decision (a leader that comes late): suppressed;
* the runbook has a ``window:`` that is closed now: suppressed, as the schedule, ``upkeep
  run`` and the API refuse it (a ``dry_run_only`` run changes nothing and may start);
* the runbook has an unfinished run (any trigger, this daemon's or another's):
  suppressed; when the alert's check is one the runbook's own ``checks`` or ``watch``
  steps select, the reason says it is the loop guard;
* an alert-started run of it ended less than ``cooldown`` ago, or ``max_runs`` of them
  started within ``per``: suppressed;
* otherwise it starts, ``trigger: alert``, ``triggered_by: alert:<id> <check>``, as a dry
  run with ``dry_run_only``. Approval steps wait as in any run.

A run's insert claims its trigger in the same transaction (``RunLog.start_run``), and a
suppression only takes a trigger still pending, so each firing starts a runbook at most
once, whichever daemon decides and whatever crashes in between; a trigger whose decider
died before deciding stays pending for the next leader. Every decision, the run's start
and its outcome are on the alert's timeline (kind ``remediation``) and in the log. So
nothing loops: an alert starts a runbook once, its own checks do not start it again, and
cooldown and ``max_runs`` bound alerts that keep coming back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from upkeep.core.clock import SYSTEM_CLOCK, Clock
from upkeep.core.durations import format_duration
from upkeep.core.text import human_duration
from upkeep.store.alerts import AlertState

if TYPE_CHECKING:
    from upkeep.config.loader import LoadedConfig
    from upkeep.config.models import RunbookConfig
    from upkeep.engine.runbooks import RunbookExecutor
    from upkeep.store.remediations import Trigger
    from upkeep.store.runs import RunRecord
    from upkeep.store.store import Store

logger = logging.getLogger(__name__)

REMEDIATION_POLL_S = 1.0
"""How often the leader looks for triggers to decide and runs that ended."""


@dataclass(frozen=True)
class Decision:
    """What the remediator did with one trigger: started it (the task running it) or not
    (the reason)."""

    trigger: Trigger
    started: asyncio.Task[None] | None = None
    reason: str = ""


def own_checks(loaded: LoadedConfig, runbook: RunbookConfig) -> set[str]:
    """Given the config and a runbook, return the checks its ``checks`` and ``watch``
    steps select, in every phase (steps, rollback, ``finally``)."""
    from upkeep.engine.runner import select_checks

    selected: set[str] = set()
    for entry in runbook.flow():
        step = entry.step
        selector = step.watch.checks if step.watch is not None else step.checks
        if selector is None:
            continue
        try:
            chosen = select_checks(loaded.checks.values(), selector.names, selector.labels)
        except KeyError:
            continue  # the loader refuses unknown names; a stale config selects nothing
        selected.update(check.name for check in chosen)
    return selected


class Remediator:
    """Decides remediation triggers and starts their runs: the leader daemon's, only."""

    def __init__(
        self,
        current: Callable[[], LoadedConfig],
        store: Store,
        *,
        executor: Callable[[], RunbookExecutor],
        running: dict[str, asyncio.Task[None]],
        clock: Clock = SYSTEM_CLOCK,
        on_run: Callable[[RunRecord], None] | None = None,
        poll_s: float = REMEDIATION_POLL_S,
    ) -> None:
        # The config in force, asked at each decision: a reload changes what is started.
        self.current = current
        self.store = store
        self.executor = executor
        # Shared with the scheduler and the API (one run per runbook at a time; the
        # scheduler's drain ends these runs too when the daemon stops).
        self.running = running
        self.clock = clock
        self.on_run = on_run
        self.poll_s = poll_s

    async def run(self) -> None:
        """Decide triggers and note ended runs every ``poll_s``, until cancelled; a failed
        pass is logged and tried again."""
        while True:
            try:
                await self.step()
            except Exception as error:  # noqa: BLE001 - the next pass tries again
                logger.warning(
                    "remediation pass failed: %s",
                    self.current().redactor.redact(f"{type(error).__name__}: {error}"),
                )
            await self.clock.sleep(self.poll_s)

    async def step(self) -> list[Decision]:
        """Decide every pending trigger (start its run or record why not) and put the
        outcome of runs that ended on their alerts' timelines; return the decisions."""
        log = self.store.remediations
        decisions: list[Decision] = []
        for trigger in await asyncio.to_thread(log.pending):
            busy = self._busy(trigger.runbook)
            reason = await asyncio.to_thread(self._refusal, trigger, busy)
            if reason is None and self._busy(trigger.runbook):
                # The API or the schedule started it while the refusal was looked up.
                reason = "already running (a run)"
            if reason is None:
                # No await since ``_busy``: nothing else can take the runbook in between.
                decisions.append(Decision(trigger, started=self._start(trigger)))
                continue
            if await asyncio.to_thread(log.suppress, trigger, reason, self.clock.now()):
                logger.warning(
                    "runbook %s not started by alert %d (%s): %s",
                    trigger.runbook,
                    trigger.alert_id,
                    trigger.check,
                    reason,
                )
                decisions.append(Decision(trigger, reason=reason))
        for trigger, status, message in await asyncio.to_thread(log.ended):
            await self._note_outcome(trigger, trigger.run_id or 0, status, message)
        return decisions

    def _refusal(self, trigger: Trigger, busy: bool) -> str | None:
        """Given a pending trigger and whether this daemon runs its runbook now, return why
        it must not start now, or None (blocking: it reads the store)."""
        loaded = self.current()
        runbook = loaded.config.runbooks.get(trigger.runbook)
        rule = runbook.on_alert if runbook is not None else None
        if runbook is None or rule is None:
            return "the runbook is no longer started by alerts (the config changed)"
        log = self.store.remediations
        if trigger.source_run is not None and log.runbook_of(trigger.source_run) == trigger.runbook:
            return f"loop guard: the alert fired on a result of its own run {trigger.source_run}"
        alert = self.store.alerts.get(trigger.alert_id)
        if alert is None or alert.state == AlertState.RESOLVED:
            return "the alert resolved before the run could start"
        closed = self._window_closed(loaded, runbook)
        if closed is not None:
            return closed
        active = log.active_run(trigger.runbook)
        if active is not None or busy:
            which = f"run {active}" if active is not None else "a run"
            if trigger.check in own_checks(loaded, runbook):
                return (
                    f"loop guard: check {trigger.check} is one of the runbook's own checks "
                    f"and {which} of it is running"
                )
            return f"already running ({which})"
        now = self.clock.now()
        last = log.last_alert_run_end(trigger.runbook)
        if last is not None and last.finished_at is not None:
            until = last.finished_at + rule.cooldown
            if now < until:
                return (
                    f"cooldown: alert-started run {last.id} ended "
                    f"{human_duration(now - last.finished_at)} ago, cooldown "
                    f"{format_duration(rule.cooldown)} (until {until.isoformat()})"
                )
        recent = log.alert_runs_since(trigger.runbook, now - rule.per)
        if len(recent) >= rule.max_runs:
            return (
                f"rate limit: {len(recent)} alert-started run(s) in the last "
                f"{format_duration(rule.per)} (max_runs {rule.max_runs})"
            )
        return None

    def _window_closed(self, loaded: LoadedConfig, runbook: RunbookConfig) -> str | None:
        """Given a runbook, return why its real run may not start now (it has a window,
        which is closed), or None: as the schedule, ``upkeep run`` and the API, an alert
        runs it only inside its window; a dry run (``dry_run_only``) changes nothing and
        may run any time (blocking: it reads the store's one-off windows)."""
        from upkeep.alerting.windows import WindowCalendar

        rule = runbook.on_alert
        if runbook.window is None or (rule is not None and rule.dry_run_only):
            return None
        now = self.clock.now()
        calendar = WindowCalendar(loaded.config, self.store.runs.list_windows(ending_after=now))
        if calendar.is_open(runbook.window, now):
            return None
        opening = calendar.next_opening(runbook.window, now)
        when = opening.start.isoformat() if opening is not None else "never"
        return (
            f"window {runbook.window} is closed (the runbook runs only inside it); "
            f"it next opens {when}"
        )

    def _busy(self, runbook: str) -> bool:
        """Return whether this daemon runs the runbook now (any trigger)."""
        task = self.running.get(runbook)
        return task is not None and not task.done()

    def _start(self, trigger: Trigger) -> asyncio.Task[None]:
        """Start the trigger's run as a task the daemon drains like any run; return it."""
        loaded = self.current()
        rule = loaded.config.runbooks[trigger.runbook].on_alert
        dry_run = rule is not None and rule.dry_run_only
        executor = self.executor()
        name = trigger.runbook

        async def run() -> None:
            try:
                record = await executor.execute(
                    name,
                    trigger="alert",
                    triggered_by=trigger.triggered_by,
                    dry_run=dry_run,
                    alert_id=trigger.alert_id,
                )
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - one runbook's failure must not stop the daemon
                logger.error(
                    "runbook %s (started by alert %d) failed to run: %s",
                    name,
                    trigger.alert_id,
                    loaded.redactor.redact(f"{type(error).__name__}: {error}"),
                )
                return
            if record is None:
                logger.info(
                    "runbook %s for alert %d was decided by another instance",
                    name,
                    trigger.alert_id,
                )
                return
            logger.warning(
                "runbook %s started by alert %d (%s): run %d %s",
                name,
                trigger.alert_id,
                trigger.check,
                record.id,
                record.status,
            )
            if self.on_run is not None:
                self.on_run(record)
            await self._note_outcome(trigger, record.id, record.status, record.message)

        task = asyncio.create_task(run(), name=f"runbook-{name} (alert {trigger.alert_id})")
        self.running[name] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self.running.get(name) is done:
                del self.running[name]

        task.add_done_callback(forget)
        return task

    async def _note_outcome(self, trigger: Trigger, run_id: int, status: str, message: str) -> None:
        # Whoever notes first (the run's own task, or a later pass for a run that ended
        # without it: cancelled, interrupted) writes the one timeline entry.
        await asyncio.to_thread(
            self.store.remediations.note_outcome,
            trigger,
            run_id,
            status,
            message,
            self.clock.now(),
        )
