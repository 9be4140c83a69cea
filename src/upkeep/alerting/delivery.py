"""The dispatcher: takes due batches from the outbox, sends them, records what happened.

Every step is recorded before the next one starts: a batch is claimed (``sending``, with a
lease) before it is sent, and marked ``sent`` or failed after. A dispatcher that dies in
between leaves the batch ``sending``; when the lease runs out another dispatcher (or the
same one restarted) claims it again as the same batch with the same idempotency key, so
the worst case is a repeat the receiver can recognise — never a loss.

Sends run on daemon threads (``run_blocking``: Apprise blocks), at most
``MAX_CONCURRENT_SENDS`` at once. A slot is refilled as soon as a send ends, so a channel
that hangs until its timeout holds one slot, not a whole round.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from upkeep.core.clock import SYSTEM_CLOCK, Clock
from upkeep.io.threads import run_blocking
from upkeep.notify.channels import LEVELS, send
from upkeep.notify.message import render_ago
from upkeep.store.outbox import OutboxStatus

if TYPE_CHECKING:
    from upkeep.config.loader import LoadedConfig
    from upkeep.core.redaction import Redactor
    from upkeep.store.outbox import Batch, DeliveryConfig, OutboxRow, OutboxStore
    from upkeep.store.store import Store

logger = logging.getLogger(__name__)

MAX_CONCURRENT_SENDS = 8
"""Deliveries in flight at once, across all channels."""
SEND_GRACE_S = 5.0
"""Named timeout margin: how long past the delivery timeout we wait for Apprise to give
its own timeout answer before abandoning the thread."""
LEASE_MARGIN = timedelta(seconds=30)
"""A claim outlives the longest possible send (timeout + grace) by this much, so only a
dispatcher that is really gone loses its batches."""
MAX_TITLE_CHARS = 250
"""A grouped message's title lists its alerts' titles up to this length."""
BATCH_SEPARATOR = "\n\n———\n\n"


@dataclass(frozen=True)
class DeliveryReport:
    """What happened to one batch: sent, back to ``pending`` (to retry), ``dead``, or
    ``lost`` (the lease ran out and another dispatcher owns the batch now)."""

    batch: str
    key: str
    channel: str
    notifications: int
    status: OutboxStatus | Literal["lost"]
    error: str = ""
    next_attempt_at: datetime | None = None

    @property
    def ok(self) -> bool:
        """Return whether the batch was delivered."""
        return self.status == OutboxStatus.SENT


def lease_for(delivery: DeliveryConfig) -> timedelta:
    """Given the delivery settings, return how long a claim lasts: longer than a send can."""
    return delivery.timeout + timedelta(seconds=SEND_GRACE_S) + LEASE_MARGIN


def compose(rows: tuple[OutboxRow, ...], *, now: datetime) -> tuple[str, str, str]:
    """Given a batch's rows and the moment it is sent, return the (title, body, level) of
    its one message, every "N ago" reckoned at ``now``.

    One row is its own title and body. Several get the title ``N alerts: a; b; …`` and
    their titles and bodies one after another; the level is the most severe of theirs.
    """
    title, body, level = _composed(rows)
    return render_ago(title, now), render_ago(body, now), level


def _composed(rows: tuple[OutboxRow, ...]) -> tuple[str, str, str]:
    level = min((row.level for row in rows), key=_severity_rank)
    if len(rows) == 1:
        return rows[0].title, rows[0].body, level
    titles = "; ".join(dict.fromkeys(row.title for row in rows))
    title = f"{len(rows)} alerts: {titles}"
    if len(title) > MAX_TITLE_CHARS:
        title = title[: MAX_TITLE_CHARS - 1] + "…"
    body = BATCH_SEPARATOR.join(f"{row.title}\n{row.body}".rstrip() for row in rows)
    return title, body, level


def _severity_rank(level: str) -> int:
    return LEVELS.index(level) if level in LEVELS else len(LEVELS)


class Dispatcher:
    """Delivers what the outbox has due, through the configured channels."""

    def __init__(
        self,
        outbox: OutboxStore,
        channels: Mapping[str, str],
        delivery: DeliveryConfig,
        redactor: Redactor,
        owner: str,
        *,
        concurrency: int = MAX_CONCURRENT_SENDS,
        paused: Callable[[], bool] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.outbox = outbox
        # Claims, marks and the pace of ``run`` follow it; a send's own timeout is real time.
        self.clock = clock
        # While the store cannot be written, its outbox waits: the spill's dispatcher
        # delivers (``alerting/guard.py``), and the two must not send the same notice.
        self.paused = paused
        self.channels = dict(channels)
        self.delivery = delivery
        self.redactor = redactor
        self.owner = owner
        self.concurrency = max(1, concurrency)

    @property
    def lease(self) -> timedelta:
        """Return how long this dispatcher's claims last (from the current delivery settings:
        a reload may change the timeout)."""
        return lease_for(self.delivery)

    async def deliver_due(self, now: datetime | None = None) -> list[DeliveryReport]:
        """Send every batch due now and return what happened to each.

        ``now`` fixes the time for claims and marks; by default each step reads the
        dispatcher's clock. Store errors propagate; a failed delivery is a report, never
        an exception. While ``paused`` says so, nothing is claimed.
        """
        reports: list[DeliveryReport] = []
        if self.paused is not None and self.paused():
            return reports
        running: set[asyncio.Task[DeliveryReport]] = set()
        # A read first: claiming takes the store's write lock (SQLite), which the results
        # writer should not meet every second when nothing is due.
        due = await asyncio.to_thread(self.outbox.next_due)
        exhausted = due is None or due > (now or self.clock.now())
        try:
            while True:
                free = self.concurrency - len(running)
                if free > 0 and not exhausted:
                    batches = await asyncio.to_thread(
                        self.outbox.claim_due, self.owner, now or self.clock.now(), self.lease, free
                    )
                    exhausted = not batches
                    running.update(
                        asyncio.create_task(self._deliver(batch, now)) for batch in batches
                    )
                if not running:
                    return reports
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                reports.extend(task.result() for task in done)
        finally:
            for task in running:
                task.cancel()

    async def _deliver(self, batch: Batch, now: datetime | None) -> DeliveryReport:
        url = self.channels.get(batch.channel)
        if url is None:
            error = f"channel {batch.channel!r} is no longer in the config"
            marked = await asyncio.to_thread(
                self.outbox.mark_dead, batch, now or self.clock.now(), error, self.delivery
            )
            return self._report(batch, marked.status or "lost", error)
        title, body, level = compose(batch.rows, now=now or self.clock.now())
        timeout_s = self.delivery.timeout.total_seconds()
        try:
            result = await run_blocking(
                send,
                url,
                title,
                body,
                level,
                batch.key,
                timeout_s,
                self.redactor,
                timeout_s=timeout_s + SEND_GRACE_S,
            )
        except TimeoutError:
            # The send's thread cannot be stopped and may still deliver: the retry waits
            # until the claim would have run out, long past any socket timeout, so a late
            # success is not followed at once by a second copy.
            error = f"no answer within {timeout_s:g} s"
            marked = await asyncio.to_thread(
                functools.partial(
                    self.outbox.mark_failed,
                    batch,
                    now or self.clock.now(),
                    error,
                    self.delivery,
                    not_before=batch.claimed_until,
                )
            )
            return self._report(batch, marked.status or "lost", error, marked.next_attempt_at)
        if result.ok:
            sent = await asyncio.to_thread(self.outbox.mark_sent, batch, now or self.clock.now())
            return self._report(batch, OutboxStatus.SENT if sent else "lost")
        error = self.redactor.redact(result.error)
        marked = await asyncio.to_thread(
            self.outbox.mark_failed, batch, now or self.clock.now(), error, self.delivery
        )
        return self._report(batch, marked.status or "lost", error, marked.next_attempt_at)

    def _report(
        self,
        batch: Batch,
        status: OutboxStatus | Literal["lost"],
        error: str = "",
        next_attempt_at: datetime | None = None,
    ) -> DeliveryReport:
        report = DeliveryReport(
            batch.id, batch.key, batch.channel, len(batch.rows), status, error, next_attempt_at
        )
        count = f"{report.notifications} notification(s)"
        if status == OutboxStatus.SENT:
            logger.info("sent %s to %s (key %s)", count, batch.channel, batch.key)
        elif status == OutboxStatus.PENDING:
            logger.warning(
                "delivery of %s to %s (key %s) failed (attempt %d), retrying at %s: %s",
                count,
                batch.channel,
                batch.key,
                batch.attempts + 1,
                next_attempt_at.isoformat() if next_attempt_at else "?",
                error,
            )
        elif status == OutboxStatus.DEAD:
            logger.error(
                "gave up delivering %s to %s (key %s): %s", count, batch.channel, batch.key, error
            )
        else:
            logger.warning(
                "lost the claim on %s to %s (key %s): another dispatcher has it",
                count,
                batch.channel,
                batch.key,
            )
        return report

    async def run(
        self, stop: asyncio.Event, wake: asyncio.Event | None = None, poll_s: float = 1.0
    ) -> None:
        """Deliver due notifications until ``stop`` is set, looking every ``poll_s``
        seconds, or at once when ``wake`` is set (e.g. right after an enqueue).

        A store error is logged and retried at the next look. On the way out (stop or
        cancellation) this dispatcher's claims are released so the next one need not wait
        for their leases to run out.
        """
        try:
            while not stop.is_set():
                if wake is not None:
                    wake.clear()
                try:
                    await self.deliver_due()
                except Exception as error:  # noqa: BLE001 - a store hiccup must not end delivery
                    logger.warning(
                        "outbox delivery round failed, retrying: %s",
                        self.redactor.redact(str(error)),
                    )
                await self.clock.wait(stop, *([wake] if wake else []), timeout=poll_s)
        finally:
            try:
                self.outbox.release(self.owner)
            except Exception as error:  # noqa: BLE001 - the leases run out on their own anyway
                logger.warning(
                    "could not release outbox claims: %s", self.redactor.redact(str(error))
                )


def deliver_now(
    loaded: LoadedConfig, store: Store, now: datetime | None = None, clock: Clock = SYSTEM_CLOCK
) -> list[DeliveryReport]:
    """Given a loaded config and its open store, deliver everything due in the outbox now
    (for commands run from cron, without a daemon) and return what happened to each batch.

    Call it outside any running event loop. What fails stays in the outbox for the next
    run or the daemon; claims left by this process are released before it returns.
    """
    from upkeep.store.runs import new_instance_id

    owner = new_instance_id()
    # Registered, so a daemon taking the lead meanwhile sees a live owner and leaves its
    # claims alone instead of sending them a second time.
    store.runs.register_instance(owner, "cli")
    dispatcher = Dispatcher(
        store.outbox,
        loaded.config.channels,
        loaded.config.alerting.delivery,
        loaded.redactor,
        owner,
        clock=clock,
    )
    try:
        return asyncio.run(dispatcher.deliver_due(now))
    finally:
        dispatcher.outbox.release(dispatcher.owner)
        store.runs.unregister_instance(owner)
