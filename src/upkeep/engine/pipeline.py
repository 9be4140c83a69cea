"""The one composition of results → store → alerts → delivery.

Every way results come in goes through a ``Pipeline``: the daemon (its scheduler records
through ``guard``, its runbooks through ``manager``), ``upkeep check``, ``upkeep run``, the
backup commands, and the backup tasks (through the runbook executor's ``manager``). It
owns, for one process:

* the ``StoreGuard`` (``alerting/guard.py``): results and their alerts go to the store, or
  to the spill while the store does not take them, and ``upkeep:store`` says so;
* the ``AlertManager`` of the config in force (``alerting/manager.py``), replaced on a
  reload (``use_config``);
* delivery (``alerting/delivery.py``): in the daemon, a ``Dispatcher`` on the store's
  outbox (paused while the spill delivers) and rounds on the spill's; in a one-shot
  command, whatever is due when it ends and what its routes' group_wait makes due within
  ``ONE_SHOT_WAIT_CAP_S``.

A daemon runs ``run_ticks`` and ``run_deliveries`` as tasks while it leads. A one-shot
command calls ``settle`` (record, run the alerts' clock, deliver) or ``tick_and_deliver``
once, and shows the problems they return: neither raises for a store, alerting or delivery
failure, since a command's own outcome (its results, a backup) must stand.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from upkeep.alerting.guard import (
    ResultsNotRecordedError,
    StoreGuard,
    StoreHealth,
    location_label,
)
from upkeep.alerting.manager import TICK_INTERVAL_S, AlertManager, AlertProcessingError
from upkeep.alerting.notices import RunNotifier, announce_windows
from upkeep.core.clock import SYSTEM_CLOCK, Clock
from upkeep.store.store import error_reason

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from upkeep.alerting.delivery import Dispatcher
    from upkeep.config.loader import LoadedConfig
    from upkeep.core.results import CheckResult
    from upkeep.store.runs import RunChange
    from upkeep.store.store import IntegrityReport, Store

logger = logging.getLogger(__name__)

DELIVERY_POLL_S = 1.0
"""How often a leading daemon looks for due notifications in the outbox (and the spill's)."""
ANNOUNCE_INTERVAL_S = 30.0
"""How often a leading daemon looks for windows' announcements due: the precision of an
announcement's moment (each costs a calendar walk and an insert per window announced)."""
ONE_SHOT_WAIT_CAP_S = 30.0
"""The longest a one-shot command stays to deliver notices whose route's group_wait ends
after its own work: longer group_waits are the daemon's (or the next run's) to deliver."""


class _DeliveryRounds:
    """A one-shot command's deliveries after its work: each ``next_wait`` delivers what is
    due now in ``target`` and says how long to wait before the next round (None: done)."""

    def __init__(
        self,
        deliver: Callable[[Store, list[str]], bool],
        clock: Clock,
        target: Store | None,
        horizon: datetime,
        problems: list[str],
    ) -> None:
        self.deliver = deliver
        self.clock = clock
        self.target = target
        self.horizon = horizon
        self.problems = problems
        self.last_due: datetime | None = None

    def next_wait(self) -> float | None:
        """Deliver what is due now; return the seconds until the next notice this process
        queued is due (0 or less: at once), or None if there is none by the horizon, the
        outbox cannot be read or there is nothing to deliver to. Blocks."""
        target = self.target
        if target is None or not self.deliver(target, self.problems):
            return None
        due = target.outbox.first_attempt_due(self.horizon, target.outbox.queued_here())
        if due is None or (self.last_due is not None and due <= self.last_due):
            return None  # nothing more, or a row another process holds: not ours to wait on
        self.last_due = due
        return (due - self.clock.now()).total_seconds()


@dataclass(frozen=True)
class Settled:
    """What became of a one-shot command's results: whether the store is sound (it took
    them and passed its integrity check), and every problem, one redacted sentence each."""

    sound: bool
    problems: list[str] = field(default_factory=list)


class Pipeline:
    """Results in, alerts recorded, notices delivered: for one process and one store."""

    def __init__(
        self,
        loaded: LoadedConfig,
        store: Store | None,
        *,
        open_error: str | None = None,
        on_health: Callable[[StoreHealth], None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """Given a config and its open store (None if it could not be opened,
        ``open_error`` saying why: results then go to the spill and alerting works from
        there), build the pipeline; ``on_health`` hears every change of the store's
        health; ``clock`` is the one the guard, the alert managers and the dispatcher read.
        The store stays the caller's to close. Blocks (it looks for a spill
        another process left): call it from a worker thread on an event loop."""
        self.loaded = loaded
        self.store = store
        self.clock = clock
        self._dispatcher: Dispatcher | None = None
        self.guard = StoreGuard(
            loaded, store, open_error=open_error, on_change=on_health, clock=clock
        )
        self._notifier = RunNotifier(loaded, clock=clock)
        self._next_announce = float("-inf")
        if store is not None:
            # Run notices are queued in the transaction that records the run's change.
            store.runs.observe(self._observe_runs)

    # --- what the outside sees ----------------------------------------------------------------

    @property
    def manager(self) -> AlertManager | None:
        """Return the alert manager of the store for the config in force (None without a
        store); a runbook executor records its checks with it."""
        return self.guard.manager

    @property
    def health(self) -> StoreHealth:
        """Return the store's health now (``/healthz``, ``/metrics``)."""
        return self.guard.health

    def use_config(self, loaded: LoadedConfig) -> None:
        """Given a reloaded config, record, alert, notify about runs and deliver by it
        from now on."""
        self.loaded = loaded
        self._notifier = RunNotifier(loaded, clock=self.clock)
        self._next_announce = float("-inf")  # a window just added is looked at at once
        self.guard.use_config(
            loaded, AlertManager(loaded, self.store, clock=self.clock) if self.store else None
        )
        dispatcher = self._dispatcher
        if dispatcher is not None:
            dispatcher.channels = dict(loaded.config.channels)
            dispatcher.delivery = loaded.config.alerting.delivery
            dispatcher.redactor = loaded.redactor

    def close(self) -> None:
        """Release the spill (a spill in memory, and its episode, end here) and stop
        queuing run notices for the store."""
        self.guard.close()
        if self.store is not None:
            self.store.runs.forget(self._observe_runs)

    def _observe_runs(self, connection: Connection, changes: Sequence[RunChange]) -> None:
        """Queue the notices of run changes in the transaction recording them (the run
        log's observer), by the config in force; a one-shot command waits for them (ids
        of a transaction that then rolls back name no row: waiting for them is a no-op)."""
        queued = self._notifier.on_change(connection, changes)
        if self.store is not None:
            self.store.outbox.note_queued(queued)

    def notice_tick(self) -> None:
        """Queue what time alone makes due besides alerts: reminders and escalation steps
        of approvals still waiting, and windows' announcements (looked for at most every
        ``ANNOUNCE_INTERVAL_S``; the first call always looks). Does nothing while the
        store fails (they wait for it: their keys hold them to once). Blocks; raises what
        the store raises."""
        store = self.store
        if store is None or self.guard.spilling:
            return
        store.outbox.note_queued(self._notifier.tick(store))
        if self.clock.monotonic() >= self._next_announce:
            self._next_announce = self.clock.monotonic() + ANNOUNCE_INTERVAL_S
            store.outbox.note_queued(announce_windows(self.loaded, store, self.clock.now()))

    def check_integrity(self, *, only_if_due: bool = False) -> IntegrityReport | None:
        """Check the store's integrity (see ``StoreGuard.check_integrity``)."""
        return self.guard.check_integrity(only_if_due=only_if_due)

    # --- one-shot commands --------------------------------------------------------------------

    def settle(self, results: Sequence[CheckResult]) -> Settled:
        """Given a command's results, store them with their alerts, run the alerts' clock
        and deliver what is due now, so a command run from cron alerts as the daemon does;
        return whether the store is sound and every problem met. Never raises for a
        failure of the store, the spill, alerting or delivery.

        The integrity check runs first if the last pass is older than
        ``alerting.store_failure.integrity_interval``. Results the store does not take go
        to the spill with their alerts, and are delivered from there. When neither the
        store nor the spill took them, or the store kept them but their alerts were
        processed nowhere, nothing is ticked or delivered: the next run catches up.
        """
        problems: list[str] = []
        stored, alerted = self._take(results, problems)
        if alerted:
            problems += self.tick_and_deliver()
        return Settled(stored and self.guard.health.integrity_ok is not False, problems)

    def take(self, results: Sequence[CheckResult]) -> Settled:
        """``settle`` without the clock and delivery: store (or spill) the results with
        their alerts and return what went wrong. A caller recording several batches calls
        ``tick_and_deliver`` once after the last."""
        problems: list[str] = []
        stored, _ = self._take(results, problems)
        return Settled(stored and self.guard.health.integrity_ok is not False, problems)

    def _take(self, results: Sequence[CheckResult], problems: list[str]) -> tuple[bool, bool]:
        """Record results, adding what went wrong to ``problems``; return whether the
        store kept them (the spill does not count) and whether their alerts were recorded
        somewhere (so there is something to deliver)."""
        guard = self.guard
        integrity = guard.check_integrity(only_if_due=True)
        if integrity is not None and integrity.unchecked is None and not integrity.ok:
            problems.append(self._say(f"the store failed its integrity check: {integrity.reason}"))
        try:
            outcome = guard.record(results)
        except AlertProcessingError as error:
            # The store kept the results; their alerts are processed with the next ones.
            cause = error.__cause__ or error
            problems.append(self._say(f"alerts were not processed: {error_reason(cause)}"))
            return True, False
        except ResultsNotRecordedError as error:
            problems.append(self._say(f"results were not stored: {error}"))
            return False, False
        if not outcome.stored or outcome.spill is not None:
            what = "results were" if not outcome.stored else "alerts were"
            problems.append(self._say(f"{what} not stored: {outcome.reason}"))
            problems.append(
                self._say(
                    f"alerting continues from {location_label(outcome.spill)} until the "
                    "store takes writes again"
                )
            )
            return False, True
        return True, True

    def tick_and_deliver(self) -> list[str]:
        """Run the alerts' clock once where the alerts are (store or spill) and deliver
        what is due there now; return what failed, one sentence each (never raises: what
        is not delivered stays in the outbox for the next run or the daemon).

        Notices this process queued that become due within the longest group_wait of the
        routes (at most ``ONE_SHOT_WAIT_CAP_S``) are waited for and delivered before it
        returns, so a command never leaves its own grouped notice for the next run; a
        daemon's pending notices are delivered if due, never waited for.

        Without a daemon each command is also the clock: repeats, escalation steps,
        lapsed acknowledgements and ended mutes happen here (their keys make a daemon's
        tick and this one write each notice once). Call it outside any event loop, in the
        main thread (SIGINT/SIGTERM end the wait there); a coroutine awaits
        ``tick_and_deliver_async`` instead.
        """
        rounds = self._delivery_rounds()
        while (delay := rounds.next_wait()) is not None:
            if delay > 0:
                asyncio.run(self.clock.sleep(delay))
        return rounds.problems

    async def tick_and_deliver_async(self) -> list[str]:
        """``tick_and_deliver`` for a coroutine: the store's work runs in worker threads
        and the waits on the caller's event loop, so cancelling the caller (the CLI's
        SIGINT/SIGTERM) ends the wait at once."""
        rounds = await asyncio.to_thread(self._delivery_rounds)
        while (delay := await asyncio.to_thread(rounds.next_wait)) is not None:
            if delay > 0:
                await self.clock.sleep(delay)
        return rounds.problems

    def _delivery_rounds(self) -> _DeliveryRounds:
        """Run the alerts' clock once and return the delivery rounds that follow it."""
        problems: list[str] = []
        try:
            self.guard.tick()
        except Exception as error:  # noqa: BLE001 - reported; the next run ticks again
            problems.append(self._say(f"the alerts' clock did not run: {error_reason(error)}"))
        try:
            self.notice_tick()
        except Exception as error:  # noqa: BLE001 - reported; the next run ticks again
            problems.append(self._say(f"run and window notices not queued: {error_reason(error)}"))
        target = self.guard.spill_store or self.guard.main
        if not self.loaded.config.channels:
            target = None
        # Stay for what becomes due within the routes' group_wait (capped): a notice queued
        # by this command must not wait for the next one.
        horizon = self.clock.now() + timedelta(seconds=self.one_shot_wait_s())
        return _DeliveryRounds(self._deliver_round, self.clock, target, horizon, problems)

    def one_shot_wait_s(self) -> float:
        """Return how long a one-shot command may stay to deliver notices grouped after
        its work: the longest group_wait of the config's routes, at most
        ``ONE_SHOT_WAIT_CAP_S``."""
        waits = [route.group_wait.total_seconds() for route in self.loaded.config.routes]
        return min(max(waits, default=0.0), ONE_SHOT_WAIT_CAP_S)

    def _deliver_round(self, target: Store, problems: list[str]) -> bool:
        """Deliver what is due in ``target``'s outbox now, adding what failed to
        ``problems``; return whether the outbox could be read (False stops the waiting)."""
        from upkeep.alerting.delivery import deliver_now

        try:
            reports = deliver_now(self.loaded, target, clock=self.clock)
        except Exception as error:  # noqa: BLE001 - the outbox keeps them for the next run
            problems.append(self._say(f"notifications not delivered: {error_reason(error)}"))
            return False
        problems += [
            self._say(f"notification to {report.channel} not delivered yet: {report.error}")
            for report in reports
            if not report.ok
        ]
        return True

    def _say(self, text: str) -> str:
        return self.loaded.redactor.redact(text)

    # --- a leading daemon ----------------------------------------------------------------------

    async def run_ticks(self) -> None:
        """Run the alerts' clock every ``TICK_INTERVAL_S`` until cancelled (through the
        guard: while the store fails, the spill's alerts repeat and escalate)."""
        while True:
            try:
                report = await asyncio.to_thread(self.guard.tick)
                if report.escalated:
                    logger.info("escalated %d alert(s)", report.escalated)
            except Exception as error:  # noqa: BLE001 - retried on the next tick
                logger.warning("alert tick failed: %s", self._say(str(error)))
            try:
                await asyncio.to_thread(self.notice_tick)
            except Exception as error:  # noqa: BLE001 - retried on the next tick
                logger.warning("run and window notices failed: %s", self._say(str(error)))
            await self.clock.sleep(TICK_INTERVAL_S)

    async def run_deliveries(self, stop: asyncio.Event, owner: str) -> None:
        """Deliver the store's outbox, and the spill's while the store fails, as ``owner``
        until ``stop`` is set; a reload swaps the channels (``use_config``)."""
        from upkeep.alerting.delivery import Dispatcher

        if self.store is None:
            return
        config = self.loaded.config
        guard = self.guard
        self._dispatcher = Dispatcher(
            self.store.outbox,
            config.channels,
            config.alerting.delivery,
            self.loaded.redactor,
            owner,
            # The store's outbox waits while the spill delivers: never the same notice twice.
            paused=lambda: guard.spilling,
            clock=self.clock,
        )
        spilled = asyncio.create_task(self._spill_deliveries(stop, owner), name="spill-deliveries")
        try:
            await self._dispatcher.run(stop, poll_s=DELIVERY_POLL_S)
        finally:
            self._dispatcher = None
            await asyncio.gather(spilled, return_exceptions=True)

    async def _spill_deliveries(self, stop: asyncio.Event, owner: str) -> None:
        """While the store fails, deliver the spill's outbox until ``stop``."""
        try:
            while not stop.is_set():
                try:
                    await self.guard.deliver_spill(owner)
                except Exception as error:  # noqa: BLE001 - retried at the next look
                    logger.warning("spill delivery round failed: %s", self._say(str(error)))
                await self.clock.wait(stop, timeout=DELIVERY_POLL_S)  # wakes at once on stop
        finally:
            await asyncio.to_thread(self.guard.release_spill_claims, owner)
