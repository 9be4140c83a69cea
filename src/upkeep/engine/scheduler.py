"""The scheduler: every enabled check on its ``every:`` grid, every runbook on its cron.

Checks
    Each check fires on a fixed phase grid (``schedule.next_interval_firing``): the same
    check keeps its phase across restarts and 10,000 checks with ``every: 60s`` spread
    evenly over the minute. Due checks go through the shared ``CheckRunner`` (its
    concurrency limit holds), results are buffered and written in one transaction per
    ``engine.write_interval`` (a result whose status differs from the check's previous one
    is written at once, with whatever else waits). A check still running when its next slot comes skips that
    slot rather than piling up; the lag between due time and start is measured.

Runbooks
    A runbook with ``schedule:`` fires at each cron firing in its timezone. The firing is
    claimed in the store (``runs`` has a unique (runbook, scheduled_for)), so two daemons
    never run it twice. With ``window:`` a firing outside the window is deferred to the
    window's next opening, keeping its original firing time as its identity. A firing that
    comes while the previous run of the same runbook still runs is recorded ``missed``.
    On start, firings since the last evaluation (``schedule_marks``) that nobody ran are
    recorded ``missed``, except the latest one when it is within ``engine.missed_grace``,
    which runs once.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from upkeep.alerting.manager import AlertProcessingError
from upkeep.alerting.windows import WindowCalendar
from upkeep.config.schedule import CronSchedule, next_interval_firing
from upkeep.core.clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from upkeep.alerting.guard import StoreGuard
    from upkeep.alerting.manager import AlertManager
    from upkeep.config.loader import CompiledCheck, LoadedConfig
    from upkeep.core.results import CheckResult
    from upkeep.core.status import Status
    from upkeep.engine.runbooks import RunbookExecutor
    from upkeep.engine.runner import CheckRunner
    from upkeep.store.runs import RunRecord
    from upkeep.store.store import Store

logger = logging.getLogger(__name__)

MAX_MISSED_RECORDS = 100
"""At most this many missed firings per runbook are recorded one by one after a long stop."""
DISPATCH_TICK_S = 0.05
"""The scheduler starts due checks in batches at most this far apart (bounds added lag)."""
WRITE_BATCH_LIMIT = 5000
"""A result buffer this full is written at once, not at the next interval."""
RUNBOOK_WAKE = timedelta(minutes=1)
"""The runbook loop wakes at least this often, even with no firing due."""


def runbook_mark(name: str) -> str:
    """Given a runbook name, return its key in ``schedule_marks``."""
    return f"runbook:{name}"


@dataclass
class SchedulerStats:
    """What the scheduler has done; the daemon exports it on /metrics, benchmarks read it."""

    checks_started: int = 0
    checks_skipped_busy: int = 0
    results_written: int = 0
    results_spilled: int = 0
    write_failures: int = 0
    alert_failures: int = 0
    runbooks_started: int = 0
    runbooks_missed: int = 0
    runbooks_deferred: int = 0
    lags_s: list[float] = field(default_factory=list)
    keep_lags: bool = False


ResultListener = Callable[["CheckResult", float], None]
RunListener = Callable[["RunRecord"], None]


@dataclass(order=True)
class RunbookFiring:
    """A runbook firing in the scheduler's heap: run at ``due``, recorded for
    ``scheduled_for`` (a deferred firing keeps its original time as its identity)."""

    due: datetime
    name: str = field(compare=False)
    scheduled_for: datetime = field(compare=False)
    one_off: bool = field(default=False, compare=False)
    """A caught-up or deferred firing: it does not schedule the one after it."""


class Scheduler:
    """Runs the checks and runbooks of one loaded config until told to stop."""

    def __init__(
        self,
        loaded: LoadedConfig,
        store: Store,
        *,
        checks: CheckRunner,
        runbooks: RunbookExecutor,
        owner: str,
        on_result: ResultListener | None = None,
        on_run: RunListener | None = None,
        stats: SchedulerStats | None = None,
        running_runbooks: dict[str, asyncio.Task[None]] | None = None,
        alerts: AlertManager | None = None,
        guard: StoreGuard | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.loaded = loaded
        # Every firing, wait and write interval follows it (``drain``'s grace is real time:
        # it bounds real work after a SIGTERM).
        self.clock = clock
        # With a guard, results the store does not take are alerted on from the spill.
        self.guard = guard
        self.store = store
        self.checks = checks
        self.runbooks = runbooks
        self.owner = owner
        self.on_result = on_result
        self.on_run = on_run
        self.stats = stats or SchedulerStats()
        self.alerts = alerts
        self._buffer: list[CheckResult] = []
        # Written results whose alert processing failed (a store hiccup): retried first
        # on the next flush, so no transition is lost, and bounded like the write buffer.
        self._alert_backlog: list[CheckResult] = []
        self._buffer_full = asyncio.Event()
        # Each check's latest status since this scheduler started: a change is written at once.
        self._last_status: dict[str, Status] = {}
        self._check_tasks: set[asyncio.Task[None]] = set()
        self._running_checks: set[str] = set()
        # Shared between the schedulers of one daemon (the daemon passes one table), so a
        # runbook still running on a scheduler retired by a reload still counts as running.
        self._runbook_tasks: dict[str, asyncio.Task[None]] = (
            {} if running_runbooks is None else running_runbooks
        )
        self._stopping = asyncio.Event()
        self._writer_done = False

    # --- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run checks and runbooks until ``stop`` is called; then drain (see ``drain``)."""
        loops = [
            asyncio.create_task(self._check_loop(), name="checks"),
            asyncio.create_task(self._runbook_loop(), name="runbooks"),
            asyncio.create_task(self._writer_loop(), name="writer"),
        ]
        try:
            await self._stopping.wait()
        finally:
            for task in loops[:2]:
                task.cancel()
            await asyncio.gather(*loops[:2], return_exceptions=True)
            # The writer flushes what the last checks produced, then ends by itself: it is
            # not cancelled, because on Python 3.11 ``wait_for`` can swallow a cancellation
            # that races with the event it waits on, leaving the writer running forever.
            self._writer_done = True
            self._buffer_full.set()
            await asyncio.gather(loops[2], return_exceptions=True)
            await self._flush()

    @property
    def idle(self) -> bool:
        """Return whether no check or runbook of this scheduler is still running."""
        return not self._check_tasks and all(task.done() for task in self._runbook_tasks.values())

    def stop(self) -> None:
        """Ask the loops to stop scheduling new work."""
        self._stopping.set()

    async def drain(self, timeout: timedelta) -> list[str]:
        """Given a grace period, let running checks and runbooks finish, then cancel the rest.

        Return the names of the runbooks that had to be cancelled (their runs are recorded
        ``cancelled`` by the executor).
        """
        pending = [*self._check_tasks, *self._runbook_tasks.values()]
        if pending:
            # Real time on purpose: the work drained is real, and so is the deadline of
            # whoever stops the daemon (a service manager's stop timeout).
            await asyncio.wait(pending, timeout=timeout.total_seconds())
        cancelled = [name for name, task in self._runbook_tasks.items() if not task.done()]
        for task in [*self._check_tasks, *self._runbook_tasks.values()]:
            task.cancel()
        remaining = [*self._check_tasks, *self._runbook_tasks.values()]
        if remaining:
            await asyncio.gather(*remaining, return_exceptions=True)
        await self._flush()
        return cancelled

    # --- checks ------------------------------------------------------------------------------

    def _initial_check_heap(self, now: datetime) -> list[tuple[float, str]]:
        heap = [
            (next_interval_firing(name, check.every, now).timestamp(), name)
            for name, check in self.loaded.checks.items()
            if check.enabled
        ]
        heapq.heapify(heap)
        return heap

    async def _check_loop(self) -> None:
        checks = self.loaded.checks
        heap = self._initial_check_heap(self.clock.now())
        while heap:
            due, name = heap[0]
            delay = due - self.clock.now().timestamp()
            if delay > 0:
                # Wake at most every DISPATCH_TICK_S and start everything due by then in one
                # go: fewer loop wake-ups per check, for at most a tick of added lag.
                await self.clock.sleep(max(delay, DISPATCH_TICK_S))
                continue
            heapq.heappop(heap)
            check = checks[name]
            every_s = check.every.total_seconds()
            following = due + every_s
            now = self.clock.now().timestamp()
            if following <= now:
                # Fell behind by whole periods (a suspended machine): rejoin the grid.
                following = due + every_s * (int((now - due) // every_s) + 1)
            heapq.heappush(heap, (following, name))
            if name in self._running_checks:
                self.stats.checks_skipped_busy += 1
                continue
            self._start_check(check, due)

    def run_now(self, names: Iterable[str]) -> int:
        """Given check names, start those that are enabled and not running now (outside
        their grid, which goes on unchanged); return how many were started. Unknown names
        and a stopped scheduler start nothing."""
        started = 0
        for name in names:
            check = self.loaded.checks.get(name)
            if (
                check is None
                or not check.enabled
                or name in self._running_checks
                or self._stopping.is_set()
            ):
                continue
            self._start_check(check, self.clock.now().timestamp())
            started += 1
        return started

    def _start_check(self, check: CompiledCheck, due: float) -> None:
        self._running_checks.add(check.name)
        task = asyncio.create_task(self._run_check(check, due))
        self._check_tasks.add(task)
        task.add_done_callback(self._check_tasks.discard)

    async def _run_check(self, check: CompiledCheck, due: float) -> None:
        try:
            result = await self.checks.run_one(check)
            lag = result.at.timestamp() - due
            self.stats.checks_started += 1
            if self.stats.keep_lags:
                self.stats.lags_s.append(lag)
            self._buffer.append(result)
            previous = self._last_status.get(check.name)
            self._last_status[check.name] = result.status
            if len(self._buffer) >= WRITE_BATCH_LIMIT or (
                previous is not None and previous != result.status
            ):
                # A change of status is written now, not at the end of the interval: an
                # open dashboard shows it within its poll (issue #14: red within 2 s) and
                # alerting acts on it sooner. Steady results still go out in batches.
                self._buffer_full.set()
            if self.on_result is not None:
                self.on_result(result, lag)
            if self._writer_done:
                # This scheduler was stopped (a reload) while the check ran: its writer has
                # ended, so write now rather than hold the result until the daemon drains.
                await self._flush()
        finally:
            self._running_checks.discard(check.name)

    async def _writer_loop(self) -> None:
        interval = self.loaded.config.engine.write_interval.total_seconds()
        while not self._writer_done:
            await self.clock.wait(self._buffer_full, timeout=interval)
            self._buffer_full.clear()
            await self._flush()

    async def _flush(self) -> None:
        if not self._buffer and not self._alert_backlog:
            return
        batch, self._buffer = self._buffer, []
        if self.alerts is not None and self._alert_backlog:
            await self._retry_alerts()
        if not batch:
            return
        try:
            if self.guard is not None:
                outcome = await asyncio.to_thread(self.guard.record, batch)
                if outcome.stored:
                    self.stats.results_written += outcome.written
                else:
                    # In the spill, alerted on; written to the store when it takes writes.
                    self.stats.results_spilled += outcome.written
                    self.stats.write_failures += 1
            elif self.alerts is None:
                written = await asyncio.to_thread(self.store.write_results, batch)
                self.stats.results_written += written
            else:
                written, _ = await asyncio.to_thread(self.alerts.record, batch)
                self.stats.results_written += written
        except AlertProcessingError as error:
            # Stored, but their alerts were not processed: retried first on the next flush.
            self.stats.results_written += error.written
            self.stats.alert_failures += 1
            self._alert_backlog = (self._alert_backlog + batch)[-WRITE_BATCH_LIMIT * 10 :]
        except Exception as error:  # noqa: BLE001 - a store outage must not stop the checks
            self.stats.write_failures += 1
            logger.error(
                "could not write %d results: %s",
                len(batch),
                self.loaded.redactor.redact(f"{type(error).__name__}: {error}"),
            )
            # Keep them for the next attempt, but never grow without bound.
            self._buffer = (batch + self._buffer)[-WRITE_BATCH_LIMIT * 10 :]

    async def _retry_alerts(self) -> None:
        """Process the alerts of results stored earlier without them."""
        if self.alerts is None:
            return
        pending, self._alert_backlog = self._alert_backlog, []
        try:
            await asyncio.to_thread(self.alerts.process, pending)
        except Exception as error:  # noqa: BLE001 - alerting failures are retried, never fatal
            self.stats.alert_failures += 1
            logger.error(
                "could not process alerts of %d results: %s",
                len(pending),
                self.loaded.redactor.redact(f"{type(error).__name__}: {error}"),
            )
            self._alert_backlog = pending[-WRITE_BATCH_LIMIT * 10 :]

    # --- runbooks ----------------------------------------------------------------------------

    def _schedules(self) -> dict[str, CronSchedule]:
        config = self.loaded.config
        return {
            name: CronSchedule(runbook.schedule, ZoneInfo(runbook.timezone or config.timezone))
            for name, runbook in config.runbooks.items()
            if runbook.schedule is not None
        }

    def _calendar(self, now: datetime) -> WindowCalendar:
        return WindowCalendar(self.loaded.config, self.store.runs.list_windows(ending_after=now))

    async def catch_up(self, now: datetime) -> list[RunbookFiring]:
        """Given the start time, record firings missed while stopped; return those to run.

        For each scheduled runbook, firings after its schedule mark and at or before
        ``now`` nobody recorded are ``missed``, except the latest when it is within
        ``engine.missed_grace``, which is returned to run once. A runbook never evaluated
        before starts from ``now``.
        """
        run_log = self.store.runs
        grace = self.loaded.config.engine.missed_grace
        to_run: list[RunbookFiring] = []
        for name, schedule in self._schedules().items():
            mark = await asyncio.to_thread(run_log.schedule_mark, runbook_mark(name))
            if mark is None:
                await asyncio.to_thread(run_log.set_schedule_mark, runbook_mark(name), now)
                continue
            # Firings strictly after the mark, up to and including now.
            first, latest, count = _summarise(
                schedule.firings(mark + timedelta(microseconds=1), now + timedelta(microseconds=1)),
                MAX_MISSED_RECORDS,
            )
            runbook = self.loaded.config.runbooks[name]
            # A runbook bound to a window may have been waiting for it (a deferred firing
            # lives only in memory): its latest firing is handed back to the window rather
            # than written off, however old.
            if latest is not None and (now - latest <= grace or runbook.window is not None):
                to_run.append(RunbookFiring(latest, name, latest, one_off=True))
                first = [firing for firing in first if firing != latest]
                count -= 1
            for firing in first:
                recorded = await asyncio.to_thread(
                    run_log.record_missed,
                    name,
                    firing,
                    self.owner,
                    f"missed: no scheduler ran it at {firing.isoformat()} (upkeep was stopped "
                    "or restarted before it ran, and a later firing superseded it)",
                    now,
                )
                if recorded is not None:
                    self.stats.runbooks_missed += 1
            if count > len(first):
                logger.warning(
                    "runbook %s missed %d firings while stopped; the first %d are recorded",
                    name,
                    count,
                    len(first),
                )
            await asyncio.to_thread(run_log.set_schedule_mark, runbook_mark(name), now)
        return to_run

    async def _runbook_loop(self) -> None:
        schedules = self._schedules()
        if not schedules:
            return
        now = self.clock.now()
        queue: list[RunbookFiring] = await self.catch_up(now)
        for name, schedule in schedules.items():
            first = schedule.next_after(now)
            queue.append(RunbookFiring(first, name, first))
        heapq.heapify(queue)
        while queue:
            now = self.clock.now()
            if queue[0].due > now:
                # Wake at least once a minute: a one-off window added meanwhile may matter.
                await self.clock.sleep_until(min(queue[0].due, now + RUNBOOK_WAKE))
                continue
            firing = heapq.heappop(queue)
            if not firing.one_off:
                schedule = schedules[firing.name]
                following = schedule.next_after(firing.scheduled_for)
                heapq.heappush(queue, RunbookFiring(following, firing.name, following))
            deferred_to = await self._dispatch_runbook(firing)
            if deferred_to is not None:
                heapq.heappush(
                    queue,
                    RunbookFiring(deferred_to, firing.name, firing.scheduled_for, one_off=True),
                )

    async def _dispatch_runbook(self, firing: RunbookFiring) -> datetime | None:
        """Start a due firing, or return when to try again if its window is closed."""
        name = firing.name
        runbook = self.loaded.config.runbooks[name]
        now = self.clock.now()
        run_log = self.store.runs
        if runbook.window is not None:
            calendar = await asyncio.to_thread(self._calendar, now)
            if not calendar.is_open(runbook.window, now):
                opening = calendar.next_opening(runbook.window, now)
                if opening is None:
                    await asyncio.to_thread(
                        run_log.record_missed,
                        name,
                        firing.scheduled_for,
                        self.owner,
                        f"window {runbook.window} never opens again",
                        now,
                    )
                    self.stats.runbooks_missed += 1
                    return None
                self.stats.runbooks_deferred += 1
                logger.info(
                    "runbook %s (due %s) deferred to window %s opening at %s",
                    name,
                    firing.scheduled_for.isoformat(),
                    runbook.window,
                    opening.start.isoformat(),
                )
                return opening.start
        # Mark up to just before this firing, not past it: if the process dies before the
        # claim below, the next start still finds this firing (and the claim's unique key
        # stops it from running twice if it was claimed after all).
        just_before = firing.scheduled_for - timedelta(microseconds=1)
        await asyncio.to_thread(run_log.set_schedule_mark, runbook_mark(name), just_before)
        previous = self._runbook_tasks.get(name)
        if previous is not None and not previous.done():
            recorded = await asyncio.to_thread(
                run_log.record_missed,
                name,
                firing.scheduled_for,
                self.owner,
                "skipped: the previous run of this runbook was still running",
                now,
            )
            if recorded is not None:
                self.stats.runbooks_missed += 1
            return None
        task = asyncio.create_task(self._run_runbook(name, firing.scheduled_for))
        self._runbook_tasks[name] = task
        return None

    def resume(self, runs: Iterable[tuple[int, str]]) -> None:
        """Given runs this process took over (``RunLog.sweep_orphans``) as (id, runbook),
        continue each in the background like a firing: it counts as its runbook's running
        run, and ``drain`` waits for it and then cancels it."""
        for run_id, name in runs:
            key = name
            if key in self._runbook_tasks and not self._runbook_tasks[key].done():
                key = f"{name} (run {run_id})"
            self._runbook_tasks[key] = asyncio.create_task(
                self._resume_runbook(run_id, name), name=f"runbook-{name}-resumed"
            )

    async def _resume_runbook(self, run_id: int, name: str) -> None:
        try:
            record = await self.runbooks.resume(run_id)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - one runbook's failure must not stop the daemon
            logger.error(
                "run %d of runbook %s failed to resume: %s",
                run_id,
                name,
                self.loaded.redactor.redact(f"{type(error).__name__}: {error}"),
            )
            return
        if record is not None and self.on_run is not None:
            self.on_run(record)

    async def _run_runbook(self, name: str, scheduled_for: datetime) -> None:
        try:
            record = await self.runbooks.execute(
                name, trigger="schedule", scheduled_for=scheduled_for
            )
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - one runbook's failure must not stop the daemon
            logger.error(
                "runbook %s failed to run: %s",
                name,
                self.loaded.redactor.redact(f"{type(error).__name__}: {error}"),
            )
            return
        if record is None:
            logger.info("runbook %s firing %s was claimed by another instance", name, scheduled_for)
            return
        self.stats.runbooks_started += 1
        if self.on_run is not None:
            self.on_run(record)


def _summarise(
    firings: Iterator[datetime], limit: int
) -> tuple[list[datetime], datetime | None, int]:
    """Given firings, return the first ``limit`` of them, the latest, and how many there were."""
    first: list[datetime] = []
    latest: datetime | None = None
    count = 0
    for firing in firings:
        count += 1
        latest = firing
        if len(first) < limit:
            first.append(firing)
    return first, latest, count
